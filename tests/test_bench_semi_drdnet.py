"""Smoke test of benchmarks/bench_semi_drdnet.py: the smallest run prints its table, ratios and checks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import import_script
from derainlib import REPO_ROOT
from derainlib.models import build_network
from derainlib.train import TrainConfig

SCRIPT = REPO_ROOT / "benchmarks" / "bench_semi_drdnet.py"


@pytest.fixture(scope="module")
def bench():
    yield from import_script(SCRIPT)


def test_quick_run_prints_every_row_and_the_speedups(bench, capsys, tmp_path):
    threads = torch.get_num_threads()
    table = bench.main(["--quick", "--device", "cpu", "--threads", "1", "--csv", str(tmp_path / "bench.csv")])
    out = capsys.readouterr().out
    assert torch.get_num_threads() == threads  # main() leaves the process as it found it

    assert out.startswith("machine: ")
    assert "check (cpu): naive contrastive loss = DualSCRNet's in fp32" in out  # main() raises if they differ
    assert len(table) == 6 and table["note"].fillna("").eq("").all()
    rows = set(zip(table["kind"], table["impl"], table["patch"], table["batch"]))
    assert rows == {(kind, impl, patch, batch) for impl in ("baseline", "fast")
                    for kind, patch, batch in (("supervised", 32, 2), ("semi", 32, 2), ("infer", 64, 1))}
    assert (table["patches/s"] > 0).all() and (table["peak MiB"] >= 0).all()
    semi = table[table["kind"] == "semi"]
    assert np.allclose(semi["patches/s"], 2 * 2 * semi["steps/s"])  # a semi step holds two batches
    for kind in ("supervised", "semi"):
        assert any(line.startswith(f"cpu M=8/1b {kind} 32x32 batch 2") and "speedup fast/baseline: " in line
                   and "× (target 3× on cpu: " in line for line in out.splitlines())
    assert "infer 64x64 batch 1" in out and "(inference: no target)" in out
    assert "bf16 accuracy: skipped" in out
    assert pd.read_csv(tmp_path / "bench.csv").shape[0] == 6


def test_worker_prints_one_configuration_as_json(bench, capsys):
    spec = bench.Spec(device="cpu", width=8, blocks=1, kind="supervised", patch=32, batch=2, impl="fast",
                      steps=1, warmup=1, threads=1)
    bench.main(["--worker", json.dumps(dataclasses.asdict(spec))])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(bench.RESULT_TAG)
    row = json.loads(line[len(bench.RESULT_TAG):])
    assert row["impl"] == "fast" and row["s/step"] > 0 and row["peak MiB"] >= row["base MiB"] > 0


def test_bf16_accuracy_check_with_a_checkpoint(bench, capsys, tmp_path):
    rng = np.random.default_rng(0)
    for folder in ("input", "target"):  # the rain13k layout: input/<name> <-> target/<name>
        (tmp_path / "data" / folder).mkdir(parents=True)
        for i in range(2):
            image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(image).save(tmp_path / "data" / folder / f"{i}.png")
    config = TrainConfig(train_root="unused", width=8, num_blocks=1)
    model = build_network(config.variant, config.width, config.num_blocks)
    torch.save({"config": config.as_dict(), "model": model.state_dict()}, tmp_path / "model.pt")

    bench.main(["--quick", "--device", "cpu", "--kinds", "infer", "--checkpoint", str(tmp_path / "model.pt"),
                "--data", str(tmp_path / "data")])
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("bf16 accuracy on cpu"))
    assert "(2 images of" in line and "Y-PSNR fp32" in line and "difference" in line and "limit 0.1 dB" in line


def test_compile_mode_implies_compile_and_enough_warm_up(bench):
    args = bench.parse_args(["--quick", "--device", "cpu", "--compile-mode", "reduce-overhead"])
    assert args.compile and args.warmup == 3  # compile, record the CUDA graphs, then time replays
    specs = bench.specs_of(args, [torch.device("cpu")])
    assert {(s.impl, s.compile, s.compile_mode) for s in specs if s.kind == "semi"} == {
        ("baseline", False, "reduce-overhead"), ("fast", True, "reduce-overhead")}
    assert not bench.parse_args(["--quick", "--device", "cpu"]).compile
    with pytest.raises(SystemExit):
        bench.parse_args(["--compile-mode", "fastest"])


def test_a_failed_compile_costs_its_row_only(bench, monkeypatch):
    def broken_compile(*args, **kwargs):
        raise RuntimeError("inductor failed\nsecond line")

    monkeypatch.setattr(bench.torch, "compile", broken_compile)
    common = dict(device="cpu", width=8, blocks=1, patch=32, batch=2, steps=1, warmup=1, threads=1)
    row = bench.measure(bench.Spec(kind="supervised", impl="fast", compile=True, compile_mode="reduce-overhead",
                                   **common), isolated=False)
    assert row["impl"] == "fast+compile(reduce-overhead)"
    assert row["note"] == "failed: RuntimeError: inductor failed" and "s/step" not in row
    with pytest.raises(RuntimeError, match="inductor failed"):  # without compile, an error is a bug: raise it
        monkeypatch.setattr(bench, "training_step", broken_compile)
        bench.measure(bench.Spec(kind="supervised", impl="fast", **common), isolated=False)

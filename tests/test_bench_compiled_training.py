"""Smoke test of benchmarks/bench_compiled_training.py: eager and compiled runs, their table and the speed-up."""

from __future__ import annotations

import re
import tempfile

import pytest
import torch

from conftest import import_script
from derainlib import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "bench_compiled_training.py"


@pytest.fixture(scope="module")
def bench():
    yield from import_script(SCRIPT)


@pytest.mark.slow
def test_smallest_run_prints_both_rows_and_the_speedup(bench, ci_benchmark, capsys, monkeypatch, tmp_path):
    # Inductor needs minutes to compile on a small CPU: trace with TorchDynamo but run eagerly. The script's
    # own path (TrainConfig.compile_mode reaching train(), the table, the ratio) is what is smoke-tested.
    real_compile, modes = torch.compile, []

    def eager_compile(model=None, *, mode=None, **kwargs):
        modes.append(mode)
        return real_compile(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its scratch run folders
    table = bench.main(["--device", "cpu", "--mode", "default", "--width", "8", "--blocks", "1", "--patch", "32",
                        "--batch", "2", "--steps", "2", "--warmup", "1"])
    out = capsys.readouterr().out

    assert modes and set(modes) == {"default"}  # the network (and the VGG) were compiled, in that mode
    assert list(table["compile_mode"]) == ["eager", "default"]
    assert (table["s/step"] > 0).all() and (table["first s"] > 0).all()
    assert table["last loss"].map(lambda v: v == v and abs(v) < float("inf")).all()
    assert "semi-supervised Semi-DRDNet M=8/1 blocks, 32x32 batch 2, 2 steps" in out and "on cpu" in out
    ratio = re.search(r"speed-up compiled/eager \(s/step\): (\d+\.\d+)x; last loss (\S+) vs (\S+)$", out, re.MULTILINE)
    assert ratio, out
    assert float(ratio.group(1)) == pytest.approx(table["s/step"][0] / table["s/step"][1], abs=0.006)
    assert list(tmp_path.iterdir()) == []  # the scratch runs were removed


def test_warmup_must_leave_timed_steps(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--steps", "3", "--warmup", "3"])
    assert "--warmup must be at least 1 and below --steps" in capsys.readouterr().err

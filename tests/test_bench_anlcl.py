"""Smoke test of benchmarks/bench_anlcl.py, and the exactness of its MAC count."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from conftest import import_script
from derainlib import REPO_ROOT
from derainlib.experiments.anlcl_speed import count_macs

SCRIPT = REPO_ROOT / "benchmarks" / "bench_anlcl.py"


@pytest.fixture(scope="module")
def bench():
    yield from import_script(SCRIPT)


def test_the_mac_count_is_exact_for_forward_and_backward():
    conv = nn.Conv2d(3, 5, 3, padding=1)
    head = nn.Linear(5, 7)
    x = torch.rand(2, 3, 8, 6)
    with count_macs(conv, head) as macs:
        y = conv(x)  # the input needs no gradient: backward is the weight gradient only
        head(y.mean(dim=(2, 3)))
    conv_macs = 2 * 5 * 8 * 6 * 3 * 3 * 3
    assert macs.forward == conv_macs + 2 * 7 * 5
    assert macs.backward == conv_macs + 2 * (2 * 7 * 5)  # the linear layer's input (y) needs a gradient
    with torch.no_grad(), count_macs(conv) as frozen:
        conv(x)
    assert (frozen.forward, frozen.backward) == (conv_macs, 0)


def test_quick_run_reports_peak_step_queue_and_table8(bench, capsys, tmp_path):
    threads = torch.get_num_threads()
    out = bench.main(["--quick", "--steps", "1", "--threads", "1", "--json", str(tmp_path / "b.json")])
    assert torch.get_num_threads() == threads
    text = capsys.readouterr().out
    assert text.startswith("machine: ") and "bf16 matmul peak" in text and "% of peak" in text
    cpu = out["devices"]["cpu"]
    for stage in (1, 2):
        step = cpu["training_steps"][f"fp32 stage {stage}"]
        assert step["seconds_per_step"] > 0 and 0 < step["fraction_of_peak"] and step["total_gmacs"] > step["forward_gmacs"]
        assert step["cpu_seconds_per_step"] > 0 and step["cpu_fraction_of_peak"] > 0
    assert cpu["queue"]["runs"] > 0 and cpu["queue"]["hours"] > 0
    assert cpu["table8"] and all(row["ms fp32"] > 0 and row["parameters"] > 0 for row in cpu["table8"])
    assert json.loads((tmp_path / "b.json").read_text())["profile"] == "ci"

"""Smoke test of benchmarks/bench_ddp.py: at the smallest sizes it measures 1 and 2 processes and prints
their steps per second, the speedup and the efficiency, and says what to expect on a CPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from derainlib import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "bench_ddp.py"


@pytest.mark.slow
def test_the_script_prints_steps_per_second_for_one_and_two_processes(tmp_path):
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, str(SCRIPT), "--width", "4", "--blocks", "1", "--patch", "32", "--batch", "4",
                           "--steps", "4", "--warmup", "1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "expect little or no gain" in done.stdout
    rows = re.findall(r"^\s+(\d+)\s+\d+\s+(\d+)\s+(\d+\.\d+)\s+(\d+\.\d)\s+(\d+\.\d+)x\s+(\d+)%$", done.stdout, re.M)
    assert [(int(n), int(b)) for n, b, *_ in rows] == [(1, 4), (2, 2)], done.stdout
    rates = [float(rate) for _, _, rate, *_ in rows]
    assert all(rate > 0 for rate in rates)
    assert float(rows[0][4]) == 1.0 and abs(float(rows[1][4]) - rates[1] / rates[0]) < 0.01

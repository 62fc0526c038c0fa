"""Smoke test of benchmarks/bench_data.py: at the smallest sizes it prints a rate for every domain and the loader."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import import_script
from derainlib import REPO_ROOT
from derainlib.data import DOMAINS

SCRIPT = REPO_ROOT / "benchmarks" / "bench_data.py"
RATE = r"(\d+(?:\.\d+)?)"


@pytest.fixture(scope="module")
def bench():
    yield from import_script(SCRIPT)


def test_the_script_prints_a_rate_per_domain_and_size_and_the_loader_rate(ci_benchmark, benchmark_home, tmp_path):
    # As `make bench` runs it, in a fresh process; the ci benchmark is found at its default place.
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "DERAINLIB_DATA": str(benchmark_home)}
    done = subprocess.run([sys.executable, str(SCRIPT), "--seconds", "0", "--sizes", "32,48", "--workers", "1",
                           "--batches", "2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("machine: ") and "torch thread(s)" in lines[0]
    header = lines.index("renderer, images/s (one process)") + 1
    assert lines[header].split() == ["domain", "32x32/v1", "32x32/v2", "48x48/v1", "48x48/v2"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 1:header + 1 + len(DOMAINS)]}
    assert list(rows) == list(DOMAINS)
    assert all(len(rates) == 4 and all(float(rate) > 0 for rate in rates) for rates in rows.values())
    loader = re.search(rf"loader, crops/s \(Rain200H train, (.+), 64x64 crops, batch 8, 1 workers\): {RATE}$",
                       done.stdout, re.MULTILINE)
    assert loader and loader.group(1) == str(ci_benchmark) and float(loader.group(2)) > 0
    assert not list(tmp_path.iterdir())  # it wrote nothing where it ran


def test_main_returns_the_rates_it_printed(bench, ci_benchmark, capsys):
    found = bench.main(["--root", str(ci_benchmark), "--seconds", "0", "--sizes", "24", "--workers", "0",
                        "--batches", "1", "--versions", "2"])
    out = capsys.readouterr().out
    assert set(found["renderer"]) == {(24, 2)} and set(found["renderer"][24, 2]) == set(DOMAINS)
    for domain, rate in found["renderer"][24, 2].items():
        assert f"{domain:<16}{rate:>13.1f}" in out
    assert out.rstrip().endswith(f"{found['loader']:.0f}") and found["loader"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--sizes", "256,x"], "--sizes: expected comma-separated integers"),
    (["--sizes", "8"], "at least 16 pixels"),
    (["--batches", "0"], "--batches at least 1"),
    (["--versions", "1,two"], "--versions: expected comma-separated integers"),
])
def test_bad_arguments_are_named(bench, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err

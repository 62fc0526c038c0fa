"""Smoke test of benchmarks/bench_nonlocal.py: the quick run checks, times and prints every ratio, and
its two comparators compute what the test suite's looped reference computes."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from conftest import import_script
from derainlib import REPO_ROOT
from test_nonlocal_sampling import border_anchors, integer_image, naive_block_match

SCRIPT = REPO_ROOT / "benchmarks" / "bench_nonlocal.py"


@pytest.fixture(scope="module")
def bench():
    yield from import_script(SCRIPT)


def test_quick_run_prints_the_checks_and_ratios(bench, capsys, tmp_path):
    threads = torch.get_num_threads()
    table = bench.main(["--quick", "--threads", "1", "--csv", str(tmp_path / "bench.csv")])
    out = capsys.readouterr().out
    assert torch.get_num_threads() == threads  # main() leaves the process as it found it
    assert out.startswith("machine: ")
    for name in bench.QUICK:
        assert f"check ({name}): fast = looped reference on integer images, tie rule included" in out
        line = next(line for line in out.splitlines() if line.startswith(f"{name} ("))
        assert "fast/looped " in line and "(target ≥100×: " in line and "fast/unfold " in line
    assert set(zip(table["config"], table["impl"])) == {(c, i) for c in bench.QUICK for i in ("looped", "unfold", "fast")}
    assert (table["calls/s"] > 0).all()
    assert pd.read_csv(tmp_path / "bench.csv").shape[0] == len(table)


@pytest.mark.parametrize("farthest", [False, True])
def test_the_benchmarks_comparators_agree_with_the_tests_reference(bench, farthest):
    images = integer_image(2, 48, 52, seed=7)
    anchors = border_anchors(2, 5, 48, 52)
    reference, _ = naive_block_match(images, anchors, 10, farthest=farthest)
    assert torch.equal(bench.looped_block_match(images, anchors, 10, farthest), reference)
    assert torch.equal(bench.fast_block_match(images, anchors, 10, farthest), reference)
    # topk has no tie rule; on these integer images compare the distances it chose, not the indices.
    unfold = bench.unfold_block_match(images, anchors, 10, farthest)
    patch = lambda b, y, x: images[b, :, y:y + 16, x:x + 16]  # noqa: E731
    for b in range(2):
        for a in range(5):
            ay, ax = anchors[b, a].tolist()
            got = sorted(float((patch(b, ay, ax) - patch(b, y, x)).square().sum()) for y, x in unfold[b, a].tolist())
            want = sorted(float((patch(b, ay, ax) - patch(b, y, x)).square().sum()) for y, x in reference[b, a].tolist())
            assert got == want


def test_unknown_configs_are_refused(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--configs", "everything"])

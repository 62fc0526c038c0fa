"""check_table: ci-profile tables against their committed reference, within tolerances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from derainlib import reporting
from derainlib.reporting import REFERENCE_RUN, ReferenceMismatch, check_table, save_table


def reference_table() -> pd.DataFrame:
    return pd.DataFrame({
        "variant": ["BL", "BL+SE", "Semi-DRDNet"],
        "PSNR (ours)": ["16.53 (n=1)", "—", "24.25 ± 0.12 (n=2)"],
        "SSIM-Y": [0.6853, 0.6680, np.nan],
        "distance": [258.5, 247.0, 380.0],
        "s/image (ours, CPU)": [1.2, 0.04, 0.5],
    })


@pytest.fixture
def results_root(tmp_path):
    save_table(reference_table(), "demo", tmp_path / "ci_out")
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci_out" / "results" / "demo.csv").rename(tmp_path / "ci" / "demo.csv")
    return tmp_path


def test_the_reference_itself_and_small_noise_pass(results_root):
    assert "numbers match" in check_table(reference_table(), "demo", REFERENCE_RUN, results_root)
    noisy = reference_table()
    noisy["PSNR (ours)"] = ["16.60 (n=1)", "—", "24.10 ± 0.30 (n=2)"]  # within 0.25 dB
    noisy["SSIM-Y"] = [0.6880, 0.6660, np.nan]
    noisy["distance"] = [260.0, 245.0, 384.0]  # within 2 %
    noisy["s/image (ours, CPU)"] = [9.0, 9.0, 9.0]  # timings are never compared
    check_table(noisy, "demo", REFERENCE_RUN, results_root)


@pytest.mark.parametrize("column, values", [
    ("PSNR (ours)", ["16.90 (n=1)", "—", "24.25 ± 0.12 (n=2)"]),  # 0.37 dB
    ("PSNR (ours)", ["16.53 (n=1)", "18.00 (n=1)", "24.25 ± 0.12 (n=2)"]),  # a missing value appeared
    ("SSIM-Y", [0.6853, 0.6780, np.nan]),  # 0.01
    ("SSIM-Y", [0.6853, 0.6680, 0.7]),  # NaN became a number
    ("distance", [258.5, 247.0, 400.0]),  # 5 %
    ("variant", ["BL", "BL+SE", "DRD-Net"]),
])
def test_a_real_change_raises_and_names_the_cell(results_root, column, values):
    changed = reference_table()
    changed[column] = values
    with pytest.raises(ReferenceMismatch, match=r"demo\.csv: 1 cells differ") as error:
        check_table(changed, "demo", REFERENCE_RUN, results_root)
    assert repr(column) in str(error.value)


def test_shape_change_and_missing_reference_raise(results_root):
    with pytest.raises(ReferenceMismatch, match="shape changed"):
        check_table(reference_table().iloc[:2], "demo", REFERENCE_RUN, results_root)
    with pytest.raises(ReferenceMismatch, match="shape changed"):
        check_table(reference_table().assign(extra=1.0), "demo", REFERENCE_RUN, results_root)
    with pytest.raises(ReferenceMismatch, match="no committed reference"):
        check_table(reference_table(), "absent", REFERENCE_RUN, results_root)


def test_checks_only_runs_with_the_reference_parameters(results_root, monkeypatch):
    monkeypatch.delenv(reporting.UPDATE_REFERENCE_ENV, raising=False)
    changed = reference_table().assign(distance=[1.0, 2.0, 3.0])
    for other in ({"profile": "cpu"}, {"seed": 1}, {"data_root": "/data"}):
        assert "not compared" in check_table(changed, "demo", {**REFERENCE_RUN, **other}, results_root)


def test_make_reproduce_compares_and_can_fail(results_root, monkeypatch):
    """A `make reproduce` run (an output_dir) used to "write the ci reference" and never compare."""
    monkeypatch.delenv(reporting.UPDATE_REFERENCE_ENV, raising=False)
    changed = reference_table().assign(distance=[1.0, 2.0, 3.0])
    reproduce_run = {**REFERENCE_RUN, "output_dir": "build/staging/out"}
    with pytest.raises(ReferenceMismatch, match="3 cells differ"):
        check_table(changed, "demo", reproduce_run, results_root)
    assert "numbers match" in check_table(reference_table(), "demo", reproduce_run, results_root)


def test_only_an_explicit_update_request_skips_the_comparison(results_root, monkeypatch):
    changed = reference_table().assign(distance=[1.0, 2.0, 3.0])
    monkeypatch.setenv(reporting.UPDATE_REFERENCE_ENV, "1")
    line = check_table(changed, "demo", REFERENCE_RUN, results_root)
    assert line.startswith("demo: not compared, this run writes the new ci reference") and "3 cells differ" in line
    assert "match" not in line
    monkeypatch.setenv(reporting.UPDATE_REFERENCE_ENV, "0")
    with pytest.raises(ReferenceMismatch):
        check_table(changed, "demo", REFERENCE_RUN, results_root)


def test_the_tolerance_is_stated_once_and_printed_from_there(monkeypatch):
    monkeypatch.setitem(reporting.REFERENCE_TOLERANCES, "PSNR", 0.5)
    assert "PSNR ±0.5 dB" in reporting.tolerance_text()
    assert reporting.tolerance_text() in reporting.pipeline_check_note("ci", 20, 8, 2)
    assert "mean nothing" in reporting.pipeline_check_note("ci", 20, 8, 2)

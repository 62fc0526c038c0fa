"""The stability diagnostic of DualSCRNet's readings and the rule that picks the study's reading."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

from derainlib.experiments import semi_drdnet as semi
from derainlib import study
from derainlib.experiments import semi_drdnet_stability as stability
from derainlib.profiles import PROFILES, Profile


def tiny_profile(iterations: int, **changes) -> Profile:
    """The ci profile with ``iterations`` Semi-DRDNet steps (its diagnostic window too) and ``changes``."""
    ci = PROFILES["ci"]
    sizes = dataclasses.replace(ci.semi_drdnet, iterations=iterations, stability_window=iterations)
    return dataclasses.replace(ci, semi_drdnet=sizes, **changes)


def _summary(reading: str, detail: float, out_of_range: float = 0.0, finite: bool = True) -> dict:
    return {"reading": reading, "detail_last": detail, "realproxy_out_of_range": out_of_range, "finite": finite}


def test_the_rule_takes_the_first_stable_reading_in_order_of_preference():
    reference = _summary("supervised", 0.10)
    summaries = [reference, _summary("literal", 0.40), _summary("clamp", 0.14, out_of_range=0.05),
                 _summary("clamp-l1", 0.12), _summary("clamp-clean", 0.11)]
    table = stability.stability_table(summaries)
    assert list(table["reading"]) == ["supervised", "literal", "clamp", "clamp-l1", "clamp-clean"]
    assert list(table["stable"]) == [True, False, False, True, True]
    assert table.loc[1, "detail_vs_reference"] == pytest.approx(4.0)
    assert stability.chosen_reading(table) == "clamp-l1"  # not clamp-clean, though its L_d is lower
    assert not stability.is_stable(_summary("literal", 0.12, finite=False), reference)
    assert stability.is_stable(_summary("literal", 0.15, out_of_range=0.01), reference)  # both limits inclusive


def test_no_choice_while_a_preferred_reading_is_unmeasured():
    table = stability.stability_table([_summary("supervised", 0.1), _summary("literal", 1.0), _summary("clamp-l1", 0.1)])
    assert stability.chosen_reading(table) is None  # "clamp" comes before "clamp-l1" and has not run
    with pytest.raises(ValueError, match="reference"):
        stability.stability_table([_summary("literal", 1.0)])


def test_the_committed_study_reading_is_the_one_the_rule_picked():
    path = stability.stability_csv("cpu")
    if not path.exists():
        pytest.skip("no committed cpu stability diagnostic yet")
    chosen = stability.chosen_reading(pd.read_csv(path))
    assert semi.STUDY_READING == (chosen if chosen is not None else "literal")


def test_a_diagnostic_keeps_every_step_and_drops_the_weights(monkeypatch, tmp_path):
    tiny = tiny_profile(4, n_train=4, n_val=2, n_test=2)
    monkeypatch.setattr(study, "_notebook_runs_root", lambda: tmp_path / "runs")
    monkeypatch.setenv("DERAINLIB_DATA", str(tmp_path / "data"))
    summary = stability.diagnose("supervised", tiny)
    folder = semi.runs_root(tiny) / "_stability" / "supervised"
    steps = pd.read_csv(folder / "steps.csv")
    assert list(steps["step"]) == [1, 2, 3, 4] and {"detail", "rain_residual", "total"} <= set(steps)
    assert summary["steps"] == 4 and summary["finite"] and math.isfinite(summary["test_psnr_y"])
    assert 0 <= summary["realproxy_out_of_range"] <= 1 and summary["commit"]
    assert summary["detail_last"] == pytest.approx(steps["detail"].mean())
    assert not (folder / "run").exists()
    assert json.loads((folder / "summary.json").read_text()) == summary
    monkeypatch.setattr(stability, "train", lambda *a, **k: pytest.fail("reran a finished diagnostic"))
    assert stability.diagnose("supervised", tiny) == summary
    with pytest.raises(ValueError, match="reading"):
        stability.diagnose("loose", tiny)


def test_gradient_norms_change_only_the_contrastive_terms_between_readings(monkeypatch, tmp_path):
    tiny = dataclasses.replace(PROFILES["ci"], n_train=4, n_val=2, n_test=2)
    monkeypatch.setenv("DERAINLIB_DATA", str(tmp_path / "data"))
    literal = stability.gradient_norms("literal", tiny, batches=1).set_index("term")
    clean_l1 = stability.gradient_norms("clamp-clean-l1", tiny, batches=1).set_index("term")
    assert list(literal.index) == ["detail", "rain_residual", "dual_sup", "dual_unsup"]
    assert (literal["grad_norm"] > 0).all() and literal["grad_norm"].map(math.isfinite).all()
    # Same seed, same batch, same network: the reading touches the contrastive terms only.
    for term in ("detail", "rain_residual"):
        assert clean_l1.loc[term, "grad_norm"] == pytest.approx(literal.loc[term, "grad_norm"], rel=1e-5)
    for term in ("dual_sup", "dual_unsup"):
        assert clean_l1.loc[term, "value"] != pytest.approx(literal.loc[term, "value"], rel=1e-3)
    with pytest.raises(ValueError, match="reading"):
        stability.gradient_norms("supervised", tiny)


def test_reestimated_batchnorm_statistics_are_the_mean_over_the_batches():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.BatchNorm2d(3))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    batches = [3.0 * torch.rand(4, 3, 8, 8, generator=generator) + shift for shift in (0.0, 5.0)]
    estimated = stability.reestimated_batchnorm(model, batches)
    with torch.no_grad():
        features = [model[0](batch) for batch in batches]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(0)
    variances = torch.stack([f.transpose(0, 1).reshape(3, -1).var(dim=1) for f in features]).mean(0)
    assert torch.allclose(estimated[1].running_mean, means, atol=1e-5)
    assert torch.allclose(estimated[1].running_var, variances, rtol=1e-4)
    assert not estimated.training and estimated[1].momentum == 0.1
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())  # a copy


def test_the_batchnorm_table_scores_a_run_as_trained_like_its_metrics(monkeypatch, tmp_path):
    tiny = tiny_profile(3, n_train=4, n_val=2, n_test=2)
    monkeypatch.setattr(study, "_notebook_runs_root", lambda: tmp_path / "runs")
    monkeypatch.setenv("DERAINLIB_DATA", str(tmp_path / "data"))
    spec = semi.semi_supervised_run("rain200h", 0, tiny.semi_drdnet.width, tiny.semi_drdnet.num_blocks, setting="standard")
    record = semi.run(spec, tiny, progress=False)
    table = stability.batchnorm_table(semi.runs_root(tiny) / spec.run_id, tiny, batches=2)
    assert list(table["statistics"]) == list(stability.BATCHNORM_SOURCES)
    as_trained = table.set_index("statistics").loc["as trained"]
    assert as_trained["test_psnr_y"] == pytest.approx(record["test"]["psnr_y"], abs=1e-9)
    assert as_trained["realproxy_psnr_y"] == pytest.approx(record["realproxy"]["psnr_y"], abs=1e-9)
    assert table[["test_psnr_y", "realproxy_psnr_y"]].map(math.isfinite).all().all()
    assert table["test_psnr_y"].nunique() > 1  # the statistics matter, even after 3 steps

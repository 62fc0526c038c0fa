"""The stable reading of DualSCRNet: each open choice, the instruments, and a short stable run."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from derainlib import monitoring
from derainlib import train as train_module
from derainlib.experiments import semi_drdnet_dose as dose
from derainlib.experiments import semi_drdnet_runs as runs
from derainlib.experiments import semi_drdnet_stable as stable
from derainlib.losses import DualSCRNet, LossWeights, RainMemoryBank, contrastive_ratio
from derainlib.losses.contrastive import feature_distance, gram_matrix
from derainlib.losses.memory_bank import magnitude_mask
from derainlib.models.vgg import VGG16Features
from derainlib.profiles import get_profile
from derainlib.runtime import autocast
from derainlib.train import TrainConfig, train
from test_train import make_paired, make_real  # pytest puts tests/ on sys.path


# ----------------------------------------------------------------------------- gradient through I_s


def test_a_gradient_flows_through_the_negatives_only_when_asked():
    torch.manual_seed(0)
    a = torch.rand(2, 3, 4, 4, requires_grad=True)
    positive, rain = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    # The anchor's own path is cut: whatever gradient reaches ``a`` comes through the negative a + R.
    loss = contrastive_ratio([a.detach()], [positive], [[a + rain]], layer_weights=(1.0,), detach_negatives=False)
    (grad,) = torch.autograd.grad(loss, a)
    assert grad.abs().sum() > 0
    detached = contrastive_ratio([a.detach()], [positive], [[a + rain]], layer_weights=(1.0,))
    assert not detached.requires_grad


def test_dualscrnet_negatives_keep_the_anchors_gradient_when_asked():
    torch.manual_seed(0)
    clean, rainy = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    grads = {}
    for keep in (False, True):
        dual = DualSCRNet(vgg_weights="random", setting="aug_neg", negative_gradient=keep)
        dual.remember((rainy - clean).abs(), "synthetic")
        derained = clean.clone().add_(0.05).requires_grad_(True)
        (grads[keep],) = torch.autograd.grad(dual.supervised(derained, clean, rainy), derained)
    assert torch.isfinite(grads[True]).all() and not torch.allclose(grads[True], grads[False])
    with pytest.raises(ValueError, match="negative_base='derained'"):
        DualSCRNet(vgg_weights="random", negative_base="clean", negative_gradient=True)


# ----------------------------------------------------------------------------- per-batch ratio, sum or mean over k


def test_the_per_batch_ratio_equals_a_hand_computation():
    # one layer of 1 x 1 x 2 features per sample: squared-L2 distance = mean of squared differences
    anchor = torch.tensor([[[[0.0, 0.0]]], [[[1.0, 1.0]]]])
    positive = torch.tensor([[[[1.0, 1.0]]], [[[1.0, 3.0]]]])  # d_pos = 1, 2
    neg1 = torch.tensor([[[[2.0, 2.0]]], [[[1.0, 2.0]]]])  # d_neg = 4, 0.5
    neg2 = torch.tensor([[[[3.0, 3.0]]], [[[4.0, 4.0]]]])  # d_neg = 9, 9
    w = 0.5
    kwargs = dict(layer_weights=(w,), eps=0.0)
    per_batch = contrastive_ratio([anchor], [positive], [[neg1], [neg2]], ratio="per_batch", **kwargs)
    assert float(per_batch) == pytest.approx(w * (3 / 4.5) + w * (3 / 18))
    per_sample = contrastive_ratio([anchor], [positive], [[neg1], [neg2]], **kwargs)
    assert float(per_sample) == pytest.approx(w * np.mean([1 / 4 + 1 / 9, 2 / 0.5 + 2 / 9]))
    mean_k = contrastive_ratio([anchor], [positive], [[neg1], [neg2]], ratio="per_batch", negative_reduction="mean",
                               **kwargs)
    assert float(mean_k) == pytest.approx(float(per_batch) / 2)


# ----------------------------------------------------------------------------- the faint-layer filter


def test_the_faint_layer_filter_drops_faint_and_huge_layers():
    rain = torch.stack([torch.full((3, 8, 8), v) for v in (0.001, 0.05, -0.1, 0.2, 5.0)])  # mean |R| per layer
    assert magnitude_mask(rain, 0.01, 0.3).tolist() == [False, True, True, True, False]
    bank = RainMemoryBank(capacity=10)
    assert bank.push(rain, "real", bounds=(0.01, 0.3)) == 3
    assert len(bank) == 3 and sorted(round(float(t.abs().mean()), 3) for t, _ in bank._entries) == [0.05, 0.1, 0.2]
    assert bank.push(rain, "real") == 5  # no bounds: everything joins (the literal reading)
    dual = DualSCRNet(vgg_weights="random", bank_bounds=(0.01, 0.3))
    dual.remember(rain, "synthetic")
    assert len(dual.bank) == 3
    with pytest.raises(ValueError, match="low <= high"):
        magnitude_mask(rain, 0.5, 0.1)


# ----------------------------------------------------------------------------- unaligned distances


def test_the_gram_distance_ignores_where_things_are():
    torch.manual_seed(0)
    a, b = torch.rand(2, 16, 6, 6), torch.rand(2, 16, 6, 6)
    permutation = torch.randperm(36)
    shuffled = a.flatten(2)[:, :, permutation].view_as(a)  # the same positions moved, in every channel
    for distance in ("gram", "statistics"):
        assert torch.allclose(feature_distance(shuffled, b, distance), feature_distance(a, b, distance), rtol=1e-5)
    assert not torch.allclose(feature_distance(shuffled, b, "squared_l2"), feature_distance(a, b, "squared_l2"))
    flat = a.flatten(2)
    assert torch.allclose(gram_matrix(a), flat @ flat.transpose(1, 2) / 36)


def test_the_vgg_in_fp32_stays_fp32_under_bf16_autocast():
    x = torch.rand(1, 3, 32, 32)
    with autocast(torch.device("cpu"), True):
        assert VGG16Features("random", precision="fp32")(x)[0].dtype == torch.float32
        assert VGG16Features("random")(x)[0].dtype == torch.bfloat16  # "autocast": what the committed study ran


def test_the_stable_reading_drops_pool5_below_128_px_crops():
    assert stable.stable_layer_weights(64) == (0.2, 0.5, 0.0)
    assert stable.stable_layer_weights(128) == (0.2, 0.5, 1.0)


# ----------------------------------------------------------------------------- the gradient-ratio monitor


def test_the_monitor_ratios_equal_a_hand_computation():
    y = torch.tensor([[0.2, 0.8, 0.5, 0.1]], requires_grad=True)
    z = torch.tensor([[1.0, -2.0]], requires_grad=True)
    target = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    terms = {"detail": (y - target).abs().mean(), "dual_unsup": (z ** 2).sum()}
    norms = monitoring.output_gradient_norms(terms, {"detail": y, "dual_unsup": z}, {"detail": 1.0, "dual_unsup": 0.1})
    # d mean|y - t| / dy = sign / 4 in every entry: norm sqrt(4 / 16) = 0.5; d 0.1 sum z^2 / dz = 0.2 z
    assert norms["detail"] == pytest.approx(0.5)
    assert norms["dual_unsup"] == pytest.approx(0.2 * math.sqrt(5))
    ratios = monitoring.gradient_ratios(norms)
    assert ratios == pytest.approx({"grad_norm_detail": 0.5, "grad_ratio_dual_unsup": 0.4 * math.sqrt(5)})
    assert y.grad is None and z.grad is None  # measured without accumulating


# ----------------------------------------------------------------------------- the collapse rule


def test_a_run_from_scratch_is_judged_only_after_the_cold_start():
    watch = monitoring.CollapseWatch(monitoring.CollapseRule(((0, 0.1),), window=2, start=10))
    assert all(watch.update(step, 1.0, 0.5) is None for step in range(1, 10))
    assert watch.update(10, 1.0, 0.5) is not None


def test_the_collapse_rule_reads_the_reference_at_the_same_step():
    rule = monitoring.CollapseRule(((10, 0.2), (20, 0.1)), window=2)
    assert [rule.reference_at(s) for s in (5, 10, 19, 20, 99)] == [0.2, 0.2, 0.2, 0.1, 0.1]
    watch = monitoring.CollapseWatch(rule)
    assert watch.update(21, 0.14, 0.0) is None  # not a full window yet
    assert watch.update(22, 0.15, 0.0) is None  # 0.145 <= 1.5 x 0.1
    verdict = watch.update(23, 0.2, 0.0)  # 0.175 > 0.15
    assert verdict["step"] == 23 and verdict["detail_vs_reference"] == pytest.approx(1.75)
    other = monitoring.CollapseWatch(rule)
    other.update(30, 0.01, 0.02)
    assert other.update(31, 0.01, 0.01) is None  # 1.5 % out of range: a healthy fine-tune gets there
    other.update(32, 0.01, 0.10)
    assert "outside [0, 1]" in other.update(33, 0.01, 0.05)["reason"]  # 7.5 % of outputs out of range


def _toy(tmp_path, **overrides) -> TrainConfig:
    settings = dict(variant="Semi-DRDNet", width=4, num_blocks=1, train_root=str(make_paired(tmp_path / "paired", 6)),
                    train_layout="rain13k", patch_size=32, batch_size=2, steps=30, checkpoint_every=100, device="cpu")
    return TrainConfig(**(settings | overrides))


def test_the_collapse_rule_stops_a_collapsing_run_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "CollapseRule", functools.partial(monitoring.CollapseRule, window=5))
    # a supervised toy trained until its outputs are inside [0, 1], the warm start and reference of the others
    supervised = train(_toy(tmp_path, learning_rate=1e-2, width=8, steps=150), tmp_path / "supervised")
    assert supervised.collapsed is None  # no reference given: no rule
    reference = monitoring.reference_curve(supervised.log.to_dict("records"))
    real = str(make_real(tmp_path / "real", 4))
    warm = dict(learning_rate=1e-3, width=8, steps=60, collapse_reference=reference, semi_supervised=True,
                contrastive="dual", vgg_weights="random", real_root=real,
                init_weights=str(tmp_path / "supervised" / "model.pt"))
    control = train(_toy(tmp_path, **warm, loss_weights=LossWeights(dual=0.0, unsupervised=0.0)), tmp_path / "control")
    assert control.collapsed is None and control.steps == 60  # the same schedule at λ = 0 does not collapse
    absurd = _toy(tmp_path, **warm, loss_weights=LossWeights(dual=1e4, unsupervised=1e4))  # the literal reading, λ absurd
    result = train(absurd, tmp_path / "absurd")
    assert result.collapsed is not None and result.steps == result.collapsed["step"] < 60
    assert int(result.log["step"].iloc[-1]) == result.steps  # the stopping step is logged
    saved = torch.load(tmp_path / "absurd" / "model.pt", weights_only=False)
    assert saved["collapsed"] == result.collapsed and saved["step"] == result.steps
    assert train(absurd, tmp_path / "absurd").collapsed == result.collapsed  # read back, not retrained


def test_the_monitor_logs_gradient_ratios_per_epoch(tmp_path):
    config = _toy(tmp_path, steps=6, semi_supervised=True, contrastive="dual", vgg_weights="random",
                  real_root=str(make_real(tmp_path / "real", 4)), monitor_gradients=True)
    log = train(config, tmp_path / "run").log
    assert {"grad_norm_detail", "grad_ratio_rain_residual", "grad_ratio_dual_sup", "grad_ratio_dual_unsup"} <= set(log)
    assert (log["grad_ratio_dual_unsup"] > 0).all() and np.isfinite(log["grad_ratio_dual_sup"]).all()


# ----------------------------------------------------------------------------- the dose: parity and selection


def test_the_selection_rule_takes_the_best_validated_dose_above_zero():
    table = pd.DataFrame({"dose": [0.0, 1e-4, 1e-3, 1e-2, 0.1, 0.5],
                          "val_psnr_y": [30.0, 29.0, 29.5, 29.5, 31.0, 35.0],
                          "collapsed": [False, False, False, False, False, True]})
    assert stable.select_dose(table) == 0.1  # 0.5 collapsed, 0 is the control
    table.loc[4, "collapsed"] = True
    assert stable.select_dose(table) == 1e-3  # a tie goes to the smaller dose
    with pytest.raises(LookupError):
        stable.select_dose(table.assign(collapsed=True))


def test_stable_runs_read_renderer_version_2_and_the_committed_ids_do_not_change():
    spec = runs.stable_run("rain200h", 0, 16, 8, 1e-3)
    assert spec.run_id == "rain200h-semi-drdnet-m16b8-semi-dual-ld0.001-stable-v2-s0"
    assert spec.init_from == "rain200h-bl_se_sdcab-m16b8-v2-s0"
    assert runs.stable_run("rain200h", 1, 16, 8, stable.SELECTED_DOSE).run_id.endswith("-ldsel-stable-v2-s1")
    assert runs.semi_supervised_run("rain200h", 0, 16, 8).run_id == "rain200h-semi-drdnet-m16b8-semi-dual-s0"
    queue = [s.run_id for s in runs.study_queue("cpu")]
    literal = [s.run_id for s in runs.study_queue("cpu") if s.reading != "stable" and s.renderer_version == 1]
    assert queue[:len(literal)] == literal  # the stable runs come after every run of the committed study
    assert queue.index("rain200h-bl_se_sdcab-m16b8-v2-s0") < queue.index(spec.run_id)
    with pytest.raises(ValueError, match="init_from"):
        runs.RunSpec("rain200h", "Semi-DRDNet", 0, 16, 8, contrastive="dual", reading="stable")
    # what a second worker waits for: the warm start, and at the selected dose every dose–response run
    assert runs.needed_runs(spec) == (spec.init_from,)
    selected = runs.stable_run("rain200h", 1, 16, 8, stable.SELECTED_DOSE)
    sweep = runs.stable_table_runs("dose", "cpu")
    assert runs.needed_runs(selected) == (selected.init_from, *(s.run_id for s in sweep))
    assert runs.needed_runs(runs.warm_start_run(spec)) == ()


def test_stable_runs_fine_tune_for_the_profiles_stable_steps_and_their_warm_starts_train_in_full():
    for profile in ("ci", "cpu", "gpu"):
        sizes = runs.get_profile(profile).semi_drdnet
        spec = runs.stable_run("rain200h", 0, sizes.width, sizes.num_blocks, 0.1)
        assert runs.train_config(spec, profile, Path("bench")).steps == sizes.stable_iterations
        assert runs.train_config(runs.warm_start_run(spec), profile, Path("bench")).steps == sizes.iterations


def test_the_stable_reading_trains_a_few_steps_at_ci_size_without_nan(tmp_path):
    init = train(_toy(tmp_path, steps=6), tmp_path / "init")
    base = _toy(tmp_path, steps=6, semi_supervised=True, contrastive="dual", real_root=str(make_real(tmp_path / "real", 4)),
                **{k: v for k, v in runs.READINGS["stable"].items()}, contrastive_layer_weights=stable.stable_layer_weights(32))
    config = stable.stable_config(base, 0.5, tmp_path / "init", tmp_path / "run")
    facts = json.loads((tmp_path / "run" / stable.STABLE_FILE).read_text())
    assert facts["parity"]["dual_sup"] > 0 and facts["parity"]["dual_unsup"] > 0
    assert config.loss_weights.dual == pytest.approx(0.5 * facts["parity"]["dual_sup"])
    assert config.init_weights == str(tmp_path / "init" / "model.pt") and config.collapse_reference
    result = train(config, tmp_path / "run")
    assert result.steps == 6 and result.collapsed is None
    assert np.isfinite(result.log[["total", "detail", "dual_sup", "dual_unsup"]].to_numpy()).all()
    # λ by parity: at the warm start each term pulls on the output with dose x L_d's gradient norm
    assert result.log["grad_ratio_dual_sup"].iloc[0] == pytest.approx(0.5, rel=0.8)
    assert stable.stable_config(base, 0.5, tmp_path / "init", tmp_path / "run") == config  # read back, same numbers
    assert init.steps == 6


# ----------------------------------------------------------------------------- the paired-difference table


def test_the_paired_difference_and_its_bootstrap_interval_on_synthetic_numbers():
    from derainlib.experiments import semi_drdnet_dose as dose

    rng = np.random.default_rng(0)
    control = rng.normal(25.0, 3.0, size=(3, 60))  # 3 seeds x 60 images; images vary far more than the effect
    treated = control + 0.5 + rng.normal(0.0, 0.2, size=control.shape)
    result = dose.paired_difference(treated, control)
    expected = float((treated - control).mean())
    assert result["mean"] == pytest.approx(expected) and result["images"] == 60 and result["seeds"] == 3
    assert result["low"] < expected < result["high"] and result["low"] > 0.4 and result["high"] < 0.6
    null = dose.paired_difference(control + rng.normal(0.0, 0.2, size=control.shape), control)
    assert null["low"] < 0 < null["high"]  # no effect: the interval holds 0
    assert dose.paired_difference(treated, control) == result  # seeded: the same interval every time
    with pytest.raises(ValueError, match="pair"):
        dose.paired_difference(treated[:, :10], control)
    assert result["seed_low"] <= result["low"] and result["seed_high"] >= result["high"]  # seeds add spread
    assert result["seed_low"] > 0.3  # the effect is in every seed, so it survives resampling them
    assert math.isnan(dose.paired_difference(treated[0], control[0])["seed_low"])  # one seed: nothing to resample
    frames = [pd.DataFrame({"name": [f"{i}.png" for i in range(60)], "psnr_y": row}) for row in treated]
    controls = [pd.DataFrame({"name": [f"{i}.png" for i in range(60)], "psnr_y": row}) for row in control]
    table = dose.paired_table([("dose 0.1 vs 0", frames, controls)])
    assert table.loc[0, "mean"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="different images"):
        dose.paired_table([("x", frames, [c.iloc[::-1] for c in controls])])


def test_a_stable_study_run_at_ci_size_warm_starts_and_records_itself(monkeypatch, tmp_path):
    from derainlib import study
    from derainlib.profiles import PROFILES

    monkeypatch.setattr(study, "_notebook_runs_root", lambda: tmp_path / "runs")
    ci = PROFILES["ci"]
    tiny = dataclasses.replace(ci, semi_drdnet=dataclasses.replace(ci.semi_drdnet, iterations=4, stable_iterations=4,
                                                                                  val_every_epochs=1))
    spec = runs.stable_run("rain200h", 0, tiny.semi_drdnet.width, tiny.semi_drdnet.num_blocks, 0.1)
    record = runs.run(spec, tiny, progress=False)  # trains its warm start first, then itself
    root = runs.runs_root(tiny)
    assert (root / spec.init_from / study.METRICS).is_file()
    assert record["renderer_version"] == 2 and record["collapsed"] is None and record["steps"] == 4
    assert record["stable"]["dose"] == 0.1 and math.isfinite(record["stable"]["val_psnr_y"])
    assert math.isfinite(record["test"]["psnr_y"]) and math.isfinite(record["realproxy"]["psnr_y"])
    selected = runs.stable_run("rain200h", 0, tiny.semi_drdnet.width, tiny.semi_drdnet.num_blocks, stable.SELECTED_DOSE)
    with pytest.raises(LookupError, match="dose–response runs are not all finished"):
        runs.run(selected, tiny, progress=False)
    # Once the rule picks 0.1, the selected-dose run of the sweep's seed is that very run: copied, not retrained.
    monkeypatch.setattr(runs, "resolved_dose", lambda spec, root: 0.1)
    monkeypatch.setattr(runs, "train", lambda *args, **kwargs: pytest.fail("the copied run was retrained"))
    copied = runs.run(selected, tiny, progress=False)
    assert copied["copied_from"] == spec.run_id and copied["stable"] == record["stable"]
    assert copied["test"]["psnr_y"] == record["test"]["psnr_y"] and math.isnan(copied["spec"]["lambda_dual"])
    assert (root / selected.run_id / "model.pt").read_bytes() == (root / spec.run_id / "model.pt").read_bytes()


def test_an_effect_carried_by_one_seed_is_detected_over_images_but_not_once_seeds_are_resampled():
    """Per-seed shifts +1.0, −0.9, +0.2 dB, each the same on every image: the interval over images alone excludes 0
    (it holds no spread between training runs); the two-level interval, which resamples the seeds, holds 0."""
    rng = np.random.default_rng(1)
    control = rng.normal(25.0, 3.0, size=(3, 49))
    treated = control + np.array([[1.0], [-0.9], [0.2]]) + rng.normal(0.0, 0.05, size=control.shape)
    result = dose.paired_difference(treated, control)
    assert result["low"] > 0 and dose.answer(result["low"], result["high"]) == "yes"
    assert result["seed_low"] < 0 < result["seed_high"] and dose.seed_answer(result) == "no detectable effect"
    assert dose.seed_answer(dose.paired_difference(treated[0], control[0])) == "one seed"


def test_an_interval_reads_as_an_answer_in_the_metrics_direction():
    assert dose.answer(0.1, 0.5) == "yes" and dose.answer(-0.5, -0.1) == "no: it hurts"
    assert dose.answer(-0.1, 0.3) == "no detectable effect"
    assert dose.answer(-0.5, -0.1, higher_is_better=False) == "yes"  # NIQE: lower is better
    with pytest.raises(ValueError, match="finite"):
        dose.answer(math.nan, 1.0)


def test_the_stable_questions_pair_runs_of_the_queue_seed_by_seed():
    queue = {s.run_id for s in runs.study_queue("cpu")}
    questions = dose.stable_comparisons("cpu")
    sweep = [q for q in questions if q[0].endswith("(the sweep)")]  # every dose above 0 against λ = 0, first
    assert questions[:len(sweep)] == sweep and len(sweep) == len(stable.DOSES) - 1
    assert all(len(treated) == 1 and control[0].lambda_dual == 0.0 for _, treated, control in sweep)
    assert questions[len(sweep)][0].startswith("rain200h: DualSCRNet at the selected dose")
    for question, treated, control in questions:
        assert treated and [s.seed for s in treated] == [s.seed for s in control], question
        assert {s.run_id for s in treated + control} <= queue, question
        assert all(t.dataset == c.dataset and t.variant == c.variant for t, c in zip(treated, control))
    warm = [q for q in questions if q[0].endswith("DDN with DualSCRNet at the selected dose against its warm start")]
    assert len(warm) == 2 and all(c == runs.warm_start_run(t) for _, treated, control in warm
                                  for t, c in zip(treated, control))


def test_stable_answers_pair_the_finished_runs_per_image(tmp_path):
    """Fake finished runs (a record and per-image scores each): the answers table holds their paired
    difference, and a question with an unfinished run says so instead of a number."""
    question, treated, control = next(q for q in dose.stable_comparisons("cpu") if "selected dose" in q[0])
    rng = np.random.default_rng(0)
    names = [f"{i}.png" for i in range(12)]
    for spec in treated + control:
        folder = tmp_path / spec.run_id
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps({"spec": {}}))
        shift = 1.0 if spec in treated else 0.0
        for split in ("test", "realproxy"):
            scores = pd.DataFrame({"name": names, "psnr_y": 25 + shift + rng.normal(0, 0.1, 12),
                                   "niqe": 5 - shift + rng.normal(0, 0.1, 12)})
            scores.to_csv(folder / f"scores-{split}.csv", index=False)
    table = dose.stable_answers("cpu", tmp_path)
    mine = table[table["question"] == question]
    assert len(mine) == len(dose.ANSWER_SCORES) and (mine["runs"] == f"{len(treated) * 2}/{len(treated) * 2}").all()
    psnr_rows = mine[mine["metric"] == "psnr_y"]
    assert psnr_rows["mean"].between(0.8, 1.2).all() and (psnr_rows["answer"] == "yes").all()
    per_seed = [float(d) for d in psnr_rows["per_seed"].iloc[0].split(", ")]
    assert len(per_seed) == len(treated) and np.mean(per_seed) == pytest.approx(psnr_rows["mean"].iloc[0], abs=1e-3)
    niqe = mine[mine["metric"] == "niqe"].iloc[0]
    assert -1.2 < niqe["mean"] < -0.8 and niqe["answer"] == "yes"  # lower NIQE is better
    assert (table[table["question"] != question]["answer"] == "not run yet").all()


def test_the_dose_and_gradient_figures_draw_and_refuse_missing_columns():
    table = pd.DataFrame({"dose": [0.0, 1e-3, 0.1], "test_psnr_y": [25.0, 25.2, 24.0],
                          "realproxy_psnr_y": [22, 22.1, 21.5], "realproxy_niqe": [np.nan] * 3,
                          "test_psnr_y_sd": [0.1, np.nan, 0.2],
                          "selected": [False, True, False]})
    assert len(dose.dose_response_figure(table, title="t").axes) == 3
    with pytest.raises(ValueError, match="selected"):
        dose.dose_response_figure(table.drop(columns="selected"), title="t")
    log = pd.DataFrame({"step": [10, 20], "grad_ratio_dual_sup": [0.5, 0.4], "grad_ratio_dual_unsup": [0.2, 0.1]})
    assert len(dose.gradient_ratio_figure(log, title="t").axes[0].lines) == 3  # two terms and the parity line
    with pytest.raises(ValueError, match="grad_ratio"):
        dose.gradient_ratio_figure(log[["step"]], title="t")


def test_stable_table_vii_sits_beside_the_literal_rows_with_kendall_tau(tmp_path):
    """Fake finished stable runs whose PSNR follows the paper's order: τ = 1 for the stable reading on Rain200H,
    and the literal rows (none here) show "—"."""
    paper_order = {"standard": 24.0, "aug_pos": 24.7, "aug_neg": 24.5, "dual": 25.0}  # the paper's order on Rain200H
    dual = {s.run_id for s in runs.table_runs("dose-seeds", "cpu") if math.isnan(s.lambda_dual)}
    assert dual <= {s.run_id for s in runs.table_runs("VII-stable", "cpu")}  # its dual row is the dose-seeds runs
    for spec in runs.table_runs("VII-stable", "cpu"):
        scores = {"psnr_y": paper_order[spec.contrastive] + 0.01 * spec.seed, "ssim_y": 0.8, "niqe": 5.0}
        (tmp_path / spec.run_id).mkdir()
        (tmp_path / spec.run_id / "metrics.json").write_text(json.dumps(
            {"run_id": spec.run_id, "spec": dataclasses.asdict(spec), "steps": 300, "train_wall_time_s": 1.0,
             "test": scores, "realproxy": scores}))
    table, taus = dose.stable_table_vii("cpu", tmp_path)
    rows = table[table["dataset"] == "rain200h"].set_index("contrastive")
    assert rows.loc["dual", "PSNR (stable)"] == "25.01 ± 0.01 (n=3)" and rows.loc["dual", "PSNR (literal)"] == "—"
    tau = taus[(taus["reading"] == "stable") & (taus["dataset"] == "rain200h")].iloc[0]
    assert tau["kendall_tau"] == pytest.approx(1.0) and tau["complete"]


def test_the_dose_table_counts_the_selected_doses_seeds_once_each(tmp_path):
    """The sweep (seed 0) and the 3-seed runs: the runs at the selected dose carry it in their record, and the
    seed-0 one is the sweep's own run copied, so it is counted once."""
    def record(folder, level, seed, val, selected=False):
        folder.mkdir()
        scores = {"psnr_y": 20.0 + level + seed, "niqe": 4.0}
        stable_facts = {"val_psnr_y": val} | ({"dose": level} if selected else {})
        (folder / "metrics.json").write_text(json.dumps({"test": scores, "realproxy": scores, "stable": stable_facts,
                                                         "collapsed": None}))

    for spec in runs.stable_table_runs("dose", "cpu"):
        record(tmp_path / spec.run_id, spec.lambda_dual, 0, val=30.0 + (spec.lambda_dual == 0.1))
    for spec in runs.stable_table_runs("dose-seeds", "cpu"):
        if not (tmp_path / spec.run_id).exists():
            record(tmp_path / spec.run_id, 0.1 if math.isnan(spec.lambda_dual) else 0.0, spec.seed, val=30.0,
                   selected=math.isnan(spec.lambda_dual))
    table = dose.dose_table("cpu", tmp_path).set_index("dose")
    assert table.loc[0.1, "runs"] == 3 and table.loc[0.0, "runs"] == 3 and table.loc[1e-3, "runs"] == 1
    assert table.loc[0.1, "test_psnr_y"] == pytest.approx(20.1 + 1.0)  # the mean over seeds 0, 1, 2
    assert table["selected"].tolist() == [dose_level == 0.1 for dose_level in table.index]


def _fake_finished(root, spec, psnr: float) -> None:
    """A finished run's record with ``psnr`` as its test PSNR-Y (and real-proxy PSNR-Y one dB lower)."""
    (root / spec.run_id).mkdir(exist_ok=True)
    record = {"run_id": spec.run_id, "spec": dataclasses.asdict(spec), "steps": 300, "train_wall_time_s": 1.0,
              "test": {"psnr_y": psnr, "ssim_y": 0.9, "niqe": 5.0}, "realproxy": {"psnr_y": psnr - 1, "niqe": 5.0}}
    (root / spec.run_id / "metrics.json").write_text(json.dumps(record))


def test_stable_table_ii_gives_semi_drdnets_gain_over_its_warm_start_per_reading(tmp_path):
    """Rain200H: every stable run finished, Semi-DRDNet 0.3 dB above its warm starts (the paper's order, τ = 1);
    the literal Semi-DRDNet below its supervised network (τ = −1). Rain800: one seed missing, so no order is read."""
    semi_bonus = {"rain200h": 0.3, "rain800": 0.3}
    for spec in runs.table_runs("II-stable", "cpu"):
        if spec.dataset in semi_bonus and not (spec.dataset == "rain800" and spec.seed == 2):
            bonus = semi_bonus[spec.dataset] if math.isnan(spec.lambda_dual) else 0.1
            _fake_finished(tmp_path, spec, 29.0 + bonus + 0.01 * spec.seed)
            _fake_finished(tmp_path, runs.warm_start_run(spec), 29.0 + 0.01 * spec.seed)
    for spec in runs.table_runs("II", "cpu"):
        if spec.dataset == "rain200h" and spec.variant in ("BL+SE+SDCAB", "Semi-DRDNet"):
            _fake_finished(tmp_path, spec, 27.0 if spec.variant == "BL+SE+SDCAB" else 13.0)
    table, orders = dose.stable_table_ii("cpu", tmp_path)
    rows = table[table["dataset"] == "rain200h"].set_index(["reading", "row"])
    assert rows.loc[("stable", "Semi-DRDNet"), "PSNR (ours)"] == "29.31 ± 0.01 (n=3)"
    assert rows.loc[("stable", "λ = 0 fine-tune"), "PSNR (ours)"] == "29.11 ± 0.01 (n=3)"
    assert rows.loc[("stable", "BL+SE+SDCAB"), "PSNR (paper)"] == 28.32
    assert math.isnan(rows.loc[("stable", "λ = 0 fine-tune"), "PSNR (paper)"])
    assert rows.loc[("literal", "Semi-DRDNet"), "real-proxy PSNR (ours)"] == "12.00 ± 0.00 (n=3)"
    orders = orders.set_index(["dataset", "reading"])
    stable_h, literal_h = orders.loc[("rain200h", "stable")], orders.loc[("rain200h", "literal")]
    assert stable_h["Semi-DRDNet gain (ours)"] == pytest.approx(0.3) and stable_h["kendall_tau"] == pytest.approx(1.0)
    assert stable_h["Semi-DRDNet gain (paper)"] == pytest.approx(3.0) and stable_h["complete"]
    assert literal_h["Semi-DRDNet gain (ours)"] == pytest.approx(-14.0) and literal_h["kendall_tau"] == pytest.approx(-1)
    partial = orders.loc[("rain800", "stable")]  # two of three seeds: shown in the table, but no order is read
    assert not partial["complete"] and math.isnan(partial["Semi-DRDNet gain (ours)"])
    assert table.set_index(["dataset", "reading", "row"]).loc[("rain800", "stable", "Semi-DRDNet"),
                                                              "PSNR (ours)"].endswith("(n=2)")


def test_stable_fig13_orders_the_bars_each_added_term_should_raise(tmp_path):
    """Rain200L: λ = 0 fine-tune < + L_Dual(sup) < full (τ = 1); Rain200H: reversed (τ = −1); Rain800: nothing."""
    rising = {"L_d+L_r (λ = 0 fine-tune)": 30.0, "L_d+L_r+L_Dual(sup)": 30.2, "L_sup+L_unsup (full)": 30.4}
    seed = get_profile("cpu").seeds[0]
    for dataset, sign in (("rain200l", 1), ("rain200h", -1)):
        without, full = [s for s in runs.table_runs("fig13-stable", "cpu") if s.dataset == dataset]
        control = next(s for s in runs.table_runs("II-stable", "cpu")
                       if s.dataset == dataset and s.seed == seed and s.lambda_dual == 0.0)
        for name, spec in zip(dose.STABLE_FIG13_ROWS, (runs.warm_start_run(full), control, without, full)):
            _fake_finished(tmp_path, spec, 30.0 + sign * (rising.get(name, 29.9) - 30.0))
    table, taus = dose.stable_fig13("cpu", tmp_path)
    assert list(table[table["dataset"] == "rain200l"]["losses"]) == list(dose.STABLE_FIG13_ROWS)
    taus = taus.set_index("dataset")
    assert taus.loc["rain200l", "kendall_tau"] == pytest.approx(1.0) and taus.loc["rain200l", "complete"]
    assert taus.loc["rain200l", "best (ours)"] == "L_sup+L_unsup (full)"
    assert taus.loc["rain200h", "kendall_tau"] == pytest.approx(-1.0)
    assert math.isnan(taus.loc["rain800", "kendall_tau"]) and taus.loc["rain800", "best (ours)"] == "—"


def test_cached_per_image_scores_keep_numeric_image_names_as_strings(tmp_path):
    """Rain800's images are named 1, 2, ...: a cached score table must pair with one computed fresh, whose names
    are strings, so reading it back must not turn them into numbers."""
    spec = runs.table_runs("II-stable", "cpu")[0]
    (tmp_path / spec.run_id).mkdir()
    pd.DataFrame({"name": ["1", "2", "10"], "psnr_y": [20.0, 21.0, 22.0]}).to_csv(
        tmp_path / spec.run_id / "scores-test.csv", index=False)
    scores = dose.per_image_scores(spec, "cpu", "test", root=tmp_path)
    assert list(scores["name"]) == ["1", "2", "10"]
    fresh = pd.DataFrame({"name": ["1", "2", "10"], "psnr_y": [20.5, 21.0, 22.0]})
    assert dose.paired_table([("x", [fresh], [scores])]).loc[0, "mean"] == pytest.approx(0.5 / 3)


def test_stable_ddn_gives_the_doses_gain_over_warm_start_and_lambda_zero(tmp_path):
    """Rain200H: every run finished, the dose 0.2 dB above λ = 0, which is 0.1 dB below its warm start;
    Rain800: one seed's dose run missing, so its row counts two runs and no gain is read."""
    for spec in runs.table_runs("DDN-stable", "cpu"):
        if spec.dataset == "rain800" and spec.seed == 2 and math.isnan(spec.lambda_dual):
            continue
        _fake_finished(tmp_path, spec, 27.1 if math.isnan(spec.lambda_dual) else 26.9)
        _fake_finished(tmp_path, runs.warm_start_run(spec), 27.0)
    table, gains = dose.stable_ddn("cpu", tmp_path)
    rows = table.set_index(["dataset", "row"])
    assert list(table[table["dataset"] == "rain200h"]["row"]) == list(dose.STABLE_DDN_ROWS)
    assert rows.loc[("rain200h", "DDN + DualSCRNet (stable)"), "PSNR (ours)"] == "27.10 ± 0.00 (n=3)"
    assert rows.loc[("rain800", "DDN + DualSCRNet (stable)"), "PSNR (ours)"].endswith("(n=2)")
    gains = gains.set_index("dataset")
    assert gains.loc["rain200h", "gain over λ = 0"] == pytest.approx(0.2)
    assert gains.loc["rain200h", "gain over the warm start"] == pytest.approx(0.1)
    assert math.isnan(gains.loc["rain800", "gain over λ = 0"])

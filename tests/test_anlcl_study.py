"""ANLCL's ablation study: Table 4's encoders, Table 5's terms, the queue, the cost estimate, the tables beside the
paper's (on hand-written run records), Fig. 7's distances, Fig. 10's embedding and Fig. 6's categories."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

from derainlib import study  # noqa: E402
from derainlib.analysis import patch_asymmetry as pa  # noqa: E402
from derainlib.analysis.layer_features import IMAGE, RAIN, layer_patch_features, layer_separation, layer_tsne  # noqa: E402
from derainlib.experiments import anlcl_figures, anlcl_runs, anlcl_tables  # noqa: E402
from derainlib.experiments.anlcl_paper import PAPER_TABLE_3, PAPER_TABLE_5  # noqa: E402
from derainlib.experiments.anlcl_runs import RunSpec, default_run, study_queue, table_rows, table_runs  # noqa: E402
from derainlib.losses.anlcl import ContrastiveSampling, contrastive_terms, feature_distances  # noqa: E402
from derainlib.models.anlcl import ANLCLNetworks  # noqa: E402
from derainlib.profiles import get_profile  # noqa: E402
from derainlib.train_anlcl import ANLCLConfig, training_step  # noqa: E402

# --------------------------------------------------------------------------- Table 4: encoders


@pytest.mark.parametrize("encoder", ["image_generator", "image_rain_generators"])
def test_generator_encoders_embed_with_the_generators_and_keep_their_own_momentum_copy(encoder):
    torch.manual_seed(0)
    net = ANLCLNetworks(4, 2, encoder=encoder)
    assert net.layer_features == net.location_stages
    keys = net.state_dict().keys()
    assert not any(k.startswith("key_encoder.feature_layers") and "discriminator" in k for k in keys)
    assert ("key_encoder.rain_layers.0.weight" in keys) == (encoder == "image_rain_generators")
    rainy = torch.rand(2, 3, 40, 40)
    out = net(rainy)
    positions = torch.tensor([[[0, 0], [8, 4]], [[20, 20], [3, 9]]])
    image = net.layer_embeddings(out.derained, positions, 16)
    rain = net.layer_embeddings(out.rain, positions, 16, layer="rain")
    assert all(torch.allclose(f.norm(dim=-1), torch.ones(2, 2), atol=1e-5) for f in image + rain)
    sum(f.sum() for f in rain).backward()
    rain_trunk_grad = any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.deraining.rain_generator.head.parameters())
    # the rain patches go through G_R's trunk only with the image-rain encoder (and reach G_R through R either way)
    assert rain_trunk_grad
    assert all(p.grad is None for p in net.discriminator.parameters())  # D is not the encoder here
    before = [p.clone() for p in net.key_encoder.parameters()]
    with torch.no_grad():
        for p in net.deraining.parameters():
            p.add_(1.0)
    net.momentum_update()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.key_encoder.parameters()))
    with pytest.raises(ValueError, match="encoder=.vgg.: expected one of"):
        ANLCLNetworks(4, 2, encoder="vgg")


def test_the_image_rain_encoder_embeds_rain_patches_with_the_rain_generator():
    torch.manual_seed(0)
    net = ANLCLNetworks(4, 2, encoder="image_rain_generators")
    x = torch.rand(1, 3, 32, 32)
    positions = torch.tensor([[[4, 4]]])
    image, rain = net.layer_embeddings(x, positions, 16)[0], net.layer_embeddings(x, positions, 16, layer="rain")[0]
    assert not torch.allclose(image, rain)  # the same pixels, two trunks
    shared = ANLCLNetworks(4, 2, encoder="image_generator")
    assert torch.equal(shared.layer_embeddings(x, positions, 16)[0],
                       shared.layer_embeddings(x, positions, 16, layer="rain")[0])


# --------------------------------------------------------------------------- Table 5 terms, Fig. 7 distances


def test_feature_distances_of_known_features():
    a = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # two equal image features
    b = torch.tensor([[[0.0, 1.0], [0.0, -1.0]]])  # two opposite rain features
    d = feature_distances([a], [b])
    assert d["dist_image"] == pytest.approx(0.0)
    assert d["dist_rain"] == pytest.approx(2.0)
    assert d["dist_image_rain"] == pytest.approx(math.sqrt(2))


def test_stage_two_drops_the_decomposition_terms_asked_and_logs_the_distances(tmp_path):
    config = ANLCLConfig(pretrain_root=str(tmp_path), real_root=str(tmp_path), width=4, num_blocks=1, crop_size=32,
                         decomposition_terms=("consistency",), terms=("layer",),
                         sampling=ContrastiveSampling(num_positives=3, num_negatives=5, num_location_negatives=4))
    torch.manual_seed(0)
    networks = ANLCLNetworks(4, 1)
    terms, _ = training_step(networks, config, 0, torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), paired=False)
    assert {"consistency", "layer"} <= set(terms) and not {"rain_sparsity", "background_prior"} & set(terms)
    assert all(isinstance(terms[c], float) and terms[c] >= 0 for c in ("dist_image", "dist_rain", "dist_image_rain"))
    paired, _ = training_step(networks, config, 0, torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), paired=True)
    assert "background_prior" in paired  # stage 1 keeps its own objective
    with pytest.raises(ValueError, match="unknown decomposition terms"):
        replace(config, decomposition_terms=("tv",))
    with pytest.raises(ValueError, match="at least one loss term"):
        replace(config, decomposition_terms=(), terms=())


# --------------------------------------------------------------------------- specs and the queue


def test_every_setting_is_in_the_run_id_and_equal_settings_are_one_run():
    base = RunSpec("rain200h", 0, 8, 2)
    ids = {replace(base, encoder="image_generator").run_id, replace(base, encoder="image_rain_generators").run_id,
           replace(base, decomposition_terms=("consistency", "background_prior")).run_id,
           replace(base, num_positives=4).run_id, replace(base, num_negatives=64).run_id, base.run_id}
    assert len(ids) == 6
    assert "-no-l1-" in replace(base, decomposition_terms=("consistency", "background_prior")).run_id
    assert replace(base, terms=("location", "layer")) == replace(base, terms=("layer", "location"))
    with pytest.raises(ValueError, match="encoder=.vgg.: expected one of"):
        replace(base, encoder="vgg")
    with pytest.raises(ValueError, match="sampling numbers"):
        replace(base, num_negatives=0)


def test_the_cpu_queue_holds_every_table_row_with_its_seeds():
    p = get_profile("cpu")
    queue = study_queue(p)
    assert len(queue) == len(set(queue))
    ids = {s.run_id for s in queue}
    for table, seeds in (("3", p.seeds), ("4", p.seeds), ("5", p.seeds), ("9", p.seeds[:1])):
        runs = table_runs(table, p)
        assert {s.seed for s in runs} == set(seeds) and {s.run_id for s in runs} <= ids
    assert len(table_rows("3", p, 0)) == len(PAPER_TABLE_3) == 6 and len(table_rows("5", p, 0)) == len(PAPER_TABLE_5)
    assert len(table_rows("9", p, 0)) == 16
    assert all("asymmetric" not in spec.terms for t in ("3", "4", "9") for _, spec in table_rows(t, p, 0))
    nlcl = dict(table_rows("3", p, 0))["nonlocal / nonlocal"]  # shared by Tables 3, 4, 5 and 9
    assert dict(table_rows("4", p, 0))["discriminator"] == nlcl
    assert dict(table_rows("5", p, 0))["L1 Ladv LMSE LocCon LayerCon"] == nlcl
    assert dict(table_rows("9", p, 0))[f"8 x {p.anlcl.num_negatives}"] == nlcl
    assert table_rows("5", p, 0)[-1][1] == default_run(p, 0)
    assert anlcl_runs.table9_negatives(p)[2] == p.anlcl.num_negatives
    config = anlcl_runs.train_config(dict(table_rows("9", p, 0))["32 x 256"], p, Path("/x"))
    assert (config.sampling.num_positives, config.sampling.num_negatives) == (32, 256)


def test_queue_hours_follow_the_step_times(tmp_path):
    p = get_profile("ci")
    est = anlcl_runs.queue_cpu_hours(p, 2.0, 3.0, evaluation_s=10.0)
    runs, seeds = len(study_queue(p)), len(p.seeds)  # stage 1 once per seed, stage 2 once per run
    assert (est["runs"], est["stage1_runs"]) == (runs, seeds)
    finetune_steps = (runs - 2 + 2 * 4) * p.anlcl.iterations  # the two check runs train four times as long
    assert est["hours"] == pytest.approx((seeds * p.anlcl.pretrain_iterations * 2 + finetune_steps * 3
                                          + (runs + seeds) * 10) / 3600)
    assert est["steps"] == seeds * p.anlcl.pretrain_iterations + finetune_steps
    finished = tmp_path / study_queue(p)[0].run_id
    finished.mkdir()
    (finished / study.METRICS).write_text("{}")
    assert anlcl_runs.queue_cpu_hours(p, 2.0, 3.0, runs_dir=tmp_path)["runs"] == runs - 1


def test_the_check_runs_are_the_default_run_four_times_as_long_with_means_and_in_fp32_last():
    p = get_profile("cpu")
    checks = anlcl_runs.check_runs(p)
    longer, means = checks["four times as long"], checks["norms as means, four times as long"]
    fp32 = [checks["fp32, seed 0"], checks["fp32, seed 1"]]
    assert study_queue(p)[-4:] == [longer, means, *fp32]
    assert [replace(spec, precision=None) for spec in fp32] == [default_run(p, 0), default_run(p, 1)]
    assert fp32[0].run_id == "rain200h-realproxy-anlcl-m32b9-fp32-v2-s0"
    assert [anlcl_runs.uses_bf16(spec, p) for spec in (default_run(p, 0), fp32[0], fp32[0].stage1)] == [
        True, False, True]  # the fp32 run starts from the study's (bf16) stage-1 run of its seed
    assert not anlcl_runs.train_config(fp32[1], p, Path("/x")).bf16
    assert "fp32, seed 0" not in anlcl_runs.check_runs("ci")  # a profile without bf16 has nothing to check
    with pytest.raises(ValueError, match="precision='fp16'"):
        replace(fp32[0], precision="fp16")
    assert means.run_id == "rain200h-realproxy-anlcl-m32b9-meannorms-ft1000-v2-s0"  # the committed first run
    assert replace(longer, finetune_steps=None) == default_run(p, p.seeds[0]) == replace(means, norms="sum",
                                                                                          finetune_steps=None)
    config = anlcl_runs.train_config(means, p, Path("/x"))
    assert config.steps == 4 * p.anlcl.iterations == anlcl_runs.stage2_steps(means, p) and config.norms == "mean"
    default = anlcl_runs.train_config(default_run(p, 0), p, Path("/x"))
    assert default.steps == p.anlcl.iterations and default.norms == "sum"
    with pytest.raises(ValueError, match="finetune_steps"):
        replace(longer, finetune_steps=0)
    with pytest.raises(ValueError, match="norms='max'"):
        replace(longer, norms="max")


def test_the_workers_train_each_seeds_stage_one_once_before_the_runs_that_start_from_it():
    p = get_profile("cpu")
    work = anlcl_runs.work_queue(p)
    stage1 = [spec for spec in work if isinstance(spec, anlcl_runs.Stage1Spec)]
    assert [spec.seed for spec in stage1] == list(p.seeds)
    assert [spec for spec in work if not isinstance(spec, anlcl_runs.Stage1Spec)] == study_queue(p)
    for spec in study_queue(p):
        assert work.index(spec.stage1) < work.index(spec)
    config = anlcl_runs.train_config(stage1[0], p, Path("/x"))
    assert config.steps == 0 and config.pretrain_steps == p.anlcl.pretrain_iterations
    stage2 = anlcl_runs.train_config(default_run(p, 0), p, Path("/x"), stage1_model=Path("/x/model.pt"))
    assert stage2.init_weights == "/x/model.pt"
    from derainlib.train_anlcl import RESUMABLE_CHANGES, STAGE_2_ARITHMETIC, STAGE_2_SETTINGS
    differ = {k for k, v in config.as_dict().items() if stage2.as_dict()[k] != v}
    assert differ <= STAGE_2_SETTINGS | RESUMABLE_CHANGES  # only stage-2 settings differ
    fp32 = anlcl_runs.train_config(anlcl_runs.check_runs(p)["fp32, seed 0"], p, Path("/x"), stage1_model=Path("/x"))
    assert {k for k, v in config.as_dict().items() if fp32.as_dict()[k] != v} == differ | {"bf16"}
    assert differ | {"bf16"} <= STAGE_2_SETTINGS | RESUMABLE_CHANGES | STAGE_2_ARITHMETIC


# --------------------------------------------------------------------------- tables from hand-written records


def _write_run(root, spec, psnr, val, images=(0.0, 0.5, -0.5, 1.0), collapsed=False):
    folder = root / spec.run_id
    folder.mkdir(parents=True)
    group = {"psnr_y": psnr, "ssim_y": psnr / 100, "psnr_rgb": psnr, "ssim_rgb": 0.5, "niqe": 4.0}
    record = {"run_id": spec.run_id, "realproxy": group, "val": {"psnr_y": val, "ssim_y": 0.5}, "test": group,
              "collapsed": {"step": 5} if collapsed else None, "steps": 10, "train_wall_time_s": 36.0}
    (folder / study.METRICS).write_text(json.dumps(record))
    pd.DataFrame({"name": [f"img{i}" for i in range(len(images))],
                  "psnr_y": [psnr + d for d in images]}).to_csv(folder / "scores-realproxy.csv", index=False)


def test_table_3_beside_the_paper_with_tau_paired_differences_and_the_selection(tmp_path):
    p = get_profile("ci")
    rows = table_rows("3", p, 0)
    # ours in the paper's order (tau = 1), the validation best on the second-best row
    for index, (label, spec) in enumerate(rows):
        _write_run(tmp_path, spec, 20.0 + PAPER_TABLE_3[(spec.positives, spec.negatives)][0] - 25,
                   val=30.0 if label == "random / nonlocal" else 10.0)
    _write_run(tmp_path, default_run(p, 0), 20.0, val=0.0)
    runs = anlcl_tables.collect(p, tmp_path)
    assert len(runs) == 7 and set(runs["terms"]) == {"layer+location+asymmetric", "layer+location"}
    frame, tau = anlcl_tables.study_table("3", p, tmp_path, runs)
    assert tau == pytest.approx(1.0)
    nl = frame.set_index("row").loc["nonlocal / nonlocal"]
    assert nl["PSNR-Y"] == pytest.approx(21.46) and nl["paper PSNR"] == 26.46 and nl["seeds"] == 1
    assert nl["dPSNR-Y vs full"] == pytest.approx(1.46) and nl["CI low"] == pytest.approx(1.46)  # a constant shift
    assert frame.loc[frame["selected"], "row"].tolist() == ["random / nonlocal"]
    shown = anlcl_figures.study_table_display(frame)
    assert "← selected" in shown["selected"].tolist()
    taus = anlcl_tables.kendall_table(p, tmp_path)
    assert taus.set_index("table").loc["3", "rows_finished"] == 6
    lines = anlcl_tables.verdict_lines(taus)
    assert lines[0].startswith("Table 3: our ordering agrees") and "not the paper's best 'nonlocal / nonlocal'" in lines[0]
    assert lines[1].startswith("Table 4: 1 of 3 rows finished")


def test_the_selection_rule_skips_collapsed_runs_and_breaks_ties_toward_the_papers_setting():
    table = pd.DataFrame({"row": ["a", "b", "c"], "val vs full": [0.0, 0.0, 5.0], "finished": [True, True, True],
                          "collapsed": [False, False, True], "paper setting": [False, True, False]})
    assert anlcl_tables.select_row(table) == "b"
    assert anlcl_tables.select_row(table.assign(finished=False)) is None


def test_the_fp32_queue_holds_the_unfinished_runs_in_fp32_with_their_seeds_fp32_default(tmp_path):
    p = get_profile("cpu")
    rows = anlcl_runs.fp32_rows(p)
    assert all(row.precision == "fp32" for row in rows) and len(rows) == len(set(rows))
    assert {replace(row, precision=None) for row in rows} == {s for s in study_queue(p) if s.precision is None}
    for row in rows:  # each seed's fp32 default comes before its rows
        assert rows.index(anlcl_runs.default_of(row, p)) <= rows.index(row)
    with pytest.raises(ValueError, match="trains in fp32 already"):
        anlcl_runs.fp32_rows("ci")
    # every run of seed 0 and 1 finished but one row of seed 1: that row and seed 1's default, both in fp32
    left = table_rows("5", p, 1)[0][1]
    for spec in study_queue(p):
        if spec.precision is None and spec.seed in (0, 1) and spec != left:
            _write_run(tmp_path, spec, 20.0, val=1.0)
    queue = anlcl_runs.fp32_queue(p, tmp_path)
    assert queue[:2] == [anlcl_runs.in_fp32(default_run(p, 1)), anlcl_runs.in_fp32(left)]
    assert {spec.seed for spec in queue[2:]} == {2} and queue[2] == anlcl_runs.in_fp32(default_run(p, 2))
    assert anlcl_runs.in_fp32(left).run_id == left.run_id.replace("-v2-", "-fp32-v2-")


def test_an_fp32_stand_in_is_paired_with_its_seeds_fp32_default_and_counted(tmp_path):
    p = get_profile("cpu")
    label, row = table_rows("5", p, 0)[0]
    for seed in p.seeds:
        _write_run(tmp_path, default_run(p, seed), 20.0, val=2.0)
    _write_run(tmp_path, row, 20.5, val=2.5)  # seed 0 in bf16: +0.5 (val +0.5)
    _write_run(tmp_path, anlcl_runs.in_fp32(table_rows("5", p, 1)[0][1]), 19.75, val=1.5)
    frame, _ = anlcl_tables.study_table("5", p, tmp_path)
    first = frame.set_index("row").loc[label]
    assert first["seeds"] == 1 and first["fp32 seeds"] == 0  # seed 1's stand-in waits for seed 1's fp32 default
    _write_run(tmp_path, anlcl_runs.in_fp32(default_run(p, 1)), 19.5, val=1.0)
    frame, _ = anlcl_tables.study_table("5", p, tmp_path)
    first = frame.set_index("row").loc[label]
    assert first["seeds"] == 2 and first["fp32 seeds"] == 1 and not first["finished"]
    assert first["dPSNR-Y vs full"] == pytest.approx(0.375)  # +0.5 (seed 0) and +0.25 against the fp32 default
    assert first["val vs full"] == pytest.approx(0.5) and first["PSNR-Y"] == pytest.approx(20.125)
    full = frame.set_index("row").iloc[-1]
    assert full["seeds"] == 3 and full["fp32 seeds"] == 0 and full["dPSNR-Y vs full"] == pytest.approx(0.0)
    assert frame.loc[frame["selected"], "row"].tolist() == [full.name]  # the only row with every seed
    runs = anlcl_tables.collect(p, tmp_path)
    assert runs.set_index("run_id").loc[anlcl_runs.in_fp32(default_run(p, 1)).run_id, "precision"] == "fp32"
    assert anlcl_tables.progress_line(p, runs) == (f"the cpu study: 5 of {len(study_queue(p))} runs finished, and "
                                                   "1 fp32 stand-ins")  # seed 1's fp32 default is a check run
    # a bf16 run of the row, once finished, takes the stand-in's place
    _write_run(tmp_path, table_rows("5", p, 1)[0][1], 20.0, val=2.0)
    frame, _ = anlcl_tables.study_table("5", p, tmp_path)
    assert frame.set_index("row").loc[label, "fp32 seeds"] == 0


def test_the_check_tables_fp32_stand_in_of_a_check_is_paired_with_the_fp32_default(tmp_path):
    p = get_profile("cpu")
    checks = anlcl_runs.check_runs(p)
    _write_run(tmp_path, default_run(p, 0), 20.0, val=2.0)
    _write_run(tmp_path, checks["fp32, seed 0"], 19.9, val=2.0)
    _write_run(tmp_path, anlcl_runs.in_fp32(checks["four times as long"]), 20.4, val=2.0)
    frame = anlcl_tables.check_table(p, tmp_path).set_index("run")
    assert frame.index.tolist() == ["the study's default", "four times as long, in fp32", "fp32, seed 0"]
    assert frame.loc["fp32, seed 0", "vs default"] == pytest.approx(-0.1)  # its question: against the bf16 run
    assert frame.loc["four times as long, in fp32", "vs default"] == pytest.approx(0.5)  # against the fp32 default
    assert frame.loc["four times as long, in fp32", "precision"] == "fp32"


def test_report_writes_the_collected_runs_and_tables(tmp_path, monkeypatch):
    p = get_profile("ci")
    _write_run(tmp_path / "runs", default_run(p, 0), 20.0, val=1.0)
    _write_run(tmp_path / "runs", default_run(p, 0).stage1, 19.0, val=1.0)
    monkeypatch.setattr(anlcl_tables, "results_dir", lambda name: tmp_path / "results" / name)
    written = anlcl_tables.write_report(p, tmp_path / "runs")
    assert {path.name for path in written} == {"anlcl_runs.csv", "anlcl_table3.csv", "anlcl_table4.csv",
                                               "anlcl_table5.csv", "anlcl_table9.csv", "anlcl_kendall.csv",
                                               "anlcl_table6.csv", "anlcl_table6_terms.csv", "anlcl_checks.csv"}
    runs = pd.read_csv(tmp_path / "results" / "ci" / "anlcl_runs.csv")
    assert runs["run_id"].tolist() == [default_run(p, 0).stage1.run_id, default_run(p, 0).run_id]
    assert runs["stage"].tolist() == [1, 2] and runs["realproxy_psnr_y"].tolist() == [19.0, 20.0]
    assert runs["precision"].tolist() == ["fp32", "fp32"]  # ci trains in fp32; the record's own flag decides


def test_the_check_table_pairs_each_check_run_with_the_first_seeds_default_run(tmp_path):
    p = get_profile("ci")
    default = default_run(p, 0)
    _write_run(tmp_path, default.stage1, 19.0, val=1.0)
    _write_run(tmp_path, default, 20.0, val=2.0)
    _write_run(tmp_path, anlcl_runs.check_runs(p)["norms as means, four times as long"], 17.0, val=3.0)
    frame = anlcl_tables.check_table(p, tmp_path).set_index("run")
    assert frame.index.tolist() == ["stage 1 only", "the study's default", "norms as means, four times as long"]
    assert frame["stage-2 steps"].tolist() == [0, p.anlcl.iterations, 4 * p.anlcl.iterations]
    assert frame["norms"].tolist() == ["", "sum", "mean"] and frame["val PSNR-Y"].tolist() == [1.0, 2.0, 3.0]
    assert frame["seed"].tolist() == [0, 0, 0] and frame["precision"].tolist() == ["fp32"] * 3  # ci has no bf16
    means = frame.loc["norms as means, four times as long"]
    assert means["vs default"] == pytest.approx(-3.0) and means["CI low"] == pytest.approx(-3.0)  # a constant shift
    assert frame.loc["stage 1 only", "vs default"] == pytest.approx(-1.0)
    assert math.isnan(frame.loc["the study's default", "vs default"])


def test_an_fp32_check_is_paired_with_the_default_run_of_its_own_seed(tmp_path):
    p = get_profile("cpu")
    _write_run(tmp_path, default_run(p, 0), 20.0, val=2.0)
    _write_run(tmp_path, default_run(p, 1), 21.0, val=2.0)
    _write_run(tmp_path, anlcl_runs.check_runs(p)["fp32, seed 1"], 21.25, val=2.0)
    frame = anlcl_tables.check_table(p, tmp_path).set_index("run")
    assert frame.index.tolist() == ["the study's default", "fp32, seed 1"]
    assert frame["seed"].tolist() == [0, 1] and frame["precision"].tolist() == ["bf16", "fp32"]
    assert frame.loc["fp32, seed 1", "vs default"] == pytest.approx(0.25)  # against seed 1's default, not seed 0's


def test_the_fp32_rule_needs_every_check_within_its_tolerance_and_its_interval_inside_the_bound(tmp_path):
    p = get_profile("cpu")
    checks = anlcl_runs.check_runs(p)
    for seed in (0, 1):
        _write_run(tmp_path / "pass", default_run(p, seed), 20.0 + seed, val=2.0, images=(0.0, 0.0, 0.0, 0.0))
    assert anlcl_tables.fp32_verdict(p, anlcl_tables.check_table(p, tmp_path / "pass")).startswith(
        "fp32 checks: 0 of 2 finished")
    _write_run(tmp_path / "pass", checks["fp32, seed 0"], 20.04, val=2.0, images=(0.0, 0.01, -0.01, 0.0))
    assert "1 of 2 finished" in anlcl_tables.fp32_verdict(p, anlcl_tables.check_table(p, tmp_path / "pass"))
    _write_run(tmp_path / "pass", checks["fp32, seed 1"], 20.97, val=2.0, images=(0.0, 0.01, -0.01, 0.0))
    verdict = anlcl_tables.fp32_verdict(p, anlcl_tables.check_table(p, tmp_path / "pass"))
    assert verdict.startswith("fp32 checks pass") and "fp32, seed 1: -0.030 dB" in verdict
    # 0.06 dB off, or a paired interval reaching past 0.1 dB, fails the rule
    for name, psnr, images in (("off", 20.06, (0.0, 0.0, 0.0, 0.0)), ("wide", 20.0, (0.0, 0.5, -0.5, 0.0))):
        root = tmp_path / name
        for seed in (0, 1):
            _write_run(root, default_run(p, seed), 20.0 + seed, val=2.0, images=(0.0, 0.0, 0.0, 0.0))
        _write_run(root, checks["fp32, seed 0"], psnr, val=2.0, images=images)
        _write_run(root, checks["fp32, seed 1"], 21.0, val=2.0, images=(0.0, 0.0, 0.0, 0.0))
        verdict = anlcl_tables.fp32_verdict(p, anlcl_tables.check_table(p, root))
        assert verdict.startswith("fp32 checks fail") and "outside it: fp32, seed 0)" in verdict, name
    assert anlcl_tables.fp32_verdict("ci", anlcl_tables.check_table("ci", tmp_path)).startswith(
        "fp32 checks: none")


def test_table_6_pairs_the_drdnet_runs_without_and_with_anlcls_loss_seed_by_seed(tmp_path):
    from derainlib.experiments import semi_drdnet_runs

    p = get_profile("cpu")
    specs = semi_drdnet_runs.table_runs(semi_drdnet_runs.ANLCL_TABLE, p)
    assert [s.anlcl_loss for s in specs] == [False, True] * len(p.seeds)
    assert specs[0].run_id == "rain200h-bl_se_sdcab-m16b8-v2-s0"  # the baseline is the stable reading's warm start
    assert specs[1].run_id == "rain200h-bl_se_sdcab-m16b8-anlcl-v2-s0"
    assert anlcl_tables.table6(p, tmp_path)["answer"].tolist() == ["not run yet"] * 4
    shift = {False: 0.0, True: 0.25}  # +ANLCL: 0.25 dB better on every image, NIQE 0.25 worse
    for spec in specs[:4]:  # seeds 0 and 1; seed 2 has no runs
        folder = tmp_path / spec.run_id
        folder.mkdir()
        (folder / study.METRICS).write_text(json.dumps({"run_id": spec.run_id}))
        for split in ("test", "realproxy"):
            base = 20.0 + spec.seed + np.arange(5.0)
            pd.DataFrame({"name": [f"img{i}" for i in range(5)], "psnr_y": base + shift[spec.anlcl_loss],
                          "ssim_y": 0.5 + 0 * base, "niqe": 4.0 + shift[spec.anlcl_loss]}).to_csv(
                folder / f"scores-{split}.csv", index=False)
    table = anlcl_tables.table6(p, tmp_path).set_index(["split", "metric"])
    psnr = table.loc[("test", "psnr_y")]
    assert psnr["seeds"] == 2 and psnr["baseline"] == pytest.approx(22.5) and psnr["+ANLCL"] == pytest.approx(22.75)
    assert psnr["baseline sd"] == pytest.approx(np.std([22.0, 23.0], ddof=1))
    assert psnr["gain"] == pytest.approx(0.25) and psnr["CI low"] == pytest.approx(0.25) and psnr["answer"] == "yes"
    assert table.loc[("test", "ssim_y"), "answer"] == "no detectable effect"
    assert table.loc[("realproxy", "niqe"), "answer"] == "no: it hurts"  # higher NIQE is worse
    assert anlcl_tables.paper_table6()["gain PSNR"].tolist() == [1.18, 0.81]


def test_table_6_terms_runs_each_term_alone_on_the_first_seed_and_pairs_it_with_the_baseline(tmp_path):
    from derainlib.experiments import semi_drdnet_runs
    from derainlib.train import ANLCL_TERMS

    p = get_profile("cpu")
    specs = semi_drdnet_runs.table_runs(semi_drdnet_runs.ANLCL_TERMS_TABLE, p)
    assert [s.run_id for s in specs] == ["rain200h-bl_se_sdcab-m16b8-anlcl-layer-v2-s0",
                                         "rain200h-bl_se_sdcab-m16b8-anlcl-asymmetric-v2-s0"]
    assert all(s in semi_drdnet_runs.study_queue(p) for s in specs)
    configs = [semi_drdnet_runs.train_config(s, p, tmp_path) for s in specs]
    assert [c.anlcl_terms for c in configs] == [("layer",), ("asymmetric",)]
    both = semi_drdnet_runs.table_runs(semi_drdnet_runs.ANLCL_TABLE, p)[1]
    assert semi_drdnet_runs.train_config(both, p, tmp_path).anlcl_terms == ANLCL_TERMS
    with pytest.raises(ValueError, match="needs anlcl_loss=True"):
        replace(specs[0], anlcl_loss=False)
    with pytest.raises(ValueError, match="anlcl_term='location': expected one of"):
        replace(specs[0], anlcl_term="location")

    assert set(anlcl_tables.table6_terms(p, tmp_path)["answer"]) == {"not run yet"}
    base = semi_drdnet_runs.table_runs(semi_drdnet_runs.ANLCL_TABLE, p)[0]
    shift = {base.run_id: 0.0, both.run_id: -2.0, specs[0].run_id: -1.5, specs[1].run_id: 0.0}
    for spec in (base, both, specs[0]):  # the asymmetric term's run has not finished
        folder = tmp_path / spec.run_id
        folder.mkdir()
        (folder / study.METRICS).write_text(json.dumps({"run_id": spec.run_id}))
        pd.DataFrame({"step": [1, 2], "detail": [0.3, 0.1], "anlcl_layer": [5.0, 3.3]}).to_csv(folder / "log.csv")
        for split in ("test", "realproxy"):
            psnr = 20.0 + np.arange(5.0) + shift[spec.run_id]
            pd.DataFrame({"name": [f"img{i}" for i in range(5)], "psnr_y": psnr, "ssim_y": 0.5 + 0 * psnr,
                          "niqe": 4.0 + 0 * psnr}).to_csv(folder / f"scores-{split}.csv", index=False)
    table = anlcl_tables.table6_terms(p, tmp_path).set_index(["setting", "split", "metric"])
    layer = table.loc[("layer term alone", "test", "psnr_y")]
    assert layer["gain"] == pytest.approx(-1.5) and layer["answer"] == "no: it hurts"
    assert layer["baseline"] == pytest.approx(22.0) and layer["final anlcl_layer"] == pytest.approx(3.3)
    assert math.isnan(layer["final anlcl_asymmetric"])  # not logged by this run
    assert table.loc[("both terms (Table 6)", "realproxy", "psnr_y"), "gain"] == pytest.approx(-2.0)
    assert table.loc[("asymmetric term alone", "test", "psnr_y"), "answer"] == "not run yet"


# --------------------------------------------------------------------------- figures


def test_fig7_and_fig10_figures_from_a_tiny_model(tmp_path):
    log = pd.DataFrame({"stage": [1, 2, 2], "step": [1, 2, 3], "dist_image": [np.nan, 0.5, 0.4],
                        "dist_rain": [np.nan, 0.3, 0.2], "dist_image_rain": [np.nan, 1.0, 1.1]})
    fig = anlcl_figures.distance_curves({"non-local": log})
    assert len(fig.axes[0].lines) == 1 and list(fig.axes[0].lines[0].get_xdata()) == [2, 3]
    torch.manual_seed(0)
    net = ANLCLNetworks(4, 1)
    features = layer_patch_features(net, torch.rand(2, 3, 40, 40), patches_per_image=6)
    assert features[IMAGE].shape == (12, 256) and features[RAIN].shape == (12, 256)
    separation = layer_separation(features)
    assert -1 <= separation["silhouette"] <= 1 and separation["spread_rain"] >= 0
    points = layer_tsne({"m": features})
    assert len(points) == 24 and set(points["group"]) == {IMAGE, RAIN}
    assert len(anlcl_figures.figure10(points).axes) == 1


def test_separation_sees_apart_and_mixed_layers():
    rng = np.random.default_rng(0)
    apart = {IMAGE: rng.normal(0, 0.1, (30, 4)), RAIN: rng.normal(3, 0.1, (30, 4))}
    mixed = {IMAGE: rng.normal(0, 1, (30, 4)), RAIN: rng.normal(0, 1, (30, 4))}
    assert layer_separation(apart)["silhouette"] > 0.8 > 0.2 > layer_separation(mixed)["silhouette"]


# --------------------------------------------------------------------------- Fig. 6 categories


def _scene(seed=0, veil=0.1, size=96, tile=24):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:tile, 0:tile] - tile / 2
    clean = np.empty((size, size))
    for ty in range(0, size, tile):  # each tile a step edge at its own angle, offset and contrast
        for tx in range(0, size, tile):
            angle, offset = rng.uniform(0, np.pi), rng.uniform(-4, 4)
            low, high = rng.uniform(0.1, 0.4), rng.uniform(0.6, 0.9)
            clean[ty:ty + tile, tx:tx + tile] = np.where(np.cos(angle) * xx + np.sin(angle) * yy > offset, high, low)
    clean[size // 2:, size // 2:] = rng.random((size // 2, size // 2))  # texture: noise
    clean = np.clip(clean + rng.normal(0, 0.02, clean.shape), 0, 1)  # sensor noise: no patch is perfectly flat
    rain = np.zeros((size, size))
    for x in range(4, size, 9):  # thin parallel streaks
        for t in range(size):
            if 0 <= x + t // 3 < size:
                rain[t, x + t // 3] = 0.4
    rain[: size // 3] += veil  # a veiling band
    clean = np.repeat(clean[..., None], 3, axis=2)
    rainy = np.clip(clean + rain[..., None], 0, 1)
    return clean, rainy


def test_six_categories_follow_the_documented_criteria_and_the_claim_holds_on_a_simple_rain_scene():
    clean, rainy = _scene()
    cats = pa.category_patches([clean], [rainy], n=20, candidates=1500, seed=0)
    assert list(cats) == list(pa.CATEGORIES) and all(len(c) == 20 for c in cats.values())
    _, smooth_coh = pa._gradient_statistics(cats["smooth"])
    edge_mag, edge_coh = pa._gradient_statistics(cats["edge"])
    tex_mag, tex_coh = pa._gradient_statistics(cats["texture"])
    smooth_mag, _ = pa._gradient_statistics(cats["smooth"])
    assert smooth_mag.max() <= min(edge_mag.min(), tex_mag.min())
    assert edge_coh.mean() > tex_coh.mean()
    stats = pa.category_statistics(cats)
    assert stats.set_index("category").loc["texture", "entropy"] > stats.set_index("category").loc["smooth", "entropy"]
    claim = pa.fig6_claim(stats)
    assert claim == {"entropy_lower": True, "rank_lower": True, "holds": True}


def test_without_rain_the_claim_cannot_be_judged():
    clean, _ = _scene()
    cats = pa.category_patches([clean], [clean], n=10, candidates=300)
    assert len(cats["streak"]) == 0 and pa.fig6_claim(pa.category_statistics(cats))["holds"] is None
    assert pa.effective_rank(np.tile(np.arange(16.0), (10, 16, 1))) == 1  # identical patches: one direction at most


def test_fig10_data_is_written_only_from_finished_models_and_read_back(monkeypatch, tmp_path):
    import pandas as pd

    from derainlib.experiments import anlcl_figures

    monkeypatch.setattr(anlcl_figures, "results_dir", lambda name: tmp_path / name)
    monkeypatch.setattr(anlcl_figures, "fig10_runs", lambda p, seed: {"w/o": tmp_path / "runs" / "a"})
    assert anlcl_figures.read_figure10_data("cpu") is None
    assert anlcl_figures.write_figure10_data("cpu") == []  # no model.pt yet: nothing written, no benchmark built
    points = pd.DataFrame({"model": ["w/o"], "group": ["image layer B"], "x": [1.0], "y": [2.0]})
    separation = pd.DataFrame({"model": ["w/o"], "silhouette": [0.1]})
    (tmp_path / "cpu").mkdir()
    for name, frame in zip(anlcl_figures.FIG10_FILES, (points, separation)):
        frame.to_csv(tmp_path / "cpu" / name, index=False)
    read_points, read_separation = anlcl_figures.read_figure10_data("cpu")
    pd.testing.assert_frame_equal(read_points, points)
    pd.testing.assert_frame_equal(read_separation, separation)

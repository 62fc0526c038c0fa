"""ANLCL's study runs: the queue, the command line, and one ci-size run trained, scored and recorded."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from derainlib import cli, study
from derainlib.experiments import anlcl_runs
from derainlib.experiments.anlcl_runs import RunSpec, default_run, main, run, study_queue, train_config
from derainlib.profiles import get_profile


def test_the_cpu_queue_starts_each_seed_with_the_default_setting(capsys):
    p = get_profile("cpu")
    queue = study_queue(p)
    defaults = [default_run(p, seed) for seed in p.seeds]
    assert [queue.index(d) for d in defaults] == sorted(queue.index(d) for d in defaults)
    assert queue[0] == defaults[0] and all(d in queue for d in defaults)
    assert len({spec.run_id for spec in queue}) == len(queue)
    assert all(spec.width == p.anlcl.width and spec.num_blocks == p.anlcl.num_blocks for spec in queue)
    assert main(["--profile", "cpu", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in lines] == [spec.run_id for spec in anlcl_runs.work_queue(p)]


def test_the_fp32_flag_lists_the_fp32_queue_of_the_runs_folder(capsys, monkeypatch, tmp_path):
    p = get_profile("cpu")
    monkeypatch.setattr(anlcl_runs, "runs_root", lambda profile: tmp_path)  # no run finished
    assert main(["--profile", "cpu", "--fp32", "--list"]) == 0
    listed = [line.split()[-1] for line in capsys.readouterr().out.splitlines()]
    assert listed == [spec.run_id for spec in anlcl_runs.work_queue(p, anlcl_runs.fp32_rows(p))]
    assert all("-fp32-" in run_id for run_id in listed if "stage1" not in run_id)


def test_park_cuts_a_stopped_runs_checkpoint_into_parts_to_commit(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(anlcl_runs, "runs_root", lambda profile: tmp_path)
    stopped = tmp_path / default_run("cpu", 1).run_id
    stopped.mkdir()
    (stopped / study.CHECKPOINT).write_bytes(b"x" * (study.CHECKPOINT_PART_BYTES + 1))
    assert main(["--profile", "cpu", "--park"]) == 0
    assert capsys.readouterr().out.strip() == f"split {stopped / study.CHECKPOINT} into parts"
    assert not (stopped / study.CHECKPOINT).exists() and study.run_state(stopped) == "in progress"


def test_runs_on_a_users_unlabeled_folder_never_share_the_studys_folder(tmp_path):
    mine = anlcl_runs.runs_root("cpu", real_root=tmp_path / "my-rain")
    assert mine != anlcl_runs.runs_root("cpu") and mine.name == "my-rain"


def test_a_spec_names_its_settings_and_rejects_unknown_ones():
    spec = default_run("cpu", 1)
    assert spec.run_id == "rain200h-realproxy-anlcl-m32b9-v2-s1"  # the study's reading: norms as sums
    ablation = RunSpec("rain200h", 0, 8, 2, positives="random", terms=("layer",))
    assert "pos-random-neg-nonlocal" in ablation.run_id and "terms-layer" in ablation.run_id
    with pytest.raises(ValueError, match="positives=.far.: expected one of"):
        RunSpec("rain200h", 0, 8, 2, positives="far")
    with pytest.raises(ValueError, match="unknown contrastive terms"):
        RunSpec("rain200h", 0, 8, 2, terms=("margin",))


def test_the_config_reads_the_profile_and_the_realproxy_train_split(tmp_path):
    p = get_profile("cpu")
    config = train_config(default_run(p, 0), p, tmp_path)
    assert (config.pretrain_steps, config.steps, config.crop_size) == (p.anlcl.pretrain_iterations,
                                                                        p.anlcl.iterations, p.anlcl.crop_size)
    assert config.real_root.endswith("RealProxy/train/input")
    assert config.sampling.num_negatives == p.anlcl.num_negatives
    assert train_config(default_run(p, 0), p, tmp_path, real_root=tmp_path / "mine").real_root == str(tmp_path / "mine")


@pytest.mark.slow  # a minute on 2 cores: 16 steps with the 2.8 M-parameter PatchGAN, then 12 test images scored
def test_a_ci_run_trains_both_stages_and_records_its_scores(ci_benchmark, tmp_path):
    p = get_profile("ci")
    spec = default_run(p, 0)
    record = run(spec, p)  # stage 1 first, as its own run
    assert record["steps"] == p.anlcl.pretrain_iterations + p.anlcl.iterations
    assert record["stage"] == 2 and record["stage1_run"] == spec.stage1.run_id
    stage1 = study.read_record(anlcl_runs.runs_root(p) / spec.stage1.run_id)
    assert stage1["stage"] == 1 and stage1["steps"] == p.anlcl.pretrain_iterations
    assert math.isfinite(stage1["realproxy"]["psnr_y"])
    assert record["benchmark_renderer_version"] == 2 and "collapsed" in record
    for split in ("realproxy", "test"):
        assert math.isfinite(record[split]["psnr_y"]) and math.isfinite(record[split]["ssim_rgb"])
    assert "niqe" in record["realproxy"] and record["realproxy"]["images"] == p.n_test
    run_dir = anlcl_runs.runs_root(p) / spec.run_id
    saved = json.loads((run_dir / study.METRICS).read_text())
    assert saved["run_id"] == spec.run_id and saved["steps"] == record["steps"]
    assert (run_dir / "log.csv").exists() and not (run_dir / "checkpoint.pt").exists()
    image = next((ci_benchmark / "RealProxy" / "test").rglob("*.png"))
    assert cli.main([str(image), str(tmp_path / "out.png"), "--checkpoint", str(run_dir / "model.pt"),
                     "--device", "cpu"]) == 0
    assert (tmp_path / "out.png").exists()


def test_the_stage_one_check_trains_a_variant_and_its_last_variant_is_the_studys_stage_one(ci_benchmark):
    from derainlib.experiments import anlcl_stage1_check as check

    study = anlcl_runs.train_config(anlcl_runs.Stage1Spec("rain200h", 0, 32, 9), "cpu", ci_benchmark)
    last = check.variant_config(check.VARIANTS[-1], "cpu", ci_benchmark, study.pretrain_steps)
    assert last.stage_learning_rate(1) == study.stage_learning_rate(1) == 1e-3
    assert last.neck_norm == study.neck_norm is False and last.loss_weights == study.loss_weights
    first = check.variant_config(check.VARIANTS[0], "cpu", ci_benchmark, 10)
    assert first.neck_norm and first.loss_weights.supervised_background == 1.0 and first.stage_learning_rate(1) == 1e-4
    row = check.run_variant(check.VARIANTS[-1], "ci", steps=2, data_root=ci_benchmark)
    assert row["steps"] == 2 and row["images"] > 0 and math.isfinite(row["val_psnr_y"])
    assert math.isfinite(row["supervised_background"]) and row["neck_norm"] is False


def test_the_stage_one_check_shares_one_file_in_the_variants_order_and_replaces_a_rerun(tmp_path):
    from derainlib.experiments import anlcl_stage1_check as check

    output = tmp_path / "variants.csv"
    row = {"variant": "", "steps": 250, "val_psnr_y": 0.0}
    for index, value in ((3, 1.0), (0, 2.0), (3, 3.0)):  # a second process's row, then a rerun of the first
        check.write_row(output, row | {"variant": check.VARIANTS[index].name, "val_psnr_y": value})
    rows = pd.read_csv(output)
    assert list(rows["variant"]) == [check.VARIANTS[0].name, check.VARIANTS[3].name]
    assert list(rows["val_psnr_y"]) == [2.0, 3.0]
    assert check.finished_row(output, check.VARIANTS[3].name, 250)["val_psnr_y"].item() == 3.0
    assert check.finished_row(output, check.VARIANTS[3].name, 100).empty
    assert check.finished_row(output, check.VARIANTS[1].name, 250).empty


def test_a_rerun_check_keeps_the_variants_it_finished_and_trains_the_rest(tmp_path):
    from derainlib.experiments import anlcl_stage1_check as check

    output, trained = tmp_path / "variants.csv", []

    def train(variant, steps):
        trained.append((variant.name, steps))
        return {"variant": variant.name, "steps": steps, "val_psnr_y": 1.0}

    names = [variant.name for variant in check.VARIANTS]
    check.run_variants(output, [(check.VARIANTS[2], 5)], train, names)
    check.run_variants(output, [(check.VARIANTS[0], 5), (check.VARIANTS[2], 5), (check.VARIANTS[2], 7)], train, names)
    assert trained == [(names[2], 5), (names[0], 5), (names[2], 7)]
    assert list(pd.read_csv(output)["variant"]) == [names[0], names[2], names[2]]


def test_the_stage_two_check_starts_from_a_stage_one_model_and_scores_its_variants(ci_benchmark, tmp_path):
    from derainlib.experiments import anlcl_stage2_check as check
    from derainlib.train_anlcl import train_anlcl

    train_anlcl(train_config(anlcl_runs.Stage1Spec("rain200h", 0, 8, 2), "ci", ci_benchmark), tmp_path / "stage1",
                progress=False)
    start = tmp_path / "stage1" / "model.pt"
    study = check.variant_config(check.VARIANTS[0], "ci", ci_benchmark, 3, start)
    assert study.terms == ("layer", "location", "asymmetric") and study.rain_prior_on == "rain" and study.steps == 3
    public = check.variant_config(check.VARIANTS[4], "ci", ci_benchmark, 3, start)
    assert public.rain_prior_on == "residual" and public.loss_weights.rain_sparsity == 0.1
    anchored = check.variant_config(check.VARIANTS[5], "ci", ci_benchmark, 3, start)
    assert anchored.loss_weights.rain_sparsity == 10.0 and anchored.loss_weights.layer == 1.0
    before = check.run_variant(check.STAGE_1_ROW, "ci", 0, data_root=ci_benchmark, start=start)
    after = check.run_variant(check.VARIANTS[4], "ci", 2, data_root=ci_benchmark, start=start)
    assert before["realproxy_val_psnr_y"] != after["realproxy_val_psnr_y"]  # stage 2 changed G_B
    assert before["realproxy_rainy_psnr_y"] == after["realproxy_rainy_psnr_y"]
    assert math.isfinite(after["consistency"]) and 0.0 <= after["realproxy_out_of_range"] <= 1.0
    assert 0 < after["rain200h_images"] <= check.RAIN200H_VALIDATION_IMAGES and "wall_time_s" not in before


def test_the_study_keeps_every_network_only_where_stage_two_or_fig_10_reads_it():
    from dataclasses import replace

    p = get_profile("cpu")
    fig10 = list(anlcl_runs.fig10_specs(p, p.seeds[0]).values())
    assert len(set(fig10)) == 3 and all(anlcl_runs.keeps_every_network(spec, p) for spec in fig10)
    assert anlcl_runs.keeps_every_network(default_run(p, 1).stage1, p)
    assert not anlcl_runs.keeps_every_network(default_run(p, 1), p)  # Fig. 10 reads the first seed
    assert not anlcl_runs.keeps_every_network(replace(default_run(p, 0), positives="random"), p)

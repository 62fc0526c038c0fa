"""The Semi-DRDNet study: run specs, the queue, one run end to end, and the paper-comparison tables."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from derainlib.experiments import semi_drdnet as semi
from derainlib import study
from derainlib.experiments import semi_drdnet_runs as semi_runs
from derainlib.data.benchmark import benchmark_renderer_version
from derainlib.profiles import PROFILES, Profile
from derainlib.train import train

def tiny_profile(iterations: int, **changes) -> Profile:
    """The ci profile with ``iterations`` Semi-DRDNet steps (its diagnostic window too) and ``changes``."""
    ci = PROFILES["ci"]
    sizes = dataclasses.replace(ci.semi_drdnet, iterations=iterations, stability_window=iterations)
    return dataclasses.replace(ci, semi_drdnet=sizes, **changes)


TABLES = ("II", "III", "IV", "V", "V-supervised", "VII", "VII-colour", "fig13")


@pytest.mark.parametrize("profile", ["ci", "cpu"])
def test_every_table_has_runs_and_the_queue_holds_each_once(profile):
    queue = semi.study_queue(profile)
    ids = [spec.run_id for spec in queue]
    assert len(ids) == len(set(ids))
    for table in TABLES:
        runs = semi.table_runs(table, profile)
        assert runs and {spec.run_id for spec in runs} <= set(ids), table
    seeds, datasets = PROFILES[profile].seeds, (1 if profile == "ci" else 3)
    assert len(semi.table_runs("II", profile)) == datasets * len(seeds) * 6
    assert len(semi.table_runs("VII", profile)) == datasets * len(seeds) * 4
    assert len(semi.table_runs("III", profile)) == 9
    # The first runs of the queue are the Rain200H Table II runs of the first seed.
    assert [spec.variant for spec in queue[:6]] == list(semi.TABLE_II_VARIANTS)


def test_runs_shared_between_tables_are_the_same_run():
    ii = {spec.run_id for spec in semi.table_runs("II", "cpu")}
    vii_dual = {spec.run_id for spec in semi.table_runs("VII", "cpu") if spec.contrastive == "dual"}
    assert vii_dual <= ii
    distinct = {spec.run_id for table in TABLES for spec in semi.table_runs(table, "cpu")}
    specs = {spec for table in TABLES for spec in semi.table_runs(table, "cpu")}
    assert len(distinct) == len(specs)  # no two different specs share a run id


def test_unknown_table_is_an_error():
    with pytest.raises(ValueError, match="unknown table 'VI'"):
        semi.table_runs("VI", "ci")


def _runs(psnr_by_variant: dict[str, list[float]], dataset: str = "rain200h") -> pd.DataFrame:
    rows = []
    for variant, values in psnr_by_variant.items():
        for seed, value in enumerate(values):
            rows.append({"dataset": dataset, "variant": variant, "seed": seed, "test_psnr_y": value,
                         "test_ssim_y": 0.5, "realproxy_psnr_y": 20.0, "realproxy_niqe": 4.0})
    return pd.DataFrame(rows)


def test_table_ii_comparison_reports_mean_sd_and_kendall_tau():
    paper = [semi.PAPER_TABLE_II["rain200h"][variant][0] for variant in semi.TABLE_II_VARIANTS]
    same_order = _runs({variant: [p - 5, p - 5.2] for variant, p in zip(semi.TABLE_II_VARIANTS, paper)})
    table, taus = semi.compare_table_ii(same_order)
    row = table[(table["dataset"] == "rain200h") & (table["variant"] == "BL")].iloc[0]
    assert row["PSNR (ours)"].startswith(f"{paper[0] - 5.1:.2f} ± 0.14 (n=2)")
    assert row["PSNR (paper)"] == 26.33
    rain200h = taus.set_index("dataset").loc["rain200h"]
    assert rain200h["kendall_tau"] == pytest.approx(1.0) and rain200h["complete"]
    assert math.isnan(taus.set_index("dataset").loc["rain800", "kendall_tau"])  # no runs there
    assert "agrees with the paper's (Kendall tau 1.00)" in semi.verdict(taus, "Table II")

    reversed_order = _runs({variant: [40 - p] for variant, p in zip(semi.TABLE_II_VARIANTS, paper)})
    _, taus = semi.compare_table_ii(reversed_order)
    assert taus.set_index("dataset").loc["rain200h", "kendall_tau"] == pytest.approx(-1.0)
    assert "rain200h: our ordering reverses the paper's" in semi.verdict(taus, "Table II")


def test_kendall_tau_needs_two_finished_values():
    assert math.isnan(semi.kendall_tau([1.0], [2.0]))
    assert math.isnan(semi.kendall_tau([1.0, np.nan], [2.0, 3.0]))


def test_one_run_end_to_end_writes_metrics_with_provenance(monkeypatch, tmp_path):
    tiny = tiny_profile(2, n_train=4, n_val=2, n_test=2)
    monkeypatch.setattr(study, "_notebook_runs_root", lambda: tmp_path / "runs")
    monkeypatch.setenv("DERAINLIB_DATA", str(tmp_path / "data"))
    spec = semi.supervised_run("rain200h", "BL+SE+SDCAB", 0, 4, 1)
    record = semi.run(spec, tiny)
    run_dir = semi.runs_root(tiny) / spec.run_id
    assert run_dir.is_relative_to(tmp_path / "runs")
    written = json.loads((run_dir / "metrics.json").read_text())
    assert json.dumps(written, sort_keys=True) == json.dumps(record, sort_keys=True)  # NaN != NaN, so as text
    assert not (run_dir / "checkpoint.pt").exists() and (run_dir / "model.pt").exists()
    assert record["steps"] == 2 and record["test"]["images"] == 2 and record["realproxy"]["images"] == 2
    assert record["commits"] and record["machines"] and record["vgg_weights"] is None
    assert np.isfinite(record["test"]["psnr_y"]) and np.isnan(record["realproxy"]["niqe"])  # 128 px: too small
    assert record["realproxy"]["niqe_images"] == 0 and "niqe_images" not in record["test"]
    segments = json.loads((run_dir / "segments.json").read_text())
    assert segments[0]["steps"] == [0, 2] and segments[0]["profile"] == "ci"
    # A finished run is read back, not retrained.
    monkeypatch.setattr(semi_runs, "train", lambda *a, **k: pytest.fail("retrained a finished run"))
    assert json.dumps(semi.run(spec, tiny), sort_keys=True) == json.dumps(record, sort_keys=True)
    table = semi.collect_runs(tiny)
    assert list(table["run_id"]) == [spec.run_id] and table.loc[0, "profile"] == "ci"


def test_a_checkpoint_parked_in_parts_resumes_to_the_same_run(monkeypatch, tmp_path):
    tiny = tiny_profile(6, checkpoint_every=3, n_train=4, n_val=2, n_test=2)
    monkeypatch.setenv("DERAINLIB_DATA", str(tmp_path / "data"))
    spec = semi.supervised_run("rain200h", "BL+SE+SDCAB", 0, 4, 1)
    monkeypatch.setattr(study, "_notebook_runs_root", lambda: tmp_path / "straight")
    straight = semi.run(spec, tiny)

    def stopped_at_step_5(*args, **kwargs):
        def interrupt(step, _values):
            if step == 5:
                raise KeyboardInterrupt
        return train(*args, **kwargs, on_step=interrupt)

    monkeypatch.setattr(study, "_notebook_runs_root", lambda: tmp_path / "parked")
    monkeypatch.setattr(semi_runs, "train", stopped_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        semi.run(spec, tiny)
    checkpoint = semi.runs_root(tiny) / spec.run_id / "checkpoint.pt"
    assert study.park_checkpoints(semi.runs_root(tiny), part_bytes=4096) == [checkpoint]
    assert not checkpoint.exists() and len(list(checkpoint.parent.glob("checkpoint.pt.part-*"))) > 1
    monkeypatch.setattr(semi_runs, "train", train)
    resumed = semi.run(spec, tiny)
    scores = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")  # not seconds_per_image: timing differs
    for split in ("test", "realproxy"):
        assert [resumed[split][key] for key in scores] == [straight[split][key] for key in scores]
    assert not list(checkpoint.parent.glob("checkpoint.pt*"))
    segments = json.loads((checkpoint.parent / "segments.json").read_text())
    assert [segment["steps"] for segment in segments] == [[0, None], [3, 6]]


def test_run_table_lists_missing_runs_instead_of_training_them_outside_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(semi_runs, "runs_root", lambda profile, data_root=None, benchmark_seed=0: tmp_path)
    monkeypatch.setattr(semi_runs, "run", lambda *a, **k: pytest.fail("trained although train_missing is off"))
    runs, missing = semi.run_table("V", "cpu")
    assert runs.empty and missing == [spec.run_id for spec in semi.table_runs("V", "cpu")]
    table = semi.compare_table_v(runs)
    assert table["PSNR (ours)"].isna().all() and list(table["PSNR (paper)"]) == [31.32, 28.92, 27.73, 26.29]
    assert semi.missing_note(missing).startswith("4 run(s) not finished yet")


def test_describe_states_the_scale():
    described = dict(semi.describe(semi.semi_supervised_run("rain200h", 0, 16, 8), "cpu").values)
    assert "M=16, D=8+3, 169,062 parameters" in described["network"]
    assert "x0.2 at steps 400, 667, 1067 of 2000" in described["optimiser"]
    assert "'hed'" in described["DualSCRNet"]


def test_kendall_tau_leaves_out_unfinished_variants():
    assert semi.kendall_tau([1.0, 2.0, np.nan, 4.0], [10.0, 20.0, 30.0, 40.0]) == pytest.approx(1.0)
    assert semi.kendall_tau([3.0, 2.0, np.nan, 1.0], [10.0, 20.0, 30.0, 40.0]) == pytest.approx(-1.0)


def test_readings_name_their_runs_and_reach_the_training_config(tmp_path):
    literal = semi.semi_supervised_run("rain200h", 0, 16, 8, reading="literal")
    clamped = semi.semi_supervised_run("rain200h", 0, 16, 8, reading="clamp-clean-l1")
    assert literal.run_id == "rain200h-semi-drdnet-m16b8-semi-dual-s0"  # the name older runs were stored under
    assert clamped.run_id == "rain200h-semi-drdnet-m16b8-semi-dual-clamp-clean-l1-s0"
    config = semi.train_config(clamped, "cpu", tmp_path)
    assert (config.negative_base, config.clamp_contrastive, config.contrastive_distance) == ("clean", True, "l1")
    # a reading means nothing without DualSCRNet: supervised runs keep their names
    assert semi.supervised_run("rain200h", "BL", 0, 16, 8, reading="clamp").run_id == "rain200h-bl-m16b8-s0"
    with pytest.raises(ValueError, match="reading"):
        semi.semi_supervised_run("rain200h", 0, 16, 8, reading="loose")


def test_only_the_gpu_profile_trains_compiled(tmp_path):
    spec = semi.semi_supervised_run("rain200h", 0, 16, 8)
    modes = {profile: semi.train_config(spec, profile, tmp_path).compile_mode for profile in ("ci", "cpu", "gpu")}
    assert modes == {"ci": None, "cpu": None, "gpu": "reduce-overhead"}  # CUDA graphs need CUDA


def test_the_study_runs_use_the_study_reading():
    # the committed study's runs; the stable reading's (renderer version 2) are a separate series after them
    semi_runs = [spec for spec in semi.study_queue("cpu") if spec.contrastive and spec.reading != "stable"]
    assert semi_runs and all(spec.reading == semi.STUDY_READING and spec.renderer_version == 1 for spec in semi_runs)


def test_report_renders_finished_runs_beside_the_paper_and_lists_the_rest(monkeypatch, tmp_path):
    for module in (semi_runs, semi):  # the stable section reads the root through semi_drdnet's own name
        monkeypatch.setattr(module, "runs_root", lambda profile, data_root=None, benchmark_seed=0: tmp_path)
    adain = next(s for s in semi.table_runs("VII", "cpu") if s.run_id.startswith("rain200h") and s.contrastive == "aug_pos")
    colour = semi.table_runs("VII-colour", "cpu")[0]
    assert (colour.contrastive, colour.seed, colour.positive_augmentation) == ("aug_pos", adain.seed, "colour")
    for spec, psnr in ((semi.supervised_run("rain200h", "BL", 0, 16, 8), 25.125), (adain, 21.5), (colour, 22.5)):
        scores = {"psnr_y": psnr, "ssim_y": 0.75, "psnr_rgb": 24.0, "ssim_rgb": 0.7, "niqe": 5.0}
        (tmp_path / spec.run_id).mkdir()
        (tmp_path / spec.run_id / "metrics.json").write_text(json.dumps(
            {"run_id": spec.run_id, "spec": dataclasses.asdict(spec), "steps": 2000, "train_wall_time_s": 1.0,
             "test": scores, "realproxy": scores}))
    text = semi.report("cpu")
    assert "### Table II (cpu; 1 runs finished)" in text and "| rain200h | BL | 25.12 (n=1) | 26.330 |" in text
    assert "### Table V (cpu; 0 runs finished)\n\nno finished run yet" in text
    colour_section = text.split("### Table VII-colour (cpu; 1 runs finished)")[1].split("###")[0]
    assert "| aug_pos | adain | 21.50 (n=1) |" in colour_section and "| aug_pos | colour | 22.50 (n=1) |" in colour_section
    assert text.count("###") == 9 and "not finished yet" in text
    assert "### The stable reading: does unlabeled real rain help? (cpu)" in text and "not run yet" in text


def test_the_queue_cli_lists_each_runs_state(monkeypatch, tmp_path, capsys):
    first, second = (semi.supervised_run("rain200h", variant, 0, 16, 8) for variant in ("BL", "BL+SE"))
    monkeypatch.setattr(semi, "study_queue", lambda profile: [first, second])
    monkeypatch.setattr(semi, "runs_root", lambda profile, data_root=None, benchmark_seed=0: tmp_path / "runs")
    (tmp_path / "runs" / second.run_id).mkdir(parents=True)
    (tmp_path / "runs" / second.run_id / "metrics.json").write_text("{}")
    with study.try_lock(tmp_path / "runs" / first.run_id / study.RUN_LOCK) as got:
        assert got  # another worker is training `first`
        semi.main(["--profile", "cpu", "--list"])
    assert capsys.readouterr().out.splitlines() == [f"training     {first.run_id}", f"done         {second.run_id}"]


def test_only_names_unknown_run_ids(capsys):
    with pytest.raises(SystemExit):
        semi.main(["--profile", "cpu", "--only", "rain200h-bl-m16b8-s0", "rain200h-typo-s0", "--list"])
    assert "rain200h-typo-s0" in capsys.readouterr().err


def test_the_notebook_seed_is_the_benchmark_render_seed_from_notebook_to_run(monkeypatch, tmp_path):
    """A notebook's ``seed`` renders the benchmark (``benchmark_root``) and every run and table reads that
    rendering (``run``/``run_table`` with ``benchmark_seed``), in its own folders; training seeds stay the specs'."""
    tiny = tiny_profile(2, n_train=4, n_val=2, n_test=2)
    monkeypatch.setattr(study, "_notebook_runs_root", lambda: tmp_path / "runs")
    monkeypatch.setenv("DERAINLIB_DATA", str(tmp_path / "data"))
    seed = 1
    root = semi.benchmark_root(tiny, seed=seed)  # what the notebooks do first
    runs, missing = semi.run_table("IV", tiny, benchmark_seed=seed)
    assert missing == [] and len(runs) == 2
    assert json.loads((root / "MANIFEST.json").read_text())["recipe"]["seed"] == seed  # not re-rendered with 0
    spec = semi.table_runs("IV", tiny)[0]
    assert spec.seed == tiny.seeds[0]  # the training seed is the spec's, not the notebook's
    # the study's rain is the first renderer's, and every record and row says so
    assert benchmark_renderer_version(root) == semi_runs.RENDERER_VERSION == 1
    assert set(semi.collect_runs(tiny, semi.runs_root(tiny, benchmark_seed=seed))["renderer_version"]) == {1}
    on_seed_1 = json.loads((semi.runs_root(tiny, benchmark_seed=seed) / spec.run_id / "metrics.json").read_text())
    assert on_seed_1["benchmark_seed"] == seed and on_seed_1 == semi.run(spec, tiny, benchmark_seed=seed)
    assert on_seed_1["renderer_version"] == 1
    # The same spec on the seed-0 rendering is another run, in another folder, scored on other images.
    on_seed_0 = semi.run(spec, tiny)
    assert on_seed_0["benchmark_seed"] == 0 and semi.runs_root(tiny) != semi.runs_root(tiny, benchmark_seed=seed)
    assert on_seed_0["test"]["psnr_y"] != on_seed_1["test"]["psnr_y"]
    assert semi.benchmark_root(tiny) != root and json.loads((root / "MANIFEST.json").read_text())["recipe"]["seed"] == seed


def test_collect_rewrites_the_runs_table_from_the_run_folders(monkeypatch, tmp_path, capsys):
    """Runs unpacked from another machine appear in the runs table without training anything."""
    spec = semi.supervised_run("rain200h", "BL", 0, 16, 8)
    monkeypatch.setattr(semi, "runs_root", lambda profile, data_root=None, benchmark_seed=0: tmp_path / "runs")
    monkeypatch.setattr(semi_runs, "runs_root", lambda profile, data_root=None, benchmark_seed=0: tmp_path / "runs")
    monkeypatch.setattr(semi, "results_dir", lambda profile: tmp_path / "results")
    monkeypatch.setattr(semi.study, "work_through", lambda *args, **kwargs: pytest.fail("--collect trained"))
    scores = {"psnr_y": 25.5, "ssim_y": 0.75, "psnr_rgb": 24.0, "ssim_rgb": 0.7, "niqe": 5.0}
    (tmp_path / "runs" / spec.run_id).mkdir(parents=True)
    (tmp_path / "runs" / spec.run_id / "metrics.json").write_text(json.dumps(
        {"run_id": spec.run_id, "spec": dataclasses.asdict(spec), "steps": 2000, "train_wall_time_s": 1.0,
         "test": scores, "realproxy": scores, "profile": "cpu", "vgg_weights": "hed", "bf16": True, "patch_size": 64,
         "batch_size": 8, "commits": ["abc"], "machines": ["a CPU"]}))
    assert semi.main(["--profile", "cpu", "--collect"]) == 0
    table = pd.read_csv(tmp_path / "results" / "semi_drdnet_runs.csv")
    assert list(table["run_id"]) == [spec.run_id] and table["test_psnr_y"].iloc[0] == 25.5


def test_the_study_command_reads_a_users_data_root(monkeypatch, tmp_path, capsys):
    """--data-root reaches the runs' folder and training; --report, which compares the embedded study, refuses it."""
    seen = {}

    def fake_runs_root(profile, data_root=None, benchmark_seed=0):
        seen["data_root"] = data_root
        return tmp_path / "runs"

    monkeypatch.setattr(semi, "runs_root", fake_runs_root)
    monkeypatch.setattr(semi, "study_queue", lambda profile: [semi.supervised_run("rain200h", "BL", 0, 16, 8)])
    monkeypatch.setattr(semi.study, "work_through",
                        lambda queue, root, name, **kwargs: seen.update(runs=queue, root=root))
    assert semi.main(["--profile", "cpu", "--data-root", str(tmp_path / "data")]) == 0
    assert seen["data_root"] == str(tmp_path / "data") and seen["root"] == tmp_path / "runs"
    with pytest.raises(SystemExit):
        semi.main(["--profile", "cpu", "--data-root", str(tmp_path / "data"), "--report"])
    assert "--collect" in capsys.readouterr().err

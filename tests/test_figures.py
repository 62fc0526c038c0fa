"""The figure code of the notebooks: each figure on small synthetic inputs has its axes, labels, title and
(where there are several seeds) error bars, and a missing column is an error that names it."""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

from derainlib.experiments import data_tour  # noqa: E402
from derainlib.experiments import semi_drdnet as semi  # noqa: E402
from derainlib.experiments import semi_drdnet_figures as figures  # noqa: E402
from derainlib.models import build_network  # noqa: E402
from derainlib.profiles import get_profile  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def synthetic_runs(table: str, seeds_done: int = 3) -> pd.DataFrame:
    """One row per run of a cpu-profile table, as the study's records hold them, with made-up PSNRs."""
    rng = np.random.default_rng(0)
    rows = []
    for spec in semi.table_runs(table, "cpu"):
        if spec.seed >= seeds_done:
            continue
        rows.append({**dataclasses.asdict(spec), "run_id": spec.run_id, "steps": 2000,
                     "test_psnr_y": 25 + rng.normal(), "test_ssim_y": 0.8, "realproxy_psnr_y": 22.0,
                     "realproxy_ssim_y": 0.7, "realproxy_niqe": 4.0, "test_seconds_per_image": 0.1,
                     "patch_size": 64, "batch_size": 8, "bf16": True})
    return pd.DataFrame(rows)


def error_bar_lengths(ax) -> list[float]:
    lengths = []
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            for collection in container.lines[2]:
                lengths += [abs(segment[1][1] - segment[0][1]) for segment in collection.get_segments()]
    return lengths


def test_ablation_stats_average_over_seeds_beside_the_papers_numbers():
    runs = synthetic_runs("II")
    stats = figures.ablation_stats("II", runs)
    assert list(stats.columns) == list(figures.ABLATION_COLUMNS)
    assert len(stats) == 3 * len(semi.TABLE_II_VARIANTS) and (stats["n"] == 3).all()
    first = stats.iloc[0]
    values = runs[(runs["dataset"] == first["dataset"]) & (runs["variant"] == first["label"])]["test_psnr_y"]
    assert first["mean"] == pytest.approx(values.mean()) and first["sd"] == pytest.approx(values.std(ddof=1))
    assert first["paper"] == semi.PAPER_TABLE_II[first["dataset"]][first["label"]][0]
    assert len(figures.ablation_stats("II", runs.iloc[:4])) == 4  # unfinished variants are left out


@pytest.mark.parametrize("table", ["II", "III", "IV", "V", "V-supervised", "VII", "fig13"])
def test_every_ablation_chart_has_panels_labels_a_title_and_the_papers_values(table):
    stats = figures.ablation_stats(table, synthetic_runs(table))
    fig = figures.ablation_chart(stats, title=f"Table {table}")
    panels = [ax for ax in fig.axes if ax.get_xticks().size]
    assert len(panels) == stats["dataset"].nunique()
    assert fig._suptitle.get_text() == f"Table {table}"
    assert panels[0].get_ylabel() == "test Y-PSNR (dB)"
    assert all(ax.get_title() for ax in panels)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(text.startswith("ours") for text in legend)
    first_panel = stats[stats["dataset"] == stats["dataset"].iloc[0]]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == list(first_panel["label"])
    assert ("paper" in legend) == stats["paper"].notna().any()


def test_ablation_chart_draws_sd_error_bars_only_where_there_are_seeds():
    stats = figures.ablation_stats("VII", synthetic_runs("VII"))
    fig = figures.ablation_chart(stats, title="Table VII")
    lengths = error_bar_lengths(fig.axes[0])
    expected = stats[stats["dataset"] == "rain200l"]["sd"]
    assert sorted(np.round(lengths, 6)) == sorted(np.round(2 * expected, 6))  # a bar spans mean ± sd
    one_seed = figures.ablation_stats("VII", synthetic_runs("VII", seeds_done=1))
    assert (one_seed["n"] == 1).all() and one_seed["sd"].isna().all()
    assert not any(error_bar_lengths(figures.ablation_chart(one_seed, title="one seed").axes[0]))


def test_ablation_chart_fails_loudly_on_missing_columns_and_empty_input():
    stats = figures.ablation_stats("IV", synthetic_runs("IV"))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sd'\]"):
        figures.ablation_chart(stats.drop(columns="sd"), title="x")
    with pytest.raises(ValueError, match="no finished runs"):
        figures.ablation_chart(stats.iloc[:0], title="x")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['test_psnr_y'\]"):
        figures.ablation_stats("IV", synthetic_runs("IV").drop(columns="test_psnr_y"))


def test_study_table_scale_and_verdicts_come_from_the_records():
    runs = pd.concat([synthetic_runs("II"), synthetic_runs("VII")], ignore_index=True).drop_duplicates("run_id")
    table, verdict = figures.study_table("II", runs)
    assert len(table) == 3 * len(semi.TABLE_II_VARIANTS) and "(n=3)" in table["PSNR (ours)"].iloc[0]
    assert verdict.count("Table II") == 3 and "Kendall tau" in verdict
    assert set(figures.study_taus("VII", runs)["dataset"]) == set(semi.DATASETS)
    scale = figures.study_scale(runs)
    assert "profile cpu" in scale and "2000 training steps" in scale and "seeds 0, 1, 2" in scale and "M = 16" in scale
    with pytest.raises(ValueError, match="missing column"):
        figures.study_scale(runs.drop(columns="bf16"))


def test_load_study_runs_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="runs.csv: no study records"):
        figures.load_study_runs(tmp_path / "runs.csv")
    with pytest.raises(FileNotFoundError, match="log.csv: no training log for run absent"):
        figures.load_logs(["absent"], tmp_path)


def synthetic_log(seed: int, semi_supervised: bool = False) -> pd.DataFrame:
    steps = np.arange(20, 2001, 20)
    rng = np.random.default_rng(seed)
    log = pd.DataFrame({"epoch": np.arange(1, len(steps) + 1), "step": steps, "val_psnr_y": np.nan,
                        "train_psnr_y": 25.0, "detail": 0.2 / np.sqrt(steps) + rng.random(len(steps)) * 1e-3})
    log.loc[log["step"] % 400 == 0, "val_psnr_y"] = 26 + rng.normal(size=5)
    if semi_supervised:
        log["dual_sup"] = 10.0
    return log


def test_training_curves_show_mean_and_sd_over_seeds_against_steps():
    logs = {"BL": [synthetic_log(s) for s in range(3)], "Semi-DRDNet": [synthetic_log(s, True) for s in range(3)]}
    fig = figures.training_curves(logs, title="Rain200H")
    loss, psnr = fig.axes
    assert loss.get_xlabel() == psnr.get_xlabel() == "training step"
    assert "L_d" in loss.get_ylabel() and psnr.get_ylabel() == "validation Y-PSNR (dB)"
    assert loss.get_yscale() == "log" and fig._suptitle.get_text() == "Rain200H"
    assert len(loss.get_lines()) == 2 and sum(isinstance(c, PolyCollection) for c in psnr.collections) == 2
    mean_psnr = psnr.get_lines()[0].get_ydata()
    expected = pd.concat(logs["BL"]).groupby("step")["val_psnr_y"].mean().dropna().to_numpy()
    np.testing.assert_allclose(mean_psnr, expected)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["BL (n=3)", "Semi-DRDNet (n=3)"]
    with pytest.raises(ValueError, match=r"'BL'.*missing column\(s\) \['val_psnr_y'\]"):
        figures.training_curves({"BL": [synthetic_log(0).drop(columns="val_psnr_y")]}, title="x")
    with pytest.raises(ValueError, match="no logs for 'BL'"):
        figures.training_curves({"BL": []}, title="x")


def test_stability_curves_have_axis_labels_and_a_title():
    steps = pd.DataFrame({"step": np.arange(1, 101), "detail": np.linspace(1, 0.1, 100), "dual_sup": 5.0,
                          "dual_unsup": 3.0, "train_psnr_y": np.linspace(15, 25, 100)})
    fig = figures.stability_curves({"supervised": steps.drop(columns=["dual_sup", "dual_unsup"]), "literal": steps})
    assert "Stability" in fig._suptitle.get_text()
    assert all(ax.get_xlabel() == "training step" and ax.get_ylabel() and ax.get_title() for ax in fig.axes)
    assert len(fig.axes[0].get_lines()) == 2 and len(fig.axes[1].get_lines()) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["supervised", "literal"]
    with pytest.raises(ValueError, match=r"'literal'.*missing column\(s\) \['detail'\]"):
        figures.stability_curves({"literal": steps.drop(columns="detail")})


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory):
    from derainlib.data import build_benchmark

    tiny = dataclasses.replace(get_profile("ci"), name="tiny", n_train=2, n_val=1, n_test=2, image_size=64)
    return build_benchmark(tmp_path_factory.mktemp("bench") / "tiny", tiny, seed=3, workers=1, progress=False,
                           domains=("rain200h", "realproxy"))


def test_model_comparison_and_qualitative_figures_label_every_panel(tiny_benchmark):
    models = {"BL": (build_network("BL", 4, 1).eval(), False), "BL+SE": (build_network("BL+SE", 4, 1).eval(), False)}
    fig = figures.model_comparison_figure(models, tiny_benchmark, rows=(("rain200h", 0), ("realproxy", 1)),
                                          title="supervised models")
    assert len(fig.axes) == 2 * 4 and fig._suptitle.get_text() == "supervised models"
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("rain200h #0: rainy input") and titles[1].startswith("BL\n") and "dB" in titles[2]
    assert titles[7] == "clean (held out)"
    with pytest.raises(ValueError, match="no model"):
        figures.model_comparison_figure({}, tiny_benchmark, title="x")
    semi_model = build_network("Semi-DRDNet", 4, 1).eval()
    fig = figures.qualitative_figure(semi_model, tiny_benchmark, scenes=(0,), title="Semi-DRDNet (collapsed)")
    assert len(fig.axes) == 2 * 5 and fig._suptitle.get_text() == "Semi-DRDNet (collapsed)"


def test_domain_crops_outline_the_crop_and_show_it_pixel_for_pixel(tiny_benchmark):
    fig = data_tour.domain_crops(tiny_benchmark, crop=32)
    top, bottom = fig.axes[:2], fig.axes[2:]
    assert [ax.get_title() for ax in top] == ["rain200h", "realproxy"]
    assert all(ax.patches for ax in top)  # the red box
    assert bottom[0].get_images()[0].get_array().shape[:2] == (32, 32)
    assert bottom[0].get_images()[0].get_interpolation() == "nearest"
    assert "full resolution" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="does not fit"):
        data_tour.domain_crops(tiny_benchmark, crop=500)


def test_rain_statistics_chart_labels_units_and_fails_on_missing_columns():
    statistics = pd.DataFrame({"domain": ["rain200l", "rain200h"], "coverage": [0.1, 0.4], "input_psnr": [25.0, 18.0]})
    fig = data_tour.rain_statistics_chart(statistics, title="cpu benchmark")
    coverage, baseline = fig.axes
    assert coverage.get_xlabel() == "pixels covered by rain (%)" and baseline.get_xlabel() == "rainy input Y-PSNR (dB)"
    assert [p.get_width() for p in coverage.patches] == pytest.approx([10.0, 40.0])
    assert fig._suptitle.get_text() == "cpu benchmark"
    with pytest.raises(ValueError, match=r"missing column\(s\) \['input_psnr'\]"):
        data_tour.rain_statistics_chart(statistics.drop(columns="input_psnr"), title="x")


def _stable_record(folder, test_psnr, realproxy_psnr, dose=None, val=None):
    folder.mkdir(parents=True)
    group = lambda psnr: {"psnr_y": psnr, "ssim_y": 0.5, "niqe": 4.0}  # noqa: E731
    record = {"test": group(test_psnr), "realproxy": group(realproxy_psnr)}
    if dose is not None:
        record |= {"spec": {"lambda_dual": dose, "seed": 0}, "stable": {"val_psnr_y": val}, "collapsed": None}
    (folder / "metrics.json").write_text(__import__("json").dumps(record))
    pd.DataFrame({"step": [10, 20], "detail": [0.1, 0.05], "val_psnr_y": [np.nan, 20.0]}).to_csv(folder / "log.csv",
                                                                                                 index=False)


def test_the_stable_figures_find_finished_runs_and_the_selected_dose(tmp_path):
    from derainlib.experiments.semi_drdnet_stable import DOSES

    sizes = get_profile("cpu").semi_drdnet
    control = semi.stable_run("rain200h", 0, sizes.width, sizes.num_blocks, 0.0)
    _stable_record(tmp_path / control.init_from, 29.0, 22.0)
    empty = figures.stable_study_runs("cpu", tmp_path)
    assert empty["dose"] is None and [s.run_id for s in empty["supervised"]] == [control.init_from]
    assert empty["control"] == [] and empty["selected"] == []
    for dose in DOSES:  # the sweep: the best validation score above zero wins (0.01 here)
        spec = semi.stable_run("rain200h", 0, sizes.width, sizes.num_blocks, dose)
        _stable_record(tmp_path / spec.run_id, 29.0 + dose, 22.0, dose=dose, val=30.0 + (dose == 0.01))
    stable = figures.stable_study_runs("cpu", tmp_path)
    assert stable["dose"] == 0.01 and [s.lambda_dual for s in stable["selected"]] == [0.01]
    assert [s.run_id for s in stable["control"]] == [control.run_id]
    table = figures.stable_evaluation(stable, tmp_path).set_index("seeds")
    assert table.loc[1, "test psnr_y"].tolist() == ["29.00 (n=1)", "29.00 (n=1)", "29.01 (n=1)"]
    joined = figures.stable_logs(stable["selected"], tmp_path)[0]
    assert joined["step"].tolist() == [10, 20, 30, 40]  # the fine-tune continues its warm start's steps

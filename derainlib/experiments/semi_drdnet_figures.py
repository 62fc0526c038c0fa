"""Figures of the Semi-DRDNet notebooks, and the committed study they show first.

- The study (``results/cpu``): :func:`load_study_runs` reads the per-run records the study queue
  commits, :func:`study_scale` says at what scale they were trained, :func:`study_table` rebuilds each
  of the paper's tables from them beside the paper's numbers, :func:`ablation_stats` gives the
  numbers behind :func:`ablation_chart`, and :func:`training_curves` draws the runs' logs.
- A trained model at work: :func:`model_comparison_figure` (several models on the same test scenes),
  :func:`qualitative_figure` (one model's rain and detail layers), and Fig. 8 (:func:`figure8`).
- The stability diagnostic: :func:`stability_curves`.
- The stable reading's models (notebook 10): :func:`stable_study_runs` finds the finished supervised warm starts,
  λ = 0 and selected-dose runs, :func:`stable_logs` joins each fine-tune's log to its warm start's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import study
from ..analysis.embeddings import mean_nearest_distance, tsne_embedding, vgg_features
from ..data.benchmark import available_domains, open_split
from ..evaluation import derain
from ..losses.contrastive import VGG16Features, colour_transfer
from ..metrics import psnr, to_uint8
from ..paths import results_dir
from ..profiles import get_profile
from ..reporting import STUDY_PROFILE
from . import semi_drdnet as semi
from .semi_drdnet_runs import resolved_dose, warm_start_run
from .semi_drdnet_stable import SELECTED_DOSE
from .semi_drdnet_tables import format_mean_sd


def _require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Fail loudly, naming the missing columns, instead of drawing an empty or wrong figure."""
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; got {list(table.columns)}")


# ----------------------------------------------------------------------------- the committed study


def study_runs_csv(profile: str = STUDY_PROFILE) -> Path:
    """The per-run records of a profile's study, written by the study queue and committed."""
    return results_dir(profile) / "semi_drdnet_runs.csv"


def study_runs_dir(profile: str = STUDY_PROFILE) -> Path:
    """The committed run folders (``log.csv``, ``model.pt``, ``metrics.json``) of a profile's study."""
    return semi.runs_root(profile)


def load_study_runs(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The study's finished runs, one row each (``results/cpu/semi_drdnet_runs.csv`` by default)."""
    path = Path(path) if path is not None else study_runs_csv()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no study records; `python -m derainlib.experiments.semi_drdnet "
                                f"--profile {STUDY_PROFILE}` trains the runs and writes them")
    runs = pd.read_csv(path)
    _require(runs, ["run_id", "dataset", "variant", "seed", "width", "num_blocks", "steps", "test_psnr_y"], str(path))
    return runs


def study_scale(runs: pd.DataFrame, profile: str = STUDY_PROFILE) -> str:
    """One sentence on the scale the study's runs were trained at, read from their records."""
    _require(runs, ["steps", "seed", "width", "num_blocks", "patch_size", "batch_size", "bf16"], "study_scale")

    def most(column: str):
        return runs[column].mode().iloc[0]

    seeds = ", ".join(str(int(s)) for s in sorted(runs["seed"].unique()))
    precision = "bf16 autocast" if bool(most("bf16")) else "fp32"
    return (f"The study: profile {profile}, {int(most('steps'))} training steps per run, seeds {seeds} "
            f"(mean ± sample sd over the seeds; n = seeds finished), M = {int(most('width'))}, "
            f"D = {int(most('num_blocks'))}+3 (Table III varies them), {int(most('patch_size'))} px crops, "
            f"batch {int(most('batch_size'))}, {precision}, on the embedded benchmark; {len(runs)} finished runs. "
            "The paper: M = 64, D = 16+3, 150 epochs on the real datasets.")


def table_runs_of(table: str, runs: pd.DataFrame, profile: str = STUDY_PROFILE) -> pd.DataFrame:
    """The rows of ``runs`` that belong to one of the paper's tables (``"II"``, ``"III"``, ... ``"fig13"``)."""
    _require(runs, ["run_id"], f"table {table}")
    ids = [spec.run_id for spec in semi.table_runs(table, profile)]
    return runs[runs["run_id"].isin(ids)].reset_index(drop=True)


def study_table(table: str, runs: pd.DataFrame, profile: str = STUDY_PROFILE) -> tuple[pd.DataFrame, str]:
    """One of the paper's tables rebuilt from the study's runs, beside the paper's numbers, and its verdict
    (Kendall's tau between our ordering and the paper's; empty where the table has none)."""
    rows = table_runs_of(table, runs, profile)
    if table == "II":
        compared, taus = semi.compare_table_ii(rows)
        return compared, semi.verdict(taus, "Table II")
    if table == "VII":
        compared, taus = semi.compare_table_vii(rows)
        return compared, semi.verdict(taus, "Table VII")
    if table == "III":
        compared, tau = semi.compare_table_iii(rows, profile)
        return compared, f"Table III: Kendall tau over the grid cells {tau:.2f}"
    if table == "IV":
        return semi.compare_table_iv(rows), ""
    if table in ("V", "V-supervised"):
        return semi.compare_table_v(rows), ""
    if table == "VII-colour":
        return semi.positive_augmentation_table(table_runs_of("VII", runs, profile), rows), ""
    if table == "fig13":
        return semi.fig13_table(rows, profile), ""
    raise ValueError(f"unknown table {table!r}; valid: II, III, IV, V, V-supervised, VII, VII-colour, fig13")


def evaluation_beside_paper(evaluation: pd.DataFrame) -> pd.DataFrame:
    """Notebook 10's evaluation table with the paper's Rain200H numbers (Table II) beside ours: the DRD-Net
    recipe is Table II's BL+SE+SDCAB, trained supervised; Semi-DRDNet is its last row."""
    _require(evaluation, ["method", "rain200h PSNR-Y", "rain200h SSIM-Y"], "evaluation_beside_paper")
    paper = {"DRD-Net recipe (supervised)": semi.PAPER_TABLE_II["rain200h"]["BL+SE+SDCAB"],
             "Semi-DRDNet": semi.PAPER_TABLE_II["rain200h"]["Semi-DRDNet"]}
    table = evaluation.copy()
    position = list(table.columns).index("rain200h SSIM-Y") + 1
    table.insert(position, "rain200h SSIM-Y (paper)", [paper.get(m, (math.nan, math.nan))[1] for m in table["method"]])
    table.insert(position - 1, "rain200h PSNR-Y (paper)",
                 [paper.get(m, (math.nan, math.nan))[0] for m in table["method"]])
    return table


def study_taus(table: str, runs: pd.DataFrame, profile: str = STUDY_PROFILE) -> pd.DataFrame:
    """Kendall's tau per dataset between our ordering and the paper's, for Tables II and VII."""
    compare = {"II": semi.compare_table_ii, "VII": semi.compare_table_vii}
    if table not in compare:
        raise ValueError(f"Kendall's tau per dataset is computed for Tables II and VII, not {table!r}")
    return compare[table](table_runs_of(table, runs, profile))[1]


_BLOCKS = {"Semi-DRDNet": "SDCAB", "BL+SE+SDCAB": "SDCAB", "BL+SE+MSARR": "MSARR"}


def _label_and_paper(table: str, spec, position: int) -> tuple[str, float]:
    """How a run is labelled in a chart of ``table``, and the paper's PSNR for it (NaN: none given)."""
    if table == "II":
        return spec.variant, semi.PAPER_TABLE_II[spec.dataset][spec.variant][0]
    if table == "VII":
        return spec.contrastive, semi.PAPER_TABLE_VII[spec.dataset][spec.contrastive]
    if table == "III":
        paper = semi.PAPER_TABLE_III.get((spec.width, spec.num_blocks), (math.nan,))[0]
        return f"M={spec.width}\nD={spec.num_blocks}+3", paper
    if table == "IV":
        return spec.variant, semi.PAPER_TABLE_IV[spec.dataset][spec.variant][0]
    if table in ("V", "V-supervised"):
        block = _BLOCKS[spec.variant]
        recipe = "Semi-DRDNet (Eq. 9)" if table == "V" else "DRD-Net recipe"
        return f"{block}\n{recipe}", semi.PAPER_TABLE_V[spec.dataset][block.lower()][0]
    if table == "fig13":
        return semi.FIG13_COMBINATIONS[position], math.nan
    raise ValueError(f"no chart for table {table!r}; valid: II, III, IV, V, V-supervised, VII, fig13")


def ablation_stats(table: str, runs: pd.DataFrame, profile: str = STUDY_PROFILE,
                   metric: str = "test_psnr_y") -> pd.DataFrame:
    """Per dataset and variant of a table: our ``metric`` as mean, sample sd and seed count, and the paper's
    PSNR, in the paper's order (the input of :func:`ablation_chart`). Variants without a finished run are left out."""
    _require(runs, ["run_id", metric], f"table {table}")
    by_id = runs.set_index("run_id")
    groups: dict[tuple[str, str], dict] = {}
    for position, spec in enumerate(semi.table_runs(table, profile)):
        label, paper = _label_and_paper(table, spec, position)
        group = groups.setdefault((spec.dataset, label), {"dataset": spec.dataset, "label": label, "paper": paper,
                                                           "values": []})
        if spec.run_id in by_id.index:
            group["values"].append(float(by_id.loc[spec.run_id, metric]))
    rows = []
    for group in groups.values():
        values = np.asarray(group.pop("values"))
        if len(values):
            rows.append({**group, "mean": values.mean(), "sd": values.std(ddof=1) if len(values) > 1 else math.nan,
                         "n": len(values)})
    return pd.DataFrame(rows, columns=["dataset", "label", "mean", "sd", "n", "paper"])


ABLATION_COLUMNS = ("dataset", "label", "mean", "sd", "n", "paper")


def ablation_chart(stats: pd.DataFrame, *, title: str, ylabel: str = "test Y-PSNR (dB)") -> plt.Figure:
    """Our numbers (mean ± sample sd over seeds, as error bars) beside the paper's, one panel per dataset.

    ``stats`` has :data:`ABLATION_COLUMNS` (:func:`ablation_stats`). Points, not bars, so that a few
    tenths of a dB stay visible; the legend sits below the panels, where it covers nothing.
    """
    _require(stats, ABLATION_COLUMNS, "ablation_chart")
    if not len(stats):
        raise ValueError(f"ablation_chart ({title}): no finished runs to draw")
    datasets = list(dict.fromkeys(stats["dataset"]))
    labels_per_panel = max(len(stats[stats["dataset"] == d]) for d in datasets)
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(3.2, 0.75 * labels_per_panel + 1.2) * len(datasets), 3.6),
                             sharey=True, squeeze=False)
    n_min, n_max = int(stats["n"].min()), int(stats["n"].max())
    seeds = f"n = {n_min}" if n_min == n_max else f"n = {n_min}–{n_max}"
    ours_label = f"ours: mean ± sd over seeds ({seeds})" if n_max > 1 else "ours (one seed)"
    for ax, dataset in zip(axes[0], datasets):
        part = stats[stats["dataset"] == dataset].reset_index(drop=True)
        x = np.arange(len(part))
        error = np.where(part["n"] > 1, part["sd"].fillna(0.0), 0.0)
        ax.errorbar(x - 0.1, part["mean"], yerr=error, fmt="o", color="C0", capsize=4, label=ours_label)
        has_paper = part["paper"].notna().any()
        if has_paper:
            ax.plot(x + 0.1, part["paper"], "D", color="C3", label="paper")
        multiline = part["label"].str.contains("\n").any()
        ax.set_xticks(x, part["label"], rotation=0 if multiline else 30, ha="center" if multiline else "right",
                      fontsize=8)
        ax.set_xlim(-0.6, len(part) - 0.4)
        ax.set_title(dataset + ("" if has_paper else " (the paper gives no numbers)"), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel(ylabel)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes[0, 1:]:  # a panel with paper numbers where the first has none
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.suptitle(title)
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels), frameon=False)
    return fig


def load_logs(run_ids: Sequence[str], runs_dir: str | os.PathLike | None = None) -> list[pd.DataFrame]:
    """The ``log.csv`` of each run (the committed study's by default); a missing one is an error naming it."""
    root = Path(runs_dir) if runs_dir is not None else study_runs_dir()
    logs = []
    for run_id in run_ids:
        path = root / run_id / "log.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no training log for run {run_id}")
        logs.append(pd.read_csv(path))
    return logs


def stable_study_runs(profile: str = STUDY_PROFILE, runs_dir: str | os.PathLike | None = None,
                      dataset: str = "rain200h") -> dict[str, object]:
    """The study's finished runs behind the stable reading's figures on ``dataset``, seed by seed: ``supervised``
    (the warm starts, the DRD-Net recipe on renderer version 2), ``control`` (λ = 0) and ``selected`` (the dose
    the validation rule picked; the seed-0 run is the dose–response sweep's run at that dose), as lists of
    :class:`~.semi_drdnet_runs.RunSpec` with the dose resolved; ``dose`` is the selected dose, or ``None`` while
    the dose–response sweep has not finished."""
    root = Path(runs_dir) if runs_dir is not None else study_runs_dir(profile)
    sizes = get_profile(profile).semi_drdnet
    try:
        dose = resolved_dose(semi.stable_run(dataset, 0, sizes.width, sizes.num_blocks, SELECTED_DOSE), root)
    except LookupError:
        dose = None
    def finished(spec) -> bool:
        return (root / spec.run_id / study.METRICS).is_file()

    out: dict[str, object] = {"dose": dose, "supervised": [], "control": [], "selected": []}
    for seed in get_profile(profile).seeds:
        control = semi.stable_run(dataset, seed, sizes.width, sizes.num_blocks, 0.0)
        if finished(warm_start_run(control)):
            out["supervised"].append(warm_start_run(control))
        if finished(control):
            out["control"].append(control)
        if dose is not None:
            for spec in (semi.stable_run(dataset, seed, sizes.width, sizes.num_blocks, SELECTED_DOSE),
                         semi.stable_run(dataset, seed, sizes.width, sizes.num_blocks, dose)):
                if finished(spec):
                    out["selected"].append(spec)
                    break
    return out


def stable_logs(specs: Sequence, runs_dir: str | os.PathLike | None = None) -> list[pd.DataFrame]:
    """Each stable run's ``log.csv`` after its warm start's, with the fine-tune's steps counted on from the warm
    start's last step, so that a curve runs through both."""
    logs = []
    for spec in specs:
        warm, fine = load_logs([spec.init_from, spec.run_id], runs_dir)
        logs.append(pd.concat([warm, fine.assign(step=fine["step"] + warm["step"].max())], ignore_index=True))
    return logs


def stable_labels(stable: Mapping[str, object]) -> dict[str, str]:
    """Display names of :func:`stable_study_runs`' groups."""
    dose = stable["dose"]
    return {"supervised": "supervised warm start (DRD-Net recipe)",
            "control": "fine-tuned, λ = 0 (no contrastive terms)",
            "selected": f"Semi-DRDNet, stable reading, λ = {dose:g} (selected)" if dose is not None
            else "Semi-DRDNet, stable reading (dose not selected yet)"}


def stable_evaluation(stable: Mapping[str, object], runs_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Per group of :func:`stable_study_runs`: test and real-proxy Y-PSNR/SSIM and real-proxy NIQE from the runs'
    records, mean ± sample sd over the seeds finished."""
    root = Path(runs_dir) if runs_dir is not None else study_runs_dir()
    rows = []
    for group, label in stable_labels(stable).items():
        records = [study.read_record(root / spec.run_id) for spec in stable[group]]
        row = {"model": label, "seeds": len(records)}
        for split, metric in (("test", "psnr_y"), ("test", "ssim_y"), ("realproxy", "psnr_y"), ("realproxy", "ssim_y"),
                              ("realproxy", "niqe")):
            values = np.array([r[split][metric] for r in records], dtype=float)
            row[f"{split} {metric}"] = (format_mean_sd(values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0,
                                                       len(values), digits=3 if "ssim" in metric else 2)
                                        if len(values) else "not run yet")
        rows.append(row)
    return pd.DataFrame(rows)


def _mean_sd_by_step(logs: Sequence[pd.DataFrame], column: str) -> pd.DataFrame:
    rows = pd.concat([log[["step", column]].dropna().drop_duplicates("step", keep="last").assign(run=i)
                      for i, log in enumerate(logs)])
    return rows.groupby("step")[column].agg(["mean", "std", "count"]).reset_index()


def training_curves(logs: Mapping[str, Sequence[pd.DataFrame]], *, title: str) -> plt.Figure:
    """Detail loss ``L_d`` (Eq. 12, the term every variant trains with) and validation Y-PSNR against training
    steps: per variant, the mean over its runs (seeds) with a ± sd band. ``logs``: variant -> its runs' ``log.csv``."""
    if not logs:
        raise ValueError("training_curves: no runs given")
    for name, runs in logs.items():
        if not runs:
            raise ValueError(f"training_curves: no logs for {name!r}")
        for log in runs:
            _require(log, ["step", "detail", "val_psnr_y"], f"training_curves, {name!r}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for colour, (name, runs) in enumerate(logs.items()):
        label = f"{name} (n={len(runs)})"
        for ax, column in ((left, "detail"), (right, "val_psnr_y")):
            curve = _mean_sd_by_step(runs, column)
            ax.plot(curve["step"], curve["mean"], color=f"C{colour}", marker="o" if column == "val_psnr_y" else None,
                    markersize=3, label=label)
            if len(runs) > 1:
                ax.fill_between(curve["step"], curve["mean"] - curve["std"], curve["mean"] + curve["std"],
                                color=f"C{colour}", alpha=0.2, linewidth=0)
    left.set(yscale="log", xlabel="training step", ylabel="L_d (Eq. 12), per epoch", title="detail loss")
    right.set(xlabel="training step", ylabel="validation Y-PSNR (dB)", title="validation PSNR")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 3),
               frameon=False, title="mean ± sd over seeds")
    return fig

LOSS_COLUMNS = {"total": "total (Eq. 9)", "detail": "L_d (Eq. 12)", "rain_residual": "L_r (Eq. 11)",
                "dual_sup": "L_Dual(sup) (Eq. 6)", "dual_unsup": "L_Dual(unsup) (Eq. 8)"}


def loss_curves(log: pd.DataFrame, title: str = "") -> plt.Figure:
    """Per-epoch loss terms (log scale) and training-crop / validation Y-PSNR from a run's ``log.csv``."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    for column, label in LOSS_COLUMNS.items():
        if column in log and log[column].notna().any():
            left.plot(log["epoch"], log[column], label=label)
    left.set(yscale="log", xlabel="epoch", ylabel="loss", title="loss terms")
    left.legend(fontsize=7)
    right.plot(log["epoch"], log["train_psnr_y"], label="training crops")
    if "val_psnr_y" in log and log["val_psnr_y"].notna().any():
        val = log.dropna(subset=["val_psnr_y"])
        right.plot(val["epoch"], val["val_psnr_y"], "o-", label="validation split")
    right.set(xlabel="epoch", ylabel="Y-PSNR (dB)", title="PSNR")
    right.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def stability_curves(steps_by_reading: dict[str, pd.DataFrame], smooth: int = 20, *,
                     title: str = "Stability diagnostic: Semi-DRDNet's losses under each reading of Eq. (5)/(6)"
                     ) -> plt.Figure:
    """Per-step ``L_d``, the two contrastive ratios and training-crop PSNR of each stability diagnostic
    (``semi_drdnet_stability``), as running means over ``smooth`` steps; one colour per reading."""
    if not steps_by_reading:
        raise ValueError("stability_curves: no diagnostic given")
    for reading, steps in steps_by_reading.items():
        _require(steps, ["step", "detail", "train_psnr_y"], f"stability_curves, {reading!r}")
    panels = (("detail", "L_d (Eq. 12)", "loss", "log"), ("dual_sup", "L_Dual(sup) (Eq. 6)", "ratio", "log"),
              ("dual_unsup", "L_Dual(unsup) (Eq. 8)", "ratio", "log"),
              ("train_psnr_y", "training-crop PSNR", "Y-PSNR (dB)", "linear"))
    fig, axes = plt.subplots(1, len(panels), figsize=(14, 3.6))
    for ax, (column, name, ylabel, scale) in zip(axes, panels):
        for colour, (reading, steps) in enumerate(steps_by_reading.items()):  # one colour per reading in every panel
            if column in steps and steps[column].notna().any():
                ax.plot(steps["step"], steps[column].rolling(smooth, min_periods=1).mean(), f"C{colour}", label=reading)
        ax.set(yscale=scale, xlabel="training step", ylabel=ylabel, title=name)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title} (running mean over {smooth} steps)")
    fig.tight_layout()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels), frameon=False)
    return fig


def _show(ax, image: torch.Tensor, title: str) -> None:
    ax.imshow(to_uint8(image.clamp(0, 1))[0], interpolation="nearest")
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def qualitative_figure(model: nn.Module, data_root: str | Path, *, domains: tuple[str, ...] = ("rain200h", "realproxy"),
                       scenes: tuple[int, ...] = (0, 1), bf16: bool = False, channels_last: bool = False,
                       title: str = "") -> plt.Figure:
    """Rows of rainy / derained / predicted rain layer / recovered details / clean, per test scene.

    The rain layer ``RRN(O)`` is shown as is (rain is bright on black); the details ``DRN(O)``
    are signed, so they are shown as ``0.5 + 4·DRN(O)`` (grey is zero). Real-proxy clean images
    are the held-out ground truth, used here for display and evaluation only.
    """
    rows = [(domain, scene) for domain in domains for scene in scenes]
    fig, axes = plt.subplots(len(rows), 5, figsize=(12, 2.3 * len(rows)), squeeze=False)
    for ax_row, (domain, scene) in zip(axes, rows):
        item = open_split(data_root, domain, "test")[scene]
        out = derain(model, item["rainy"][None], bf16=bf16, channels_last=channels_last)
        derained = out.derained[0].cpu()
        details = out.details[0].cpu() if out.details is not None else torch.zeros_like(derained)
        _show(ax_row[0], item["rainy"], f"{domain} #{scene}: rainy ({psnr(item['rainy'], item['clean']):.1f} dB)")
        _show(ax_row[1], derained, f"derained ({psnr(derained, item['clean']):.1f} dB)")
        _show(ax_row[2], out.rain[0].cpu(), "rain layer RRN(O)")
        _show(ax_row[3], 0.5 + 4 * details, "details DRN(O) (x4)")
        _show(ax_row[4], item["clean"], "clean" + (" (held out)" if domain == "realproxy" else ""))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def model_comparison_figure(models: Mapping[str, tuple[nn.Module, bool]], data_root: str | Path, *,
                            rows: Sequence[tuple[str, int]] = (("rain200h", 0), ("rain200h", 1), ("realproxy", 0)),
                            title: str) -> plt.Figure:
    """Several trained models on the same test scenes: per row (domain, scene), the rainy input, each model's
    output and the clean image, with Y-PSNR against it in every title. ``models``: label -> (network, bf16)."""
    if not models:
        raise ValueError("model_comparison_figure: no model given")
    present = set(available_domains(data_root, "test"))
    rows = [(domain, scene) for domain, scene in rows if domain in present]  # a user's folder may lack a domain
    if not rows:
        raise ValueError(f"model_comparison_figure: {data_root} has none of the test splits asked for")
    columns = 2 + len(models)
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.3 * columns, 2.4 * len(rows)), squeeze=False)
    for ax_row, (domain, scene) in zip(axes, rows):
        item = open_split(data_root, domain, "test")[scene]
        _show(ax_row[0], item["rainy"], f"{domain} #{scene}: rainy input\n{psnr(item['rainy'], item['clean']):.2f} dB")
        for ax, (label, (model, bf16)) in zip(ax_row[1:], models.items()):
            derained = derain(model, item["rainy"][None], bf16=bf16).derained[0].cpu()
            _show(ax, derained, f"{label}\n{psnr(derained, item['clean']):.2f} dB")
        _show(ax_row[-1], item["clean"], "clean" + (" (held out)" if domain == "realproxy" else ""))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _center_crops(dataset, key: str, count: int, size: int) -> torch.Tensor:
    picks = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
    crops = []
    for index in picks:
        image = dataset[int(index)][key]
        top, left = (image.shape[1] - size) // 2, (image.shape[2] - size) // 2
        crops.append(image[:, top:top + size, left:left + size])
    return torch.stack(crops)


def figure8(model: nn.Module, data_root: str | Path, *, count: int, vgg_weights: str = "hed", seed: int = 0,
            crop: int = 96, bf16: bool = False, title: str = "") -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 8 on the benchmark: t-SNE of pool5 features of clean backgrounds, with and without Eq. (7).

    Groups (``count`` centre crops each):

    - *real derained* ``I_r``: the model's outputs on the unlabeled real-proxy training images,
      the style source of the positive augmentation;
    - *synthetic clean* ``B_r``: Rain200H training clean images, the unpaired positives;
    - *AdaIN-augmented* ``B̄_r``: their features with the channel statistics of ``I_r``'s (our
      default Eq. (7)); *colour-augmented*: the pixel-space alternative;
    - *real-proxy clean (held out)*: the real domain's true backgrounds, which no method may
      train on; in this benchmark they are photos from the same pool as the synthetic ones.

    Returns the figure and, per group, the mean nearest-neighbour distance (in the feature
    space, not the t-SNE plane) to the real derained set and to the held-out real clean set.
    """
    torch.manual_seed(seed)
    real_rainy = _center_crops(open_split(data_root, "realproxy", "train"), "rainy", count, crop)
    synthetic_clean = _center_crops(open_split(data_root, "rain200h", "train"), "clean", count, crop)
    real_clean = _center_crops(open_split(data_root, "realproxy", "test"), "clean", count, crop)
    real_derained = derain(model, real_rainy, bf16=bf16).derained.cpu()
    # Each synthetic image takes the style of one derained real image, paired at random as in training.
    style = real_derained[torch.randperm(len(real_derained))[: len(synthetic_clean)]]
    if len(style) < len(synthetic_clean):
        style = style[torch.arange(len(synthetic_clean)) % len(style)]
    vgg = VGG16Features(vgg_weights)
    groups = {
        "real derained I_r": vgg_features(real_derained, vgg),
        "synthetic clean B_r": vgg_features(synthetic_clean, vgg),
        "AdaIN-augmented (ours, Eq. 7)": vgg_features(synthetic_clean, vgg, style=style),
        "colour-augmented": vgg_features(colour_transfer(synthetic_clean, style), vgg),
        "real-proxy clean (held out)": vgg_features(real_clean, vgg),
    }
    embedding = tsne_embedding(groups, seed=seed)
    fig, ax = plt.subplots(figsize=(6.5, 5))
    colours = ["tab:red", "tab:blue", "tab:green", "tab:olive", "tab:grey"]
    for (name, _), colour in zip(groups.items(), colours):
        points = embedding[embedding["group"] == name]
        ax.scatter(points["x"], points["y"], s=10, c=colour, label=name, alpha=0.8)
    ax.set(title=title or f"t-SNE of VGG-16 pool5 features ({vgg_weights} weights, {crop}px crops)", xticks=[],
           yticks=[])
    ax.legend(fontsize=7)
    fig.tight_layout()
    targets = ("real derained I_r", "real-proxy clean (held out)")
    distances = pd.DataFrame([
        {"group": name, **{f"to {target}": mean_nearest_distance(feats, groups[target]) if target != name else np.nan
                           for target in targets}}
        for name, feats in groups.items()
    ])
    return fig, distances

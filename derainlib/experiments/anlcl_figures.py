"""ANLCL's figures and display tables for notebooks 20 and 21: the decomposition O / B̂ / R̂, the evaluation
beside the shipped Semi-DRDNet model and the rainy input, Fig. 7's feature-distance curves per sampling
strategy, Fig. 10's t-SNE of the two layers' patches, and the study tables formatted beside the paper's."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from .. import pretrained
from ..analysis.layer_features import IMAGE, RAIN, layer_patch_features, layer_separation, layer_tsne
from ..atomic import atomic_path
from ..data.benchmark import open_split, split_root
from ..evaluation import evaluate, summarize
from ..paths import results_dir
from ..profiles import Profile, get_profile
from ..reporting import STUDY_PROFILE
from ..runtime import autocast
from ..train_anlcl import DISTANCE_COLUMNS, load_networks
from .anlcl_runs import NLCL_TERMS, benchmark_root, default_run, fig10_specs, runs_root
from .anlcl_tables import study_table
from .semi_drdnet_tables import format_mean_sd

__all__ = ["DISTANCE_TITLES", "decomposition_figure", "distance_curves", "evaluation_table", "fig10_runs",
           "fig7_runs", "figure10", "figure10_data", "load_logs", "not_run_line", "read_figure10_data",
           "realproxy_crops", "study_scale", "study_section", "study_table_display", "table6_scale",
           "write_figure10_data"]

DISTANCE_TITLES = {"dist_image": "within image patches (B-B, positives)", "dist_rain": "within rain patches (R-R)",
                   "dist_image_rain": "between image and rain patches (B-R)"}


def study_scale(profile: str | Profile = STUDY_PROFILE) -> str:
    """One line with the scale of a profile's ANLCL runs, to print beside every study table."""
    p = get_profile(profile)
    s = p.anlcl
    return (f"profile {p.name}: generators width {s.width}, {s.num_blocks} blocks; {s.crop_size}² crops, batch "
            f"{s.batch_size}; {s.pretrain_iterations} pretraining steps once per seed, shared by its runs, then "
            f"{s.iterations} fine-tuning steps a run; N_B = "
            f"{s.num_positives}, N_R = {s.num_negatives}, N = {s.num_location_patches} (the paper: width inferred 60, "
            f"9 blocks, 256² crops, N_B = 8, N_R = N = 256)")


def table6_scale(profile: str | Profile = STUDY_PROFILE) -> str:
    """One line with the scale of Table 6's runs (the DRD-Net recipe without and with ANLCL's loss)."""
    p = get_profile(profile)
    s, a = p.semi_drdnet, p.anlcl
    return (f"profile {p.name}: DRD-Net recipe (BL+SE+SDCAB) width {s.width}, {s.num_blocks} blocks, trained from "
            f"scratch for {s.iterations} steps on {s.patch_size}² crops of Rain200H (renderer version 2), batch "
            f"{s.batch_size}, {len(p.seeds)} seeds; +ANLCL adds the layer (μ = 1) and asymmetric (γ = 0.01) terms, "
            f"N_B = {a.num_positives}, N_R = {a.num_negatives}, {a.patch_size}² patches, τ = {a.temperature}, "
            f"embedded by a PatchGAN E_D trained beside it (the paper: PReNet and RCDNet, sizes and data not stated)")


@torch.no_grad()
def decomposition_figure(model, examples: list[tuple[str, torch.Tensor, torch.Tensor | None]], *, bf16: bool = False,
                         title: str = "") -> Figure:
    """One row per ``(label, rainy 3×H×W, clean 3×H×W or None)``: O, B̂ = G_B(O), R̂ = G_R(O) (shown as 0.5 + 2R̂,
    grey is no rain) and the clean image when there is one."""
    model.eval()
    fig, axes = plt.subplots(len(examples), 4, figsize=(10, 2.6 * len(examples)), squeeze=False)
    for row, (label, rainy, clean) in zip(axes, examples):
        with autocast(torch.device("cpu"), bf16):
            out = model(rainy[None])
        panels = [("O (rainy) · " + label, rainy), ("B̂ = G_B(O)", out.derained[0].float().clamp(0, 1)),
                  ("R̂ = G_R(O), 0.5 + 2R̂", (0.5 + 2 * out.rain[0].float()).clamp(0, 1)),
                  ("clean (held out)" if clean is not None else "no clean image", clean)]
        for ax, (name, image) in zip(row, panels):
            ax.axis("off")
            ax.set_title(name, fontsize=8)
            if image is not None:
                ax.imshow(image.permute(1, 2, 0).cpu().numpy())
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def evaluation_table(records: dict[str, dict], data_root: str | Path, pretrain_dataset: str = "rain200h") -> pd.DataFrame:
    """Real-proxy test (PSNR/SSIM on Y, NIQE) and the synthetic test split of ``pretrain_dataset`` for the rainy
    input, derainlib's shipped Semi-DRDNet model of that dataset, and each ANLCL run record."""
    groups = {"realproxy": ("realproxy", True), "test": (pretrain_dataset, False)}

    def scores(model) -> dict[str, dict]:
        out = {}
        for name, (domain, niqe) in groups.items():
            if split_root(data_root, domain, "test").is_dir():
                out[name] = summarize(evaluate(model, open_split(data_root, domain, "test"), with_niqe=niqe))
            else:
                out[name] = {"psnr_y": math.nan, "ssim_y": math.nan, "niqe": math.nan}
        return out

    shipped, _ = pretrained.load(pretrain_dataset)
    rows = [("Rainy input", scores(None)), (f"Semi-DRDNet, shipped model ({pretrain_dataset}, supervised)", scores(shipped)),
            *records.items()]
    table = []
    for name, s in rows:
        table.append({"method": name, "real-proxy PSNR-Y": s["realproxy"]["psnr_y"],
                      "real-proxy SSIM-Y": s["realproxy"]["ssim_y"], "real-proxy NIQE": s["realproxy"].get("niqe", math.nan),
                      f"{pretrain_dataset} PSNR-Y": s["test"]["psnr_y"], f"{pretrain_dataset} SSIM-Y": s["test"]["ssim_y"]})
    return pd.DataFrame(table)


def load_logs(run_dirs: dict[str, Path]) -> dict[str, pd.DataFrame]:
    """``log.csv`` of each run folder that has one (finished or in progress), by label."""
    return {label: pd.read_csv(Path(d) / "log.csv") for label, d in run_dirs.items() if (Path(d) / "log.csv").is_file()}


def fig7_runs(profile: str | Profile, seed: int = 0, root: Path | None = None) -> dict[str, Path]:
    """Fig. 7's runs: one per sampling strategy for both positives and negatives (Table 3's diagonal, without the
    asymmetric term), and the asymmetric non-local model (every term)."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    base = default_run(p, seed)
    specs = {f"{s} sampling": replace(base, terms=NLCL_TERMS, positives=s, negatives=s)
             for s in ("random", "neighbour", "nonlocal")}
    specs["asymmetric non-local"] = base
    return {label: root / spec.run_id for label, spec in specs.items()}


def distance_curves(logs: dict[str, pd.DataFrame], title: str = "") -> Figure:
    """Fig. 7: the mean feature distance within B's sampled patches, within R's, and between them, over the
    fine-tuning steps (stage 2; one point per epoch of the unlabeled set), one line per run."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, column in zip(axes, DISTANCE_COLUMNS):
        for label, log in logs.items():
            rows = log[log["stage"] == 2] if "stage" in log else log
            if column in rows and rows[column].notna().any():
                ax.plot(rows["step"], rows[column], marker=".", label=label)
        ax.set_title(DISTANCE_TITLES[column], fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("mean Euclidean distance (embedding)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(title or "Fig. 7: feature distances over training", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def fig10_runs(profile: str | Profile, seed: int = 0, root: Path | None = None) -> dict[str, Path]:
    """The run folders of Fig. 10's three models (:func:`derainlib.experiments.anlcl_runs.fig10_specs`)."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    return {label: root / spec.run_id for label, spec in fig10_specs(p, seed).items()}


def figure10_data(run_dirs: dict[str, Path], rainy: torch.Tensor, *, patches_per_image: int = 16,
                  seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The t-SNE points (:func:`derainlib.analysis.layer_features.layer_tsne`) and the separation numbers of
    each finished run's B and R patches on ``rainy`` images; runs without ``model.pt`` are left out."""
    features, separation = {}, []
    for label, run_dir in run_dirs.items():
        if not (Path(run_dir) / "model.pt").is_file():
            continue
        networks, config = load_networks(Path(run_dir) / "model.pt")
        f = layer_patch_features(networks, rainy, patches_per_image=patches_per_image,
                                 patch_size=config.sampling.patch_size, seed=seed)
        features[label] = f
        separation.append({"model": label, **layer_separation(f)})
    points = layer_tsne(features, seed=seed) if features else pd.DataFrame(columns=["model", "group", "x", "y"])
    return points, pd.DataFrame(separation)


def realproxy_crops(root: str | Path, crop: int, images: int) -> torch.Tensor:
    """The top-left ``crop × crop`` of the first ``images`` real-proxy test inputs under ``root``: Fig. 10's images."""
    test = open_split(root, "realproxy", "test")
    return torch.stack([test[i]["rainy"][:, :crop, :crop] for i in range(min(images, len(test)))])


#: Fig. 10's numbers from the study's models, written by ``anlcl_runs --report`` into ``results/<profile>/``.
FIG10_FILES = ("anlcl_fig10_points.csv", "anlcl_fig10_separation.csv")


def write_figure10_data(profile: str | Profile = STUDY_PROFILE, seed: int = 0, images: int = 8) -> list[Path]:
    """Fig. 10's t-SNE points and separation numbers (:func:`figure10_data`) of the study's first-seed models on
    the first ``images`` real-proxy test images (top-left crops of the training crop size), into
    ``results/<profile>/``: the notebooks draw these files, so drawing the figure needs no ``profile`` benchmark.
    Nothing is written before one of the models has finished."""
    p = get_profile(profile)
    runs = fig10_runs(p, seed)
    if not any((d / "model.pt").is_file() for d in runs.values()):
        return []
    rainy = realproxy_crops(benchmark_root(p), p.anlcl.crop_size, images)
    written = []
    for name, frame in zip(FIG10_FILES, figure10_data(runs, rainy, seed=seed)):
        path = results_dir(p.name) / name
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
        written.append(path)
    return written


def read_figure10_data(profile: str | Profile = STUDY_PROFILE) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """``(points, separation)`` as :func:`write_figure10_data` wrote them, or ``None`` before it has."""
    paths = [results_dir(get_profile(profile).name) / name for name in FIG10_FILES]
    if not all(path.is_file() for path in paths):
        return None
    points, separation = (pd.read_csv(path) for path in paths)
    return points, separation


def figure10(points: pd.DataFrame, title: str = "") -> Figure:
    """Fig. 10(b): one t-SNE panel per model, B's patches as diamonds, R's as stars."""
    models = list(dict.fromkeys(points["model"]))
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(4.2 * max(len(models), 1), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        for group, marker, colour in ((IMAGE, "D", "tab:blue"), (RAIN, "*", "tab:red")):
            sel = points[(points["model"] == model) & (points["group"] == group)]
            ax.scatter(sel["x"], sel["y"], marker=marker, s=18, c=colour, label=group, alpha=0.7)
        ax.set_title(model, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or "Fig. 10(b): t-SNE of the layers' patches in E_D's embedding", fontsize=10)
    fig.tight_layout()
    return fig


def study_table_display(frame: pd.DataFrame) -> pd.DataFrame:
    """A study table (:func:`derainlib.experiments.anlcl_tables.study_table`) for reading: ours as mean ± sd (n),
    the paired difference with its interval, the paper's numbers beside them, the validation difference the
    selection reads (the absolute validation PSNR-Y stays in the table's CSV); how many seeds were fp32 stand-ins,
    where any were."""
    out = pd.DataFrame({"row": frame["row"]})
    for column in ("paper PSNR", "paper SSIM", "paper NIQE"):
        if column in frame:
            out[column] = frame[column]
    out["ours PSNR-Y"] = [format_mean_sd(m, s, n) for m, s, n in zip(frame["PSNR-Y"], frame["PSNR-Y sd"].fillna(0),
                                                                     frame["seeds"])]
    out["ours SSIM-Y"] = [format_mean_sd(m, s, n, digits=4) for m, s, n in
                          zip(frame["SSIM-Y"], frame["SSIM-Y sd"].fillna(0), frame["seeds"])]
    if "NIQE" in frame:
        out["ours NIQE"] = frame["NIQE"]
    out["ΔPSNR-Y vs full [95% CI]"] = [
        "—" if not np.isfinite(d) else f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"
        for d, lo, hi in zip(frame["dPSNR-Y vs full"], frame["CI low"], frame["CI high"])]
    if frame["fp32 seeds"].any():
        out["fp32 seeds"] = frame["fp32 seeds"]
    out["Δval PSNR-Y vs full"] = frame["val vs full"].round(3)
    out["selected"] = np.where(frame["selected"], "← selected", "")
    return out


def not_run_line(profile: str = STUDY_PROFILE) -> str:
    """What a notebook prints where the committed study has no finished run yet."""
    return (f"The {profile} study has not been run yet: no finished ANLCL run under results/{profile}/anlcl/runs. "
            f"Run `python -m derainlib.experiments.anlcl_runs --profile {profile}`, then `--report`.")


def study_section(table: str, runs: pd.DataFrame, profile: str = STUDY_PROFILE) -> tuple[pd.DataFrame | None, str]:
    """One study table for display (:func:`study_table_display`) and the line to print under it (the scale and
    Kendall's τ), or ``(None, not_run_line())`` when the study has no finished run."""
    if runs.empty:
        return None, not_run_line(profile)
    frame, tau = study_table(table, profile, runs=runs)
    return study_table_display(frame), (f"{study_scale(profile)}. Kendall's τ of our ordering (ΔPSNR-Y) against the "
                                        f"paper's PSNR: {tau:.2f} ({int(frame['finished'].sum())} of {len(frame)} rows "
                                        "finished).")

"""Semi-DRDNet's tables beside the paper's: means over seeds, Kendall's τ, and the verdict lines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats

from ..data.benchmark import open_split, split_root
from ..evaluation import evaluate, summarize
from ..profiles import Profile, get_profile
from .semi_drdnet_paper import (
    DATASETS,
    FIG13_COMBINATIONS,
    PAPER_TABLE_II,
    PAPER_TABLE_III,
    PAPER_TABLE_III_GRID,
    PAPER_TABLE_IV,
    PAPER_TABLE_V,
    PAPER_TABLE_VII,
    TABLE_II_VARIANTS,
    TABLE_VII_SETTINGS,
)
from .semi_drdnet_runs import table_runs


def evaluation_table(records: dict[str, dict], data_root: str | Path) -> pd.DataFrame:
    """Test-split scores of finished runs beside the rainy inputs' own (the do-nothing baseline)."""
    dataset = next(iter(records.values()))["spec"]["dataset"]
    inputs = {"test": summarize(evaluate(None, open_split(data_root, dataset, "test")))}
    if split_root(data_root, "realproxy", "test").is_dir():
        inputs["realproxy"] = summarize(evaluate(None, open_split(data_root, "realproxy", "test"), with_niqe=True))
    rows = []
    for name, scores in [("Rainy input", inputs), *records.items()]:
        row = {"method": name}
        row |= {f"{dataset} {metric}": scores["test"][key] for metric, key in
                (("PSNR-Y", "psnr_y"), ("SSIM-Y", "ssim_y"), ("PSNR-RGB", "psnr_rgb"), ("SSIM-RGB", "ssim_rgb"))}
        if "realproxy" in scores:
            row |= {f"real-proxy {metric}": scores["realproxy"][key] for metric, key in
                    (("PSNR-Y", "psnr_y"), ("SSIM-Y", "ssim_y"), ("NIQE", "niqe"))}
        rows.append(row)
    return pd.DataFrame(rows)


def provenance_table(records: dict[str, dict]) -> pd.DataFrame:
    """Steps, training time, commits and machines of finished runs."""
    return pd.DataFrame([{"run": name, "run_id": record["run_id"], "steps": record["steps"],
                          "train minutes": round(record["train_wall_time_s"] / 60, 1),
                          "commits": ", ".join(c[:10] for c in record["commits"]), "machines": "; ".join(record["machines"])}
                         for name, record in records.items()])


def mean_sd(runs: pd.DataFrame, by: list[str], columns: list[str]) -> pd.DataFrame:
    """Mean, sample standard deviation and seed count of ``columns`` per group ``by``."""
    grouped = runs.groupby(by, sort=False)[columns]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_sd"))
    table["seeds"] = grouped.size()
    return table.reset_index()


def kendall_tau(ours: list[float], paper: list[float]) -> float:
    """Kendall's τ between our ordering of the variants and the paper's (1: same order, -1: reversed).

    Variants we have not finished (NaN) are left out; fewer than two finished give NaN.
    """
    ours_array, paper_array = np.asarray(ours, dtype=float), np.asarray(paper, dtype=float)
    finished = ~np.isnan(ours_array)
    if finished.sum() < 2:
        return math.nan
    return float(scipy.stats.kendalltau(ours_array[finished], paper_array[finished]).statistic)


def format_mean_sd(mean: float, sd: float, seeds: int, digits: int = 2) -> str:
    if np.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if seeds > 1 else "") + f" (n={seeds})"


def compare_table_ii(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table II beside the paper: per dataset and variant, our Y-PSNR/SSIM (mean ± sd over seeds).

    Returns the comparison table and Kendall's τ per dataset (our PSNR ordering vs the paper's).
    """
    return _compare(runs, PAPER_TABLE_II, key="variant", order=TABLE_II_VARIANTS, paper_has_ssim=True)


def compare_table_vii(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table VII beside the paper: per dataset and contrastive setting, our Y-PSNR vs the paper's PSNR."""
    return _compare(runs, {d: {k: (v, math.nan) for k, v in row.items()} for d, row in PAPER_TABLE_VII.items()},
                    key="contrastive", order=TABLE_VII_SETTINGS, paper_has_ssim=False)


def _compare(runs: pd.DataFrame, paper: dict, *, key: str, order: tuple[str, ...],
             paper_has_ssim: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    columns = ["test_psnr_y", "test_ssim_y", "realproxy_psnr_y", "realproxy_niqe"]
    stats = mean_sd(runs, ["dataset", key], columns) if len(runs) else pd.DataFrame(columns=["dataset", key])
    rows, taus = [], []
    for dataset in (d for d in DATASETS if d in paper):
        ours_psnr, paper_psnr = [], []
        for name in order:
            found = stats[(stats["dataset"] == dataset) & (stats[key] == name)]
            s = found.iloc[0] if len(found) else None
            p_psnr, p_ssim = paper[dataset][name]
            mean = s["test_psnr_y_mean"] if s is not None else math.nan
            row = {"dataset": dataset, key: name,
                   "PSNR (ours)": format_mean_sd(mean, s["test_psnr_y_sd"], s["seeds"]) if s is not None else "—",
                   "PSNR (paper)": p_psnr}
            if paper_has_ssim:
                row["SSIM (ours)"] = (format_mean_sd(s["test_ssim_y_mean"], s["test_ssim_y_sd"], s["seeds"], 4)
                                      if s is not None else "—")
                row["SSIM (paper)"] = p_ssim
            row["real-proxy PSNR (ours)"] = (format_mean_sd(s["realproxy_psnr_y_mean"], s["realproxy_psnr_y_sd"], s["seeds"])
                                             if s is not None else "—")
            rows.append(row)
            ours_psnr.append(mean)
            paper_psnr.append(p_psnr)
        ours_best = order[int(np.nanargmax(ours_psnr))] if not np.isnan(ours_psnr).all() else "—"
        taus.append({"dataset": dataset, "kendall_tau": kendall_tau(ours_psnr, paper_psnr),
                     "best (ours)": ours_best, "best (paper)": order[int(np.argmax(paper_psnr))],
                     "complete": not np.isnan(ours_psnr).any()})
    return pd.DataFrame(rows), pd.DataFrame(taus)


def compare_table_iii(runs: pd.DataFrame, profile: str | Profile) -> tuple[pd.DataFrame, float]:
    """Table III beside the paper: PSNR per (M, D) cell; τ over the cells we have.

    A scaled grid (``ci``) is matched to the paper's cell by position (smallest M with smallest M).
    """
    widths, depths = get_profile(profile).semi_drdnet.table_iii_grid
    paper_widths, paper_depths = PAPER_TABLE_III_GRID
    rows, ours, paper = [], [], []
    for blocks, paper_blocks in zip(depths, paper_depths):
        for width, paper_width in zip(widths, paper_widths):
            found = runs[(runs["width"] == width) & (runs["num_blocks"] == blocks)] if len(runs) else runs
            mean = float(found["test_psnr_y"].mean()) if len(found) else math.nan
            p_psnr, p_ssim = PAPER_TABLE_III[(paper_width, paper_blocks)]
            rows.append({"M": width, "D": f"{blocks}+3", "PSNR (ours)": mean, "PSNR (paper)": p_psnr,
                         "SSIM (ours)": float(found["test_ssim_y"].mean()) if len(found) else math.nan,
                         "SSIM (paper)": p_ssim, "paper cell": f"M={paper_width}, D={paper_blocks}+3"})
            if not math.isnan(mean):
                ours.append(mean)
                paper.append(p_psnr)
    return pd.DataFrame(rows), kendall_tau(ours, paper)


def positive_augmentation_table(runs_vii: pd.DataFrame, runs_colour: pd.DataFrame) -> pd.DataFrame:
    """Our two stand-ins for Eq. (7)'s AdaAttN on Rain200H: feature AdaIN (default) vs pixel colour transfer."""
    both = pd.concat([runs_vii, runs_colour], ignore_index=True) if len(runs_colour) else runs_vii
    if not len(both):
        return pd.DataFrame(columns=["setting", "positive augmentation"])
    both = both[(both["dataset"] == "rain200h") & both["contrastive"].isin(["aug_pos", "dual"])]
    stats = mean_sd(both, ["contrastive", "positive_augmentation"],
                    ["test_psnr_y", "test_ssim_y", "realproxy_psnr_y", "realproxy_ssim_y"])
    return pd.DataFrame([{
        "setting": row["contrastive"], "positive augmentation": row["positive_augmentation"],
        "Rain200H PSNR-Y": format_mean_sd(row["test_psnr_y_mean"], row["test_psnr_y_sd"], row["seeds"]),
        "real-proxy PSNR-Y": format_mean_sd(row["realproxy_psnr_y_mean"], row["realproxy_psnr_y_sd"], row["seeds"]),
        "real-proxy SSIM-Y": format_mean_sd(row["realproxy_ssim_y_mean"], row["realproxy_ssim_y_sd"], row["seeds"], 4),
    } for _, row in stats.iterrows()])


def missing_note(missing: list[str]) -> str:
    """One line for notebooks: which runs a table still lacks."""
    if not missing:
        return "all runs of this table are finished"
    return (f"{len(missing)} run(s) not finished yet (the study queue trains them): "
            + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))


def verdict(taus: pd.DataFrame, table: str) -> str:
    """Plain sentences on whether our ordering agrees with the paper's, dataset by dataset."""
    lines = []
    for row in taus.itertuples(index=False):
        tau = row.kendall_tau
        if math.isnan(tau):
            lines.append(f"{table}, {row.dataset}: not enough finished runs to compare.")
            continue
        agreement = ("agrees with" if tau >= 0.6 else "partly agrees with" if tau > 0.2
                     else "does not agree with" if tau > -0.2 else "reverses")
        best = getattr(row, "_2")
        paper_best = getattr(row, "_3")
        lines.append(f"{table}, {row.dataset}: our ordering {agreement} the paper's (Kendall tau {tau:.2f}); "
                     f"best here: {best}, in the paper: {paper_best}"
                     + ("" if row.complete else " (some runs missing)") + ".")
    return "\n".join(lines)


def compare_table_iv(runs: pd.DataFrame) -> pd.DataFrame:
    """Table IV beside the paper: DDN with and without an attached DRN (PSNR and seconds per image)."""
    return _compare_timed(runs, PAPER_TABLE_IV, key="variant")


def compare_table_v(runs: pd.DataFrame) -> pd.DataFrame:
    """Table V beside the paper: the DRN built from SDCAB vs MSARR blocks (PSNR and seconds per image), from the
    runs of table ``"V"`` (trained as Semi-DRDNet, as the paper) or ``"V-supervised"`` (the DRD-Net recipe)."""
    blocks = {"Semi-DRDNet": "sdcab", "BL+SE+SDCAB": "sdcab", "BL+SE+MSARR": "msarr"}
    runs = runs.assign(block=runs["variant"].map(blocks)) if len(runs) else runs
    return _compare_timed(runs, PAPER_TABLE_V, key="block")


def _compare_timed(runs: pd.DataFrame, paper: dict, *, key: str) -> pd.DataFrame:
    rows = []
    for dataset, entries in paper.items():
        for name, (p_psnr, p_time) in entries.items():
            found = runs[(runs["dataset"] == dataset) & (runs[key] == name)] if len(runs) else runs
            rows.append({"dataset": dataset, key: name,
                         "PSNR (ours)": float(found["test_psnr_y"].mean()) if len(found) else math.nan,
                         "PSNR (paper)": p_psnr,
                         "s/image (ours, CPU)": float(found["test_seconds_per_image"].mean()) if len(found) else math.nan,
                         "s/image (paper, GPU)": p_time})
    return pd.DataFrame(rows)


def fig13_table(runs: pd.DataFrame, profile: str | Profile) -> pd.DataFrame:
    """Fig. 13's loss combinations on Rain200H (the paper gives them only as a bar chart)."""
    rows = []
    for label, spec in zip(FIG13_COMBINATIONS, table_runs("fig13", profile)):
        match = runs[(runs["variant"] == spec.variant) & (runs["lambda_r"] == spec.lambda_r)
                     & (runs["semi_supervised"] == spec.semi_supervised)
                     & (runs["contrastive"].fillna("none") == (spec.contrastive or "none"))] if len(runs) else runs
        rows.append({"losses": label, "test PSNR-Y": float(match["test_psnr_y"].mean()) if len(match) else math.nan,
                     "test SSIM-Y": float(match["test_ssim_y"].mean()) if len(match) else math.nan,
                     "real-proxy PSNR-Y": float(match["realproxy_psnr_y"].mean()) if len(match) else math.nan})
    return pd.DataFrame(rows)

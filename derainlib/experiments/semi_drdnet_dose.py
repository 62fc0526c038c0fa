"""Does unlabeled real rain help? The dose–response study of the stable reading, and its tables.

The runs (``semi_drdnet_runs.stable_table_runs``): on Rain200H with the real-proxy training images of
renderer version 2 as unlabeled data, ``λ_dual = λ_unsup = dose`` (relative to gradient parity with
``L_d``, ``semi_drdnet_stable``) over :data:`~derainlib.experiments.semi_drdnet_stable.DOSES`, one seed;
then 3 seeds at dose 0 and at the dose the selection rule picks on the validation split
(:data:`~derainlib.experiments.semi_drdnet_stable.SELECTION_RULE`, fixed before any test number).

Dose 0 is the same schedule, warm start and data without the contrastive terms, so each effect is a
*paired* difference: the same seed, the same test image. :func:`paired_difference` reports its mean
over test images (and seeds) with a 95 % bootstrap interval over test images, and a second one that resamples the
seeds too (the spread between training runs); :func:`per_image_scores`
keeps each run's per-image scores next to its record (``scores-<split>.csv``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import study
from ..atomic import atomic_path
from ..data.benchmark import open_split
from ..evaluation import evaluate
from ..options import check_choice
from ..profiles import Profile, get_profile
from ..reporting import BOOTSTRAP_SAMPLES, CONFIDENCE, paired_difference
from ..runtime import resolve_device
from ..train import load_model
from .semi_drdnet_paper import DATASETS, PAPER_TABLE_II
from .semi_drdnet_runs import (STABLE_TABLES, RunSpec, _flatten, benchmark_root, runs_root, table_runs, warm_start_run,
                               warm_starts)
from .semi_drdnet_stable import DOSES, SELECTED_DOSE, SELECTION_RULE, select_dose
from .semi_drdnet_tables import compare_table_vii, format_mean_sd, kendall_tau

SPLITS = {"test": None, "realproxy": "realproxy"}  # None: the run's own dataset

__all__ = ["ANSWER_SCORES", "BOOTSTRAP_SAMPLES", "CONFIDENCE", "DOSES", "SELECTED_DOSE", "SELECTION_RULE", "answer",
           "dose_response_figure", "dose_table", "gradient_ratio_figure", "paired_difference", "paired_table",
           "per_image_scores", "read_scores", "seed_answer", "stable_answers", "stable_comparisons", "stable_ddn",
           "stable_fig13", "stable_progress", "stable_table_ii", "stable_table_vii"]


def read_scores(path: Path) -> pd.DataFrame:
    """A ``scores-<split>.csv`` file. Image names stay strings ("1", not 1: Rain800's are numbers), so a cached
    table pairs with one computed fresh."""
    return pd.read_csv(path, dtype={"name": str})


def per_image_scores(spec: RunSpec, profile: str | Profile, split: str, *, root: Path | None = None,
                     data_root: str | Path | None = None) -> pd.DataFrame:
    """A finished run's per-image scores on ``split`` ("test": its dataset's; "realproxy"), computed once and
    kept as ``scores-<split>.csv`` in its folder."""
    check_choice("split", split, SPLITS)
    p = get_profile(profile)
    run_dir = (runs_root(p) if root is None else Path(root)) / spec.run_id
    path = run_dir / f"scores-{split}.csv"
    if path.is_file():
        return read_scores(path)
    if not (run_dir / study.METRICS).is_file():
        raise FileNotFoundError(f"{run_dir}: the run has not finished (no {study.METRICS})")
    model, _ = load_model(run_dir / "model.pt", resolve_device(p.device))
    source = benchmark_root(p, data_root, version=spec.renderer_version)
    scores = evaluate(model, open_split(source, SPLITS[split] or spec.dataset, "test"), bf16=p.bf16,
                      channels_last=p.channels_last, with_niqe=split == "realproxy")
    with atomic_path(path) as tmp:
        scores.to_csv(tmp, index=False)
    return scores


def _matrix(frames: Sequence[pd.DataFrame], metric: str) -> np.ndarray:
    names = [tuple(f["name"]) for f in frames]
    if len(set(names)) != 1:
        raise ValueError("the runs were scored on different images: their scores cannot be paired")
    return np.stack([f[metric].to_numpy(float) for f in frames])


def paired_table(pairs: Sequence[tuple[str, Sequence[pd.DataFrame], Sequence[pd.DataFrame]]],
                 metric: str = "psnr_y") -> pd.DataFrame:
    """One row per ``(label, treated runs' scores, control runs' scores)``: :func:`paired_difference` of
    ``metric``, the runs matched seed by seed (same order) and image by image (by name)."""
    rows = []
    for label, treated, control in pairs:
        if len(treated) != len(control) or not treated:
            raise ValueError(f"{label}: {len(treated)} treated runs against {len(control)} controls")
        both = _matrix([*treated, *control], metric)  # checks that every run scored the same images, in order
        rows.append({"comparison": label, "metric": metric,
                     **paired_difference(both[:len(treated)], both[len(treated):])})
    return pd.DataFrame(rows)


def dose_table(profile: str | Profile, root: Path | None = None) -> pd.DataFrame:
    """The finished dose–response runs and the 3-seed runs at λ = 0 and the selected dose, one row per dose:
    test and real-proxy PSNR-Y and real-proxy NIQE (mean and sample sd over the seeds run), validation PSNR-Y,
    and how many runs collapsed; plus the dose the selection rule picks (``selected``), once every dose has a run."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    specs = table_runs("dose", p) + table_runs("dose-seeds", p)
    rows = []
    for spec in {s.run_id: s for s in specs}.values():
        record = study.read_record(root / spec.run_id)
        if record is None:
            continue
        # a run at the selected dose: the dose the rule resolved when it trained
        level = record.get("stable", {}).get("dose", math.nan) if math.isnan(spec.lambda_dual) else spec.lambda_dual
        rows.append({"dose": level, "seed": spec.seed, "test_psnr_y": record["test"]["psnr_y"],
                     "realproxy_psnr_y": record["realproxy"]["psnr_y"], "realproxy_niqe": record["realproxy"]["niqe"],
                     "val_psnr_y": record.get("stable", {}).get("val_psnr_y", math.nan),
                     "collapsed": record.get("collapsed") is not None})
    runs = pd.DataFrame(rows, columns=["dose", "seed", "test_psnr_y", "realproxy_psnr_y", "realproxy_niqe",
                                       "val_psnr_y", "collapsed"])
    runs = runs.drop_duplicates(["dose", "seed"])  # the sweep's own run at the selected dose is copied, not retrained
    table = runs.groupby("dose").agg(
        runs=("seed", "size"), collapsed=("collapsed", "sum"), val_psnr_y=("val_psnr_y", "mean"),
        test_psnr_y=("test_psnr_y", "mean"), test_psnr_y_sd=("test_psnr_y", "std"),
        realproxy_psnr_y=("realproxy_psnr_y", "mean"), realproxy_psnr_y_sd=("realproxy_psnr_y", "std"),
        realproxy_niqe=("realproxy_niqe", "mean"), realproxy_niqe_sd=("realproxy_niqe", "std")).reset_index()
    sweep = runs[runs["seed"] == p.seeds[0]]
    table["selected"] = False
    if set(DOSES) <= set(sweep["dose"]):
        try:
            table["selected"] = table["dose"] == select_dose(sweep)
        except LookupError:  # no dose above 0 trained without collapsing
            pass
    return table


#: The scores each comparison is judged on: (split, metric, +1 where higher is better / -1 where lower is).
ANSWER_SCORES: tuple[tuple[str, str, int], ...] = (("test", "psnr_y", 1), ("realproxy", "psnr_y", 1),
                                                   ("realproxy", "niqe", -1))


def answer(low: float, high: float, higher_is_better: bool = True) -> str:
    """An interval read as an answer: "yes" when it lies wholly on the better side of 0, "no: it hurts"
    when wholly on the worse side, "no detectable effect" when it contains 0."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"an answer needs a finite interval, got [{low}, {high}]")
    better, worse = (low > 0, high < 0) if higher_is_better else (high < 0, low > 0)
    return "yes" if better else "no: it hurts" if worse else "no detectable effect"


def seed_answer(difference: dict | pd.Series, higher_is_better: bool = True) -> str:
    """:func:`answer` from the two-level interval (seeds and images) of :func:`paired_difference`; "one seed"
    when there is no second seed to resample."""
    if not math.isfinite(difference["seed_low"]):
        return "one seed"
    return answer(difference["seed_low"], difference["seed_high"], higher_is_better)


def stable_comparisons(profile: str | Profile) -> list[tuple[str, list[RunSpec], list[RunSpec]]]:
    """The stable study's paired questions, each ``(question, treated runs, control runs)`` matched seed by
    seed, from the runs the study queue trains (``semi_drdnet_runs.stable_table_runs``)."""
    p = get_profile(profile)

    def split(table: str, **match: object) -> tuple[list[RunSpec], list[RunSpec]]:
        specs = [s for s in table_runs(table, p) if all(getattr(s, k) == v for k, v in match.items())]
        return ([s for s in specs if math.isnan(s.lambda_dual)], [s for s in specs if s.lambda_dual == 0.0])

    questions = []
    sweep = {s.lambda_dual: s for s in table_runs("dose", p)}  # one seed: does any dose beat λ = 0?
    for level in (d for d in DOSES if d > 0):
        questions.append((f"rain200h, seed {sweep[0.0].seed}: dose {level:g} against λ = 0 (the sweep)",
                          [sweep[level]], [sweep[0.0]]))
    datasets = sorted(p.semi_drdnet.datasets, key=lambda d: d != "rain200h")  # Rain200H first
    for dataset in datasets:  # Table II's last row, stable
        treated, control = split("dose-seeds" if dataset == "rain200h" else "II-stable", dataset=dataset)
        questions.append((f"{dataset}: DualSCRNet at the selected dose against λ = 0", treated, control))
    for dataset in datasets:
        without, full = [s for s in table_runs("fig13-stable", p) if s.dataset == dataset]
        questions.append((f"{dataset}: adding unlabeled real rain, L_Dual(unsup) (Fig. 13's last bar)", [full],
                          [without]))
    dual = {s.seed: s for s in table_runs("dose-seeds", p) if math.isnan(s.lambda_dual)}
    settings = table_runs("VII-stable", p)
    for setting in dict.fromkeys(s.contrastive for s in settings if s.contrastive != "dual"):
        treated = [s for s in settings if s.contrastive == setting]
        questions.append((f"rain200h: Table VII's {setting} against dual", treated, [dual[s.seed] for s in treated]))
    for dataset in dict.fromkeys(s.dataset for s in table_runs("DDN-stable", p)):
        treated, control = split("DDN-stable", dataset=dataset)
        questions.append((f"{dataset}: DDN with DualSCRNet at the selected dose against λ = 0", treated, control))
        # DDN's λ = 0 fine-tune can drift below its warm start, so the dose is also paired with the warm start
        questions.append((f"{dataset}: DDN with DualSCRNet at the selected dose against its warm start", treated,
                          [warm_start_run(s) for s in treated]))
    return questions


def stable_answers(profile: str | Profile, root: Path | None = None, *,
                   data_root: str | Path | None = None) -> pd.DataFrame:
    """Each question of :func:`stable_comparisons` on each of :data:`ANSWER_SCORES`: the paired difference
    (treated − control) with its bootstrap interval over test images, each seed's own mean difference
    (``per_seed``: the interval does not hold the spread between training runs; these show it), and
    :func:`answer`; then the two-level interval that resamples the seeds too (``seed_low``, ``seed_high``) and its
    answer (:func:`seed_answer`). A question
    whose runs have not all finished gets a row that says how many have, and no numbers."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    rows = []
    for question, treated, control in stable_comparisons(p):
        runs = [*treated, *control]
        finished = sum(study.read_record(root / s.run_id) is not None for s in runs)
        for split_name, metric, sign in ANSWER_SCORES:
            row = {"question": question, "split": split_name, "metric": metric, "runs": f"{finished}/{len(runs)}"}
            if finished < len(runs):
                rows.append(row | {"answer": "not run yet"})
                continue
            frames = [per_image_scores(s, p, split_name, root=root, data_root=data_root) for s in runs]
            both = _matrix(frames, metric)
            diff = paired_difference(both[:len(treated)], both[len(treated):])
            # the interval is over images; each seed's own mean difference shows the spread between training runs
            per_seed = (both[:len(treated)] - both[len(treated):]).mean(axis=1)
            rows.append(row | diff | {"per_seed": ", ".join(f"{d:+.3f}" for d in per_seed),
                                      "answer": answer(diff["low"], diff["high"], sign > 0),
                                      "answer (seeds too)": seed_answer(diff, sign > 0)})
    columns = ["question", "split", "metric", "runs", "mean", "low", "high", "images", "seeds", "per_seed", "answer",
               "seed_low", "seed_high", "answer (seeds too)"]
    return pd.DataFrame(rows).reindex(columns=columns)


def stable_progress(profile: str | Profile, root: Path | None = None) -> pd.DataFrame:
    """How far the stable study has got: finished runs of each stable table (warm starts counted apart)."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    every = [spec for table in STABLE_TABLES for spec in table_runs(table, p)]
    rows = []
    for table in ("warm starts", *STABLE_TABLES):
        specs = warm_starts(every) if table == "warm starts" else table_runs(table, p)
        done = sum(study.read_record(root / s.run_id) is not None for s in specs)
        rows.append({"table": table, "runs": len(specs), "finished": done})
    return pd.DataFrame(rows)


def dose_response_figure(table: pd.DataFrame, *, title: str) -> plt.Figure:
    """PSNR-Y on the labeled test split and on the real proxy, and the real proxy's NIQE (lower is better),
    against the dose (symmetric-log axis, so λ = 0 is drawn), mean ± sd over the seeds run, from
    :func:`dose_table`; the selected dose starred. A NIQE column of NaN (images too small) leaves its panel empty."""
    missing = {"dose", "test_psnr_y", "realproxy_psnr_y", "realproxy_niqe", "selected"} - set(table.columns)
    if missing:
        raise ValueError(f"dose_response_figure: missing column(s) {sorted(missing)}")
    panels = (("test_psnr_y", "labeled test split", "PSNR-Y (dB)"), ("realproxy_psnr_y", "real proxy", "PSNR-Y (dB)"),
              ("realproxy_niqe", "real proxy", "NIQE (lower is better)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3.2))
    positive = table.loc[table["dose"] > 0, "dose"]
    threshold = float(positive.min()) if len(positive) else 1e-4
    chosen = table[table["selected"].astype(bool)]
    for ax, (column, label, unit) in zip(axes, panels):
        sd = table.get(f"{column}_sd", pd.Series(np.nan, index=table.index)).fillna(0.0)
        ax.errorbar(table["dose"], table[column], yerr=sd, marker="o", capsize=3)
        ax.plot(chosen["dose"], chosen[column], marker="*", markersize=14, linestyle="none", color="C3",
                label="selected on validation")
        control = table.loc[table["dose"] == 0, column]
        if len(control) and np.isfinite(control.iloc[0]):  # the paired control, across the panel
            ax.axhline(control.iloc[0], color="0.5", linestyle="--", linewidth=1, label="λ = 0")
        ax.set(xlabel="dose λ (1 = gradient parity with L_d)", ylabel=unit, title=label)
        ax.set_xscale("symlog", linthresh=threshold)
        ax.grid(alpha=0.3)
        if len(chosen) or len(control):
            ax.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def gradient_ratio_figure(log: pd.DataFrame, *, title: str) -> plt.Figure:
    """The gradient monitor's ``grad_ratio_*`` columns of a run's ``log.csv`` over training (log scale):
    how hard each weighted term pulls on the network's output relative to ``L_d``."""
    columns = [c for c in log.columns if c.startswith("grad_ratio_")]
    if not columns or "step" not in log.columns:
        raise ValueError(f"gradient_ratio_figure: the log has no grad_ratio_* columns or no step column; "
                         f"got {list(log.columns)}")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for column in columns:
        ax.plot(log["step"], log[column].abs(), marker=".", label=column.removeprefix("grad_ratio_"))
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set(yscale="log", xlabel="step", ylabel="|∇ term| / |∇ L_d| on the output", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _finished_runs(specs: Sequence[RunSpec], root: Path) -> pd.DataFrame:
    """One row per finished run of ``specs`` (``_flatten``: one flattening of run records for every table); the
    unfinished are left out."""
    records = [study.read_record(root / spec.run_id) for spec in specs]
    return pd.DataFrame([_flatten(r) for r in records if r is not None])


def _scores(runs: pd.DataFrame, expected: int) -> dict:
    """Test PSNR-Y / SSIM-Y and real-proxy PSNR-Y of a group of runs as "mean ± sd (n=…)" cells, and the mean
    test PSNR-Y (NaN unless all ``expected`` runs have finished: an order is read only from complete rows)."""
    if not len(runs):
        return {"PSNR (ours)": "—", "SSIM (ours)": "—", "real-proxy PSNR (ours)": "—", "psnr": math.nan}
    n = len(runs)
    cell = {column: format_mean_sd(runs[column].mean(), runs[column].std(ddof=1), n, digits)
            for column, digits in (("test_psnr_y", 2), ("test_ssim_y", 4), ("realproxy_psnr_y", 2))}
    return {"PSNR (ours)": cell["test_psnr_y"], "SSIM (ours)": cell["test_ssim_y"],
            "real-proxy PSNR (ours)": cell["realproxy_psnr_y"],
            "psnr": float(runs["test_psnr_y"].mean()) if n == expected else math.nan}


def stable_table_ii(profile: str | Profile, root: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table II's last two rows under the stable reading, per dataset, beside the literal reading's and the paper's.

    Stable rows (renderer version 2, every seed): the DRD-Net recipe ``BL+SE+SDCAB`` (the warm start), its
    λ = 0 fine-tune (the same schedule without the contrastive terms) and Semi-DRDNet at the selected dose.
    Literal rows: the committed study's ``BL+SE+SDCAB`` and Semi-DRDNet (renderer version 1; compare orders, not
    PSNRs, across readings). Returns the table and, per dataset and reading, Semi-DRDNet's gain over
    ``BL+SE+SDCAB`` (ours, from complete rows only, and the paper's) and Kendall's τ of the two rows' order
    against the paper's (with two rows: 1 the paper's order, −1 reversed)."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    rows, orders = [], []
    for dataset in (d for d in DATASETS if d in p.semi_drdnet.datasets):
        specs = [s for s in table_runs("II-stable", p) if s.dataset == dataset]
        selected = [s for s in specs if math.isnan(s.lambda_dual)]
        literal = {variant: [s for s in table_runs("II", p) if s.dataset == dataset and s.variant == variant]
                   for variant in ("BL+SE+SDCAB", "Semi-DRDNet")}
        groups = {("stable", "BL+SE+SDCAB"): [warm_start_run(s) for s in selected],
                  ("stable", "λ = 0 fine-tune"): [s for s in specs if s.lambda_dual == 0.0],
                  ("stable", "Semi-DRDNet"): selected,
                  ("literal", "BL+SE+SDCAB"): literal["BL+SE+SDCAB"],
                  ("literal", "Semi-DRDNet"): literal["Semi-DRDNet"]}
        psnr = {}
        for (reading, name), group in groups.items():
            paper_psnr, paper_ssim = PAPER_TABLE_II[dataset].get(name, (math.nan, math.nan))
            scores = _scores(_finished_runs(group, root), len(group))
            psnr[reading, name] = scores.pop("psnr")
            rows.append({"dataset": dataset, "reading": reading, "row": name, **scores,
                         "PSNR (paper)": paper_psnr, "SSIM (paper)": paper_ssim})
        paper = [PAPER_TABLE_II[dataset][name][0] for name in ("BL+SE+SDCAB", "Semi-DRDNet")]
        for reading in ("stable", "literal"):
            ours = [psnr[reading, "BL+SE+SDCAB"], psnr[reading, "Semi-DRDNet"]]
            orders.append({"dataset": dataset, "reading": reading, "Semi-DRDNet gain (ours)": ours[1] - ours[0],
                           "Semi-DRDNet gain (paper)": paper[1] - paper[0], "kendall_tau": kendall_tau(ours, paper),
                           "complete": not np.isnan(ours).any()})
    return pd.DataFrame(rows), pd.DataFrame(orders)


#: DualSCRNet attached to DDN under the stable reading: the rows of :func:`stable_ddn`.
STABLE_DDN_ROWS = ("DDN (warm start)", "DDN, λ = 0 fine-tune", "DDN + DualSCRNet (stable)")


def stable_ddn(profile: str | Profile, root: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """DualSCRNet attached to DDN under the stable reading (the paper says it "can be easily attached to existing
    deraining networks", Sec. IV-E, and gives no numbers for it), per dataset of Table IV, every seed: the
    supervised DDN (the warm start), its λ = 0 fine-tune and the fine-tune at the selected dose, as
    :data:`STABLE_DDN_ROWS`. Returns the table and, per dataset, the dose's mean test PSNR-Y gain over the warm
    start and over λ = 0 (NaN until every run of the row has finished)."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    rows, gains = [], []
    for dataset in dict.fromkeys(s.dataset for s in table_runs("DDN-stable", p)):
        specs = [s for s in table_runs("DDN-stable", p) if s.dataset == dataset]
        selected = [s for s in specs if math.isnan(s.lambda_dual)]
        groups = ([warm_start_run(s) for s in selected], [s for s in specs if s.lambda_dual == 0.0], selected)
        psnr = []
        for name, group in zip(STABLE_DDN_ROWS, groups):
            scores = _scores(_finished_runs(group, root), len(group))
            psnr.append(scores.pop("psnr"))
            rows.append({"dataset": dataset, "row": name, **scores})
        gains.append({"dataset": dataset, "gain over the warm start": psnr[2] - psnr[0],
                      "gain over λ = 0": psnr[2] - psnr[1]})
    return pd.DataFrame(rows), pd.DataFrame(gains)


#: Fig. 13's bars under the stable reading, in the paper's rising order, and the bars read for Kendall's τ: the
#: λ = 0 fine-tune stands for ``L_d + L_r`` (the same schedule as the two contrastive rows, without their terms).
STABLE_FIG13_ROWS = ("L_d+L_r (warm start)", "L_d+L_r (λ = 0 fine-tune)", "L_d+L_r+L_Dual(sup)",
                     "L_sup+L_unsup (full)")
STABLE_FIG13_ORDERED = STABLE_FIG13_ROWS[1:]


def stable_fig13(profile: str | Profile, root: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 13 under the stable reading on every dataset (seed 0, renderer version 2): the rows of
    :data:`STABLE_FIG13_ROWS` (the ``L_d``-only bar has no stable counterpart: every stable run starts from
    ``L_d + L_r``). Returns the table and, per dataset, Kendall's τ of :data:`STABLE_FIG13_ORDERED` against the
    paper's rising bars (1: each added term helps)."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    seed = p.seeds[0]
    rows, taus = [], []
    for dataset in p.semi_drdnet.datasets:
        without, full = [s for s in table_runs("fig13-stable", p) if s.dataset == dataset]
        control = [s for s in table_runs("II-stable", p)
                   if s.dataset == dataset and s.seed == seed and s.lambda_dual == 0.0]
        groups = dict(zip(STABLE_FIG13_ROWS, ([warm_start_run(full)], control, [without], [full])))
        psnr = {}
        for name, group in groups.items():
            scores = _scores(_finished_runs(group, root), len(group))
            psnr[name] = scores.pop("psnr")
            rows.append({"dataset": dataset, "losses": name, **scores})
        ours = [psnr[name] for name in STABLE_FIG13_ORDERED]
        best = STABLE_FIG13_ORDERED[int(np.nanargmax(ours))] if not np.isnan(ours).all() else "—"
        taus.append({"dataset": dataset, "kendall_tau": kendall_tau(ours, list(range(len(ours)))),
                     "best (ours)": best, "complete": not np.isnan(ours).any()})
    return pd.DataFrame(rows), pd.DataFrame(taus)


def stable_table_vii(profile: str | Profile, root: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table VII under the stable reading (Rain200H, the selected dose, every seed), beside the literal reading's
    rows of the committed study and the paper's, and Kendall's τ of each against the paper's order. The literal
    runs read renderer version 1 and the stable ones version 2, so compare orderings, not PSNRs, across readings.

    Returns the table (one row per dataset and setting; "—" where no run has finished) and the τ per reading."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    stable, stable_tau = compare_table_vii(_finished_runs(table_runs("VII-stable", p), root))  # dual: dose-seeds
    literal, literal_tau = compare_table_vii(_finished_runs(table_runs("VII", p), root))
    table = literal.rename(columns={"PSNR (ours)": "PSNR (literal)",
                                    "real-proxy PSNR (ours)": "real-proxy PSNR (literal)"})
    table.insert(2, "PSNR (stable)", stable["PSNR (ours)"])
    table.insert(3, "real-proxy PSNR (stable)", stable["real-proxy PSNR (ours)"])
    taus = pd.concat([stable_tau.assign(reading="stable"), literal_tau.assign(reading="literal")], ignore_index=True)
    return table, taus[["reading", *stable_tau.columns]]

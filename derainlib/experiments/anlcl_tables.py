"""ANLCL's study results: one table of every finished run, Tables 3, 4, 5 and 9 beside the paper's, and Table 6.

- :func:`collect` reads the record (``metrics.json``) of every finished run of the study queue into one row
  per run (its settings, seed, scores and training time); ``--collect`` writes it to
  ``results/<profile>/anlcl_runs.csv``.
- :func:`study_table` builds one table: per row of the paper's table, its numbers, ours (mean ± sample sd over
  the seeds run, real-proxy test split, PSNR/SSIM on Y), the paired difference against the default full model
  (the same seed, the same test image: :func:`derainlib.reporting.paired_difference`, a 95 % bootstrap
  interval over the test images), the validation score, and the row :data:`SELECTION_RULE` picks. Kendall's τ
  compares our ordering of the rows with the paper's. A run trained in fp32 on a CPU without native bf16 (an fp32
  stand-in, ``anlcl_runs --fp32``) stands for its bf16 run where that has not finished, and is compared with the
  fp32 default run of its seed (:func:`~.anlcl_runs.default_of`). ``--report`` writes
  ``results/<profile>/anlcl_table<N>.csv`` and ``anlcl_kendall.csv``.

:data:`SELECTION_RULE` was fixed in code before any test number of the study existed; :func:`select_row`
implements it.

:func:`table6` is ANLCL's Table 6 on our supervised DRD-Net recipe: the runs without and with ANLCL's layer and
asymmetric terms (``derainlib.train``'s ``anlcl_terms``), trained by Semi-DRDNet's study, compared seed by seed
and image by image on the Rain200H test split and the real proxy; :func:`table6_terms`, a diagnostic, each of the
two terms alone on the first seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import study
from ..atomic import atomic_path
from ..paths import results_dir
from ..profiles import Profile, get_profile
from ..reporting import paired_difference
from . import semi_drdnet_runs
from .anlcl_paper import PAPER_TABLE_3, PAPER_TABLE_4, PAPER_TABLE_5, PAPER_TABLE_6, PAPER_TABLE_9
from .anlcl_runs import (SEEDED_TABLES, TABLES, RunSpec, Stage1Spec, check_runs, default_of, default_run, fp32_rows,
                         in_fp32, runs_root, stage2_steps, study_queue, table_rows, uses_bf16, work_queue)
from .semi_drdnet_dose import answer, paired_table, per_image_scores, read_scores, seed_answer
from .semi_drdnet_tables import kendall_tau

__all__ = ["FP32_RULE", "RUNS_CSV", "SELECTION_RULE", "TABLE_6_SCORES", "check_table", "collect", "finished_run",
           "fp32_verdict", "kendall_table", "paired_scores", "paper_table6", "progress_line", "select_row",
           "study_table", "table6", "table6_terms", "verdict_lines", "write_report"]

RUNS_CSV = "anlcl_runs.csv"

#: Fixed before any test number of the study was computed; :func:`select_row` implements it.
SELECTION_RULE = (
    "Within each table, among the rows whose runs all finished without the collapse rule stopping them, pick "
    "the row with the highest mean PSNR-Y on the real-proxy validation split (scored at the run's last step), "
    "averaged over the seeds run; a tie goes to the paper's own setting (non-local / non-local, the "
    "discriminator encoder, every loss term, the profile's N_B x N_R), then to the earlier row. The real-proxy "
    "test split, the synthetic test split and NIQE take no part. Each run's validation PSNR-Y is taken less that "
    "of the default run of its seed and arithmetic (bf16 or fp32), which orders the rows as the plain means do "
    "when every row has the same seeds in the same arithmetic, and keeps an fp32 run from being compared with "
    "bf16 ones (amended, before any fp32 row was trained, for the fp32 stand-ins of docs/anlcl.md).")

_SCORE_COLUMNS = {f"{group}_{key}": (group, key) for group in ("realproxy", "val", "test")
                  for key in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "niqe")}


def _row(record: dict, spec: RunSpec | Stage1Spec, profile: Profile) -> dict:
    sizes = profile.anlcl
    if isinstance(spec, Stage1Spec):  # pretraining only: no stage-2 settings
        row = {"run_id": spec.run_id, "stage": 1, "seed": spec.seed, "terms": "none (stage 1 only)"}
    else:
        row = {"run_id": spec.run_id, "stage": 2, "seed": spec.seed, "positives": spec.positives,
               "negatives": spec.negatives, "encoder": spec.encoder, "terms": "+".join(spec.terms) or "none",
               "decomposition_terms": "+".join(spec.decomposition_terms) or "none",
               "num_positives": sizes.num_positives if spec.num_positives is None else spec.num_positives,
               "num_negatives": sizes.num_negatives if spec.num_negatives is None else spec.num_negatives}
    row["precision"] = _precision(record, spec, profile)
    for column, (group, key) in _SCORE_COLUMNS.items():
        row[column] = float(record.get(group, {}).get(key, math.nan))
    row |= {"collapsed": record.get("collapsed") is not None, "steps": record["steps"],
            "train_hours": round(record["train_wall_time_s"] / 3600, 3)}
    return row


def _precision(record: dict, spec: RunSpec | Stage1Spec, profile: Profile) -> str:
    """The arithmetic stage 2 (or stage 1, for a stage-1 run) trained and was scored in, as the record says."""
    return "bf16" if record.get("bf16", uses_bf16(spec, profile)) else "fp32"


def collect(profile: str | Profile, root: Path | None = None, *, write: bool = False) -> pd.DataFrame:
    """One row per finished run of ``profile``'s study queue and of its fp32 stand-ins under ``root`` (default:
    the study's folder), the shared stage-1 runs among them (``stage`` 1). ``write=True`` also writes it to
    ``results/<profile>/anlcl_runs.csv`` (atomically)."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    rows = []
    for spec in dict.fromkeys(work_queue(p) + (fp32_rows(p) if p.bf16 else [])):
        record = study.read_record(root / spec.run_id)
        if record is not None:
            rows.append(_row(record, spec, p))
    frame = pd.DataFrame(rows, columns=[*_row_columns()])
    if write:
        path = results_dir(p.name) / RUNS_CSV
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    return frame


def progress_line(profile: str | Profile, runs: pd.DataFrame) -> str:
    """How far the study is, from :func:`collect`'s frame: the runs of the study queue finished, and the fp32
    stand-ins finished beside them (stage-1 runs not counted)."""
    p = get_profile(profile)
    done = set(runs["run_id"])
    queue = study_queue(p)
    stand_ins = set(fp32_rows(p)) - set(queue) if p.bf16 else set()
    return (f"the {p.name} study: {sum(spec.run_id in done for spec in queue)} of {len(queue)} runs finished, and "
            f"{sum(spec.run_id in done for spec in stand_ins)} fp32 stand-ins")


def _row_columns() -> list[str]:
    return ["run_id", "stage", "seed", "positives", "negatives", "encoder", "terms", "decomposition_terms",
            "num_positives", "num_negatives", "precision", *_SCORE_COLUMNS, "collapsed", "steps", "train_hours"]


def paired_scores(run_dir: Path, group: str = "realproxy", metric: str = "psnr_y") -> pd.Series | None:
    """A finished run's per-image ``metric`` on ``group`` (``scores-<group>.csv``), indexed by image name;
    ``None`` when the run has no such file."""
    path = Path(run_dir) / f"scores-{group}.csv"
    if not path.is_file():
        return None
    return read_scores(path).set_index("name")[metric].sort_index()


def finished_run(spec: RunSpec, profile: Profile, finished: set[str]) -> RunSpec | None:
    """The run that stands for ``spec`` in a table: ``spec`` when it has finished (run ids ``finished``), else its
    fp32 stand-in (:func:`~.anlcl_runs.in_fp32`) when that and the fp32 default run of its seed have, else
    ``None``."""
    if spec.run_id in finished:
        return spec
    if profile.bf16 and spec.precision is None:
        stand_in = in_fp32(spec)
        if {stand_in.run_id, default_of(stand_in, profile).run_id} <= finished:
            return stand_in
    return None


def _paired(pairs: list[tuple[RunSpec | Stage1Spec, RunSpec]], root: Path) -> dict[str, float]:
    """The paired difference (:func:`~derainlib.reporting.paired_difference`) of each pair's first run against
    its second on the real-proxy test images."""
    treated, control = [], []
    for spec, reference in pairs:
        a = paired_scores(root / spec.run_id)
        b = paired_scores(root / reference.run_id)
        if a is None or b is None:
            continue
        if list(a.index) != list(b.index):
            raise ValueError(f"{spec.run_id} and {reference.run_id} scored different images")
        treated.append(a.to_numpy())
        control.append(b.to_numpy())
    if not treated or len(treated[0]) < 2:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "seed_low": math.nan, "seed_high": math.nan}
    return paired_difference(np.stack(treated), np.stack(control))


def _paper_values(table: str, label: str, spec: RunSpec, profile: Profile) -> dict[str, float]:
    if table == "3":
        psnr, ssim = PAPER_TABLE_3[(spec.positives, spec.negatives)]
        return {"paper PSNR": psnr, "paper SSIM": ssim}
    if table == "4":
        psnr, ssim, niqe = PAPER_TABLE_4[spec.encoder]
        return {"paper PSNR": psnr, "paper SSIM": ssim, "paper NIQE": niqe}
    if table == "5":
        return dict(zip(("paper PSNR", "paper SSIM"), list(PAPER_TABLE_5.values())[_label_index(table, label, profile)]))
    index = _label_index(table, label, profile)
    return {"paper PSNR": list(PAPER_TABLE_9.values())[index]}


def _label_index(table: str, label: str, profile: Profile) -> int:
    return [name for name, _ in table_rows(table, profile, profile.seeds[0])].index(label)


def _is_paper_setting(table: str, spec: RunSpec) -> bool:
    if table == "5":
        return spec == _default_like(spec)
    return (spec.positives, spec.negatives, spec.encoder, spec.num_positives, spec.num_negatives) == (
        "nonlocal", "nonlocal", "discriminator", None, None)


def _default_like(spec: RunSpec) -> RunSpec:
    return RunSpec(spec.pretrain_dataset, spec.seed, spec.width, spec.num_blocks, renderer_version=spec.renderer_version)


def select_row(table: pd.DataFrame) -> str | None:
    """:data:`SELECTION_RULE` on a study table (columns ``row``, ``val vs full``, ``finished``, ``collapsed``,
    ``paper setting``); ``None`` when no row qualifies."""
    missing = {"row", "val vs full", "finished", "collapsed", "paper setting"} - set(table.columns)
    if missing:
        raise ValueError(f"the table lacks the columns {sorted(missing)}")
    ok = table[table["finished"] & ~table["collapsed"] & table["val vs full"].map(math.isfinite)]
    if ok.empty:
        return None
    best = ok["val vs full"].max()
    tied = ok[ok["val vs full"] == best]
    paper = tied[tied["paper setting"]]
    return str((paper if not paper.empty else tied)["row"].iloc[0])


def study_table(table: str, profile: str | Profile, root: Path | None = None,
                runs: pd.DataFrame | None = None) -> tuple[pd.DataFrame, float]:
    """Table ``table`` (:data:`~.anlcl_runs.TABLES`) beside the paper's, and Kendall's τ of our ordering (by the
    paired difference against the default run) against the paper's PSNR ordering, over the rows with finished runs.
    A seed's run of a row is the run itself or, where only that has finished, its fp32 stand-in
    (:func:`finished_run`), compared with the fp32 default run of its seed; ``fp32 seeds`` counts them. ``runs``:
    :func:`collect`'s frame (read from ``root`` when not given). Rows without a finished run show NaN."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    runs = collect(p, root) if runs is None else runs
    by_id = runs.set_index("run_id") if not runs.empty else runs
    finished = set(by_id.index)
    seeds = p.seeds if table in SEEDED_TABLES else p.seeds[:1]
    rows = []
    for index, (label, _) in enumerate(table_rows(table, p, seeds[0])):
        specs = [table_rows(table, p, seed)[index][1] for seed in seeds]
        done = [run for run in (finished_run(s, p, finished) for s in specs) if run is not None]
        found = by_id.loc[[s.run_id for s in done]] if done else pd.DataFrame(columns=runs.columns)
        pairs = [(s, default_of(s, p)) for s in done]  # the test split's and the validation's comparisons
        val_vs_default = [by_id.loc[s.run_id, "val_psnr_y"] - by_id.loc[d.run_id, "val_psnr_y"]
                          if d.run_id in finished else math.nan for s, d in pairs]
        row = {"row": label, **_paper_values(table, label, specs[0], p)}
        row |= {"PSNR-Y": found["realproxy_psnr_y"].mean() if done else math.nan,
                "PSNR-Y sd": found["realproxy_psnr_y"].std(ddof=1) if len(done) > 1 else math.nan,
                "SSIM-Y": found["realproxy_ssim_y"].mean() if done else math.nan,
                "SSIM-Y sd": found["realproxy_ssim_y"].std(ddof=1) if len(done) > 1 else math.nan}
        if table == "4":
            row["NIQE"] = found["realproxy_niqe"].mean() if done else math.nan
        diff = _paired(pairs, root)
        row |= {"seeds": len(done), "fp32 seeds": sum(s.precision == "fp32" for s in done),
                "dPSNR-Y vs full": diff["mean"], "CI low": diff["low"], "CI high": diff["high"],
                "seed CI low": diff["seed_low"], "seed CI high": diff["seed_high"],
                "val PSNR-Y": found["val_psnr_y"].mean() if done else math.nan,
                "val vs full": float(np.mean(val_vs_default)) if done else math.nan,
                "finished": len(done) == len(specs), "collapsed": bool(found["collapsed"].any()) if done else False,
                "paper setting": _is_paper_setting(table, specs[0])}
        rows.append(row)
    frame = pd.DataFrame(rows)
    selected = select_row(frame)
    frame["selected"] = frame["row"] == selected
    # the paired difference orders the rows as their means do when every row has the same seeds in one arithmetic,
    # and keeps fp32 stand-ins and rows short of a seed comparable
    tau = kendall_tau(frame["dPSNR-Y vs full"].tolist(), frame["paper PSNR"].tolist())
    return frame, tau


def kendall_table(profile: str | Profile, root: Path | None = None) -> pd.DataFrame:
    """Kendall's τ per table, with the rows finished, the paper's best row and the row the selection rule picks."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    runs = collect(p, root)
    out = []
    for table in TABLES:
        frame, tau = study_table(table, p, root, runs)
        paper_best = frame.loc[frame["paper PSNR"].idxmax(), "row"]
        selected = frame.loc[frame["selected"], "row"]
        out.append({"table": table, "kendall_tau": tau, "rows_finished": int(frame["finished"].sum()),
                    "rows": len(frame), "paper best": paper_best,
                    "selected (validation)": selected.iloc[0] if len(selected) else None})
    return pd.DataFrame(out)


def verdict_lines(taus: pd.DataFrame) -> list[str]:
    """One plain line per table: does our ordering agree with the paper's, and does the validation pick the
    paper's best row. Only meaningful on the study's profile (notebooks print them for ``cpu`` alone)."""
    lines = []
    for row in taus.to_dict("records"):
        if row["rows_finished"] < 2 or not math.isfinite(row["kendall_tau"]):
            lines.append(f"Table {row['table']}: {row['rows_finished']} of {row['rows']} rows finished; no ordering yet.")
            continue
        tau = row["kendall_tau"]
        agreement = "agrees with" if tau >= 0.5 else "partly agrees with" if tau > 0 else "does not agree with"
        pick, best = row["selected (validation)"], row["paper best"]
        same = "the paper's best row" if pick == best else f"{pick!r}, not the paper's best {best!r}"
        lines.append(f"Table {row['table']}: our ordering {agreement} the paper's (Kendall tau {tau:.2f}, "
                     f"{row['rows_finished']} of {row['rows']} rows); the validation split selects {same}.")
    return lines


#: Table 6's scores: (split, metric, higher is better). The paper's are on a synthetic test set; ANLCL is about
#: real rain, so the real proxy is scored too.
TABLE_6_SCORES: tuple[tuple[str, str, bool], ...] = (("test", "psnr_y", True), ("test", "ssim_y", True),
                                                     ("realproxy", "psnr_y", True), ("realproxy", "niqe", False))


def check_table(profile: str | Profile, root: Path | None = None) -> pd.DataFrame:
    """The study's own checks (:func:`~.anlcl_runs.check_runs`) beside the first seed's stage-1 run and default
    run: one row each with its seed, stage-2 steps, Eq. (2)'s reading, arithmetic (bf16 or fp32), the validation,
    real-proxy test and synthetic test PSNR-Y, and the paired difference against the default run of its seed on
    the real-proxy test images (95 % bootstrap interval). An fp32 check is compared with the bf16 default run (its
    question is the arithmetic); a check's fp32 stand-in (``--fp32``, labelled ", in fp32") with the fp32 one.
    Runs not finished yet are left out."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    default = default_run(p, p.seeds[0])
    entries = [("stage 1 only", default.stage1, default), ("the study's default", default, None)]
    for label, spec in check_runs(p).items():
        entries.append((label, spec, default_run(p, spec.seed)))
        if p.bf16 and spec.precision is None:
            entries.append((f"{label}, in fp32", in_fp32(spec), default_of(in_fp32(spec), p)))
    rows = []
    for label, spec, reference in entries:
        record = study.read_record(root / spec.run_id)
        if record is None:
            continue
        row = {"run": label, "run_id": spec.run_id, "seed": spec.seed,
               "stage-2 steps": 0 if isinstance(spec, Stage1Spec) else stage2_steps(spec, p),
               "norms": "" if isinstance(spec, Stage1Spec) else spec.norms,
               "precision": _precision(record, spec, p)}
        row |= {f"{group} PSNR-Y": float(record[group]["psnr_y"]) for group in ("val", "realproxy", "test")}
        if reference is not None:
            diff = _paired([(spec, reference)], root)
            row |= {"vs default": diff["mean"], "CI low": diff["low"], "CI high": diff["high"]}
        rows.append(row)
    return pd.DataFrame(rows, columns=["run", "run_id", "seed", "stage-2 steps", "norms", "precision", "val PSNR-Y",
                                       "realproxy PSNR-Y", "test PSNR-Y", "vs default", "CI low", "CI high"])


#: docs/anlcl.md, "On a CPU without native bf16", fixed before either fp32 check ran: the study's remaining rows may
#: be trained in fp32 on a CPU without native bf16 only if every fp32 check lands within ``within_db`` of its seed's
#: bf16 default run on the real-proxy test split, with the paired 95 % interval inside ±``interval_db``.
FP32_RULE = {"within_db": 0.05, "interval_db": 0.1}


def fp32_verdict(profile: str | Profile, checks: pd.DataFrame) -> str:
    """:data:`FP32_RULE` applied to :func:`check_table`'s fp32 rows, in one sentence that gives each check's
    numbers: whether fp32 may train the rows a CPU without native bf16 has left, or why not, or how many checks
    are still to finish."""
    p = get_profile(profile)
    names = [name for name, spec in check_runs(p).items() if spec.precision == "fp32"]
    if not names:
        return f"fp32 checks: none, the {p.name} profile trains in fp32."
    rows = checks.set_index("run").reindex(names).dropna(subset=["vs default"])
    if len(rows) < len(names):
        return f"fp32 checks: {len(rows)} of {len(names)} finished; the rule waits for all of them."
    within, interval = FP32_RULE["within_db"], FP32_RULE["interval_db"]
    passed = ((rows["vs default"].abs() <= within) & (rows["CI low"] >= -interval) & (rows["CI high"] <= interval))
    numbers = "; ".join(f"{name}: {row['vs default']:+.3f} dB [{row['CI low']:+.3f}, {row['CI high']:+.3f}] "
                        f"against seed {int(row['seed'])}'s bf16 default" for name, row in rows.iterrows())
    evidence = f"{numbers}; the rule: within {within} dB, interval inside ±{interval} dB"
    if passed.all():
        return (f"fp32 checks pass ({evidence}): the remaining rows may be trained in fp32 on a CPU without native "
                f"bf16, labelled as fp32 rows.")
    return (f"fp32 checks fail ({evidence}; outside it: {' and '.join(rows.index[~passed])}): the remaining rows "
            f"wait for a CPU with native bf16.")


def table6(profile: str | Profile, root: Path | None = None) -> pd.DataFrame:
    """ANLCL's Table 6 on the DRD-Net recipe (Rain200H, renderer version 2), one row per score of
    :data:`TABLE_6_SCORES`: the baseline and "+ANLCL" (mean and sample sd over the seeds whose two runs both
    finished), the gain, its 95 % bootstrap interval (:func:`derainlib.reporting.paired_difference`: the runs
    matched by seed, the scores by test image) and the answer it gives. ``root``: Semi-DRDNet's runs folder
    (default: the study's). Rows say "not run yet" until a seed has both runs."""
    p = get_profile(profile)
    root = semi_drdnet_runs.runs_root(p) if root is None else Path(root)
    specs = semi_drdnet_runs.table_runs(semi_drdnet_runs.ANLCL_TABLE, p)
    pairs = [(base, added) for base, added in zip(specs[::2], specs[1::2])
             if all(study.read_record(root / s.run_id) is not None for s in (base, added))]
    rows = []
    for split, metric, higher_is_better in TABLE_6_SCORES:
        row = {"split": split, "metric": metric, "seeds": len(pairs)}
        if not pairs:
            rows.append(row | {"answer": "not run yet"})
            continue
        base = [per_image_scores(s, p, split, root=root) for s, _ in pairs]
        added = [per_image_scores(s, p, split, root=root) for _, s in pairs]
        diff = paired_table([("+ANLCL", added, base)], metric).iloc[0]
        means = {name: pd.Series([f[metric].mean() for f in frames]) for name, frames in (("baseline", base),
                                                                                          ("+ANLCL", added))}
        for name, values in means.items():
            row |= {name: values.mean(), f"{name} sd": values.std(ddof=1) if len(values) > 1 else math.nan}
        row |= {"gain": diff["mean"], "CI low": diff["low"], "CI high": diff["high"],
                "answer": answer(diff["low"], diff["high"], higher_is_better),
                "seed CI low": diff["seed_low"], "seed CI high": diff["seed_high"],
                "answer (seeds too)": seed_answer(diff, higher_is_better)}
        rows.append(row)
    return pd.DataFrame(rows, columns=["split", "metric", "seeds", "baseline", "baseline sd", "+ANLCL", "+ANLCL sd",
                                       "gain", "CI low", "CI high", "answer", "seed CI low", "seed CI high",
                                       "answer (seeds too)"])


#: The terms :func:`table6_terms` reads off each run's last ``log.csv`` row (the epoch's mean of each step's value).
LOGGED_TERMS = ("detail", "rain_residual", "anlcl_layer", "anlcl_asymmetric")


def table6_terms(profile: str | Profile, root: Path | None = None) -> pd.DataFrame:
    """A diagnostic of Table 6, not a table of the paper (added after its three seeds had finished): on the first
    seed, the DRD-Net recipe with both of ANLCL's terms (Table 6's run), with the layer term alone and with the
    asymmetric term alone (``semi_drdnet_runs.ANLCL_TERMS_TABLE``), each against the recipe without them. One row
    per setting and score of :data:`TABLE_6_SCORES`: the two means, the paired difference over the test images with
    its 95 % bootstrap interval, and the final epoch's logged loss terms (:data:`LOGGED_TERMS`). One seed: the
    intervals cover the images, not the seeds. Rows whose runs have not finished say "not run yet"."""
    p = get_profile(profile)
    root = semi_drdnet_runs.runs_root(p) if root is None else Path(root)
    base, both = semi_drdnet_runs.table_runs(semi_drdnet_runs.ANLCL_TABLE, p)[:2]
    settings = [("both terms (Table 6)", both)] + [(f"{spec.anlcl_term} term alone", spec) for spec in
                                                    semi_drdnet_runs.table_runs(semi_drdnet_runs.ANLCL_TERMS_TABLE, p)]
    rows = []
    for label, spec in settings:
        finished = all(study.read_record(root / s.run_id) is not None for s in (base, spec))
        logged = {}
        if finished:
            last = pd.read_csv(root / spec.run_id / "log.csv").iloc[-1]
            logged = {f"final {term}": float(last[term]) if term in last else math.nan for term in LOGGED_TERMS}
        for split, metric, higher_is_better in TABLE_6_SCORES:
            row = {"setting": label, "run_id": spec.run_id, "split": split, "metric": metric}
            if not finished:
                rows.append(row | {"answer": "not run yet"})
                continue
            control, treated = (per_image_scores(s, p, split, root=root) for s in (base, spec))
            diff = paired_table([(label, [treated], [control])], metric).iloc[0]
            rows.append(row | {"baseline": control[metric].mean(), "with ANLCL's term(s)": treated[metric].mean(),
                               "gain": diff["mean"], "CI low": diff["low"], "CI high": diff["high"],
                               "answer": answer(diff["low"], diff["high"], higher_is_better)} | logged)
    return pd.DataFrame(rows, columns=["setting", "run_id", "split", "metric", "baseline", "with ANLCL's term(s)",
                                       "gain", "CI low", "CI high", "answer", *(f"final {t}" for t in LOGGED_TERMS)])


def paper_table6() -> pd.DataFrame:
    """The paper's Table 6 (PSNR / SSIM on a synthetic test set, networks we do not build) as a frame."""
    return pd.DataFrame([{"network": name, "baseline PSNR": b[0], "baseline SSIM": b[1], "+ANLCL PSNR": a[0],
                          "+ANLCL SSIM": a[1], "gain PSNR": round(a[0] - b[0], 2)}
                         for name, (b, a) in PAPER_TABLE_6.items()])


def write_report(profile: str | Profile, root: Path | None = None) -> list[Path]:
    """``--report``: the collected runs, every table and the Kendall table into ``results/<profile>/``."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    runs = collect(p, root, write=True)
    folder = results_dir(p.name)
    written = [folder / RUNS_CSV]
    for table in TABLES:
        frame, _ = study_table(table, p, root, runs)
        path = folder / f"anlcl_table{table}.csv"
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
        written.append(path)
    path = folder / "anlcl_kendall.csv"
    with atomic_path(path) as tmp:
        kendall_table(p, root).to_csv(tmp, index=False)
    written.append(path)
    path = folder / "anlcl_checks.csv"
    with atomic_path(path) as tmp:
        check_table(p, root).to_csv(tmp, index=False)
    written.append(path)
    for name, table in (("anlcl_table6.csv", table6), ("anlcl_table6_terms.csv", table6_terms)):
        path = folder / name  # from Semi-DRDNet's runs folder, whatever ``root`` is
        with atomic_path(path) as tmp:
            table(p).to_csv(tmp, index=False)
        written.append(path)
    return written

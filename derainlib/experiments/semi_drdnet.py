"""Semi-DRDNet experiments: the study queue, the report, and every name the notebooks use.

The pieces live in their own modules, imported here so that ``from derainlib.experiments import
semi_drdnet as semi`` gives a notebook all it needs:

- :mod:`.semi_drdnet_paper`: the paper's numbers (Tables II-VII, Fig. 13);
- :mod:`.semi_drdnet_runs`: run specs, the runs behind each table, training and evaluating a run;
- :mod:`.semi_drdnet_tables`: our tables beside the paper's, with Kendall's τ.

Where runs live: profiles that train inside the notebooks (``ci``) use a fresh temporary folder;
the others read ``results/<profile>/semi_drdnet/runs``, which ``python -m
derainlib.experiments.semi_drdnet --profile cpu`` fills, in the background and resumably.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pandas as pd

from ..atomic import atomic_path, has_parts, split_file, try_lock
from ..paths import results_dir
from ..profiles import Profile, get_profile
from ..reporting import to_markdown
from .semi_drdnet_paper import (
    DATASETS,
    FIG13_COMBINATIONS,
    PAPER_TABLE_II,
    PAPER_TABLE_III,
    PAPER_TABLE_III_GRID,
    PAPER_TABLE_IV,
    PAPER_TABLE_V,
    PAPER_TABLE_VII,
    SUPERVISED_VARIANTS,
    TABLE_II_VARIANTS,
    TABLE_VII_SETTINGS,
)
from .semi_drdnet_runs import (
    READINGS,
    STUDY_READING,
    RunSpec,
    benchmark_root,
    collect_runs,
    describe,
    evaluate_run,
    run,
    run_table,
    runs_root,
    semi_supervised_run,
    study_queue,
    supervised_run,
    table_runs,
    train_config,
)
from .semi_drdnet_tables import (
    compare_table_ii,
    compare_table_iii,
    compare_table_iv,
    compare_table_v,
    compare_table_vii,
    evaluation_table,
    fig13_table,
    format_mean_sd,
    kendall_tau,
    mean_sd,
    missing_note,
    positive_augmentation_table,
    provenance_table,
    verdict,
)

__all__ = [
    "CHECKPOINT_PART_BYTES", "DATASETS", "FIG13_COMBINATIONS", "PAPER_TABLE_II", "PAPER_TABLE_III",
    "PAPER_TABLE_III_GRID", "PAPER_TABLE_IV", "PAPER_TABLE_V", "PAPER_TABLE_VII", "READINGS", "RUN_LOCK",
    "STUDY_READING", "SUPERVISED_VARIANTS", "TABLE_II_VARIANTS", "TABLE_VII_SETTINGS", "RunSpec",
    "benchmark_root", "collect_runs", "compare_table_ii", "compare_table_iii", "compare_table_iv",
    "compare_table_v", "compare_table_vii", "describe", "evaluate_run", "evaluation_table", "fig13_table",
    "format_mean_sd", "is_training", "kendall_tau", "main", "mean_sd", "missing_note", "park_checkpoints",
    "positive_augmentation_table", "provenance_table", "report", "run", "run_table", "runs_root",
    "semi_supervised_run", "study_queue", "supervised_run", "table_runs", "train_config", "verdict",
]


def _compared(table: str, runs: pd.DataFrame, profile: Profile,
              runs_vii: pd.DataFrame | None = None) -> tuple[pd.DataFrame, str]:
    """One table beside the paper's, and its verdict line (empty where the table has none).

    ``runs_vii``: Table VII's runs, for "VII-colour", when the caller has read them already.
    """
    if table == "II":
        compared, taus = compare_table_ii(runs)
        return compared, verdict(taus, "Table II")
    if table == "III":
        compared, tau = compare_table_iii(runs, profile)
        return compared, f"Kendall tau over the grid cells: {tau:.2f}"
    if table == "VII":
        compared, taus = compare_table_vii(runs)
        return compared, verdict(taus, "Table VII")
    if table == "IV":
        return compare_table_iv(runs), ""
    if table in ("V", "V-supervised"):
        return compare_table_v(runs), ""
    if table == "VII-colour":  # shown beside Table VII's AdaIN runs of the same settings
        if runs_vii is None:
            runs_vii, _ = run_table("VII", profile, train_missing=False)
        return positive_augmentation_table(runs_vii, runs), ""
    return fig13_table(runs, profile), ""


def report(profile: str | Profile) -> str:
    """Markdown of every table that has finished runs, beside the paper's, with the Kendall τ verdicts
    (what the README quotes)."""
    p = get_profile(profile)
    parts, read = [], {}
    for table in ("II", "III", "IV", "V", "V-supervised", "VII", "VII-colour", "fig13"):
        runs, missing = run_table(table, p, train_missing=False)
        read[table] = runs
        title = f"### {'Fig. 13' if table == 'fig13' else 'Table ' + table} ({p.name}; {len(runs)} runs finished)"
        if len(runs):
            compared, note = _compared(table, runs, p, runs_vii=read.get("VII"))
            body = to_markdown(compared) + (f"\n{note}\n" if note else "")
        else:
            body = "no finished run yet\n"
        parts.append(f"{title}\n\n{body}\n{missing_note(missing)}\n")
    return "\n".join(parts)

RUN_LOCK = "running.lock"  # held by the worker training a run (git-ignored)

CHECKPOINT_PART_BYTES = 15 * 2**20  # under the 20 MB a file may have in this repository


def park_checkpoints(profile: str | Profile, part_bytes: int = CHECKPOINT_PART_BYTES) -> list[Path]:
    """Cut every unfinished run's checkpoint bigger than ``part_bytes`` into parts, to commit it.

    Run this after stopping the workers, before committing the runs folder; the next :func:`run` of that run
    joins the parts back (checking their checksum) and resumes. Runs being trained are left alone.
    Returns the checkpoints that were split.
    """
    split = []
    for checkpoint in sorted(runs_root(get_profile(profile)).glob("*/checkpoint.pt")):
        if checkpoint.stat().st_size > part_bytes and not is_training(checkpoint.parent):
            split_file(checkpoint, part_bytes)
            split.append(checkpoint)
    return split


def is_training(run_dir: Path) -> bool:
    """Whether a live process holds ``run_dir``'s lock, i.e. is training that run right now."""
    if not (run_dir / RUN_LOCK).exists():
        return False
    with try_lock(run_dir / RUN_LOCK) as free:
        return not free


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Work through the Semi-DRDNet study queue (resumable; start it once per core to share the queue).")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--budget-hours", type=float, default=math.inf,
                        help="start no new run after this many hours (a started run finishes)")
    parser.add_argument("--list", action="store_true", help="print the queue and each run's state, then exit")
    parser.add_argument("--report", action="store_true", help="print every table with finished runs as markdown, then exit")
    parser.add_argument("--only", nargs="*", default=None, help="run ids to run (default: the whole queue)")
    parser.add_argument("--park", action="store_true",
                        help=f"cut the checkpoints of stopped, unfinished runs into {CHECKPOINT_PART_BYTES // 2**20} MB parts "
                             "to commit, then exit")
    args = parser.parse_args(argv)
    p = get_profile(args.profile)
    if args.report:
        print(report(p), flush=True)
        return 0
    if args.park:
        for checkpoint in park_checkpoints(p):
            print(f"split {checkpoint} into parts", flush=True)
        return 0
    queue = [spec for spec in study_queue(p) if args.only is None or spec.run_id in args.only]
    unknown = sorted(set(args.only or ()) - {spec.run_id for spec in queue})
    if unknown:
        parser.error(f"not in the {p.name} study queue (see --list): {', '.join(unknown)}")
    root = runs_root(p)
    if args.list:
        for spec in queue:
            run_dir, checkpoint = root / spec.run_id, root / spec.run_id / "checkpoint.pt"
            state = ("done" if (run_dir / "metrics.json").exists()
                     else "training" if is_training(run_dir)
                     else "in progress" if checkpoint.exists() or has_parts(checkpoint) else "pending")
            print(f"{state:12s} {spec.run_id}")
        return 0
    started = time.perf_counter()
    for spec in queue:
        if (root / spec.run_id / "metrics.json").exists():
            continue
        if (time.perf_counter() - started) / 3600 > args.budget_hours:
            print(f"budget of {args.budget_hours} h spent; stopping before {spec.run_id}", flush=True)
            break
        # Several workers may share the queue (one per core): each run is trained by whoever locks it first.
        with try_lock(root / spec.run_id / RUN_LOCK) as mine:
            if not mine or (root / spec.run_id / "metrics.json").exists():
                continue
            print(f"run {spec.run_id}", flush=True)
            record = run(spec, p, progress=False)
        runs_csv = results_dir(p.name) / "semi_drdnet_runs.csv"
        with atomic_path(runs_csv) as tmp:
            collect_runs(p).to_csv(tmp, index=False)
        print(f"done {spec.run_id}: test PSNR-Y {record['test']['psnr_y']:.2f}, "
              f"real-proxy {record['realproxy']['psnr_y']:.2f}, {record['train_wall_time_s'] / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

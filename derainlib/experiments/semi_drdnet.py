"""Semi-DRDNet experiments: the study queue, the report, and every name the notebooks use.

The pieces live in their own modules, imported here so that ``from derainlib.experiments import
semi_drdnet as semi`` gives a notebook all it needs:

- :mod:`.semi_drdnet_paper`: the paper's numbers (Tables II-VII, Fig. 13);
- :mod:`.semi_drdnet_runs`: run specs, the runs behind each table, training and evaluating a run;
- :mod:`.semi_drdnet_tables`: our tables beside the paper's, with Kendall's τ.

The queue, the run folders and their records are the method-neutral :mod:`derainlib.study`: profiles
that train inside the notebooks (``ci``) use a fresh temporary folder; the others read
``results/<profile>/semi_drdnet/runs``, which ``python -m derainlib.experiments.semi_drdnet --profile cpu``
fills, in the background and resumably (``--list``, ``--report``, ``--park``, ``--only``).

**Seeds.** A notebook's ``seed`` parameter is the render seed of the embedded benchmark: pass it to
:func:`benchmark_root` (``seed=``) and to :func:`run` / :func:`run_table` (``benchmark_seed=``), and
every run reads that rendering and lives in that rendering's own folder. Training seeds are part of
each run's spec (the tables train the profile's ``seeds``). The committed study is benchmark seed 0.
"""

from __future__ import annotations


import pandas as pd

from .. import study
from ..atomic import atomic_path
from ..paths import results_dir
from ..profiles import Profile, get_profile
from ..reporting import to_markdown
from .semi_drdnet_dose import (dose_table, stable_answers, stable_ddn, stable_fig13, stable_progress, stable_table_ii,
                               stable_table_vii)
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
    stable_run,
    study_queue,
    study_run,
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
    "DATASETS", "FIG13_COMBINATIONS", "PAPER_TABLE_II", "PAPER_TABLE_III",
    "PAPER_TABLE_III_GRID", "PAPER_TABLE_IV", "PAPER_TABLE_V", "PAPER_TABLE_VII", "READINGS",
    "STUDY_READING", "SUPERVISED_VARIANTS", "TABLE_II_VARIANTS", "TABLE_VII_SETTINGS", "RunSpec",
    "benchmark_root", "collect_runs", "compare_table_ii", "compare_table_iii", "compare_table_iv",
    "compare_table_v", "compare_table_vii", "describe", "evaluate_run", "evaluation_table", "fig13_table",
    "format_mean_sd", "kendall_tau", "main", "mean_sd", "missing_note",
    "positive_augmentation_table", "provenance_table", "report", "run", "run_table", "runs_root",
    "semi_supervised_run", "stable_run", "study_queue", "study_run", "supervised_run", "table_runs", "train_config", "verdict",
]


def _compared(table: str, runs: pd.DataFrame, profile: Profile,
              runs_vii: pd.DataFrame | None) -> tuple[pd.DataFrame, str]:
    """One table beside the paper's, and its verdict line (empty where the table has none).

    ``runs_vii``: Table VII's runs, shown beside "VII-colour" (:func:`report` reads VII first).
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
        return positive_augmentation_table(runs_vii, runs), ""
    return fig13_table(runs, profile), ""


def report(profile: str | Profile, *, benchmark_seed: int = 0) -> str:
    """Markdown of every table that has finished runs, beside the paper's, with the Kendall τ verdicts
    (what the README quotes)."""
    p = get_profile(profile)
    parts, read = [], {}
    for table in ("II", "III", "IV", "V", "V-supervised", "VII", "VII-colour", "fig13"):
        runs, missing = run_table(table, p, benchmark_seed=benchmark_seed, train_missing=False)
        read[table] = runs
        title = f"### {'Fig. 13' if table == 'fig13' else 'Table ' + table} ({p.name}; {len(runs)} runs finished)"
        if len(runs):
            compared, note = _compared(table, runs, p, runs_vii=read.get("VII"))
            body = to_markdown(compared) + (f"\n{note}\n" if note else "")
        else:
            body = "no finished run yet\n"
        parts.append(f"{title}\n\n{body}\n{missing_note(missing)}\n")
    # The stable reading (semi_drdnet_dose): its progress, the dose–response runs, and the paired answers.
    root = runs_root(p, None, benchmark_seed)
    doses = dose_table(p, root)
    parts.append(f"### The stable reading: does unlabeled real rain help? ({p.name})\n\n"
                 f"{to_markdown(stable_progress(p, root))}\n\n"
                 + (f"{to_markdown(doses.assign(dose=doses['dose'].map('{:g}'.format)))}\n\n" if len(doses)
                    else "no dose–response run finished yet\n\n")
                 + f"{to_markdown(stable_answers(p, root))}\n\n"
                 + "\n\n".join(to_markdown(part)
                                 for table in (stable_table_vii, stable_table_ii, stable_fig13, stable_ddn)
                                 for part in table(p, root)) + "\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = study.queue_arguments("Semi-DRDNet")
    parser.add_argument("--benchmark-seed", type=int, default=0,
                        help="render seed of the embedded benchmark the runs read (0: the committed study's)")
    parser.add_argument("--data-root", default=None,
                        help="a folder of the real datasets, arranged as docs/benchmark.md says, instead of the embedded "
                             "benchmark; runs go to build/runs/<profile>/semi_drdnet/<folder name>/")
    parser.add_argument("--report", action="store_true", help="print every table with finished runs as markdown, then exit")
    parser.add_argument("--collect", action="store_true",
                        help="rewrite the runs table (results/<profile>/semi_drdnet_runs.csv) from the run folders, "
                             "e.g. after unpacking runs trained elsewhere, then exit")
    args = parser.parse_args(argv)
    p, seed = get_profile(args.profile), args.benchmark_seed
    root = runs_root(p, args.data_root, benchmark_seed=seed)
    if args.report and args.data_root is not None:
        parser.error("--report compares the embedded benchmark's study with the paper; on --data-root use --collect")
    if args.report:
        print(report(p, benchmark_seed=seed), flush=True)
        return 0
    queue = study.queue_selection(parser, args, study_queue(p), root)
    if queue is None:
        return 0
    if args.data_root is not None:  # a user's data: the table sits beside its run folders
        runs_csv = root / "semi_drdnet_runs.csv"
    else:
        runs_csv = results_dir(p.name) / ("semi_drdnet_runs.csv" if seed == 0 else f"semi_drdnet_runs-benchmark-seed{seed}.csv")

    def write_runs_table() -> None:
        with atomic_path(runs_csv) as tmp:
            collect_runs(p, root).to_csv(tmp, index=False)

    if args.collect:
        write_runs_table()
        print(f"wrote {runs_csv}", flush=True)
        return 0

    def after_each(done: study.StudyRun, record: dict) -> None:
        write_runs_table()
        print(f"done {done.run_id}: test PSNR-Y {record['test']['psnr_y']:.2f}, "
              f"real-proxy {record['realproxy']['psnr_y']:.2f}, {record['train_wall_time_s'] / 60:.1f} min", flush=True)

    study.work_through([study_run(spec, p, data_root=args.data_root, benchmark_seed=seed, progress=False)
                        for spec in queue], root, p.name,
                       budget_hours=args.budget_hours, after_each=after_each)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A method's study: a queue of training runs, each resumable, recorded and committed the same way.

Nothing here knows a method. A method describes each of its runs as a :class:`StudyRun` (a run id,
a function that trains or resumes the run in its folder, and one that scores it), and this module
does the rest, identically for every method:

- **Where runs live** (:func:`runs_root`): ``results/<profile>/<method>/runs/<run_id>/`` on the
  embedded benchmark (committed), ``.../runs-benchmark-seed<n>/`` on a benchmark rendered with
  another seed, ``build/runs/<profile>/<method>/<data folder>/`` on a user's own data, and a fresh
  temporary folder for a profile that trains inside the notebooks (``ci``).
- **Run records** (:func:`run_once`): ``segments.json``, the provenance of every training segment
  (a run may be stopped and resumed several times, on several machines), and ``metrics.json``, the
  run's scores with its commits and machines, written once the run is finished.
- **Committed checkpoints** (:func:`park_checkpoints`): an unfinished run's ``checkpoint.pt`` is cut
  into parts small enough to commit; the next :func:`run_once` joins them and resumes. A finished
  run keeps its model and logs, not its checkpoint.
- **The queue** (:func:`work_through`): several workers (one per core) share it; each run is trained
  by whoever locks it first (:data:`RUN_LOCK`), and a finished run is never trained again.
- **Several processes per run** (``torchrun``, :mod:`derainlib.distributed`): the processes of one
  launch are one worker. Rank 0 picks the next run (and holds its lock), writes the records and
  evaluates; every rank trains that run together, then they move on to the next one together.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from . import distributed
from .atomic import has_parts, join_file, split_file, try_lock, write_text_atomic
from .paths import build_dir, method_runs_root
from .profiles import Profile, get_profile
from .provenance import machine_label, provenance
from .trainer_common import TrainingDiverged

METRICS = "metrics.json"  # a finished run's record
SEGMENTS = "segments.json"  # the provenance of each training segment
CHECKPOINT = "checkpoint.pt"  # what the shared trainer resumes from (a dict with the "step" done)
RUN_LOCK = "running.lock"  # held by the worker training a run (git-ignored)
CHECKPOINT_PART_BYTES = 15 * 2**20  # under the 20 MB a file may have in this repository


@dataclass(frozen=True)
class Trained:
    """What a method's train function reports: the steps done, the training time, and the facts about the
    run the method wants in ``metrics.json`` (e.g. its spec and sizes)."""

    steps: int
    wall_time_s: float
    facts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StudyRun:
    """One run of a method's study, as the queue sees it.

    ``train(run_dir)`` trains the run in ``run_dir``, resuming from ``run_dir / "checkpoint.pt"`` when
    it exists, and returns :class:`Trained`; ``evaluate(run_dir)`` scores the trained run and returns a
    dict of score groups (e.g. ``{"test": {...}, "realproxy": {...}}``), merged into ``metrics.json``.
    ``needs``: ids of runs in the same folder this run starts from (``train`` trains one that is missing);
    the queue leaves the run for later while another worker is training one of them.
    """

    run_id: str
    train: Callable[[Path], Trained]
    evaluate: Callable[[Path], dict]
    needs: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- where runs live


@cache
def _notebook_runs_root() -> Path:
    # Profiles that train inside the notebooks (ci) always retrain, in a fresh folder: a stale run
    # from older code must never feed a committed notebook.
    folder = Path(tempfile.mkdtemp(prefix="derainlib-ci-runs-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def runs_root(profile: str | Profile, method: str, data_root: str | Path | None = None,
              benchmark_seed: int = 0) -> Path:
    """The folder holding one folder per run of ``method`` (see the module docstring).

    ``benchmark_seed`` is the render seed of the embedded benchmark the runs read: runs on different
    renderings never share a folder. It does not apply to a user's ``data_root`` (nothing is rendered).
    """
    p = get_profile(profile)
    seed_folder = f"benchmark-seed{int(benchmark_seed)}"
    if p.train_in_notebooks:
        return _notebook_runs_root() / method / (seed_folder if data_root is None else Path(data_root).resolve().name)
    if data_root is not None:
        return build_dir("runs", p.name, method, Path(data_root).resolve().name)
    runs = method_runs_root(p.name, method)
    return runs if benchmark_seed == 0 else runs.with_name(f"runs-{seed_folder}")


# ----------------------------------------------------------------------------- one run


def read_record(run_dir: Path) -> dict | None:
    """A run's ``metrics.json`` record, or None while the run is unfinished."""
    path = Path(run_dir) / METRICS
    return json.loads(path.read_text()) if path.exists() else None


def _checkpoint_step(checkpoint: Path) -> int:
    if not checkpoint.exists():
        return 0
    import torch  # only here: the rest of the queue runs without it

    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["step"])


def run_once(study_run: StudyRun, run_dir: Path, profile_name: str) -> dict:
    """Train (or resume) and evaluate one run in ``run_dir``; return its ``metrics.json`` record.

    A finished run is read back, not retrained. The record: ``run_id``, ``profile``, the method's
    facts (:class:`Trained`), ``steps``, ``train_wall_time_s``, ``commits``, ``machines`` and the
    evaluation's score groups. Under ``torchrun`` every rank calls this; all train, rank 0 alone reads
    and writes the records and evaluates, and every rank returns its record.
    """
    run_dir = Path(run_dir)
    processes = distributed.ensure_process_group().size
    finished = distributed.on_main(lambda: read_record(run_dir))
    if finished is not None:
        return finished
    # Every training segment is recorded when it starts, with the commit this process's code came from;
    # its end step is filled in when it finishes (null: the segment was interrupted; its work up to the
    # last checkpoint counts).
    segments_path = run_dir / SEGMENTS

    def start_segment() -> tuple[list, dict]:
        segments = json.loads(segments_path.read_text()) if segments_path.exists() else []
        checkpoint = run_dir / CHECKPOINT
        if has_parts(checkpoint):  # a partial checkpoint committed in parts (see park_checkpoints)
            join_file(checkpoint)
        segment = provenance(profile_name, {"run_id": study_run.run_id}, 0.0) | {"steps": [_checkpoint_step(checkpoint), None]}
        if processes > 1:  # trained under torchrun: its wall time is that of this many processes together
            segment["processes"] = processes
        segments.append(segment)
        write_text_atomic(segments_path, json.dumps(segments, indent=1))
        return segments, segment

    segments, segment = distributed.on_main(start_segment)
    started = time.perf_counter()
    try:
        trained = study_run.train(run_dir)
    except TrainingDiverged as error:  # the NaN guard kept the last good checkpoint: the segment says why it ended
        def note_divergence() -> None:
            segment["diverged"] = str(error)
            write_text_atomic(segments_path, json.dumps(segments, indent=1))

        distributed.on_main(note_divergence)
        raise

    def finish() -> dict:
        segment["wall_time_s"] = round(time.perf_counter() - started, 1)
        segment["steps"][1] = trained.steps
        write_text_atomic(segments_path, json.dumps(segments, indent=1))
        evaluation = study_run.evaluate(run_dir)
        record = {
            "run_id": study_run.run_id, "profile": profile_name, **trained.facts,
            "steps": trained.steps, "train_wall_time_s": round(trained.wall_time_s, 1),
            "commits": sorted({segment["commit"] for segment in segments}),
            "machines": sorted({machine_label(segment["machine"]) for segment in segments}),
            **evaluation,
        }
        write_text_atomic(run_dir / METRICS, json.dumps(record, indent=1))
        (run_dir / CHECKPOINT).unlink(missing_ok=True)  # the model and the logs are what is kept
        return record

    return distributed.on_main(finish)


def run_needed(study_run: StudyRun, run_dir: Path, profile_name: str) -> dict:
    """The record of a run another run starts from (:attr:`StudyRun.needs`): read back when finished, else
    trained here under its queue lock (so that other workers see it held), or waited for while another
    worker trains it."""
    run_dir = Path(run_dir)
    while True:
        record = distributed.on_main(lambda: read_record(run_dir))
        if record is not None:
            return record
        with contextlib.ExitStack() as held:
            if distributed.on_main(lambda: held.enter_context(try_lock(run_dir / RUN_LOCK))):
                return run_once(study_run, run_dir, profile_name)
        time.sleep(_WAIT_S)


def read_records(runs_dir: Path) -> list[dict]:
    """Every finished run's record under ``runs_dir``, in run-folder order."""
    return [json.loads(path.read_text()) for path in sorted(Path(runs_dir).glob(f"*/{METRICS}"))]


# ----------------------------------------------------------------------------- the queue


def is_training(run_dir: Path) -> bool:
    """Whether a live process holds ``run_dir``'s lock, i.e. is training that run right now."""
    if not (Path(run_dir) / RUN_LOCK).exists():
        return False
    with try_lock(Path(run_dir) / RUN_LOCK) as free:
        return not free


def diverged_last(run_dir: Path) -> bool:
    """Whether the run's last training segment ended in the NaN guard (:func:`run_once`)."""
    path = Path(run_dir) / SEGMENTS
    return path.exists() and "diverged" in (json.loads(path.read_text()) or [{}])[-1]


def run_state(run_dir: Path) -> str:
    """``done``, ``training`` (a live worker holds it), ``diverged`` (its last segment hit the NaN guard; the
    next queue resumes it from its last good checkpoint), ``in progress`` (a checkpoint waits) or ``pending``."""
    run_dir = Path(run_dir)
    checkpoint = run_dir / CHECKPOINT
    return ("done" if (run_dir / METRICS).exists()
            else "training" if is_training(run_dir)
            else "diverged" if diverged_last(run_dir)
            else "in progress" if checkpoint.exists() or has_parts(checkpoint) else "pending")


def park_checkpoints(runs_dir: Path, part_bytes: int = CHECKPOINT_PART_BYTES) -> list[Path]:
    """Cut every unfinished run's checkpoint bigger than ``part_bytes`` into parts, to commit it.

    Run this after stopping the workers, before committing the runs folder; the next :func:`run_once`
    of that run joins the parts back (checking their checksum) and resumes. Runs being trained are left
    alone. Returns the checkpoints that were split.
    """
    split = []
    for checkpoint in sorted(Path(runs_dir).glob(f"*/{CHECKPOINT}")):
        if checkpoint.stat().st_size > part_bytes and not is_training(checkpoint.parent):
            split_file(checkpoint, part_bytes)
            split.append(checkpoint)
    return split


def work_through(queue: Sequence[StudyRun], runs_dir: Path, profile_name: str, *,
                 budget_hours: float = math.inf, after_each: Callable[[StudyRun, dict], None] | None = None,
                 log: Callable[[str], None] = lambda line: print(line, flush=True)) -> list[str]:
    """Train every unfinished run of ``queue`` in order, sharing the queue with other workers.

    A run another worker holds is skipped, and so is a run that needs one (:attr:`StudyRun.needs`) another
    worker is training; no new run starts after ``budget_hours`` (a started run finishes). A run left for that
    reason is tried again once the queue's end is reached (the worker sleeps when nothing else is left). A run
    that stops in the NaN guard (:class:`~derainlib.trainer_common.TrainingDiverged`) is logged and left to the
    next launch of the queue. ``after_each(run, record)`` is called after each run this worker finished (e.g. to
    rewrite a results table). Returns the ids trained here.
    Under ``torchrun`` every rank calls this with the same queue: rank 0 decides which run comes next
    (and holds its lock) and alone logs and calls ``after_each``; all ranks train each run together.
    """
    distributed.ensure_process_group()
    main = distributed.is_main()
    started, trained = time.perf_counter(), []
    waiting = list(queue)
    while waiting:
        deferred = []
        for study_run in waiting:
            run_dir = Path(runs_dir) / study_run.run_id
            with contextlib.ExitStack() as held:
                def pick() -> str:
                    if (run_dir / METRICS).exists():
                        return "skip"
                    if (time.perf_counter() - started) / 3600 > budget_hours:
                        log(f"budget of {budget_hours} h spent; stopping before {study_run.run_id}")
                        return "stop"
                    if any(is_training(Path(runs_dir) / need) for need in study_run.needs):
                        return "later"
                    if not held.enter_context(try_lock(run_dir / RUN_LOCK)) or (run_dir / METRICS).exists():
                        return "skip"
                    log(f"run {study_run.run_id}")
                    return "run"

                decision = distributed.on_main(pick)
                if decision == "stop":
                    return trained
                if decision == "later":
                    deferred.append(study_run)
                if decision != "run":
                    continue
                try:
                    record = run_once(study_run, run_dir, profile_name)
                except TrainingDiverged as error:
                    # Not retried by this worker: where the loss diverged once it may diverge again. The next
                    # launch of the queue resumes the run from its last good checkpoint (a rare bf16 overflow
                    # does not recur there); the other runs go on meanwhile.
                    log(f"diverged {study_run.run_id}: {error}")
                    continue
            trained.append(study_run.run_id)
            if after_each is not None and main:
                after_each(study_run, record)
        if deferred and len(deferred) == len(waiting):  # every run left waits on another worker
            time.sleep(_WAIT_S)
        waiting = deferred
    return trained


_WAIT_S = 30.0  # how long a worker whose every remaining run waits on another worker sleeps before looking again


def queue_arguments(method: str) -> argparse.ArgumentParser:
    """A study command's parser with the options every queue shares: ``--profile``, ``--budget-hours``,
    ``--list``, ``--park`` and ``--only``; each method's command adds its own."""
    parser = argparse.ArgumentParser(
        description=f"Work through the {method} study queue (resumable; start it once per core to share the queue).")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--budget-hours", type=float, default=math.inf,
                        help="start no new run after this many hours (a started run finishes)")
    parser.add_argument("--list", action="store_true", help="print the queue and each run's state, then exit")
    parser.add_argument("--park", action="store_true",
                        help=f"cut the checkpoints of stopped, unfinished runs into {CHECKPOINT_PART_BYTES // 2**20} MB "
                             f"parts to commit (a clone on another machine resumes them), then exit")
    parser.add_argument("--only", nargs="*", default=None, help="run ids to run (default: the whole queue)")
    return parser


def select_runs(queue: Sequence, only: Iterable[str] | None) -> tuple[list, list[str]]:
    """The specs of ``queue`` (anything with a ``run_id``) named in ``only`` (every one when ``None``), in queue
    order, and the names in ``only`` that the queue does not hold, sorted (a study command reports them)."""
    chosen = [spec for spec in queue if only is None or spec.run_id in only]
    return chosen, sorted(set(only or ()) - {spec.run_id for spec in chosen})


def queue_selection(parser: argparse.ArgumentParser, args: argparse.Namespace, queue: Sequence,
                    runs_dir: Path) -> list | None:
    """For a study command (:func:`queue_arguments`): the runs of ``queue`` that ``--only`` names (the parser
    exits naming ids the queue does not hold), or ``None`` once ``--list`` has printed each run's state or
    ``--park`` has cut the checkpoints under ``runs_dir`` into parts (:func:`park_checkpoints`)."""
    chosen, unknown = select_runs(queue, args.only)
    if unknown:
        parser.error(f"not in the {args.profile} study queue (see --list): {', '.join(unknown)}")
    if args.park:
        for checkpoint in park_checkpoints(runs_dir):
            print(f"split {checkpoint} into parts", flush=True)
        return None
    if args.list:
        print("\n".join(list_queue([spec.run_id for spec in chosen], runs_dir)), flush=True)
        return None
    return chosen


def list_queue(run_ids: Iterable[str], runs_dir: Path) -> list[str]:
    """One line per run: its :func:`run_state` and id."""
    return [f"{run_state(Path(runs_dir) / run_id):12s} {run_id}" for run_id in run_ids]


"""The method-neutral study queue and run records (derainlib.study), with a fake method."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from derainlib import study
from derainlib.experiments import semi_drdnet as semi
from derainlib.paths import REPO_ROOT, build_dir, method_runs_root, results_dir
from derainlib.trainer_common import TrainingDiverged


def fake_run(run_id: str, trained: list[str], steps: int = 5) -> study.StudyRun:
    """A method whose training writes a checkpoint and a model file, and whose score is its step count."""

    def train(run_dir: Path) -> study.Trained:
        trained.append(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"step": steps}, run_dir / study.CHECKPOINT)
        (run_dir / "model.txt").write_text("weights")
        return study.Trained(steps, 0.25, {"spec": {"name": run_id}})

    return study.StudyRun(run_id, train, lambda run_dir: {"test": {"score": float(steps)}})


def test_run_once_records_segments_and_metrics_then_reads_a_finished_run_back(tmp_path):
    trained: list[str] = []
    run_dir = tmp_path / "a"
    record = study.run_once(fake_run("a", trained), run_dir, "ci")
    assert trained == ["a"]
    assert json.loads((run_dir / study.METRICS).read_text()) == record
    assert record["run_id"] == "a" and record["profile"] == "ci" and record["spec"] == {"name": "a"}
    assert record["steps"] == 5 and record["test"] == {"score": 5.0} and record["commits"] and record["machines"]
    segments = json.loads((run_dir / study.SEGMENTS).read_text())
    assert [segment["steps"] for segment in segments] == [[0, 5]] and segments[0]["profile"] == "ci"
    assert not (run_dir / study.CHECKPOINT).exists() and (run_dir / "model.txt").exists()
    assert study.run_once(fake_run("a", trained), run_dir, "ci") == record and trained == ["a"]
    assert study.read_records(tmp_path) == [record]


def test_a_resumed_run_records_the_step_it_resumed_from(tmp_path):
    run_dir = tmp_path / "a"
    run_dir.mkdir()
    torch.save({"step": 3}, run_dir / study.CHECKPOINT)
    (run_dir / study.SEGMENTS).write_text(json.dumps([{"commit": "old", "steps": [0, None],
                                                       "machine": {"processor": "elsewhere"}}]))
    record = study.run_once(fake_run("a", []), run_dir, "cpu")
    segments = json.loads((run_dir / study.SEGMENTS).read_text())
    assert [segment["steps"] for segment in segments] == [[0, None], [3, 5]]
    assert "old" in record["commits"] and "elsewhere" in record["machines"]


def test_workers_share_the_queue_by_locking_each_run(tmp_path):
    trained: list[str] = []
    queue = [fake_run("first", trained), fake_run("second", trained)]
    finished: list[str] = []
    with study.try_lock(tmp_path / "first" / study.RUN_LOCK) as got:
        assert got  # another worker is training `first`
        assert study.list_queue(["first", "second"], tmp_path) == ["training     first", "pending      second"]
        study.work_through(queue, tmp_path, "cpu", after_each=lambda run, record: finished.append(run.run_id),
                           log=lambda line: None)
        assert trained == ["second"] and finished == ["second"]
    assert not study.is_training(tmp_path / "first")  # released with its holder
    assert study.work_through(queue, tmp_path, "cpu", log=lambda line: None) == ["first"]
    assert trained == ["second", "first"]  # the finished one is not run again
    assert study.list_queue(["first", "second"], tmp_path) == ["done         first", "done         second"]


def test_a_run_that_diverges_is_logged_and_left_while_the_queue_goes_on(tmp_path):
    """The NaN guard's error ends the run's segment (which says why), not the worker: the next run trains, and
    the diverged one is left to the next launch, which resumes it."""
    trained: list[str] = []

    def diverging_train(run_dir: Path) -> study.Trained:
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"step": 3}, run_dir / study.CHECKPOINT)  # the last good checkpoint the guard keeps
        trained.append("nan")
        raise TrainingDiverged(f"{run_dir}: non-finite loss at step 4")

    nan_run = study.StudyRun("nan", diverging_train, lambda run_dir: pytest.fail("a diverged run was scored"))
    lines: list[str] = []
    done = study.work_through([nan_run, fake_run("next", trained)], tmp_path, "cpu", log=lines.append)
    assert done == ["next"] and trained == ["nan", "next"]  # tried once, not again by this worker
    assert any(line.startswith("diverged nan:") and "non-finite loss at step 4" in line for line in lines)
    segments = json.loads((tmp_path / "nan" / study.SEGMENTS).read_text())
    assert segments[-1]["steps"] == [0, None] and "step 4" in segments[-1]["diverged"]
    assert study.run_state(tmp_path / "nan") == "diverged" and study.run_state(tmp_path / "next") == "done"
    # the next launch resumes it from its checkpoint; once it finishes, it is done
    assert study.work_through([fake_run("nan", trained)], tmp_path, "cpu", log=lines.append) == ["nan"]
    assert [s["steps"] for s in json.loads((tmp_path / "nan" / study.SEGMENTS).read_text())] == [[0, None], [3, 5]]
    assert study.run_state(tmp_path / "nan") == "done"


def test_a_run_whose_need_another_worker_trains_waits_while_the_queue_goes_on(tmp_path, monkeypatch):
    import contextlib
    import dataclasses

    trained: list[str] = []
    child = dataclasses.replace(fake_run("child", trained), needs=("base",))
    other = fake_run("other", trained)
    holder = contextlib.ExitStack()
    assert holder.enter_context(study.try_lock(tmp_path / "base" / study.RUN_LOCK))  # another worker trains `base`
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # every run left waits: the other worker finishes meanwhile
        slept.append(seconds)
        holder.close()

    monkeypatch.setattr(study.time, "sleep", sleep)
    assert study.work_through([child, other], tmp_path, "cpu", log=lambda line: None) == ["other", "child"]
    assert trained == ["other", "child"] and len(slept) == 1


def test_a_needed_run_is_read_back_trained_under_its_lock_or_waited_for(tmp_path, monkeypatch):
    import contextlib

    trained: list[str] = []
    seen_locked: list[bool] = []

    def train(run_dir: Path) -> study.Trained:
        seen_locked.append(study.is_training(run_dir))  # other workers see it held
        return fake_run("base", trained).train(run_dir)

    base = study.StudyRun("base", train, lambda run_dir: {"test": {"score": 1.0}})
    record = study.run_needed(base, tmp_path / "base", "cpu")
    assert record["run_id"] == "base" and seen_locked == [True]
    assert study.run_needed(base, tmp_path / "base", "cpu") == record and trained == ["base"]  # read back

    holder = contextlib.ExitStack()
    assert holder.enter_context(study.try_lock(tmp_path / "held" / study.RUN_LOCK))
    monkeypatch.setattr(study.time, "sleep", lambda seconds: holder.close())  # the holder finishes, or dies
    held = study.StudyRun("held", fake_run("held", trained).train, lambda run_dir: {})
    assert study.run_needed(held, tmp_path / "held", "cpu")["run_id"] == "held" and trained[-1] == "held"


def test_no_new_run_starts_after_the_budget(tmp_path):
    trained: list[str] = []
    lines: list[str] = []
    assert study.work_through([fake_run("a", trained)], tmp_path, "cpu", budget_hours=-1, log=lines.append) == []
    assert trained == [] and lines == ["budget of -1 h spent; stopping before a"]


def test_parked_checkpoints_are_cut_into_parts_unless_their_run_is_training(tmp_path):
    for name in ("idle", "busy", "small"):
        (tmp_path / name).mkdir()
        (tmp_path / name / study.CHECKPOINT).write_bytes(b"x" * (10 if name == "small" else 5000))
    with study.try_lock(tmp_path / "busy" / study.RUN_LOCK):
        assert study.park_checkpoints(tmp_path, part_bytes=1024) == [tmp_path / "idle" / study.CHECKPOINT]
    assert study.run_state(tmp_path / "idle") == "in progress" and not (tmp_path / "idle" / study.CHECKPOINT).exists()


def test_runs_live_under_results_profile_method_runs(tmp_path, monkeypatch):
    assert study.runs_root("cpu", "anlcl") == method_runs_root("cpu", "anlcl") == results_dir("cpu") / "anlcl" / "runs"
    assert study.runs_root("cpu", "anlcl", benchmark_seed=2) == results_dir("cpu") / "anlcl" / "runs-benchmark-seed2"
    assert study.runs_root("gpu", "rainmer", data_root=tmp_path / "Rain200H") == build_dir("runs", "gpu", "rainmer", "Rain200H")
    monkeypatch.setattr(study, "_notebook_runs_root", lambda: tmp_path / "fresh")
    assert study.runs_root("ci", "anlcl", benchmark_seed=1) == tmp_path / "fresh" / "anlcl" / "benchmark-seed1"
    assert study.runs_root("ci", "anlcl") != study.runs_root("ci", "semi_drdnet")


def test_the_committed_study_runs_are_read_unchanged():
    """The committed run folders and their table: collecting them again gives the committed csv byte for byte."""
    committed = results_dir("cpu") / "semi_drdnet_runs.csv"
    if not committed.exists():
        pytest.skip("no committed cpu study in this checkout")
    assert semi.runs_root("cpu") == REPO_ROOT / "results" / "cpu" / "semi_drdnet" / "runs"
    rendered = io.StringIO()
    semi.collect_runs("cpu").to_csv(rendered, index=False)
    assert rendered.getvalue() == committed.read_text()


def test_select_runs_keeps_queue_order_and_names_unknown_ids():
    from types import SimpleNamespace
    queue = [SimpleNamespace(run_id=name) for name in ("a", "b", "c")]
    assert study.select_runs(queue, None) == (queue, [])
    chosen, unknown = study.select_runs(queue, ["c", "zz", "a", "yy"])
    assert [spec.run_id for spec in chosen] == ["a", "c"] and unknown == ["yy", "zz"]

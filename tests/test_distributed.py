"""Training on several processes (derainlib.distributed): two CPU processes with gloo, at tiny sizes.

The processes are started the way torchrun starts them (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...
in the environment), by ``torch.multiprocessing`` here and by ``python -m torch.distributed.run`` itself
in the test of who writes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from derainlib import distributed
from derainlib.losses import RainMemoryBank
from derainlib.losses.memory_bank import augmented_negatives
from derainlib.train import TrainConfig, train
from test_train import make_paired, make_real

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_rank(rank: int, size: int, port: int) -> None:
    """The environment torchrun gives rank ``rank`` of ``size`` on one machine."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size), LOCAL_WORLD_SIZE=str(size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two processes on a small machine: do not oversubscribe its cores


def _worker(rank: int, size: int, port: int, job: Callable[..., None], args: dict) -> None:
    _as_rank(rank, size, port)
    assert distributed.ensure_process_group() == distributed.World(rank, size, rank)
    job(**args)
    distributed.end_spawned_rank()  # the torchrun tests below check that a real run's exit is clean


def spawn_ranks(job: Callable[..., None], size: int = 2, **args) -> None:
    """Run the module-level function ``job(**args)`` in ``size`` processes with a gloo process group."""
    mp.spawn(_worker, args=(size, _free_port(), job, args), nprocs=size, join=True)


def _config(data: Path, **overrides) -> TrainConfig:
    settings = dict(variant="Semi-DRDNet", width=4, num_blocks=1, train_root=str(data / "paired"),
                    train_layout="rain13k", patch_size=32, batch_size=4, steps=2, checkpoint_every=5, device="cpu")
    if overrides.pop("semi", False):
        settings |= dict(semi_supervised=True, real_root=str(data / "real"))
    return TrainConfig(**(settings | overrides))


def _data(tmp_path: Path) -> Path:
    make_paired(tmp_path / "data" / "paired", 8)
    make_real(tmp_path / "data" / "real", 8)
    return tmp_path / "data"


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False)["model"]


# ----------------------------------------------------------------------------- jobs run in every process


def _train_runs(runs: list[tuple[dict, str]]) -> None:
    for config, run_dir in runs:
        train(TrainConfig(**config), run_dir, progress=False)


def _train_then_kill(config: dict, run_dir: str, kill_at: int) -> None:
    def kill(step: int, values: dict) -> None:
        if step == kill_at:
            os._exit(9)  # like SIGKILL: no cleanup, no lock released by hand, nothing flushed

    train(TrainConfig(**config), run_dir, progress=False, on_step=kill)


def _gather_and_mean(out: str) -> None:
    rank = distributed.world().rank
    gathered = distributed.all_gather_batch(torch.full((2, 3), float(rank)))
    mean = distributed.mean_over_ranks({"a": float(rank), "b": 1.0})
    try:
        distributed.on_main(lambda: 1 / 0)
        failed = None
    except ZeroDivisionError as error:
        failed = type(error).__name__
    torch.save({"gathered": gathered, "mean": mean, "failed": failed, "main": distributed.on_main(lambda: rank)},
               Path(out) / f"rank{rank}.pt")


def _diverge_on_rank_one(config: dict, run_dir: str, out: str) -> None:
    """Rank 1's loss becomes NaN at step 3; rank 0's stays finite."""
    import derainlib.train as train_module

    rank, calls = distributed.world().rank, []
    finite = train_module.detail_repair_loss

    def detail(derained, clean):
        calls.append(1)
        loss = finite(derained, clean)
        return loss * float("nan") if rank == 1 and len(calls) == 3 else loss

    train_module.detail_repair_loss = detail
    try:
        train(TrainConfig(**config), run_dir, progress=False)
        stopped = None
    except train_module.TrainingDiverged as error:
        stopped = str(error)
    Path(out, f"diverged{rank}.txt").write_text(repr(stopped))


# ----------------------------------------------------------------------------- tests


def test_one_process_is_left_alone(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.ensure_process_group() == distributed.World(0, 1, 0) and not dist.is_initialized()
    batch = torch.rand(2, 3)
    assert distributed.all_gather_batch(batch) is batch
    assert distributed.mean_over_ranks({"x": 1.5}) == {"x": 1.5} and distributed.broadcast_object(7) == 7
    model = torch.nn.BatchNorm2d(3)
    assert distributed.wrap_model(model, torch.device("cpu"), sync_batchnorm=True) is model


@pytest.mark.slow
def test_collectives_gather_in_rank_order_and_errors_reach_every_rank(tmp_path):
    spawn_ranks(_gather_and_mean, out=str(tmp_path))
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert torch.equal(got["gathered"], torch.tensor([[0.0] * 3] * 2 + [[1.0] * 3] * 2))
        assert got["mean"] == {"a": 0.5, "b": 1.0}
        assert got["failed"] == "ZeroDivisionError" and got["main"] == 0


@pytest.mark.slow
def test_a_nan_loss_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    config = _config(_data(tmp_path), batch_size=2, steps=6, checkpoint_every=2)
    spawn_ranks(_diverge_on_rank_one, config=config.as_dict(), run_dir=str(tmp_path / "run"), out=str(tmp_path))
    messages = [(tmp_path / f"diverged{rank}.txt").read_text() for rank in (0, 1)]
    assert all("non-finite loss at step 3" in message and "step 2) is kept" in message for message in messages)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 2
    assert not (tmp_path / "run" / "model.pt").exists()


def test_each_rank_loads_its_slice_of_the_same_global_batches(tmp_path):
    dataset_root = make_paired(tmp_path / "paired", 10)
    from derainlib.data.datasets import PairedImageDataset

    dataset = PairedImageDataset(dataset_root, "rain13k", crop=16, augment=True, seed=3)
    whole = distributed.batch_stream(dataset, 4, seed=3, start_step=1, num_workers=0)
    parts = [distributed.batch_stream(dataset, 4, seed=3, start_step=1, num_workers=0, rank=r, size=2) for r in (0, 1)]
    for _ in range(4):  # across an epoch boundary (2 global batches per epoch)
        batch = next(whole)
        halves = [next(p) for p in parts]
        assert torch.equal(torch.cat([h["rainy"] for h in halves]), batch["rainy"])
        assert torch.equal(torch.cat([h["clean"] for h in halves]), batch["clean"])
    with pytest.raises(ValueError, match="cannot be split evenly over 3"):
        next(distributed.batch_stream(dataset, 4, seed=3, start_step=0, num_workers=0, rank=0, size=3))


def test_a_sharded_memory_bank_draws_what_one_process_draws_for_the_global_batch():
    layers = torch.rand(6, 3, 8, 8)
    background, rainy = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)

    def bank(shard: tuple[int, int]) -> RainMemoryBank:
        b = RainMemoryBank(capacity=16, seed=5)
        b.push(layers, "synthetic")
        b.shard = shard
        return b

    whole = augmented_negatives(background, rainy, bank((0, 1)), num_negatives=3, real_only=False)
    halves = [augmented_negatives(background[2 * r:2 * r + 2], rainy[2 * r:2 * r + 2], bank((r, 2)),
                                  num_negatives=3, real_only=False) for r in (0, 1)]
    for k, negative in enumerate(whole):
        assert torch.equal(torch.cat([halves[0][k], halves[1][k]]), negative)


@pytest.mark.slow
def test_two_processes_take_the_step_of_one_process_on_the_whole_batch(tmp_path):
    """After one step, two processes with 2 crops each hold the weights and batch-norm statistics of one
    process with the 4 crops, with batch norm over the global batch. With per-process batch norm (the
    default) they do not: the test can tell.

    Left out: the biases of convolutions that batch norm follows. Batch norm subtracts any constant per
    channel, so their gradient is zero in exact arithmetic and rounding noise (~1e-9) in floats, and
    Adam's first step, ``lr * g / (|g| + eps)``, turns that noise into a step of random sign."""
    data = _data(tmp_path)
    config = _config(data, contrastive="dual", vgg_weights="random", steps=1)
    synced = TrainConfig(**(config.as_dict() | {"sync_batchnorm": True}))
    spawn_ranks(_train_runs, runs=[(synced.as_dict(), str(tmp_path / "two-sync")),
                                   (config.as_dict(), str(tmp_path / "two-local"))])
    train(config, tmp_path / "one", progress=False)  # sync_batchnorm does nothing in one process
    one, two, local = (_weights(tmp_path / name) for name in ("one", "two-sync", "two-local"))
    gradients = _first_step_gradients(config)
    cancelled = {name for name, grad in gradients.items() if grad.abs().max() < 1e-6}
    assert cancelled and all(name.endswith(".bias") for name in cancelled)
    assert len(cancelled) < len(gradients) / 3
    compared = [name for name in one if name not in cancelled]
    assert one.keys() == two.keys()
    for name in compared:
        assert torch.allclose(one[name].float(), two[name].float(), rtol=1e-4, atol=1e-6), name
    assert any(not torch.allclose(one[name].float(), local[name].float(), rtol=1e-4, atol=1e-6) for name in compared)
    untrained = _untrained(config)
    assert all(not torch.equal(one[name], untrained[name]) for name in gradients if name not in cancelled)


def _untrained(config: TrainConfig) -> dict[str, torch.Tensor]:
    from derainlib.models import build_network
    from derainlib.runtime import seed_everything

    seed_everything(config.seed)
    return build_network(config.variant, width=config.width, num_blocks=config.num_blocks).state_dict()


def _first_step_gradients(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The gradients of the run's first step in one process, built as :func:`derainlib.train.train` builds it."""
    from derainlib.models import build_network
    from derainlib.runtime import seed_everything
    from derainlib.train import batch_stream, build_dual, training_datasets, training_step

    seed_everything(config.seed)
    model = build_network(config.variant, width=config.width, num_blocks=config.num_blocks)
    dual = build_dual(config)
    paired, _ = training_datasets(config)
    batch = next(batch_stream(paired, config.batch_size, config.seed, 0, 0))
    training_step(model, dual, config, batch["rainy"], batch["clean"], None)["total"].backward()
    return {name: parameter.grad for name, parameter in model.named_parameters()}


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_to_the_same_weights(tmp_path):
    """Semi-supervised with DualSCRNet: the checkpoint carries the gathered memory bank for every rank."""
    data = _data(tmp_path)
    config = _config(data, semi=True, contrastive="dual", vgg_weights="random", batch_size=2, steps=10,
                     checkpoint_every=4).as_dict()
    with pytest.raises(mp.ProcessExitedException):
        spawn_ranks(_train_then_kill, config=config, run_dir=str(tmp_path / "killed"), kill_at=6)
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["step"] == 4
    spawn_ranks(_train_runs, runs=[(config, str(tmp_path / "killed")), (config, str(tmp_path / "whole"))])
    whole, resumed = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert all(torch.equal(whole[name], resumed[name]) for name in whole)
    logs = [(tmp_path / run / "log.csv").read_text().splitlines()[0] for run in ("whole", "killed")]
    assert logs[0] == logs[1]


WRITER_SCRIPT = """
import json, os, sys
from pathlib import Path

import torch

torch.set_num_threads(1)
written = []
_replace = os.replace
def replace(src, dst, *args, **kwargs):  # every atomic write of derainlib ends in one os.replace
    written.append(str(dst))
    return _replace(src, dst, *args, **kwargs)
os.replace = replace

from derainlib import distributed, study
from derainlib.train import TrainConfig, train

config = TrainConfig(**json.loads(sys.argv[1]))
runs_dir = Path(sys.argv[2])
evaluated = []

def train_run(run_dir):
    result = train(config, run_dir, progress=False)
    return study.Trained(result.steps, result.wall_time_s, {"ranks": distributed.world().size})

def evaluate_run(run_dir):
    evaluated.append(distributed.world().rank)
    return {"test": {"rank": distributed.world().rank}}

queue = [study.StudyRun(name, train_run, evaluate_run) for name in ("first", "second")]
trained = study.work_through(queue, runs_dir, "ci", log=lambda line: written.append("log: " + line))
rank = distributed.world().rank
Path(sys.argv[3], f"rank{rank}.json").write_text(json.dumps({"written": written, "evaluated": evaluated,
                                                           "trained": trained}))
"""


@pytest.mark.slow
def test_under_torchrun_only_rank_zero_writes_and_the_ranks_work_through_the_queue_together(tmp_path):
    data = _data(tmp_path)
    config = _config(data, steps=3, batch_size=2, checkpoint_every=2)
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    (tmp_path / "report").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), json.dumps(config.as_dict()), str(tmp_path / "runs"), str(tmp_path / "report")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((tmp_path / "report" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert reports[1]["written"] == [] and reports[1]["evaluated"] == []
    assert reports[0]["trained"] == reports[1]["trained"] == ["first", "second"]
    assert reports[0]["evaluated"] == [0, 0]
    written = [Path(path).name for path in reports[0]["written"] if not path.startswith("log: ")]
    for name in ("checkpoint.pt", "log.csv", "model.pt", "segments.json", "metrics.json"):
        assert name in written
    for run in ("first", "second"):
        folder = tmp_path / "runs" / run
        assert sorted(p.name for p in folder.iterdir()) == ["log.csv", "metrics.json", "model.pt", "running.lock",
                                                            "segments.json"]
        segments = json.loads((folder / "segments.json").read_text())
        assert len(segments) == 1 and segments[0]["processes"] == 2  # one writer, one segment
        record = json.loads((folder / "metrics.json").read_text())
        assert record["ranks"] == 2 and record["test"] == {"rank": 0} and record["steps"] == 3


STUDY_SCRIPT = """
import sys
from pathlib import Path

from derainlib import distributed, study
from derainlib.experiments import semi_drdnet_runs as runs

spec = next(spec for spec in runs.study_queue("ci") if spec.run_id == "rain200h-bl-m8b2-s0")
records = []
study.work_through([runs.study_run(spec, "ci", progress=False)], Path(sys.argv[1]), "ci",
                   after_each=lambda run, record: records.append(record))
if distributed.is_main():
    print("scored", records[0]["run_id"], records[0]["test"]["images"], flush=True)
"""


@pytest.mark.slow
def test_a_semi_drdnet_study_run_trains_under_torchrun(ci_benchmark, benchmark_home, tmp_path):
    """The study command's path (``torchrun -m derainlib.experiments.semi_drdnet``: the queue, the embedded
    benchmark, training, scoring) with two processes: the run is announced, scored and recorded once."""
    script = tmp_path / "study.py"
    script.write_text(STUDY_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DERAINLIB_DATA": str(benchmark_home), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(tmp_path / "runs")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines.count("run rain200h-bl-m8b2-s0") == 1
    assert len([line for line in lines if line.startswith("scored rain200h-bl-m8b2-s0")]) == 1
    folder = tmp_path / "runs" / "rain200h-bl-m8b2-s0"
    record = json.loads((folder / "metrics.json").read_text())
    assert record["steps"] == 20 and len(json.loads((folder / "segments.json").read_text())) == 1

"""Training on several processes (``torchrun``, DistributedDataParallel): the pieces every trainer shares.

A trainer written with these pieces runs unchanged in one process (``python -m ...``) and under
``torchrun --nproc_per_node=N`` (one process per GPU, or several CPU processes), on one machine or
several (``torchrun --nnodes``), e.g. the Semi-DRDNet study queue on 4 GPUs::

    torchrun --standalone --nproc_per_node=4 -m derainlib.experiments.semi_drdnet --profile paper

Without torchrun's environment (``RANK``, ``WORLD_SIZE``) nothing here
creates a process group and every helper is the identity: a single-process run computes and writes
exactly what it did before this module existed.

Under torchrun:

- **Process group** (:func:`ensure_process_group`): created on first use from the environment, with
  NCCL for CUDA tensors and gloo for CPU tensors (``"cpu:gloo,cuda:nccl"`` where CUDA exists, plain
  gloo elsewhere); each process uses the GPU ``LOCAL_RANK``. The timeout is :data:`TIMEOUT`: rank 0
  alone evaluates and writes while the others wait at their next collective.
- **Data** (:func:`batch_stream`): ``batch_size`` is the *global* batch; each rank loads its own
  contiguous slice of every global batch. The global batches are a pure function of ``(seed, step)``
  and a rank's slice of ``(seed, step, rank, world size)``, so a resumed run continues the same stream
  and an N-process run sees exactly the samples of a 1-process run with the same ``batch_size``.
- **The model** (:func:`wrap_model`): DistributedDataParallel averages the gradients, so a step on the
  global batch split across ranks equals one step on the whole global batch in one process, up to
  float rounding, provided every loss is a mean over the batch (ours are) and batch norm sees the
  global batch. By default it does not: each rank normalises by its own slice's statistics, which
  is what the paper's batch-8 step becomes when the 8 crops are split. ``sync_batchnorm=True``
  normalises by the statistics of the global batch (:class:`torch.nn.SyncBatchNorm` on CUDA,
  :class:`GlobalBatchNorm` on CPU, where torch has none); it costs one all-reduce per batch-norm layer
  in each direction, so it is off by default.
- **Who writes**: rank 0 alone (:func:`is_main`) locks the run folder, sweeps it, writes checkpoints,
  logs, models, results and records, atomically as in one process. Decisions that read the file system
  (is the run finished? which run of the queue is free?) are taken on rank 0 and broadcast
  (:func:`on_main`), so the other ranks need not see the run folder (several machines without a shared
  disk work). Every rank resumes from rank 0's checkpoint, broadcast (:func:`broadcast_object`).
- **Values that decide** (:func:`mean_over_ranks`): the logged losses are averaged over the ranks,
  so the NaN guard sees the same number on every rank and all ranks stop together.
- **Queues of keys** (:func:`all_gather_batch`): a memory bank, a MoCo queue or any FIFO of features
  must hold the same entries on every rank, or a checkpoint from rank 0 would not restore the others.
  Gather the batch's keys from every rank (in rank order, which is the global batch's order) and
  enqueue the gathered batch on every rank; DualSCRNet's rain-layer bank does so. A momentum encoder
  (MoCo, ANLCL, Rainmer) needs nothing more: its update is a function of the online weights, which
  DDP keeps identical on every rank, so it stays identical too. Wrap the online encoder in DDP, not
  the momentum one (it has no gradients). MoCo's shuffled batch norm is not needed where the keys'
  encoder has per-rank batch statistics anyway; with ``sync_batchnorm`` on, shuffle the keys across
  ranks before the key encoder, or keep the key encoder's batch norm local.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from .data.errors import DatasetError

T = TypeVar("T")

#: How long a rank waits at a collective for the others. Rank 0 evaluates alone (validation during
#: training, the test splits of a finished study run) while the others wait: this must outlast that.
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: ``rank`` of ``size``, GPU ``local_rank``."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher setting ``RANK`` and ``WORLD_SIZE``) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def ensure_process_group() -> World:
    """Create the default process group from torchrun's environment, once; return this process's :class:`World`.

    Without torchrun's environment, or with ``WORLD_SIZE=1``, no group is created and the world is
    ``World(0, 1, 0)``: a single process runs exactly as it would without this module.
    """
    if dist.is_available() and dist.is_initialized():
        return world()
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return World()
    if not dist.is_available():
        raise RuntimeError("launched by torchrun, but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    backend = "gloo"
    if torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK={local_rank} but torch sees {torch.cuda.device_count()} GPU(s) on this "
                               "machine: start at most one process per GPU (torchrun --nproc_per_node)")
        torch.cuda.set_device(local_rank)  # "cuda" now means this process's GPU
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend, timeout=TIMEOUT)
    atexit.register(destroy)
    return world()


def destroy() -> None:
    """End the process group (registered at exit by the first :func:`ensure_process_group`; call it yourself to
    end one earlier). Does nothing without one."""
    if not dist.is_initialized():
        return
    dist.destroy_process_group()
    # A gloo worker thread frees a finished collective's tensors a moment after the rank saw it finish; if the
    # interpreter is finalising by then, taking the GIL ends that thread inside C++ and the process aborts
    # ("terminate called without an active exception", a rank lost at the very end of a successful run).
    # destroy_process_group does not join those threads once a DistributedDataParallel model has existed (torch
    # keeps a reference to the group), so give them time to finish while the interpreter is still alive.
    time.sleep(_THREADS_SETTLE_S)


_THREADS_SETTLE_S = 0.5


def end_spawned_rank() -> NoReturn:
    """End a process that ``torch.multiprocessing.spawn`` started, once its work is done and written: wait for every
    rank, end the process group (:func:`destroy`) and exit with status 0 without finalising the interpreter.
    Finalising is where gloo's threads, still alive after a DistributedDataParallel model has existed, can make a
    finished rank abort; :func:`destroy`'s pause makes that rare, not impossible, on a loaded machine."""
    barrier()
    destroy()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def world() -> World:
    """The current :class:`World` (``World(0, 1, 0)`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def is_main() -> bool:
    """Whether this process writes files: rank 0, or the only process."""
    return world().is_main


def rank_device(device: torch.device) -> torch.device:
    """``device`` for this process: a bare ``cuda`` becomes this rank's GPU (set by :func:`ensure_process_group`)."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


# ----------------------------------------------------------------------------- collectives


def barrier() -> None:
    if world().size > 1:
        dist.barrier()


def broadcast_object(value: T, src: int = 0) -> T:
    """``value`` as rank ``src`` has it, on every rank (pickled; tensors come back on the CPU if sent from it)."""
    if world().size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def on_main(decide: Callable[[], T]) -> T:
    """Run ``decide`` on rank 0 only and return its result on every rank; an exception it raises is raised
    on every rank (so no rank waits forever for a rank that failed). One process: just ``decide()``."""
    if world().size == 1:
        return decide()
    outcome: tuple[bool, Any] = (True, None)
    if is_main():
        try:
            outcome = (True, decide())
        except Exception as error:  # sent to the other ranks, then raised here too
            outcome = (False, error)
    ok, value = broadcast_object(outcome)
    if not ok:
        raise value
    return value


def in_turn(work: Callable[[], T]) -> T:
    """Run ``work`` on every rank, one rank after the other (rank 0 first), and return its result.

    For work that fills a cache on disk (rendering a benchmark): rank 0 builds it, the others find it
    built (on a shared disk) or build their own copy, never two processes in the same folder at once.
    Every rank must call it. One process: just ``work()``.
    """
    if world().size == 1:
        return work()
    result = None
    for rank in range(world().size):
        if rank == world().rank:
            result = work()
        dist.barrier()
    return result


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each value over the ranks (every rank must pass the same keys, in the same order).

    A non-finite value on any rank makes the mean non-finite on every rank: all of them stop together.
    """
    if world().size == 1 or not values:
        return values
    tensor = torch.tensor(list(values.values()), dtype=torch.float64)  # gloo: a CPU tensor
    dist.all_reduce(tensor)
    return dict(zip(values, (tensor / world().size).tolist()))


@torch.no_grad()
def all_gather_batch(batch: torch.Tensor) -> torch.Tensor:
    """Every rank's ``batch`` (``N x ...``, same shape on all ranks), concatenated in rank order, without grad.

    What to enqueue into a memory bank or a MoCo queue so that every rank's queue holds the same entries,
    those a single process with the global batch would hold. One process: ``batch`` itself.
    """
    if world().size == 1:
        return batch
    parts = [torch.empty_like(batch) for _ in range(world().size)]
    dist.all_gather(parts, batch.contiguous())
    return torch.cat(parts)


# ----------------------------------------------------------------------------- data


def local_batch_size(batch_size: int, size: int) -> int:
    """Each rank's share of a global batch of ``batch_size`` over ``size`` ranks (which must divide it)."""
    if batch_size % size:
        raise ValueError(f"the global batch of {batch_size} cannot be split evenly over {size} processes: "
                         f"use a number of processes that divides it, or a batch size divisible by {size}")
    return batch_size // size


def batch_stream(dataset, batch_size: int, seed: int, start_step: int, num_workers: int, *,
                 rank: int = 0, size: int = 1) -> Iterator[dict]:
    """Yield this rank's part of every global batch from ``start_step`` on, forever.

    Global batch ``s`` depends on ``(seed, s)`` only: epoch ``e`` visits the dataset in the order
    ``permutation(seed, e)``, dropping the last incomplete global batch of ``batch_size``, and the
    dataset crops item ``i`` from ``(seed, i, e)``. Rank ``r`` of ``size`` loads rows
    ``[r b, (r + 1) b)`` of it, ``b = batch_size / size``. One process (the defaults) gets whole batches.
    """
    local = local_batch_size(batch_size, size)
    per_epoch = len(dataset) // batch_size
    if per_epoch == 0:
        raise DatasetError(f"{dataset.root}: {len(dataset)} images cannot fill one batch of {batch_size}")
    epoch, offset = divmod(start_step, per_epoch)
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(len(dataset))
        starts = [i * batch_size + rank * local for i in range(offset, per_epoch)]
        batches = [order[start:start + local].tolist() for start in starts]
        dataset.set_epoch(epoch)  # before the loader copies the dataset into its workers
        yield from DataLoader(dataset, batch_sampler=batches, num_workers=num_workers)
        epoch, offset = epoch + 1, 0


# ----------------------------------------------------------------------------- the model


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over the ranks, differentiable: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm normalising by the statistics of the global batch, over every rank, on any device.

    :class:`torch.nn.SyncBatchNorm` accepts CUDA tensors only; this does the same with differentiable
    all-reduces, so it works with gloo on CPUs. Two passes (the mean,
    then the mean squared deviation), in float32. Running statistics are updated as
    :class:`torch.nn.BatchNorm2d` does (unbiased variance), with the global statistics, so they are
    identical on every rank. Outside training, or in one process, it is plain batch norm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        use_batch = self.training or not self.track_running_stats
        if not use_batch or world().size == 1:
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        x = input.float()
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float32, device=x.device)
        total = _SumOverRanks.apply(torch.cat([x.sum(dims), count]))
        channels = x.shape[1]
        n = total[channels]
        mean = total[:channels] / n
        shape = [1, channels] + [1] * (input.dim() - 2)
        centred = x - mean.view(shape)
        var = _SumOverRanks.apply((centred * centred).sum(dims)) / n  # biased: what normalisation uses
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - momentum).add_(mean.detach().to(self.running_mean.dtype), alpha=momentum)
                unbiased = var.detach() * (n / (n - 1)) if float(n) > 1 else var.detach()
                self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every batch-norm layer normalising by the global batch: :class:`torch.nn.SyncBatchNorm`
    on CUDA, :class:`GlobalBatchNorm` elsewhere. Parameters and buffers are carried over, so the state
    dict (names and values) is unchanged."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats)
        with torch.no_grad():
            if module.affine:
                converted.weight, converted.bias = module.weight, module.bias
            if module.track_running_stats:
                converted.running_mean, converted.running_var = module.running_mean, module.running_var
                converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child, device))
    return module


def wrap_model(model: nn.Module, device: torch.device, *, sync_batchnorm: bool = False) -> nn.Module:
    """``model`` as a training step should call it: itself in one process, else in DistributedDataParallel
    (after :func:`convert_batchnorm` when ``sync_batchnorm``). Keep the unwrapped ``model`` for state dicts,
    checkpoints and evaluation: its parameters are the ones DDP trains."""
    if world().size == 1:
        return model
    if sync_batchnorm:
        model = convert_batchnorm(model, device)
    # DDP copies rank 0's parameters and buffers to every rank here, and rank 0's buffers (batch-norm running
    # statistics) again before each forward: the model every rank holds is rank 0's.
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

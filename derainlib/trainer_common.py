"""Pieces every trainer shares: atomic checkpoint and log files, the NaN guard's error, moving a
checkpoint to a device, averaging gradients over processes, a step's own random numbers, and the warning for
bf16 on a CPU that emulates it.

:mod:`derainlib.train` (Semi-DRDNet) and :mod:`derainlib.train_anlcl` (ANLCL) both use them; the process
group, the seeded batches and the rank helpers are in :mod:`derainlib.distributed`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .atomic import atomic_path, has_parts, join_file, lock_folder, sweep_temporary
from .provenance import cpu_capability, cpu_has_native_bf16

__all__ = ["TrainingDiverged", "add_to_epoch", "average_gradients", "check_resumable", "diverged", "epoch_means",
           "save_checkpoint", "step_generator", "to_device", "write_log"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint was kept."""


def diverged(run_dir: Path, step: int, values: dict[str, object], checkpoint: Path,
             last_saved: int | None) -> TrainingDiverged:
    """The NaN guard's error for a non-finite loss at ``step`` (0-based): the run, every term's value,
    and which checkpoint is kept."""
    kept = (f"the last good checkpoint ({checkpoint}, step {last_saved}) is kept" if last_saved is not None
            else "no checkpoint had been written yet")
    terms = ", ".join(f"{key}={value}" for key, value in values.items())
    return TrainingDiverged(f"{run_dir}: non-finite loss at step {step + 1} ({terms}); {kept}")


def _same_setting(key: str, saved: object, now: object) -> bool:
    # A data folder (a ``*_root`` field) may have moved since the checkpoint (another machine or clone, a
    # renamed benchmark folder): it is the same data when its last two path parts (dataset and split) agree.
    if key.endswith("_root") and isinstance(saved, str) and isinstance(now, str) and saved and now:
        return Path(saved).parts[-2:] == Path(now).parts[-2:]
    normal = [list(v) if isinstance(v, tuple) else v for v in (saved, now)]
    return normal[0] == normal[1]


def check_resumable(saved: dict, now: dict, ignored: Iterable[str], path: Path) -> None:
    """Refuse to resume ``path`` when a setting other than ``ignored`` differs between the checkpoint's config
    (``saved``) and this run's (``now``), naming each; data folders may move (their dataset and split may not)."""
    skip = set(ignored)
    changed = sorted(key for key in now if key not in skip and not _same_setting(key, saved.get(key), now[key]))
    if changed:
        details = "; ".join(f"{key}: checkpoint {saved.get(key)!r}, now {now[key]!r}" for key in changed)
        raise ValueError(f"{path} was written by a different run configuration ({details}); "
                         f"use a new run folder, or delete {path.name} to start over")


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` through a temporary file and a rename: never a half-written checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def add_to_epoch(sums: dict[str, float], values: dict[str, float]) -> None:
    """Add one step's logged values to the epoch's running sums (kept in the checkpoint, so a resume
    mid-epoch logs the same row)."""
    for name, value in values.items():
        sums[name] = sums.get(name, 0.0) + value
    sums["_count"] = sums.get("_count", 0) + 1


def epoch_means(sums: dict[str, float]) -> dict[str, float]:
    """The epoch's mean of every value :func:`add_to_epoch` summed; empties ``sums`` for the next epoch."""
    count = sums.pop("_count")
    means = {name: total / count for name, total in sums.items()}
    sums.clear()
    return means


def write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def to_device(value, device: torch.device):
    """A checkpoint (nested dicts, lists, tuples of tensors) with every tensor moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(item, device) for item in value)
    return value


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Average the gradients of ``parameters`` over the processes (a no-op in one process).

    For trainers that step several optimisers on one forward (a GAN), where a DistributedDataParallel
    wrapper's one-backward-per-forward contract does not fit: every rank then takes the same step."""
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return
    size = torch.distributed.get_world_size()
    for parameter in parameters:
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad /= size


def claim_run_folder(run_dir: Path, held: contextlib.ExitStack, run_files: Iterable[str]) -> bool:
    """Lock ``run_dir`` for this process until ``held`` closes, remove a killed writer's temporary files of
    ``run_files``, and rejoin a checkpoint committed in parts. Returns whether the folder holds a finished
    run (a model and no checkpoint)."""
    held.enter_context(lock_folder(run_dir, what="training a run in"))
    sweep_temporary(run_dir, run_files)  # safe: while we hold the lock, no other writer is live
    checkpoint_path, model_path = run_dir / "checkpoint.pt", run_dir / "model.pt"
    if has_parts(checkpoint_path) and not checkpoint_path.exists():  # committed in parts to resume
        join_file(checkpoint_path)
    return model_path.exists() and not checkpoint_path.exists()


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """Random numbers for one step of one process, a pure function of (seed, step, rank): what a step samples
    (e.g. ANLCL's contrastive patches) repeats exactly when a run resumes."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + rank)


#: bf16 on a CPU that emulates it. The run keeps bf16: its config, its numbers and its checkpoints stay those of
#: the runs it is compared with (a resume must match them).
SLOW_BF16_WARNING = (
    "{run_dir}: bf16 autocast on a CPU without native bf16 ({capability}; no AVX-512 BF16 or AMX) is emulated "
    "and several times slower than plain fp32 (docs/performance.md has a measurement). The run goes on in bf16 "
    "so that it stays comparable with the study's runs; for a new series on this CPU, train with bf16=False.")


def warn_if_bf16_is_emulated(bf16: bool, device: torch.device, run_dir: Path) -> None:
    """Warn (:data:`SLOW_BF16_WARNING`) when the run in ``run_dir`` trains in bf16 on a CPU that emulates it."""
    if bf16 and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(SLOW_BF16_WARNING.format(run_dir=run_dir, capability=cpu_capability()), stacklevel=3)

"""Where and how torch runs: seeding, the device, bf16 autocast. One home for every method's trainer,
evaluation and benchmark."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch, and (by default) ask torch for deterministic kernels.

    With this, a ``ci`` run repeats bit for bit on the same CPU. ``warn_only`` keeps CUDA ops
    without a deterministic implementation usable (they warn instead of raising).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def resolve_device(device: str = "auto") -> torch.device:
    """Turn ``"auto"`` into CUDA when present, else CPU; pass explicit names through, checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for, but torch sees no CUDA device on this machine")
    return resolved


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled`` (CPUs with AVX-512 BF16 or AMX, and GPUs, run it fast)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

"""derainlib: a runnable reproduction study of real-world image deraining with contrastive learning.

The package is thin on purpose: networks, losses, data, metrics, training and analyses live here,
and the numbered notebooks in ``notebooks/`` call them (see README.md).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

__version__ = "0.1.0"

#: The repository root when derainlib is installed editable (the supported way: ``make setup``).
REPO_ROOT = Path(__file__).resolve().parents[1]


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch, and (by default) ask torch for deterministic kernels.

    With this, the ``ci`` profile is bit-for-bit repeatable on the CPU. ``warn_only`` keeps
    CUDA ops without a deterministic implementation usable (they warn instead of raising).
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


__all__ = ["REPO_ROOT", "resolve_device", "seed_everything", "__version__"]

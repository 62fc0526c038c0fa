"""derainlib: a runnable reproduction study of real-world image deraining with contrastive learning.

The package is thin on purpose: networks, losses, data, metrics, training and analyses live in
its modules, and the numbered notebooks in ``notebooks/`` call them (see README.md).

Importing ``derainlib`` itself loads neither torch nor NumPy, so that ``derain --help`` starts at
once: ``derainlib.seed_everything`` and ``derainlib.resolve_device`` (from :mod:`derainlib.runtime`)
are loaded on first use.
"""

from __future__ import annotations

from typing import Any

from .paths import REPO_ROOT

__version__ = "0.1.0"

_RUNTIME_NAMES = ("resolve_device", "seed_everything")


def __getattr__(name: str) -> Any:
    # PEP 562: the runtime helpers import torch, so they are loaded only when asked for.
    if name in _RUNTIME_NAMES:
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'derainlib' has no attribute {name!r}")


__all__ = ["REPO_ROOT", "resolve_device", "seed_everything", "__version__"]

"""DualSCRNet's negative augmentation (Semi-DRDNet §III-C, Eq. (5)): a FIFO memory bank of rain
layers produced by the RRN, and the augmented negatives ``O_a^k = I + R^k`` drawn from it."""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from torch import Tensor

from ..options import check_choice

DOMAINS: tuple[str, ...] = ("synthetic", "real")

__all__ = ["DOMAINS", "RainMemoryBank", "augmented_negatives", "magnitude_mask"]


# --------------------------------------------------------------------------------------------
# Negative augmentation: the rain memory bank and Eq. (5)
# --------------------------------------------------------------------------------------------


class RainMemoryBank:
    """FIFO queue of rain layers from the RRN, tagged by domain, for Eq. (5)'s augmented negatives.

    Each entry is one ``C x H x W`` layer, stored detached and cloned on the device it came from;
    all entries share one shape. When full, the oldest entry leaves first. Reads use the bank's
    own ``torch.Generator`` (seeded with ``seed``, on the CPU), so they are reproducible and do not
    disturb the global RNG; :meth:`state_dict` carries the entries and the generator state, so a
    resumed run draws exactly what an uninterrupted one would.
    """

    def __init__(self, capacity: int = 64, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.seed = seed
        self._entries: deque[tuple[Tensor, str]] = deque(maxlen=capacity)
        self._generator = torch.Generator().manual_seed(seed)
        # (rank, processes) when the batch is split over processes (derainlib.distributed): every rank holds
        # the same entries and generator, draws for the whole global batch and keeps its own columns.
        self.shard = (0, 1)

    def __len__(self) -> int:
        return len(self._entries)

    def count(self, domain: str) -> int:
        """Number of stored entries from ``domain`` ("synthetic" or "real")."""
        _check_domain(domain)
        return sum(1 for _, d in self._entries if d == domain)

    @property
    def entry_shape(self) -> torch.Size | None:
        """The shared ``C x H x W`` of the entries, or None while empty."""
        return self._entries[0][0].shape if self._entries else None

    def push(self, rain: Tensor, domain: str, *, bounds: tuple[float, float] | None = None) -> int:
        """Append each layer of a ``N x C x H x W`` batch (oldest entries drop out when full).

        ``bounds = (low, high)``: the faint-layer filter; only layers whose mean absolute value lies in
        ``[low, high]`` join (:func:`magnitude_mask`). Returns how many layers joined.
        """
        _check_domain(domain)
        if rain.dim() != 4:
            raise ValueError(f"expected an N x C x H x W batch of rain layers, got {tuple(rain.shape)}")
        shape = self.entry_shape
        if shape is not None and rain.shape[1:] != shape:
            raise ValueError(
                f"rain layers of shape {tuple(rain.shape[1:])} cannot join a bank of {tuple(shape)} layers"
            )
        rain = rain.detach()
        if bounds is not None:
            rain = rain[magnitude_mask(rain, *bounds)]
        for layer in rain:
            self._entries.append((layer.clone(), domain))
        return int(rain.shape[0])

    def sample(self, k: int, *, real_only: bool) -> Tensor:
        """Draw ``k`` layers (``k x C x H x W``): without replacement when enough are stored, else with.

        ``real_only`` restricts the draw to real-world layers (the unsupervised phase, Sec. III-C).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        pool = [t for t, d in self._entries if d == "real" or not real_only]
        if not pool:
            what = "real-world rain layers" if real_only else "rain layers"
            raise LookupError(f"the memory bank holds no {what} yet ({len(self)} entries in all)")
        if len(pool) >= k:
            picks = torch.randperm(len(pool), generator=self._generator)[:k]
        else:
            picks = torch.randint(len(pool), (k,), generator=self._generator)
        return torch.stack([pool[i] for i in picks.tolist()])

    def state_dict(self) -> dict[str, Any]:
        """Entries (stacked, oldest first), their domains and the generator state."""
        layers = [t for t, _ in self._entries]
        return {
            "capacity": self.capacity,
            "seed": self.seed,
            "entries": torch.stack(layers) if layers else torch.empty(0),
            "domains": [d for _, d in self._entries],
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore entries and generator; keeps the newest ``capacity`` entries if there are more."""
        domains = list(state["domains"])
        entries = state["entries"]
        if len(domains) != (entries.shape[0] if domains else 0):
            raise ValueError("memory-bank state: entries and domains disagree in number")
        for d in domains:
            _check_domain(d)
        self._entries = deque(
            ((entries[i].clone(), d) for i, d in enumerate(domains)), maxlen=self.capacity
        )
        self._generator.set_state(state["generator"].cpu())


def magnitude_mask(rain: Tensor, low: float, high: float) -> Tensor:
    """Which layers of a ``N x C x H x W`` batch of rain layers have a mean ``|R|`` within ``[low, high]``.

    The faint-layer filter of the stable reading: a layer much fainter than the data's rain makes
    ``I + R`` a negative that nearly coincides with its base, so the ratio's denominator nearly
    vanishes; a layer much stronger than any rain (a collapsing model's) is no rain at all.
    """
    if not 0 <= low <= high:
        raise ValueError(f"faint-layer filter bounds must satisfy 0 <= low <= high, got ({low}, {high})")
    magnitude = rain.detach().float().abs().flatten(1).mean(dim=1)
    return (magnitude >= low) & (magnitude <= high)


def _check_domain(domain: str) -> None:
    check_choice("domain", domain, DOMAINS)


def augmented_negatives(
    background: Tensor,
    rainy: Tensor,
    bank: RainMemoryBank,
    num_negatives: int = 4,
    *,
    real_only: bool,
) -> list[Tensor]:
    """Eq. (5)'s negative set ``{O_a^1, ..., O_a^{m-1}, O}`` with ``m = num_negatives``.

    ``O_a^k = background + R^k``: the (detached) background plus a rain layer read from the bank,
    one draw per sample, for k = 1..m-1; the original rainy image comes last. Eq. (5)'s background
    is the derained image ``I``; :class:`DualSCRNet` can pass the clean positive instead. Not
    clamped here: Eq. (5) is a plain sum (``DualSCRNet(clamp_images=True)`` clamps before the VGG).
    ``real_only`` reads real-world layers only (the unsupervised phase).

    While the bank holds no layer for this phase (its first steps, before the training loop has
    pushed any), the set is just ``[rainy]``, i.e. the standard contrastive loss.
    """
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    available = bank.count("real") if real_only else len(bank)
    if num_negatives == 1 or available == 0:
        return [rainy]
    n = background.shape[0]
    if bank.entry_shape != background.shape[1:]:
        raise ValueError(
            f"bank layers are {tuple(bank.entry_shape)} but the images are {tuple(background.shape[1:])}"
        )
    rank, processes = bank.shard
    rain = bank.sample((num_negatives - 1) * n * processes, real_only=real_only)
    rain = rain.view(num_negatives - 1, n * processes, *background.shape[1:])[:, rank * n:(rank + 1) * n]
    rain = rain.to(device=background.device, dtype=background.dtype)
    base = background.detach()
    return [base + r for r in rain] + [rainy]

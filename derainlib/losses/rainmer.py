"""Rainmer's multi-view contrastive learning, and AirNet's MoCo, as the comparator.

Both train an encoder with MoCo (He et al., CVPR 2020): a query encoder learns by InfoNCE, a key encoder
follows it by momentum (``θ_k ← m θ_k + (1 − m) θ_q``, m = 0.999) and a queue of past keys gives further
negatives. The query and its positive key are two crops of the same rainy image (same rain, same colour).

- **Rainmer's chromatic view** (supplement App. C.1; the public code): the negatives of a query are the query
  crop re-coloured toward the mean colours of an archive of past images that are most dissimilar to its own
  (:class:`ColourArchive`, :func:`recolour`): same content and rain, other colour and illumination.
- **Rainmer's degradation view**: the negatives are the clean crop itself and the clean crop plus rain layers
  ``O − B`` of other images, read from a 256-entry FIFO bank (:class:`RainLayerBank`): same content and
  colour, other rain. Images without a clean target (an unlabeled real set) have only the queue.
- **AirNet** (Li et al., CVPR 2022, §3.1): one space; the negatives are the queue alone (other images).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ColourArchive", "EmbeddingQueue", "RainLayerBank", "info_nce", "momentum_update",
           "most_dissimilar_colours", "recolour"]


# ----------------------------------------------------------------------------- MoCo


@torch.no_grad()
def momentum_update(key_encoder: nn.Module, query_encoder: nn.Module, momentum: float) -> None:
    """MoCo's key-encoder step, ``θ_k ← m θ_k + (1 − m) θ_q``; buffers (batch-norm statistics) are copied."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    keys, queries = list(key_encoder.parameters()), list(query_encoder.parameters())
    torch._foreach_mul_(keys, momentum)
    torch._foreach_add_(keys, [p.detach() for p in queries], alpha=1.0 - momentum)
    for key_buffer, query_buffer in zip(key_encoder.buffers(), query_encoder.buffers()):
        key_buffer.copy_(query_buffer)


def info_nce(query: Tensor, positive: Tensor, negatives: Tensor | None = None, queue: Tensor | None = None, *,
             temperature: float, negative_mask: Tensor | None = None) -> Tensor:
    """InfoNCE of unit vectors: ``−log exp(q·k⁺/τ) / (exp(q·k⁺/τ) + Σ exp(q·k⁻/τ))``, averaged over the batch.

    ``query``, ``positive``: ``N × D``; ``negatives``: each query's own, ``N × K × D``; ``queue``: shared
    ones, ``Q × D``; ``negative_mask`` (``N × K``, bool): which of each query's own negatives exist.
    """
    logits = [(query * positive).sum(dim=1, keepdim=True)]
    if negatives is not None and negatives.shape[1] > 0:
        own = torch.einsum("nd,nkd->nk", query, negatives)
        if negative_mask is not None:
            own = own.masked_fill(~negative_mask, float("-inf"))
        logits.append(own)
    if queue is not None and queue.shape[0] > 0:
        logits.append(query @ queue.t())
    logits = torch.cat(logits, dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long, device=query.device))


class EmbeddingQueue(nn.Module):
    """MoCo's FIFO queue of past keys, ``size × dim`` (empty rows are not read until filled)."""

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        if size < 0:
            raise ValueError(f"queue size must be >= 0, got {size}")
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    def read(self) -> Tensor:
        return self.keys[: int(self.filled)]

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        size = self.keys.shape[0]
        if size == 0:
            return
        for key in keys.detach()[-size:]:
            self.keys[int(self.pointer)] = key.to(self.keys.dtype)
            self.pointer.fill_((int(self.pointer) + 1) % size)
        self.filled.fill_(min(size, int(self.filled) + len(keys)))


# ----------------------------------------------------------------------------- the chromatic negatives


def mean_colours(images: Tensor) -> Tensor:
    """The mean RGB of each image of ``N × 3 × H × W``: ``N × 3``."""
    return images.float().mean(dim=(2, 3))


def most_dissimilar_colours(colour: Tensor, archive: Tensor, k: int) -> Tensor:
    """The ``k`` archive colours farthest (Euclidean RGB) from ``colour`` (``3``), farthest first: ``k × 3``.

    With fewer than ``k`` archive colours, the farthest ones repeat in order."""
    if archive.shape[0] == 0:
        raise LookupError("the colour archive is empty")
    distances = (archive - colour[None]).norm(dim=1)
    order = distances.argsort(descending=True)
    return archive[order[torch.arange(k) % len(order)]]


def recolour(image: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """``image`` (``3 × H × W`` or ``N × 3 × H × W``) with a per-channel gain that gives it the mean colour
    ``target`` (a von Kries-style change of illuminant colour and intensity), clamped to [0, 1]."""
    current = image.float().mean(dim=(-2, -1), keepdim=True)
    gain = target.float()[..., None, None] / current.clamp_min(eps)
    return (image.float() * gain).clamp(0.0, 1.0).to(image.dtype)


class ColourArchive:
    """A FIFO archive of the mean colours of past training crops (``capacity × 3``)."""

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.colours = torch.zeros(0, 3)

    def __len__(self) -> int:
        return len(self.colours)

    def push(self, colours: Tensor) -> None:
        self.colours = torch.cat([self.colours, colours.detach().float().cpu()])[-self.capacity:]

    def negatives(self, images: Tensor, k: int) -> Tensor:
        """Each image re-coloured toward the ``k`` archive colours most dissimilar to its own: ``N × k × 3 × H × W``."""
        rows = []
        for image, colour in zip(images, mean_colours(images).cpu()):
            targets = most_dissimilar_colours(colour, self.colours, k).to(images.device)
            rows.append(torch.stack([recolour(image, target) for target in targets]))
        return torch.stack(rows)

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "colours": self.colours.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.colours = state["colours"].float().cpu()[-self.capacity:]


# ----------------------------------------------------------------------------- the degradation negatives


class RainLayerBank:
    """A FIFO bank of rain layers ``O − B`` (``capacity``, 256 in the public code), read with its own seeded
    generator so that a resumed run draws what an uninterrupted one would."""

    def __init__(self, capacity: int = 256, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.layers: Tensor | None = None
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return 0 if self.layers is None else len(self.layers)

    def push(self, rain: Tensor) -> None:
        """Append each ``3 × H × W`` layer of ``rain`` (``N × 3 × H × W``); the oldest leave when full."""
        rain = rain.detach().float().cpu()
        if self.layers is not None and rain.shape[1:] != self.layers.shape[1:]:
            raise ValueError(f"rain layers of shape {tuple(rain.shape[1:])} cannot join a bank of "
                             f"{tuple(self.layers.shape[1:])} layers")
        self.layers = rain if self.layers is None else torch.cat([self.layers, rain])
        self.layers = self.layers[-self.capacity:]

    def sample(self, count: int) -> Tensor:
        """``count`` layers drawn uniformly (with replacement)."""
        if len(self) == 0:
            raise LookupError("the rain-layer bank is empty")
        return self.layers[torch.randint(len(self), (count,), generator=self.generator)]

    def negatives(self, clean: Tensor, k: int) -> Tensor:
        """Rainmer's degradation negatives of each clean crop: itself, then ``k − 1`` times itself plus a banked
        rain layer, clamped to [0, 1]: ``N × k × 3 × H × W``. An empty bank gives the clean crop ``k`` times."""
        n = len(clean)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if len(self) == 0 or k == 1:
            return clean[:, None].expand(n, k, *clean.shape[1:]).clone()
        rain = self.sample(n * (k - 1)).view(n, k - 1, *clean.shape[1:]).to(clean.device, clean.dtype)
        return torch.cat([clean[:, None], (clean[:, None] + rain).clamp(0.0, 1.0)], dim=1)

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "layers": self.layers, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.layers = None if state["layers"] is None else state["layers"].float().cpu()[-self.capacity:]
        self.generator.set_state(state["generator"].cpu())

"""DDN (Fu et al., CVPR 2017, "Removing rain from single images via a deep detail network"), alone and with
Semi-DRDNet's detail repair network attached in parallel (Table IV, appendix "Analysis of DRN").

DDN splits the rainy image ``O`` into a base layer (guided-filter low-pass) and a detail layer
``O - base``, runs a small ResNet on the detail layer only, and adds its output back to ``O``
("negative residual mapping"): ``DDN(O) = O + f(O - GF(O))``.

"DDN w/ DRN" runs a DRN on the same input ``O`` next to DDN: ``X = DDN(O) + DRN(O)``. The paper sets the DRN's
"depth and the number of feature channels ... as 24 and 16". Table VI, which would define depth, lost its
body in our copy of the paper; we count depth as Table III does ("16+3" = 16 blocks * 2 convs + 3 = 35), so
depth 24 is taken as 10 SDCABs (10 * 2 + 3 = 23 layers, the closest block count).

SPANet ("SPA w/ DRN" in Table IV) is not implemented here.
"""

from __future__ import annotations

import torch
from torch import nn

from .semi_drdnet import DerainOutput, DetailRepairNetwork

__all__ = ["box_filter", "guided_filter", "DDN", "DDNWithDetailRepair"]


def _box_sum_1d(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Sum over a window ``[i - radius, i + radius]`` along ``dim``, clipped at the borders (no padding).

    One cumsum and two gathers: O(1) per pixel whatever the radius, and exact for any length (even one
    shorter than the window).
    """
    n = x.shape[dim]
    padded_shape = list(x.shape)
    padded_shape[dim] = 1
    csum = torch.cat([x.new_zeros(padded_shape), x.cumsum(dim)], dim=dim)  # csum[k] = sum of x[:k]
    idx = torch.arange(n, device=x.device)
    upper = (idx + radius + 1).clamp(max=n)
    lower = (idx - radius).clamp(min=0)
    return csum.index_select(dim, upper) - csum.index_select(dim, lower)


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1) x (2r+1) window on the last two dims, averaging only the pixels inside the image.

    Separable (rows, then columns) so that the cumsums stay small and float32 keeps ~1e-6 accuracy.
    """
    sums = _box_sum_1d(_box_sum_1d(x, radius, -2), radius, -1)
    ones = torch.ones(x.shape[-2:], dtype=x.dtype, device=x.device)
    counts = _box_sum_1d(_box_sum_1d(ones, radius, -2), radius, -1)
    return sums / counts


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter, applied per channel (each channel of ``guide`` guides the same channel of ``src``).

    ``a = cov(I, p) / (var(I) + eps)``, ``b = mean(p) - a mean(I)``, ``q = mean(a) I + mean(b)``. Borders use
    the in-image window mean. Computed in at least float32 (cumsum differences in bf16 would be useless), then
    cast back to ``src``'s dtype.
    """
    if guide.shape != src.shape:
        raise ValueError(f"guide and src must have the same shape, got {tuple(guide.shape)} and {tuple(src.shape)}")
    work = torch.promote_types(src.dtype, torch.float32)
    guide_f, src_f = guide.to(work), src.to(work)
    mean_i = box_filter(guide_f, radius)
    mean_p = box_filter(src_f, radius)
    cov_ip = box_filter(guide_f * src_f, radius) - mean_i * mean_p
    var_i = box_filter(guide_f * guide_f, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return (box_filter(a, radius) * guide_f + box_filter(b, radius)).to(src.dtype)


class _DDNResidualBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, then + input."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DDN(nn.Module):
    """Deep detail network: ``DDN(O) = O + f(O - GF(O, O; r, eps))`` with f a 26-layer ResNet on details.

    f: conv3x3 (3 -> width) + BN + ReLU, ``num_blocks`` residual blocks, conv3x3 (width -> 3) + BN.
    Working on the detail layer alone gives the network a sparse, mostly-rain input; the base (low-pass)
    layer carries the scene through the ``O +`` shortcut. ``forward`` returns :class:`DerainOutput` with
    ``details=None``.
    """

    def __init__(self, width: int = 16, num_blocks: int = 12, radius: int = 15, eps: float = 1.0) -> None:
        super().__init__()
        self.radius, self.eps = radius, eps
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            *[_DDNResidualBlock(width) for _ in range(num_blocks)],
            nn.Conv2d(width, 3, 3, padding=1),
            nn.BatchNorm2d(3),
        )

    def derain(self, rainy: torch.Tensor) -> torch.Tensor:
        """The derained image ``O + f(detail)`` as a plain tensor."""
        detail = rainy - guided_filter(rainy, rainy, self.radius, self.eps)  # high-pass: rain + edges
        return rainy + self.net(detail)

    def forward(self, rainy: torch.Tensor) -> DerainOutput:
        derained = self.derain(rainy)
        return DerainOutput(derained=derained, rain=rainy - derained, preliminary=derained, details=None)


class DDNWithDetailRepair(nn.Module):
    """DDN with a parallel DRN ("DDN w/ DRN", Table IV): ``X = DDN(O) + DRN(O)``, both fed the rainy ``O``.

    ``drn_blocks=10`` is our reading of the paper's "depth 24" (see the module docstring).
    Returns :class:`DerainOutput` with ``rain = O - DDN(O)``, ``preliminary = DDN(O)``, ``details = DRN(O)``.
    """

    def __init__(
        self,
        width: int = 16,
        num_blocks: int = 12,
        radius: int = 15,
        eps: float = 1.0,
        drn_width: int = 16,
        drn_blocks: int = 10,
        block: str = "sdcab",
    ) -> None:
        super().__init__()
        self.ddn = DDN(width=width, num_blocks=num_blocks, radius=radius, eps=eps)
        self.drn = DetailRepairNetwork(width=drn_width, num_blocks=drn_blocks, block=block)

    def forward(self, rainy: torch.Tensor) -> DerainOutput:
        preliminary = self.ddn.derain(rainy)
        details = self.drn(rainy)
        return DerainOutput(
            derained=preliminary + details, rain=rainy - preliminary, preliminary=preliminary, details=details
        )

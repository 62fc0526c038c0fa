"""The asymmetry between image and rain patches (ANLCL §4.3, Fig. 6): entropy and singular values.

Paper: Chang et al., "Unsupervised Deraining: Where Asymmetric Contrastive Learning Meets
Self-similarity" (ANLCL). §4.3 measures the complexity of 16×16 patches by their entropy,
``-sum(p_i log2 p_i)`` with ``p`` the normalised histogram, and their intrinsic dimension by the
singular values of the stacked patches; the sign η of the asymmetric losses (Eq. (7), (8)) says
whether the sampled image patches have more entropy than the rain patches.

The entropy follows the convention of MATLAB's ``entropy``, which the section's definition matches:
the patch is converted to grey (ITU-R BT.601 weights, as ``rgb2gray``), quantised to 256 levels over
the intensity scale (8-bit steps), and the histogram of those levels is normalised. A rain layer
``O − B`` may be negative: it is quantised with the same step, and the entropy depends only on the
histogram's counts, not on where they sit.

Pure torch, vectorised over patches; the functions take ``...×C×P×P`` patch tensors as
:func:`derainlib.nonlocal_sampling.crop_patches` returns them.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["GREY_WEIGHTS", "asymmetry_sign", "patch_entropy", "singular_value_curve"]

#: rgb2gray's weights (ITU-R BT.601 luma).
GREY_WEIGHTS: tuple[float, float, float] = (0.2989, 0.5870, 0.1140)


def _grey(patches: Tensor) -> Tensor:
    if patches.dim() < 3:
        raise ValueError(f"patches must be ...×C×P×P, got shape {tuple(patches.shape)}")
    channels = patches.shape[-3]
    if channels == 1:
        return patches[..., 0, :, :]
    if channels != 3:
        raise ValueError(f"patches must have 1 or 3 channels, got {channels}")
    weights = patches.new_tensor(GREY_WEIGHTS)
    return (patches * weights[:, None, None]).sum(-3)


def patch_entropy(patches: Tensor, value_range: tuple[float, float] = (0.0, 1.0), *, origin: float | None = None,
                  levels: int = 256) -> Tensor:
    """Entropy in bits of each patch's normalised grey histogram (§4.3): shape ``...``.

    Intensities are quantised to levels of width ``(high - low) / (levels - 1)`` (one 8-bit step for the
    default ``value_range`` (0, 1); use (-1, 1) for images scaled to [-1, 1]), counted from ``origin``
    (default ``low``). A *rain layer* ``O - B`` is a difference of two images, whose 8-bit values are whole
    multiples of a level from 0: pass ``origin=0`` for it (:func:`asymmetry_sign` does). A constant patch
    has entropy 0; a patch whose ``n`` pixels all fall in different levels has ``log2(n)``.
    """
    low, high = value_range
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    width = (high - low) / (levels - 1)
    start = low if origin is None else origin
    grey = _grey(patches.detach().double())
    lead = grey.shape[:-2]
    flat = grey.reshape(-1, grey.shape[-2] * grey.shape[-1])
    quantised = torch.round((flat - start) / width).long()
    quantised = quantised - quantised.min(dim=1, keepdim=True).values  # only the counts matter
    bins = int(quantised.max()) + 1 if quantised.numel() else 1
    counts = torch.zeros(flat.shape[0], bins, dtype=torch.float64, device=flat.device)
    counts.scatter_add_(1, quantised, torch.ones_like(flat))
    p = counts / flat.shape[1]
    terms = torch.where(p > 0, p * torch.log2(p.clamp_min(1e-300)), torch.zeros_like(p))
    return (-terms.sum(1)).float().reshape(lead)


def asymmetry_sign(image_patches: Tensor, rain_patches: Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """η of Eq. (7)/(8) per group: +1 where the image patches' mean entropy is at least the rain
    patches', −1 where it is lower (§4.3: "η indicates whether the entropy of image patches is larger or
    smaller than that of the rain patches"; an exact tie counts as larger, the paper's usual case).

    ``image_patches`` ``G×N_B×C×P×P`` and ``rain_patches`` ``G×N_R×C×P×P`` (any leading group shape
    ``G…``, the same for both); both are quantised with the same level width, the rain layer's from 0.
    Returns float ``G…`` of ±1.
    """
    image_entropy = patch_entropy(image_patches, value_range).mean(-1)
    rain_entropy = patch_entropy(rain_patches, value_range, origin=0.0).mean(-1)
    if image_entropy.shape != rain_entropy.shape:
        raise ValueError(f"image and rain patch groups differ: {tuple(image_entropy.shape)} vs {tuple(rain_entropy.shape)}")
    return torch.where(image_entropy >= rain_entropy, 1.0, -1.0)


def singular_value_curve(patches: Tensor, centre: bool = True) -> Tensor:
    """Singular values of the ``M×(C·P·P)`` matrix of ``M`` stacked patches, divided by the largest (Fig. 6(c)).

    ``centre=True`` removes the mean patch first, so the curve measures the spread of the category
    around its mean (its intrinsic dimension) rather than its mean brightness. A faster decay means a
    lower-dimensional set of patches.
    """
    matrix = patches.detach().float().reshape(patches.shape[0], -1)
    if matrix.shape[0] < 2:
        raise ValueError("the singular-value curve needs at least 2 patches")
    if centre:
        matrix = matrix - matrix.mean(0, keepdim=True)
    values = torch.linalg.svdvals(matrix)
    top = values[0]
    return values / top if top > 0 else values

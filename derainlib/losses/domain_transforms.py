"""DualSCRNet's positive augmentation (Semi-DRDNet §III-C, Eq. (7)): move the unpaired clean image
toward the real derained image's domain.

DEVIATION from the paper: Eq. (7) uses AdaAttN, whose trained decoder is not available offline;
these are AdaIN on VGG features (``"adain"``) and a pixel-space colour transfer (``"colour"``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

POSITIVE_AUGMENTATIONS: tuple[str, ...] = ("adain", "colour")

__all__ = ["POSITIVE_AUGMENTATIONS", "adain", "adain_features", "colour_transfer"]


# --------------------------------------------------------------------------------------------
# Positive augmentation, Eq. (7)
# --------------------------------------------------------------------------------------------


def _channel_stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = (x.var(dim=(-2, -1), keepdim=True, unbiased=False) + eps).sqrt()
    return mean, std


def adain(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """Adaptive instance normalisation (Huang and Belongie, ICCV 2017) on ``N x C x H x W`` features.

    Gives ``content`` the per-sample, per-channel mean and standard deviation of ``style``
    (detached: the style only sets statistics). Computed in float32.

    DEVIATION from the paper: Eq. (7)'s domain transformation ``A(F_c(B_r), F_s(I_r))`` is
    AdaAttN, whose trained decoder is not available offline. We use AdaIN instead, applied
    directly to the VGG features at each loss level (:func:`adain_features`), or a pixel-space
    colour transfer (:func:`colour_transfer`). Both move the unpaired clean image toward the
    real derained image's statistics, which is the role Eq. (7) gives the positive.
    """
    content = content.float()
    style = style.detach().float()
    c_mean, c_std = _channel_stats(content, eps)
    s_mean, s_std = _channel_stats(style, eps)
    return (content - c_mean) / c_std * s_std + s_mean


def adain_features(content_feats: Sequence[Tensor], style_feats: Sequence[Tensor]) -> list[Tensor]:
    """Eq. (7) at feature level: :func:`adain` at each VGG level (clean content, derained-real style)."""
    if len(content_feats) != len(style_feats):
        raise ValueError("content and style need the same number of feature levels")
    return [adain(c, s) for c, s in zip(content_feats, style_feats)]


def colour_transfer(content_img: Tensor, style_img: Tensor, eps: float = 1e-5) -> Tensor:
    """Eq. (7) in pixel space: per-sample, per-channel RGB mean/std transfer, clamped to [0, 1].

    The clamp keeps the result a valid image for the VGG. A cheaper alternative to
    :func:`adain` (same deviation from the paper's AdaAttN).
    """
    return adain(content_img, style_img, eps).clamp(0.0, 1.0)

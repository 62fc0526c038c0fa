"""A small camera pipeline (renderer v2, realproxy): exposure, white balance, noise, demosaicing, JPEG.

Applied in the order a camera applies them (Brooks et al., "Unprocessing images", CVPR 2019, use
the same order in reverse): scene radiance -> exposure gain -> Bayer sampling with signal-dependent
Poisson-Gaussian noise (``var = a x + b^2``) -> bilinear demosaicing (the softness and colour
fringes of a cheap demosaicer) -> white-balance gains -> JPEG.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from .streaks import LUMA

__all__ = ["white_balance_gains", "bayer_noise_demosaic", "jpeg", "apply_exposure_wb"]


def white_balance_gains(rng: np.random.Generator) -> np.ndarray:
    """Per-channel gains of a slightly wrong white balance (warm or cool), normalised to keep luma."""
    temp = rng.uniform(-1.0, 1.0)
    gains = np.array([1.0 + 0.07 * temp, 1.0, 1.0 - 0.09 * temp]) * rng.uniform(0.97, 1.03, size=3)
    return (gains / float(gains @ LUMA)).astype(np.float32)


def apply_exposure_wb(image: np.ndarray, exposure: float, gains: np.ndarray) -> np.ndarray:
    """The deterministic colour rendering: exposure gain and white balance, clipped (no noise)."""
    return np.clip(image * np.float32(exposure) * gains, 0.0, 1.0).astype(np.float32)


_BILINEAR_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float32) / 4.0
_BILINEAR_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 4.0


def bayer_noise_demosaic(image: np.ndarray, rng: np.random.Generator, shot: float, read: float) -> np.ndarray:
    """Sample an RGGB Bayer mosaic, add Poisson-Gaussian noise (Gaussian approximation), demosaic bilinearly.

    ``shot`` is ``a`` and ``read`` is ``b`` in ``var = a x + b^2`` (x in [0, 1]).
    """
    h, w = image.shape[:2]
    masks = np.zeros((h, w, 3), dtype=np.float32)
    masks[0::2, 0::2, 0] = 1.0
    masks[0::2, 1::2, 1] = 1.0
    masks[1::2, 0::2, 1] = 1.0
    masks[1::2, 1::2, 2] = 1.0
    raw = (image * masks).sum(axis=2)
    raw = raw + np.sqrt(shot * np.clip(raw, 0.0, 1.0) + read**2) * rng.standard_normal((h, w), dtype=np.float32)
    out = np.empty((h, w, 3), dtype=np.float32)
    for c, kern in ((0, _BILINEAR_RB), (1, _BILINEAR_G), (2, _BILINEAR_RB)):
        out[:, :, c] = ndimage.convolve(raw * masks[:, :, c], kern, mode="mirror")
    return out


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip through PIL in memory (4:2:0 chroma subsampling, PIL's default)."""
    u8 = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255.0)

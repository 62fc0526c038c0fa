"""Statistics of a rain layer ``O - B``: how much rain, how much of the frame, which way it falls.

Used to check the renderer (:mod:`derainlib.data.synthetic`) against what each domain claims, and to
describe datasets. All images are uint8 H x W x 3 (or float in [0, 1]); statistics are computed on
Rec. 601 luminance in [0, 1] units.

Orientation convention: degrees from vertical in (-90, 90]; positive means the streak's bottom end
leans to the right (image x to the right, y down), the convention of
:func:`derainlib.data.synthetic.streak_kernel`.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
from scipy import ndimage

from ..data.synthetic import luminance

__all__ = [
    "rain_layer_statistics",
    "structure_tensor_orientation",
    "jpeg_blockiness",
    "estimate_noise_sigma",
    "domain_statistics_table",
]


def _as_float(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must have shape H x W x 3, got {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float64)
    raise TypeError(f"{name} must be uint8 or float in [0, 1], got dtype {image.dtype}")


def structure_tensor_orientation(layer: np.ndarray) -> tuple[float, float]:
    """Dominant line orientation and coherence of a 2-D map from its global structure tensor.

    ``J = sum over pixels of grad(L) grad(L)^T``. Its main eigenvector is the dominant gradient
    direction, perpendicular to the streaks. Coherence ``(l1 - l2) / (l1 + l2)`` is 1 for parallel
    lines and 0 for an isotropic pattern (e.g. several evenly spread directions, round drops).

    Returns ``(angle_deg, coherence)``: the streak direction in degrees from vertical in (-90, 90]
    (NaN when the map has no gradient energy), and the coherence in [0, 1] (NaN likewise).
    """
    layer = np.asarray(layer, dtype=np.float64)
    # Derivative-of-Gaussian gradients (sigma 1): less grid bias on thin, oblique lines than raw
    # central differences.
    gx = ndimage.gaussian_filter(layer, 1.0, order=(0, 1), mode="nearest")
    gy = ndimage.gaussian_filter(layer, 1.0, order=(1, 0), mode="nearest")
    jxx, jyy, jxy = float(np.sum(gx * gx)), float(np.sum(gy * gy)), float(np.sum(gx * gy))
    trace = jxx + jyy
    if not trace > 1e-12:
        return float("nan"), float("nan")
    coherence = float(np.hypot(jxx - jyy, 2.0 * jxy) / trace)
    if coherence < 1e-9:
        return float("nan"), coherence
    # Dominant gradient direction phi (from +x toward +y, y down); streaks run perpendicular.
    phi = 0.5 * np.arctan2(2.0 * jxy, jxx - jyy)
    sx, sy = -np.sin(phi), np.cos(phi)  # unit vector perpendicular to the gradient
    if sy < 0 or (sy == 0 and sx < 0):
        sx, sy = -sx, -sy  # point it downward so the angle is measured from "down"
    angle = float(np.degrees(np.arctan2(sx, sy)))  # from vertical, positive = bottom to the right
    if angle <= -90.0:
        angle += 180.0
    return angle, min(max(coherence, 0.0), 1.0)


def rain_layer_statistics(
    clean: np.ndarray, rainy: np.ndarray, *, threshold: float = 10 / 255
) -> dict[str, float]:
    """Statistics of the rain layer between a clean image and its rainy version.

    Keys:

    ``mean_intensity``
        mean of ``|lum(O) - lum(B)|`` over the image, in [0, 1] units.
    ``coverage``
        fraction of pixels where that difference is at least ``threshold``. On uint8 images the
        difference often lands exactly on a multiple of 1/255, so the comparison allows 1e-6 of
        rounding: otherwise the last bit of the luma weights would decide those pixels.
    ``dominant_orientation_deg``
        streak direction from the structure tensor of the signed luminance difference, degrees from
        vertical in (-90, 90]; NaN when the layer is empty or isotropic.
    ``anisotropy``
        structure-tensor coherence in [0, 1] (1 = all streaks parallel); NaN for an empty layer.
    """
    b = _as_float(clean, "clean")
    o = _as_float(rainy, "rainy")
    if b.shape != o.shape:
        raise ValueError(f"clean and rainy differ in shape: {b.shape} vs {o.shape}")
    diff = luminance(o) - luminance(b)
    mag = np.abs(diff)
    angle, coherence = structure_tensor_orientation(diff)
    return {
        "mean_intensity": float(mag.mean()),
        "coverage": float(np.mean(mag >= threshold - 1e-6)),
        "dominant_orientation_deg": angle,
        "anisotropy": coherence,
    }


def jpeg_blockiness(image: np.ndarray) -> float:
    """Ratio of luminance jumps across 8-pixel block borders to jumps inside blocks.

    About 1 for an uncompressed photo; above 1 when 8x8 DCT blocking (JPEG) is present, because
    each block is quantised on its own. Uses horizontal and vertical neighbour differences.
    """
    lum = luminance(_as_float(image, "image"))
    ratios = []
    for axis in (0, 1):
        d = np.abs(np.diff(lum, axis=axis))
        n = d.shape[axis]
        pos = np.arange(n) % 8
        border = np.take(d, np.nonzero(pos == 7)[0], axis=axis)  # between pixels 7 and 8 of a block
        inner = np.take(d, np.nonzero((pos != 7))[0], axis=axis)
        if border.size and inner.size:
            ratios.append(border.mean() / (inner.mean() + 1e-12))
    return float(np.mean(ratios)) if ratios else float("nan")


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Robust estimate of additive noise std (in [0, 1] units) from the finest diagonal detail.

    The Haar-like diagonal difference ``(a - b - c + d) / 2`` over 2x2 cells cancels smooth image
    content and keeps unit noise gain; the median absolute deviation / 0.6745 ignores sparse
    structure such as edges and streaks (Donoho's wavelet-MAD estimator).
    """
    lum = luminance(_as_float(image, "image"))
    h, w = (lum.shape[0] // 2) * 2, (lum.shape[1] // 2) * 2
    x = lum[:h, :w]
    hh = (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) / 2.0
    return float(np.median(np.abs(hh)) / 0.6745)


def domain_statistics_table(
    clean_images: Iterable[np.ndarray],
    domain: str,
    seed: int,
    *,
    ddn_type: int | None = None,
    threshold: float = 10 / 255,
) -> Any:
    """Render each clean image under ``domain`` (seed ``seed + i`` for image ``i``) and tabulate.

    Returns a ``pandas.DataFrame`` with one row per image: ``image``, ``seed``, the keys of
    :func:`rain_layer_statistics`, plus ``blockiness`` and ``noise_sigma`` of the rainy image.
    """
    import pandas as pd

    from derainlib.data.synthetic import render

    rows = []
    for i, clean in enumerate(clean_images):
        rainy = render(clean, domain, seed + i, ddn_type=ddn_type)
        row: dict[str, Any] = {"image": i, "domain": domain, "seed": seed + i}
        if ddn_type is not None:
            row["ddn_type"] = ddn_type
        row.update(rain_layer_statistics(clean, rainy, threshold=threshold))
        row["blockiness"] = jpeg_blockiness(rainy)
        row["noise_sigma"] = estimate_noise_sigma(rainy)
        rows.append(row)
    return pd.DataFrame(rows)

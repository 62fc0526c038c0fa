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
    "rendering_statistics",
    "orientation_spread",
    "streak_shapes",
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
    version: int = 2,
) -> Any:
    """Render each clean image under ``domain`` (seed ``seed + i`` for image ``i``) and tabulate.

    ``version`` is the renderer version; statistics are taken against the domain's clean target
    (the relit scene for version 2 ``night`` and ``realproxy``).

    Returns a ``pandas.DataFrame`` with one row per image: ``image``, ``seed``, the keys of
    :func:`rain_layer_statistics`, plus ``blockiness`` and ``noise_sigma`` of the rainy image.
    """
    import pandas as pd

    from derainlib.data.synthetic import render_pair

    rows = []
    for i, clean in enumerate(clean_images):
        rainy, clean = render_pair(clean, domain, seed + i, ddn_type=ddn_type, version=version)
        row: dict[str, Any] = {"image": i, "domain": domain, "seed": seed + i, "version": version}
        if ddn_type is not None:
            row["ddn_type"] = ddn_type
        row.update(rain_layer_statistics(clean, rainy, threshold=threshold))
        row["blockiness"] = jpeg_blockiness(rainy)
        row["noise_sigma"] = estimate_noise_sigma(rainy)
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Streak shape, spread and contrast (renderer study)
# ----------------------------------------------------------------------------------------------


def orientation_spread(layer: np.ndarray, tile: int = 32) -> float:
    """Spread of streak orientations, degrees: circular std of per-tile structure-tensor directions.

    The map is cut into ``tile`` x ``tile`` tiles; each tile's structure tensor gives a direction
    (doubled angle, so 0 and 180 degrees agree) weighted by the tile's coherent energy
    ``l1 - l2``. The weighted circular standard deviation of the doubled angles, halved, is the
    spread: about 0 for parallel streaks, growing as directions fan out (criss-cross hatching).
    NaN when no tile has directional energy.
    """
    layer = np.asarray(layer, dtype=np.float64)
    gx = ndimage.gaussian_filter(layer, 1.0, order=(0, 1), mode="nearest")
    gy = ndimage.gaussian_filter(layer, 1.0, order=(1, 0), mode="nearest")
    h, w = layer.shape
    th, tw = h // tile, w // tile
    if th == 0 or tw == 0:
        th, tw, tile_h, tile_w = 1, 1, h, w
    else:
        tile_h = tile_w = tile

    def tiles(x: np.ndarray) -> np.ndarray:
        return x[: th * tile_h, : tw * tile_w].reshape(th, tile_h, tw, tile_w).sum(axis=(1, 3))

    jxx, jyy, jxy = tiles(gx * gx), tiles(gy * gy), tiles(gx * gy)
    c = jxx - jyy + 1j * 2.0 * jxy  # |c| = l1 - l2, arg(c) = doubled gradient angle
    weight = np.abs(c)
    if not weight.sum() > 1e-12:
        return float("nan")
    r = float(np.abs((c).sum()) / weight.sum())  # mean resultant length of the doubled angles
    return float(np.degrees(0.5 * np.sqrt(-2.0 * np.log(max(r, 1e-12)))))


def streak_shapes(diff: np.ndarray, threshold: float = 10 / 255, min_pixels: int = 4) -> dict[str, float]:
    """Length and width of streaks from connected components of ``|diff| >= threshold``.

    For each component (8-connected, at least ``min_pixels``) the second moments give its principal
    axes; a uniform segment of length L has variance L^2 / 12 along it, so ``length = sqrt(12 l1)``
    and ``width = sqrt(12 l2)`` (floored at 1 px). Returns the median and 90th percentile of both and
    the component count per megapixel. Merged streaks (dense rain) make fewer, larger components:
    read lengths in dense domains as lengths of streak clusters.
    """
    mask = np.abs(np.asarray(diff)) >= threshold - 1e-6
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    nan = float("nan")
    if n == 0:
        return {"streaks_per_mpx": 0.0, "length_median": nan, "length_p90": nan, "width_median": nan,
                "width_p90": nan}
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    count = np.bincount(lab, minlength=n + 1).astype(np.float64)
    my = np.bincount(lab, ys, n + 1) / np.maximum(count, 1)
    mx = np.bincount(lab, xs, n + 1) / np.maximum(count, 1)
    dy, dx = ys - my[lab], xs - mx[lab]
    cyy = np.bincount(lab, dy * dy, n + 1) / np.maximum(count, 1) + 1.0 / 12.0  # pixel extent
    cxx = np.bincount(lab, dx * dx, n + 1) / np.maximum(count, 1) + 1.0 / 12.0
    cxy = np.bincount(lab, dx * dy, n + 1) / np.maximum(count, 1)
    tr, det = cyy + cxx, cyy * cxx - cxy**2
    disc = np.sqrt(np.maximum(tr**2 / 4.0 - det, 0.0))
    l1, l2 = tr / 2.0 + disc, np.maximum(tr / 2.0 - disc, 0.0)
    keep = count >= min_pixels
    keep[0] = False
    if not keep.any():
        return {"streaks_per_mpx": 0.0, "length_median": nan, "length_p90": nan, "width_median": nan,
                "width_p90": nan}
    length, width = np.sqrt(12.0 * l1[keep]), np.maximum(np.sqrt(12.0 * l2[keep]), 1.0)
    return {
        "streaks_per_mpx": float(keep.sum() / (mask.size / 1e6)),
        "length_median": float(np.median(length)),
        "length_p90": float(np.quantile(length, 0.9)),
        "width_median": float(np.median(width)),
        "width_p90": float(np.quantile(width, 0.9)),
    }


def rendering_statistics(
    target: np.ndarray, rainy: np.ndarray, *, threshold: float = 10 / 255, with_niqe: bool = True
) -> dict[str, float]:
    """Every statistic of the renderer study for one (clean target, rainy) pair.

    The keys of :func:`rain_layer_statistics` and :func:`streak_shapes`, plus ``anisotropy_streaks`` and
    ``orientation_spread_deg`` (:func:`structure_tensor_orientation` coherence and
    :func:`orientation_spread` of the streak layer: ``O - B`` median-filtered 3x3 against camera
    noise and high-passed (minus its Gaussian blur, sigma 4) against fog and veils, which would
    otherwise dominate the gradients), ``contrast`` (mean of ``lum(O) - lum(B)`` over the covered pixels:
    positive = streaks brighter than the background), ``brighter_share`` (share of covered pixels
    where the rain brightens), ``psnr_in`` / ``ssim_in`` (rainy input against its target, Y channel),
    ``niqe_in`` (NIQE of the rainy input, NaN below two 96x96 blocks or when ``with_niqe`` is
    false) and the ANLCL asymmetry of :func:`derainlib.analysis.patch_asymmetry.patch_asymmetry`.
    """
    from ..metrics import psnr, ssim
    from ..niqe import niqe, niqe_applicable
    from .patch_asymmetry import patch_asymmetry

    b = _as_float(target, "target")
    o = _as_float(rainy, "rainy")
    if b.shape != o.shape:
        raise ValueError(f"target and rainy differ in shape: {b.shape} vs {o.shape}")
    diff = luminance(o) - luminance(b)
    covered = np.abs(diff) >= threshold - 1e-6
    row = rain_layer_statistics(target, rainy, threshold=threshold)
    med = ndimage.median_filter(diff, 3, mode="nearest")
    streak_layer = med - ndimage.gaussian_filter(med, 4.0, mode="nearest")
    row["anisotropy_streaks"] = structure_tensor_orientation(streak_layer)[1]
    row["orientation_spread_deg"] = orientation_spread(streak_layer)
    row.update(streak_shapes(diff, threshold))
    row["contrast"] = float(diff[covered].mean()) if covered.any() else float("nan")
    row["brighter_share"] = float((diff[covered] > 0).mean()) if covered.any() else float("nan")
    t8 = np.round(b * 255).astype(np.uint8)
    o8 = np.round(o * 255).astype(np.uint8)
    row["psnr_in"] = float(psnr(o8, t8))
    row["ssim_in"] = float(ssim(o8, t8))
    h, w = o8.shape[:2]
    row["niqe_in"] = float(niqe(o8)) if with_niqe and niqe_applicable(h, w) else float("nan")
    if min(h, w) >= 16:
        row.update(patch_asymmetry(t8, o8, threshold=threshold))
    return row

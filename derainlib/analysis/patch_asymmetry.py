"""The image/rain asymmetry of the ANLCL paper (Fig. 6, Sec. 3.3): rain-layer patches are simpler.

The paper takes 16 x 16 patches of the clean image ``B`` and of the rain layer ``R = O - B``
(100 per category) and finds that rain patches have lower entropy (``-sum p_i log2 p_i`` of the
patch's normalised histogram) and a faster-decaying singular-value curve (the patch cluster is
closer to low rank) than image patches, which motivates its asymmetric margin loss (Eq. 7-8).
:func:`patch_asymmetry` measures both on a rendering, so one can check whether it holds.

Values are quantised to steps of 1/255 before the histogram (8-bit levels; the signed rain layer
keeps its sign, and entropy does not depend on where the levels start).
"""

from __future__ import annotations

import numpy as np

from ..data.streaks import luminance

__all__ = ["patch_entropy", "singular_value_curve", "sample_patches", "patch_asymmetry"]


def patch_entropy(patches: np.ndarray) -> np.ndarray:
    """Entropy in bits of each patch's normalised histogram of 8-bit levels; ``patches`` is N x P x P in [−1, 1]."""
    levels = np.round(np.asarray(patches, dtype=np.float64) * 255.0).astype(np.int64).reshape(len(patches), -1)
    levels -= levels.min(axis=1, keepdims=True)
    out = np.empty(len(levels))
    for i, row in enumerate(levels):
        p = np.bincount(row).astype(np.float64)
        p = p[p > 0] / row.size
        out[i] = float(-(p * np.log2(p)).sum())
    return out


def singular_value_curve(patches: np.ndarray) -> np.ndarray:
    """Singular values of the N x P^2 matrix of a patch cluster, normalised to sum to 1 (decreasing).

    Each patch's mean is removed first, so the curve measures structure, not brightness (otherwise
    the first singular value is the clusters' mean level and dominates both curves).
    """
    m = np.asarray(patches, dtype=np.float64).reshape(len(patches), -1)
    m = m - m.mean(axis=1, keepdims=True)
    s = np.linalg.svd(m, compute_uv=False)
    return s / max(float(s.sum()), 1e-12)


def sample_patches(
    layer: np.ndarray, rng: np.random.Generator, n: int, size: int = 16, where: np.ndarray | None = None
) -> np.ndarray:
    """``n`` random ``size`` x ``size`` patches of a 2-D map; with ``where`` (H x W bool), centred on True pixels."""
    h, w = layer.shape
    if h < size or w < size:
        raise ValueError(f"layer {h}x{w} is smaller than one {size}x{size} patch")
    if where is not None:
        valid = np.zeros_like(where, dtype=bool)
        valid[size // 2 : h - size + size // 2 + 1, size // 2 : w - size + size // 2 + 1] = True
        ys, xs = np.nonzero(where & valid)
        if len(ys) == 0:
            return np.empty((0, size, size))
        pick = rng.integers(0, len(ys), size=n)
        y0, x0 = ys[pick] - size // 2, xs[pick] - size // 2
    else:
        y0 = rng.integers(0, h - size + 1, size=n)
        x0 = rng.integers(0, w - size + 1, size=n)
    idx_y = y0[:, None, None] + np.arange(size)[None, :, None]
    idx_x = x0[:, None, None] + np.arange(size)[None, None, :]
    return layer[idx_y, idx_x]


def patch_asymmetry(
    clean: np.ndarray, rainy: np.ndarray, *, n: int = 100, size: int = 16, seed: int = 0, k: int = 5,
    threshold: float = 10 / 255,
) -> dict[str, float]:
    """Entropy and singular-value decay of image patches (of ``clean``) and rain patches (of ``O - B``).

    Image patches are drawn anywhere; rain patches are centred on pixels where ``|O - B|`` reaches
    ``threshold`` (the rain, not the empty background). Returns the mean entropies (bits), the share
    of the first ``k`` normalised singular values of each cluster (higher = faster decay, closer to
    low rank), ``entropy_lower`` and ``sv_faster`` (1.0 when rain patches have lower mean entropy,
    resp. a larger top-``k`` share, than image patches, else 0.0) and ``holds`` (both; all three NaN
    when there is no rain).
    """
    b = luminance(np.asarray(clean, dtype=np.float64) / (255.0 if clean.dtype == np.uint8 else 1.0))
    o = luminance(np.asarray(rainy, dtype=np.float64) / (255.0 if rainy.dtype == np.uint8 else 1.0))
    r = o - b
    rng = np.random.default_rng(seed)
    img = sample_patches(b, rng, n, size)
    rain = sample_patches(r, rng, n, size, where=np.abs(r) >= threshold - 1e-6)
    h_img = float(patch_entropy(img).mean())
    sv_img = float(singular_value_curve(img)[:k].sum())
    if len(rain) == 0:
        nan = float("nan")
        return {"entropy_image": h_img, "entropy_rain": nan, "sv_top_image": sv_img, "sv_top_rain": nan,
                "entropy_lower": nan, "sv_faster": nan, "holds": nan}
    h_rain = float(patch_entropy(rain).mean())
    sv_rain = float(singular_value_curve(rain)[:k].sum())
    return {"entropy_image": h_img, "entropy_rain": h_rain, "sv_top_image": sv_img, "sv_top_rain": sv_rain,
            "entropy_lower": float(h_rain < h_img), "sv_faster": float(sv_rain > sv_img),
            "holds": float(h_rain < h_img and sv_rain > sv_img)}

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
import pandas as pd

from ..data.streaks import luminance

__all__ = ["CATEGORIES", "IMAGE_CATEGORIES", "RAIN_CATEGORIES", "RANK_ENERGY", "category_patches", "category_statistics",
           "effective_rank", "fig6_claim", "patch_asymmetry", "patch_entropy", "sample_patches", "singular_value_curve"]


def patch_entropy(patches: np.ndarray) -> np.ndarray:
    """Entropy in bits of each patch's normalised histogram of 8-bit levels; ``patches`` is N x P x P in [−1, 1]."""
    if len(patches) == 0:
        return np.empty(0)
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


# ----------------------------------------------------------------------------- Fig. 6: six categories

#: Fig. 6's categories: three of the clean image, two of the rain layer.
IMAGE_CATEGORIES = ("smooth", "texture", "edge")
RAIN_CATEGORIES = ("streak", "veiling")
CATEGORIES = IMAGE_CATEGORIES + RAIN_CATEGORIES
#: The energy share the effective rank of a category's patches reaches (:func:`effective_rank`).
RANK_ENERGY = 0.9


def _gradient_statistics(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per patch: mean gradient magnitude, and the coherence of the structure tensor (0: no dominant
    orientation, 1: all gradients parallel), ``((l1 - l2) / (l1 + l2))`` of its summed outer products."""
    gy, gx = np.gradient(np.asarray(patches, dtype=np.float64), axis=(1, 2))
    magnitude = np.sqrt(gx ** 2 + gy ** 2).mean(axis=(1, 2))
    jxx, jyy, jxy = (gx * gx).sum(axis=(1, 2)), (gy * gy).sum(axis=(1, 2)), (gx * gy).sum(axis=(1, 2))
    root = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2)
    coherence = np.where(jxx + jyy > 1e-12, root / np.maximum(jxx + jyy, 1e-12), 0.0)
    return magnitude, coherence


def category_patches(clean: list[np.ndarray], rainy: list[np.ndarray], *, n: int = 100, size: int = 16,
                     candidates: int = 4000, seed: int = 0, threshold: float = 10 / 255) -> dict[str, np.ndarray]:
    """Fig. 6(a)'s six categories of ``size``² patches, ``n`` each, chosen automatically from ``candidates`` random
    patches of the clean images' luminance B and of the rain layers' ``R = O − B`` (images H×W×3, uint8 or [0, 1]).

    Criteria (gradient statistics of :func:`_gradient_statistics`; all patches are of B's or R's luminance):

    - *smooth*: the ``n`` clean patches with the lowest mean gradient magnitude;
    - *edge*: among clean patches above the median gradient magnitude, the ``n`` with the highest coherence
      (one dominant orientation);
    - *texture*: among the same, the ``n`` with the lowest coherence (strong gradients in many orientations);
    - *streak*: among rain patches centred on ``|R| ≥ threshold``, the ``n`` with the highest coherence
      times mean gradient magnitude (oriented, sharp rain);
    - *veiling*: among rain patches whose mean ``|R|`` reaches ``threshold``, the ``n`` with the lowest
      mean gradient magnitude relative to that mean (a smooth, haze-like offset).

    A category with too few candidates returns what it has (possibly none: e.g. a rendering without veiling).
    """
    rng = np.random.default_rng(seed)
    per_image = max(1, candidates // max(len(clean), 1))
    image_p, rain_p = [], []
    for b_img, o_img in zip(clean, rainy):
        b = luminance(np.asarray(b_img, dtype=np.float64) / (255.0 if np.asarray(b_img).dtype == np.uint8 else 1.0))
        o = luminance(np.asarray(o_img, dtype=np.float64) / (255.0 if np.asarray(o_img).dtype == np.uint8 else 1.0))
        r = o - b
        image_p.append(sample_patches(b, rng, per_image, size))
        rain_p.append(sample_patches(r, rng, per_image, size, where=np.abs(r) >= threshold - 1e-6))
    image = np.concatenate(image_p) if image_p else np.empty((0, size, size))
    rain = np.concatenate(rain_p) if rain_p else np.empty((0, size, size))
    out: dict[str, np.ndarray] = {}
    magnitude, coherence = _gradient_statistics(image) if len(image) else (np.empty(0), np.empty(0))
    out["smooth"] = image[np.argsort(magnitude, kind="stable")[:n]]
    strong = np.flatnonzero(magnitude > np.median(magnitude)) if len(image) else np.empty(0, int)
    order = strong[np.argsort(-coherence[strong], kind="stable")]
    out["edge"] = image[order[:n]]
    out["texture"] = image[order[::-1][:n]]
    if len(rain):
        r_mag, r_coh = _gradient_statistics(rain)
        out["streak"] = rain[np.argsort(-(r_coh * r_mag), kind="stable")[:n]]
        level = np.abs(rain).mean(axis=(1, 2))
        veil = np.flatnonzero(level >= threshold)
        out["veiling"] = rain[veil[np.argsort(r_mag[veil] / level[veil], kind="stable")[:n]]]
    else:
        out["streak"] = out["veiling"] = np.empty((0, size, size))
    return {name: out[name] for name in CATEGORIES}


def effective_rank(patches: np.ndarray, energy: float = RANK_ENERGY) -> int:
    """How many singular values of the (mean-removed) patch cluster hold ``energy`` of its singular-value sum:
    the dimension of the subspace the patches nearly lie in (:func:`singular_value_curve`)."""
    curve = singular_value_curve(patches)
    if curve.sum() == 0:  # every patch flat: no direction at all
        return 0
    return int(np.searchsorted(np.cumsum(curve), energy - 1e-12) + 1)


def category_statistics(categories: dict[str, np.ndarray]) -> pd.DataFrame:
    """Fig. 6(b)-(c) per category: patch count, mean and sd of the entropy (bits), effective rank, and the share
    of the first 5 normalised singular values."""
    rows = []
    for name, patches in categories.items():
        if len(patches) < 2:
            rows.append({"category": name, "layer": "rain" if name in RAIN_CATEGORIES else "image",
                         "patches": len(patches), "entropy": np.nan, "entropy_sd": np.nan,
                         "effective_rank": np.nan, "sv_top5": np.nan})
            continue
        h = patch_entropy(patches)
        rows.append({"category": name, "layer": "rain" if name in RAIN_CATEGORIES else "image",
                     "patches": len(patches), "entropy": float(h.mean()), "entropy_sd": float(h.std(ddof=1)),
                     "effective_rank": effective_rank(patches), "sv_top5": float(singular_value_curve(patches)[:5].sum())})
    return pd.DataFrame(rows)


def fig6_claim(stats: pd.DataFrame) -> dict[str, object]:
    """The paper's claim on one domain (§4.3, Fig. 6): rain patches are simpler than the structured image patches,
    i.e. every rain category with patches has a lower mean entropy *and* a lower effective rank than both edge
    and texture (smooth patches are the paper's stated exception). Returns ``entropy_lower``, ``rank_lower`` and
    ``holds`` (booleans; ``holds`` is None when a needed category has no patches)."""
    by = stats.set_index("category")
    rain = [c for c in RAIN_CATEGORIES if by.loc[c, "patches"] >= 2]
    structured = [c for c in ("edge", "texture") if by.loc[c, "patches"] >= 2]
    if not rain or len(structured) < 2:
        return {"entropy_lower": None, "rank_lower": None, "holds": None}
    entropy = all(by.loc[r, "entropy"] < by.loc[i, "entropy"] for r in rain for i in structured)
    rank = all(by.loc[r, "effective_rank"] < by.loc[i, "effective_rank"] for r in rain for i in structured)
    return {"entropy_lower": bool(entropy), "rank_lower": bool(rank), "holds": bool(entropy and rank)}

"""NIQE, the no-reference image-quality score the deraining papers report on real rainy images.

NIQE is Mittal, Soundararajan and Bovik 2013 (IEEE SPL 20(3), "Making a
'completely blind' image quality analyzer"), following the official MATLAB
release (``computequality.m``) with its pristine model (``modelparameters.mat``,
carried here as ``resources/niqe_pris_params.npz``; see
``resources/NIQE_PROVENANCE.md``). Lower is better.

The input conventions (8-bit quantisation, MATLAB's Y) are those of :mod:`derainlib.metrics`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.special import gamma as _gamma_fn

from .metrics import rgb_to_gray, rgb_to_y, to_uint8

__all__ = ["niqe", "niqe_applicable"]

_NIQE_BLOCK = 96  # official recommended block size (no overlap)
_NIQE_PARAMS = Path(__file__).resolve().parent / "resources" / "niqe_pris_params.npz"


@lru_cache(maxsize=1)
def _niqe_pristine() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pristine MVG (mu 36, cov 36x36) and the 7x7 MSCN window from the official release."""
    with np.load(_NIQE_PARAMS, allow_pickle=False) as data:
        mu = np.asarray(data["mu_pris_param"], dtype=np.float64).reshape(-1)
        cov = np.asarray(data["cov_pris_param"], dtype=np.float64)
        window = np.asarray(data["gaussian_window"], dtype=np.float64)
    return mu, cov, window


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' bicubic kernel with a = -0.5 (MATLAB ``imresize`` 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def _resize_matrix(in_len: int, scale: float) -> np.ndarray:
    """``out_len x in_len`` matrix of MATLAB ``imresize`` (bicubic, antialiasing on) along one axis.

    MATLAB's contributions(): output pixel x (1-based) maps to u = x/scale + 0.5(1 - 1/scale);
    when shrinking, the kernel is stretched by 1/scale (antialiasing); each row of
    weights is normalised to sum 1; out-of-range taps are mirrored (symmetric padding).
    """
    out_len = math.ceil(in_len * scale)
    kernel_width = 4.0 / scale if scale < 1 else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = math.ceil(kernel_width) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input positions
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if scale < 1 else _cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    # Symmetric padding: 1..n, n..1, repeated.
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    src = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    mat = np.zeros((out_len, in_len))
    np.add.at(mat, (np.repeat(np.arange(out_len), taps), src.ravel()), w.ravel())
    return mat


def _imresize_half(img: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(img, 0.5)`` (bicubic with antialiasing) of a 2-D double image."""
    rows = _resize_matrix(img.shape[0], 0.5)
    cols = _resize_matrix(img.shape[1], 0.5)
    return rows @ img @ cols.T  # MATLAB resizes rows first for equal scales


# The AGGD shape is found by table look-up, as estimateaggdparam.m does: gam = 0.2:0.001:10.
_GAM = 0.2 + 0.001 * np.arange(9801)
_R_GAM = _gamma_fn(2.0 / _GAM) ** 2 / (_gamma_fn(1.0 / _GAM) * _gamma_fn(3.0 / _GAM))


def _fit_aggd(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching AGGD fit (Lasmar et al. 2009, as in BRISQUE/NIQE) of each row of ``samples``.

    Returns alpha (shape), beta_l and beta_r (left/right scales), one per row.
    A side with no samples gives NaN, and then alpha = 0.2 (MATLAB's ``min`` over an
    all-NaN vector returns index 1; ``np.argmin`` returns 0 likewise); such
    feature rows are dropped from the covariance and ignored by the mean.
    """
    neg, pos = samples < 0, samples > 0
    sq = samples**2
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt((sq * neg).sum(axis=1) / neg.sum(axis=1))
        right_std = np.sqrt((sq * pos).sum(axis=1) / pos.sum(axis=1))
        gamma_hat = left_std / right_std
        r_hat = np.mean(np.abs(samples), axis=1) ** 2 / np.mean(sq, axis=1)
        r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
        alpha = _GAM[np.argmin((_R_GAM[None, :] - r_hat_norm[:, None]) ** 2, axis=1)]
        ratio = np.sqrt(_gamma_fn(1.0 / alpha) / _gamma_fn(3.0 / alpha))
    return alpha, left_std * ratio, right_std * ratio


def _niqe_block_features(blocks: np.ndarray) -> np.ndarray:
    """The 18 NIQE features of each MSCN block (``computefeature.m``), shape ``(n_blocks, 18)``.

    2 from the MSCN coefficients (AGGD shape, mean of the two scales), then for each of
    the horizontal, vertical and two diagonal neighbour products (circular shifts
    within the block, as ``circshift``): AGGD shape, mean, left and right scales.
    """
    n = blocks.shape[0]
    feats = []
    alpha, bl, br = _fit_aggd(blocks.reshape(n, -1))
    feats += [alpha, (bl + br) / 2.0]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        pair = blocks * np.roll(blocks, shift, axis=(1, 2))
        alpha, bl, br = _fit_aggd(pair.reshape(n, -1))
        mean = (br - bl) * _gamma_fn(2.0 / alpha) / _gamma_fn(1.0 / alpha)
        feats += [alpha, mean, bl, br]
    return np.stack(feats, axis=1)


def _split_blocks(img: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """Non-overlapping ``bh x bw`` blocks of an image whose sides are multiples of them."""
    h, w = img.shape
    return img.reshape(h // bh, bh, w // bw, bw).transpose(0, 2, 1, 3).reshape(-1, bh, bw)


def _pinv_matlab(a: np.ndarray) -> np.ndarray:
    """Pseudo-inverse with MATLAB's default tolerance ``max(size(A)) * eps(norm(A))``."""
    u, s, vt = np.linalg.svd(a)
    tol = max(a.shape) * np.spacing(s.max()) if s.size else 0.0
    inv_s = np.where(s > tol, 1.0 / np.where(s > tol, s, 1.0), 0.0)
    return (vt.T * inv_s) @ u.T


def niqe_applicable(height: int, width: int, crop_border: int = 0) -> bool:
    """Whether NIQE is defined for an image this size: it needs at least two 96×96 blocks."""
    h, w = height - 2 * crop_border, width - 2 * crop_border
    return h > 0 and w > 0 and (h // _NIQE_BLOCK) * (w // _NIQE_BLOCK) >= 2


def niqe(image: Any, *, crop_border: int = 0, convert_to: str = "y") -> float:
    """NIQE (Mittal et al. 2013) of one image, as the official MATLAB release computes it.

    Steps (``computequality.m``; lower is better):

    1. Quantise to uint8 (see :func:`to_uint8`) and convert a colour image to one
       channel: ``convert_to="y"`` (default) uses the rounded MATLAB ``rgb2ycbcr`` Y,
       as basicsr's ``calculate_niqe`` does by default; ``convert_to="gray"`` uses the
       rounded MATLAB ``rgb2gray``, as the official release does for RGB input. The two
       differ by a few hundredths; say which one a table uses. Grey input is used as is.
    2. Drop ``crop_border`` pixels at each edge, then crop to whole 96x96 blocks
       (top-left kept; the block overlap is 0 in the release).
    3. At two scales (full, then MATLAB ``imresize(., 0.5)`` bicubic with
       antialiasing): MSCN coefficients ``(I - mu) / (sigma + 1)`` with the
       release's 7x7 Gaussian window (``fspecial('gaussian', 7, 7/6)``) and
       replicate borders; 18 AGGD features per block (96x96, then 48x48).
       Every block is used: the sharpness selection (0.75 x the largest block
       sharpness) only applies when *building* the pristine model
       (``estimatemodelparam.m``), not at test time.
    4. Fit a multivariate Gaussian to the 36-dim block features (NaN-aware mean;
       covariance over complete rows, like ``nanmean``/``nancov``) and return
       ``sqrt((mu_p - mu_d)^T pinv((cov_p + cov_d) / 2) (mu_p - mu_d))`` against
       the pristine model (Eq. 10 of the paper).

    Args:
        image: one image (torch ``3xHxW``/``1x3xHxW`` float in [0, 1], uint8
            ``HxWx3``, or grey ``HxW`` uint8).
        crop_border: pixels dropped from every edge first.
        convert_to: ``"y"`` or ``"gray"``, see step 1.

    Returns NaN when fewer than two blocks have finite features: flat blocks (constant, or
    saturated at 0 or 255, as a diverged network's output can be) give 0/0 in the AGGD fit, and the
    MATLAB release fails on them (``pinv`` of a NaN matrix).

    Raises:
        ValueError: for a batch of more than one image, or fewer than two 96x96 blocks.
    """
    arr = to_uint8(image)
    if arr.shape[0] != 1:
        raise ValueError(f"niqe takes one image, got a batch of {arr.shape[0]}")
    arr = arr[0]
    if arr.shape[-1] == 3:
        if convert_to == "y":
            img = rgb_to_y(arr)
        elif convert_to == "gray":
            img = rgb_to_gray(arr)
        else:
            raise ValueError(f"convert_to must be 'y' or 'gray', got {convert_to!r}")
    else:
        img = arr[..., 0].astype(np.float64)
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]

    bs = _NIQE_BLOCK
    nh, nw = img.shape[0] // bs, img.shape[1] // bs
    if not niqe_applicable(*img.shape[:2]):
        raise ValueError(f"NIQE needs at least two {bs}x{bs} blocks, got an image of {img.shape[0]}x{img.shape[1]}")
    img = img[: nh * bs, : nw * bs]

    mu_pris, cov_pris, window = _niqe_pristine()
    per_scale = []
    for scale in (1, 2):
        mu = ndimage.correlate(img, window, mode="nearest")
        sigma = np.sqrt(np.abs(ndimage.correlate(img * img, window, mode="nearest") - mu * mu))
        mscn = (img - mu) / (sigma + 1.0)
        per_scale.append(_niqe_block_features(_split_blocks(mscn, bs // scale, bs // scale)))
        if scale == 1:
            img = _imresize_half(img)
    feats = np.concatenate(per_scale, axis=1)

    complete = feats[~np.isnan(feats).any(axis=1)]
    if len(complete) < 2:
        # Flat blocks (a constant or saturated region) have no MSCN variation, so their AGGD fit is
        # 0/0; with fewer than two usable blocks the Gaussian fit, and so NIQE, is undefined.
        return float("nan")
    mu_dist = np.nanmean(feats, axis=0)
    cov_dist = np.cov(complete, rowvar=False)
    diff = mu_pris - mu_dist
    quality = diff @ _pinv_matlab((cov_pris + cov_dist) / 2.0) @ diff
    return float(np.sqrt(quality))

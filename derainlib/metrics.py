"""Image-quality metrics the deraining literature reports: PSNR, SSIM and NIQE.

Conventions (see ``shared/REFERENCE.md``, "How the field computes PSNR and SSIM"):

* **What is measured is the saved 8-bit image.** Float inputs (torch tensors
  ``Nx3xHxW`` / ``3xHxW`` in [0, 1]) are first quantised exactly as writing a
  PNG with ``torchvision.utils.save_image`` would: ``floor(clip(x, 0, 1) * 255 + 0.5)``,
  i.e. round half up. NumPy inputs must already be ``uint8`` (``HxWx3``,
  ``NxHxWx3`` or a single grey ``HxW``); NumPy float arrays are refused
  because [0, 1] and [0, 255] scalings cannot be told apart.
* **Y channel by default.** The Restormer / MPRNet / DRSformer MATLAB scripts
  read uint8 PNGs and call ``rgb2ycbcr`` on them, which returns a *uint8*
  (rounded) Y; PSNR and SSIM are then computed on that Y as double. We follow
  this exactly (:func:`rgb_to_y`). ``y_channel=False`` evaluates RGB instead
  (DRD-Net's own script uses RGB): PSNR takes the MSE over all three channels,
  SSIM is the mean of the three per-channel SSIMs.
* **PSNR** uses peak 255: ``10 log10(255^2 / MSE)``; identical images give ``inf``.
* **SSIM** is Wang et al. 2004 (IEEE TIP 13(4), "Image quality assessment: from
  error visibility to structural similarity") as in the authors' ``ssim_index.m``
  that those scripts call: 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
  K2 = 0.03, L = 255, statistics on the "valid" region only (no padding), and
  the mean of the SSIM map. No automatic down-sampling (that belongs to the
  later ``ssim.m``, not to ``ssim_index.m``).
* **NIQE** is Mittal, Soundararajan and Bovik 2013 (IEEE SPL 20(3), "Making a
  'completely blind' image quality analyzer"), following the official MATLAB
  release (``computequality.m``) with its pristine model (``modelparameters.mat``,
  carried here as ``resources/niqe_pris_params.npz``; see
  ``resources/NIQE_PROVENANCE.md``). Lower is better.

Batches: ``reduction="mean"`` returns the mean over images as a float,
``reduction="none"`` a float64 array with one value per image (shape ``(N,)``,
also ``(1,)`` for a single image).
"""

from __future__ import annotations

import math
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.special import gamma as _gamma_fn

__all__ = ["niqe", "psnr", "rgb_to_gray", "rgb_to_y", "ssim", "to_uint8"]

# MATLAB rgb2gray weights: the first row of inv(ntsc2rgb-matrix), as rgb2gray.m lists them.
_GRAY_COEFFS = (0.298936021293775, 0.587043074451121, 0.114020904255103)

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2, _SSIM_L = 0.01, 0.03, 255.0

_NIQE_BLOCK = 96  # official recommended block size (no overlap)
_NIQE_PARAMS = Path(__file__).resolve().parent / "resources" / "niqe_pris_params.npz"


# --------------------------------------------------------------------------- inputs


def _matlab_round(x: np.ndarray) -> np.ndarray:
    """Round half away from zero, as MATLAB's ``round`` and uint8 casts do (x >= 0 here)."""
    return np.floor(x + 0.5)


def _is_torch_tensor(x: Any) -> bool:
    # Duck-typed so that this module never has to import torch itself.
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def to_uint8(image: Any) -> np.ndarray:
    """Bring one image or a batch to ``uint8`` channels-last, as a saved PNG would hold it.

    Accepted inputs:

    * torch tensor ``NxCxHxW``, ``CxHxW`` or ``HxW`` with C in {1, 3}: floating
      point values in [0, 1] are quantised as ``floor(clip(x, 0, 1) * 255 + 0.5)``
      (round half up, the ``torchvision.utils.save_image`` rule); uint8 tensors
      are taken as they are.
    * NumPy ``uint8`` ``NxHxWxC``, ``HxWxC`` or ``HxW`` with C in {1, 3}.

    Returns:
        ``uint8`` array ``NxHxWxC`` (a single image gets N = 1).
    """
    if _is_torch_tensor(image):
        t = image.detach().cpu()
        if t.dim() == 2:
            t = t.unsqueeze(0)
        if t.dim() == 3:
            t = t.unsqueeze(0)
        if t.dim() != 4 or t.shape[1] not in (1, 3):
            raise ValueError(
                f"expected a tensor NxCxHxW, CxHxW or HxW with C in (1, 3), got shape {tuple(image.shape)}"
            )
        if t.is_floating_point():
            arr = t.double().numpy()
            if not np.isfinite(arr).all():
                raise ValueError("image tensor contains NaN or inf")
            arr = np.floor(np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        elif str(t.dtype) == "torch.uint8":
            arr = t.numpy()
        else:
            raise TypeError(f"unsupported tensor dtype {t.dtype}; use float in [0, 1] or uint8")
        return np.ascontiguousarray(arr.transpose(0, 2, 3, 1))

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(
                f"NumPy images must be uint8 (got {image.dtype}); pass float images as torch tensors in [0, 1] "
                "or convert them to uint8 yourself"
            )
        arr = image
        if arr.ndim == 2:
            arr = arr[None, :, :, None]
        elif arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
            raise ValueError(f"expected a uint8 array NxHxWxC, HxWxC or HxW with C in (1, 3), got shape {image.shape}")
        return arr
    raise TypeError(f"unsupported image type {type(image).__name__}; use a torch tensor or a uint8 NumPy array")


def rgb_to_y(image_uint8: np.ndarray) -> np.ndarray:
    """Luma Y of MATLAB's ``rgb2ycbcr`` applied to a uint8 image, i.e. already rounded.

    ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in [0, 1]. MATLAB's
    ``rgb2ycbcr`` on uint8 input returns uint8, rounding half away from zero. The
    Restormer/MPRNet/DRSformer evaluation scripts call it on the uint8 PNGs, so
    their PSNR/SSIM see these *rounded* values; we follow that.

    The sum is evaluated exactly in integers (``Y * 255000`` is an integer), so the
    194 of the 2^24 colours whose Y is exactly ``k + 0.5`` (e.g. RGB (146, 124, 97),
    Y = 125.5) round up; any floating-point evaluation, MATLAB's or basicsr's, may
    land either side of those ties. Every other colour is at least 1.1e-5 from a tie.

    Args:
        image_uint8: ``uint8`` array whose last axis is RGB (``HxWx3`` or ``NxHxWx3``).

    Returns:
        float64 array of the leading shape, integer values in [16, 235]
        (white -> 235, black -> 16).
    """
    arr = np.asarray(image_uint8)
    if arr.dtype != np.uint8 or arr.ndim < 1 or arr.shape[-1] != 3:
        raise ValueError(f"rgb_to_y expects a uint8 array with 3 channels last, got {arr.dtype} {arr.shape}")
    rgb = arr.astype(np.int64)
    # 255000 * (Y - 16) with the coefficients scaled by 1000 to integers.
    n = 65481 * rgb[..., 0] + 128553 * rgb[..., 1] + 24966 * rgb[..., 2]
    return (16 + (2 * n + 255000) // 510000).astype(np.float64)


def rgb_to_gray(image_uint8: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` on a uint8 image (rounded, as it returns uint8), as float64.

    ``0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B`` in [0, 255].
    The official NIQE release converts colour inputs this way.
    """
    arr = np.asarray(image_uint8)
    if arr.dtype != np.uint8 or arr.ndim < 1 or arr.shape[-1] != 3:
        raise ValueError(f"rgb_to_gray expects a uint8 array with 3 channels last, got {arr.dtype} {arr.shape}")
    rgb = arr.astype(np.float64)
    cr, cg, cb = _GRAY_COEFFS
    return _matlab_round(cr * rgb[..., 0] + cg * rgb[..., 1] + cb * rgb[..., 2])


def _prepare_pair(pred: Any, target: Any, y_channel: bool, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8-quantise, check shapes, crop, convert; returns float64 ``NxCxHxW`` pairs."""
    p, t = to_uint8(pred), to_uint8(target)
    if p.shape != t.shape:
        raise ValueError(
            f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)} "
            f"(as uint8 NHWC: {p.shape} vs {t.shape})"
        )
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        h, w = p.shape[1:3]
        if 2 * crop_border >= min(h, w):
            raise ValueError(f"crop_border={crop_border} leaves nothing of a {h}x{w} image")
        p = p[:, crop_border:-crop_border, crop_border:-crop_border]
        t = t[:, crop_border:-crop_border, crop_border:-crop_border]
    if y_channel and p.shape[-1] == 3:
        # MATLAB scripts convert only when size(img, 3) == 3; grey images are used as they are.
        pf, tf = rgb_to_y(p)[..., None], rgb_to_y(t)[..., None]
    else:
        pf, tf = p.astype(np.float64), t.astype(np.float64)
    return pf.transpose(0, 3, 1, 2), tf.transpose(0, 3, 1, 2)


def _reduce(values: np.ndarray, reduction: str) -> float | np.ndarray:
    if reduction == "mean":
        return float(np.mean(values))
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


# --------------------------------------------------------------------------- PSNR


def psnr(
    pred: Any,
    target: Any,
    *,
    y_channel: bool = True,
    crop_border: int = 0,
    reduction: str = "mean",
) -> float | np.ndarray:
    """Peak signal-to-noise ratio in dB with peak 255, on the uint8-quantised images.

    ``10 log10(255^2 / MSE)``; the MATLAB scripts' ``20 log10(255 / RMSE)`` is the
    same number. Identical images give ``inf``.

    Args:
        pred, target: images or batches (see :func:`to_uint8`); float inputs are
            rounded to uint8 first, as a saved PNG would be.
        y_channel: MATLAB ``rgb2ycbcr`` Y (rounded, see :func:`rgb_to_y`) if True
            (Restormer/MPRNet/DRSformer convention); RGB, with the MSE taken over
            all three channels, if False.
        crop_border: pixels dropped from every edge before measuring.
        reduction: ``"mean"`` (mean over the batch, a float) or ``"none"``
            (float64 array of shape ``(N,)``).

    Raises:
        ValueError: if the shapes differ (both are named), on a bad reduction or crop.
    """
    p, t = _prepare_pair(pred, target, y_channel, crop_border)
    mse = np.mean((p - t) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(255.0**2 / mse)
    return _reduce(values, reduction)


# --------------------------------------------------------------------------- SSIM


@cache
def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Separable correlation over the last two axes keeping only the 'valid' part.

    Equals MATLAB ``filter2(window, img, 'valid')``: the border mode used by
    ``correlate1d`` never reaches the kept interior.
    """
    r = len(win) // 2
    out = ndimage.correlate1d(img, win, axis=-1, mode="constant")[..., r:-r]
    out = ndimage.correlate1d(out, win, axis=-2, mode="constant")[..., r:-r, :]
    return out


def _ssim_per_plane(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean SSIM (Wang et al. 2004, Eq. 13 with the Gaussian window) of each ``...xHxW`` plane."""
    win = _gaussian_1d(_SSIM_WINDOW, _SSIM_SIGMA)
    c1 = (_SSIM_K1 * _SSIM_L) ** 2
    c2 = (_SSIM_K2 * _SSIM_L) ** 2
    mu_x, mu_y = _filter_valid(x, win), _filter_valid(y, win)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    # Biased (window-weighted) moments, as ssim_index.m computes them.
    s_xx = _filter_valid(x * x, win) - mu_xx
    s_yy = _filter_valid(y * y, win) - mu_yy
    s_xy = _filter_valid(x * y, win) - mu_xy
    ssim_map = ((2 * mu_xy + c1) * (2 * s_xy + c2)) / ((mu_xx + mu_yy + c1) * (s_xx + s_yy + c2))
    return ssim_map.mean(axis=(-2, -1))


def ssim(
    pred: Any,
    target: Any,
    *,
    y_channel: bool = True,
    crop_border: int = 0,
    reduction: str = "mean",
) -> float | np.ndarray:
    """Structural similarity (Wang et al. 2004) on the uint8-quantised images.

    As the authors' ``ssim_index.m`` used by the Restormer/MPRNet/DRSformer scripts:
    Gaussian window 11x11 with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255,
    "valid" filtering (the map is ``(H-10) x (W-10)``), mean of the map.
    With ``y_channel=False`` the SSIM of each RGB channel is computed and the
    three are averaged (basicsr's convention for colour SSIM).

    Args:
        pred, target: images or batches (see :func:`to_uint8`); float inputs are
            rounded to uint8 first, as a saved PNG would be.
        y_channel: rounded MATLAB Y if True, per-channel RGB mean if False.
        crop_border: pixels dropped from every edge before measuring.
        reduction: ``"mean"`` or ``"none"`` (see :func:`psnr`).

    Raises:
        ValueError: on mismatched shapes, or images smaller than 11x11 after cropping.
    """
    p, t = _prepare_pair(pred, target, y_channel, crop_border)
    if min(p.shape[-2:]) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW}, got {p.shape[-2:]}")
    values = _ssim_per_plane(p, t).mean(axis=1)  # mean over channels
    return _reduce(values, reduction)


# --------------------------------------------------------------------------- NIQE


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

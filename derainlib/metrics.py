"""Full-reference image-quality metrics the deraining literature reports: PSNR and SSIM.

Conventions (those of the public evaluation scripts the papers' tables come from):

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
* **NIQE**, the no-reference score, is in :mod:`derainlib.niqe`.

Batches: ``reduction="mean"`` returns the mean over images as a float,
``reduction="none"`` a float64 array with one value per image (shape ``(N,)``,
also ``(1,)`` for a single image).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["psnr", "rgb_to_gray", "rgb_to_y", "ssim", "to_uint8"]

# MATLAB rgb2gray weights: the first row of inv(ntsc2rgb-matrix), as rgb2gray.m lists them.
_GRAY_COEFFS = (0.298936021293775, 0.587043074451121, 0.114020904255103)

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2, _SSIM_L = 0.01, 0.03, 255.0



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

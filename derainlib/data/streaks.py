"""Rain building blocks: streak kernels and layers, large blurs, blends and a depth prior.

The domain renderers of :mod:`derainlib.data.synthetic` compose these. Everything here is a pure
function of its arguments and a :class:`numpy.random.Generator`, and uses no threads or BLAS
(streaks are splatted with ``np.bincount``, blurs are separable ``scipy.ndimage`` filters), so the
bytes do not depend on the thread count or the machine.

Streaks follow the Rain100 recipe (Yang et al., CVPR 2017, §3): sparse random impulses convolved with
a line-shaped motion kernel with a Gaussian cross-section.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import erf

# Rec. 601 luma weights, the ones MATLAB's rgb2ycbcr uses.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luminance(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luminance of an H x W x 3 float image (same units and dtype as the input)."""
    # An explicit weighted sum rather than ``image @ LUMA``: no BLAS, so no thread-dependent rounding.
    return image[..., 0] * LUMA[0] + image[..., 1] * LUMA[1] + image[..., 2] * LUMA[2]


# ----------------------------------------------------------------------------------------------
# Streak kernels and layers
# ----------------------------------------------------------------------------------------------


def streak_kernel(length: float, angle_deg: float, width: float) -> np.ndarray:
    """A motion-blurred drop: a line segment with a Gaussian cross-section, peak value about 1.

    ``angle_deg`` is measured from vertical; positive angles lean the bottom of the streak to the
    right (image x grows rightwards, y downwards). ``width`` is the Gaussian sigma across the streak
    in pixels, ``length`` the segment length. The cross-section is the Gaussian integrated over each
    pixel (erf), so thin streaks do not flicker along their length from point sampling, and it is
    divided by its centred value so that ``width`` changes thickness, not peak brightness. The ends
    taper smoothly over a quarter of the length each.
    """
    theta = np.deg2rad(angle_deg)
    s, c = np.sin(theta), np.cos(theta)
    half = length / 2.0
    reach = half + 3.0 * width + 1.0
    ry = int(np.ceil(abs(c) * half + 3.0 * width + 1.0))
    rx = int(np.ceil(abs(s) * half + 3.0 * width + 1.0))
    ry, rx = min(ry, int(reach) + 1), min(rx, int(reach) + 1)
    y, x = np.mgrid[-ry : ry + 1, -rx : rx + 1].astype(np.float64)
    along = x * s + y * c
    across = x * c - y * s
    k = np.sqrt(2.0) * width
    profile = 0.5 * (erf((across + 0.5) / k) - erf((across - 0.5) / k))
    profile /= 0.5 * (erf(0.5 / k) - erf(-0.5 / k))
    # Ends fade over the outer quarter of the length on each side: the drop's exposure ramps
    # (and the Rain100 recipe's Gaussian-blurred noise, smeared, tapers the same way).
    ramp = max(0.25 * length, 1.0)
    ends = np.clip((half + 0.5 - np.abs(along)) / ramp, 0.0, 1.0)
    return profile * ends * (2.0 - ends)


def drops(
    rng: np.random.Generator,
    shape: tuple[int, int],
    density: float,
    amp_range: tuple[float, float] = (0.55, 1.0),
    weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson-many drop centres, uniform over the frame, with random amplitudes.

    ``density`` is drops per pixel; ``weight`` (H x W, values in [0, 1]) thins the drops spatially,
    e.g. for gusts. Returns ``(ys, xs, amplitudes)``.
    """
    h, w = shape
    n = int(rng.poisson(max(density, 0.0) * h * w))
    ys = rng.integers(0, h, size=n)
    xs = rng.integers(0, w, size=n)
    amp = rng.uniform(amp_range[0], amp_range[1], size=n)
    if weight is not None:
        keep = rng.random(n) < weight[ys, xs]
        ys, xs, amp = ys[keep], xs[keep], amp[keep]
    return ys, xs, amp


def splat(
    shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, amps: np.ndarray, kernel: np.ndarray
) -> np.ndarray:
    """Sum of ``kernel`` copies centred at the drops, wrapping around the borders (periodic).

    Equivalent to convolving a sparse impulse image with the kernel, but costs drops x kernel
    support instead of FFTs of the whole frame, and is exactly reproducible (``np.bincount`` sums in
    a fixed order). Wrapping keeps the rain field stationary: streaks enter from every border.
    """
    h, w = shape
    ky, kx = np.nonzero(kernel > 1e-3)
    vals = kernel[ky, kx]
    oy = ky - kernel.shape[0] // 2
    ox = kx - kernel.shape[1] // 2
    rows = (ys[:, None] + oy[None, :]) % h
    cols = (xs[:, None] + ox[None, :]) % w
    weights = amps[:, None] * vals[None, :]
    flat = np.bincount((rows * w + cols).ravel(), weights=weights.ravel(), minlength=h * w)
    return flat.reshape(h, w).astype(np.float32)


@dataclass(frozen=True)
class StreakLayer:
    """Parameters of one streak layer (one direction, one length and width)."""

    density: float  # drops per pixel
    length: float  # pixels
    angle_deg: float  # from vertical, positive = bottom leans right
    width: float  # Gaussian sigma across the streak, pixels
    intensity: float  # peak value of an isolated streak, [0, 1]

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def clamp_length(length: float, h: int, w: int) -> float:
    # Streaks longer than most of the frame would wrap around the periodic canvas visibly.
    return float(min(length, 0.75 * min(h, w)))


def density_for(coverage: float, length: float, width: float) -> float:
    """Drops per pixel that make streaks of this size cover ``coverage`` of the frame.

    A streak covers about ``length * (2.5 * width + 1)`` pixels; with Poisson-placed drops the covered
    fraction is ``1 - exp(-density * area)``, inverted here. Specifying rain by coverage keeps long,
    wide streaks from saturating the frame.
    """
    area = max(length, 1.0) * (2.5 * width + 1.0)
    return float(-np.log1p(-min(coverage, 0.95)) / area)


def streak_layers(
    rng: np.random.Generator,
    shape: tuple[int, int],
    layers: list[StreakLayer],
    weight: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Render grayscale streak layers (one array per entry, ``shape``, values >= 0, unclipped).

    Each layer is the Rain100 recipe: sparse random impulses (drops with random amplitude) convolved
    with a line-shaped motion kernel with a Gaussian cross-section, scaled by the layer's intensity.
    """
    h, w = shape
    out = []
    for layer in layers:
        kernel = streak_kernel(clamp_length(layer.length, h, w), layer.angle_deg, layer.width)
        ys, xs, amp = drops(rng, shape, layer.density, weight=weight)
        out.append(splat(shape, ys, xs, amp * layer.intensity, kernel))
    return out


def streak_sum(
    rng: np.random.Generator,
    shape: tuple[int, int],
    layers: list[StreakLayer],
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """The sum of :func:`streak_layers` (overlapping streaks add; the blend clips later)."""
    total = np.zeros(shape, dtype=np.float32)
    for layer in streak_layers(rng, shape, layers, weight):
        total += layer
    return total


# ----------------------------------------------------------------------------------------------
# Helpers: large blurs, blending, depth priors
# ----------------------------------------------------------------------------------------------


def upsample_linear(x: np.ndarray, factor: int, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of a block-averaged array back to ``h`` x ``w`` (cell centres aligned)."""
    for axis, n_out in ((0, h), (1, w)):
        n_in = x.shape[axis]
        u = (np.arange(n_out) + 0.5) / factor - 0.5
        i0 = np.clip(np.floor(u).astype(int), 0, n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        t = np.clip(u - i0, 0.0, 1.0)
        shape = [1] * x.ndim
        shape[axis] = n_out
        t = t.reshape(shape).astype(x.dtype)
        x = np.take(x, i0, axis=axis) * (1.0 - t) + np.take(x, i1, axis=axis) * t
    return x


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a 2-D or H x W x C image with reflected borders.

    Small sigmas use separable ``ndimage.gaussian_filter``. Large ones (bloom, environment light,
    smooth depth) block-average by ``f ~ sigma / 2.5``, blur the small image and upsample bilinearly:
    a smooth result is all those uses need, and the cost no longer grows with sigma.
    """
    if sigma <= 0:
        return image.copy()
    spatial = (sigma, sigma, 0) if image.ndim == 3 else sigma
    f = int(sigma // 2.5)
    h, w = image.shape[:2]
    if f < 2 or min(h, w) < 4 * f:
        return ndimage.gaussian_filter(image, spatial, mode="reflect", truncate=3.0)
    ph, pw = -h % f, -w % f
    pads = ((0, ph), (0, pw)) + (((0, 0),) if image.ndim == 3 else ())
    x = np.pad(image, pads, mode="edge")
    # Block mean, one axis at a time (each reduction runs over a contiguous middle axis: fast).
    x = x.reshape(x.shape[0] // f, f, *x.shape[1:]).mean(axis=1)
    x = x.reshape(x.shape[0], x.shape[1] // f, f, *x.shape[2:]).mean(axis=2)
    # The block mean already blurred by a box of width f (variance f^2 / 12).
    s_small = np.sqrt(max(sigma**2 - f**2 / 12.0, 0.25)) / f
    spatial_small = (s_small, s_small, 0) if image.ndim == 3 else s_small
    x = ndimage.gaussian_filter(x, spatial_small, mode="reflect", truncate=3.0)
    return upsample_linear(x, f, h, w)


def smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, a smooth cubic between."""
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def screen(base: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Photoshop screen blend ``1 - (1 - B)(1 - R)``: brightens, never overshoots white."""
    return 1.0 - (1.0 - base) * (1.0 - np.clip(layer, 0.0, 1.0))


def gray(layer: np.ndarray) -> np.ndarray:
    return layer[:, :, None]


def layout_depth(
    shape: tuple[int, int], rng: np.random.Generator, horizon: float | None = None
) -> np.ndarray:
    """A smooth layout prior for scene depth in [0, 1] (1 = far), growing toward the top of the frame.

    Below the horizon a ground plane seen from a camera at height ``h_c`` has depth
    ``~ h_c / (y - y_horizon)``; above it (sky, facades) everything is treated as far. The horizon
    height (30-55% from the top) and a slight tilt are drawn from ``rng``. The prior is smooth, so it
    is computed on a coarse grid and upsampled.
    """
    h, w = shape
    if horizon is None:
        horizon = float(rng.uniform(0.3, 0.55))
    tilt = rng.uniform(-0.05, 0.05)
    f = max(min(h, w) // 32, 1)
    ch, cw = -(-h // f), -(-w // f)
    yy = ((np.arange(ch) + 0.5) * f / h)[:, None]
    xx = ((np.arange(cw) + 0.5) * f / w)[None, :]
    y_rel = yy - horizon - tilt * (xx - 0.5)
    ground = 0.12 / np.maximum(y_rel + 0.12, 1e-3)  # 1 at the horizon, falling toward the bottom
    depth = np.clip(np.where(y_rel > 0, ground, 1.0), 0.0, 1.0)
    depth = ndimage.gaussian_filter(depth, (0.03 * h + 1.0) / f, mode="nearest")  # soften the horizon
    return np.clip(upsample_linear(depth, f, h, w), 0.0, 1.0).astype(np.float32)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Low-frequency random field in [0, 1] (for gusts and uneven density); ``scale`` in pixels."""
    h, w = shape
    f = max(int(scale // 4), 1)
    coarse = rng.random((-(-h // f), -(-w // f)))
    coarse = ndimage.gaussian_filter(coarse, 2.0, mode="wrap")
    field = upsample_linear(coarse, f, h, w)
    lo, hi = field.min(), field.max()
    return (field - lo) / (hi - lo + 1e-12)

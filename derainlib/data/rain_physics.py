"""A photometric rain-streak model (renderer version 2).

Physics after Garg and Nayar ("Vision and rain", IJCV 2007; "Photorealistic rendering of rain
streaks", SIGGRAPH 2006), drop sizes after Marshall and Palmer (1948) and terminal speeds after
Atlas et al. (1973):

* drop diameters ``D`` (mm) follow ``N(D) = N0 exp(-Lambda D)``, ``Lambda = 4.1 R^-0.21`` mm^-1 for a
  rain rate ``R`` in mm/h (:func:`sample_drop_diameters`);
* a drop falls at ``v(D) = 9.65 - 10.3 exp(-0.6 D)`` m/s (:func:`terminal_velocity`);
* on the sensor its streak is ``f v T / z`` pixels long (focal length ``f`` in pixels, exposure ``T``,
  depth ``z``; :func:`streak_length_px`), and ``f D / z`` pixels wide plus the thin-lens circle of
  confusion ``c = A f |z - z_f| / (z z_f)`` (aperture diameter ``A``, focus distance ``z_f``;
  :func:`circle_of_confusion_px`);
* a drop covers a pixel only for ``tau = D / v`` of the exposure, so a streak pixel is the time average
  ``O = (1 - alpha) B + alpha E`` with ``alpha = tau / T`` (:func:`streak_alpha`), where ``E`` is the
  drop's radiance: the environment over a wide (~165 degree) field of view, hence a heavily blurred
  mix of the scene and the sky (:func:`environment_radiance`). A streak is brighter than a background
  darker than ``E`` and darker than one brighter than ``E`` (a bright sky); it is never opaque paint.

Physical ``alpha`` values are small (a 2 mm drop at 1/60 s gives ``alpha ~ 0.02``); the public
synthetic datasets show far more visible rain than that. Each domain therefore states its rain in
the terms a dataset is seen in: the fraction of the frame covered (sets the drop count), the median
peak alpha of a streak (sets one gain on every drop's physical alpha, as a shorter exposure or
brighter drops would) and optionally the median streak length (sets the exposure). The *relative*
geometry and photometry between drops stay physical: length by speed and depth, width by size and
defocus, alpha by ``D / (v T)`` and footprint, more far drops than near ones.

Rendering is vectorised: drops are grouped by depth and speed into a few kernels (the layers of
the model) and splatted with ``np.bincount`` (:func:`derainlib.data.streaks.splat`), so the bytes
depend only on the arguments and the :class:`numpy.random.Generator`, not on threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scipy import ndimage

from .streaks import blur, splat, streak_kernel, upsample_linear

__all__ = [
    "Camera",
    "RainParams",
    "marshall_palmer_lambda",
    "sample_drop_diameters",
    "terminal_velocity",
    "streak_length_px",
    "drop_image_px",
    "circle_of_confusion_px",
    "streak_alpha",
    "sample_depths",
    "environment_radiance",
    "rain_alpha",
    "composite",
]


@dataclass(frozen=True)
class Camera:
    """A thin-lens camera: focal length in pixels and in mm, f-number, focus distance, exposure."""

    focal_px: float = 600.0
    focal_mm: float = 35.0
    f_number: float = 4.0
    focus_m: float = 20.0
    exposure_s: float = 1.0 / 60.0

    @property
    def aperture_m(self) -> float:
        """Aperture diameter ``A = f / N`` in metres."""
        return self.focal_mm / 1000.0 / self.f_number


@dataclass(frozen=True)
class RainParams:
    """What a domain chooses about its rain (see the module docstring for the physics)."""

    rain_rate: float = 10.0  # mm/h: sets the drop-size distribution
    z_near: float = 0.5  # m, nearest drop
    z_far: float = 15.0  # m, farthest drop rendered individually
    wind_deg: float = 0.0  # dominant fall direction, degrees from vertical (positive: bottom leans right)
    jitter_deg: float = 2.0  # std of the direction between depth/speed groups
    coverage: float = 0.08  # fraction of the frame the streaks cover (sets the drop count)
    alpha_median: float = 0.4  # median peak alpha of a streak (sets the visibility gain, see above)
    length_px: float | None = None  # median streak length (sets the exposure); None: the camera's exposure
    alpha_max: float = 0.9  # no single streak is fully opaque
    n_depth: int = 5  # depth groups
    n_speed: int = 3  # speed groups per depth group
    min_length_px: float = 3.0
    max_length_frac: float = 0.6  # of the shorter image side
    width_scale: float = 1.0  # extra factor on the drop image size (e.g. for dataset look)
    diameter_range_mm: tuple[float, float] = (0.5, 6.0)
    depth_power: float = 2.0  # p(z) ~ z^power; 2 = uniform in the frustum
    fall_speed: float | None = None  # m/s for every particle (+-20%), e.g. snow; None: terminal velocity of rain


def marshall_palmer_lambda(rain_rate: float) -> float:
    """Slope of the Marshall–Palmer distribution ``Lambda = 4.1 R^-0.21`` (mm^-1), ``R`` in mm/h."""
    if rain_rate <= 0:
        raise ValueError(f"rain_rate must be positive (mm/h), got {rain_rate}")
    return 4.1 * rain_rate ** -0.21


def sample_drop_diameters(
    rng: np.random.Generator, n: int, rain_rate: float, d_min: float = 0.5, d_max: float = 6.0
) -> np.ndarray:
    """``n`` drop diameters (mm) from ``N(D) ~ exp(-Lambda D)`` truncated to ``[d_min, d_max]`` (inverse CDF)."""
    lam = marshall_palmer_lambda(rain_rate)
    u = rng.random(n)
    span = 1.0 - np.exp(-lam * (d_max - d_min))
    return d_min - np.log1p(-u * span) / lam


def terminal_velocity(diameter_mm: np.ndarray | float) -> np.ndarray:
    """Terminal speed ``v(D) = 9.65 - 10.3 exp(-0.6 D)`` m/s (Atlas et al. 1973), clipped at 0."""
    return np.maximum(9.65 - 10.3 * np.exp(-0.6 * np.asarray(diameter_mm, dtype=np.float64)), 0.0)


def streak_length_px(speed: np.ndarray | float, exposure_s: float, depth_m: np.ndarray | float, focal_px: float) -> np.ndarray:
    """Streak length on the sensor, ``f v T / z`` pixels."""
    return focal_px * np.asarray(speed, dtype=np.float64) * exposure_s / np.asarray(depth_m, dtype=np.float64)


def drop_image_px(diameter_mm: np.ndarray | float, depth_m: np.ndarray | float, focal_px: float) -> np.ndarray:
    """The drop's own image diameter, ``f D / z`` pixels."""
    return focal_px * np.asarray(diameter_mm, dtype=np.float64) / 1000.0 / np.asarray(depth_m, dtype=np.float64)


def circle_of_confusion_px(depth_m: np.ndarray | float, camera: Camera) -> np.ndarray:
    """Thin-lens blur-circle diameter ``c = A f |z - z_f| / (z z_f)`` in pixels (``z, z_f >> f``)."""
    z = np.asarray(depth_m, dtype=np.float64)
    return camera.aperture_m * camera.focal_px * np.abs(z - camera.focus_m) / (z * camera.focus_m)


def streak_alpha(
    diameter_mm: np.ndarray, speed: np.ndarray, exposure_s: float, image_px: np.ndarray, blur_px: np.ndarray
) -> np.ndarray:
    """Peak time fraction a streak covers a pixel.

    A drop covers a point for ``tau = D / v`` of the exposure ``T`` (``alpha0 = tau / T``); a drop
    imaged smaller than a pixel covers only that fraction of it, and blur spreads the same energy
    over a wider footprint, so the peak is ``alpha0 * d / max(sqrt(d^2 + c^2), 1)``.
    """
    alpha0 = (np.asarray(diameter_mm) / 1000.0) / (np.maximum(np.asarray(speed), 1e-3) * exposure_s)
    footprint = np.maximum(np.hypot(image_px, blur_px), 1.0)
    return alpha0 * np.minimum(image_px, footprint) / footprint


def sample_depths(rng: np.random.Generator, n: int, z_near: float, z_far: float, power: float = 2.0) -> np.ndarray:
    """Depths with density ``p(z) ~ z^power`` on ``[z_near, z_far]`` (inverse CDF).

    ``power = 2`` is uniform in the view frustum (the cross-section grows as ``z^2``): the physical case.
    """
    u = rng.random(n)
    k = power + 1.0
    return (z_near**k + u * (z_far**k - z_near**k)) ** (1.0 / k)


def environment_radiance(
    scene: np.ndarray, *, sky_weight: float = 0.5, gain: float = 1.2, sky: np.ndarray | None = None,
    saturation: float = 0.35,
) -> np.ndarray:
    """The radiance ``E`` a drop shows: the environment over a ~165 degree field of view.

    Approximated as ``gain * ((1 - w) * blur(B, 0.1 min(H, W)) + w * sky)``: a heavily blurred scene
    (what lies around the drop) mixed with the sky colour (what lies above it, the mean of the
    frame's brightest top rows unless given), ``w = sky_weight``. ``gain`` > 1 stands for the
    drop's lensing gathering light from the whole cone. Averaging over so wide a field mixes many
    colours, so the result is desaturated toward its luminance (``saturation`` keeps that share of
    the chroma). Returns H x W x 3 float32 in [0, 1].
    """
    h, w = scene.shape[:2]
    if sky is None:
        top = scene[: max(h // 6, 1)].reshape(-1, 3)
        lum = top[:, 0] * 0.299 + top[:, 1] * 0.587 + top[:, 2] * 0.114
        sky = top[lum >= np.quantile(lum, 0.5)].mean(axis=0)
    sky = np.asarray(sky, dtype=np.float32)
    sigma = 0.1 * min(h, w) + 2.0
    f = int(sigma // 2.5)
    if f >= 2 and min(h, w) >= 4 * f:
        # Everything here is smooth: work on an f-times smaller image and upsample once at the end.
        x = np.pad(scene, ((0, -h % f), (0, -w % f), (0, 0)), mode="edge")
        x = x.reshape(x.shape[0] // f, f, x.shape[1], 3).mean(axis=1)
        x = x.reshape(x.shape[0], x.shape[1] // f, f, 3).mean(axis=2)
        s_small = np.sqrt(max(sigma**2 - f**2 / 12.0, 0.25)) / f
        local = ndimage.gaussian_filter(x, (s_small, s_small, 0), mode="reflect", truncate=3.0)
    else:
        local, f = blur(scene, sigma), 1
    env = gain * ((1.0 - sky_weight) * local + sky_weight * sky)
    lum = env[..., 0:1] * 0.299 + env[..., 1:2] * 0.587 + env[..., 2:3] * 0.114
    env = np.clip(lum + saturation * (env - lum), 0.0, 1.0)
    if f > 1:
        env = upsample_linear(env, f, h, w)
    return np.clip(env, 0.0, 1.0).astype(np.float32)


def _speeds(rng: np.random.Generator, d: np.ndarray, params: RainParams) -> np.ndarray:
    if params.fall_speed is None:
        return terminal_velocity(d)
    return params.fall_speed * rng.uniform(0.8, 1.2, size=len(d))


def rain_alpha(
    rng: np.random.Generator,
    shape: tuple[int, int],
    params: RainParams,
    camera: Camera,
    weight: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """The time-fraction map ``alpha`` (H x W, in [0, 1)) of one rain volume, and what was drawn.

    Drops are placed uniformly in the frustum (depth ``p(z) ~ z^2``), with Marshall–Palmer sizes and
    terminal speeds; each gets its streak length, width (own image plus defocus) and alpha from the
    functions above. Drops are grouped into ``n_depth`` x ``n_speed`` groups that share one kernel
    (group medians of length and width, one direction ``wind + N(0, jitter)``) and keep their own
    amplitude; the drop count is set so the streaks cover about ``params.coverage`` of the frame.
    Overlapping streaks combine as ``1 - exp(-sum alpha_i)`` (independent occlusions), so alpha
    never exceeds 1. ``weight`` (H x W in [0, 1]) thins the drops spatially (gusts, depth masks).
    """
    h, w = shape
    # A pilot sample sets the typical streak footprint, hence the count for the target coverage.
    n_pilot = 512
    d = sample_drop_diameters(rng, n_pilot, params.rain_rate, *params.diameter_range_mm)
    z = sample_depths(rng, n_pilot, params.z_near, params.z_far, params.depth_power)
    v = _speeds(rng, d, params)
    exposure = camera.exposure_s
    if params.length_px is not None:  # the exposure that gives this median length
        exposure = params.length_px / float(np.median(streak_length_px(v, 1.0, z, camera.focal_px)))
    length = np.clip(streak_length_px(v, exposure, z, camera.focal_px), params.min_length_px,
                     params.max_length_frac * min(h, w))
    image = drop_image_px(d, z, camera.focal_px) * params.width_scale
    coc = circle_of_confusion_px(z, camera)
    width = np.hypot(image, coc)
    raw = streak_alpha(d, v, exposure, image, coc)
    visibility = params.alpha_median / max(float(np.median(raw)), 1e-12)
    area = float(np.mean(length * (np.maximum(width, 0.6) + 1.0)))
    cov = min(max(params.coverage, 0.0), 0.95)
    n = int(rng.poisson(-np.log1p(-cov) * h * w / area)) if cov > 0 else 0
    d = sample_drop_diameters(rng, n, params.rain_rate, *params.diameter_range_mm)
    z = sample_depths(rng, n, params.z_near, params.z_far, params.depth_power)
    v = _speeds(rng, d, params)
    length = np.clip(streak_length_px(v, exposure, z, camera.focal_px), params.min_length_px,
                     params.max_length_frac * min(h, w))
    image = drop_image_px(d, z, camera.focal_px) * params.width_scale
    coc = circle_of_confusion_px(z, camera)
    alpha = np.clip(streak_alpha(d, v, exposure, image, coc) * visibility, 0.0, params.alpha_max)
    ys = rng.integers(0, h, size=n)
    xs = rng.integers(0, w, size=n)
    if weight is not None:
        keep = rng.random(n) < weight[ys, xs]
        ys, xs, d, z, v, length, image, coc, alpha = (a[keep] for a in (ys, xs, d, z, v, length, image, coc, alpha))
    # Groups: depth quantiles, then speed terciles inside each (the "layers" of the model).
    total = np.zeros(shape, dtype=np.float64)
    groups = []
    if len(z):
        z_edges = np.quantile(z, np.linspace(0, 1, params.n_depth + 1))
        z_bin = np.clip(np.searchsorted(z_edges, z, side="right") - 1, 0, params.n_depth - 1)
        for zb in range(params.n_depth):
            in_z = np.nonzero(z_bin == zb)[0]
            if not len(in_z):
                continue
            v_edges = np.quantile(v[in_z], np.linspace(0, 1, params.n_speed + 1))
            v_bin = np.clip(np.searchsorted(v_edges, v[in_z], side="right") - 1, 0, params.n_speed - 1)
            for vb in range(params.n_speed):
                idx = in_z[v_bin == vb]
                if not len(idx):
                    continue
                g_len = float(np.median(length[idx]))
                # Gaussian sigma from a diameter: FWHM ~ diameter, sigma = FWHM / 2.355; a floor
                # keeps sub-pixel drops from aliasing.
                g_sigma = float(max(np.median(np.hypot(image[idx], coc[idx])) / 2.355, 0.35))
                angle = float(params.wind_deg + rng.normal(0.0, params.jitter_deg))
                kernel = streak_kernel(g_len, angle, g_sigma)
                total += splat(shape, ys[idx], xs[idx], alpha[idx], kernel)
                groups.append({"depth_m": float(np.median(z[idx])), "length_px": g_len, "sigma_px": g_sigma,
                               "angle_deg": angle, "drops": int(len(idx)),
                               "alpha_median": float(np.median(alpha[idx]))})
    a = (1.0 - np.exp(-total)).astype(np.float32)
    info = {"drops": int(len(z)), "groups": groups, "wind_deg": params.wind_deg, "exposure_s": exposure,
            "visibility": visibility,
            "diameter_mm_median": float(np.median(d)) if len(d) else float("nan")}
    return a, info


def composite(background: np.ndarray, alpha: np.ndarray, radiance: np.ndarray) -> np.ndarray:
    """Time-averaged blend ``O = B (1 - alpha) + alpha E``, clipped to [0, 1] (never opaque paint)."""
    a = np.clip(alpha, 0.0, 1.0)[:, :, None]
    return np.clip(background * (1.0 - a) + a * radiance, 0.0, 1.0).astype(np.float32)

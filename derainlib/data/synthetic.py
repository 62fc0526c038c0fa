"""Seeded rain renderer: the same clean photo under nine families of synthetic and proxy-real rain.

Every domain is a pure function of ``(clean, domain, seed, ddn_type, version)``: the random state
comes from one :class:`numpy.random.Generator` seeded from those arguments, no global RNG is touched,
and no step uses threads or BLAS, so the bytes do not depend on the thread count or the machine.

**Versions.** ``version=2`` (the default) is the photometric renderer of this module, built on
:mod:`derainlib.data.rain_physics` (Garg and Nayar's streak model: Marshall–Palmer drop sizes,
terminal speeds, streak length ``f v T / z``, width from drop size and thin-lens defocus, alpha the
time fraction a drop covers a pixel, radiance the wide-field environment; blend
``O = B (1 - alpha) + alpha E``, never opaque paint). ``version=1`` is the first renderer, frozen in
:mod:`derainlib.data.synthetic_v1` so that results computed on it stay reproducible byte for byte.

**Clean targets.** Most domains keep the photo as the clean target. Version 2 of ``night`` relights
the photo as a night scene and ``realproxy`` as an overcast day photographed by a camera; for them
the clean target is that relit scene (the same scene without rain, as GTAV-NightRain's ground truth
is the night scene): :func:`render_pair` returns it.

Image formation per domain (version 2; intensities in [0, 1], ``B`` clean, ``O`` rainy):

* ``rain200l`` / ``rain200h`` / ``rain800`` / ``ddn``: one rain volume (depth-grouped streaks, one wind
  direction with small jitter), ``O = B (1 - alpha) + alpha E``.
* ``raincityscapes`` (Hu et al., CVPR 2019): depth estimated from the image
  (:func:`derainlib.data.depth.estimate_depth`), three rain volumes at increasing depth, each hidden
  behind nearer scene points, and fog ``O = T O' + (1 - T) A`` with ``T = exp(-beta depth)``.
* ``night``: the relit night scene (:func:`derainlib.data.relight.relight_night`); the drops' radiance
  is the lamp light map, so streaks show mainly near lamps.
* ``snow`` (Snow100K, Liu et al. 2018): flakes from the same volume model (slow fall, 1-8 mm), bright
  radiance, ``O = B (1 - M) + c M``.
* ``raindrop`` (Qian et al., CVPR 2018): defocused drops on the glass, each a lens showing a flipped,
  blurred view of the background; pixels outside every drop mask are unchanged.
* ``realproxy``: overcast relighting, depth-layered rain from a different parameter distribution,
  veiling by depth, occasional lens drops, then a camera (exposure, Bayer sampling with
  Poisson-Gaussian noise, bilinear demosaicing, white balance, JPEG).
"""

from __future__ import annotations

import inspect
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from . import camera as cam
from . import depth as depth_mod
from . import rain_physics as rp
from . import relight, streaks, synthetic_v1
from .errors import DatasetError
from .rain_physics import Camera, RainParams, composite, environment_radiance, rain_alpha
from .streaks import blur, luminance, smooth_field
from .synthetic_v1 import DDN_TYPE_TABLE, DDN_TYPES, DOMAINS, MIN_SIZE, StreakType

__all__ = [
    "DOMAINS",
    "DOMAIN_DESCRIPTIONS",
    "DOMAIN_DESCRIPTIONS_V1",
    "DDN_TYPES",
    "DDN_TYPE_TABLE",
    "DDN_TYPE_TABLE_V2",
    "RENDERER_VERSIONS",
    "DEFAULT_VERSION",
    "StreakType",
    "render",
    "render_pair",
    "render_layers",
    "renderer_source_sha256",
    "luminance",
]

RENDERER_VERSIONS: tuple[int, ...] = (1, 2)
DEFAULT_VERSION = 2

Info = dict[str, Any]


def _scale(h: int, w: int) -> float:
    """Pixel sizes (streak lengths, focal length) are given for a 400 px shorter side and scale with the
    image, so a domain looks alike at 256 and 1024 px; below 240 px the scale stops at 0.6 so that
    streaks of small benchmark images stay streaks rather than specks."""
    return float(np.clip(min(h, w) / 400.0, 0.6, 3.0))


def _camera(h: int, w: int, **kwargs: float) -> Camera:
    return Camera(focal_px=kwargs.pop("focal_px", 500.0) * _scale(h, w), **kwargs)


def _rain_domain(
    b: np.ndarray, rng: np.random.Generator, params: RainParams, camera: Camera, *,
    sky_weight: float, gain: float, weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, Info]:
    """One rain volume composited with the environment radiance: ``(O, alpha, info)``."""
    h, w = b.shape[:2]
    alpha, info = rain_alpha(rng, (h, w), params, camera, weight=weight)
    env = environment_radiance(b, sky_weight=sky_weight, gain=gain)
    return composite(b, alpha, env), alpha, info


# ----------------------------------------------------------------------------------------------
# Version 2 domains: each returns (rainy, clean target or None for "the photo", info)
# ----------------------------------------------------------------------------------------------

Result = tuple[np.ndarray, np.ndarray | None, Info]


def _rain200l(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> Result:
    """Sparse, thin, one direction (Rain200L/Rain100L): few depth groups, tiny jitter."""
    h, w = b.shape[:2]
    params = RainParams(
        rain_rate=rng.uniform(2.0, 8.0), z_near=2.0, z_far=10.0, wind_deg=rng.uniform(-20.0, 20.0),
        jitter_deg=1.0, coverage=rng.uniform(0.04, 0.08), alpha_median=rng.uniform(0.75, 0.9),
        length_px=rng.uniform(14.0, 28.0) * _scale(h, w), n_depth=3, n_speed=3,
    )
    out, alpha, info = _rain_domain(b, rng, params, _camera(h, w, f_number=8.0, focus_m=6.0),
                                    sky_weight=0.6, gain=rng.uniform(1.35, 1.6))
    return out, None, {"blend": "time-average", "angle_deg": params.wind_deg, "params": params.__dict__,
                       **info, "rain": alpha}


def _rain200h(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> Result:
    """Dense rain in several near-parallel layers (Rain200H/Rain100H): depth groups at +-4 degrees."""
    h, w = b.shape[:2]
    params = RainParams(
        rain_rate=rng.uniform(25.0, 60.0), z_near=0.8, z_far=12.0, wind_deg=rng.uniform(-15.0, 15.0),
        jitter_deg=4.0, coverage=rng.uniform(0.35, 0.5), alpha_median=rng.uniform(0.4, 0.55),
        length_px=rng.uniform(28.0, 45.0) * _scale(h, w), n_depth=5, n_speed=2, width_scale=3.0,
    )
    out, alpha, info = _rain_domain(b, rng, params, _camera(h, w, f_number=4.0, focus_m=8.0),
                                    sky_weight=0.6, gain=rng.uniform(1.3, 1.55))
    return out, None, {"blend": "time-average", "angle_deg": params.wind_deg, "params": params.__dict__,
                       **info, "rain": alpha}


def _rain800(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> Result:
    """Varied rain (Rain800, Photoshop-made): heaviness per image, mild veil in heavy rain."""
    h, w = b.shape[:2]
    heavy = rng.random()
    params = RainParams(
        rain_rate=2.0 + 40.0 * heavy, z_near=1.0, z_far=12.0, wind_deg=rng.uniform(-25.0, 25.0),
        jitter_deg=2.0 + 3.0 * heavy, coverage=0.04 + 0.24 * heavy, alpha_median=rng.uniform(0.3, 0.5),
        length_px=(12.0 + 30.0 * heavy) * rng.uniform(0.8, 1.2) * _scale(h, w), n_depth=4,
        width_scale=1.0 + 1.0 * heavy,
    )
    out, alpha, info = _rain_domain(b, rng, params, _camera(h, w, f_number=5.6, focus_m=6.0),
                                    sky_weight=0.5, gain=rng.uniform(1.3, 1.5))
    t = 1.0 - rng.uniform(0.02, 0.06) - 0.1 * heavy
    a = rng.uniform(0.75, 0.92)
    out = np.clip(t * out + (1.0 - t) * a, 0.0, 1.0)
    return out, None, {"blend": "time-average+veil", "heaviness": heavy, "transmission": t, "airlight": a,
                       "angle_deg": params.wind_deg, "params": params.__dict__, **info, "rain": alpha}


# Fourteen rain types that differ in density, length, width and angle, as DDN-Data's (Fu et al.,
# CVPR 2017), in the terms of the streak model: coverage, median length (px at 400 px), width
# factor on the drop image, wind angle, median alpha.
DDN_TYPE_TABLE_V2: dict[int, tuple[float, float, float, float, float]] = {
    # type: (coverage, length, width_scale, angle_deg, alpha_median)
    1: (0.03, 10.0, 1.0, 0.0, 0.45),
    2: (0.05, 14.0, 1.0, -10.0, 0.45),
    3: (0.07, 18.0, 1.2, 12.0, 0.45),
    4: (0.08, 12.0, 1.4, -22.0, 0.45),
    5: (0.10, 22.0, 1.4, 25.0, 0.45),
    6: (0.10, 35.0, 1.6, -5.0, 0.42),
    7: (0.14, 16.0, 1.8, 8.0, 0.4),
    8: (0.16, 28.0, 2.0, -30.0, 0.4),
    9: (0.20, 40.0, 2.0, 32.0, 0.38),
    10: (0.22, 20.0, 2.2, -15.0, 0.38),
    11: (0.25, 45.0, 2.4, 15.0, 0.35),
    12: (0.30, 30.0, 2.6, -40.0, 0.35),
    13: (0.32, 55.0, 2.8, 40.0, 0.33),
    14: (0.38, 38.0, 3.0, 0.0, 0.32),
}


def _ddn(b: np.ndarray, rng: np.random.Generator, ddn_type: int | None) -> Result:
    assert ddn_type is not None
    h, w = b.shape[:2]
    coverage, length, width_scale, angle, alpha = DDN_TYPE_TABLE_V2[ddn_type]
    params = RainParams(
        rain_rate=5.0 + 3.0 * ddn_type, z_near=1.5, z_far=10.0, wind_deg=angle + rng.uniform(-4.0, 4.0),
        jitter_deg=1.5, coverage=coverage * rng.uniform(0.85, 1.15), alpha_median=alpha * rng.uniform(0.9, 1.1),
        length_px=length * rng.uniform(0.85, 1.15) * _scale(h, w), n_depth=3, width_scale=width_scale,
    )
    out, a, info = _rain_domain(b, rng, params, _camera(h, w, f_number=8.0, focus_m=6.0),
                                sky_weight=0.6, gain=rng.uniform(1.35, 1.55))
    return out, None, {"blend": "time-average", "ddn_type": ddn_type, "angle_deg": params.wind_deg,
                       "params": params.__dict__, **info, "rain": a}


def _night(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> Result:
    """GTAV-NightRain-like: the photo relit as night; drops lit by the lamps' glow."""
    h, w = b.shape[:2]
    night, light, linfo = relight.relight_night(b, rng)
    params = RainParams(
        rain_rate=rng.uniform(10.0, 40.0), z_near=1.0, z_far=12.0, wind_deg=rng.uniform(-20.0, 20.0),
        jitter_deg=2.5, coverage=rng.uniform(0.15, 0.3), alpha_median=rng.uniform(0.45, 0.65),
        length_px=rng.uniform(20.0, 40.0) * _scale(h, w), n_depth=4, width_scale=1.6,
    )
    alpha, info = rain_alpha(rng, (h, w), params, _camera(h, w, f_number=2.8, focus_m=10.0))
    # A drop's radiance is the light around it: the lamp glow near lamps, the dim sky elsewhere.
    env = np.maximum(light, night)
    out = composite(night, alpha, env)
    return out, night, {"blend": "time-average", "angle_deg": params.wind_deg, "params": params.__dict__,
                        **linfo, **info, "rain": alpha}


def _snow(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> Result:
    """Snow100K-like: flakes of three broad sizes by depth, slow fall (short blur), bright radiance."""
    h, w = b.shape[:2]
    heavy = rng.uniform(0.5, 1.5)
    params = RainParams(
        rain_rate=1.0, z_near=0.3, z_far=4.0, wind_deg=rng.uniform(-30.0, 30.0), jitter_deg=8.0,
        coverage=0.05 + 0.08 * heavy, alpha_median=rng.uniform(0.6, 0.85), alpha_max=0.97,
        diameter_range_mm=(2.0, 9.0), fall_speed=1.0, depth_power=0.5, n_depth=4, n_speed=2, width_scale=2.5, min_length_px=1.0,
    )
    alpha, info = rain_alpha(rng, (h, w), params, _camera(h, w, f_number=4.0, focus_m=4.0, exposure_s=1.0 / 125.0))
    # Flakes scatter most of the light that reaches them: nearly white, tinted by the environment.
    env = environment_radiance(b, sky_weight=0.6, gain=1.0)
    flake = np.clip(0.8 + 0.25 * env, 0.0, 1.0)
    out = composite(b, alpha, flake)
    out = np.maximum(out, b)  # a flake is never darker than what it covers (O = B(1 - M) + cM, c >= B)
    return out, None, {"blend": "mask", "angle_deg": params.wind_deg, "heaviness": heavy,
                       "params": params.__dict__, **info, "mask": alpha, "rain": alpha}


def lens_drops(
    b: np.ndarray, rng: np.random.Generator, n: int, radius_px: tuple[float, float], defocus_px: float,
    view_blur_px: float,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Defocused drops on glass in front of the lens (Qian et al., CVPR 2018, look; Roser and Geiger's model).

    Each drop is a small lens: it shows a flipped (point-reflected), demagnified, blurred view of
    the background around it (``view_blur_px``), with a slightly darker rim. The glass is out of
    focus (camera focused on the scene), so each drop's mask is soft: a smoothstep over
    ``defocus_px`` pixels, exactly 0 beyond it. Pixels outside every mask are returned unchanged.
    Returns ``(image, mask, drops)``.
    """
    h, w = b.shape[:2]
    out = b.copy()
    view = blur(b, view_blur_px)
    total = np.zeros((h, w), dtype=np.float32)
    drops = []
    for _ in range(n):
        r = rng.uniform(*radius_px)
        ar = rng.uniform(1.0, 1.5)  # drops sag: elongated vertically
        ry, rx = r * ar, r
        soft = defocus_px / r
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        reach = 1.0 + soft + 0.2
        y0, y1 = int(max(cy - ry * reach - 1, 0)), int(min(cy + ry * reach + 2, h))
        x0, x1 = int(max(cx - rx * reach - 1, 0)), int(min(cx + rx * reach + 2, w))
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = (yy - cy) / ry, (xx - cx) / rx
        phi = np.arctan2(dy, dx)
        wobble = 1.0 + 0.06 * np.sin(2 * phi + rng.uniform(0, 6.3)) + 0.04 * np.sin(3 * phi + rng.uniform(0, 6.3))
        rho = np.hypot(dy, dx) / wobble
        m = streaks.smoothstep(1.0 + soft - rho, 0.0, 2.0 * soft).astype(np.float32)  # 0 for rho >= 1 + soft
        zoom = rng.uniform(1.5, 3.0)
        sy = np.clip(cy - (yy - cy) * zoom, 0, h - 1)
        sx = np.clip(cx - (xx - cx) * zoom, 0, w - 1)
        patch = np.stack(
            [ndimage.map_coordinates(view[:, :, c], [sy, sx], order=1, mode="nearest") for c in range(3)], axis=-1)
        rim = np.clip(rho, 0.0, 1.0) ** 3
        patch = patch * (1.0 - 0.3 * rim[:, :, None]) + 0.05 * (1.0 - rim[:, :, None])
        region = out[y0:y1, x0:x1]
        region[:] = region * (1.0 - m[:, :, None]) + np.clip(patch, 0, 1) * m[:, :, None]
        total[y0:y1, x0:x1] = np.maximum(total[y0:y1, x0:x1], m)
        drops.append({"cy": float(cy), "cx": float(cx), "radius": float(r), "aspect": float(ar), "zoom": float(zoom)})
    return out, total, drops


def _raindrop(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> Result:
    h, w = b.shape[:2]
    scale = max(min(h, w) / 400.0, 0.15)
    n = int(rng.integers(15, 40) * max(h * w / (400.0 * 300.0), 0.15)) + 2
    defocus = rng.uniform(2.0, 4.0) * scale
    out, mask, drops = lens_drops(b, rng, n, (6.0 * scale + 1.5, 30.0 * scale + 1.5), defocus,
                                  rng.uniform(2.0, 4.0) * scale)
    return out, None, {"blend": "lens", "defocus_px": defocus, "drops": drops, "mask": mask, "rain": mask}


def _depth_rain(
    b: np.ndarray, rng: np.random.Generator, depth: np.ndarray, specs: list[tuple[float, RainParams]],
    camera: Camera, env: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Rain volumes at given relative depths, each hidden behind nearer scene points (soft depth test)."""
    h, w = b.shape[:2]
    out = b
    total = np.zeros((h, w), dtype=np.float32)
    for d_i, params in sorted(specs, key=lambda s: -s[0]):  # far to near
        alpha, _ = rain_alpha(rng, (h, w), params, camera)
        alpha = alpha * np.clip((depth - d_i) / 0.08 + 0.5, 0.0, 1.0)
        out = composite(out, alpha, env)
        total = 1.0 - (1.0 - total) * (1.0 - alpha)
    return out, total


def _raincityscapes(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> Result:
    """RainCityscapes-like: depth from the image, streak volumes by depth, fog T = exp(-beta depth)."""
    h, w = b.shape[:2]
    depth = depth_mod.estimate_depth(b)
    beta = rng.uniform(0.6, 1.8)
    trans = np.exp(-beta * depth).astype(np.float32)
    a = rng.uniform(0.75, 0.92)
    wind = rng.uniform(-20.0, 20.0)
    s = _scale(h, w)
    specs = [
        (0.15, RainParams(rain_rate=20.0, z_near=0.8, z_far=3.0, wind_deg=wind, coverage=0.05, alpha_median=0.5,
                          length_px=45.0 * s, width_scale=2.0, n_depth=2)),
        (0.4, RainParams(rain_rate=20.0, z_near=3.0, z_far=8.0, wind_deg=wind, coverage=0.08, alpha_median=0.5,
                         length_px=28.0 * s, width_scale=1.5, n_depth=2)),
        (0.75, RainParams(rain_rate=20.0, z_near=8.0, z_far=20.0, wind_deg=wind, coverage=0.1, alpha_median=0.45,
                          length_px=15.0 * s, n_depth=2)),
    ]
    env = environment_radiance(b, sky_weight=0.6, gain=1.4)
    rained, rain = _depth_rain(b, rng, depth, specs, _camera(h, w, f_number=5.6, focus_m=10.0), env)
    out = trans[:, :, None] * rained + (1.0 - trans[:, :, None]) * a
    return np.clip(out, 0.0, 1.0), None, {
        "blend": "depth-fog", "beta": beta, "airlight": a, "angle_deg": wind, "depth": depth,
        "transmission": trans, "rain": rain,
    }


def _realproxy(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> Result:
    """Proxy for real rain, unlike every training domain in scene, weather model and camera.

    1. overcast relighting (:func:`derainlib.data.relight.relight_overcast`); 2. depth from the image;
    3. depth-layered streaks from a different distribution (heavier rain, wide aperture focused
    near, so near drops are large defocused smears; longer exposures; gusty density; radiance with
    little sky gain, so streaks are dim and can darken the grey sky); 4. veiling by depth: distant
    rain merges into a haze ``T = exp(-beta depth)`` toward the sky grey; 5. lens drops in about one
    image of three; 6. camera: exposure, Bayer sampling with Poisson-Gaussian noise, bilinear
    demosaicing, white balance, JPEG 60-90.

    The clean target is the overcast scene rendered by the same exposure and white balance (no
    rain, veil, lens drops, noise or JPEG): what the camera would record of the scene without rain.
    """
    h, w = b.shape[:2]
    sky = depth_mod.sky_mask(b)
    scene, oinfo = relight.relight_overcast(b, rng, sky)
    depth = depth_mod.estimate_depth(b, sky=sky)
    wind = rng.uniform(-30.0, 30.0)
    s = _scale(h, w)
    rate = rng.uniform(15.0, 80.0)
    gusts = 0.4 + 0.6 * smooth_field(rng, (h, w), rng.uniform(0.15, 0.4) * min(h, w))
    camera_ = _camera(h, w, f_number=rng.uniform(1.8, 2.8), focus_m=rng.uniform(2.0, 6.0))
    specs = [
        (0.1, RainParams(rain_rate=rate, z_near=0.3, z_far=1.5, wind_deg=wind, jitter_deg=5.0,
                         coverage=rng.uniform(0.03, 0.08), alpha_median=rng.uniform(0.2, 0.35),
                         length_px=rng.uniform(50.0, 110.0) * s, n_depth=2, n_speed=2)),
        (0.35, RainParams(rain_rate=rate, z_near=1.5, z_far=6.0, wind_deg=wind, jitter_deg=3.0,
                          coverage=rng.uniform(0.06, 0.15), alpha_median=rng.uniform(0.4, 0.6),
                          length_px=rng.uniform(25.0, 60.0) * s, n_depth=3, n_speed=2)),
        (0.7, RainParams(rain_rate=rate, z_near=6.0, z_far=30.0, wind_deg=wind, jitter_deg=2.0,
                         coverage=rng.uniform(0.1, 0.25), alpha_median=rng.uniform(0.2, 0.35),
                         length_px=rng.uniform(8.0, 20.0) * s, n_depth=2, n_speed=2)),
    ]
    env = environment_radiance(scene, sky_weight=0.7, gain=rng.uniform(1.15, 1.4))
    h_, w_ = h, w
    out = scene
    rain = np.zeros((h_, w_), dtype=np.float32)
    for d_i, params in sorted(specs, key=lambda t: -t[0]):
        alpha, _ = rain_alpha(rng, (h, w), params, camera_, weight=gusts)
        alpha = alpha * np.clip((depth - d_i) / 0.1 + 0.5, 0.0, 1.0)
        out = composite(out, alpha, env)
        rain = 1.0 - (1.0 - rain) * (1.0 - alpha)
    # Rain accumulation: the many unresolved far drops veil the distance (Garg and Nayar).
    beta = rng.uniform(0.2, 0.4) + 0.008 * rate
    veil_t = np.exp(-beta * depth).astype(np.float32)[:, :, None]
    airlight = float(oinfo["sky_grey"]) * np.array([0.97, 1.0, 1.03], dtype=np.float32)
    out = veil_t * out + (1.0 - veil_t) * airlight
    n_lens = int(rng.integers(1, 6)) if rng.random() < 0.35 else 0
    if n_lens:
        sc = max(s, 0.15)
        out, _, _ = lens_drops(out, rng, n_lens, (15.0 * sc, 40.0 * sc), 6.0 * sc, 6.0 * sc)
    exposure = float(rng.uniform(0.85, 1.15))
    gains = cam.white_balance_gains(rng)
    shot, read = float(rng.uniform(1e-4, 6e-4)), float(rng.uniform(1.0, 3.0) / 255.0)
    raw = np.clip(out * np.float32(exposure), 0.0, 1.0)
    out = cam.bayer_noise_demosaic(raw, rng, shot, read)
    out = np.clip(out * gains, 0.0, 1.0)
    quality = int(rng.integers(60, 91))
    out = cam.jpeg(out, quality)
    target = cam.apply_exposure_wb(scene, exposure, gains)
    return out, target, {
        "blend": "time-average+veil+camera", "angle_deg": wind, "rain_rate": rate, "veil_beta": beta,
        "lens_drops": n_lens, "exposure": exposure, "wb_gains": gains.tolist(), "noise_shot": shot,
        "noise_read": read, "jpeg_quality": quality, "depth": depth, "sky": sky, **oinfo, "rain": rain,
    }


_RENDERERS: dict[str, Callable[[np.ndarray, np.random.Generator, int | None], Result]] = {
    "rain200l": _rain200l,
    "rain200h": _rain200h,
    "rain800": _rain800,
    "ddn": _ddn,
    "night": _night,
    "snow": _snow,
    "raindrop": _raindrop,
    "realproxy": _realproxy,
    "raincityscapes": _raincityscapes,
}

DOMAIN_DESCRIPTIONS_V1: dict[str, str] = synthetic_v1.DOMAIN_DESCRIPTIONS

#: What each version-2 domain renders (the dataset it imitates and how).
DOMAIN_DESCRIPTIONS: dict[str, str] = {
    "rain200l": (
        "Rain200L-like light rain (Yang et al., CVPR 2017): one wind direction within +-20 degrees of "
        "vertical (1 degree jitter between depth groups); sparse (4-8% coverage), thin streaks of median "
        "length 14-28 px (at 400 px) whose lengths, widths and alphas vary by drop size and depth "
        "(Marshall-Palmer, terminal speed, f v T / z); bright, semi-transparent: O = B(1 - a) + a E."
    ),
    "rain200h": (
        "Rain200H-like heavy rain: dense (35-50% coverage) streaks in five depth groups that are "
        "near-parallel (4 degree jitter around a wind within +-15 degrees), longer (median 28-45 px) and "
        "wider (near drops defocused) than rain200l; semi-transparent time-averaged blend."
    ),
    "rain800": (
        "Rain800-like varied rain (Zhang et al., 2017): a heaviness per image sets coverage 4-28%, "
        "length 12-42 px and width, wind within +-25 degrees; a mild atmospheric veil T*O + (1 - T)*A, "
        "denser in heavy rain."
    ),
    "ddn": (
        "DDN-Data-like (Fu et al., CVPR 2017): 14 rain types (ddn_type 1..14, DDN_TYPE_TABLE_V2) that "
        "differ in coverage (3-38%), median length (10-55 px), width and angle (up to +-40 degrees); the "
        "seed jitters each by 10-15% and the angle by up to 4 degrees."
    ),
    "night": (
        "GTAV-NightRain-like night rain: the photo is relit as a night scene (gain 0.18-0.32, gamma "
        "1.8-2.4, cool cast, 3-8 lamps with glow) and that night scene is the clean target; drops take "
        "the light around them, so streaks are bright near lamps and faint elsewhere."
    ),
    "snow": (
        "Snow100K-like snow (Liu et al., 2018): flakes of 2-9 mm at 0.3-4 m (depth density ~ z^0.5, "
        "more near flakes than a uniform volume, as Snow100K's large-flake masks), so sizes range from "
        "specks to large defocused near flakes, falling slowly (short motion blur), nearly white; "
        "O = B(1 - M) + cM, never darker than the photo."
    ),
    "raindrop": (
        "Raindrops on glass (Qian et al., CVPR 2018): 15-40 drops (per 400x300) with soft defocused "
        "outlines (camera focused on the scene), each a lens showing a flipped, blurred view of the "
        "background; pixels outside the drops are unchanged."
    ),
    "realproxy": (
        "Stand-in for real rain, unlike every training domain: the photo relit as an overcast day "
        "(flat light, soft shadows, grey sky; this is the clean target, with the camera's exposure and "
        "white balance), three gusty depth-layered rain volumes (near: large, dim, defocused smears; "
        "far: fine streaks), a rain veil by depth, lens drops in about one image of three, then a "
        "camera: exposure, Bayer sampling with Poisson-Gaussian noise, bilinear demosaicing, white "
        "balance, JPEG 60-90."
    ),
    "raincityscapes": (
        "RainCityscapes-like rain and fog by depth (Hu et al., CVPR 2019): depth estimated from the "
        "image (sky detection, ground-plane prior, objects keep the depth of their foot; "
        "derainlib.data.depth), fog T = exp(-beta depth) so near objects stay clear; three streak "
        "volumes at increasing depth, each hidden behind nearer scene points."
    ),
}

# The modules whose source decides the bytes of each version (hashed into benchmark recipes).
_SOURCES: dict[int, tuple[Any, ...]] = {
    1: (synthetic_v1, streaks),
    2: (rp, cam, depth_mod, relight, streaks),
}


def renderer_source_sha256(version: int = DEFAULT_VERSION) -> str:
    """sha256 of the source of every module a renderer version runs (changes when its output may)."""
    import hashlib
    import sys

    _check_version(version)
    modules = _SOURCES[version] + ((sys.modules[__name__],) if version >= 2 else ())
    digest = hashlib.sha256()
    for module in modules:
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------


def _check_version(version: Any) -> None:
    if isinstance(version, (bool, np.bool_)) or not isinstance(version, (int, np.integer)) \
            or int(version) not in RENDERER_VERSIONS:
        raise ValueError(f"renderer version must be one of {RENDERER_VERSIONS}, got {version!r}")


def _rng(domain: str, seed: int, ddn_type: int | None) -> np.random.Generator:
    # Mix the domain (and type) into the seed so domains sharing a seed do not share their noise;
    # the constant 2 keeps version 2's streams apart from version 1's.
    return np.random.default_rng([int(seed), zlib.crc32(domain.encode()), int(ddn_type or 0), 2])


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def render_layers(
    clean: np.ndarray, domain: str, seed: int, *, ddn_type: int | None = None, version: int = DEFAULT_VERSION
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render ``clean`` under ``domain`` and also return what was drawn.

    Returns ``(rainy, info)``: ``rainy`` is uint8 with ``clean``'s shape; ``info`` holds the drawn
    parameters (``angle_deg`` the main streak angle from vertical, positive leaning right at the
    bottom), float maps such as ``rain`` (version 2: the alpha map or mask; version 1: the grayscale
    rain layer), ``version`` and, in version 2, ``target`` (the uint8 clean target, see
    :func:`render_pair`). See :func:`render` for the arguments.
    """
    _check_version(version)
    if int(version) == 1:
        rainy, info = synthetic_v1.render_layers(clean, domain, seed, ddn_type=ddn_type)
        return rainy, {**info, "version": 1, "target": clean.copy()}
    synthetic_v1._validate(clean, domain, seed, ddn_type)
    b = clean.astype(np.float32) / np.float32(255.0)  # a new array: ``clean`` is never touched
    out, target, info = _RENDERERS[domain](b, _rng(domain, int(seed), ddn_type), ddn_type)
    target_u8 = clean.copy() if target is None else _to_uint8(target)
    return _to_uint8(out), {"domain": domain, "seed": int(seed), "version": 2, **info, "target": target_u8}


def render_pair(
    clean: np.ndarray, domain: str, seed: int, *, ddn_type: int | None = None, version: int = DEFAULT_VERSION
) -> tuple[np.ndarray, np.ndarray]:
    """``(rainy, target)``, both uint8: the rendering and its clean target.

    The target is the photo itself except in version 2 of ``night`` (the relit night scene) and
    ``realproxy`` (the overcast scene through the camera's exposure and white balance).
    """
    rainy, info = render_layers(clean, domain, seed, ddn_type=ddn_type, version=version)
    return rainy, info["target"]


def render(
    clean: np.ndarray, domain: str, seed: int, *, ddn_type: int | None = None, version: int = DEFAULT_VERSION
) -> np.ndarray:
    """Render rain on a clean photo: a pure, deterministic function of its arguments.

    Parameters
    ----------
    clean:
        uint8 array of shape H x W x 3, H and W >= 16 (any parity, non-square allowed). Not modified.
    domain:
        one of :data:`DOMAINS`; :data:`DOMAIN_DESCRIPTIONS` says what each emulates.
    seed:
        non-negative integer; the same arguments always give the same bytes.
    ddn_type:
        1..14, required for ``domain="ddn"`` and rejected for the others.
    version:
        renderer version (:data:`RENDERER_VERSIONS`): 2, the photometric renderer (default), or 1,
        the first renderer, byte-identical to what the first results were computed on.

    Use :func:`render_pair` to also get the clean target (version 2 ``night`` and ``realproxy``
    relight the scene, so their target is not the photo).

    Raises
    ------
    DatasetError
        unknown domain (the message lists the valid ones).
    TypeError, ValueError
        wrong dtype, shape, seed, ddn_type or version.
    """
    return render_layers(clean, domain, seed, ddn_type=ddn_type, version=version)[0]

"""Seeded rain renderer: the same clean photo under nine families of synthetic and proxy-real rain.

Every domain is a pure function of ``(clean, domain, seed, ddn_type)``: the random state comes from
one :class:`numpy.random.Generator` seeded from those arguments, no global RNG is touched, and no
step uses threads or BLAS (streaks are splatted with ``np.bincount``, blurs are separable
``scipy.ndimage`` filters), so the bytes do not depend on the thread count or the machine load.

Image formation models (intensities in [0, 1], ``B`` clean, ``O`` rainy; the building blocks are in
:mod:`derainlib.data.streaks`):

* Additive streaks, Rain100/Rain200/DDN: ``O = clip(B + R)``, or the Photoshop screen blend
  ``O = 1 - (1 - B)(1 - R)``. ``R`` is sparse random impulses convolved with a line-shaped motion
  kernel with a Gaussian cross-section (the noise -> Gaussian blur -> motion blur recipe collapsed into
  one kernel, since convolution is associative).
* Depth-dependent fog and streaks (Hu et al., CVPR 2019, RainCityscapes):
  ``O = T (B + sum_i S_i) + (1 - T) A`` with ``T = exp(-beta * depth)``.
* Streak appearance (Garg and Nayar, SIGGRAPH 2006): a streak's length is the drop's speed times the
  exposure time divided by depth; its radiance is the environment seen through the drop, so a streak
  is semi-transparent, brighter than dark backgrounds but possibly darker than a bright sky.
* Raindrops on glass (Qian et al., CVPR 2018; synthetic versions after Roser and Geiger): each drop
  is a small lens showing an inverted, rescaled, blurred view of the scene.
* Snow (Snow100K, Liu et al. 2018): ``O = B (1 - M) + c M``.
* Night rain (GTAV-NightRain, Zhang et al.): low illumination, streaks visible near light sources.

The ``realproxy`` domain stands in for real rain and is deliberately built from a different model
(occluding, depth-layered streaks plus camera effects: haze, defocus, white balance, Poisson-Gaussian
noise, JPEG) so that a method tuned on the additive domains meets a domain gap.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from .errors import DatasetError
from .streaks import (
    blur,
    density_for,
    drops,
    gray,
    layout_depth,
    LUMA,
    luminance,
    screen,
    smooth_field,
    smoothstep,
    splat,
    streak_kernel,
    streak_layers,
    streak_sum,
    StreakLayer,
)

__all__ = [
    "DOMAINS",
    "DOMAIN_DESCRIPTIONS",
    "DDN_TYPES",
    "DDN_TYPE_TABLE",
    "StreakType",
    "render",
    "render_layers",
    "luminance",
]

DOMAINS: tuple[str, ...] = (
    "rain200l",
    "rain200h",
    "rain800",
    "ddn",
    "night",
    "snow",
    "raindrop",
    "realproxy",
    "raincityscapes",
)

DDN_TYPES = range(1, 15)

MIN_SIZE = 16

# ----------------------------------------------------------------------------------------------
# Domains
# ----------------------------------------------------------------------------------------------

Info = dict[str, Any]


def _rain200l(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> tuple[np.ndarray, Info]:
    h, w = b.shape[:2]
    length, width = rng.uniform(12.0, 26.0), rng.uniform(0.45, 0.7)
    layer = StreakLayer(
        density=density_for(rng.uniform(0.04, 0.08), length, width),
        length=length,
        angle_deg=rng.uniform(-20.0, 20.0),
        width=width,
        intensity=rng.uniform(0.45, 0.7),
    )
    r = streak_sum(rng, (h, w), [layer])
    out = np.clip(b + gray(r), 0.0, 1.0)
    return out, {"blend": "additive", "layers": [layer.as_dict()], "angle_deg": layer.angle_deg, "rain": r}


def _rain200h(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> tuple[np.ndarray, Info]:
    h, w = b.shape[:2]
    base = rng.uniform(-12.0, 12.0)
    # Five directions spread around a base angle, as Rain200H's five-direction streak layers.
    offsets = np.array([-28.0, -14.0, 0.0, 14.0, 28.0]) + rng.uniform(-3.0, 3.0, size=5)
    layers = []
    for off in offsets:
        length, width = rng.uniform(25.0, 50.0), rng.uniform(0.8, 1.4)
        layers.append(
            StreakLayer(
                density=density_for(rng.uniform(0.06, 0.1), length, width),
                length=length,
                angle_deg=float(base + off),
                width=width,
                intensity=rng.uniform(0.3, 0.55),
            )
        )
    r = streak_sum(rng, (h, w), layers)
    out = np.clip(b + gray(r), 0.0, 1.0)
    return out, {
        "blend": "additive",
        "layers": [l.as_dict() for l in layers],
        "angle_deg": base,
        "angles_deg": [l.angle_deg for l in layers],
        "rain": r,
    }


def _rain800(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> tuple[np.ndarray, Info]:
    h, w = b.shape[:2]
    heaviness = rng.random()  # 0 = drizzle, 1 = downpour, drawn per image as Rain800 varies
    angle = rng.uniform(-25.0, 25.0)
    n_dirs = 1 if heaviness < 0.5 else 2
    layers = []
    for i in range(n_dirs):
        length = 10.0 + 35.0 * heaviness * rng.uniform(0.7, 1.0)
        width = 0.5 + 0.9 * heaviness * rng.uniform(0.6, 1.0)
        layers.append(
            StreakLayer(
                density=density_for((0.03 + 0.22 * heaviness) / n_dirs, length, width),
                length=length,
                angle_deg=float(angle + (0.0 if i == 0 else rng.uniform(-12.0, 12.0))),
                width=width,
                intensity=rng.uniform(0.35, 0.55) + 0.15 * heaviness,
            )
        )
    r = streak_sum(rng, (h, w), layers)
    # Mild atmospheric veil O = T*O + (1 - T)*A, stronger in heavier rain.
    t = 1.0 - rng.uniform(0.03, 0.1) - 0.12 * heaviness
    a = rng.uniform(0.75, 0.95)
    out = screen(b, gray(r))
    out = t * out + (1.0 - t) * a
    return np.clip(out, 0.0, 1.0), {
        "blend": "screen",
        "heaviness": heaviness,
        "layers": [l.as_dict() for l in layers],
        "angle_deg": angle,
        "transmission": t,
        "airlight": a,
        "rain": r,
    }


@dataclass(frozen=True)
class StreakType:
    """One row of the DDN-like type table."""

    density: float
    length: float
    width: float
    angle_deg: float
    intensity: float


# Fourteen renderings that differ in density, length, width and angle, as DDN-Data's 14 rain types
# (Fu et al., CVPR 2017). Rough order: light/short -> heavy/long, angles alternating in lean.
DDN_TYPE_TABLE: dict[int, StreakType] = {
    # type: coverage, length, width, angle, intensity (density follows from coverage, length, width)
    1: StreakType(density_for(0.03, 10.0, 0.45), 10.0, 0.45, 0.0, 0.5),
    2: StreakType(density_for(0.05, 14.0, 0.5), 14.0, 0.5, -10.0, 0.5),
    3: StreakType(density_for(0.07, 18.0, 0.55), 18.0, 0.55, 12.0, 0.5),
    4: StreakType(density_for(0.08, 12.0, 0.6), 12.0, 0.6, -22.0, 0.5),
    5: StreakType(density_for(0.10, 22.0, 0.6), 22.0, 0.6, 25.0, 0.5),
    6: StreakType(density_for(0.10, 35.0, 0.7), 35.0, 0.7, -5.0, 0.5),
    7: StreakType(density_for(0.14, 16.0, 0.8), 16.0, 0.8, 8.0, 0.45),
    8: StreakType(density_for(0.16, 28.0, 0.9), 28.0, 0.9, -30.0, 0.45),
    9: StreakType(density_for(0.20, 40.0, 0.9), 40.0, 0.9, 32.0, 0.45),
    10: StreakType(density_for(0.22, 20.0, 1.0), 20.0, 1.0, -15.0, 0.45),
    11: StreakType(density_for(0.25, 45.0, 1.1), 45.0, 1.1, 15.0, 0.4),
    12: StreakType(density_for(0.30, 30.0, 1.2), 30.0, 1.2, -40.0, 0.4),
    13: StreakType(density_for(0.32, 55.0, 1.3), 55.0, 1.3, 40.0, 0.4),
    14: StreakType(density_for(0.38, 38.0, 1.5), 38.0, 1.5, 0.0, 0.4),
}


def _ddn(b: np.ndarray, rng: np.random.Generator, ddn_type: int | None) -> tuple[np.ndarray, Info]:
    assert ddn_type is not None
    h, w = b.shape[:2]
    spec = DDN_TYPE_TABLE[ddn_type]
    # The seed jitters within a type; the type still sets the character of the rain.
    layer = StreakLayer(
        density=spec.density * rng.uniform(0.85, 1.15),
        length=spec.length * rng.uniform(0.85, 1.15),
        angle_deg=spec.angle_deg + rng.uniform(-4.0, 4.0),
        width=spec.width * rng.uniform(0.9, 1.1),
        intensity=spec.intensity * rng.uniform(0.9, 1.1),
    )
    r = streak_sum(rng, (h, w), [layer])
    out = screen(b, gray(r))
    return out, {"blend": "screen", "ddn_type": ddn_type, "layers": [layer.as_dict()], "angle_deg": layer.angle_deg, "rain": r}


def _add_clipped(canvas: np.ndarray, patch: np.ndarray, cy: int, cx: int) -> None:
    """Add ``patch`` centred at (cy, cx) into ``canvas`` in place, cropping at the borders."""
    h, w = canvas.shape[:2]
    ph, pw = patch.shape[:2]
    y0, x0 = cy - ph // 2, cx - pw // 2
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + ph, h), min(x0 + pw, w)
    if yb > ya and xb > xa:
        canvas[ya:yb, xa:xb] += patch[ya - y0 : yb - y0, xa - x0 : xb - x0]


def _power(image: np.ndarray, gamma: float) -> np.ndarray:
    """``image ** gamma`` for an image on the 8-bit grid, through a 256-entry table (much cheaper)."""
    lut = (np.arange(256, dtype=np.float64) / 255.0) ** gamma
    codes = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return lut.astype(np.float32)[codes]


_LAMP_COLOURS = np.array(
    [[1.0, 0.72, 0.38], [1.0, 0.95, 0.88], [0.85, 0.92, 1.0]], dtype=np.float32
)  # sodium, warm-white LED, cool-white LED


def _night(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> tuple[np.ndarray, Info]:
    """Night rain after GTAV-NightRain: dark scene, lamps, streaks lit only near the lamps."""
    h, w = b.shape[:2]
    lum = luminance(b)
    # Night exposure: low gain, gamma > 1 crushes the midtones, cool (blue) white balance.
    gamma = rng.uniform(1.8, 2.5)
    gain = rng.uniform(0.3, 0.5)
    cast = (np.array([0.85, 0.92, 1.08]) * rng.uniform(0.95, 1.05, size=3)).astype(np.float32)
    dark = gain * _power(b, gamma) * cast
    # Light sources 1: small, local highlights of the photo (windows, reflections) stay lit. The
    # white top-hat keeps only bright structures smaller than ~3% of the frame, so a daytime sky
    # does not stay bright.
    size = max(int(0.03 * min(h, w)) | 1, 3)
    tophat = lum - ndimage.grey_opening(lum, size=(size, size))
    highlights = smoothstep(lum, 0.6, 0.9) * smoothstep(tophat, 0.08, 0.25)
    # Light sources 2: a few lamps placed in the bright regions of the original (where a lit scene
    # would have its sources), each a small Gaussian core in a lamp colour.
    q80 = float(np.quantile(lum[::2, ::2], 0.8))  # a subsample is plenty for a percentile
    bright = smoothstep(lum, q80, float(lum.max()) + 1e-3) + 1e-4
    n_lamps = int(rng.integers(3, 9))
    prob = bright.astype(np.float64).ravel()
    where = rng.choice(h * w, size=n_lamps, p=prob / prob.sum())
    scale = min(h, w) / 400.0
    lamps = np.zeros((h, w, 3), dtype=np.float32)
    for idx in where:
        core = streak_kernel(0.0, 0.0, float(rng.uniform(2.0, 4.5) * max(scale, 0.4)))
        core = (core * core.T).astype(np.float32)  # round core: a zero-length line times its transpose
        colour = _LAMP_COLOURS[int(rng.integers(0, len(_LAMP_COLOURS)))]
        _add_clipped(lamps, core[:, :, None] * colour, int(idx // w), int(idx % w))
    emit = np.clip(lamps + highlights[:, :, None] * b, 0.0, 1.0)
    dark = dark * (1.0 - emit) + emit  # emitters are bright regardless of exposure
    # Glow map: where lamp light spills into the rain, so streaks there are lit and visible.
    glow_all = blur(np.concatenate([luminance(emit)[:, :, None], emit], axis=2), 0.05 * min(h, w) + 2.0)
    glow = glow_all[:, :, 0] / (glow_all[:, :, 0].max() + 1e-6)
    glow_rgb = glow_all[:, :, 1:] / (glow_all[:, :, 1:].max() + 1e-6)
    length, width = rng.uniform(15.0, 40.0), rng.uniform(0.6, 1.2)
    layer = StreakLayer(
        density=density_for(rng.uniform(0.12, 0.3), length, width),
        length=length,
        angle_deg=rng.uniform(-20.0, 20.0),
        width=width,
        intensity=rng.uniform(0.7, 1.0),
    )
    r = streak_sum(rng, (h, w), [layer])
    visibility = 0.1 + 0.9 * np.sqrt(glow)  # dim ambient rain everywhere, bright near lamps
    # Streaks take the colour of the lamp that lights them, plus a little cool sky light.
    streak_colour = 0.25 * np.array([0.75, 0.8, 1.0], dtype=np.float32) + glow_rgb
    rain_rgb = (r * visibility)[:, :, None] * streak_colour
    bloom = blur(emit, 0.015 * min(h, w) + 1.5) * rng.uniform(0.6, 1.0)
    out = screen(screen(dark, bloom), rain_rgb)
    return np.clip(out, 0.0, 1.0), {
        "blend": "screen",
        "gamma": gamma,
        "gain": gain,
        "layers": [layer.as_dict()],
        "angle_deg": layer.angle_deg,
        "lamps_yx": [(int(i // w), int(i % w)) for i in where],
        "light_map": luminance(emit),
        "rain": luminance(rain_rgb),
    }


def _disc_kernel(radius: float, softness: float = 0.7) -> np.ndarray:
    r = int(np.ceil(radius + 2 * softness + 1))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    d = np.hypot(x, y)
    return np.clip((radius - d) / softness + 0.5, 0.0, 1.0)


def _snow(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> tuple[np.ndarray, Info]:
    h, w = b.shape[:2]
    angle = rng.uniform(-30.0, 30.0)
    heaviness = rng.uniform(0.5, 1.5)
    # Three particle sizes (Snow100K's small/medium/large); the near (large) flakes are defocused,
    # and part of every size is motion-blurred by the fall during the exposure.
    sizes = [
        # (density, radius, defocus sigma, opacity)
        (0.008 * heaviness, 0.7, 0.3, rng.uniform(0.6, 0.9)),
        (0.0015 * heaviness, 1.6, 0.6, rng.uniform(0.7, 0.95)),
        (0.0002 * heaviness, 3.5, 1.5, rng.uniform(0.6, 0.85)),
    ]
    mask = np.zeros((h, w), dtype=np.float32)
    for density, radius, sig, opacity in sizes:
        disc = ndimage.gaussian_filter(_disc_kernel(radius), sig)
        disc /= disc.max()
        motion_len = rng.uniform(2.0, 6.0) * radius + 2.0
        motion = streak_kernel(motion_len, angle, 0.4)
        motion /= motion.sum()
        blurred = ndimage.convolve(np.pad(disc, motion.shape[0]), motion)
        blurred = blurred / blurred.max()
        moving = rng.uniform(0.2, 0.5)  # share of flakes that are motion-blurred
        for kern, share in ((disc, 1.0 - moving), (blurred, moving)):
            ys, xs, amp = drops(rng, (h, w), density * share, (0.6, 1.0))
            mask += splat((h, w), ys, xs, amp * opacity, kern)
    mask = np.clip(mask, 0.0, 1.0)
    colour = 1.0  # white flakes: O >= B everywhere
    out = b * (1.0 - mask[:, :, None]) + colour * mask[:, :, None]
    return out, {"blend": "mask", "angle_deg": angle, "heaviness": heaviness, "mask": mask, "rain": mask}


def _raindrop(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> tuple[np.ndarray, Info]:
    h, w = b.shape[:2]
    scale = min(h, w) / 400.0
    # The camera focuses on the scene; the glass is out of focus and the scene slightly soft.
    defocus = rng.uniform(0.6, 1.3)
    out = blur(b, defocus)
    lens_src = blur(b, rng.uniform(1.5, 3.0) * max(scale, 0.3))
    n = int(rng.integers(8, 25) * max(h * w / (400.0 * 300.0), 0.15)) + 2
    total = np.zeros((h, w), dtype=np.float32)
    drops = []
    for _ in range(n):
        r = rng.uniform(6.0, 22.0) * max(scale, 0.15) + 1.5
        ar = rng.uniform(1.0, 1.6)  # elongated vertically: drops sag and run down glass
        ry, rx = r * ar, r
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        y0, y1 = int(max(cy - ry - 2, 0)), int(min(cy + ry + 3, h))
        x0, x1 = int(max(cx - rx - 2, 0)), int(min(cx + rx + 3, w))
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        dy, dx = (yy - cy) / ry, (xx - cx) / rx
        phi = np.arctan2(dy, dx)
        # Irregular outline: a few angular harmonics on the radius.
        wobble = 1.0 + 0.08 * np.sin(2 * phi + rng.uniform(0, 6.3)) + 0.05 * np.sin(3 * phi + rng.uniform(0, 6.3))
        rho = np.hypot(dy, dx) / wobble
        edge = 1.5 / r  # about 1.5 px of soft edge
        m = np.clip((1.0 - rho) / edge, 0.0, 1.0)
        m = m * m * (3 - 2 * m)  # smoothstep
        # Lens: an inverted view of a region `zoom` times the drop's size around it.
        zoom = rng.uniform(1.5, 3.0)
        sy = np.clip(cy - (yy - cy) * zoom, 0, h - 1)
        sx = np.clip(cx - (xx - cx) * zoom, 0, w - 1)
        patch = np.stack(
            [ndimage.map_coordinates(lens_src[:, :, c], [sy, sx], order=1, mode="nearest") for c in range(3)],
            axis=-1,
        )
        # Fresnel darkening at the rim and a small specular highlight near the top.
        rim = np.clip(rho, 0.0, 1.0) ** 4
        patch = patch * (1.0 - 0.45 * rim[:, :, None]) + 0.04
        hl = np.exp(-(((dy + 0.45) ** 2) + (dx + 0.25) ** 2) / 0.02) * rng.uniform(0.2, 0.5)
        patch = patch + hl[:, :, None]
        region = out[y0:y1, x0:x1]
        region[:] = region * (1.0 - m[:, :, None]) + np.clip(patch, 0, 1) * m[:, :, None]
        total[y0:y1, x0:x1] = np.maximum(total[y0:y1, x0:x1], m)
        drops.append({"cy": float(cy), "cx": float(cx), "radius": float(r), "aspect": float(ar), "zoom": float(zoom)})
    return np.clip(out, 0.0, 1.0), {"blend": "lens", "defocus_sigma": defocus, "drops": drops, "mask": total, "rain": total}


def _raincityscapes(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> tuple[np.ndarray, Info]:
    h, w = b.shape[:2]
    depth = layout_depth((h, w), rng)
    beta = rng.uniform(0.5, 2.0)  # fog density; depth is normalised so T(far) = exp(-beta)
    trans = np.exp(-beta * depth).astype(np.float32)
    a = rng.uniform(0.75, 0.95)
    angle = rng.uniform(-20.0, 20.0)
    # Three streak layers at depths 0.15, 0.4, 0.75: far ones are thinner, shorter and dimmer.
    layer_depths = [0.15, 0.4, 0.75]
    specs = [
        StreakLayer(density=density_for(0.06, 45.0, 1.3), length=45.0, angle_deg=angle + rng.uniform(-3, 3), width=1.3, intensity=0.55),
        StreakLayer(density=density_for(0.08, 28.0, 0.8), length=28.0, angle_deg=angle + rng.uniform(-3, 3), width=0.8, intensity=0.45),
        StreakLayer(density=density_for(0.1, 15.0, 0.5), length=15.0, angle_deg=angle + rng.uniform(-3, 3), width=0.5, intensity=0.3),
    ]
    layers = streak_layers(rng, (h, w), specs)
    s = np.zeros((h, w), dtype=np.float32)
    for d_i, layer in zip(layer_depths, layers):
        # A streak layer is hidden behind scene points nearer than it (soft depth test).
        visible = np.clip((depth - d_i) / 0.08 + 0.5, 0.0, 1.0)
        s += layer * visible
    out = trans[:, :, None] * (b + gray(s)) + (1.0 - trans[:, :, None]) * a
    return np.clip(out, 0.0, 1.0), {
        "blend": "depth-fog",
        "beta": beta,
        "airlight": a,
        "angle_deg": angle,
        "depth": depth,
        "transmission": trans,
        "layers": [l.as_dict() for l in specs],
        "rain": s,
    }


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip through PIL in memory (4:2:0 chroma subsampling, PIL's default)."""
    u8 = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255.0)


def _realproxy(b: np.ndarray, rng: np.random.Generator, _t: int | None) -> tuple[np.ndarray, Info]:
    """Proxy for real rain: occluding depth-layered streaks plus camera effects.

    Differences from the synthetic domains, on purpose:
    streaks are alpha-composited toward an environment colour (Garg and Nayar) instead of added, so
    they can darken a bright sky; streak size, blur and opacity follow depth over several layers; the
    density is uneven (gusts); a veiling haze, lens defocus, a white-balance cast, signal-dependent
    Poisson-Gaussian noise and JPEG compression follow, in the order a camera applies them.
    """
    h, w = b.shape[:2]
    lum = luminance(b)
    depth = layout_depth((h, w), rng)
    # 1. Veiling haze of the scene behind the rain (may be almost nothing).
    beta = rng.uniform(0.0, 0.9)
    a_light = float(np.clip(np.quantile(lum, 0.9) * rng.uniform(0.85, 1.05), 0.5, 1.0))
    trans = np.exp(-beta * depth).astype(np.float32)[:, :, None]
    scene = trans * b + (1.0 - trans) * a_light
    # 2. Streak colour: a drop refracts a wide field of view, so it shows the average environment,
    #    weighted toward the sky above, not the pixel behind it.
    sky = float(luminance(b[: max(h // 5, 1)].reshape(-1, 3).mean(axis=0)))
    env = blur(scene, 0.08 * min(h, w) + 3.0)
    brightness = rng.uniform(1.0, 1.4)  # a drop gathers light from a wide cone, as a lens
    colour = np.clip((0.4 * env + 0.6 * sky) * brightness, 0.0, 1.0)
    colour = 0.6 * colour + 0.4 * luminance(colour)[:, :, None]  # drops desaturate
    # 3. Several depth layers of streaks: near = wide, long, defocused and faint per pixel;
    #    far = thin, short and dim. Length ~ speed * exposure / depth.
    n_layers = int(rng.integers(3, 6))
    z = np.sort(rng.uniform(0.0, 1.0, size=n_layers))  # 0 = near the lens, 1 = far
    wind = rng.uniform(-25.0, 25.0)
    exposure = rng.uniform(0.5, 1.4)  # longer exposure -> longer streaks
    rain_rate = rng.uniform(0.4, 1.0)
    gusts = 0.35 + 0.65 * smooth_field(rng, (h, w), rng.uniform(0.15, 0.4) * min(h, w))
    specs = []
    for zi in z:
        near = 1.0 - zi
        length = exposure * (12.0 + 70.0 * near**1.5)
        width = 0.4 + 2.6 * near**2  # defocus grows fast near the lens
        specs.append(
            StreakLayer(
                density=density_for(rain_rate * (0.06 + 0.14 * zi), length, width),  # far: many small
                length=length,
                angle_deg=wind + rng.uniform(-6.0, 6.0),
                width=width,
                intensity=rng.uniform(0.6, 1.0) * (0.5 + 0.5 * near) / (1.0 + near**2),
            )
        )
    layers = streak_layers(rng, (h, w), specs, weight=gusts)
    out = scene.copy()
    # Composite far to near (painter's order): out <- (1 - alpha) out + alpha colour, the
    # over-operator, so streaks replace part of the background rather than add light to it.
    # Far layers are themselves behind some haze.
    for zi, alpha in sorted(zip(z, layers), key=lambda t: -t[0]):
        t_i = float(np.exp(-beta * zi * 0.7))
        alpha = np.clip(alpha * t_i, 0.0, 0.85)[:, :, None]
        out += alpha * (colour - out)
    rain_alpha = luminance(np.abs(out - scene))
    # 4. Lens defocus (camera focused elsewhere, or a wet lens).
    defocus = rng.uniform(0.0, 1.0)
    if defocus > 0.3:
        out = blur(out, defocus)
    # 5. White-balance cast: per-channel gains, normalised to keep mean brightness.
    temp = rng.uniform(-1.0, 1.0)
    gains = np.array([1.0 + 0.08 * temp, 1.0, 1.0 - 0.1 * temp]) * rng.uniform(0.96, 1.04, size=3)
    gains = (gains / float(gains @ LUMA)).astype(np.float32)
    out = np.clip(out * gains, 0.0, 1.0)
    # 6. Sensor noise, Poisson-Gaussian: var = a * x + b^2 (shot noise grows with signal).
    shot = rng.uniform(1e-4, 8e-4)
    read = rng.uniform(2.0, 5.0) / 255.0
    sigma_map = np.sqrt(shot * out + read**2)
    noise = rng.standard_normal((h, w, 3), dtype=np.float32)
    noise += rng.standard_normal((h, w, 1), dtype=np.float32)  # luminance-correlated part
    out = out + sigma_map * (noise * np.float32(np.sqrt(0.5)))
    # 7. JPEG, the last step of a phone pipeline.
    quality = int(rng.integers(60, 86))
    out = _jpeg(out, quality)
    return out, {
        "blend": "occlusion",
        "haze_beta": beta,
        "airlight": a_light,
        "layer_depths": [float(v) for v in z],
        "layers": [l.as_dict() for l in specs],
        "angle_deg": wind,
        "defocus_sigma": defocus if defocus > 0.3 else 0.0,
        "wb_gains": gains.tolist(),
        "noise_shot": shot,
        "noise_read": read,
        "jpeg_quality": quality,
        "depth": depth,
        "rain": rain_alpha,
    }


_RENDERERS: dict[str, Callable[[np.ndarray, np.random.Generator, int | None], tuple[np.ndarray, Info]]] = {
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

DOMAIN_DESCRIPTIONS: dict[str, str] = {
    "rain200l": (
        "Rain200L-like light rain (Yang et al., CVPR 2017): one streak direction per image, drawn within "
        "+-20 degrees of vertical; sparse (4-8% coverage), thin (sigma 0.45-0.7 px), short (12-26 px) streaks from "
        "sparse impulses convolved with a line kernel with a Gaussian cross-section, added: O = clip(B + R)."
    ),
    "rain200h": (
        "Rain200H-like heavy rain: the sum of five streak layers whose directions fan out over about "
        "+-28 degrees around a base angle (within +-12 of vertical); each layer covers 6-10% of the "
        "frame with longer (25-50 px) and wider (sigma 0.8-1.4 px) streaks than rain200l, so the total "
        "is much denser; additive blend O = clip(B + R)."
    ),
    "rain800": (
        "Rain800-like varied rain (Zhang et al., 2017, Photoshop-made): a heaviness drawn per image sets "
        "density, length and width from drizzle to downpour (one or two directions); screen blend "
        "1 - (1 - B)(1 - R), then a mild atmospheric veil T*O + (1 - T)*A, denser in heavy rain."
    ),
    "ddn": (
        "DDN-Data-like (Fu et al., CVPR 2017): 14 fixed streak types (ddn_type 1..14, DDN_TYPE_TABLE) "
        "that differ in density, length, width and angle, screen-blended; the seed jitters density, "
        "length, width and intensity by about 10-15% and the angle by up to 4 degrees within a type."
    ),
    "night": (
        "GTAV-NightRain-like night rain: the scene is darkened (gain 0.3-0.5, gamma 1.8-2.5, blue "
        "cast), the brightest regions of the photo act as lamps that stay lit and bloom; streaks are "
        "visible mainly near the lamps, where a blurred light map lights them in the lamp's colour."
    ),
    "snow": (
        "Snow100K-like snow (Liu et al., 2018): O = B(1 - M) + M with white flakes in three sizes "
        "(small sharp, medium, large defocused), a share of each motion-blurred along a common fall "
        "direction; never darkens a pixel."
    ),
    "raindrop": (
        "Raindrop-on-glass (after Qian et al., CVPR 2018): 10-25 drops (per 400x300) with soft, "
        "slightly irregular round or vertically elongated outlines; each drop is a lens showing an "
        "inverted, rescaled (1.5-3x field), blurred view of the scene around it, with a darker rim and "
        "a small highlight; the rest of the image is slightly defocused."
    ),
    "realproxy": (
        "Stand-in for real-world rain, deliberately unlike the other domains: 3-5 depth layers of "
        "streaks (near = wide, long, defocused, faint; far = thin, short, dim) that occlude the scene by "
        "alpha compositing toward an environment colour (Garg and Nayar 2006), so they can darken a "
        "bright sky; uneven (gusty) density; veiling haze from a layout depth prior; defocus; a "
        "white-balance cast; Poisson-Gaussian sensor noise; JPEG at quality 60-85. All drawn per seed."
    ),
    "raincityscapes": (
        "RainCityscapes-like rain and fog by depth (Hu et al., CVPR 2019): O = T(B + S) + (1 - T)A with "
        "T = exp(-beta * depth), depth from a ground-plane layout prior growing toward the top; three "
        "streak layers at increasing depth, far ones thinner, shorter and dimmer, each hidden behind "
        "scene points nearer than it."
    ),
}


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------


def _validate(clean: Any, domain: Any, seed: Any, ddn_type: Any) -> None:
    if not isinstance(clean, np.ndarray):
        raise TypeError(f"clean must be a numpy array, got {type(clean).__name__}")
    if clean.dtype != np.uint8:
        raise TypeError(f"clean must be uint8 (values 0..255), got dtype {clean.dtype}")
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"clean must have shape H x W x 3, got {clean.shape}")
    if clean.shape[0] < MIN_SIZE or clean.shape[1] < MIN_SIZE:
        raise ValueError(f"clean must be at least {MIN_SIZE}x{MIN_SIZE}, got {clean.shape[0]}x{clean.shape[1]}")
    if not isinstance(domain, str) or domain not in _RENDERERS:
        raise DatasetError(f"unknown rain domain {domain!r}; valid domains: {', '.join(DOMAINS)}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if domain == "ddn":
        if ddn_type is None:
            raise ValueError("domain 'ddn' needs ddn_type, an integer in 1..14")
        if isinstance(ddn_type, (bool, np.bool_)) or not isinstance(ddn_type, (int, np.integer)):
            raise TypeError(f"ddn_type must be an integer in 1..14, got {ddn_type!r}")
        if ddn_type not in DDN_TYPES:
            raise ValueError(f"ddn_type must be in 1..14, got {ddn_type}")
    elif ddn_type is not None:
        raise ValueError(f"ddn_type is only meaningful for domain 'ddn', not {domain!r}")


def _rng(domain: str, seed: int, ddn_type: int | None) -> np.random.Generator:
    # Mix the domain (and type) into the seed so domains sharing a seed do not share their noise.
    return np.random.default_rng([int(seed), zlib.crc32(domain.encode()), int(ddn_type or 0)])


def render_layers(
    clean: np.ndarray, domain: str, seed: int, *, ddn_type: int | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render ``clean`` under ``domain`` and also return what was drawn.

    Returns ``(rainy, info)``: ``rainy`` is uint8 with ``clean``'s shape; ``info`` holds the drawn
    parameters (e.g. ``angle_deg`` the main streak angle from vertical, positive leaning right at the
    bottom; ``layers`` streak parameters) and float maps such as ``rain`` (the grayscale rain layer or
    mask before blending). See :func:`render` for the arguments.
    """
    _validate(clean, domain, seed, ddn_type)
    # float32 halves the cost of every pass over the image; 8-bit output needs no more precision.
    b = clean.astype(np.float32) / np.float32(255.0)  # a new array: ``clean`` is never touched
    out, info = _RENDERERS[domain](b, _rng(domain, int(seed), ddn_type), ddn_type)
    rainy = np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
    info = {"domain": domain, "seed": int(seed), **info}
    return rainy, info


def render(clean: np.ndarray, domain: str, seed: int, *, ddn_type: int | None = None) -> np.ndarray:
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

    Raises
    ------
    DatasetError
        unknown domain (the message lists the valid ones).
    TypeError, ValueError
        wrong dtype, shape, seed or ddn_type.
    """
    return render_layers(clean, domain, seed, ddn_type=ddn_type)[0]

"""Relighting a daytime photo as another scene (renderer v2): night with lamps, and overcast.

Both return the relit clean image, which is the clean *target* of the domain: a derainer is asked
to remove the rain from the night (or overcast) scene, not to turn night into day.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .streaks import blur, luminance, smoothstep, streak_kernel

__all__ = ["LAMP_COLOURS", "relight_night", "relight_overcast", "power_lut"]

LAMP_COLOURS = np.array(
    [[1.0, 0.72, 0.38], [1.0, 0.95, 0.88], [0.85, 0.92, 1.0]], dtype=np.float32
)  # sodium, warm-white LED, cool-white LED


def power_lut(image: np.ndarray, gamma: float) -> np.ndarray:
    """``image ** gamma`` through a 256-entry table (the image is on the 8-bit grid; much cheaper)."""
    lut = ((np.arange(256, dtype=np.float64) / 255.0) ** gamma).astype(np.float32)
    return lut[np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)]


def _add_clipped(canvas: np.ndarray, patch: np.ndarray, cy: int, cx: int) -> None:
    h, w = canvas.shape[:2]
    ph, pw = patch.shape[:2]
    y0, x0 = cy - ph // 2, cx - pw // 2
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + ph, h), min(x0 + pw, w)
    if yb > ya and xb > xa:
        canvas[ya:yb, xa:xb] += patch[ya - y0 : yb - y0, xa - x0 : xb - x0]


def relight_night(b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """Relight a daytime photo as night: global darkening, a few lamps, their glow (GTAV-NightRain look).

    The scene is darkened (gain 0.18-0.32, gamma 1.8-2.4 to crush the midtones, a cool cast), small
    bright structures of the photo stay lit (windows, reflections), and 3-8 lamps are placed in the
    photo's brightest regions, each a small Gaussian core with a wide glow (light scattered by the
    wet air) that also lights the scene around it. Returns ``(night, light, info)``: the relit image
    (the clean target), the H x W x 3 light map that lights the rain (lamp glow plus a dim ambient
    sky), and the drawn parameters.
    """
    h, w = b.shape[:2]
    lum = luminance(b)
    gamma = rng.uniform(1.8, 2.4)
    gain = rng.uniform(0.18, 0.32)
    cast = (np.array([0.8, 0.9, 1.1]) * rng.uniform(0.95, 1.05, size=3)).astype(np.float32)
    dark = gain * power_lut(b, gamma) * cast
    size = max(int(0.03 * min(h, w)) | 1, 3)
    tophat = lum - ndimage.grey_opening(lum, size=(size, size))
    highlights = smoothstep(lum, 0.6, 0.9) * smoothstep(tophat, 0.08, 0.25)
    q80 = float(np.quantile(lum[::2, ::2], 0.8))
    bright = smoothstep(lum, q80, float(lum.max()) + 1e-3) + 1e-4
    n_lamps = int(rng.integers(3, 9))
    prob = bright.astype(np.float64).ravel()
    where = rng.choice(h * w, size=n_lamps, p=prob / prob.sum())
    scale = min(h, w) / 400.0
    lamps = np.zeros((h, w, 3), dtype=np.float32)
    for idx in where:
        core = streak_kernel(0.0, 0.0, float(rng.uniform(2.0, 4.5) * max(scale, 0.4)))
        core = (core * core.T).astype(np.float32)
        colour = LAMP_COLOURS[int(rng.integers(0, len(LAMP_COLOURS)))]
        _add_clipped(lamps, core[:, :, None] * colour, int(idx // w), int(idx % w))
    emit = np.clip(lamps + highlights[:, :, None] * b * 0.8, 0.0, 1.0)
    # Glow: light scattered around each source; it lights the nearby scene and the rain.
    glow = blur(emit, 0.06 * min(h, w) + 2.0)
    glow = glow / (float(glow.max()) + 1e-6)
    halo = blur(emit, 0.015 * min(h, w) + 1.5) * rng.uniform(0.5, 0.9)
    lit = dark + b * glow * rng.uniform(0.25, 0.45)  # the lamps light the surfaces near them
    night = 1.0 - (1.0 - lit * (1.0 - emit) - emit) * (1.0 - np.clip(halo, 0, 1))  # screen the halo
    night = np.clip(night, 0.0, 1.0).astype(np.float32)
    ambient = np.float32(rng.uniform(0.03, 0.07)) * np.array([0.75, 0.85, 1.0], dtype=np.float32)
    light = np.clip(ambient + 1.6 * glow, 0.0, 1.0).astype(np.float32)
    info = {"gamma": gamma, "gain": gain, "lamps_yx": [(int(i // w), int(i % w)) for i in where],
            "light_map": luminance(light)}
    return night, light, info


def relight_overcast(
    b: np.ndarray, rng: np.random.Generator, sky: np.ndarray | None = None
) -> tuple[np.ndarray, dict]:
    """Relight a (possibly sunny) photo as an overcast day: lower contrast, soft shadows, grey sky.

    Overcast light is diffuse: the large-scale shading (sun vs shadow) flattens while the texture
    stays. The image is split into a large-scale luminance base (a wide blur) and the detail ratio;
    the base is compressed toward its mean (``base' = m + k (base - m)``, k 0.35-0.6) and lifted in
    the shadows, the detail is kept at 70-90 %, colours are desaturated by 15-35 %, and the sky
    (``sky`` mask, H x W bool), when it is a daylight sky (mean luminance above 0.35), is replaced by
    a bright grey with a gentle vertical gradient.
    Returns ``(overcast, info)``.
    """
    h, w = b.shape[:2]
    lum = luminance(b).astype(np.float32)
    base = blur(lum, 0.04 * min(h, w) + 2.0)
    detail = (lum + 0.02) / (base + 0.02)
    m = float(base.mean())
    k = rng.uniform(0.35, 0.6)
    base2 = m + k * (base - m)
    base2 = base2 + 0.12 * (1.0 - smoothstep(base2, 0.0, 0.4))  # soften (lift) deep shadows
    keep = rng.uniform(0.7, 0.9)
    lum2 = np.clip(base2 * (1.0 + keep * (detail - 1.0)), 0.0, 1.0)
    ratio = (lum2 + 1e-3) / (lum + 1e-3)
    out = b * ratio[:, :, None]
    desat = rng.uniform(0.15, 0.35)
    out = (1.0 - desat) * out + desat * luminance(out)[:, :, None]
    grey = float(rng.uniform(0.72, 0.88))
    # A dark (dusk, night) sky is left as it is: replacing it by daylight grey would look pasted.
    if sky is not None and sky.any() and float(luminance(b)[sky].mean()) > 0.35:
        ramp = grey * (0.92 + 0.08 * (np.arange(h, dtype=np.float32) / h))[:, None, None]
        tint = np.array([0.98, 1.0, 1.03], dtype=np.float32)
        soft = blur(ndimage.binary_dilation(sky, iterations=2).astype(np.float32), 1.5)[:, :, None]
        out = out * (1.0 - soft) + ramp * tint * soft
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return out, {"contrast_k": k, "detail_keep": keep, "desaturation": desat, "sky_grey": grey}

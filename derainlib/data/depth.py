"""A plausible depth map estimated from a single photo, for fog and depth-layered rain (renderer v2).

No depth sensor or learned model is available, so the estimate combines three cues, all cheap:

1. **Sky** (:func:`sky_mask`): bright, smooth pixels in regions connected to the top border are sky,
   at infinite depth.
2. **Ground-plane prior**: below a horizon (the median lowest sky row, or 5 % of the height when
   there is little sky: a camera looking down at a near scene) a ground plane seen from a camera at height ``h_c`` has depth
   ``~ h_c / (y - y_horizon)``, so depth falls toward the bottom of the frame.
3. **Objects stand on the ground** (edge-stopped upward propagation): scanning rows from the bottom,
   a pixel takes the depth of the pixel below it (a vertical surface: a wall, a tree, a car has the
   depth of its foot) unless a strong horizontal edge separates them, where the depth resets to the
   prior; a small per-row drift lets a tall surface recede slowly. Near objects therefore keep a
   near depth up their whole height instead of following the horizontal bands of the prior.

The result is normalised to [0, 1] (1 = far, sky) and lightly smoothed. It is a heuristic stand-in
for the depth that RainCityscapes (Hu et al., CVPR 2019) takes from Cityscapes' stereo disparity,
good enough that fog ``T = exp(-beta depth)`` veils the far scene more than near objects.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .streaks import luminance

__all__ = ["sky_mask", "estimate_depth"]


def sky_mask(image: np.ndarray) -> np.ndarray:
    """Boolean H x W sky mask: smooth pixels, bright or blue, in regions connected to the top border."""
    lum = luminance(image)
    smooth = ndimage.gaussian_filter(lum, 1.5, mode="nearest")
    grad = np.hypot(ndimage.sobel(smooth, axis=0, mode="nearest"), ndimage.sobel(smooth, axis=1, mode="nearest"))
    grad = ndimage.uniform_filter(grad, 5, mode="nearest")  # texture, not single edges
    blue = (image[..., 2] > image[..., 0] + 0.05) & (image[..., 2] >= image[..., 1]) & (lum > 0.15)
    bright = lum >= 0.6
    cand = (bright | blue) & (grad < 0.06)
    # Morphology on an edge-padded mask: zero padding would erode the sky along the frame border.
    cand = ndimage.binary_opening(np.pad(cand, 3, mode="edge"), iterations=1)[3:-3, 3:-3]
    labels, n = ndimage.label(cand)
    if n == 0:
        return np.zeros(lum.shape, dtype=bool)
    top_labels = np.unique(labels[0][labels[0] > 0])
    mask = np.isin(labels, top_labels)
    closed = ndimage.binary_closing(np.pad(mask, 3, mode="edge"), iterations=2)[3:-3, 3:-3]
    return ndimage.binary_fill_holes(closed)


def estimate_depth(
    image: np.ndarray, *, camera_height: float = 0.12, drift: float | None = None, sky: np.ndarray | None = None
) -> np.ndarray:
    """Relative depth in [0, 1] (1 = far) of an H x W x 3 float image in [0, 1], from the three cues above.

    ``sky`` is :func:`sky_mask` of the image when the caller already has it.
    """
    h, w = image.shape[:2]
    sky = sky_mask(image) if sky is None else sky
    rows = np.arange(h, dtype=np.float64)
    # Horizon per column: just below the lowest sky pixel; a smoothed median keeps it plausible.
    has_sky = sky.any(axis=0)
    lowest = np.where(has_sky, h - 1 - np.argmax(sky[::-1], axis=0), -1).astype(np.float64)
    if has_sky.mean() > 0.2:
        horizon = float(np.median(lowest[has_sky])) / h
        horizon = min(max(horizon, 0.15), 0.7)
    else:  # no sky: the camera looks down at a near scene, the horizon is at (or above) the top
        horizon = 0.05
    y_rel = rows / h - horizon
    prior = np.where(y_rel > 0, camera_height / np.maximum(y_rel + camera_height, 1e-6), 1.0)  # 1 at the horizon
    prior = np.broadcast_to(prior[:, None], (h, w))
    lum = ndimage.gaussian_filter(luminance(image).astype(np.float64), 1.0, mode="nearest")
    # Horizontal edges (a change along y) separate an object from what lies below or behind it.
    edge = np.abs(np.diff(lum, axis=0, append=lum[-1:]))
    thr = max(float(np.quantile(edge, 0.9)), 0.04)
    stop = edge > thr
    drift = 1.5 / h if drift is None else drift
    depth = np.empty((h, w), dtype=np.float64)
    depth[h - 1] = prior[h - 1]
    for y in range(h - 2, -1, -1):
        up = np.minimum(prior[y], depth[y + 1] + drift)
        depth[y] = np.where(stop[y], prior[y], up)
    depth = np.where(sky, 1.0, depth)
    depth = ndimage.gaussian_filter(depth, max(1.0, 0.01 * min(h, w)), mode="nearest")
    depth = np.where(sky, 1.0, depth)
    return np.clip(depth, 0.0, 1.0).astype(np.float32)

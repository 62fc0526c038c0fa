"""Tests for derainlib.analysis.rain_statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from derainlib.analysis.rain_statistics import (
    domain_statistics_table,
    estimate_noise_sigma,
    jpeg_blockiness,
    rain_layer_statistics,
    structure_tensor_orientation,
)
from derainlib.data.streaks import streak_kernel


def _lines(angle_deg: float, size: int = 128) -> np.ndarray:
    """Parallel lines at ``angle_deg`` from vertical (positive: bottom leans right)."""
    y, x = np.mgrid[0:size, 0:size].astype(float)
    t = np.deg2rad(angle_deg)
    across = x * np.cos(t) - y * np.sin(t)
    return (np.cos(2 * np.pi * across / 9.0) > 0.8).astype(float)


@pytest.mark.parametrize("angle", [0.0, 15.0, -30.0, 45.0, 70.0, 90.0])
def test_orientation_of_parallel_lines(angle):
    got, coherence = structure_tensor_orientation(_lines(angle))
    diff = (got - angle + 90.0) % 180.0 - 90.0  # orientation is defined modulo 180
    assert abs(diff) < 2.0
    assert coherence > 0.9
    assert -90.0 < got <= 90.0


def test_orientation_sign_matches_kernel_convention():
    k = streak_kernel(30.0, 25.0, 0.6)
    canvas = np.zeros((64, 64))
    canvas[32 - k.shape[0] // 2 : 32 - k.shape[0] // 2 + k.shape[0], 32 - k.shape[1] // 2 : 32 - k.shape[1] // 2 + k.shape[1]] = k
    got, _ = structure_tensor_orientation(canvas)
    assert abs(got - 25.0) < 3.0


def test_empty_and_isotropic_layers():
    angle, coherence = structure_tensor_orientation(np.zeros((32, 32)))
    assert math.isnan(angle) and math.isnan(coherence)
    y, x = np.mgrid[-32:32, -32:32]
    disc = (np.hypot(x, y) < 12).astype(float)
    _, coherence = structure_tensor_orientation(disc)
    assert coherence < 0.05


def test_rain_layer_statistics_values():
    clean = np.full((50, 60, 3), 100, np.uint8)
    rainy = clean.copy()
    rainy[:, 10:12] = 150  # a vertical streak, 2 of 60 columns, +50 levels
    s = rain_layer_statistics(clean, rainy)
    assert s["coverage"] == pytest.approx(2 / 60)
    assert s["mean_intensity"] == pytest.approx(50 / 255 * 2 / 60, rel=1e-6)
    assert abs(s["dominant_orientation_deg"]) < 1.0
    assert s["anisotropy"] > 0.95
    empty = rain_layer_statistics(clean, clean)
    assert empty["coverage"] == 0 and empty["mean_intensity"] == 0
    assert math.isnan(empty["dominant_orientation_deg"])


def test_threshold_and_float_inputs():
    clean = np.zeros((20, 20, 3), np.uint8)
    rainy = clean.copy()
    rainy[5] = 5  # below the default 10/255 threshold
    assert rain_layer_statistics(clean, rainy)["coverage"] == 0
    assert rain_layer_statistics(clean, rainy, threshold=4 / 255)["coverage"] == pytest.approx(1 / 20)
    f = rain_layer_statistics(clean / 255.0, rainy / 255.0, threshold=4 / 255)
    assert f["coverage"] == pytest.approx(1 / 20)
    with pytest.raises(ValueError):
        rain_layer_statistics(clean, rainy[:10])
    with pytest.raises(ValueError):
        rain_layer_statistics(clean[..., 0], rainy[..., 0])


def test_jpeg_blockiness_detects_compression():
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:96]
    img = np.clip(128 + 60 * np.sin(x / 7.0) * np.cos(y / 11.0) + rng.normal(0, 6, (96, 96)), 0, 255)
    img = np.repeat(img[..., None], 3, axis=2).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=50)
    jpg = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert jpeg_blockiness(img) == pytest.approx(1.0, abs=0.1)
    assert jpeg_blockiness(jpg) > 1.2


def test_estimate_noise_sigma():
    rng = np.random.default_rng(1)
    base = np.full((128, 128, 3), 0.5)
    noisy = base + rng.normal(0, 0.02, (128, 128, 1))  # same noise in all channels -> luma sigma 0.02
    assert estimate_noise_sigma(base) == 0.0
    assert estimate_noise_sigma(noisy) == pytest.approx(0.02, rel=0.1)


def test_domain_statistics_table():
    rng = np.random.default_rng(2)
    imgs = [rng.integers(0, 200, (40, 48, 3), dtype=np.uint8) for _ in range(3)]
    df = domain_statistics_table(imgs, "rain200l", 10)
    assert list(df["seed"]) == [10, 11, 12]
    assert {"mean_intensity", "coverage", "dominant_orientation_deg", "anisotropy", "blockiness", "noise_sigma"} <= set(df.columns)
    ddn = domain_statistics_table(imgs[:1], "ddn", 0, ddn_type=14)
    assert ddn.loc[0, "ddn_type"] == 14 and ddn.loc[0, "coverage"] > 0


def test_coverage_counts_a_difference_of_exactly_the_threshold():
    """A grey step of exactly 10 levels is 10/255 in luminance: covered, whatever the luma weights' rounding."""
    clean = np.zeros((8, 8, 3), dtype=np.uint8)
    rainy = clean.copy()
    rainy[:2] = 10
    rainy[2:4] = 9
    assert rain_layer_statistics(clean, rainy)["coverage"] == pytest.approx(2 / 8)

"""Tests for the seeded rain renderer (derainlib.data.synthetic)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from derainlib.analysis.rain_statistics import jpeg_blockiness, rain_layer_statistics
from derainlib.data.errors import DatasetError
from derainlib.data.synthetic import (
    DDN_TYPE_TABLE,
    DDN_TYPES,
    DOMAIN_DESCRIPTIONS,
    DOMAINS,
    luminance,
    render,
    render_layers,
)

NON_DDN = [d for d in DOMAINS if d != "ddn"]


def _photo(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth synthetic 'photo': gradients, a bright sky band, a few blobs and mild texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    base = np.stack([0.3 + 0.4 * x, 0.35 + 0.3 * y, 0.5 - 0.2 * x * y], axis=-1)
    base[: h // 4 + 3] = [0.85, 0.88, 0.92]  # sky (edge off the 8x8 JPEG grid)
    for _ in range(4):
        cy, cx, r = rng.uniform(0.3, 1.0), rng.uniform(0, 1), rng.uniform(0.05, 0.15)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r**2))
        base = base * (1 - 0.5 * blob[..., None]) + 0.5 * blob[..., None] * rng.uniform(0, 1, 3)
    base += rng.normal(0, 0.01, base.shape)
    return np.clip(np.round(base * 255), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return _photo()


def _kw(domain: str) -> dict:
    return {"ddn_type": 5} if domain == "ddn" else {}


# ---------------------------------------------------------------------------------------------
# API, determinism, shapes
# ---------------------------------------------------------------------------------------------


def test_domain_list_and_descriptions():
    assert DOMAINS == (
        "rain200l", "rain200h", "rain800", "ddn", "night", "snow", "raindrop", "realproxy", "raincityscapes",
    )
    assert set(DOMAIN_DESCRIPTIONS) == set(DOMAINS)
    assert all(len(v) > 80 for v in DOMAIN_DESCRIPTIONS.values())
    assert list(DDN_TYPES) == list(range(1, 15)) and set(DDN_TYPE_TABLE) == set(DDN_TYPES)


@pytest.mark.parametrize("domain", DOMAINS)
def test_deterministic_and_seed_dependent(domain, photo):
    a = render(photo, domain, 3, **_kw(domain))
    b = render(photo, domain, 3, **_kw(domain))
    c = render(photo, domain, 4, **_kw(domain))
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_same_bytes_in_another_process(photo):
    """Pure function of its arguments: a fresh interpreter with a different thread setting agrees."""
    code = (
        "import numpy as np, hashlib, sys;"
        "from derainlib.data.synthetic import render, DOMAINS;"
        f"img = np.frombuffer(bytes.fromhex('{photo.tobytes().hex()}'), np.uint8).reshape({photo.shape});"
        "h = hashlib.sha256();"
        "[h.update(render(img, d, 11, ddn_type=9 if d == 'ddn' else None).tobytes()) for d in DOMAINS];"
        "print(h.hexdigest())"
    )
    import hashlib
    import os

    here = hashlib.sha256()
    for d in DOMAINS:
        here.update(render(photo, d, 11, ddn_type=9 if d == "ddn" else None).tobytes())
    env = dict(os.environ, OMP_NUM_THREADS="3", OPENBLAS_NUM_THREADS="3", MKL_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == here.hexdigest()


@pytest.mark.parametrize("shape", [(16, 16), (17, 23), (31, 64), (65, 33)])
@pytest.mark.parametrize("domain", DOMAINS)
def test_shape_dtype_odd_sizes(domain, shape):
    img = _photo(*shape, seed=1)
    out = render(img, domain, 0, **_kw(domain))
    assert out.shape == img.shape and out.dtype == np.uint8


@pytest.mark.parametrize("domain", DOMAINS)
def test_input_not_modified(domain, photo):
    before = photo.copy()
    view = photo.copy()
    view.setflags(write=False)  # a read-only input must be accepted too
    render(view, domain, 1, **_kw(domain))
    render(photo, domain, 1, **_kw(domain))
    assert np.array_equal(photo, before)


@pytest.mark.parametrize("domain", NON_DDN)
def test_every_domain_changes_the_image(domain, photo):
    out = render(photo, domain, 2)
    stats = rain_layer_statistics(photo, out)
    assert stats["mean_intensity"] > 0.003 and stats["coverage"] > 0.01, stats


@pytest.mark.parametrize("ddn_type", list(DDN_TYPES))
def test_every_ddn_type_changes_the_image(ddn_type, photo):
    out = render(photo, "ddn", 2, ddn_type=ddn_type)
    assert rain_layer_statistics(photo, out)["coverage"] > 0.01


def test_render_layers_matches_render(photo):
    rainy, info = render_layers(photo, "rain200l", 5)
    assert np.array_equal(rainy, render(photo, "rain200l", 5))
    assert info["domain"] == "rain200l" and info["seed"] == 5
    assert -20.0 <= info["angle_deg"] <= 20.0
    assert info["rain"].shape == photo.shape[:2]


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------


def test_unknown_domain_names_it_and_lists_valid(photo):
    with pytest.raises(DatasetError) as err:
        render(photo, "rain100x", 0)
    msg = str(err.value)
    assert "rain100x" in msg and all(d in msg for d in DOMAINS)


@pytest.mark.parametrize("bad", [0, 15, -1])
def test_ddn_type_out_of_range(bad, photo):
    with pytest.raises(ValueError, match="1..14"):
        render(photo, "ddn", 0, ddn_type=bad)


def test_ddn_requires_type_and_others_reject_it(photo):
    with pytest.raises(ValueError, match="ddn_type"):
        render(photo, "ddn", 0)
    with pytest.raises(ValueError, match="ddn_type"):
        render(photo, "rain200l", 0, ddn_type=3)
    with pytest.raises(TypeError):
        render(photo, "ddn", 0, ddn_type=3.0)


def test_bad_images_rejected(photo):
    with pytest.raises(TypeError, match="uint8"):
        render(photo.astype(np.float32) / 255, "rain200l", 0)
    with pytest.raises(ValueError, match="H x W x 3"):
        render(photo[:, :, 0], "rain200l", 0)
    with pytest.raises(ValueError, match="H x W x 3"):
        render(np.dstack([photo, photo[:, :, :1]]), "rain200l", 0)
    with pytest.raises(ValueError, match="at least"):
        render(photo[:15], "rain200l", 0)
    with pytest.raises(TypeError):
        render(photo.tolist(), "rain200l", 0)


def test_bad_seeds_rejected(photo):
    with pytest.raises(ValueError):
        render(photo, "rain200l", -1)
    with pytest.raises(TypeError):
        render(photo, "rain200l", 1.5)
    with pytest.raises(TypeError):
        render(photo, "rain200l", True)
    assert render(photo, "rain200l", np.int64(4)).tobytes() == render(photo, "rain200l", 4).tobytes()


# ---------------------------------------------------------------------------------------------
# Domain properties
# ---------------------------------------------------------------------------------------------


def _mean_stats(photo, domain, seeds, **kw):
    version = kw.pop("version", 2)
    rows = [rain_layer_statistics(photo, render(photo, domain, s, version=version, **kw)) for s in seeds]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def test_rain200h_heavier_than_rain200l():
    img = _photo(128, 160, seed=3)
    light = _mean_stats(img, "rain200l", range(4))
    heavy = _mean_stats(img, "rain200h", range(4))
    assert heavy["coverage"] > 2 * light["coverage"]
    assert heavy["mean_intensity"] > 2 * light["mean_intensity"]


def test_version_1_rain200h_less_anisotropic_than_rain200l():
    """Version 1: five directions spread the structure tensor; one direction keeps it coherent."""
    img = _photo(160, 160, seed=4)
    light = _mean_stats(img, "rain200l", range(4), version=1)
    heavy = _mean_stats(img, "rain200h", range(4), version=1)
    assert heavy["anisotropy"] < light["anisotropy"] - 0.05


@pytest.mark.parametrize("seed", range(5))
def test_rain200l_orientation_recovered(seed):
    img = _photo(160, 192, seed=seed)
    rainy, info = render_layers(img, "rain200l", seed)
    got = rain_layer_statistics(img, rainy)["dominant_orientation_deg"]
    assert abs(got - info["angle_deg"]) < 10.0, (got, info["angle_deg"])


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("seed", range(3))
def test_night_is_darker(seed, photo, version):
    out = render(photo, "night", seed, version=version)
    assert luminance(out / 255.0).mean() < 0.7 * luminance(photo / 255.0).mean()


@pytest.mark.parametrize("domain", ["rain200l", "rain200h", "ddn", "snow"])
def test_version_1_additive_and_snow_never_darken(domain, photo):
    """Version 1: clip(B + R), the screen blend and white snow over B can only brighten a pixel."""
    for seed in range(3):
        out = render(photo, domain, seed, version=1, **_kw(domain))
        assert np.all(out.astype(int) >= photo.astype(int))


def test_realproxy_is_jpeg_like(photo):
    img = _photo(128, 128, seed=5)
    for seed in range(3):
        out = render(img, "realproxy", seed)
        assert jpeg_blockiness(out) > 1.15
        assert jpeg_blockiness(out) > jpeg_blockiness(img) + 0.1
        assert jpeg_blockiness(render(img, "rain200l", seed)) < 1.1


def test_realproxy_has_noise_in_flat_regions():
    """Flat input: additive domains leave most neighbours equal; sensor noise makes them differ."""
    flat = np.full((96, 96, 3), 128, np.uint8)
    for seed in range(4):
        noisy = luminance(render(flat, "realproxy", seed).astype(float))
        clean_rain = luminance(render(flat, "rain200l", seed).astype(float))
        frac_noisy = np.mean(np.abs(np.diff(noisy, axis=1)) >= 1)
        frac_clean = np.mean(np.abs(np.diff(clean_rain, axis=1)) >= 1)
        assert frac_noisy > 0.4 and frac_clean < 0.3


def test_version_1_realproxy_streaks_can_darken_bright_sky():
    """Version 1: occluding streaks toward an environment colour: over a white sky some pixels get darker."""
    sky = np.full((96, 96, 3), 250, np.uint8)
    _, info = render_layers(sky, "realproxy", 0, version=1)
    out = render(sky, "realproxy", 0, version=1).astype(int)
    assert info["blend"] == "occlusion"
    assert np.mean(out.sum(axis=2) < sky.astype(int).sum(axis=2) - 30) > 0.01


def test_ddn_types_differ_in_coverage():
    img = _photo(128, 128, seed=6)
    cov = [rain_layer_statistics(img, render(img, "ddn", 0, ddn_type=t))["coverage"] for t in DDN_TYPES]
    assert max(cov) > 3 * min(cov)
    assert len({round(c, 3) for c in cov}) >= 12
    # The table runs light -> heavy: the heaviest types cover more than the lightest.
    assert np.mean(cov[-3:]) > 2 * np.mean(cov[:3])


def test_raincityscapes_fog_grows_toward_top():
    """T = exp(-beta * depth) with depth growing upward: the top is pulled toward A more."""
    dark = np.full((96, 96, 3), 20, np.uint8)
    out, info = render_layers(dark, "raincityscapes", 0)
    assert info["transmission"][0].mean() < info["transmission"][-1].mean()
    lum = luminance(out.astype(float))
    assert lum[:10].mean() > lum[-10:].mean()

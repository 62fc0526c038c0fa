"""Tests for derainlib.metrics: PSNR, SSIM (Wang et al. 2004) and NIQE (Mittal et al. 2013).

Reference values come from hand calculation, from scikit-image, and (for NIQE) from
basicsr 1.4.2's own code; how each was obtained is stated where it is used.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from derainlib.metrics import psnr, rgb_to_gray, rgb_to_y, ssim, to_uint8
from derainlib.niqe import niqe

DATA = Path(__file__).parent / "data"
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


@pytest.fixture(scope="module")
def baboon() -> np.ndarray:
    """OpenCV's sample baboon (Debian opencv-doc), 512x512 RGB uint8; see tests/data/README.md."""
    return np.array(Image.open(DATA / "baboon.png").convert("RGB"))


@pytest.fixture(scope="module")
def noisy_pair(baboon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 200x240 crop of the baboon and a copy with seeded Gaussian noise (sigma 12)."""
    clean = baboon[100:300, 50:290]
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0.0, 12.0, clean.shape).round(), 0, 255).astype(np.uint8)
    return noisy, clean


# --------------------------------------------------------------------------- Y conversion


def test_rgb_to_y_pure_colours_by_hand() -> None:
    """Y = 16 + 65.481 R + 128.553 G + 24.966 B (R, G, B in [0, 1]), rounded like MATLAB's uint8."""
    colours = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    y = rgb_to_y(colours)
    assert y.dtype == np.float64 and y.shape == (1, 5)
    # white 16+219 = 235, black 16, red 81.481 -> 81, green 144.553 -> 145, blue 40.966 -> 41
    np.testing.assert_array_equal(y[0], [235, 16, 81, 145, 41])


def test_rgb_to_y_exact_tie_rounds_up() -> None:
    # 65.481*146 + 128.553*124 + 24.966*97 = 27922.5 = 255 * 109.5, so Y = 125.5 exactly.
    assert rgb_to_y(np.array([146, 124, 97], dtype=np.uint8)) == 126.0


def test_rgb_to_y_matches_float_formula_within_rounding() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(4, 64, 64, 3), dtype=np.uint8)
    rgb = img.astype(np.float64) / 255.0
    exact = 16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]
    y = rgb_to_y(img)
    assert y.shape == (4, 64, 64)
    assert np.all(np.abs(y - exact) <= 0.5 + 1e-9)
    np.testing.assert_array_equal(y, np.round(y))
    assert y.min() >= 16 and y.max() <= 235


def test_rgb_to_gray_matlab_weights() -> None:
    colours = np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [100, 150, 200]], dtype=np.uint8)
    # 0.298936021293775*100 + 0.587043074451121*150 + 0.114020904255103*200 = 140.75 -> 141
    np.testing.assert_array_equal(rgb_to_gray(colours), [255, 0, 76, 141])


# --------------------------------------------------------------------------- input handling


def test_float_inputs_round_half_up_like_a_saved_png() -> None:
    k = np.arange(255)
    halves = torch.tensor((k + 0.5) / 255.0, dtype=torch.float64).reshape(1, 1, 15, 17)
    np.testing.assert_array_equal(to_uint8(halves).ravel(), k + 1)  # exact .5 rounds up
    vals = torch.tensor([0.49 / 255, 0.51 / 255, -0.2, 1.3, 1.0, 0.0]).reshape(1, 6, 1)
    np.testing.assert_array_equal(to_uint8(vals).ravel(), [0, 1, 0, 255, 255, 0])


def test_tensor_and_uint8_inputs_agree(noisy_pair: tuple[np.ndarray, np.ndarray]) -> None:
    noisy, clean = noisy_pair
    tn = torch.from_numpy(noisy).permute(2, 0, 1).float() / 255.0
    tc = torch.from_numpy(clean).permute(2, 0, 1).float() / 255.0
    for metric in (psnr, ssim):
        for y_channel in (True, False):
            a = metric(noisy, clean, y_channel=y_channel)
            assert metric(tn, tc, y_channel=y_channel) == a
            assert metric(tn[None], clean[None], y_channel=y_channel) == a  # mixed kinds are fine


def test_shape_mismatch_names_both_shapes() -> None:
    a = np.zeros((16, 16, 3), np.uint8)
    b = np.zeros((16, 18, 3), np.uint8)
    for metric in (psnr, ssim):
        with pytest.raises(ValueError, match=r"\(16, 16, 3\).*\(16, 18, 3\)"):
            metric(a, b)


def test_bad_inputs_are_refused() -> None:
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        psnr(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="reduction"):
        psnr(a, a, reduction="sum")
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, crop_border=8)
    with pytest.raises(ValueError, match="11x11"):
        ssim(a[:10], a[:10])


# --------------------------------------------------------------------------- PSNR


def test_psnr_by_hand_grey_2x2() -> None:
    target = np.zeros((2, 2), np.uint8)
    pred = np.array([[0, 0], [0, 2]], np.uint8)  # MSE = 4 / 4 = 1
    assert psnr(pred, target) == pytest.approx(10 * math.log10(255**2), abs=1e-12)
    assert psnr(pred, target) == pytest.approx(48.130803608679, abs=1e-9)


def test_psnr_by_hand_rgb_and_y() -> None:
    target = np.zeros((2, 2, 3), np.uint8)
    pred = target.copy()
    pred[0, 0, 1] = 3  # RGB: MSE = 9 / 12
    assert psnr(pred, target, y_channel=False) == pytest.approx(10 * math.log10(255**2 * 12 / 9), abs=1e-12)
    # Y: green 3 -> 16 + 128.553*3/255 = 17.512 -> 18 vs 16: MSE = 4 / 4
    assert psnr(pred, target) == pytest.approx(10 * math.log10(255**2), abs=1e-12)
    white, black = np.full((2, 2, 3), 255, np.uint8), np.zeros((2, 2, 3), np.uint8)
    assert psnr(white, black) == pytest.approx(20 * math.log10(255 / 219), abs=1e-12)  # Y 235 vs 16


def test_psnr_identical_is_inf(baboon: np.ndarray) -> None:
    assert psnr(baboon, baboon) == math.inf
    assert psnr(baboon, baboon, y_channel=False) == math.inf


def test_psnr_matches_skimage(noisy_pair: tuple[np.ndarray, np.ndarray]) -> None:
    """Same numbers as skimage's PSNR with data_range=255, on the same rounded Y / on RGB."""
    noisy, clean = noisy_pair
    ref_y = sk_psnr(rgb_to_y(clean), rgb_to_y(noisy), data_range=255)
    ref_rgb = sk_psnr(clean, noisy, data_range=255)
    assert psnr(noisy, clean) == pytest.approx(ref_y, abs=1e-10)
    assert psnr(noisy, clean, y_channel=False) == pytest.approx(ref_rgb, abs=1e-10)


def test_psnr_crop_border(noisy_pair: tuple[np.ndarray, np.ndarray]) -> None:
    noisy, clean = noisy_pair
    assert psnr(noisy, clean, crop_border=4) == pytest.approx(psnr(noisy[4:-4, 4:-4], clean[4:-4, 4:-4]), abs=1e-12)
    framed = clean.copy()
    framed[:3] = 0
    framed[:, -3:] = 255  # damage only the border
    assert psnr(framed, clean, crop_border=3) == math.inf
    assert psnr(framed, clean) < 30


def test_batch_reduction(noisy_pair: tuple[np.ndarray, np.ndarray]) -> None:
    noisy, clean = noisy_pair
    preds = np.stack([noisy, clean, 255 - noisy])
    targets = np.stack([clean, clean, clean])
    singles = {}
    for metric in (psnr, ssim):
        singles[metric] = np.array([metric(p, t) for p, t in zip(preds, targets)])
        per_image = metric(preds, targets, reduction="none")
        assert isinstance(per_image, np.ndarray) and per_image.shape == (3,)
        np.testing.assert_array_equal(per_image, singles[metric])
    assert ssim(preds, targets) == pytest.approx(singles[ssim].mean(), abs=1e-15)
    assert psnr(preds, targets) == math.inf  # one identical pair makes the mean inf
    assert psnr(preds[[0, 2]], targets[[0, 2]]) == pytest.approx(singles[psnr][[0, 2]].mean(), abs=1e-12)
    assert psnr(noisy, clean, reduction="none").shape == (1,)


# --------------------------------------------------------------------------- SSIM


def test_ssim_constant_images_by_hand() -> None:
    """Constant images have zero (co)variances, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)."""
    a = np.full((16, 20), 100, np.uint8)
    b = np.full((16, 20), 120, np.uint8)
    expected = (2 * 100 * 120 + C1) / (100**2 + 120**2 + C1)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_ssim_identical_is_one(baboon: np.ndarray) -> None:
    assert ssim(baboon, baboon) == pytest.approx(1.0, abs=1e-12)
    assert ssim(baboon, baboon, y_channel=False) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_skimage(noisy_pair: tuple[np.ndarray, np.ndarray]) -> None:
    """skimage with gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255.

    skimage filters with 'reflect' padding but then averages the SSIM map after cutting
    (win_size - 1) / 2 = 5 pixels from every side, i.e. exactly over MATLAB's 'valid' region,
    and its truncated Gaussian (truncate 3.5 -> radius 5) is the same 11-tap window. So the
    two agree to rounding error; we allow 1e-10.
    """
    noisy, clean = noisy_pair
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}
    ref_y = sk_ssim(rgb_to_y(noisy), rgb_to_y(clean), **kw)
    ref_rgb = sk_ssim(noisy, clean, channel_axis=-1, **kw)
    assert ssim(noisy, clean) == pytest.approx(ref_y, abs=1e-10)
    assert ssim(noisy, clean, y_channel=False) == pytest.approx(ref_rgb, abs=1e-10)
    assert 0.5 < ssim(noisy, clean) < 0.99


def test_ssim_valid_region_ignores_what_padding_would_see() -> None:
    """Only windows fully inside the image count: a 12x12 image has a 2x2 SSIM map."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (12, 12), dtype=np.uint8)
    b = rng.integers(0, 256, (12, 12), dtype=np.uint8)
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    x, y = a.astype(float), b.astype(float)
    vals = []
    for i in range(2):
        for j in range(2):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * px * px).sum() - mx**2, (w * py * py).sum() - my**2
            cxy = (w * px * py).sum() - mx * my
            vals.append((2 * mx * my + C1) * (2 * cxy + C2) / ((mx**2 + my**2 + C1) * (vx + vy + C2)))
    assert ssim(a, b) == pytest.approx(np.mean(vals), abs=1e-12)


def test_ssim_crop_border(noisy_pair: tuple[np.ndarray, np.ndarray]) -> None:
    noisy, clean = noisy_pair
    assert ssim(noisy, clean, crop_border=7) == pytest.approx(ssim(noisy[7:-7, 7:-7], clean[7:-7, 7:-7]), abs=1e-14)


# --------------------------------------------------------------------------- NIQE


def test_niqe_baboon_matches_basicsr(baboon: np.ndarray) -> None:
    """NIQE of tests/data/baboon.png (OpenCV sample) against basicsr 1.4.2's own code.

    How the references were obtained: the basicsr 1.4.2 sdist (PyPI, sha256 b89b595a...1e87)
    was extracted and its unmodified ``basicsr/metrics/niqe.py`` run in a separate scratch
    environment (numpy, scipy, opencv-python-headless 5.0.0, torch; scipy's removed
    ``scipy.ndimage.filters`` alias pointed at ``scipy.ndimage``), as
    ``calculate_niqe(cv2.imread('baboon.png'), crop_border=0, input_order='HWC', convert_to='y')``:

    * unmodified (float32 throughout): 3.744025806721914
    * with its float32 casts turned to float64 (``img.astype(np.float64)``, ``.round().astype(
      np.float64)`` in niqe.py; ``DoubleTensor``/``.double()`` in ``utils/matlab_functions.py``;
      ``torch.set_default_dtype(torch.float64)``): 3.74403238927189

    basicsr's docstring (niqe.py, ``calculate_niqe``) quotes "MATLAB R2021a result for
    tests/data/baboon.png: 5.72957338 (5.7296)", but that file is basicsr's own test image
    (not shipped in the sdist, removed from the repository), not this OpenCV baboon, so that
    MATLAB number cannot be checked here; see derainlib/resources/NIQE_PROVENANCE.md.
    """
    value = niqe(baboon)
    assert value == pytest.approx(3.74403238927189, rel=1e-9)
    assert value == pytest.approx(3.744025806721914, rel=1e-5)  # float32 basicsr: 1.8e-6 apart


def test_niqe_gray_conversion_matches_basicsr(baboon: np.ndarray) -> None:
    """``convert_to='gray'`` (MATLAB rgb2gray, as the official release) vs basicsr on that grey image.

    Reference: our rounded MATLAB-rgb2gray image of the baboon saved as an 8-bit grey PNG and
    passed to basicsr 1.4.2's ``calculate_niqe(img, crop_border=0, input_order='HW')``:
    3.7958051593705746 unmodified (float32), 3.7957942465020573 in float64 (as above).
    (basicsr's own ``convert_to='gray'`` uses OpenCV's 0.299/0.587/0.114 weights instead and
    gives 3.7939.)
    """
    gray = rgb_to_gray(baboon).astype(np.uint8)
    assert niqe(baboon, convert_to="gray") == niqe(gray)
    assert niqe(gray) == pytest.approx(3.7957942465020573, rel=1e-9)
    assert niqe(gray) == pytest.approx(3.7958051593705746, rel=1e-5)


def test_niqe_astronaut_matches_basicsr_float64() -> None:
    """Second image: scikit-image's ``astronaut`` (512x512, bundled with scikit-image).

    Reference: our rounded Y of it saved as an 8-bit grey PNG and passed to basicsr 1.4.2's
    ``calculate_niqe(img, crop_border=0, input_order='HW')`` with the float64 changes listed
    above: 3.09942292768099. Unmodified basicsr (float32) gives 3.063949007400434 here, 1.1%
    lower: NIQE's final step is ill-conditioned on this image (condition number ~2e5), so float32
    noise in the features shows; we compute in float64 like MATLAB.
    (basicsr's own RGB path rounds four exact .5 ties of Y differently, see ``rgb_to_y``.)
    """
    skdata = pytest.importorskip("skimage.data")
    img = skdata.astronaut()
    if hashlib.sha256(img.tobytes()).hexdigest()[:16] != "a8c429c18afa7b0f":
        pytest.skip("this scikit-image ships a different astronaut picture")
    assert niqe(img) == niqe(rgb_to_y(img).astype(np.uint8))
    assert niqe(img) == pytest.approx(3.09942292768099, rel=1e-9)


def test_niqe_input_kinds_and_block_cropping(baboon: np.ndarray) -> None:
    ref = niqe(baboon)
    tensor = torch.from_numpy(baboon).permute(2, 0, 1).float() / 255.0
    assert niqe(tensor) == ref
    assert niqe(tensor[None]) == ref
    assert niqe(baboon[:480, :490]) == ref  # only whole 96x96 blocks are used
    assert niqe(baboon, crop_border=10) == niqe(baboon[10:-10, 10:-10])


def test_niqe_rises_with_distortion_and_survives_flat_blocks(baboon: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    noisy = np.clip(baboon + rng.normal(0, 25, baboon.shape), 0, 255).astype(np.uint8)
    assert niqe(noisy) > niqe(baboon) + 1.0
    flat = baboon.copy()
    flat[:200, :200] = 128  # constant blocks: NaN AGGD features, dropped as nancov does
    assert math.isfinite(niqe(flat))


@pytest.mark.parametrize("value", [0, 128, 255])
def test_niqe_is_nan_for_a_flat_image(baboon: np.ndarray, value: int) -> None:
    # A diverged network can output a saturated image: no block has usable features, so the
    # Gaussian fit is undefined (this used to crash in the SVD of a NaN matrix).
    assert math.isnan(niqe(np.full_like(baboon, value)))
    almost = np.full_like(baboon, value)
    almost[:96, :192] = baboon[:96, :192]  # two textured blocks are enough for a fit
    assert math.isfinite(niqe(almost))


def test_niqe_refuses_batches_and_tiny_images(baboon: np.ndarray) -> None:
    with pytest.raises(ValueError, match="one image"):
        niqe(np.stack([baboon, baboon]))
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        niqe(baboon[:100, :150])
    with pytest.raises(ValueError, match="convert_to"):
        niqe(baboon, convert_to="lab")

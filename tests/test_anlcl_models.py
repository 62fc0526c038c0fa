"""ANLCL's networks: sizes against the paper and the public code, shapes, the encoders, gradients,
and the momentum (MoCo) update."""

from __future__ import annotations

import pytest
import torch

from derainlib.evaluation import derain
from derainlib.models.anlcl import (
    PAPER,
    PUBLIC_NLCL,
    ANLCLDeraining,
    ANLCLNetworks,
    PatchDiscriminator,
    ResidualGenerator,
    default_location_stages,
    model_size_mb,
)
from derainlib.models.semi_drdnet import count_parameters


def generator_parameters(width: int, blocks: int) -> int:
    """Counted by hand: head conv 3→w, ``blocks`` × 2 convs w→w, the neck's 2 convs, tail conv w→3
    (3×3 kernels with bias; instance norm without affine parameters)."""
    conv = lambda cin, cout: 9 * cin * cout + cout  # noqa: E731
    return conv(3, width) + (2 * blocks + 2) * conv(width, width) + conv(width, 3)


def test_public_nlcl_generator_has_the_public_codes_316k_parameters():
    generator = ResidualGenerator(PUBLIC_NLCL.width, PUBLIC_NLCL.num_blocks)
    assert count_parameters(generator) == generator_parameters(32, 16) == 316_195
    # The public code is described as "about 316k parameters each": the first three digits must agree.
    assert round(count_parameters(generator), -3) == 316_000


def test_paper_generator_matches_table_8s_model_size():
    generator = ResidualGenerator()  # the defaults are the paper's: 9 blocks, width 60
    assert (generator.width, generator.num_blocks) == (PAPER.width, PAPER.num_blocks) == (60, 9)
    assert count_parameters(generator) == generator_parameters(60, 9) == 652_503
    # Table 8 prints 2.6 (MB, two significant digits): the float32 size must round to it, i.e. lie
    # within ±0.05 MB; neighbouring widths do not (56: 2.27 MB, 64: 2.97 MB).
    assert round(model_size_mb(generator), 1) == 2.6
    for width in (56, 64):
        assert round(model_size_mb(ResidualGenerator(width, 9)), 1) != 2.6


def test_the_neck_norm_is_the_public_codes_option_and_adds_no_parameters():
    """``neck_norm=True`` builds the public code's conv → IN → ReLU → conv neck; the default has no norm there
    (models.anlcl's docstring says why); both have the same parameters, so weights load either way."""
    ours, public = ResidualGenerator(8, 2), ResidualGenerator(8, 2, neck_norm=True)
    assert isinstance(ours.neck[1], torch.nn.Identity) and isinstance(public.neck[1], torch.nn.InstanceNorm2d)
    public.load_state_dict(ours.state_dict())
    assert count_parameters(public) == count_parameters(ours) == generator_parameters(8, 2)
    both = ANLCLDeraining(8, 2, neck_norm=True)
    assert all(isinstance(g.neck[1], torch.nn.InstanceNorm2d) for g in (both.image_generator, both.rain_generator))
    assert isinstance(ANLCLNetworks(8, 2, neck_norm=True).deraining.image_generator.neck[1], torch.nn.InstanceNorm2d)


def test_patch_discriminator_is_the_pix2pix_three_layer_patchgan():
    d = PatchDiscriminator()
    convs = [(3, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    assert count_parameters(d) == sum(16 * cin * cout + cout for cin, cout in convs) == 2_764_737
    x = torch.rand(2, 3, 64, 64)
    assert d(x).shape == (2, 1, 6, 6)  # 64 → 32 → 16 → 8 → 7 → 6
    feats = d.features(x, (0, 1, 2, 3))
    assert [f.shape[1:] for f in feats] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 7, 7)]
    assert torch.allclose(feats[0], torch.nn.functional.leaky_relu(d.feature_layers[0][0](x), 0.2))  # no norm on layer 1


def test_deraining_output_is_b_and_r_and_derain_accepts_it():
    net = ANLCLDeraining(8, 2)
    rainy = torch.rand(2, 3, 33, 47)  # any size: the generators work at full resolution
    out = net(rainy)
    assert out.derained.shape == out.rain.shape == rainy.shape and out.details is None
    assert torch.allclose(out.preliminary, rainy - out.rain)
    assert derain(net, rainy).derained.shape == rainy.shape


def test_generator_encode_returns_the_requested_stages():
    g = ResidualGenerator(8, 4)
    x = torch.rand(1, 3, 20, 20)
    feats = g.encode(x, (0, 2, 4))
    assert len(feats) == 3 and all(f.shape == (1, 8, 20, 20) for f in feats)
    assert torch.allclose(feats[0], g.head(x))
    with pytest.raises(ValueError, match="within 0..4"):
        g.encode(x, (0, 5))
    assert default_location_stages(9) == (0, 2, 4) and default_location_stages(2) == (0,)


def test_embeddings_are_unit_norm_and_gradients_reach_the_generators_but_not_the_key_encoder():
    torch.manual_seed(0)
    net = ANLCLNetworks(8, 2)
    rainy = torch.rand(2, 3, 64, 64)
    out = net(rainy)
    positions = torch.randint(0, 48, (2, 3, 4, 2))
    query = net.layer_embeddings(out.derained, positions, 16)
    key = net.layer_embeddings(out.rain, positions, 16, key=True)
    assert len(query) == 4 and all(q.shape == (2, 3, 4, 256) for q in query)
    assert all(torch.allclose(q.norm(dim=-1), torch.ones(2, 3, 4), atol=1e-5) for q in query)
    assert all(not k.requires_grad for k in key)
    location = net.location_embeddings(rainy, positions, 16)
    assert location[0].shape == (2, 3, 4, 256)

    loss = sum((q * k).sum() for q, k in zip(query, key)) + sum(v.sum() for v in location)
    loss.backward()
    assert net.deraining.image_generator.head.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.layer_heads.parameters())
    assert all(p.grad is None for p in net.key_encoder.parameters())
    assert net.deraining.rain_generator.head.weight.grad is None  # R only entered through the key encoder


def test_momentum_update_follows_the_moco_formula():
    torch.manual_seed(0)
    net = ANLCLNetworks(8, 2, momentum=0.99)
    online = [p.detach().clone() for p in [*net.discriminator.feature_layers.parameters(), *net.layer_heads.parameters()]]
    before = [p.clone() for p in net.key_encoder.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(online, before))  # a copy at the start
    with torch.no_grad():
        for p in [*net.discriminator.feature_layers.parameters(), *net.layer_heads.parameters()]:
            p.add_(torch.randn_like(p))
    moved = [p.detach().clone() for p in [*net.discriminator.feature_layers.parameters(), *net.layer_heads.parameters()]]
    net.momentum_update()
    after = list(net.key_encoder.parameters())
    assert len(after) == len(moved)
    for key_before, query, key_after in zip(before, moved, after):
        assert torch.allclose(key_after, 0.99 * key_before + 0.01 * query, atol=1e-6)
    assert not any(p.requires_grad for p in net.key_encoder.parameters())


def test_parameter_groups_cover_every_trainable_parameter_once():
    net = ANLCLNetworks(8, 2)
    generator = {id(p) for p in net.generator_parameters()}
    discriminator = {id(p) for p in net.discriminator_parameters()}
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert generator | discriminator == trainable and not generator & discriminator
    assert {id(p) for p in net.layer_heads.parameters()} <= generator
    assert {id(p) for p in net.location_heads.parameters()} <= generator


def test_without_momentum_the_keys_are_the_detached_online_features():
    net = ANLCLNetworks(8, 2, momentum=None)
    images = torch.rand(1, 3, 48, 48)
    positions = torch.randint(0, 32, (1, 2, 3, 2))
    query = net.layer_embeddings(images, positions, 16)
    key = net.layer_embeddings(images, positions, 16, key=True)
    assert net.key_encoder is None
    assert all(torch.allclose(q, k) and not k.requires_grad for q, k in zip(query, key))
    with pytest.raises(ValueError, match="feature layers"):
        ANLCLNetworks(8, 2, layer_features=(4,))

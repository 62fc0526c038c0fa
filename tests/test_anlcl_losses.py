"""ANLCL's losses (Eq. (2)-(8)) against hand computations on tiny tensors, their minima, the entropy
sign η, and the weight table."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from derainlib.losses.anlcl import (
    WEIGHT_SYMBOLS,
    ANLCLLossWeights,
    anlcl_objective,
    asymmetric_contrastive_loss,
    asymmetry_sign,
    decomposition_loss,
    discriminator_loss,
    layer_contrastive_loss,
    location_contrastive_loss,
    lsgan_loss,
    margin_loss,
    patch_entropies,
)


def unit(*rows: tuple[float, ...]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=-1)


# --------------------------------------------------------------------------- Eq. (2)-(3)


def test_decomposition_terms_and_their_minimum():
    rainy = torch.rand(2, 3, 8, 8)
    rain = 0.1 * torch.rand(2, 3, 8, 8)
    terms = decomposition_loss(rainy - rain, rain, rainy, torch.ones(2, 1, 3, 3), norms="mean")
    assert terms["consistency"] < 1e-12 and terms["background_prior"] == 0  # B + R = O, D says "real"
    assert torch.isclose(terms["rain_sparsity"], rain.abs().mean())
    off = decomposition_loss(rainy, rain, rainy, torch.zeros(2, 1, 3, 3), norms="mean")
    assert torch.isclose(off["consistency"], rain.square().mean()) and off["background_prior"] == 1
    with pytest.raises(ValueError, match="must match"):
        decomposition_loss(rainy, rain[:, :, :4], rainy, torch.ones(1), norms="mean")


def test_the_rain_prior_on_o_minus_b_ties_b_to_the_input_whatever_r_is():
    rainy, background = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    rain = torch.zeros_like(rainy)  # a sparse R, while B has drifted far from O
    on_rain = decomposition_loss(background, rain, rainy, torch.ones(2, 1, 3, 3), norms="mean")
    on_residual = decomposition_loss(background, rain, rainy, torch.ones(2, 1, 3, 3), norms="mean",
                                     rain_prior_on="residual")
    assert on_rain["rain_sparsity"] == 0
    assert torch.isclose(on_residual["rain_sparsity"], (rainy - background).abs().mean())
    assert torch.equal(on_rain["consistency"], on_residual["consistency"])
    with pytest.raises(ValueError, match="rain_prior_on"):
        decomposition_loss(background, rain, rainy, torch.ones(1), norms="mean", rain_prior_on="image")


def test_least_squares_gan_losses():
    pred = torch.tensor([0.5, 1.5])
    assert lsgan_loss(pred, True) == pytest.approx(0.25) and lsgan_loss(pred, False) == pytest.approx(1.25)
    assert discriminator_loss(torch.ones(3), torch.zeros(3)) == 0
    assert discriminator_loss(pred, pred) == pytest.approx(0.5 * (0.25 + 1.25))


# --------------------------------------------------------------------------- Eq. (5)


def hand_layer_term(anchors, positives, negatives, tau, printed=False):
    """One direction of Eq. (5) with loops and math only."""
    dot = lambda a, b: float((a * b).sum())  # noqa: E731
    total, count = 0.0, 0
    for f_i in anchors:
        denominator = sum(math.exp(dot(f_i, f_j) / tau) for f_j in negatives)
        for f_k in positives:
            pos = math.exp(dot(f_i, f_k) / tau)
            total += pos / denominator if printed else -math.log(pos / (pos + denominator))
            count += 1
    return -total / len(positives) if printed else total / count


@pytest.mark.parametrize("form", ["infonce", "printed"])
def test_layer_contrastive_equals_a_hand_computation(form):
    image_q, image_k = unit((1, 0.2), (0.9, -0.1)), unit((1, 0.1), (0.8, 0.3))
    rain_q, rain_k = unit((-0.2, 1), (0.1, 0.9), (0.3, 1)), unit((0, 1), (-0.1, 1), (0.2, 0.8))
    tau = 0.77
    expected = (hand_layer_term(image_q, image_k, rain_k, tau, form == "printed")
                + hand_layer_term(rain_q, rain_k, image_k, tau, form == "printed"))
    got = layer_contrastive_loss(image_q, image_k, rain_q, rain_k, temperature=tau, form=form)
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_layer_contrastive_forms_differ_and_groups_are_averaged():
    torch.manual_seed(0)
    b, r = F.normalize(torch.randn(3, 4, 8), dim=-1), F.normalize(torch.randn(3, 6, 8), dim=-1)
    infonce = layer_contrastive_loss(b, b, r, r)
    printed = layer_contrastive_loss(b, b, r, r, form="printed")
    assert infonce > 0 and printed < 0 and not torch.isclose(infonce, -printed)
    per_group = [layer_contrastive_loss(b[g], b[g], r[g], r[g]) for g in range(3)]
    assert torch.isclose(infonce, torch.stack(per_group).mean())
    with pytest.raises(ValueError, match="unknown form"):
        layer_contrastive_loss(b, b, r, r, form="ratio")


def test_layer_contrastive_is_smallest_when_the_layers_separate():
    torch.manual_seed(1)
    direction = F.normalize(torch.randn(16), dim=0)
    separated_b = F.normalize(direction + 0.05 * torch.randn(8, 16), dim=-1)
    separated_r = F.normalize(-direction + 0.05 * torch.randn(12, 16), dim=-1)
    mixed = F.normalize(torch.randn(20, 16), dim=-1)
    good = layer_contrastive_loss(separated_b, separated_b, separated_r, separated_r, temperature=0.07)
    bad = layer_contrastive_loss(mixed[:8], mixed[:8], mixed[8:], mixed[8:], temperature=0.07)
    assert good < 1e-3 < bad  # near its infimum 0 when B and R are opposite clusters


# --------------------------------------------------------------------------- Eq. (6)


def test_location_contrastive_equals_a_hand_computation_with_reverse_nonlocal_negatives():
    query = unit((1, 0), (0.6, 0.8))[None]  # 1 image × 2 anchors × D
    positive = unit((0.9, 0.1), (0.5, 0.9))[None]
    negatives = torch.stack([unit((0, 1), (-1, 0), (0.3, -1)), unit((1, -1), (-0.2, -1), (0, 1))])[None]
    tau = 0.07
    expected = 0.0
    for i in range(2):
        pos = math.exp(float((query[0, i] * positive[0, i]).sum()) / tau)
        neg = sum(math.exp(float((query[0, i] * n).sum()) / tau) for n in negatives[0, i])
        expected += -math.log(pos / (pos + neg)) / 2
    got = location_contrastive_loss(query, positive, negatives, temperature=tau)
    assert float(got) == pytest.approx(expected, rel=1e-9)
    printed = location_contrastive_loss(query, positive, negatives, temperature=tau, form="printed")
    assert -1 <= float(printed) < 0


def test_location_contrastive_default_negatives_are_the_other_anchors_and_keys_are_detached():
    torch.manual_seed(2)
    query = F.normalize(torch.randn(2, 5, 8), dim=-1).requires_grad_()
    positive = F.normalize(torch.randn(2, 5, 8), dim=-1).requires_grad_()
    others = torch.stack([torch.stack([torch.cat([positive[n, :i], positive[n, i + 1:]]) for i in range(5)])
                          for n in range(2)])  # 2×5×4×8
    cut = location_contrastive_loss(query, positive)
    explicit = location_contrastive_loss(query, positive, others)
    assert torch.isclose(cut, explicit)
    cut.backward()
    assert query.grad.abs().sum() > 0 and positive.grad is None


# --------------------------------------------------------------------------- Eq. (7)-(8) and η


def test_margin_loss_equals_a_hand_computation_and_vanishes_past_the_margin():
    image, rain = unit((1, 0), (0, 1)), unit((1, 0), (0.96, 0.28))
    d_img = [float(((a - b) ** 2).sum()) for a in image for b in image]
    d_rain = [float(((a - b) ** 2).sum()) for a in rain for b in rain]
    for eta in (1.0, -1.0):
        hinge = [max(0.0, 1.0 + eta * (dr - di)) for dr in d_rain for di in d_img]
        assert float(margin_loss(image, image, rain, rain, eta)) == pytest.approx(sum(hinge) / len(hinge))
        assert float(margin_loss(image, image, rain, rain, eta, reduction="sum")) == pytest.approx(sum(hinge))
    # η = +1 and the rain pair distances all a margin below the image pairs' (self pairs excluded by using
    # a spread image set): zero loss only when ε is small enough.
    spread = unit((1, 0), (-1, 0))
    tight = unit((1, 0), (1, 0))
    assert margin_loss(spread, spread, tight, tight, torch.tensor(1.0), margin=0.0) == 0
    assert margin_loss(spread, spread, tight, tight, torch.tensor(-1.0), margin=0.0) > 0


@pytest.mark.parametrize("form", ["printed", "infonce"])
def test_asymmetric_contrastive_equals_a_hand_computation(form):
    image, rain = unit((1, 0), (0, 1)), unit((1, 0), (0.96, 0.28), (0.8, 0.6))
    tau = 0.77
    s_r = [math.exp(float((a * b).sum()) / tau) for a in rain for b in rain]
    s_b = [math.exp(float((a * b).sum()) / tau) for a in image for b in image]
    for eta in (1.0, -1.0):
        if form == "printed":
            expected = -(sum(s_r) / sum(s_b)) ** eta / (3 * 2)
        else:
            expected = -eta * (math.log(sum(s_r) / 9) - math.log(sum(s_b) / 4))
        got = asymmetric_contrastive_loss(image, image, rain, rain, eta, temperature=tau, form=form)
        assert float(got) == pytest.approx(expected, rel=1e-10)


def test_asymmetric_loss_prefers_a_tighter_rain_cluster_when_eta_is_positive():
    torch.manual_seed(3)
    centre = F.normalize(torch.randn(8), dim=0)
    tight = F.normalize(centre + 0.05 * torch.randn(6, 8), dim=-1)
    loose = F.normalize(torch.randn(6, 8), dim=-1)
    image = F.normalize(torch.randn(4, 8), dim=-1)
    for form in ("printed", "infonce"):
        args = dict(temperature=0.77, form=form)
        assert (asymmetric_contrastive_loss(image, image, tight, tight, 1.0, **args)
                < asymmetric_contrastive_loss(image, image, loose, loose, 1.0, **args))
        assert (asymmetric_contrastive_loss(image, image, tight, tight, -1.0, **args)
                > asymmetric_contrastive_loss(image, image, loose, loose, -1.0, **args))


def test_entropy_of_constructed_patches():
    constant = torch.full((1, 1, 16, 16), 0.3)
    two_levels = torch.zeros(1, 1, 16, 16)
    two_levels[..., :8, :] = 1.0
    all_levels = (torch.arange(256).float() / 255).reshape(1, 1, 16, 16)
    entropy = patch_entropies(torch.cat([constant, two_levels, all_levels]))
    assert torch.allclose(entropy, torch.tensor([0.0, 1.0, 8.0]))
    # A shifted (possibly negative) rain layer has the same histogram counts, hence the same entropy.
    assert torch.allclose(patch_entropies(all_levels - 0.6), torch.tensor([8.0]))
    # On a [-1, 1] scale a level is twice as wide: the 256 levels stretched to it keep their 8 bits.
    assert torch.allclose(patch_entropies(all_levels * 2 - 1, (-1.0, 1.0)), torch.tensor([8.0]))
    # A rain layer, the difference of two 8-bit images, is quantised from 0: 128 values -> 7 bits exactly.
    difference = (torch.arange(256).reshape(1, 1, 16, 16) // 2 - 40).float() / 255
    assert torch.allclose(patch_entropies(difference, origin=0.0), torch.tensor([7.0]))
    grey = patch_entropies(two_levels.expand(1, 3, 16, 16))  # RGB goes through rgb2gray's weights
    assert torch.allclose(grey, torch.tensor([1.0]), atol=1e-6)


def test_eta_is_positive_for_textured_images_against_streaks_and_flips_when_swapped():
    generator = torch.Generator().manual_seed(4)
    texture = torch.rand(2, 8, 3, 16, 16, generator=generator)  # 2 groups × N_B = 8
    streaks = torch.zeros(2, 16, 3, 16, 16)
    streaks[..., :, 5] = 0.7  # one bright line per patch: two grey levels
    assert torch.equal(asymmetry_sign(texture, streaks), torch.tensor([1.0, 1.0]))
    assert torch.equal(asymmetry_sign(streaks[:, :8], texture), torch.tensor([-1.0, -1.0]))
    assert torch.equal(asymmetry_sign(streaks[:, :8], streaks), torch.tensor([1.0, 1.0]))  # a tie counts as +1


def test_batched_entropy_agrees_with_the_fig6_analysis_entropy():
    import numpy as np

    from derainlib.analysis.patch_asymmetry import patch_entropy

    generator = torch.Generator().manual_seed(6)
    grey = torch.rand(12, 1, 16, 16, generator=generator) ** 3  # skewed, like real intensities
    rain = torch.rand(12, 1, 16, 16, generator=generator) * 0.4 - 0.1  # signed, like O - B
    for patches, origin in ((grey, None), (rain, 0.0)):
        reference = patch_entropy(patches[:, 0].double().numpy())
        assert np.allclose(patch_entropies(patches, origin=origin).numpy(), reference, atol=1e-5)


# --------------------------------------------------------------------------- Eq. (4) and the weight table


def test_the_weight_table_maps_the_papers_symbols():
    weights = ANLCLLossWeights()
    by_symbol = {WEIGHT_SYMBOLS[name]: value for name, value in weights.as_dict().items() if WEIGHT_SYMBOLS[name]}
    assert by_symbol == {"λ": 0.1, "δ": 1.0, "μ": 1.0, "σ": 1.0, "γ": 0.01}  # §4.6's values
    assert weights.consistency == 1.0


def test_objective_is_the_weighted_sum_of_the_terms_present():
    terms = {"consistency": torch.tensor(2.0), "rain_sparsity": torch.tensor(3.0), "asymmetric": torch.tensor(-5.0)}
    assert float(anlcl_objective(terms)) == pytest.approx(2.0 + 0.3 - 0.05)
    with pytest.raises(ValueError, match="unknown loss terms"):
        anlcl_objective({"perceptual": torch.tensor(1.0)})


# --------------------------------------------------------------------------- the composed contrastive terms


@pytest.mark.parametrize("positives,negatives,location,asymmetric", [
    ("nonlocal", "nonlocal", "reverse_nonlocal", "contrastive"),
    ("neighbour", "random", "cut", "margin"),
    ("random", "neighbour", "reverse_nonlocal", "contrastive"),
])
def test_contrastive_terms_train_generators_and_heads_but_not_the_key_encoder(positives, negatives, location, asymmetric):
    from derainlib.losses.anlcl import ContrastiveSampling, contrastive_terms
    from derainlib.models.anlcl import ANLCLNetworks

    torch.manual_seed(0)
    networks = ANLCLNetworks(4, 1, layer_features=(0, 2))
    rainy = torch.rand(2, 3, 48, 48)
    out = networks(rainy)
    sampling = ContrastiveSampling(positives=positives, negatives=negatives, location_negatives=location,
                                   asymmetric=asymmetric, anchors_per_image=2, num_positives=4, num_negatives=9,
                                   num_location_negatives=20)
    diagnostics: dict[str, float] = {}
    terms = contrastive_terms(networks, rainy, out.derained, out.rain, sampling,
                              generator=torch.Generator().manual_seed(1), diagnostics=diagnostics)
    assert set(terms) == {"layer", "location", "asymmetric"} and all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    assert 0.0 <= diagnostics["eta_positive_share"] <= 1.0
    again = contrastive_terms(networks, rainy, out.derained, out.rain, sampling, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(terms[name], again[name]) for name in terms)  # seeded samples repeat
    anlcl_objective(terms).backward()
    for module in (networks.deraining.image_generator, networks.deraining.rain_generator):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    for head in [*networks.layer_heads, *networks.location_heads]:  # every weight of every MLP head
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert all(p.grad is None for p in networks.key_encoder.parameters())


def test_contrastive_terms_refuse_unknown_options():
    from derainlib.losses.anlcl import ContrastiveSampling, contrastive_terms
    from derainlib.models.anlcl import ANLCLNetworks

    networks = ANLCLNetworks(8, 1)
    x = torch.rand(1, 3, 48, 48)
    with pytest.raises(ValueError, match="unknown contrastive terms"):
        contrastive_terms(networks, x, x, x, terms=("perceptual",))
    with pytest.raises(ValueError, match="anchors_per_image must be >= 2"):
        contrastive_terms(networks, x, x, x, ContrastiveSampling(location_negatives="cut"), terms=("location",))


def test_pretraining_loss_is_zero_at_the_targets_and_weighted_by_the_table():
    from derainlib.losses.anlcl import pretraining_loss

    clean, rainy = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    at_target = pretraining_loss(clean, rainy - clean, rainy, clean, torch.ones(2, 1, 2, 2))
    assert all(float(v) < 1e-12 for v in at_target.values())
    off = pretraining_loss(clean + 0.1, rainy - clean, rainy, clean, torch.ones(1))
    assert off["supervised_background"] == pytest.approx(0.1) and off["supervised_rain"] < 1e-7
    assert float(anlcl_objective(off)) == pytest.approx(100 * 0.1 + 0.01)  # L1 0.1 (weight 100) + consistency 0.01


def test_sampling_from_a_profile_section():
    from derainlib.losses.anlcl import ContrastiveSampling
    from derainlib.profiles import get_profile

    sizes = get_profile("paper").anlcl
    sampling = ContrastiveSampling.from_sizes(sizes, positives="random")
    assert (sampling.num_positives, sampling.num_negatives, sampling.num_location_negatives) == (8, 256, 256)
    assert (sampling.temperature, sampling.location_temperature, sampling.positives) == (0.77, 0.07, "random")


def test_one_step_of_each_optimiser_moves_every_head_d_and_the_key_encoder():
    from derainlib.losses.anlcl import ContrastiveSampling, contrastive_terms
    from derainlib.models.anlcl import ANLCLNetworks

    torch.manual_seed(0)
    networks = ANLCLNetworks(4, 1, layer_features=(0, 1))
    g_opt = torch.optim.Adam(networks.generator_parameters(), lr=1e-3)
    d_opt = torch.optim.Adam(networks.discriminator_parameters(), lr=1e-3)
    before = {name: p.detach().clone() for name, p in networks.named_parameters()}
    rainy, clean = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)

    out = networks(rainy)
    terms = decomposition_loss(out.derained, out.rain, rainy, networks.discriminator(out.derained), norms="sum")
    terms |= contrastive_terms(networks, rainy, out.derained, out.rain,
                               ContrastiveSampling(num_positives=4, num_negatives=9, num_location_negatives=16),
                               generator=torch.Generator().manual_seed(0))
    g_opt.zero_grad()
    anlcl_objective(terms).backward()
    g_opt.step()
    networks.momentum_update()
    d_opt.zero_grad()  # drops the contrastive gradients D received: D learns from the GAN loss only
    discriminator_loss(networks.discriminator(clean), networks.discriminator(out.derained.detach())).backward()
    d_opt.step()

    changed = {name for name, p in networks.named_parameters() if not torch.equal(p, before[name])}
    for prefix in ("layer_heads.", "location_heads.", "deraining.image_generator.", "deraining.rain_generator.",
                   "discriminator."):
        names = {name for name in before if name.startswith(prefix)}
        assert names and names <= changed, sorted(names - changed)
    # The key heads moved toward the stepped online heads: θ_k = m θ_k + (1 - m) θ_q, θ_k the pre-step copy.
    for name, key in networks.key_encoder.heads.named_parameters():
        start, online = before[f"layer_heads.{name}"], dict(networks.layer_heads.named_parameters())[name]
        assert torch.allclose(key, 0.99 * start + 0.01 * online.detach(), atol=1e-7) and not torch.equal(key, start)


def test_the_sum_reading_of_eq2_weights_the_pixel_terms_by_each_image_s_pixel_count():
    torch.manual_seed(0)
    background, rain, rainy = torch.rand(2, 3, 5, 4), torch.rand(2, 3, 5, 4) - 0.5, torch.rand(2, 3, 5, 4)
    fake = torch.rand(2, 1, 3, 3)
    mean = decomposition_loss(background, rain, rainy, fake, norms="mean")
    summed = decomposition_loss(background, rain, rainy, fake, norms="sum")
    # as printed: ‖B + R − O‖_F² and ‖R‖₁ of each image, averaged over the batch
    assert torch.allclose(summed["consistency"], (background + rain - rainy).square().sum() / 2)
    assert torch.allclose(summed["rain_sparsity"], rain.abs().sum() / 2)
    assert torch.allclose(summed["consistency"], mean["consistency"] * 60)
    assert summed["background_prior"] == mean["background_prior"]  # a GAN term, an expectation either way
    with pytest.raises(ValueError, match="norms='max'"):
        decomposition_loss(background, rain, rainy, fake, norms="max")

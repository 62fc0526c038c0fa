"""Tests for derainlib.losses.reconstruction (Eq. (11), (12)) and .objectives (Eq. (9), (10), (13))."""

from __future__ import annotations

import pytest
import torch

from derainlib.losses import (
    LossWeights,
    detail_repair_loss,
    rain_residual_loss,
    supervised_loss,
    total_loss,
    unsupervised_loss,
)


def test_rain_residual_loss_uses_rainy_minus_clean() -> None:
    clean = torch.full((1, 3, 2, 2), 0.25)
    rainy = torch.full((1, 3, 2, 2), 0.75)  # true rain layer 0.5 everywhere
    assert rain_residual_loss(torch.full_like(clean, 0.5), rainy, clean).item() == 0.0
    assert rain_residual_loss(torch.full_like(clean, 0.25), rainy, clean).item() == pytest.approx(0.25)


def test_detail_repair_loss_is_mean_l1() -> None:
    clean = torch.zeros(2, 3, 2, 2)
    derained = clean.clone()
    derained[0, 0, 0, 0] = 2.4  # one element off by 2.4 among 24
    assert detail_repair_loss(derained, clean).item() == pytest.approx(0.1)


def test_default_weights_are_the_papers() -> None:
    assert LossWeights() == LossWeights(rain_residual=0.5, dual=0.5, unsupervised=1.0)
    with pytest.raises(ValueError):
        LossWeights(dual=-1.0)


def test_supervised_loss_eq10() -> None:
    d, r, dual = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)
    assert supervised_loss(d, r, dual).item() == pytest.approx(1 + 0.5 * 2 + 0.5 * 4)
    weights = LossWeights(rain_residual=0.1, dual=0.25)
    assert supervised_loss(d, r, dual, weights).item() == pytest.approx(1 + 0.2 + 1.0)
    assert supervised_loss(d, r, None, weights).item() == pytest.approx(1.2)  # no contrastive term


def test_unsupervised_and_total_loss_eq9_eq13() -> None:
    sup, unsup = torch.tensor(3.0), unsupervised_loss(torch.tensor(2.0))
    assert unsup.item() == 2.0
    assert total_loss(sup, unsup).item() == pytest.approx(5.0)
    assert total_loss(sup, unsup, LossWeights(unsupervised=0.25)).item() == pytest.approx(3.5)
    assert total_loss(sup, None).item() == 3.0


def test_losses_carry_gradients() -> None:
    pred = torch.zeros(1, 3, 4, 4, requires_grad=True)
    loss = total_loss(supervised_loss(detail_repair_loss(pred, torch.ones_like(pred)), torch.tensor(0.0)), None)
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0

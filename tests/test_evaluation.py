"""derainlib.evaluation: the do-nothing baseline, clamping, and the out-of-range measure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from derainlib import metrics
from derainlib.evaluation import evaluate
from derainlib.models import DerainOutput


class _Scale(nn.Module):
    """A 'derainer' that multiplies its input: 2x pushes bright pixels above 1."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = nn.Parameter(torch.tensor(factor))

    def forward(self, rainy: torch.Tensor) -> DerainOutput:
        out = rainy * self.factor
        return DerainOutput(derained=out, rain=rainy - out, preliminary=out, details=None)


def _pairs(n: int = 2) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"name": f"{i}.png", "rainy": torch.rand(3, 24, 24, generator=g), "clean": torch.rand(3, 24, 24, generator=g)}
            for i in range(n)]


def test_no_model_scores_the_rainy_inputs() -> None:
    pairs = _pairs()
    scores = evaluate(None, pairs)
    assert list(scores["name"]) == ["0.png", "1.png"]
    assert scores.loc[0, "psnr_y"] == pytest.approx(float(metrics.psnr(pairs[0]["rainy"], pairs[0]["clean"], y_channel=True)))
    assert "out_of_range" not in scores


def test_out_of_range_is_measured_before_the_clamp() -> None:
    pairs = _pairs()
    doubled = evaluate(_Scale(2.0), pairs, with_range=True)
    expected = float((pairs[0]["rainy"] * 2 > 1).float().mean())
    assert doubled.loc[0, "out_of_range"] == pytest.approx(expected) and expected > 0.3
    clamped = (pairs[0]["rainy"] * 2).clamp(0, 1)
    assert doubled.loc[0, "psnr_rgb"] == pytest.approx(float(metrics.psnr(clamped, pairs[0]["clean"], y_channel=False)), rel=1e-5)
    assert (evaluate(_Scale(0.5), pairs, with_range=True)["out_of_range"] == 0).all()

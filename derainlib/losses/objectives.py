"""Semi-DRDNet's total objective (Sec. III-D): Eq. (9), (10) and (13).

The terms come from :mod:`derainlib.losses.reconstruction` (``L_r``, ``L_d``) and
:class:`derainlib.losses.contrastive.DualSCRNet` (``L_Dual(sup)``, ``L_Dual(unsup)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class LossWeights:
    """The lambdas of Eq. (9) and (10), defaulting to the paper's values (Sec. IV-B):
    ``lambda_r = 0.5``, ``lambda_dual = 0.5``, ``lambda_unsup = 1``."""

    rain_residual: float = 0.5  # lambda_r, Eq. (10)
    dual: float = 0.5  # lambda_dual, Eq. (10)
    unsupervised: float = 1.0  # lambda_unsup, Eq. (9)

    def __post_init__(self) -> None:
        for name in ("rain_residual", "dual", "unsupervised"):
            if getattr(self, name) < 0:
                raise ValueError(f"LossWeights.{name} must be >= 0, got {getattr(self, name)}")


def supervised_loss(
    detail: Tensor,
    rain_residual: Tensor,
    dual_sup: Tensor | None = None,
    weights: LossWeights | None = None,
) -> Tensor:
    """Eq. (10), ``L_sup = L_d + lambda_r L_r + lambda_dual L_Dual(sup)``.

    ``dual_sup=None`` leaves the contrastive term out (DRD-Net without DualSCRNet).
    """
    weights = weights or LossWeights()
    loss = detail + weights.rain_residual * rain_residual
    if dual_sup is not None:
        loss = loss + weights.dual * dual_sup
    return loss


def unsupervised_loss(dual_unsup: Tensor) -> Tensor:
    """Eq. (13), ``L_unsup = L_Dual(unsup)``: the real-data phase has only the contrastive term."""
    return dual_unsup


def total_loss(sup: Tensor, unsup: Tensor | None = None, weights: LossWeights | None = None) -> Tensor:
    """Eq. (9), ``L_total = L_sup + lambda_unsup L_unsup``; ``unsup=None`` gives ``L_sup`` alone
    (a step without real data)."""
    weights = weights or LossWeights()
    return sup if unsup is None else sup + weights.unsupervised * unsup


__all__ = ["LossWeights", "supervised_loss", "total_loss", "unsupervised_loss"]

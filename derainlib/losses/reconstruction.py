"""Semi-DRDNet's pixel losses on paired synthetic data (Sec. III-D, Eq. (11) and (12)).

``||.||_1`` is taken as the mean absolute error over all elements (as ``nn.L1Loss`` and the public
DRD-Net code do), so the loss scale does not depend on the patch or batch size.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def rain_residual_loss(predicted_rain: Tensor, rainy: Tensor, clean: Tensor) -> Tensor:
    """Eq. (11), ``L_r = ||f(O_s) - R_hat||_1`` with the ground-truth rain layer ``R_hat = O_s - B_s``.

    ``predicted_rain`` is the RRN output ``f(O_s)``; ``rainy`` is ``O_s`` and ``clean`` is ``B_s``.
    """
    return F.l1_loss(predicted_rain, rainy - clean)


def detail_repair_loss(derained: Tensor, clean: Tensor) -> Tensor:
    """Eq. (12), ``L_d = ||(I_hat_s + g(O_s)) - B_s||_1``.

    ``derained`` is the network's final output ``I_hat_s + g(O_s)`` (the preliminary derained image
    ``O_s - f(O_s)`` plus the DRN's recovered details); ``clean`` is ``B_s``.
    """
    return F.l1_loss(derained, clean)


__all__ = ["detail_repair_loss", "rain_residual_loss"]

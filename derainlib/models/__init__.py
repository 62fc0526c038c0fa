"""Deraining networks: Semi-DRDNet (RRN + DRN) with its ablation variants, and DDN with/without a DRN."""

from __future__ import annotations

from .anlcl import ANLCLDeraining, ANLCLNetworks  # ANLCL (see models.anlcl)
from .ddn import DDN, DDNWithDetailRepair, box_filter, guided_filter
from .semi_drdnet import (
    DETAIL_BLOCKS,
    SDCAB,
    VARIANTS,
    DerainOutput,
    DetailRepairNetwork,
    DilatedConcatLayer,
    DirectBlock,
    MSARRBlock,
    RainResidualBlock,
    RainResidualNetwork,
    ResidualBlock,
    SemiDRDNet,
    SqueezeExcitation,
    build_model,
    count_parameters,
)

from torch import nn

#: Table IV's networks; every other name is a Semi-DRDNet variant (see :data:`VARIANTS`).
DDN_VARIANTS = ("DDN", "DDN+DRN")


def build_network(variant: str, width: int = 64, num_blocks: int = 16) -> nn.Module:
    """Any network the experiments train, by name.

    Semi-DRDNet variants (Table II, V) take ``width`` (M) and ``num_blocks`` (blocks per branch,
    Table III's D = num_blocks + 3). DDN and DDN+DRN (Table IV) keep DDN's own size and the
    appendix's DRN (width 16, depth 24); ``width`` and ``num_blocks`` do not apply to them.
    """
    if variant == "DDN":
        return DDN()
    if variant == "DDN+DRN":
        return DDNWithDetailRepair()
    if variant not in VARIANTS:
        raise ValueError(f"unknown network {variant!r}; valid: {', '.join([*VARIANTS, *DDN_VARIANTS])}")
    return build_model(variant, width=width, num_blocks=num_blocks)


__all__ = [
    "DDN_VARIANTS",
    "build_network",
    "DDN",
    "DDNWithDetailRepair",
    "box_filter",
    "guided_filter",
    "DETAIL_BLOCKS",
    "SDCAB",
    "VARIANTS",
    "DerainOutput",
    "DetailRepairNetwork",
    "DilatedConcatLayer",
    "DirectBlock",
    "MSARRBlock",
    "RainResidualBlock",
    "RainResidualNetwork",
    "ResidualBlock",
    "SemiDRDNet",
    "SqueezeExcitation",
    "build_model",
    "count_parameters",
]

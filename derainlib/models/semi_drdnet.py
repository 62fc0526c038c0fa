"""Semi-DRDNet's deraining network: a rain residual network (RRN) and a detail repair network (DRN).

Paper: Shen et al., "Semi-DRDNet: Semi-supervised Detail-recovery Image Deraining Network via Unpaired
Contrastive Learning", published as "Detail-recovery Image Deraining via Dual Sample-augmented Contrastive
Learning" (section and equation numbers below are the published version's); the structure is the one of the
conference version DRD-Net, whose public PyTorch code fixes the details the paper leaves open.

The two branches run in parallel on the rainy image ``O``::

    R = RRN(O)          rain layer                       (RRN built from Eq. (1) blocks)
    I = O - R           preliminary derained image
    X = I + DRN(O)      final output                      Eq. (12): L_d = || I + g(O) - B ||_1

Both branches share one skeleton (``_Skeleton``): a head conv3x3 (3 -> M) + PReLU, ``D`` blocks, a conv3x3 + BN
added to the head output (long skip), and a tail conv3x3 (M -> 3) with no activation. Table III's
"D = 16+3" counts these: 16 blocks plus 3 plain convs (head, post-block conv, tail), i.e. 16*2 + 3 = 35 convs
deep for the RRN.

With M = 64 and 16 blocks per branch the model has 5,221,766 trainable parameters (RRN 1,235,651,
DRN 3,986,115); BN counts weight and bias only, and every PReLU is per-channel (M parameters), which is
what makes the count match the public code.

DualSCRNet (the contrastive regulariser) is a training-time loss, not part of this forward pass, so the
"Semi-DRDNet" variant is structurally identical to "BL+SE+SDCAB" (= DRD-Net); see :data:`VARIANTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

__all__ = [
    "SqueezeExcitation",
    "RainResidualBlock",
    "RainResidualNetwork",
    "DilatedConcatLayer",
    "SDCAB",
    "DirectBlock",
    "ResidualBlock",
    "MSARRBlock",
    "DETAIL_BLOCKS",
    "DetailRepairNetwork",
    "DerainOutput",
    "SemiDRDNet",
    "VARIANTS",
    "build_model",
    "count_parameters",
]


def conv3x3(in_ch: int, out_ch: int, dilation: int = 1) -> nn.Conv2d:
    """3x3 conv with "same" padding (padding = dilation keeps any H x W, odd or even)."""
    return nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation)


# --------------------------------------------------------------------------------------------------------
# Rain residual network (RRN)
# --------------------------------------------------------------------------------------------------------


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al.): GAP -> Linear(c, c/r) -> ReLU -> Linear(c/r, c) -> sigmoid -> scale.

    No biases, reduction 16 (64 -> 4 -> 64), as in the DRD-Net code. ``max(1, c // r)`` hidden units keep
    tiny widths (8, 16) usable.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(x.mean(dim=(2, 3)))  # squeeze: one number per channel
        return x * weights[:, :, None, None].to(x.dtype)  # excite: reweight channels


class RainResidualBlock(nn.Module):
    """Rain residual block, Eq. (1): ``RRB = SE(Res(X0))``.

    conv3x3 -> BN -> PReLU -> conv3x3 -> BN -> SE, then + input. The SE acts on the residual branch before the
    addition (as in the public code). ``use_se=False`` gives the plain residual block of the baseline "BL".
    """

    def __init__(self, width: int, use_se: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(width, width),
            nn.BatchNorm2d(width),
            nn.PReLU(width),
            conv3x3(width, width),
            nn.BatchNorm2d(width),
        )
        self.se = SqueezeExcitation(width) if use_se else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se(self.body(x))


class _Skeleton(nn.Module):
    """Head conv3x3 (3 -> M) + PReLU, ``num_blocks`` blocks, conv3x3 + BN + long skip, tail conv3x3 (M -> 3).

    Shared by the RRN and the DRN; "D = blocks + 3" in Table III counts the three plain convs.
    """

    def __init__(self, width: int, num_blocks: int, make_block: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.head = nn.Sequential(conv3x3(3, width), nn.PReLU(width))
        self.blocks = nn.Sequential(*[make_block(width) for _ in range(num_blocks)])
        self.fuse = nn.Sequential(conv3x3(width, width), nn.BatchNorm2d(width))
        self.tail = conv3x3(width, 3)  # no activation: rain / details are signed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        features = features + self.fuse(self.blocks(features))  # long skip eases training of deep stacks
        return self.tail(features)


class RainResidualNetwork(_Skeleton):
    """RRN: maps the rainy image ``O`` to its rain layer ``R`` with Eq. (1) blocks.

    ``use_se=False`` is the paper's baseline "BL" (a residual network without SE).
    Default (width 64, 16 blocks, SE) has 1,235,651 parameters.
    """

    def __init__(self, width: int = 64, num_blocks: int = 16, use_se: bool = True) -> None:
        super().__init__(width, num_blocks, lambda w: RainResidualBlock(w, use_se=use_se))
        self.use_se = use_se


# --------------------------------------------------------------------------------------------------------
# Detail repair network (DRN) and its block variants
# --------------------------------------------------------------------------------------------------------


class DilatedConcatLayer(nn.Module):
    """DCCL, Eq. (2): ``Conv1x1(Cat[Conv3x3,d1(X), Conv3x3,d3(X), Conv3x3,d5(X)])``.

    Three parallel dilated 3x3 convs (M channels each) concatenated to 3M, fused back to M by a learned 1x1
    conv ("combined with automatically adjusted weights"). No BN or activation inside.
    """

    def __init__(self, width: int, dilations: tuple[int, ...] = (1, 3, 5)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(conv3x3(width, width, dilation=d) for d in dilations)
        self.fuse = nn.Conv2d(width * len(dilations), width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))


class SDCAB(nn.Module):
    """Structure detail context aggregation block, Eq. (3)-(4).

    ``DCCL_2 = PReLU(BN(DCCL_1(X)))`` (Eq. (4)), ``SDCAB = X + BN(DCCL_2(...))`` (Eq. (3)): two DCCLs per
    block, so the receptive field grows by 2 * 5 * 2 = 20 pixels per block.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            DilatedConcatLayer(width),
            nn.BatchNorm2d(width),
            nn.PReLU(width),
            DilatedConcatLayer(width),
            nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _plain_body(width: int) -> nn.Sequential:
    """conv3x3 -> BN -> PReLU -> conv3x3 -> BN (the body shared by DB and RB)."""
    return nn.Sequential(
        conv3x3(width, width),
        nn.BatchNorm2d(width),
        nn.PReLU(width),
        conv3x3(width, width),
        nn.BatchNorm2d(width),
    )


class DirectBlock(nn.Module):
    """Direct block "DB" (Fig. 4(a)): conv3x3 -> BN -> PReLU -> conv3x3 -> BN, with no skip connection."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = _plain_body(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResidualBlock(nn.Module):
    """Residual block "RB" as used in DDN: conv3x3 -> BN -> PReLU -> conv3x3 -> BN, then + input."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = _plain_body(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MSARRBlock(nn.Module):
    """JORDER-style multi-scale aggregated residual block, for the "SDCAB vs MSARR" comparison (Table V).

    Built from what the paper says distinguishes MSARR from SDCAB:

    * the parallel dilated 3x3 convs (dilations 1, 3, 5) are **added**, not concatenated, and there is no 1x1
      fusion conv (difference (ii));
    * only **one** dilated stage per block (difference (i)); the second conv is a plain 3x3.

    Block: ``X + BN(Conv3x3(PReLU(BN(sum_d Conv3x3,d(X)))))``. We keep the residual skip, BN and PReLU of the
    other DRN blocks so that Table V isolates add-vs-concat and one-vs-two dilated stages, rather than also
    changing normalisation or depth (the blocks are still two convs deep, so "16+3" keeps its meaning).
    """

    def __init__(self, width: int, dilations: tuple[int, ...] = (1, 3, 5)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(conv3x3(width, width, dilation=d) for d in dilations)
        self.rest = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.PReLU(width),
            conv3x3(width, width),
            nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        aggregated = sum(branch(x) for branch in self.branches)  # add, not concat
        return x + self.rest(aggregated)


DETAIL_BLOCKS: dict[str, type[nn.Module]] = {
    "sdcab": SDCAB,
    "db": DirectBlock,
    "rb": ResidualBlock,
    "msarr": MSARRBlock,
}


class DetailRepairNetwork(_Skeleton):
    """DRN ``g``: same skeleton as the RRN with detail blocks (SDCAB by default); predicts the lost details.

    Input is the rainy image ``O`` (as in the public PyTorch DRD-Net code; the older Keras code fed it
    ``(O - R) + O``). Default (width 64, 16 SDCABs) has 3,986,115 parameters.
    """

    def __init__(self, width: int = 64, num_blocks: int = 16, block: str = "sdcab") -> None:
        if block not in DETAIL_BLOCKS:
            raise ValueError(f"unknown detail block {block!r}; valid: {sorted(DETAIL_BLOCKS)}")
        super().__init__(width, num_blocks, DETAIL_BLOCKS[block])
        self.block = block


# --------------------------------------------------------------------------------------------------------
# The full model
# --------------------------------------------------------------------------------------------------------


@dataclass
class DerainOutput:
    """Everything a training loop needs from one forward pass.

    derained:    final output ``X = I + DRN(O)`` (Eq. (12)); equals ``preliminary`` when there is no DRN.
    rain:        predicted rain layer ``R = RRN(O)`` (supervised by Eq. (11)).
    preliminary: ``I = O - R``.
    details:     ``DRN(O)``, or ``None`` when the model has no DRN (cheaper and unambiguous than zeros).
    """

    derained: torch.Tensor
    rain: torch.Tensor
    preliminary: torch.Tensor
    details: torch.Tensor | None = None


class SemiDRDNet(nn.Module):
    """RRN + optional parallel DRN. ``forward(O)`` returns a :class:`DerainOutput`.

    ``detail_block=None`` drops the DRN (variants "BL" and "BL+SE"); ``use_se=False`` drops SE from the RRN.
    """

    def __init__(
        self,
        width: int = 64,
        num_blocks: int = 16,
        use_se: bool = True,
        detail_block: str | None = "sdcab",
    ) -> None:
        super().__init__()
        self.rrn = RainResidualNetwork(width, num_blocks, use_se=use_se)
        self.drn = DetailRepairNetwork(width, num_blocks, block=detail_block) if detail_block else None
        self.config = {"width": width, "num_blocks": num_blocks, "use_se": use_se, "detail_block": detail_block}

    def forward(self, rainy: torch.Tensor) -> DerainOutput:
        rain = self.rrn(rainy)
        preliminary = rainy - rain
        if self.drn is None:
            return DerainOutput(derained=preliminary, rain=rain, preliminary=preliminary, details=None)
        details = self.drn(rainy)  # parallel branch: sees O, not I
        return DerainOutput(derained=preliminary + details, rain=rain, preliminary=preliminary, details=details)


#: Table II (and Table V's MSARR) ablation variants -> SemiDRDNet keyword arguments.
#: "Semi-DRDNet" has exactly the "BL+SE+SDCAB" (= DRD-Net) structure; it differs only in training
#: (DualSCRNet contrastive regularisation + unlabeled real-world data), which lives in the training code.
VARIANTS: dict[str, dict] = {
    "BL": {"use_se": False, "detail_block": None},
    "BL+SE": {"use_se": True, "detail_block": None},
    "BL+SE+DB": {"use_se": True, "detail_block": "db"},
    "BL+SE+RB": {"use_se": True, "detail_block": "rb"},
    "BL+SE+SDCAB": {"use_se": True, "detail_block": "sdcab"},
    "BL+SE+MSARR": {"use_se": True, "detail_block": "msarr"},
    "Semi-DRDNet": {"use_se": True, "detail_block": "sdcab"},
}


def build_model(variant: str = "Semi-DRDNet", width: int = 64, num_blocks: int = 16) -> SemiDRDNet:
    """Build a Table II / V variant; Table III's grid is ``width`` (M) x ``num_blocks`` (the D in "D+3")."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid variants: {', '.join(VARIANTS)}")
    return SemiDRDNet(width=width, num_blocks=num_blocks, **VARIANTS[variant])


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BN buffers such as running stats are not parameters)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


"""Rainmer's multi-view representation encoder, and AirNet's degradation encoder as its comparator.

Paper: Ran et al., "Rainmer: Learning Multi-view Representations for Comprehensive Image Deraining and
Beyond" (ACM MM 2024), supplement App. B and Fig. 1:

- **MoEs** (Eq. (1)-(4)), the mixture of experts of DRSformer (Chen et al., CVPR 2023): a weight generator
  ``G ∘ GAP`` (GAP → Linear → ReLU → Linear) gives 4 stages × 8 expert weights, softmax over the experts
  (Eq. (2)); each stage runs 8 experts on its input (3×3 average pooling; separable convolutions with k = 1,
  3, 5, 7; dilated separable convolutions with k = 3, 5, 7), multiplies each output by its weight,
  concatenates them, fuses with a 1×1 convolution, adds the stage's input and applies ReLU (Eq. (3)).
- **Encoder**: conv3×3 (3 → 48) gives ``F^sha``; the MoEs give ``F^spa``; two projectors, chromatic
  ``ψ^chr`` and detail/degradation ``ψ^det-g``, each a conv3×3 + LeakyReLU and a residual block with two
  squeeze-and-excitation layers; each embedding is the L2-normalised global average pool of its projector.

Where the supplement's equations leave a detail open, the public Rainmer code's reading is taken (and said):
the expert weights come from the MoEs' input ``F^sha`` (Eq. (2) writes ``F^spa``, which is the MoEs'
output by Eq. (1)), all four stages apply Eq. (3), and the residual joins after the 1×1 fuse.

AirNet (Li et al., "All-In-One Image Restoration for Unknown Corruption", CVPR 2022, §3.1): the
contrastive-based degradation encoder (CBDE): three residual blocks (convolution, batch norm, LeakyReLU;
the second and third with stride 2), global average pooling, and a two-layer MLP; the embedding is its
L2-normalised output. It is trained with MoCo (patches of one image positive, other images negative;
:mod:`derainlib.losses.rainmer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .semi_drdnet import SqueezeExcitation

#: The supplement's stage and expert counts (App. B).
NUM_STAGES = 4
NUM_EXPERTS = 8
SEPARABLE_KERNELS = (1, 3, 5, 7)
DILATED_KERNELS = (3, 5, 7)


class SeparableConv(nn.Module):
    """A separable convolution expert: depthwise k×k, pointwise, ReLU, depthwise k×k, pointwise (DRSformer's
    experts). ``dilation=2`` gives the dilated experts; padding keeps the size."""

    def __init__(self, channels: int, kernel_size: int, dilation: int = 1) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, padding=padding, dilation=dilation, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size, padding=padding, dilation=dilation, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def make_experts(channels: int) -> nn.ModuleList:
    """The eight experts of one stage, in the supplement's order (App. B)."""
    experts: list[nn.Module] = [nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)]
    experts += [SeparableConv(channels, k) for k in SEPARABLE_KERNELS]
    experts += [SeparableConv(channels, k, dilation=2) for k in DILATED_KERNELS]
    return nn.ModuleList(experts)


class MixtureOfExperts(nn.Module):
    """The MoEs of supplement Eq. (1)-(4): ``F^spa = f_MoEs(F^sha)``.

    Stage ``s`` (Eq. (3)): ``F^s = ReLU(Conv1x1(cat_i(T^s_i · expert_i(F^{s-1}))) + F^{s-1})``.
    """

    def __init__(self, channels: int = 48, hidden: int = 64, stages: int = NUM_STAGES) -> None:
        super().__init__()
        self.stages = stages
        # Eq. (2): G = Linear -> ReLU -> Linear on GAP (a 1×1 conv on a pooled map is the same map)
        self.weight_generator = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True),
                                              nn.Linear(hidden, stages * NUM_EXPERTS))
        self.experts = nn.ModuleList(make_experts(channels) for _ in range(stages))
        self.fuse = nn.ModuleList(nn.Conv2d(NUM_EXPERTS * channels, channels, 1) for _ in range(stages))

    def expert_weights(self, x: Tensor) -> Tensor:
        """Eq. (2): ``[T^1, ..., T^4]`` as ``N × stages × 8``, a softmax over the experts of each stage."""
        logits = self.weight_generator(x.mean(dim=(2, 3)))
        return logits.view(x.shape[0], self.stages, NUM_EXPERTS).softmax(dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        weights = self.expert_weights(x).to(x.dtype)
        features = x
        for stage, (experts, fuse) in enumerate(zip(self.experts, self.fuse)):
            outputs = [weights[:, stage, i, None, None, None] * expert(features) for i, expert in enumerate(experts)]
            features = F.relu(fuse(torch.cat(outputs, dim=1)) + features)  # Eq. (3)
        return features


class SEResidualBlock(nn.Module):
    """A residual block with a squeeze-and-excitation layer after each of its two 3×3 convolutions (Hu et al.,
    CVPR 2018; supplement Fig. 1): ``LReLU(SE(conv(LReLU(SE(conv(x))))) + x)``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.se1 = SqueezeExcitation(channels, reduction)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.se2 = SqueezeExcitation(channels, reduction)

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.se1(self.conv1(x)), 0.1)
        return F.leaky_relu(self.se2(self.conv2(out)) + x, 0.1)


class Projector(nn.Module):
    """A feature projector (``ψ^chr`` or ``ψ^det-g``, supplement Fig. 1): conv3×3 + LeakyReLU(0.1) + an SE
    residual block; :meth:`embed` is its L2-normalised global average pool."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.LeakyReLU(0.1),
                                  SEResidualBlock(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.body(x).float().mean(dim=(2, 3)), dim=1)


@dataclass
class RainmerEmbeddings:
    """The two views of a batch: unit vectors, ``N × embed_dim`` each."""

    chromatic: Tensor
    degradation: Tensor


class RainmerEncoder(nn.Module):
    """Rainmer's encoder (supplement App. B): conv3×3 → MoEs → chromatic and degradation projectors."""

    spaces = ("chromatic", "degradation")

    def __init__(self, width: int = 48, embed_dim: int = 128, moe_hidden: int = 64, *,
                 channels_last: bool = True) -> None:
        super().__init__()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.stem = nn.Conv2d(3, width, 3, padding=1)  # F^sha
        self.moe = MixtureOfExperts(width, moe_hidden)  # Eq. (1)
        self.chromatic = Projector(width, embed_dim)
        self.degradation = Projector(width, embed_dim)
        # Channels-last: the experts' depthwise (above all dilated) convolutions train 5-25x faster in it on
        # a CPU at the study's sizes (their backward in the default layout takes a slow path); on tiny images
        # the default layout is faster.
        self.to(memory_format=self.memory_format)

    def forward(self, x: Tensor) -> RainmerEmbeddings:
        features = self.moe(self.stem(x.contiguous(memory_format=self.memory_format)))
        return RainmerEmbeddings(self.chromatic(features), self.degradation(features))


class _AirNetResBlock(nn.Module):
    """AirNet's residual block: conv3×3 (stride) BN LeakyReLU conv3×3 BN, plus a 1×1 (stride) BN shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels))
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.body(x) + self.shortcut(x), 0.1)


class AirNetEncoder(nn.Module):
    """AirNet's CBDE encoder (Li et al., CVPR 2022): residual blocks of ``w, 2w, 4w`` channels (AirNet:
    w = 64), GAP, MLP (4w → 4w → LeakyReLU → 4w); the embedding is the L2-normalised MLP output."""

    spaces = ("degradation",)

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.blocks = nn.Sequential(_AirNetResBlock(3, width), _AirNetResBlock(width, 2 * width, stride=2),
                                    _AirNetResBlock(2 * width, 4 * width, stride=2))
        self.mlp = nn.Sequential(nn.Linear(4 * width, 4 * width), nn.LeakyReLU(0.1, inplace=True),
                                 nn.Linear(4 * width, 4 * width))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.mlp(self.blocks(x).float().mean(dim=(2, 3))), dim=1)


def build_encoder(kind: str, *, width: int, embed_dim: int, moe_hidden: int, airnet_width: int,
                  channels_last: bool = True) -> nn.Module:
    """``"rainmer"`` (:class:`RainmerEncoder`) or ``"airnet"`` (:class:`AirNetEncoder`)."""
    if kind == "rainmer":
        return RainmerEncoder(width, embed_dim, moe_hidden, channels_last=channels_last)
    if kind == "airnet":
        return AirNetEncoder(airnet_width)
    raise ValueError(f"unknown encoder {kind!r}: expected 'rainmer' or 'airnet'")


def embed(encoder: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """Every space's embeddings of ``images``, by space name (``encoder.spaces``)."""
    out = encoder(images)
    if isinstance(out, dict):  # already by space (e.g. derainlib.analysis.rainmer.ImageStatistics)
        return out
    if isinstance(out, RainmerEmbeddings):
        return {"chromatic": out.chromatic, "degradation": out.degradation}
    return {"degradation": out}

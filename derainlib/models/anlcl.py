"""ANLCL's networks: the image and rain generators, the PatchGAN discriminator that doubles as the
layer-contrastive encoder, the MLP heads, and the momentum (MoCo) copy of the encoder.

Paper: Chang et al., "Unsupervised Deraining: Where Asymmetric Contrastive Learning Meets
Self-similarity" (ANLCL; the journal extension of NLCL, CVPR 2022). The rainy image decomposes as
``O = B + R`` (Eq. (1)); two generators estimate the layers, ``B = G_B(O)`` and ``R = G_R(O)``, and
``O_hat = B + R`` feeds the self-consistency term of Eq. (2).

- **Generators** (§4.6, "the same ResNet architectures for both the image and rain feature extraction"):
  a flat residual generator as in the public NLCL code: conv3x3 (3→width), ``num_blocks`` residual blocks
  (conv → InstanceNorm → ReLU → conv → InstanceNorm, plus the skip), conv → ReLU → conv, and a
  conv3x3 (width→3) with no activation. Instance norm has no affine parameters (the CUT framework's
  default), convolutions have biases. The public configuration (width 32, 16 blocks) has 316,195
  parameters per generator (:data:`PUBLIC_NLCL`).
- **One departure from the public code: no instance norm in the neck** (``neck_norm=False``; ``True`` builds
  the public code's conv → IN → ReLU → conv). The residual blocks' skips carry the image's absolute colour and
  brightness to the neck; an instance norm there removes every channel's per-image mean and scale, so G_B cannot
  reproduce them. Measured on the ``cpu`` study's stage 1 (Rain200H, 250 steps, Adam): with the neck's norm the
  supervised ``|B − B_gt|`` stalls at 0.13–0.20 whatever the loss weights, and a learning rate of 1e-3 makes
  it worse (0.14, validation PSNR-Y 17.7 dB against the rainy input's 22.8); without it the same settings reach
  0.075 and 23.0 dB (``docs/anlcl.md``, "Stage 1 at the cpu scale"). Parameter counts are the same (the norm has
  no parameters).
- **The paper's size.** The paper says "9 ResNet blocks" and a model size of 2.6 MB (Table 8) and gives
  no width. With ``N`` blocks this generator has ``(2N + 2)(9 w^2 + w) + 55 w + 3`` parameters, so
  ``180 w^2 + 75 w + 3`` with 9; width 60 gives 652,503 parameters, 2.61 MB in float32 (10^6 bytes), for
  the network that derains at inference (G_B); widths 56 and 64 give 2.27 and 2.97 MB.
  :data:`PAPER` is therefore width 60, 9 blocks: the width is inferred from Table 8, not stated.
- **Discriminator** (§4.6, PatchGAN): 64 filters, 3 strided layers, 4×4 kernels, instance norm,
  LeakyReLU 0.2, the pix2pix ``NLayerDiscriminator`` layout (2,764,737 parameters); trained with the
  least-squares GAN loss (see :mod:`derainlib.losses.anlcl`).
- **Layer-contrastive encoder E_D** (§4.5): the discriminator's conv-layer features, each through its
  own two-layer MLP (Linear(C, 256) → ReLU → Linear(256, 256)), L2-normalised (§4.6).
- **Momentum encoder** (§4.6, "the setting of MoCo ... momentum value 0.99"): a copy of E_D (the
  discriminator's feature layers and the heads) updated as ``θ_k ← m θ_k + (1 − m) θ_q``; it gives the
  keys of the contrastive losses and never receives gradients.
- **Location encoder E_{G_B}** (§4.5): G_B's own early features, through CUT's MLP heads.
- **Table 4's other layer-contrastive encoders** (``encoder=``, :data:`ENCODERS`): ``"image_generator"``
  embeds the patches of both layers with G_B's early features (the stages of the location encoder),
  ``"image_rain_generators"`` embeds B's patches with G_B's and R's with G_R's; both through one set of
  MLP heads (so the two layers land in one embedding space) and with their own momentum copy, so only the
  trunk differs from the default ``"discriminator"``.
- **E_D for another network** (:class:`DiscriminatorEncoder`, Table 6): the discriminator, heads and momentum
  copy without the generators, to add the layer and asymmetric terms to a supervised deraining network.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from derainlib.nonlocal_sampling import patch_features
from derainlib.models.semi_drdnet import DerainOutput, count_parameters
from derainlib.options import check_choice

__all__ = [
    "ANLCLDeraining",
    "ANLCLNetworks",
    "DiscriminatorEncoder",
    "ENCODERS",
    "GeneratorConfig",
    "MomentumEncoder",
    "PAPER",
    "PUBLIC_NLCL",
    "PatchDiscriminator",
    "ProjectionHead",
    "ResidualGenerator",
    "default_location_stages",
    "model_size_mb",
]


@dataclass(frozen=True)
class GeneratorConfig:
    """Width and residual-block count of both generators."""

    width: int
    num_blocks: int


#: The paper's generator: 9 residual blocks (§5.4); width 60 matches Table 8's 2.6 MB (see module docstring).
PAPER = GeneratorConfig(width=60, num_blocks=9)
#: The public NLCL code's generator: 32 channels, 16 blocks, 316,195 parameters.
PUBLIC_NLCL = GeneratorConfig(width=32, num_blocks=16)

#: Table 4's layer-contrastive encoders: the discriminator (the paper's choice), the image generator for both
#: layers, or the image generator for B and the rain generator for R.
ENCODERS: tuple[str, ...] = ("discriminator", "image_generator", "image_rain_generators")


def _instance_norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class _ResBlock(nn.Module):
    """conv → IN → ReLU → conv → IN, plus the input."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), _instance_norm(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), _instance_norm(width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResidualGenerator(nn.Module):
    """One layer generator (G_B or G_R): conv → ``num_blocks`` ResBlocks → conv-IN-ReLU-conv → conv.

    Works at full resolution (no down-sampling), on images in [0, 1] of any size; the output has no
    activation (a rain layer can be negative). :meth:`encode` returns the features at chosen *stages*:
    stage 0 is the head conv's output, stage ``i`` the output of residual block ``i``.
    """

    def __init__(self, width: int = PAPER.width, num_blocks: int = PAPER.num_blocks, *,
                 neck_norm: bool = False) -> None:
        super().__init__()
        if width < 1 or num_blocks < 1:
            raise ValueError(f"width and num_blocks must be >= 1, got {width} and {num_blocks}")
        self.width, self.num_blocks = width, num_blocks
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.ModuleList(_ResBlock(width) for _ in range(num_blocks))
        # neck_norm: the public code's instance norm in the neck (module docstring: why it is off by default)
        self.neck = nn.Sequential(nn.Conv2d(width, width, 3, padding=1),
                                  _instance_norm(width) if neck_norm else nn.Identity(), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1))
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(x)
        for block in self.blocks:
            h = block(h)
        return self.tail(self.neck(h))

    def encode(self, x: Tensor, stages: tuple[int, ...]) -> list[Tensor]:
        """Feature maps (``N×width×H×W``) at ``stages`` (sorted, in ``0..num_blocks``); runs only as deep as
        needed."""
        if not stages or list(stages) != sorted(set(stages)) or stages[0] < 0 or stages[-1] > self.num_blocks:
            raise ValueError(f"stages must be distinct, increasing, within 0..{self.num_blocks}; got {stages}")
        h = self.head(x)
        out = [h] if stages[0] == 0 else []
        for index, block in enumerate(self.blocks[: stages[-1]], start=1):
            h = block(h)
            if index in stages:
                out.append(h)
        return out


def default_location_stages(num_blocks: int) -> tuple[int, ...]:
    """G_B's encoder stages for the location contrastive: the head and every second block of the
    first half (CUT samples its generator's encoder half): 9 blocks → (0, 2, 4)."""
    return tuple(range(0, max(num_blocks // 2, 1) + 1, 2))


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix ``NLayerDiscriminator``): 64 filters, 3 strided layers, 4×4 kernels, IN, LeakyReLU 0.2.

    Layers: conv(3→64, s2) → LReLU; conv(64→128, s2) → IN → LReLU; conv(128→256, s2) → IN → LReLU;
    conv(256→512, s1) → IN → LReLU; conv(512→1, s1): a map of real/fake scores. :meth:`features`
    returns the activations of the first four (the *feature layers*, strides 2, 4, 8, 8), which E_D uses.
    """

    def __init__(self, base: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        channels = [3] + [base * min(2 ** i, 8) for i in range(num_layers + 1)]
        layers = []
        for index, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
            stride = 2 if index < num_layers else 1
            parts: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride=stride, padding=1)]
            if index > 0:
                parts.append(_instance_norm(cout))
            parts.append(nn.LeakyReLU(0.2, inplace=True))
            layers.append(nn.Sequential(*parts))
        self.feature_layers = nn.ModuleList(layers)
        self.classifier = nn.Conv2d(channels[-1], 1, 4, stride=1, padding=1)
        self.channels = tuple(channels[1:])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.feature_layers:
            x = layer(x)
        return self.classifier(x)

    def features(self, x: Tensor, layers: tuple[int, ...]) -> list[Tensor]:
        """Activations of the feature layers ``layers`` (indices into :attr:`feature_layers`)."""
        out = []
        for index, layer in enumerate(self.feature_layers[: max(layers) + 1]):
            x = layer(x)
            if index in layers:
                out.append(x)
        return out


class ProjectionHead(nn.Module):
    """Two-layer MLP with 256 units, then L2 normalisation (§4.6; CUT's ``PatchSampleF``)."""

    def __init__(self, in_channels: int, units: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_channels, units), nn.ReLU(inplace=True), nn.Linear(units, units))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.mlp(x), dim=-1)


class MomentumEncoder(nn.Module):
    """The MoCo key encoder: a frozen copy of E_D (discriminator feature layers and heads).

    :meth:`update` moves it toward the online encoder, ``θ_k ← m θ_k + (1 − m) θ_q`` (MoCo Eq. (2),
    ANLCL §4.6, m = 0.99). Its parameters never require gradients; keys are computed under no_grad.
    """

    def __init__(self, feature_layers: nn.ModuleList, heads: nn.ModuleList, momentum: float = 0.99,
                 rain_layers: nn.ModuleList | None = None) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.momentum = momentum
        self.feature_layers = copy.deepcopy(feature_layers)
        self.heads = copy.deepcopy(heads)
        # Table 4's image-rain encoder: R's patches have their own trunk (G_R's early layers)
        self.rain_layers = copy.deepcopy(rain_layers) if rain_layers is not None else None
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, feature_layers: nn.ModuleList, heads: nn.ModuleList,
               rain_layers: nn.ModuleList | None = None, *, momentum: float | None = None) -> None:
        """One momentum step toward the online encoder's current weights (``momentum=0``: copy them)."""
        momentum = self.momentum if momentum is None else momentum
        if (rain_layers is None) != (self.rain_layers is None):
            raise ValueError("the online encoder and its momentum copy disagree on having a rain trunk")
        online = [*feature_layers.parameters(), *heads.parameters(),
                  *(rain_layers.parameters() if rain_layers is not None else ())]
        keys = [*self.feature_layers.parameters(), *self.heads.parameters(),
                *(self.rain_layers.parameters() if self.rain_layers is not None else ())]
        torch._foreach_mul_(keys, momentum)
        torch._foreach_add_(keys, [p.detach() for p in online], alpha=1.0 - momentum)


class ANLCLDeraining(nn.Module):
    """The deraining network ANLCL trains: ``B = G_B(O)``, ``R = G_R(O)``, ``O_hat = B + R`` (Eq. (1)).

    ``forward(O)`` returns a :class:`~derainlib.models.DerainOutput` with ``derained = B``, ``rain = R``
    and ``preliminary = O − R`` (the background the rain generator implies), so evaluation and
    ``derain --model`` treat it like every other derainlib network. At inference only G_B is needed.
    """

    def __init__(self, width: int = PAPER.width, num_blocks: int = PAPER.num_blocks, *,
                 neck_norm: bool = False) -> None:
        super().__init__()
        self.image_generator = ResidualGenerator(width, num_blocks, neck_norm=neck_norm)
        self.rain_generator = ResidualGenerator(width, num_blocks, neck_norm=neck_norm)

    def forward(self, rainy: Tensor) -> DerainOutput:
        background = self.image_generator(rainy)
        rain = self.rain_generator(rainy)
        return DerainOutput(derained=background, rain=rain, preliminary=rainy - rain, details=None)


class ANLCLNetworks(nn.Module):
    """Everything ANLCL trains, in one module (one state dict for checkpoints).

    - ``deraining``: :class:`ANLCLDeraining` (G_B, G_R);
    - ``discriminator``: :class:`PatchDiscriminator` (D, and E_D's trunk);
    - ``layer_heads``: one :class:`ProjectionHead` per feature layer of the layer-contrastive encoder:
      the discriminator's ``layer_features`` (``encoder="discriminator"``) or the generators'
      ``location_stages`` (Table 4's generator encoders, :data:`ENCODERS`);
    - ``location_heads``: one :class:`ProjectionHead` per G_B stage in ``location_stages``;
    - ``key_encoder``: the :class:`MomentumEncoder` of E_D (``None`` with ``momentum=None``: keys then come
      from the online encoder, detached).

    Which optimiser owns which parameters: :meth:`generator_parameters` (G_B, G_R and both head sets,
    all trained by the generator-side loss), :meth:`discriminator_parameters` (D, by the GAN loss only).
    The layer-contrastive queries pass through D's feature layers, so the generator-side backward also
    leaves gradients in D: zero D's gradients before its own GAN backward (§4.6: E_D is the discriminator
    trained as one), and call :meth:`momentum_update` after each generator-side step.
    """

    def __init__(self, width: int = PAPER.width, num_blocks: int = PAPER.num_blocks, *,
                 layer_features: tuple[int, ...] = (0, 1, 2, 3), location_stages: tuple[int, ...] | None = None,
                 momentum: float | None = 0.99, head_units: int = 256, encoder: str = "discriminator",
                 neck_norm: bool = False) -> None:
        super().__init__()
        check_choice("encoder", encoder, ENCODERS)
        self.encoder = encoder
        self.deraining = ANLCLDeraining(width, num_blocks, neck_norm=neck_norm)
        self.discriminator = PatchDiscriminator()
        _check_feature_layers(self.discriminator, layer_features)
        self.location_stages = (tuple(location_stages) if location_stages is not None
                                else default_location_stages(num_blocks))
        if encoder == "discriminator":
            self.layer_features = tuple(sorted(set(layer_features)))
            channels = [self.discriminator.channels[i] for i in self.layer_features]
        else:  # G_B's (and G_R's) stages, as the location encoder reads them
            self.layer_features = self.location_stages
            channels = [width] * len(self.layer_features)
        self.layer_heads = nn.ModuleList(ProjectionHead(c, head_units) for c in channels)
        self.location_heads = nn.ModuleList(ProjectionHead(width, head_units) for _ in self.location_stages)
        rain_trunk = self._trunk("rain")
        self.key_encoder = (MomentumEncoder(self._trunk("image"), self.layer_heads, momentum,
                                            rain_layers=rain_trunk if rain_trunk is not None else None)
                            if momentum is not None else None)

    def _trunk(self, layer: str) -> nn.ModuleList | None:
        """The online layer-contrastive trunk for ``layer`` ("image" or "rain"): layers run in sequence,
        :attr:`layer_features` indexes their outputs. ``None`` for "rain" when both layers share the trunk.
        A generator's trunk is a plain view of its head and first blocks (not registered twice)."""
        if self.encoder == "discriminator":
            return self.discriminator.feature_layers if layer == "image" else None
        if layer == "rain" and self.encoder == "image_generator":
            return None
        generator = (self.deraining.rain_generator if layer == "rain" else self.deraining.image_generator)
        return nn.ModuleList([generator.head, *generator.blocks[: max(self.layer_features)]])

    def forward(self, rainy: Tensor) -> DerainOutput:
        return self.deraining(rainy)

    def generator_parameters(self) -> list[nn.Parameter]:
        """G_B, G_R and the MLP heads (the public code's optimiser bug left two heads untrained)."""
        return [*self.deraining.parameters(), *self.layer_heads.parameters(), *self.location_heads.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def layer_embeddings(self, images: Tensor, positions: Tensor, patch_size: int, *,
                         key: bool = False, layer: str = "image") -> list[Tensor]:
        """E_D(p) of the patches at ``positions`` (``N×...×2``) of ``images``: one ``N×...×256`` unit-norm
        tensor per feature layer. ``key=True`` uses the momentum encoder under no_grad (MoCo keys).
        ``layer`` ("image" for B's patches, "rain" for R's) picks the trunk when the encoder has one per
        layer (``encoder="image_rain_generators"``); the other encoders embed both layers alike."""
        check_choice("layer", layer, ("image", "rain"))
        if key and self.key_encoder is not None:
            trunk = (self.key_encoder.rain_layers if layer == "rain" and self.key_encoder.rain_layers is not None
                     else self.key_encoder.feature_layers)
            with torch.no_grad():
                return _embed_patches(trunk, self.key_encoder.heads, self.layer_features, images, positions, patch_size)
        trunk = self._trunk(layer)
        trunk = trunk if trunk is not None else self._trunk("image")
        out = _embed_patches(trunk, self.layer_heads, self.layer_features, images, positions, patch_size)
        return [o.detach() for o in out] if key else out

    def location_embeddings(self, images: Tensor, positions: Tensor, patch_size: int) -> list[Tensor]:
        """E_{G_B}(p): G_B's stage features of the patches at ``positions``, through the location heads."""
        image_hw = (images.shape[-2], images.shape[-1])
        maps = self.deraining.image_generator.encode(images, self.location_stages)
        return [head(patch_features(m, positions, patch_size, image_hw)) for head, m in zip(self.location_heads, maps)]

    def momentum_update(self) -> None:
        """One MoCo step of the key encoder (call after each optimiser step of the heads)."""
        if self.key_encoder is not None:
            self.key_encoder.update(self._trunk("image"), self.layer_heads, self._trunk("rain"))

    def reset_key_encoder(self) -> None:
        """Make the key encoder a copy of the online encoder, as MoCo starts (after loading new weights)."""
        if self.key_encoder is not None:
            self.key_encoder.update(self._trunk("image"), self.layer_heads, self._trunk("rain"), momentum=0.0)


def _check_feature_layers(discriminator: PatchDiscriminator, layer_features: tuple[int, ...]) -> None:
    depth = len(discriminator.feature_layers)
    if not layer_features or min(layer_features) < 0 or max(layer_features) >= depth:
        raise ValueError(f"layer_features must index the discriminator's {depth} "
                         f"feature layers, got {layer_features}")


def _run_layers(layers: nn.ModuleList, x: Tensor, wanted: tuple[int, ...]) -> list[Tensor]:
    out = []
    for index, layer in enumerate(layers[: max(wanted) + 1]):
        x = layer(x)
        if index in wanted:
            out.append(x)
    return out


def _embed_patches(trunk: nn.ModuleList, heads: nn.ModuleList, layers: tuple[int, ...], images: Tensor,
                   positions: Tensor, patch_size: int) -> list[Tensor]:
    """The patches at ``positions`` of ``images`` through ``trunk``'s outputs ``layers``, each through its head."""
    maps = _run_layers(trunk, images, layers)
    image_hw = (images.shape[-2], images.shape[-1])
    return [head(patch_features(m, positions, patch_size, image_hw)) for head, m in zip(heads, maps)]


class DiscriminatorEncoder(nn.Module):
    """E_D alone, for adding ANLCL's loss to another deraining network (Table 6): a
    :class:`PatchDiscriminator`, one :class:`ProjectionHead` per feature layer, and their momentum copy.

    §5.5: "we only need to enforce the layer contrastive and asymmetric contrastive loss on the existing
    methods". Those terms embed patches of the two layers with E_D, ANLCL's discriminator; a supervised network
    has none, so this module brings one, trained as ANLCL trains it (least squares, clean images against the
    network's output) and used only while training: the deraining network gains no parameters. It has
    :class:`ANLCLNetworks`' ``layer_embeddings`` and ``momentum_update``, so
    :func:`derainlib.losses.anlcl.contrastive_terms` takes it in place of ANLCL's networks.
    """

    def __init__(self, layer_features: tuple[int, ...] = (0, 1, 2, 3), momentum: float = 0.99,
                 head_units: int = 256) -> None:
        super().__init__()
        self.discriminator = PatchDiscriminator()
        _check_feature_layers(self.discriminator, layer_features)
        self.layer_features = tuple(sorted(set(layer_features)))
        self.layer_heads = nn.ModuleList(ProjectionHead(self.discriminator.channels[i], head_units)
                                         for i in self.layer_features)
        self.key_encoder = MomentumEncoder(self.discriminator.feature_layers, self.layer_heads, momentum)

    def layer_embeddings(self, images: Tensor, positions: Tensor, patch_size: int, *,
                         key: bool = False, layer: str = "image") -> list[Tensor]:
        """E_D(p) of the patches at ``positions`` (as :meth:`ANLCLNetworks.layer_embeddings`; both layers
        share the trunk, so ``layer`` changes nothing). ``key=True``: the momentum encoder, under no_grad."""
        check_choice("layer", layer, ("image", "rain"))
        if key:
            with torch.no_grad():
                return _embed_patches(self.key_encoder.feature_layers, self.key_encoder.heads, self.layer_features,
                                      images, positions, patch_size)
        return _embed_patches(self.discriminator.feature_layers, self.layer_heads, self.layer_features, images,
                              positions, patch_size)

    def head_parameters(self) -> list[nn.Parameter]:
        """The MLP heads: trained by the contrastive terms, with the deraining network."""
        return list(self.layer_heads.parameters())

    def momentum_update(self) -> None:
        """One MoCo step of the key encoder (call after each optimiser step of the heads)."""
        self.key_encoder.update(self.discriminator.feature_layers, self.layer_heads)


def model_size_mb(model: nn.Module, bytes_per_parameter: int = 4) -> float:
    """Parameter storage in MB (10^6 bytes), float32 by default: Table 8's "Size (MB)"."""
    return count_parameters(model) * bytes_per_parameter / 1e6

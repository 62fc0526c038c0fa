"""DualSCRNet: Semi-DRDNet's dual sample-augmented contrastive regularisation (Sec. III-C).

The loss is a ratio of feature distances in a frozen VGG-16 (Eq. (6) supervised, Eq. (8)
unsupervised): pull the derained anchor toward a clean positive, push it away from a set of rainy
negatives, at the 2nd, 3rd and 5th max-pool with weights 0.2, 0.5 and 1.

The two sample augmentations of the paper, and Table VII's ablation over them:

* **Negatives (Eq. (5))**: a FIFO memory bank of rain layers produced by the RRN in both phases;
  ``O_a^k = I + R^k`` for m-1 bank layers, plus the original rainy image (:func:`augmented_negatives`).
  The unsupervised phase reads only real-world layers.
* **Positive (Eq. (7))**: the unpaired clean image is moved toward the real domain of the derained
  real image. The paper uses AdaAttN; we use AdaIN or a pixel colour transfer (a documented
  deviation, see :func:`adain`).

The VGG-16 and its weights are in :mod:`derainlib.models.vgg`, the memory bank in
:mod:`derainlib.losses.memory_bank`, the positive augmentations in :mod:`derainlib.losses.domain_transforms`.

Three choices the paper leaves open, as options whose defaults are the literal reading
(:class:`DualSCRNet`; notebook 11 and ``derainlib.experiments.semi_drdnet_stability`` measure them):

* ``negative_base``: Eq. (5) adds the bank's rain to ``I`` (``"derained"``, literal). The anchor is
  ``I`` itself, so every step the negatives move with it and keep pushing it along ``-R``: nothing
  but the L1 terms bounds that drift, and the unsupervised phase has no L1 term. ``"clean"`` adds
  the rain to the phase's positive instead (``B_s``; the unpaired ``B_r``), a fixed target.
* ``clamp_images``: clamp the anchor and the negatives to [0, 1] before the VGG (the VGG was
  trained on images), which also stops the push once the output leaves the image range.
* ``distance``: squared L2 (Eq. (6), literal) or L1 (as AECR-Net's contrastive regulariser).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..models.vgg import FEATURE_POOLS, VGG16Features
# adain is not used here: the embedding analysis imports it from this module, with VGG16Features.
from .domain_transforms import POSITIVE_AUGMENTATIONS, adain, adain_features, colour_transfer
from .memory_bank import DOMAINS, RainMemoryBank, augmented_negatives

#: Table VII: standard module, positive-augmented, negative-augmented, both (DualSCRNet).
CONTRASTIVE_SETTINGS: tuple[str, ...] = ("standard", "aug_pos", "aug_neg", "dual")
#: What Eq. (5) adds the bank's rain layers to: the derained anchor (literal) or the phase's positive.
NEGATIVE_BASES: tuple[str, ...] = ("derained", "clean")
#: Feature distance in Eq. (6)/(8): squared L2 (literal) or L1.
DISTANCES: tuple[str, ...] = ("squared_l2", "l1")

#: Sec. III-C: features after the 2nd, 3rd and 5th max-pool, weighted 0.2, 0.5 and 1.
DEFAULT_LAYER_WEIGHTS: tuple[float, float, float] = (0.2, 0.5, 1.0)


# --------------------------------------------------------------------------------------------
# The contrastive ratio, Eq. (6) / (8)
# --------------------------------------------------------------------------------------------


def _per_sample_distance(a: Tensor, b: Tensor, distance: str) -> Tensor:
    diff = (a - b).flatten(1)
    return (diff.pow(2) if distance == "squared_l2" else diff.abs()).mean(dim=1)


def contrastive_ratio(
    anchor: Sequence[Tensor],
    positive: Sequence[Tensor],
    negatives: Sequence[Sequence[Tensor]],
    layer_weights: Sequence[float] = DEFAULT_LAYER_WEIGHTS,
    eps: float = 1e-7,
    distance: str = "squared_l2",
) -> Tensor:
    """Eq. (6) / Eq. (8): ``sum_k sum_i w_i ||phi_i(P) - phi_i(A)||^2 / ||phi_i(N_k) - phi_i(A)||^2``.

    ``anchor``, ``positive`` and each ``negatives[k]`` are lists of per-layer features
    (``N x C_i x H_i x W_i``). Each squared distance is the per-element *mean* of squared
    differences, per sample: within a layer the ratio of means equals the ratio of sums (the
    layer size cancels), and means stay in a sane float range. ``distance="l1"`` uses mean
    absolute differences instead (not the paper's; see the module docstring). The ratio is
    averaged over the batch. Positive and negatives are constants (detached); only the anchor
    gets gradients. Computed in float32, so it is safe under bf16 autocast.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance={distance!r}: expected one of {DISTANCES}")
    if not (len(anchor) == len(positive) == len(layer_weights)):
        raise ValueError("anchor, positive and layer_weights need one entry per feature layer")
    if len(negatives) == 0:
        raise ValueError("at least one negative is needed")
    total = anchor[0].new_zeros(anchor[0].shape[0], dtype=torch.float32)
    for i, weight in enumerate(layer_weights):
        a = anchor[i].float()
        d_pos = _per_sample_distance(positive[i].detach().float(), a, distance)
        for negative in negatives:
            if len(negative) != len(anchor):
                raise ValueError("each negative needs one feature map per layer")
            d_neg = _per_sample_distance(negative[i].detach().float(), a, distance)
            total = total + weight * d_pos / (d_neg + eps)
    return total.mean()


# --------------------------------------------------------------------------------------------
# DualSCRNet
# --------------------------------------------------------------------------------------------


class DualSCRNet(nn.Module):
    """Dual sample-augmented contrastive regularisation, Eq. (5)-(8), with Table VII's settings.

    ``setting`` (``CONTRASTIVE_SETTINGS``):

    * ``"standard"``: negative = the rainy image only; positive = the clean image as is.
    * ``"aug_pos"``: augmented positive (unsupervised phase, Eq. (7)); rainy-only negative.
    * ``"aug_neg"``: memory-bank negatives (Eq. (5)); plain positive.
    * ``"dual"``: both (the paper's DualSCRNet).

    The positive is augmented only in the unsupervised phase (the supervised positive is the
    paired ground truth). ``positive_augmentation`` picks ``"adain"`` (features) or ``"colour"``
    (pixels). The training loop calls :meth:`supervised` / :meth:`unsupervised` for the loss and
    :meth:`remember` to push the RRN's rain layers after each phase.

    ``negative_base``, ``clamp_images`` and ``distance`` are the three choices the paper leaves open
    (module docstring); their defaults are the literal reading of Eq. (5) and (6).

    Each call runs the VGG twice: once without grad on positive and all negatives concatenated
    along the batch, once with grad on the anchor. ``state_dict`` holds the memory bank (as extra
    state), not the VGG weights.
    """

    def __init__(
        self,
        vgg_weights: str = "hed",
        setting: str = "dual",
        positive_augmentation: str = "adain",
        num_negatives: int = 4,
        bank_capacity: int = 64,
        layer_weights: Sequence[float] = DEFAULT_LAYER_WEIGHTS,
        seed: int = 0,
        cache_dir: Path | str | None = None,
        negative_base: str = "derained",
        clamp_images: bool = False,
        distance: str = "squared_l2",
    ) -> None:
        super().__init__()
        if negative_base not in NEGATIVE_BASES:
            raise ValueError(f"negative_base={negative_base!r}: expected one of {NEGATIVE_BASES}")
        if distance not in DISTANCES:
            raise ValueError(f"distance={distance!r}: expected one of {DISTANCES}")
        if setting not in CONTRASTIVE_SETTINGS:
            raise ValueError(f"setting={setting!r}: expected one of {CONTRASTIVE_SETTINGS}")
        if positive_augmentation not in POSITIVE_AUGMENTATIONS:
            raise ValueError(
                f"positive_augmentation={positive_augmentation!r}: expected one of {POSITIVE_AUGMENTATIONS}"
            )
        if len(layer_weights) != len(FEATURE_POOLS):
            raise ValueError(f"layer_weights needs {len(FEATURE_POOLS)} values, got {len(layer_weights)}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        self.setting = setting
        self.positive_augmentation = positive_augmentation
        self.num_negatives = num_negatives
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.negative_base = negative_base
        self.clamp_images = clamp_images
        self.distance = distance
        self.vgg = VGG16Features(vgg_weights, cache_dir)
        self.bank = RainMemoryBank(bank_capacity, seed)

    @property
    def augments_negatives(self) -> bool:
        return self.setting in ("aug_neg", "dual")

    @property
    def augments_positive(self) -> bool:
        return self.setting in ("aug_pos", "dual")

    def supervised(self, derained_s: Tensor, clean_s: Tensor, rainy_s: Tensor) -> Tensor:
        """Eq. (6), ``L_Dual(sup)``: anchor = the network's final derained synthetic output, positive =
        its ground truth ``B_s``, negatives = Eq. (5)'s set from any rain layer (or ``[O_s]``)."""
        background = derained_s if self.negative_base == "derained" else clean_s
        negatives = (
            augmented_negatives(background, rainy_s, self.bank, self.num_negatives, real_only=False)
            if self.augments_negatives
            else [rainy_s]
        )
        return self._contrast(derained_s, clean_s, negatives, adain_positive=False)

    def unsupervised(self, derained_r: Tensor, clean_unpaired: Tensor, rainy_r: Tensor) -> Tensor:
        """Eq. (8), ``L_Dual(unsup)``: anchor = the derained real image ``I_r``, positive = the unpaired
        clean image moved toward ``I_r``'s statistics (Eq. (7)) or as is, negatives = Eq. (5)'s set
        from real-world rain layers only (or ``[O_r]``)."""
        positive = clean_unpaired
        adain_positive = False
        if self.augments_positive:
            if self.positive_augmentation == "colour":
                positive = colour_transfer(clean_unpaired, derained_r.detach())
            else:
                adain_positive = True  # done on the features, after the VGG pass
        background = derained_r if self.negative_base == "derained" else positive
        negatives = (
            augmented_negatives(background, rainy_r, self.bank, self.num_negatives, real_only=True)
            if self.augments_negatives
            else [rainy_r]
        )
        return self._contrast(derained_r, positive, negatives, adain_positive=adain_positive)

    def remember(self, rain: Tensor, domain: str) -> None:
        """Push the RRN's rain layers ``f(O)`` (detached) into the memory bank, tagged by domain."""
        self.bank.push(rain.detach(), domain)

    def _contrast(
        self, anchor: Tensor, positive: Tensor, negatives: list[Tensor], *, adain_positive: bool
    ) -> Tensor:
        n = anchor.shape[0]
        for t in (positive, *negatives):
            if t.shape != anchor.shape:
                raise ValueError(
                    f"positive/negative shape {tuple(t.shape)} differs from the anchor's {tuple(anchor.shape)}"
                )
        if self.clamp_images:  # the anchor gets no gradient from this loss where it left [0, 1]
            anchor = anchor.clamp(0.0, 1.0)
            negatives = [t.clamp(0.0, 1.0) for t in negatives]
        # One no-grad VGG pass for every constant, one with grad for the anchor: never one per negative.
        with torch.no_grad():
            constants = self.vgg(torch.cat([t.detach().float() for t in (positive, *negatives)]))
        anchor_feats = self.vgg(anchor)
        chunks = [f.float().split(n) for f in constants]  # per layer: (positive, neg_1, ..., neg_m)
        positive_feats = [c[0] for c in chunks]
        negative_feats = [[c[k] for c in chunks] for k in range(1, len(negatives) + 1)]
        if adain_positive:
            positive_feats = adain_features(positive_feats, [a.detach() for a in anchor_feats])
        return contrastive_ratio(anchor_feats, positive_feats, negative_feats, self.layer_weights,
                                 distance=self.distance)

    def get_extra_state(self) -> dict[str, Any]:
        return {"bank": self.bank.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.bank.load_state_dict(state["bank"])

    def extra_repr(self) -> str:
        return (
            f"setting={self.setting!r}, positive_augmentation={self.positive_augmentation!r}, "
            f"num_negatives={self.num_negatives}, layer_weights={self.layer_weights}, "
            f"negative_base={self.negative_base!r}, clamp_images={self.clamp_images}, distance={self.distance!r}, "
            f"vgg_weights={self.vgg.weights!r}, bank_capacity={self.bank.capacity}"
        )


__all__ = [
    "CONTRASTIVE_SETTINGS",
    "DEFAULT_LAYER_WEIGHTS",
    "DISTANCES",
    "DOMAINS",
    "DualSCRNet",
    "NEGATIVE_BASES",
    "POSITIVE_AUGMENTATIONS",
    "RainMemoryBank",
    "VGG16Features",
    "adain",
    "adain_features",
    "augmented_negatives",
    "colour_transfer",
    "contrastive_ratio",
]

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

Choices the paper leaves open, as options whose defaults are the literal reading
(:class:`DualSCRNet`; notebook 11 and ``derainlib.experiments.semi_drdnet_stability`` measure them;
the open-choices table is ``docs/semi_drdnet_choices.md``):

* ``negative_base``: Eq. (5) adds the bank's rain to ``I`` (``"derained"``, literal). The anchor is
  ``I`` itself, so every step the negatives move with it and keep pushing it along ``-R``: nothing
  but the L1 terms bounds that drift, and the unsupervised phase has no L1 term. ``"clean"`` adds
  the rain to the phase's positive instead (``B_s``; the unpaired ``B_r``), a fixed target.
* ``clamp_images``: clamp the anchor and the negatives to [0, 1] before the VGG (the VGG was
  trained on images), which also stops the push once the output leaves the image range.
* ``distance``: squared L2 (Eq. (6), literal) or L1 (as AECR-Net's contrastive regulariser).
* ``negative_gradient``: whether ``I`` keeps its gradient inside Eq. (5)'s negatives ``I + R^k``
  (literal: no, they are constants that follow the anchor; with it, the term is the gradient of
  one fixed function of ``I`` per step).
* ``ratio``: Eq. (6)'s ratio per sample, averaged over the batch (literal), or per batch
  (``sum_n d(P, A) / sum_n d(N, A)``), so that a crop with faint rain cannot dominate.
* ``negative_reduction``: the sum over k written in Eq. (6) (literal) or the mean, whose scale does
  not grow with the number of negatives.
* ``unsupervised_distance``: Eq. (8)'s positive is an unpaired image of another scene, so an aligned
  feature distance pulls ``I_r`` toward another layout; ``"gram"`` (Gram matrices, Gatys et al. 2016)
  and ``"statistics"`` (channel means and standard deviations) need no spatial alignment.
* ``vgg_precision``: under bf16 autocast the VGG's convolutions run in bf16 (``"autocast"``, what
  the committed study did; only the ratio is float32), or always in float32 (``"fp32"``).
* ``bank_bounds``: a faint-layer filter on the memory bank (:func:`~derainlib.losses.memory_bank.magnitude_mask`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..models.vgg import FEATURE_POOLS, VGG16Features
from ..options import check_choice
# adain is not used here: the embedding analysis imports it from this module, with VGG16Features.
from .domain_transforms import POSITIVE_AUGMENTATIONS, adain, adain_features, colour_transfer
from .memory_bank import DOMAINS, RainMemoryBank, augmented_negatives

#: Table VII: standard module, positive-augmented, negative-augmented, both (DualSCRNet).
CONTRASTIVE_SETTINGS: tuple[str, ...] = ("standard", "aug_pos", "aug_neg", "dual")
#: What Eq. (5) adds the bank's rain layers to: the derained anchor (literal) or the phase's positive.
NEGATIVE_BASES: tuple[str, ...] = ("derained", "clean")
#: Feature distance in Eq. (6)/(8): squared L2 (literal), L1, and two that need no spatial alignment.
DISTANCES: tuple[str, ...] = ("squared_l2", "l1", "gram", "statistics")
#: Eq. (6)'s ratio per sample (literal) or per batch.
RATIOS: tuple[str, ...] = ("per_sample", "per_batch")
#: Eq. (6)'s reduction over the negatives k: the sum (literal) or the mean.
NEGATIVE_REDUCTIONS: tuple[str, ...] = ("sum", "mean")

#: Sec. III-C: features after the 2nd, 3rd and 5th max-pool, weighted 0.2, 0.5 and 1.
DEFAULT_LAYER_WEIGHTS: tuple[float, float, float] = (0.2, 0.5, 1.0)


# --------------------------------------------------------------------------------------------
# The contrastive ratio, Eq. (6) / (8)
# --------------------------------------------------------------------------------------------


def gram_matrix(features: Tensor) -> Tensor:
    """``N x C x C`` Gram matrices ``F F^T / (H W)`` of ``N x C x H x W`` features (Gatys et al., CVPR 2016).

    A sum over positions: it does not change when the positions are permuted, so two images of
    different scenes can be compared by their texture without aligning them.
    """
    flat = features.float().flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


def channel_statistics(features: Tensor, eps: float = 1e-5) -> Tensor:
    """``N x 2C``: each channel's mean and standard deviation over positions (AdaIN's statistics)."""
    flat = features.float().flatten(2)
    return torch.cat([flat.mean(dim=2), (flat.var(dim=2, unbiased=False) + eps).sqrt()], dim=1)


def feature_distance(a: Tensor, b: Tensor, distance: str) -> Tensor:
    """Per-sample distance (shape ``N``) between two ``N x C x H x W`` feature maps.

    ``"squared_l2"`` / ``"l1"``: mean squared / absolute difference, position by position;
    ``"gram"``: mean squared difference of the :func:`gram_matrix`; ``"statistics"``: of the
    :func:`channel_statistics`. The last two ignore where things are.
    """
    if distance == "gram":
        a, b = gram_matrix(a), gram_matrix(b)
    elif distance == "statistics":
        a, b = channel_statistics(a), channel_statistics(b)
    else:
        check_choice("distance", distance, DISTANCES)
    diff = (a - b).flatten(1)
    return (diff.abs() if distance == "l1" else diff.pow(2)).mean(dim=1)


def contrastive_ratio(
    anchor: Sequence[Tensor],
    positive: Sequence[Tensor],
    negatives: Sequence[Sequence[Tensor]],
    layer_weights: Sequence[float] = DEFAULT_LAYER_WEIGHTS,
    eps: float = 1e-7,
    distance: str = "squared_l2",
    *,
    ratio: str = "per_sample",
    negative_reduction: str = "sum",
    detach_negatives: bool = True,
) -> Tensor:
    """Eq. (6) / Eq. (8): ``sum_k sum_i w_i ||phi_i(P) - phi_i(A)||^2 / ||phi_i(N_k) - phi_i(A)||^2``.

    ``anchor``, ``positive`` and each ``negatives[k]`` are lists of per-layer features
    (``N x C_i x H_i x W_i``). Each squared distance is the per-element *mean* of squared
    differences, per sample: within a layer the ratio of means equals the ratio of sums (the
    layer size cancels), and means stay in a sane float range. ``distance="l1"`` uses mean
    absolute differences instead, ``"gram"`` / ``"statistics"`` compare unaligned summaries
    (:func:`feature_distance`; not the paper's, see the module docstring).

    ``ratio="per_sample"`` (literal): each sample's ratio, averaged over the batch.
    ``ratio="per_batch"``: per layer and negative, ``sum_n d_pos(n) / sum_n d_neg(n)``.
    ``negative_reduction``: sum (literal) or mean over the negatives. Layers of weight 0 are skipped.
    The positive is a constant (detached); the negatives too unless ``detach_negatives=False``.
    The ratio is computed in float32 (the features themselves are in the precision they came in).
    """
    check_choice("distance", distance, DISTANCES)
    check_choice("ratio", ratio, RATIOS)
    check_choice("negative_reduction", negative_reduction, NEGATIVE_REDUCTIONS)
    if not (len(anchor) == len(positive) == len(layer_weights)):
        raise ValueError("anchor, positive and layer_weights need one entry per feature layer")
    if len(negatives) == 0:
        raise ValueError("at least one negative is needed")
    for negative in negatives:
        if len(negative) != len(anchor):
            raise ValueError("each negative needs one feature map per layer")
    per_batch = ratio == "per_batch"
    total = anchor[0].new_zeros(1 if per_batch else anchor[0].shape[0], dtype=torch.float32)
    scale = 1.0 / len(negatives) if negative_reduction == "mean" else 1.0
    for i, weight in enumerate(layer_weights):
        if weight == 0:
            continue
        a = anchor[i].float()
        d_pos = feature_distance(positive[i].detach().float(), a, distance)
        for negative in negatives:
            n = negative[i].float()
            d_neg = feature_distance(n.detach() if detach_negatives else n, a, distance)
            if per_batch:
                d_pos_sum, d_neg_sum = d_pos.sum().view(1), d_neg.sum().view(1)
                total = total + scale * weight * d_pos_sum / (d_neg_sum + eps)
            else:
                total = total + scale * weight * d_pos / (d_neg + eps)
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

    ``negative_base``, ``clamp_images``, ``distance`` and the keyword-only options are choices the paper
    leaves open (module docstring); their defaults are the literal reading of Eq. (5)-(8).

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
        *,
        negative_gradient: bool = False,
        ratio: str = "per_sample",
        negative_reduction: str = "sum",
        unsupervised_distance: str | None = None,
        vgg_precision: str = "autocast",
        bank_bounds: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if unsupervised_distance is not None:
            check_choice("unsupervised_distance", unsupervised_distance, DISTANCES)
        check_choice("ratio", ratio, RATIOS)
        check_choice("negative_reduction", negative_reduction, NEGATIVE_REDUCTIONS)
        if negative_gradient and negative_base != "derained":
            raise ValueError("negative_gradient=True needs negative_base='derained': only I + R^k contains the anchor")
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
        self.negative_gradient = negative_gradient
        self.ratio = ratio
        self.negative_reduction = negative_reduction
        self.unsupervised_distance = distance if unsupervised_distance is None else unsupervised_distance
        self.bank_bounds = None if bank_bounds is None else (float(bank_bounds[0]), float(bank_bounds[1]))
        self.vgg = VGG16Features(vgg_weights, cache_dir, precision=vgg_precision)
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
        return self._contrast(derained_s, clean_s, self._with_gradient(negatives, background),
                              adain_positive=False, distance=self.distance)

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
        return self._contrast(derained_r, positive, self._with_gradient(negatives, background),
                              adain_positive=adain_positive, distance=self.unsupervised_distance)

    def _with_gradient(self, negatives: list[Tensor], background: Tensor) -> list[Tensor]:
        """With ``negative_gradient``, Eq. (5)'s ``I + R^k`` (built detached) get ``I``'s gradient back:
        ``(I + R^k) + (I - sg(I))`` has the same value and the gradient of ``I`` (the last negative, the
        rainy image ``O``, stays a constant)."""
        if not self.negative_gradient or len(negatives) == 1:
            return negatives
        attached = background - background.detach()
        return [n + attached for n in negatives[:-1]] + [negatives[-1]]

    def remember(self, rain: Tensor, domain: str) -> None:
        """Push the RRN's rain layers ``f(O)`` (detached) into the memory bank, tagged by domain; with
        ``bank_bounds``, only those the faint-layer filter keeps."""
        self.bank.push(rain.detach(), domain, bounds=self.bank_bounds)

    def _contrast(
        self, anchor: Tensor, positive: Tensor, negatives: list[Tensor], *, adain_positive: bool, distance: str
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
        # With negative_gradient, the augmented negatives I + R^k go through the pass with grad.
        through_grad = negatives[:-1] if self.negative_gradient else []
        constant = [positive, *negatives[len(through_grad):]]
        with torch.no_grad():
            constants = self.vgg(torch.cat([t.detach().float() for t in constant]))
        graded = self.vgg(torch.cat([anchor, *through_grad]) if through_grad else anchor)
        chunks = [f.float().split(n) for f in constants]  # per layer: (positive, [neg_1..m-1,] O)
        graded_chunks = [f.split(n) for f in graded]  # per layer: (anchor, [neg_1..m-1])
        anchor_feats = [c[0] for c in graded_chunks]
        positive_feats = [c[0] for c in chunks]
        negative_feats = ([[c[k] for c in graded_chunks] for k in range(1, len(through_grad) + 1)]
                          + [[c[k] for c in chunks] for k in range(1, len(constant))])
        if adain_positive:
            positive_feats = adain_features(positive_feats, [a.detach() for a in anchor_feats])
        return contrastive_ratio(anchor_feats, positive_feats, negative_feats, self.layer_weights,
                                 distance=distance, ratio=self.ratio, negative_reduction=self.negative_reduction,
                                 detach_negatives=not self.negative_gradient)

    def get_extra_state(self) -> dict[str, Any]:
        return {"bank": self.bank.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.bank.load_state_dict(state["bank"])

    def extra_repr(self) -> str:
        return (
            f"setting={self.setting!r}, positive_augmentation={self.positive_augmentation!r}, "
            f"num_negatives={self.num_negatives}, layer_weights={self.layer_weights}, "
            f"negative_base={self.negative_base!r}, clamp_images={self.clamp_images}, distance={self.distance!r}, "
            f"unsupervised_distance={self.unsupervised_distance!r}, negative_gradient={self.negative_gradient}, "
            f"ratio={self.ratio!r}, negative_reduction={self.negative_reduction!r}, "
            f"vgg_precision={self.vgg.precision!r}, bank_bounds={self.bank_bounds}, "
            f"vgg_weights={self.vgg.weights!r}, bank_capacity={self.bank.capacity}"
        )


__all__ = [
    "CONTRASTIVE_SETTINGS",
    "DEFAULT_LAYER_WEIGHTS",
    "DISTANCES",
    "DOMAINS",
    "DualSCRNet",
    "NEGATIVE_BASES",
    "NEGATIVE_REDUCTIONS",
    "RATIOS",
    "POSITIVE_AUGMENTATIONS",
    "RainMemoryBank",
    "VGG16Features",
    "adain",
    "adain_features",
    "augmented_negatives",
    "channel_statistics",
    "colour_transfer",
    "contrastive_ratio",
    "feature_distance",
    "gram_matrix",
]

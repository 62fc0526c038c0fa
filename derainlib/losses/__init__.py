"""Semi-DRDNet's losses: pixel terms (Eq. (11), (12)), DualSCRNet (Eq. (5)-(8)) and the totals
(Eq. (9), (10), (13))."""

from __future__ import annotations

from derainlib.losses.contrastive import (
    CONTRASTIVE_SETTINGS,
    DEFAULT_LAYER_WEIGHTS,
    DISTANCES,
    NEGATIVE_BASES,
    DualSCRNet,
    contrastive_ratio,
)
from derainlib.losses.domain_transforms import POSITIVE_AUGMENTATIONS, adain, adain_features, colour_transfer
from derainlib.losses.memory_bank import DOMAINS, RainMemoryBank, augmented_negatives
from derainlib.models.vgg import (
    VGG_WEIGHTS,
    VGG16Features,
    default_cache_dir,
    hed_vgg16_state_dict,
    hed_weights_file,
    imagenet_vgg16_file,
    imagenet_vgg16_state_dict,
)
from derainlib.losses.objectives import LossWeights, supervised_loss, total_loss, unsupervised_loss
from derainlib.losses.reconstruction import detail_repair_loss, rain_residual_loss

__all__ = [
    "CONTRASTIVE_SETTINGS",
    "DEFAULT_LAYER_WEIGHTS",
    "DISTANCES",
    "DOMAINS",
    "DualSCRNet",
    "LossWeights",
    "NEGATIVE_BASES",
    "POSITIVE_AUGMENTATIONS",
    "RainMemoryBank",
    "VGG16Features",
    "VGG_WEIGHTS",
    "adain",
    "adain_features",
    "augmented_negatives",
    "colour_transfer",
    "contrastive_ratio",
    "default_cache_dir",
    "detail_repair_loss",
    "hed_vgg16_state_dict",
    "hed_weights_file",
    "imagenet_vgg16_file",
    "imagenet_vgg16_state_dict",
    "rain_residual_loss",
    "supervised_loss",
    "total_loss",
    "unsupervised_loss",
]

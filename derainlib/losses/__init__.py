"""Semi-DRDNet's losses: pixel terms (Eq. (11), (12)), DualSCRNet (Eq. (5)-(8)) and the totals
(Eq. (9), (10), (13))."""

from __future__ import annotations

from derainlib.losses.anlcl import ANLCLLossWeights  # ANLCL's losses: see losses.anlcl
from derainlib.losses.contrastive import (
    CONTRASTIVE_SETTINGS,
    DEFAULT_LAYER_WEIGHTS,
    DISTANCES,
    NEGATIVE_BASES,
    NEGATIVE_REDUCTIONS,
    RATIOS,
    DualSCRNet,
    channel_statistics,
    contrastive_ratio,
    feature_distance,
    gram_matrix,
)
from derainlib.losses.domain_transforms import POSITIVE_AUGMENTATIONS, adain, adain_features, colour_transfer
from derainlib.losses.memory_bank import DOMAINS, RainMemoryBank, augmented_negatives, magnitude_mask
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
    "NEGATIVE_REDUCTIONS",
    "POSITIVE_AUGMENTATIONS",
    "RATIOS",
    "RainMemoryBank",
    "VGG16Features",
    "VGG_WEIGHTS",
    "adain",
    "adain_features",
    "augmented_negatives",
    "channel_statistics",
    "colour_transfer",
    "contrastive_ratio",
    "feature_distance",
    "gram_matrix",
    "default_cache_dir",
    "detail_repair_loss",
    "hed_vgg16_state_dict",
    "hed_weights_file",
    "imagenet_vgg16_file",
    "imagenet_vgg16_state_dict",
    "magnitude_mask",
    "rain_residual_loss",
    "supervised_loss",
    "total_loss",
    "unsupervised_loss",
]

"""Embedding image sets in a common feature space and measuring how close the sets are.

Semi-DRDNet's Fig. 8 embeds VGG-16 features of real-world and synthetic clean backgrounds with
t-SNE, with and without its positive augmentation (Eq. (7)). t-SNE places points, it does not
measure distances faithfully, so beside the picture we report a number computed in the feature
space itself: the mean distance from each sample of one set to its nearest neighbour in another.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

from ..losses.domain_transforms import adain
from ..models.vgg import VGG16Features


@torch.no_grad()
def vgg_features(images: torch.Tensor, vgg: VGG16Features, *, level: int = -1, style: torch.Tensor | None = None,
                 batch_size: int = 16) -> np.ndarray:
    """Flattened VGG-16 features (``level`` indexes pool2, pool3, pool5) of ``N×3×H×W`` images in [0, 1].

    With ``style`` (same length as ``images``), each image's features are AdaIN-transferred to the
    channel statistics of its style image's features: the feature-level positive augmentation.
    """
    if style is not None and len(style) != len(images):
        raise ValueError(f"style holds {len(style)} images for {len(images)} images: give one style image per image")
    rows = []
    for start in range(0, len(images), batch_size):
        feats = vgg(images[start:start + batch_size])[level].float()
        if style is not None:
            feats = adain(feats, vgg(style[start:start + batch_size])[level].float())
        rows.append(feats.flatten(1).cpu().numpy())
    return np.concatenate(rows).astype(np.float64)


def tsne_embedding(groups: dict[str, np.ndarray], *, seed: int = 0, pca_dims: int = 50) -> pd.DataFrame:
    """2-D t-SNE of all groups together (after PCA to ``pca_dims``, the usual practice); one row per sample."""
    names = list(groups)
    stacked = np.concatenate([groups[name] for name in names])
    labels = np.concatenate([[name] * len(groups[name]) for name in names])
    reduced = PCA(n_components=min(pca_dims, *stacked.shape), random_state=seed).fit_transform(stacked)
    perplexity = float(min(30.0, (len(stacked) - 1) / 3))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)
    return pd.DataFrame({"group": labels, "x": xy[:, 0], "y": xy[:, 1]})


def mean_nearest_distance(source: np.ndarray, target: np.ndarray) -> float:
    """Mean Euclidean distance from each row of ``source`` to its nearest row of ``target``."""
    distances, _ = NearestNeighbors(n_neighbors=1).fit(target).kneighbors(source)
    return float(distances.mean())

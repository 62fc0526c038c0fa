"""Where ANLCL's contrastive encoder puts the patches of the two layers (the paper's Fig. 10(b)).

The paper embeds patches of the decomposed image layer B and rain layer R with t-SNE for three models
(without the contrastive terms, with the layer contrastive of Eq. (5), with the asymmetric contrastive of
Eq. (8) too) and reads the picture: with the contrastive terms the two layers separate and the rain cluster
tightens. t-SNE places points, it does not measure distances faithfully, so :func:`layer_separation`
reports two numbers computed in the feature space itself: the silhouette of the two layers (1: apart,
0: mixed) and each layer's mean distance to its own centroid (the spread the asymmetric term acts on).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import silhouette_score

from ..nonlocal_sampling import random_anchors
from .embeddings import tsne_embedding

__all__ = ["IMAGE", "RAIN", "layer_patch_features", "layer_separation", "layer_tsne"]

IMAGE, RAIN = "image layer B", "rain layer R"


@torch.no_grad()
def layer_patch_features(networks, rainy: torch.Tensor, *, patches_per_image: int = 16, patch_size: int = 16,
                         feature_layer: int = -1, seed: int = 0) -> dict[str, np.ndarray]:
    """E_D's embedding (after its MLP head, the space Eq. (5) and (8) act on) of ``patches_per_image`` patches
    of B and of R at the same random locations of each rainy image (``N×3×H×W`` in [0, 1]), for one of the
    encoder's layers (default: the deepest). ``networks`` is an ANLCL model with ``layer_embeddings`` (e.g.
    :func:`derainlib.train_anlcl.load_networks`). A model trained without the contrastive terms still has
    its (untrained) heads: its points are a fixed random projection of the encoder's features."""
    networks.eval()
    out = networks(rainy)
    n, _, h, w = rainy.shape
    generator = torch.Generator().manual_seed(seed)
    anchors = random_anchors(n, patches_per_image, (h, w), patch_size, generator=generator, device=rainy.device)
    image = networks.layer_embeddings(out.derained, anchors, patch_size)[feature_layer]
    rain = networks.layer_embeddings(out.rain, anchors, patch_size, layer="rain")[feature_layer]
    return {IMAGE: image.reshape(-1, image.shape[-1]).float().cpu().numpy().astype(np.float64),
            RAIN: rain.reshape(-1, rain.shape[-1]).float().cpu().numpy().astype(np.float64)}


def layer_separation(features: dict[str, np.ndarray]) -> dict[str, float]:
    """Silhouette of the two layers' patches (Euclidean, in the embedding) and each layer's spread: the mean
    distance of its patches to their centroid (``spread_image``, ``spread_rain``)."""
    image, rain = features[IMAGE], features[RAIN]
    stacked = np.concatenate([image, rain])
    labels = np.r_[np.zeros(len(image)), np.ones(len(rain))]
    spread = {name: float(np.linalg.norm(x - x.mean(axis=0), axis=1).mean()) for name, x in (("image", image),
                                                                                             ("rain", rain))}
    return {"silhouette": float(silhouette_score(stacked, labels)), "spread_image": spread["image"],
            "spread_rain": spread["rain"]}


def layer_tsne(features_by_model: dict[str, dict[str, np.ndarray]], *, seed: int = 0) -> pd.DataFrame:
    """One t-SNE per model (columns ``model``, ``group``, ``x``, ``y``) of :func:`layer_patch_features`'s
    output, each model embedded on its own (their encoders differ, so their spaces are not one space)."""
    frames = [tsne_embedding(features, seed=seed).assign(model=name) for name, features in features_by_model.items()]
    return pd.concat(frames, ignore_index=True)[["model", "group", "x", "y"]]

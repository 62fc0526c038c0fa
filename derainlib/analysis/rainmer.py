"""Rainmer's representation analyses (supplement App. C), and the numbers that make its pictures falsifiable.

- **Spherical UMAP** (:func:`spherical_umap`): the embeddings are unit vectors, so UMAP maps them with the
  cosine metric onto a sphere (``output_metric="haversine"``), drawn as longitude/latitude (the supplement,
  following the umap-learn documentation): ``n_neighbors=50``, ``min_dist=0``, ``random_state=42``.
- **Relationship matrix** (:func:`relationship_matrix`): the mean cosine similarity between the embeddings of
  two datasets (supplement Fig. 2 (d)-(f)).
- **Beyond the paper**: the silhouette score per space (:func:`silhouette`), the cross-validated k-NN accuracy
  of the dataset label (:func:`knn_accuracy`), each dataset's share of its own points among their nearest
  neighbours (:func:`own_neighbour_share`: "isolated" as a number), a bootstrap confidence interval of every
  relationship score (:func:`bootstrap_relationships`), and the transfer test: the rank correlation
  (:func:`rank_correlation`) between a relationship score and the cross-domain PSNR of a deraining model
  trained on one domain and tested on the other (:func:`cross_domain_psnr`, :func:`transfer_pairs`).
- **Controls** for those numbers: a space scores against the same encoder untrained (its run's initial weights)
  and against :class:`ImageStatistics`, 12 numbers per image that nothing learns; a learned space that does not
  beat them has learned nothing about the datasets that their pixels' simplest statistics do not already say.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import atomic_path
from ..data.benchmark import SPLITS, open_domain, parse_domain, split_root
from ..evaluation import evaluate
from ..models.rainmer import embed

#: The supplement's UMAP settings (App. C.1).
UMAP_PARAMETERS = {"n_neighbors": 50, "metric": "cosine", "output_metric": "haversine", "min_dist": 0.0,
                   "random_state": 42}


@dataclass
class EmbeddingTable:
    """Embeddings of images of several datasets: ``labels`` and ``names`` per image, ``spaces`` by name
    (each ``N × D``, unit rows)."""

    labels: np.ndarray
    names: np.ndarray
    spaces: dict[str, np.ndarray]


# ----------------------------------------------------------------------------- embedding images


@torch.no_grad()
def embed_domains(encoder: nn.Module, root: str | Path, domains: Sequence[str], per_domain: int, size: int, *,
                  seed: int = 42, batch_size: int = 32) -> EmbeddingTable:
    """Embed up to ``per_domain`` rainy images of each domain, drawn at random (``seed``) from all its splits,
    each resized to ``size × size`` (the public code resizes to 128), with every space of ``encoder``."""
    device = next((parameter.device for parameter in encoder.parameters()), torch.device("cpu"))
    encoder.eval()
    labels, names, rows = [], [], {space: [] for space in encoder.spaces}
    for name in domains:
        domain, _ = parse_domain(name)
        sources = [open_domain(root, name, split) for split in SPLITS if split_root(root, domain, split).is_dir()]
        items = [(s, j) for s, source in enumerate(sources) for j in range(len(source))]
        if not items:
            raise FileNotFoundError(f"{root}: no images of domain {name!r}")
        rng = np.random.default_rng([seed, len(labels)])
        picks = rng.choice(len(items), size=min(per_domain, len(items)), replace=False)
        for start in range(0, len(picks), batch_size):
            chosen = [items[i] for i in picks[start:start + batch_size]]
            loaded = [sources[s][j] for s, j in chosen]
            images = torch.cat([F.interpolate(item["rainy"][None], size=(size, size), mode="bilinear",
                                              antialias=True, align_corners=False) for item in loaded])
            for space, vectors in embed(encoder, images.clamp(0, 1).to(device)).items():
                rows[space].append(vectors.float().cpu().numpy())
            labels += [name] * len(loaded)
            names += [item["name"] for item in loaded]
    return EmbeddingTable(np.array(labels), np.array(names),
                          {space: np.concatenate(parts).astype(np.float64) for space, parts in rows.items()})


class ImageStatistics(nn.Module):
    """The no-learning control "encoder": per colour channel the mean, the standard deviation and the mean
    absolute horizontal and vertical differences of the image (12 numbers: colour, contrast and the streak-like
    edge energy in each direction), in one space, ``"statistics"``. Scale them with :func:`standardized` before
    comparing images."""

    spaces = ("statistics",)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        images = images.float()
        horizontal = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(-2, -1))
        vertical = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=(-2, -1))
        return {"statistics": torch.cat([images.mean(dim=(-2, -1)), images.std(dim=(-2, -1)), horizontal, vertical],
                                        dim=1)}


def standardized(features: np.ndarray) -> np.ndarray:
    """Each column to zero mean and unit variance over the images (a constant column to 0), then each row to unit
    length, so that the cosine-based numbers compare images on every statistic alike."""
    spread = features.std(axis=0)
    z = (features - features.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.where(norms > 0, norms, 1.0)


def save_embeddings(path: Path, table: EmbeddingTable) -> None:
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, labels=table.labels, names=table.names,
                            **{f"space_{space}": vectors for space, vectors in table.spaces.items()})


def load_embeddings(path: str | Path) -> EmbeddingTable:
    with np.load(path) as data:
        spaces = {key.removeprefix("space_"): data[key] for key in data.files if key.startswith("space_")}
        return EmbeddingTable(data["labels"], data["names"], spaces)


def subset(table: EmbeddingTable, domains: Sequence[str]) -> EmbeddingTable:
    keep = np.isin(table.labels, list(domains))
    return EmbeddingTable(table.labels[keep], table.names[keep], {s: v[keep] for s, v in table.spaces.items()})


# ----------------------------------------------------------------------------- UMAP on the sphere


def spherical_umap(vectors: np.ndarray, *, n_epochs: int | None = None) -> pd.DataFrame:
    """UMAP of unit vectors onto the sphere with :data:`UMAP_PARAMETERS` (``n_neighbors`` capped below the
    sample count); returns ``longitude`` and ``latitude`` in degrees, one row per vector."""
    with warnings.catch_warnings():
        # umap-learn imports tqdm.auto (a warning without ipywidgets) and says a seed means one thread: both known
        warnings.filterwarnings("ignore", message="IProgress not found")
        warnings.filterwarnings("ignore", message="n_jobs value")
        import umap  # slow to import: only here

        parameters = dict(UMAP_PARAMETERS, n_neighbors=min(UMAP_PARAMETERS["n_neighbors"], len(vectors) - 1))
        theta_phi = umap.UMAP(**parameters, n_epochs=n_epochs).fit_transform(vectors)
    return sphere_to_lon_lat(theta_phi)


def sphere_to_lon_lat(theta_phi: np.ndarray) -> pd.DataFrame:
    """umap-learn's haversine output (polar angle θ, azimuth φ) as longitude/latitude in degrees."""
    theta, phi = theta_phi[:, 0], theta_phi[:, 1]
    x, y, z = np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)
    return pd.DataFrame({"longitude": np.degrees(np.arctan2(y, x)),
                         "latitude": np.degrees(np.arcsin(np.clip(z, -1.0, 1.0)))})


# ----------------------------------------------------------------------------- relationships


def _domain_means(vectors: np.ndarray, labels: np.ndarray, order: Sequence[str]) -> np.ndarray:
    missing = [name for name in order if not np.any(labels == name)]
    if missing:
        raise ValueError(f"no embeddings of {missing}")
    return np.stack([vectors[labels == name].mean(axis=0) for name in order])


def relationship_matrix(vectors: np.ndarray, labels: np.ndarray, order: Sequence[str]) -> pd.DataFrame:
    """Supplement Fig. 2 (d)-(f): entry (a, b) is the mean cosine similarity over every pair of an embedding of
    ``a`` and one of ``b`` (unit rows; pairs of an image with itself included on the diagonal). As the mean of
    dot products it equals the dot product of the two datasets' mean embeddings."""
    means = _domain_means(vectors, np.asarray(labels), order)
    return pd.DataFrame(means @ means.T, index=list(order), columns=list(order))


def bootstrap_relationships(vectors: np.ndarray, labels: np.ndarray, order: Sequence[str], *, resamples: int = 1000,
                            level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Every relationship score with a percentile bootstrap interval (each dataset's images resampled with
    replacement): one row per pair ``a <= b`` with ``score``, ``low`` and ``high``."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    boot = []
    for name in order:
        own = vectors[labels == name]
        picks = rng.integers(0, len(own), size=(resamples, len(own)))
        boot.append(own[picks].mean(axis=1))  # resamples × D
    boot = np.stack(boot, axis=1)  # resamples × datasets × D
    scores = np.einsum("rad,rbd->rab", boot, boot)
    point = relationship_matrix(vectors, labels, order).to_numpy()
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(scores, tail, axis=0), np.percentile(scores, 100 - tail, axis=0)
    return pd.DataFrame([{"a": a, "b": b, "score": point[i, j], "low": low[i, j], "high": high[i, j]}
                         for i, a in enumerate(order) for j, b in enumerate(order) if j >= i])


def silhouette(vectors: np.ndarray, labels: np.ndarray) -> float:
    """The silhouette score of the dataset labels in the space (cosine distance; sklearn)."""
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(vectors, labels, metric="cosine"))


def knn_accuracy(vectors: np.ndarray, labels: np.ndarray, *, k: int = 10, folds: int = 5, seed: int = 0) -> float:
    """Stratified ``folds``-fold cross-validated accuracy of a cosine k-NN classifier of the dataset label
    (folds capped by the smallest dataset, k by the smallest training fold). Chance is about 1 / datasets."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    smallest = int(pd.Series(labels).value_counts().min())
    folds = max(2, min(folds, smallest))
    train_size = len(labels) - int(np.ceil(len(labels) / folds))
    classifier = KNeighborsClassifier(n_neighbors=max(1, min(k, train_size)), metric="cosine")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(classifier, vectors, labels, cv=cv).mean())


def own_neighbour_share(vectors: np.ndarray, labels: np.ndarray, *, k: int = 10) -> pd.Series:
    """For each dataset, the share of its points' ``k`` nearest neighbours (cosine, self excluded) that belong to
    the same dataset: 1 for a dataset isolated from the others, about its share of all points when mixed."""
    from sklearn.neighbors import NearestNeighbors

    labels = np.asarray(labels)
    k = min(k, len(labels) - 1)
    _, index = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(vectors).kneighbors(vectors)
    same = labels[index[:, 1:]] == labels[:, None]
    return pd.Series(same.mean(axis=1)).groupby(labels).mean()


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Spearman's ρ and Kendall's τ (with their p-values) between ``x`` and ``y``."""
    from scipy.stats import kendalltau, spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rho, rho_p = spearmanr(x, y)
    tau, tau_p = kendalltau(x, y)
    return {"spearman": float(rho), "spearman_p": float(rho_p), "kendall": float(tau), "kendall_p": float(tau_p),
            "pairs": int(len(x))}


# ----------------------------------------------------------------------------- the transfer test


def cross_domain_psnr(models: dict[str, Sequence[Path]], root: str | Path, test_domains: Sequence[str], *,
                      max_images: int | None = None, device: str | torch.device = "cpu") -> pd.DataFrame:
    """PSNR of each deraining model (by its training domain) on each test domain's test split, with the rainy
    input's own PSNR beside it: one row per (model, test domain) with ``psnr_y``, ``psnr_rgb``,
    ``rainy_psnr_y`` and ``gain_y`` (``psnr_y − rainy_psnr_y``; the test domain's difficulty taken out)."""
    from ..train import load_model

    rows = []
    baselines = {}
    for test in test_domains:
        dataset = open_domain(root, test, "test")
        baselines[test] = (dataset, float(evaluate(None, dataset, max_images=max_images)["psnr_y"].mean()))
    for train, paths in models.items():
        for path in paths:
            model, _ = load_model(path, device)
            for test, (dataset, rainy_psnr) in baselines.items():
                scores = evaluate(model, dataset, max_images=max_images)
                rows.append({"train_domain": train, "model": Path(path).parent.name, "test_domain": test,
                             "psnr_y": float(scores["psnr_y"].mean()), "psnr_rgb": float(scores["psnr_rgb"].mean()),
                             "rainy_psnr_y": rainy_psnr, "gain_y": float(scores["psnr_y"].mean()) - rainy_psnr,
                             "images": len(scores)})
    return pd.DataFrame(rows)


def transfer_pairs(relationship: pd.DataFrame, transfer: pd.DataFrame, measure: str = "gain_y") -> pd.DataFrame:
    """One row per (training domain, other test domain) found in both tables: the relationship score and the
    transfer ``measure`` averaged over the models (seeds) of that training domain."""
    mean = transfer.groupby(["train_domain", "test_domain"])[measure].mean()
    rows = [{"train_domain": a, "test_domain": b, "relationship": float(relationship.loc[a, b]), measure: value}
            for (a, b), value in mean.items()
            if a != b and a in relationship.index and b in relationship.columns]
    return pd.DataFrame(rows)

"""Fig. 6 of the ANLCL paper on each rendered domain: six categories of patches, their entropy, singular-value
curves and t-SNE, and whether the paper's claim holds there (:func:`derainlib.analysis.patch_asymmetry.fig6_claim`).

The paper measures one real dataset; we measure every domain of the benchmark, where B is the rendering's clean
image and ``R = O − B`` its rain layer, both known exactly (for real rain the layer is unknown).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..analysis.embeddings import tsne_embedding
from ..analysis.patch_asymmetry import (CATEGORIES, RAIN_CATEGORIES, category_patches, category_statistics, fig6_claim,
                                        singular_value_curve)
from ..data.benchmark import available_domains, open_split

__all__ = ["claims_table", "domain_patches", "figure6"]


def domain_patches(root: str | Path, domain: str, *, split: str = "test", max_images: int | None = None,
                   n: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    """Fig. 6(a)'s six categories (:func:`~derainlib.analysis.patch_asymmetry.category_patches`) from the paired
    images of one domain's ``split`` (the first rain type of multi-type domains: every item is a pair)."""
    dataset = open_split(root, domain, split)
    clean, rainy = [], []
    for index, item in enumerate(dataset):
        if max_images is not None and index >= max_images:
            break
        clean.append(item["clean"].permute(1, 2, 0).numpy())
        rainy.append(item["rainy"].permute(1, 2, 0).numpy())
    if not clean:
        raise ValueError(f"{root}: the {domain} {split} split holds no images")
    return category_patches(clean, rainy, n=n, seed=seed)


def claims_table(root: str | Path, *, domains: list[str] | None = None, split: str = "test",
                 max_images: int | None = None, n: int = 100, seed: int = 0
                 ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """For every domain (default: all under ``root`` with ``split``): the per-category statistics (one frame, a
    ``domain`` column), the claim per domain (``entropy_lower``, ``rank_lower``, ``holds``) and the patches."""
    domains = available_domains(root, split) if domains is None else domains
    stats, claims, patches = [], [], {}
    for domain in domains:
        patches[domain] = domain_patches(root, domain, split=split, max_images=max_images, n=n, seed=seed)
        s = category_statistics(patches[domain]).assign(domain=domain)
        stats.append(s)
        claims.append({"domain": domain, **fig6_claim(s)})
    return pd.concat(stats, ignore_index=True), pd.DataFrame(claims), patches


def figure6(stats: pd.DataFrame, patches: dict[str, dict[str, np.ndarray]], *, seed: int = 0,
            tsne_for: list[str] | None = None, title: str = "") -> Figure:
    """One row per domain: (b) mean entropy per category, (c) normalised singular-value curves, (d) t-SNE of all
    categories' patches, for the domains in ``tsne_for`` (default: every domain; each t-SNE takes seconds)."""
    domains = list(patches)
    fig, axes = plt.subplots(len(domains), 3, figsize=(13, 3.1 * len(domains)), squeeze=False)
    colours = dict(zip(CATEGORIES, ("tab:green", "tab:orange", "tab:blue", "tab:red", "tab:purple")))
    for row, domain in zip(axes, domains):
        s = stats[stats["domain"] == domain].set_index("category")
        row[0].bar(s.index, s["entropy"], yerr=s["entropy_sd"], color=[colours[c] for c in s.index])
        row[0].set_ylabel("entropy (bits)")
        row[0].set_title(f"{domain}: entropy per category", fontsize=9)
        groups = {}
        for name, p in patches[domain].items():
            if len(p) >= 2:
                row[1].plot(singular_value_curve(p)[:40], label=name, color=colours[name],
                            linestyle="--" if name in RAIN_CATEGORIES else "-")
                groups[name] = p.reshape(len(p), -1)
        row[1].set_yscale("log")
        row[1].set_xlabel("singular value index")
        row[1].set_title("normalised singular values", fontsize=9)
        row[1].legend(fontsize=7)
        if len(groups) >= 2 and (tsne_for is None or domain in tsne_for):
            points = tsne_embedding(groups, seed=seed)
            for name in groups:
                sel = points[points["group"] == name]
                row[2].scatter(sel["x"], sel["y"], s=6, color=colours[name], label=name)
        row[2].set_xticks([])
        row[2].set_yticks([])
        row[2].set_title("t-SNE of the patches", fontsize=9)
    fig.suptitle(title or "Fig. 6 on each rendered domain", fontsize=10)
    fig.tight_layout()
    return fig

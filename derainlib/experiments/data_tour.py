"""The data tour (notebook ``00_data_tour``): the photographs, every rain domain, and their statistics.

Everything is read back through the public-dataset loaders, the way every experiment reads data,
so the tour also checks that the benchmark on disk is what the loaders expect.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..analysis.rain_statistics import rain_layer_statistics
from ..data import photos
from ..data.benchmark import (DOMAIN_DATASETS, MANIFEST_NAME, SPLITS, available_domains, benchmark_renderer_version,
                              load_rendering, open_split)
from ..data.errors import DatasetError
from ..data.synthetic import DOMAIN_DESCRIPTIONS
from ..metrics import psnr, ssim, to_uint8

from ..profiles import get_profile
from ..reporting import STUDY_PROFILE

__all__ = [
    "available_domains", "domain_crops", "domain_gallery", "domain_table", "photo_grid", "photo_sources_table",
    "rain_statistics_chart", "rain_statistics_table", "split_sizes_table", "benchmark_scale",
]


def _image(tensor: torch.Tensor) -> np.ndarray:
    """A loader's 3×H×W float tensor as the uint8 H×W×3 image it was read from."""
    return to_uint8(tensor)[0]


def photo_sources_table() -> pd.DataFrame:
    """Photographs per source package: their licences and how many fall in each split."""
    manifest = photos.load_manifest()
    counts = manifest.groupby(["source_package", "split"]).size().unstack("split", fill_value=0)
    table = counts.reindex(columns=list(SPLITS), fill_value=0)
    table["total"] = table.sum(axis=1)
    table["licences"] = manifest.groupby("source_package")["licence"].agg(lambda s: ", ".join(sorted(set(s))))
    table = table.reset_index().rename(columns={"source_package": "source"}).rename_axis(columns=None)
    return table.sort_values(["total", "source"], ascending=[False, True], ignore_index=True)


def photo_grid(count: int = 24, columns: int = 8) -> plt.Figure:
    """A grid of ``count`` photographs, evenly spaced through the manifest, labelled by source."""
    manifest = photos.load_manifest()
    picks = np.linspace(0, len(manifest) - 1, count).round().astype(int)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 1.6 * rows))
    for ax, pick in zip(axes.flat, picks):
        record = manifest.iloc[pick]
        ax.imshow(photos.load_photo(record["file"]))
        ax.set_title(f"{record['source_package']} ({record['split']})", fontsize=6)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"{count} of the {len(manifest)} embedded photographs")
    fig.tight_layout()
    return fig


def domain_table() -> pd.DataFrame:
    """One row per rain domain: the dataset folder and layout it is written in, and what it emulates."""
    return pd.DataFrame(
        [{"domain": domain, "written as": f"{folder} ({layout})", "emulates": DOMAIN_DESCRIPTIONS[domain]}
         for domain, (folder, layout) in DOMAIN_DATASETS.items()]
    )


def domain_gallery(root: str | os.PathLike, *, split: str = "test", scenes: tuple[int, ...] = (0, 1, 2),
                   ddn_types: tuple[int, ...] = (1,)) -> plt.Figure:
    """The same scenes (rows) under every domain (columns), read through the loaders.

    On the embedded benchmark the ``i``-th photo of a split is the same scene in every domain, so
    one clean column serves all. On real datasets (no benchmark manifest) each column shows its own
    dataset's ``i``-th pair in natural order, and the clean column belongs to the first dataset found.
    """
    domains = available_domains(root, split)
    if not domains:
        raise DatasetError(f"{root}: no dataset folder with a {split!r} split among "
                           f"{', '.join(folder for folder, _ in DOMAIN_DATASETS.values())}")
    embedded = (Path(root) / MANIFEST_NAME).is_file()

    datasets = {domain: open_split(root, domain, split) for domain in domains}  # opened once: header checks

    def item(domain: str, scene: int, rain_type: int) -> dict:
        if embedded:
            return load_rendering(datasets[domain], domain, split, scene, rain_type)
        return datasets[domain][scene % len(datasets[domain])]

    columns: list[tuple[str, str, int]] = [("clean", domains[0], 1)]
    for domain in domains:
        types = ddn_types if domain == "ddn" and embedded else (1,)
        columns += [(f"ddn type {k}" if domain == "ddn" and embedded else domain, domain, k) for k in types]
    fig, axes = plt.subplots(len(scenes), len(columns), figsize=(1.9 * len(columns), 1.7 * len(scenes)),
                             squeeze=False)
    for row, scene in enumerate(scenes):
        for col, (title, domain, rain_type) in enumerate(columns):
            pair = item(domain, scene, rain_type)
            axes[row, col].imshow(_image(pair["clean"] if title == "clean" else pair["rainy"]))
            axes[row, col].set_title(title if row == 0 else "", fontsize=8)
            axes[row, col].axis("off")
    fig.tight_layout()
    return fig


def domain_crops(root: str | os.PathLike, *, split: str = "test", scene: int = 0, crop: int | None = None,
                 domains: tuple[str, ...] | None = None) -> plt.Figure:
    """One scene in every domain: the whole image (top row, crop outlined) and a crop at 100 % (bottom row),
    one image pixel per block, so that one-pixel streaks stay visible.

    ``crop``: the side of the square crop in pixels; by default a quarter of the image's shorter side, at
    least 32 and at most 96. The crop is taken where the first domain's rain layer ``|O − B|`` is strongest.
    """
    domains = tuple(domains or available_domains(root, split))
    if not domains:
        raise DatasetError(f"{root}: no dataset folder with a {split!r} split among "
                           f"{', '.join(folder for folder, _ in DOMAIN_DATASETS.values())}")
    embedded = (Path(root) / MANIFEST_NAME).is_file()
    pairs = {}
    for domain in domains:
        dataset = open_split(root, domain, split)
        pairs[domain] = (load_rendering(dataset, domain, split, scene) if embedded
                         else dataset[scene % len(dataset)])
    first = pairs[domains[0]]
    height, width = first["rainy"].shape[1:]
    side = crop or int(min(96, max(32, min(height, width) // 4)))
    if side > min(height, width):
        raise ValueError(f"domain_crops: a {side}px crop does not fit a {height}x{width} image")
    # Where the rain is: the window of the strongest mean rain layer, on a coarse grid.
    rain = (first["rainy"] - first["clean"]).abs().mean(0)
    scores = torch.nn.functional.avg_pool2d(rain[None, None], side, stride=max(1, side // 4))[0, 0]
    row, col = divmod(int(scores.argmax()), scores.shape[1])
    top, left = row * max(1, side // 4), col * max(1, side // 4)
    fig, axes = plt.subplots(2, len(domains), figsize=(2.1 * len(domains), 4.4), squeeze=False)
    for column, domain in enumerate(domains):
        image = _image(pairs[domain]["rainy"])
        axes[0, column].imshow(image)
        axes[0, column].add_patch(plt.Rectangle((left - 0.5, top - 0.5), side, side, fill=False, edgecolor="red",
                                                linewidth=1.2))
        axes[0, column].set_title(domain, fontsize=8)
        axes[1, column].imshow(image[top:top + side, left:left + side], interpolation="nearest")
        axes[1, column].set_title(f"{side}x{side} px crop, magnified", fontsize=7)
        for ax in axes[:, column]:
            ax.axis("off")
    fig.suptitle(f"Test scene {scene} in every domain; below, the red box at full resolution (one square per pixel)")
    fig.tight_layout()
    return fig


def benchmark_scale(profile: str = STUDY_PROFILE) -> str:
    """One sentence on the embedded benchmark a profile builds (the study's by default)."""
    settings = get_profile(profile)

    counts = (settings.n_train, settings.n_val, settings.n_test)
    if counts == (None, None, None):
        photos = "every photograph of the manifest, in its split"
    else:
        photos = "{}/{}/{} photographs per split (train/val/test)".format(*("all" if c is None else c for c in counts))
    size = ("its shipped size (longer side at most 512 px)" if settings.image_size is None
            else f"{settings.image_size} px")
    return (f"The benchmark of profile {settings.name}: {photos}, each at {size}, rendered into every "
            f"domain (DDN-Data with {len(settings.ddn_types)} rain types per photograph).")


def rain_statistics_chart(statistics: pd.DataFrame, *, title: str) -> plt.Figure:
    """Per domain: how much of the image the rain covers (%), and the rainy input's Y-PSNR (dB), the
    baseline a deraining method must beat (from :func:`rain_statistics_table`)."""
    required = ["domain", "coverage", "input_psnr"]
    missing = [column for column in required if column not in statistics.columns]
    if missing:
        raise ValueError(f"rain_statistics_chart: missing column(s) {missing}; got {list(statistics.columns)}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 0.35 * len(statistics) + 1.4), sharey=True)
    y = np.arange(len(statistics))
    left.barh(y, 100 * statistics["coverage"], color="C0")
    left.set(yticks=y, yticklabels=statistics["domain"], xlabel="pixels covered by rain (%)", title="rain coverage")
    right.barh(y, statistics["input_psnr"], color="C1")
    right.set(xlabel="rainy input Y-PSNR (dB)", title="do-nothing baseline")
    left.invert_yaxis()
    for ax in (left, right):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _axial_mean_deg(angles_deg: np.ndarray, weights: np.ndarray) -> float:
    """Mean of orientations (axial data: θ and θ+180° are the same line), weighted; NaN if undefined."""
    keep = np.isfinite(angles_deg) & np.isfinite(weights)
    if not keep.any() or weights[keep].sum() <= 0:
        return float("nan")
    doubled = np.deg2rad(2 * angles_deg[keep])
    mean = np.angle(np.sum(weights[keep] * np.exp(1j * doubled))) / 2
    return float(np.rad2deg(mean))


def _pair_statistics(item: dict) -> dict[str, float]:
    """Rain-layer statistics of one pair, plus the "do nothing" baseline: the rainy input's Y-PSNR/SSIM."""
    clean, rainy = _image(item["clean"]), _image(item["rainy"])
    return {**rain_layer_statistics(clean, rainy), "input_psnr": psnr(rainy, clean), "input_ssim": ssim(rainy, clean)}


def rain_statistics_table(root: str | os.PathLike, *, split: str = "test") -> pd.DataFrame:
    """Per domain, the rain layer |O − B| over a split, and how far the rainy inputs are from clean.

    Mean intensity, coverage and dominant orientation describe the rain layer (see
    :func:`~derainlib.analysis.rain_statistics.rain_layer_statistics`). Orientation is in degrees from
    vertical, averaged as axial data and weighted by each image's streak anisotropy (so images without
    a dominant direction count little). ``input_psnr``/``input_ssim`` (Y channel) are the scores of
    the rainy images themselves: the baseline any deraining method must beat. ``renderer_version`` says
    which renderer drew the rain (from the benchmark's manifest; empty for a folder of real datasets).
    """
    version = benchmark_renderer_version(root) if (Path(root) / MANIFEST_NAME).is_file() else None
    rows = []
    for domain in available_domains(root, split):
        dataset = open_split(root, domain, split)
        stats = pd.DataFrame([_pair_statistics(dataset[i]) for i in range(len(dataset))])
        rows.append({
            "domain": domain,
            "pairs": len(dataset),
            "mean_intensity": stats["mean_intensity"].mean(),
            "coverage": stats["coverage"].mean(),
            "orientation_deg": _axial_mean_deg(stats["dominant_orientation_deg"].to_numpy(),
                                               stats["anisotropy"].to_numpy()),
            "anisotropy": stats["anisotropy"].mean(),
            "input_psnr": stats["input_psnr"].mean(),
            "input_ssim": stats["input_ssim"].mean(),
            "renderer_version": version,
        })
    return pd.DataFrame(rows)


def split_sizes_table(root: str | os.PathLike) -> pd.DataFrame:
    """Images per domain and split, counted by the loaders (realproxy's train split is unlabeled)."""
    rows = []
    for domain in available_domains(root):
        row: dict[str, object] = {"domain": domain, "dataset": DOMAIN_DATASETS[domain][0]}
        for split in SPLITS:
            row[split] = len(open_split(root, domain, split)) if domain in available_domains(root, split) else 0
        rows.append(row)
    return pd.DataFrame(rows)

"""Figures of the Semi-DRDNet notebooks: loss curves, qualitative results, and Fig. 8 (t-SNE)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from ..analysis.embeddings import mean_nearest_distance, tsne_embedding, vgg_features
from ..data.benchmark import open_split
from ..evaluation import derain
from ..losses.contrastive import VGG16Features, colour_transfer
from ..metrics import psnr, to_uint8

LOSS_COLUMNS = {"total": "total (Eq. 9)", "detail": "L_d (Eq. 12)", "rain_residual": "L_r (Eq. 11)",
                "dual_sup": "L_Dual(sup) (Eq. 6)", "dual_unsup": "L_Dual(unsup) (Eq. 8)"}


def loss_curves(log: pd.DataFrame, title: str = "") -> plt.Figure:
    """Per-epoch loss terms (log scale) and training-crop / validation Y-PSNR from a run's ``log.csv``."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    for column, label in LOSS_COLUMNS.items():
        if column in log and log[column].notna().any():
            left.plot(log["epoch"], log[column], label=label)
    left.set(yscale="log", xlabel="epoch", ylabel="loss", title="loss terms")
    left.legend(fontsize=7)
    right.plot(log["epoch"], log["train_psnr_y"], label="training crops")
    if "val_psnr_y" in log and log["val_psnr_y"].notna().any():
        val = log.dropna(subset=["val_psnr_y"])
        right.plot(val["epoch"], val["val_psnr_y"], "o-", label="validation split")
    right.set(xlabel="epoch", ylabel="Y-PSNR (dB)", title="PSNR")
    right.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def stability_curves(steps_by_reading: dict[str, pd.DataFrame], smooth: int = 20) -> plt.Figure:
    """Per-step ``L_d``, the two contrastive ratios and training-crop PSNR of each stability diagnostic
    (``semi_drdnet_stability``), as running means over ``smooth`` steps."""
    panels = (("detail", "L_d (Eq. 12)", "log"), ("dual_sup", "L_Dual(sup) (Eq. 6)", "log"),
              ("dual_unsup", "L_Dual(unsup) (Eq. 8)", "log"), ("train_psnr_y", "training-crop Y-PSNR (dB)", "linear"))
    fig, axes = plt.subplots(1, len(panels), figsize=(14, 3.4))
    for ax, (column, label, scale) in zip(axes, panels):
        for colour, (reading, steps) in enumerate(steps_by_reading.items()):  # one colour per reading in every panel
            if column in steps:
                ax.plot(steps["step"], steps[column].rolling(smooth, min_periods=1).mean(), f"C{colour}", label=reading)
        ax.set(yscale=scale, xlabel="step", title=label)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _show(ax, image: torch.Tensor, title: str) -> None:
    ax.imshow(to_uint8(image.clamp(0, 1))[0])
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def qualitative_figure(model: nn.Module, data_root: str | Path, *, domains: tuple[str, ...] = ("rain200h", "realproxy"),
                       scenes: tuple[int, ...] = (0, 1), bf16: bool = False, channels_last: bool = False) -> plt.Figure:
    """Rows of rainy / derained / predicted rain layer / recovered details / clean, per test scene.

    The rain layer ``RRN(O)`` is shown as is (rain is bright on black); the details ``DRN(O)``
    are signed, so they are shown as ``0.5 + 4·DRN(O)`` (grey is zero). Real-proxy clean images
    are the held-out ground truth, used here for display and evaluation only.
    """
    rows = [(domain, scene) for domain in domains for scene in scenes]
    fig, axes = plt.subplots(len(rows), 5, figsize=(12, 2.3 * len(rows)), squeeze=False)
    for ax_row, (domain, scene) in zip(axes, rows):
        item = open_split(data_root, domain, "test")[scene]
        out = derain(model, item["rainy"][None], bf16=bf16, channels_last=channels_last)
        derained = out.derained[0].cpu()
        details = out.details[0].cpu() if out.details is not None else torch.zeros_like(derained)
        _show(ax_row[0], item["rainy"], f"{domain} #{scene}: rainy ({psnr(item['rainy'], item['clean']):.1f} dB)")
        _show(ax_row[1], derained, f"derained ({psnr(derained, item['clean']):.1f} dB)")
        _show(ax_row[2], out.rain[0].cpu(), "rain layer RRN(O)")
        _show(ax_row[3], 0.5 + 4 * details, "details DRN(O) (x4)")
        _show(ax_row[4], item["clean"], "clean" + (" (held out)" if domain == "realproxy" else ""))
    fig.tight_layout()
    return fig


def _center_crops(dataset, key: str, count: int, size: int) -> torch.Tensor:
    picks = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
    crops = []
    for index in picks:
        image = dataset[int(index)][key]
        top, left = (image.shape[1] - size) // 2, (image.shape[2] - size) // 2
        crops.append(image[:, top:top + size, left:left + size])
    return torch.stack(crops)


def figure8(model: nn.Module, data_root: str | Path, *, count: int, vgg_weights: str = "hed", seed: int = 0,
            crop: int = 96, bf16: bool = False) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 8 on the benchmark: t-SNE of pool5 features of clean backgrounds, with and without Eq. (7).

    Groups (``count`` centre crops each):

    - *real derained* ``I_r``: the model's outputs on the unlabeled real-proxy training images,
      the style source of the positive augmentation;
    - *synthetic clean* ``B_r``: Rain200H training clean images, the unpaired positives;
    - *AdaIN-augmented* ``B̄_r``: their features with the channel statistics of ``I_r``'s (our
      default Eq. (7)); *colour-augmented*: the pixel-space alternative;
    - *real-proxy clean (held out)*: the real domain's true backgrounds, which no method may
      train on; in this benchmark they are photos from the same pool as the synthetic ones.

    Returns the figure and, per group, the mean nearest-neighbour distance (in the feature
    space, not the t-SNE plane) to the real derained set and to the held-out real clean set.
    """
    torch.manual_seed(seed)
    real_rainy = _center_crops(open_split(data_root, "realproxy", "train"), "rainy", count, crop)
    synthetic_clean = _center_crops(open_split(data_root, "rain200h", "train"), "clean", count, crop)
    real_clean = _center_crops(open_split(data_root, "realproxy", "test"), "clean", count, crop)
    real_derained = derain(model, real_rainy, bf16=bf16).derained.cpu()
    # Each synthetic image takes the style of one derained real image, paired at random as in training.
    style = real_derained[torch.randperm(len(real_derained))[: len(synthetic_clean)]]
    if len(style) < len(synthetic_clean):
        style = style[torch.arange(len(synthetic_clean)) % len(style)]
    vgg = VGG16Features(vgg_weights)
    groups = {
        "real derained I_r": vgg_features(real_derained, vgg),
        "synthetic clean B_r": vgg_features(synthetic_clean, vgg),
        "AdaIN-augmented (ours, Eq. 7)": vgg_features(synthetic_clean, vgg, style=style),
        "colour-augmented": vgg_features(colour_transfer(synthetic_clean, style), vgg),
        "real-proxy clean (held out)": vgg_features(real_clean, vgg),
    }
    embedding = tsne_embedding(groups, seed=seed)
    fig, ax = plt.subplots(figsize=(6.5, 5))
    colours = ["tab:red", "tab:blue", "tab:green", "tab:olive", "tab:grey"]
    for (name, _), colour in zip(groups.items(), colours):
        points = embedding[embedding["group"] == name]
        ax.scatter(points["x"], points["y"], s=10, c=colour, label=name, alpha=0.8)
    ax.set(title=f"t-SNE of VGG-16 pool5 features ({vgg_weights} weights, {crop}px crops)", xticks=[], yticks=[])
    ax.legend(fontsize=7)
    fig.tight_layout()
    targets = ("real derained I_r", "real-proxy clean (held out)")
    distances = pd.DataFrame([
        {"group": name, **{f"to {target}": mean_nearest_distance(feats, groups[target]) if target != name else np.nan
                           for target in targets}}
        for name, feats in groups.items()
    ])
    return fig, distances

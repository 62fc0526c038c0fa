"""Running a trained deraining network on whole images, and scoring it.

The field's convention (the papers' MATLAB evaluation, :mod:`derainlib.metrics`): PSNR and SSIM on the uint8
images, in MATLAB's Y channel; RGB numbers are reported beside them because some public tables
(mmderain's DRD-Net retraining, for one) use RGB. NIQE scores the real-proxy outputs without
looking at their held-out clean images.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch
from torch import nn

from . import metrics
from .niqe import niqe, niqe_applicable
from .runtime import autocast


@torch.no_grad()
def derain(model: nn.Module, rainy: torch.Tensor, *, bf16: bool = False, channels_last: bool = False,
           clamp: bool = True):
    """Run ``model`` on a batch ``N×3×H×W`` in [0, 1] (on the model's device) in eval mode.

    Returns the model's :class:`~derainlib.models.DerainOutput` in float32, with ``derained``
    clamped to [0, 1] as a saved image would be (``clamp=False``: the raw output).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        rainy = rainy.to(device)
        if channels_last:
            rainy = rainy.contiguous(memory_format=torch.channels_last)
        with autocast(device, bf16):
            out = model(rainy)
    finally:
        model.train(was_training)
    for field in ("derained", "rain", "preliminary", "details"):
        value = getattr(out, field)
        if value is not None:
            setattr(out, field, value.float().contiguous())
    if clamp:
        out.derained = out.derained.clamp(0.0, 1.0)
    return out


def score_pair(derained: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
    """Y and RGB PSNR/SSIM of one ``3×H×W`` output against its clean image."""
    return {
        "psnr_y": float(metrics.psnr(derained, clean, y_channel=True)),
        "ssim_y": float(metrics.ssim(derained, clean, y_channel=True)),
        "psnr_rgb": float(metrics.psnr(derained, clean, y_channel=False)),
        "ssim_rgb": float(metrics.ssim(derained, clean, y_channel=False)),
    }


def evaluate(
    model: nn.Module | None,
    dataset: Iterable[dict],
    *,
    bf16: bool = False,
    channels_last: bool = False,
    with_niqe: bool = False,
    with_range: bool = False,
    max_images: int | None = None,
) -> pd.DataFrame:
    """Score ``model`` image by image on a paired dataset (items with ``rainy``, ``clean``, ``name``).

    ``model=None`` scores the rainy inputs themselves: the do-nothing baseline.

    Whole images, one at a time (their sizes differ). Returns one row per image: ``name``,
    ``psnr_y``, ``ssim_y``, ``psnr_rgb``, ``ssim_rgb``, and ``niqe`` of the output when asked
    (NaN for images too small for NIQE's two 96×96 blocks), and ``out_of_range`` when asked: the
    fraction of the raw output's values outside [0, 1] (scores are taken after clamping).
    """
    rows = []
    for index, item in enumerate(dataset):
        if max_images is not None and index >= max_images:
            break
        if model is None:
            raw = item["rainy"]
        else:
            raw = derain(model, item["rainy"][None], bf16=bf16, channels_last=channels_last, clamp=False).derained[0].cpu()
        derained = raw.clamp(0.0, 1.0)
        row = {"name": item["name"], **score_pair(derained, item["clean"])}
        if with_range:
            row["out_of_range"] = float(((raw < 0) | (raw > 1)).float().mean())
        if with_niqe:  # NaN where undefined: images under two 96x96 blocks (the ci profile's 128 px)
            row["niqe"] = niqe(derained) if niqe_applicable(*derained.shape[-2:]) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(scores: pd.DataFrame) -> dict[str, float]:
    """Mean of every metric column of :func:`evaluate`'s table, skipping NaN (NIQE where undefined)."""
    return {column: float(scores[column].mean()) for column in scores.columns if column != "name"}

"""The stable reading of DualSCRNet: what a run needs beyond its :class:`~derainlib.train.TrainConfig`.

``READINGS["stable"]`` (``semi_drdnet_runs``) sets the loss's open choices (per-batch ratios, fixed
negatives, Gram distance for Eq. (8), VGG in float32, ...; ``docs/semi_drdnet_choices.md`` has the
table). Three more choices depend on data or on another run, and are filled in here, once per run,
before it trains (:func:`stable_config`; stored in the run folder's ``stable.json`` so that a resumed
run uses the same numbers):

- **Warm start** (the paper's "paired synthetic data for model initialization", Sec. III-A): the run
  starts from a finished supervised run's ``model.pt``; that run's ``log.csv`` is the collapse rule's
  reference curve (:mod:`derainlib.monitoring`).
- **The faint-layer filter's band** (:func:`rain_magnitude_band`): a bank layer joins only if its mean
  ``|R|`` lies within the band of the labeled data's own rain layers.
- **λ by gradient parity** (:func:`parity_scales`): each contrastive term is scaled so that, at the
  warm start, its gradient on the network output has the norm of ``L_d``'s; the run's ``λ`` (the
  dose) multiplies that, so ``λ = 1`` pulls as hard as ``L_d`` and ``λ = 0.01`` a hundredth as hard.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..atomic import write_text_atomic
from ..losses import LossWeights
from ..models import build_network
from ..monitoring import output_gradient_norms, reference_curve
from ..runtime import autocast, resolve_device, seed_everything
from ..train import TrainConfig, batch_stream, build_dual, training_datasets, training_step

#: The dose–response grid of λ_dual = λ_unsup, each relative to gradient parity with L_d (0: the same
#: schedule without the contrastive terms, the paired control).
DOSES: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 0.5)
#: A run spec's λ for "the dose the selection rule picks" (``ldsel`` in run ids).
SELECTED_DOSE = math.nan

#: Fixed before any test number of the stable reading was computed; :func:`select_dose` implements it.
SELECTION_RULE = (
    "Among the dose-response runs with a dose above 0 that did not collapse and have a finite validation score, "
    "pick the dose with the highest mean PSNR-Y on the labeled dataset's validation split (the run's last "
    "validation, at its final step), averaged over the seeds run; a tie goes to the smaller dose. Test splits, "
    "the real-proxy split and NIQE take no part. If no dose above 0 qualifies, there is no selected dose.")

#: Below this crop side, VGG-16's pool5 is at most a 3 x 3 map: the stable reading drops it (weight 0).
POOL5_MIN_CROP = 128

#: Batches :func:`parity_scales` averages over, and crops :func:`rain_magnitude_band` reads.
PARITY_BATCHES = 4
BAND_BATCHES = 32
#: The faint-layer filter's band: the 5th-95th percentile of the labeled crops' mean |O - B|, widened by
#: this factor each way (the real-proxy rain is rendered differently from the labeled set's).
BAND_QUANTILES = (0.05, 0.95)
BAND_WIDENING = 2.0
STABLE_FILE = "stable.json"


def stable_layer_weights(patch_size: int) -> tuple[float, float, float]:
    """Sec. III-C's pool2/3/5 weights (0.2, 0.5, 1), with pool5 dropped for crops under :data:`POOL5_MIN_CROP`
    (a 64 px crop leaves pool5 2 x 2 positions, yet it carries the largest weight)."""
    return (0.2, 0.5, 1.0 if patch_size >= POOL5_MIN_CROP else 0.0)


def select_dose(runs: pd.DataFrame) -> float:
    """:data:`SELECTION_RULE` on a table with columns ``dose``, ``seed``, ``val_psnr_y``, ``collapsed``."""
    missing = {"dose", "val_psnr_y", "collapsed"} - set(runs.columns)
    if missing:
        raise ValueError(f"the dose table lacks the columns {sorted(missing)}")
    ok = runs[(runs["dose"] > 0) & ~runs["collapsed"].astype(bool) & runs["val_psnr_y"].map(math.isfinite)]
    if ok.empty:
        raise LookupError("no dose above 0 trained without collapsing: there is no selected dose")
    means = ok.groupby("dose")["val_psnr_y"].mean().sort_index()  # ascending dose: idxmax keeps the smaller on ties
    return float(means.idxmax())


def rain_magnitude_band(config: TrainConfig, batches: int = BAND_BATCHES) -> tuple[float, float]:
    """``(low, high)`` for the faint-layer filter, from the run's first ``batches`` labeled batches."""
    paired, _ = training_datasets(dataclasses.replace(config, semi_supervised=False))
    stream = batch_stream(paired, config.batch_size, config.seed, 0, 0)
    magnitudes = np.concatenate([(b["rainy"] - b["clean"]).abs().flatten(1).mean(dim=1).numpy()
                                 for b in (next(stream) for _ in range(batches))])
    low, high = np.quantile(magnitudes, BAND_QUANTILES)
    return float(low / BAND_WIDENING), float(high * BAND_WIDENING)


def parity_scales(config: TrainConfig, batches: int = PARITY_BATCHES) -> dict[str, float]:
    """For each contrastive term ``t`` of the run, ``s_t = mean ||dL_d/dy|| / mean ||dL_t/dy||`` over the
    run's first ``batches`` batches, from its starting weights (``config.init_weights``, else its
    seeded initialisation), in training mode, gradients on the output each term reads
    (:func:`derainlib.monitoring.output_gradient_norms`). Before each batch the network's rain layers
    for it are pushed into the bank, so Eq. (5)'s negatives exist from the first batch.
    """
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model = build_network(config.variant, width=config.width, num_blocks=config.num_blocks).to(device)
    if config.init_weights:
        model.load_state_dict(torch.load(config.init_weights, map_location=device, weights_only=False)["model"])
    model.train()
    # unit weights: both terms computed and measured unscaled
    measured = dataclasses.replace(config, loss_weights=dataclasses.replace(config.loss_weights, dual=1.0, unsupervised=1.0))
    dual = build_dual(measured).to(device)
    paired, real = training_datasets(measured)
    paired_batches = batch_stream(paired, config.batch_size, config.seed, 0, 0)
    real_batches = batch_stream(real, config.batch_size, config.seed + 1, 0, 0) if real is not None else None
    sums: dict[str, float] = {}
    for _ in range(batches):
        batch = next(paired_batches)
        rainy, clean = batch["rainy"].to(device), batch["clean"].to(device)
        real_rainy = next(real_batches)["rainy"].to(device) if real_batches is not None else None
        with torch.no_grad(), autocast(device, config.bf16):
            dual.remember(model(rainy).rain, "synthetic")
            if real_rainy is not None:
                dual.remember(model(real_rainy).rain, "real")
        with autocast(device, config.bf16):
            terms = training_step(model, dual, measured, rainy, clean, real_rainy)
        outputs = terms.pop("_outputs")
        norms = output_gradient_norms({k: v for k, v in terms.items() if k in ("detail", "dual_sup", "dual_unsup")},
                                      outputs, {"detail": 1.0, "dual_sup": 1.0, "dual_unsup": 1.0})
        for name, value in norms.items():
            sums[name] = sums.get(name, 0.0) + value
    scales = {name: sums["detail"] / value for name, value in sums.items() if name != "detail" and value > 0}
    return scales | {"detail_grad_norm": sums["detail"] / batches, "batches": batches}


def stable_config(config: TrainConfig, dose: float, init_run: Path, run_dir: Path) -> TrainConfig:
    """``config`` with the warm start from ``init_run`` (a finished run folder), the collapse rule's
    reference, the faint-layer band, and ``λ_dual = dose · s_sup``, ``λ_unsup = dose · s_unsup``
    (:func:`parity_scales`). The measured numbers are kept in ``run_dir / "stable.json"``, written the
    first time and read back on a resume."""
    model_pt, log_csv = init_run / "model.pt", init_run / "log.csv"
    if not model_pt.is_file() or not log_csv.is_file():
        raise FileNotFoundError(f"{init_run}: the warm start needs this finished run's model.pt and log.csv")
    config = dataclasses.replace(config, init_weights=str(model_pt),
                                 collapse_reference=reference_curve(pd.read_csv(log_csv).to_dict("records")))
    path = run_dir / STABLE_FILE
    if path.is_file():
        facts = json.loads(path.read_text())
    else:
        band = rain_magnitude_band(config)
        scales = parity_scales(dataclasses.replace(config, bank_bounds=band))
        facts = {"init_run": init_run.name, "bank_bounds": list(band), "parity": scales}
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(facts, indent=1))
    parity = facts["parity"]
    weights = LossWeights(rain_residual=config.loss_weights.rain_residual, dual=dose * parity.get("dual_sup", 0.0),
                          unsupervised=dose * parity.get("dual_unsup", 0.0))
    return dataclasses.replace(config, bank_bounds=tuple(facts["bank_bounds"]), loss_weights=weights)


__all__ = ["BAND_QUANTILES", "BAND_WIDENING", "DOSES", "PARITY_BATCHES", "POOL5_MIN_CROP", "SELECTED_DOSE",
           "SELECTION_RULE", "STABLE_FILE", "parity_scales", "rain_magnitude_band", "select_dose", "stable_config",
           "stable_layer_weights"]

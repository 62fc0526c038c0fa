"""Does unlabeled real rain help? The dose–response study of the stable reading, and its tables.

The runs (``semi_drdnet_runs.stable_table_runs``): on Rain200H with the real-proxy training images of
renderer version 2 as unlabeled data, ``λ_dual = λ_unsup = dose`` (relative to gradient parity with
``L_d``, ``semi_drdnet_stable``) over :data:`~derainlib.experiments.semi_drdnet_stable.DOSES`, one seed;
then 3 seeds at dose 0 and at the dose the selection rule picks on the validation split
(:data:`~derainlib.experiments.semi_drdnet_stable.SELECTION_RULE`, fixed before any test number).

Dose 0 is the same schedule, warm start and data without the contrastive terms, so each effect is a
*paired* difference: the same seed, the same test image. :func:`paired_difference` reports its mean
over test images (and seeds) with a 95 % bootstrap interval over test images; :func:`per_image_scores`
keeps each run's per-image scores next to its record (``scores-<split>.csv``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import study
from ..atomic import atomic_path
from ..data.benchmark import open_split
from ..evaluation import evaluate
from ..profiles import Profile, get_profile
from ..reporting import BOOTSTRAP_SAMPLES, CONFIDENCE, paired_difference
from ..runtime import resolve_device
from ..train import load_model
from .semi_drdnet_runs import RunSpec, benchmark_root, runs_root, table_runs
from .semi_drdnet_stable import DOSES, SELECTED_DOSE, SELECTION_RULE, select_dose

SPLITS = {"test": None, "realproxy": "realproxy"}  # None: the run's own dataset

__all__ = ["BOOTSTRAP_SAMPLES", "CONFIDENCE", "DOSES", "SELECTED_DOSE", "SELECTION_RULE", "dose_table",
           "paired_difference", "paired_table", "per_image_scores"]


def per_image_scores(spec: RunSpec, profile: str | Profile, split: str, *, root: Path | None = None,
                     data_root: str | Path | None = None) -> pd.DataFrame:
    """A finished run's per-image scores on ``split`` ("test": its dataset's; "realproxy"), computed once and
    kept as ``scores-<split>.csv`` in its folder."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {tuple(SPLITS)}")
    p = get_profile(profile)
    run_dir = (runs_root(p) if root is None else Path(root)) / spec.run_id
    path = run_dir / f"scores-{split}.csv"
    if path.is_file():
        return pd.read_csv(path)
    if not (run_dir / study.METRICS).is_file():
        raise FileNotFoundError(f"{run_dir}: the run has not finished (no {study.METRICS})")
    model, _ = load_model(run_dir / "model.pt", resolve_device(p.device))
    source = benchmark_root(p, data_root, version=spec.renderer_version)
    scores = evaluate(model, open_split(source, SPLITS[split] or spec.dataset, "test"), bf16=p.bf16,
                      channels_last=p.channels_last, with_niqe=split == "realproxy")
    with atomic_path(path) as tmp:
        scores.to_csv(tmp, index=False)
    return scores


def _matrix(frames: Sequence[pd.DataFrame], metric: str) -> np.ndarray:
    names = [tuple(f["name"]) for f in frames]
    if len(set(names)) != 1:
        raise ValueError("the runs were scored on different images: their scores cannot be paired")
    return np.stack([f[metric].to_numpy(float) for f in frames])


def paired_table(pairs: Sequence[tuple[str, Sequence[pd.DataFrame], Sequence[pd.DataFrame]]],
                 metric: str = "psnr_y") -> pd.DataFrame:
    """One row per ``(label, treated runs' scores, control runs' scores)``: :func:`paired_difference` of
    ``metric``, the runs matched seed by seed (same order) and image by image (by name)."""
    rows = []
    for label, treated, control in pairs:
        if len(treated) != len(control) or not treated:
            raise ValueError(f"{label}: {len(treated)} treated runs against {len(control)} controls")
        both = _matrix([*treated, *control], metric)  # checks that every run scored the same images, in order
        rows.append({"comparison": label, "metric": metric,
                     **paired_difference(both[:len(treated)], both[len(treated):])})
    return pd.DataFrame(rows)


def dose_table(profile: str | Profile, root: Path | None = None) -> pd.DataFrame:
    """The finished dose–response runs, one row per dose: test and real-proxy PSNR-Y and real-proxy NIQE
    (mean and sample sd over the seeds run), validation PSNR-Y, and how many runs collapsed; plus the
    dose the selection rule picks (``selected``), once every dose has a run."""
    p = get_profile(profile)
    root = runs_root(p) if root is None else Path(root)
    specs = table_runs("dose", p) + [s for s in table_runs("dose-seeds", p) if not math.isnan(s.lambda_dual)]
    rows = []
    for spec in {s.run_id: s for s in specs}.values():
        record = study.read_record(root / spec.run_id)
        if record is None:
            continue
        rows.append({"dose": spec.lambda_dual, "seed": spec.seed, "test_psnr_y": record["test"]["psnr_y"],
                     "realproxy_psnr_y": record["realproxy"]["psnr_y"], "realproxy_niqe": record["realproxy"]["niqe"],
                     "val_psnr_y": record.get("stable", {}).get("val_psnr_y", math.nan),
                     "collapsed": record.get("collapsed") is not None})
    runs = pd.DataFrame(rows, columns=["dose", "seed", "test_psnr_y", "realproxy_psnr_y", "realproxy_niqe",
                                       "val_psnr_y", "collapsed"])
    table = runs.groupby("dose").agg(
        runs=("seed", "size"), collapsed=("collapsed", "sum"), val_psnr_y=("val_psnr_y", "mean"),
        test_psnr_y=("test_psnr_y", "mean"), test_psnr_y_sd=("test_psnr_y", "std"),
        realproxy_psnr_y=("realproxy_psnr_y", "mean"), realproxy_psnr_y_sd=("realproxy_psnr_y", "std"),
        realproxy_niqe=("realproxy_niqe", "mean"), realproxy_niqe_sd=("realproxy_niqe", "std")).reset_index()
    sweep = runs[runs["seed"] == p.seeds[0]]
    table["selected"] = False
    if set(DOSES) <= set(sweep["dose"]):
        try:
            table["selected"] = table["dose"] == select_dose(sweep)
        except LookupError:  # no dose above 0 trained without collapsing
            pass
    return table

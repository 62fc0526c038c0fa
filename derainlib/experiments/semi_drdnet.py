"""Semi-DRDNet experiments: one training run per (table row, seed), and the paper's tables from them.

A run is a :class:`RunSpec`: what is trained (network, size), on which data, with which losses,
and its seed. Tables II, III, IV, V, VII and Fig. 13 are lists of specs
(:func:`table_runs`); runs shared between tables (Semi-DRDNet on Rain200H is in II, V, VII and
Fig. 13) are trained once. Each run lives in ``<runs_root>/<run_id>/``:

- ``log.csv`` and ``model.pt`` from :func:`derainlib.train.train` (``checkpoint.pt`` while in progress);
- ``segments.json``: provenance of every training segment (commit, machine, steps, wall time),
  since a long ``cpu`` run may be resumed over several sessions and machines;
- ``metrics.json``: the evaluation on the dataset's test split and on the real-proxy test split.

``ci`` trains everything inside the notebooks, into a fresh temporary folder, in minutes.
``cpu`` and ``gpu`` runs are long: ``python -m derainlib.experiments.semi_drdnet --profile cpu``
works through the queue in the background (resumable), under ``results/<profile>/semi_drdnet/runs``,
and the notebooks read what is there.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats
import torch

from .. import REPO_ROOT, resolve_device
from ..atomic import atomic_path, has_parts, join_file, split_file, try_lock, write_text_atomic
from ..data.benchmark import build_benchmark, default_benchmark_root, layout_of, open_split, split_root
from ..evaluation import evaluate, summarize
from ..losses import LossWeights
from ..profiles import Profile, get_profile
from ..provenance import machine_label, provenance
from ..reporting import to_markdown
from ..models import build_network, count_parameters
from ..train import TrainConfig, load_model, lr_milestone_steps, train

DATASETS = ("rain200l", "rain200h", "rain800")  # the paper's three labeled training sets
SUPERVISED_VARIANTS = ("BL", "BL+SE", "BL+SE+DB", "BL+SE+RB", "BL+SE+SDCAB")
TABLE_II_VARIANTS = (*SUPERVISED_VARIANTS, "Semi-DRDNet")
TABLE_VII_SETTINGS = ("standard", "aug_pos", "aug_neg", "dual")

#: Readings of the choices Eq. (5)/(6) leave open (``derainlib.losses.contrastive``), as TrainConfig fields,
#: in the order of preference fixed *before* measuring them: the literal one first, then the fewest
#: departures from it. ``semi_drdnet_stability`` measures each and picks the first stable one.
READINGS: dict[str, dict] = {
    "literal": dict(negative_base="derained", clamp_contrastive=False, contrastive_distance="squared_l2"),
    "clamp": dict(negative_base="derained", clamp_contrastive=True, contrastive_distance="squared_l2"),
    "clamp-l1": dict(negative_base="derained", clamp_contrastive=True, contrastive_distance="l1"),
    "clamp-clean": dict(negative_base="clean", clamp_contrastive=True, contrastive_distance="squared_l2"),
    "clamp-clean-l1": dict(negative_base="clean", clamp_contrastive=True, contrastive_distance="l1"),
}
#: The reading the study's DualSCRNet runs use: what ``semi_drdnet_stability.chosen_reading`` picked from
#: the committed cpu diagnostic, or the paper as written ("literal") when no reading passed the rule;
#: their results are then reported as unstable (a test checks this agrees with the committed csv).
STUDY_READING = "literal"

# ----------------------------------------------------------------------------- the paper's numbers
# Copied from papers/semi-drdnet.md (PSNR dB, SSIM); the paper does not say whether Y or RGB.

PAPER_TABLE_II = {  # dataset -> variant -> (PSNR, SSIM)
    "rain200l": dict(zip(TABLE_II_VARIANTS, [(35.69, 0.9782), (36.25, 0.9796), (36.93, 0.9804),
                                             (37.16, 0.9876), (37.52, 0.9880), (40.66, 0.9885)])),
    "rain200h": dict(zip(TABLE_II_VARIANTS, [(26.33, 0.8323), (26.79, 0.8441), (27.45, 0.9194),
                                             (27.32, 0.9086), (28.32, 0.9221), (31.32, 0.9240)])),
    "rain800": dict(zip(TABLE_II_VARIANTS, [(25.94, 0.8132), (26.35, 0.8217), (26.39, 0.8945),
                                            (26.45, 0.8978), (26.56, 0.9024), (27.73, 0.9055)])),
}
PAPER_TABLE_III = {  # (M, blocks per branch) -> (PSNR, SSIM) on Rain200H; D = blocks + 3
    (16, 8): (27.67, 0.9138), (32, 8): (28.82, 0.9164), (64, 8): (29.96, 0.9188),
    (16, 12): (28.70, 0.9156), (32, 12): (29.91, 0.9177), (64, 12): (30.67, 0.9203),
    (16, 16): (29.38, 0.9175), (32, 16): (30.13, 0.9199), (64, 16): (31.32, 0.9240),
}
PAPER_TABLE_IV = {  # dataset -> network -> (PSNR, seconds per image)
    "rain200h": {"DDN": (24.64, 0.03), "DDN+DRN": (25.92, 0.15)},
    "rain800": {"DDN": (24.04, 0.05), "DDN+DRN": (25.13, 0.14)},
}
PAPER_TABLE_V = {  # dataset -> DRN block -> (PSNR, seconds per image)
    # The text says MSARR drops Rain200H "from 31.32 dB to 28.64 dB"; the table says 28.92.
    "rain200h": {"sdcab": (31.32, 0.48), "msarr": (28.92, 0.42)},
    "rain800": {"sdcab": (27.73, 0.64), "msarr": (26.29, 0.58)},
}
PAPER_TABLE_VII = {  # dataset -> setting -> PSNR
    "rain200l": dict(zip(TABLE_VII_SETTINGS, [38.05, 39.86, 39.15, 40.66])),
    "rain200h": dict(zip(TABLE_VII_SETTINGS, [28.96, 30.02, 29.76, 31.32])),
    "rain800": dict(zip(TABLE_VII_SETTINGS, [26.82, 27.21, 27.18, 27.73])),
}
# Fig. 13 (loss combinations on Rain200H) is a bar chart whose values the text does not give.
FIG13_COMBINATIONS = ("L_d", "L_d+L_r", "L_d+L_r+L_dual(sup)", "L_sup+L_unsup (full)")

# Table III's grid, scaled down for ci so that the notebook stays a pipeline check of minutes.
TABLE_III_GRID = {"ci": ((4, 8, 16), (1, 2, 3))}
TABLE_III_GRID_DEFAULT = ((16, 32, 64), (8, 12, 16))


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunSpec:
    """One training run. Equal specs are the same run, whichever tables ask for it."""

    dataset: str
    variant: str
    seed: int
    width: int
    num_blocks: int
    semi_supervised: bool = False
    contrastive: str | None = None  # Table VII setting; None: no DualSCRNet
    positive_augmentation: str = "adain"
    lambda_r: float = 0.5
    lambda_dual: float = 0.5
    reading: str = "literal"  # a key of READINGS; matters only with a contrastive setting

    def __post_init__(self) -> None:
        if self.reading not in READINGS:
            raise ValueError(f"reading={self.reading!r}: expected one of {tuple(READINGS)}")

    @property
    def run_id(self) -> str:
        size = "" if self.variant.startswith("DDN") else f"-m{self.width}b{self.num_blocks}"
        parts = [self.dataset, self.variant.replace("+", "_").lower() + size]
        if self.semi_supervised:
            parts.append("semi")
        if self.contrastive:
            parts.append(self.contrastive + ("" if self.positive_augmentation == "adain" else f"-{self.positive_augmentation}"))
        if self.lambda_r != 0.5:
            parts.append(f"lr{self.lambda_r:g}")
        if self.contrastive and self.lambda_dual != 0.5:
            parts.append(f"ld{self.lambda_dual:g}")
        if self.contrastive and self.reading != "literal":
            parts.append(self.reading)
        return "-".join(parts) + f"-s{self.seed}"


def supervised_run(dataset: str, variant: str, seed: int, width: int, num_blocks: int, **kwargs) -> RunSpec:
    """Eq. (10): ``L_d + λ_r L_r`` on paired synthetic data only (plus ``λ_dual L_Dual(sup)`` when
    ``contrastive`` is given, read as :data:`STUDY_READING`)."""
    kwargs.setdefault("reading", STUDY_READING)
    return RunSpec(dataset, variant, seed, width, num_blocks, **kwargs)


def semi_supervised_run(dataset: str, seed: int, width: int, num_blocks: int, *, variant: str = "Semi-DRDNet",
                        setting: str = "dual", positive_augmentation: str = "adain",
                        reading: str = STUDY_READING) -> RunSpec:
    """Eq. (9): supervised loss with DualSCRNet plus the unsupervised contrastive loss on real images."""
    return RunSpec(dataset, variant, seed, width, num_blocks, semi_supervised=True, contrastive=setting,
                   positive_augmentation=positive_augmentation, reading=reading)


def table_runs(table: str, profile: str | Profile, *, seeds: tuple[int, ...] | None = None,
               datasets: tuple[str, ...] | None = None) -> list[RunSpec]:
    """The runs behind one table: ``"II"``, ``"III"``, ``"IV"``, ``"V"``, ``"V-supervised"``, ``"VII"``,
    ``"VII-colour"`` or ``"fig13"``.

    ``ci`` trains Rain200H only (the other datasets' rows stay empty): it proves the pipeline in minutes.
    """
    p = get_profile(profile)
    seeds = p.seeds if seeds is None else seeds
    if datasets is None:
        datasets = ("rain200h",) if p.name == "ci" else DATASETS
    w, b = p.width, p.depth
    if table == "II":
        return [supervised_run(d, v, s, w, b) if v != "Semi-DRDNet" else semi_supervised_run(d, s, w, b)
                for d in datasets for s in seeds for v in TABLE_II_VARIANTS]
    if table == "III":  # the architecture-size grid, trained with the DRD-Net recipe (see notebook 11)
        widths, depths = TABLE_III_GRID.get(p.name, TABLE_III_GRID_DEFAULT)
        return [supervised_run("rain200h", "BL+SE+SDCAB", seeds[0], m, d) for d in depths for m in widths]
    if table == "IV":
        return [supervised_run(d, v, seeds[0], w, b) for d in datasets if d in PAPER_TABLE_IV for v in ("DDN", "DDN+DRN")]
    if table == "V":
        return [semi_supervised_run(d, seeds[0], w, b, variant=v)
                for d in datasets if d in PAPER_TABLE_V for v in ("Semi-DRDNet", "BL+SE+MSARR")]
    if table == "V-supervised":  # the same two blocks with the supervised DRD-Net recipe (see notebook 11)
        return [supervised_run(d, v, seeds[0], w, b)
                for d in datasets if d in PAPER_TABLE_V for v in ("BL+SE+SDCAB", "BL+SE+MSARR")]
    if table == "VII":
        return [semi_supervised_run(d, s, w, b, setting=setting)
                for d in datasets for s in seeds for setting in TABLE_VII_SETTINGS]
    if table == "VII-colour":  # our deviation's alternative for Eq. (7), pixel-space colour transfer, on Rain200H
        return [semi_supervised_run("rain200h", s, w, b, setting=setting, positive_augmentation="colour")
                for s in seeds for setting in ("aug_pos", "dual")]
    if table == "fig13":
        s = seeds[0]
        return [
            supervised_run("rain200h", "BL+SE+SDCAB", s, w, b, lambda_r=0.0),
            supervised_run("rain200h", "BL+SE+SDCAB", s, w, b),
            supervised_run("rain200h", "BL+SE+SDCAB", s, w, b, contrastive="dual"),
            semi_supervised_run("rain200h", s, w, b),
        ]
    raise ValueError(f"unknown table {table!r}; valid: II, III, IV, V, V-supervised, VII, VII-colour, fig13")


def study_queue(profile: str | Profile) -> list[RunSpec]:
    """Every run of the study, cheapest-to-most-informative first, without repeats.

    Rain200H with the first seed comes first (every table has it), then its other seeds, then
    the other datasets, then Table III's grid (its M=64 rows are by far the slowest on a CPU).
    """
    p = get_profile(profile)
    first, rest = p.seeds[:1], p.seeds[1:]
    h = ("rain200h",)
    others = tuple(d for d in DATASETS if d not in h)
    order = [
        table_runs("II", p, seeds=first, datasets=h), table_runs("VII", p, seeds=first, datasets=h),
        table_runs("V", p)[:2], table_runs("V-supervised", p), table_runs("fig13", p), table_runs("IV", p),
        table_runs("II", p, seeds=rest, datasets=h), table_runs("VII", p, seeds=rest, datasets=h),
        table_runs("II", p, seeds=first, datasets=others), table_runs("VII", p, seeds=first, datasets=others),
        table_runs("V", p)[2:], table_runs("VII-colour", p, seeds=first),
        table_runs("III", p),
        table_runs("VII-colour", p, seeds=rest),
        table_runs("II", p, seeds=rest, datasets=others), table_runs("VII", p, seeds=rest, datasets=others),
    ]
    seen: dict[str, RunSpec] = {}
    for group in order:
        for spec in group:
            seen.setdefault(spec.run_id, spec)
    return list(seen.values())


# ----------------------------------------------------------------------------- where things live


@cache
def _ci_runs_root() -> Path:
    # ci always retrains, in a fresh folder: a stale run from older code must never feed a committed notebook.
    folder = Path(tempfile.mkdtemp(prefix="derainlib-ci-runs-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def runs_root(profile: str | Profile, data_root: str | Path | None = None) -> Path:
    """Where runs live: ``results/<profile>/semi_drdnet/runs`` (committed for cpu/gpu) on the embedded
    benchmark, ``build/runs/<profile>/<folder name>`` on a user's ``data_root``, and a fresh
    temporary folder for ci."""
    p = get_profile(profile)
    if p.name == "ci":
        return _ci_runs_root()
    if data_root is not None:
        return REPO_ROOT / "build" / "runs" / p.name / Path(data_root).resolve().name
    return REPO_ROOT / "results" / p.name / "semi_drdnet" / "runs"


def benchmark_root(profile: str | Profile, data_root: str | Path | None = None, seed: int = 0) -> Path:
    """The data the runs read: a user's ``data_root`` as is, else the embedded benchmark (built if needed)."""
    if data_root is not None:
        return Path(data_root)
    return build_benchmark(default_benchmark_root(profile), profile, seed=seed)


def train_config(spec: RunSpec, profile: str | Profile, data_root: Path) -> TrainConfig:
    """The :class:`TrainConfig` of ``spec`` at ``profile``'s sizes, reading ``data_root``."""
    p = get_profile(profile)
    return TrainConfig(
        variant=spec.variant, width=spec.width, num_blocks=spec.num_blocks,
        train_root=str(split_root(data_root, spec.dataset, "train")), train_layout=layout_of(spec.dataset),
        real_root=str(split_root(data_root, "realproxy", "train") / "input") if spec.semi_supervised else None,
        val_root=str(split_root(data_root, spec.dataset, "val")), val_layout=layout_of(spec.dataset),
        val_every_epochs=2 if p.name == "ci" else 20,
        patch_size=p.patch_size, batch_size=p.batch_size, num_workers=p.num_workers,
        steps=p.iterations, learning_rate=p.learning_rate,
        semi_supervised=spec.semi_supervised, contrastive=spec.contrastive,
        positive_augmentation=spec.positive_augmentation,
        loss_weights=LossWeights(rain_residual=spec.lambda_r, dual=spec.lambda_dual if spec.contrastive else 0.0),
        seed=spec.seed, device=p.device, bf16=p.bf16, channels_last=p.channels_last, compile_mode=p.compile_mode,
        checkpoint_every=p.checkpoint_every, **READINGS[spec.reading],
    )


# ----------------------------------------------------------------------------- running


def _read_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def evaluate_run(spec: RunSpec, profile: str | Profile, data_root: Path, run_dir: Path) -> dict:
    """Score a trained run: its dataset's test split, and the real-proxy test split (with NIQE)."""
    p = get_profile(profile)
    model, config = load_model(run_dir / "model.pt", resolve_device(p.device))
    results = {}
    for name, domain, with_niqe in (("test", spec.dataset, False), ("realproxy", "realproxy", True)):
        if not split_root(data_root, domain, "test").is_dir():  # a user's data root without that dataset
            results[name] = {key: math.nan for key in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "niqe")}
            continue
        dataset = open_split(data_root, domain, "test")
        started = time.perf_counter()
        scores = evaluate(model, dataset, bf16=p.bf16, channels_last=p.channels_last, with_niqe=with_niqe)
        results[name] = summarize(scores) | {"images": len(scores),
                                             "seconds_per_image": (time.perf_counter() - started) / len(scores)}
        if with_niqe:  # the NIQE mean is over these images only (undefined on small or flat outputs)
            results[name]["niqe_images"] = int(scores["niqe"].notna().sum())
    return results


def run(spec: RunSpec, profile: str | Profile, *, data_root: str | Path | None = None,
        progress: bool | None = None) -> dict:
    """Train (or resume) and evaluate one run; return its ``metrics.json`` record.

    ``data_root``: a user's folder of real datasets (arranged as the README says), or ``None``
    for the embedded benchmark, built on first use. A finished run is read back, not retrained.
    """
    p = get_profile(profile)
    run_dir = runs_root(p, data_root) / spec.run_id
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists():
        return json.loads(metrics_path.read_text())
    source = benchmark_root(p, data_root)
    config = train_config(spec, p, source)
    # Every training segment (a run may be resumed over several sessions and machines) is recorded
    # when it starts, with the commit this process's code came from; its end step is filled in
    # when it finishes (null: the segment was interrupted; its work up to the last checkpoint counts).
    segments = _read_json(run_dir / "segments.json", [])
    checkpoint = run_dir / "checkpoint.pt"
    if has_parts(checkpoint):  # a partial checkpoint committed in parts (see park_checkpoints)
        join_file(checkpoint)
    start_step = torch.load(checkpoint, map_location="cpu", weights_only=False)["step"] if checkpoint.exists() else 0
    segment = provenance(p.name, {"run_id": spec.run_id}, 0.0) | {"steps": [start_step, None]}
    segments.append(segment)
    write_text_atomic(run_dir / "segments.json", json.dumps(segments, indent=1))
    started = time.perf_counter()
    result = train(config, run_dir, progress=progress)
    segment["wall_time_s"] = round(time.perf_counter() - started, 1)
    segment["steps"][1] = result.steps
    write_text_atomic(run_dir / "segments.json", json.dumps(segments, indent=1))
    evaluation = evaluate_run(spec, p, source, run_dir)
    record = {
        "run_id": spec.run_id, "profile": p.name, "spec": asdict(spec), "steps": result.steps,
        "train_wall_time_s": round(result.wall_time_s, 1), "vgg_weights": config.vgg_weights if spec.contrastive else None,
        "bf16": config.bf16, "patch_size": config.patch_size, "batch_size": config.batch_size,
        "commits": sorted({segment["commit"] for segment in segments}),
        "machines": sorted({machine_label(segment["machine"]) for segment in segments}),
        **evaluation,
    }
    write_text_atomic(metrics_path, json.dumps(record, indent=1))
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # model.pt and the logs are what is kept
    return record


def describe(spec: RunSpec, profile: str | Profile) -> pd.DataFrame:
    """The settings of a run, as a two-column table for notebooks."""
    p = get_profile(profile)
    config = train_config(spec, p, Path("<benchmark>"))
    network = build_network(spec.variant, spec.width, spec.num_blocks)
    milestones = ", ".join(str(step) for step in lr_milestone_steps(config))
    rows = {
        "network": f"{spec.variant} (M={spec.width}, D={spec.num_blocks}+3, {count_parameters(network):,} parameters)",
        "labeled data": f"{spec.dataset} train split, {config.patch_size}x{config.patch_size} crops, batch {config.batch_size}",
        "unlabeled data": "real-proxy train split (rainy images only)" if spec.semi_supervised else "none",
        "optimiser": f"Adam, lr {config.learning_rate:g}, x{config.lr_gamma:g} at steps {milestones} of {config.steps}",
        "losses": ("L_d + 0.5 L_r" + (" + 0.5 L_Dual(sup)" if spec.contrastive else "")
                   + (" + 1.0 L_Dual(unsup)" if spec.semi_supervised else "")),
        "DualSCRNet": (f"{spec.contrastive}, {config.num_negatives} negatives, {spec.positive_augmentation} positive "
                       f"augmentation, VGG-16 weights '{config.vgg_weights}'") if spec.contrastive else "off",
        "precision": ("bf16 autocast" if config.bf16 else "fp32") + (", channels_last" if config.channels_last else ""),
        "seed": str(spec.seed),
    }
    return pd.DataFrame({"setting": list(rows), "value": list(rows.values())})


def evaluation_table(records: dict[str, dict], data_root: str | Path) -> pd.DataFrame:
    """Test-split scores of finished runs beside the rainy inputs' own (the do-nothing baseline)."""
    dataset = next(iter(records.values()))["spec"]["dataset"]
    inputs = {"test": summarize(evaluate(None, open_split(data_root, dataset, "test")))}
    if split_root(data_root, "realproxy", "test").is_dir():
        inputs["realproxy"] = summarize(evaluate(None, open_split(data_root, "realproxy", "test"), with_niqe=True))
    rows = []
    for name, scores in [("Rainy input", inputs), *records.items()]:
        row = {"method": name}
        row |= {f"{dataset} {metric}": scores["test"][key] for metric, key in
                (("PSNR-Y", "psnr_y"), ("SSIM-Y", "ssim_y"), ("PSNR-RGB", "psnr_rgb"), ("SSIM-RGB", "ssim_rgb"))}
        if "realproxy" in scores:
            row |= {f"real-proxy {metric}": scores["realproxy"][key] for metric, key in
                    (("PSNR-Y", "psnr_y"), ("SSIM-Y", "ssim_y"), ("NIQE", "niqe"))}
        rows.append(row)
    return pd.DataFrame(rows)


def provenance_table(records: dict[str, dict]) -> pd.DataFrame:
    """Steps, training time, commits and machines of finished runs."""
    return pd.DataFrame([{"run": name, "run_id": record["run_id"], "steps": record["steps"],
                          "train minutes": round(record["train_wall_time_s"] / 60, 1),
                          "commits": ", ".join(c[:10] for c in record["commits"]), "machines": "; ".join(record["machines"])}
                         for name, record in records.items()])


def run_table(table: str, profile: str | Profile, *, data_root: str | Path | None = None,
              train_missing: bool | None = None, progress: bool | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The per-run results of ``table`` (one row per run) and the ids of runs that have no results.

    ``train_missing`` (default: only for ``ci``) trains missing runs now; otherwise they are listed
    as missing, for the study queue (:func:`main`) to fill.
    """
    p = get_profile(profile)
    train_missing = p.name == "ci" if train_missing is None else train_missing
    rows, missing = [], []
    for spec in table_runs(table, p):
        if not (runs_root(p, data_root) / spec.run_id / "metrics.json").exists() and not train_missing:
            missing.append(spec.run_id)
            continue
        rows.append(_flatten(run(spec, p, data_root=data_root, progress=progress)))
    return pd.DataFrame(rows), missing


def _flatten(record: dict) -> dict:
    row = {"reading": "literal", **record["spec"], "run_id": record["run_id"], "steps": record["steps"],
           "train_wall_time_s": record["train_wall_time_s"]}
    for split in ("test", "realproxy"):
        row.update({f"{split}_{name}": value for name, value in record[split].items()})
    return row


# ----------------------------------------------------------------------------- tables


def mean_sd(runs: pd.DataFrame, by: list[str], columns: list[str]) -> pd.DataFrame:
    """Mean, sample standard deviation and seed count of ``columns`` per group ``by``."""
    grouped = runs.groupby(by, sort=False)[columns]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_sd"))
    table["seeds"] = grouped.size()
    return table.reset_index()


def kendall_tau(ours: list[float], paper: list[float]) -> float:
    """Kendall's τ between our ordering of the variants and the paper's (1: same order, -1: reversed).

    Variants we have not finished (NaN) are left out; fewer than two finished give NaN.
    """
    ours_array, paper_array = np.asarray(ours, dtype=float), np.asarray(paper, dtype=float)
    finished = ~np.isnan(ours_array)
    if finished.sum() < 2:
        return math.nan
    return float(scipy.stats.kendalltau(ours_array[finished], paper_array[finished]).statistic)


def format_mean_sd(mean: float, sd: float, seeds: int, digits: int = 2) -> str:
    if np.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if seeds > 1 else "") + f" (n={seeds})"


def compare_table_ii(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table II beside the paper: per dataset and variant, our Y-PSNR/SSIM (mean ± sd over seeds).

    Returns the comparison table and Kendall's τ per dataset (our PSNR ordering vs the paper's).
    """
    return _compare(runs, PAPER_TABLE_II, key="variant", order=TABLE_II_VARIANTS, paper_has_ssim=True)


def compare_table_vii(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table VII beside the paper: per dataset and contrastive setting, our Y-PSNR vs the paper's PSNR."""
    return _compare(runs, {d: {k: (v, math.nan) for k, v in row.items()} for d, row in PAPER_TABLE_VII.items()},
                    key="contrastive", order=TABLE_VII_SETTINGS, paper_has_ssim=False)


def _compare(runs: pd.DataFrame, paper: dict, *, key: str, order: tuple[str, ...],
             paper_has_ssim: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    columns = ["test_psnr_y", "test_ssim_y", "realproxy_psnr_y", "realproxy_niqe"]
    stats = mean_sd(runs, ["dataset", key], columns) if len(runs) else pd.DataFrame(columns=["dataset", key])
    rows, taus = [], []
    for dataset in (d for d in DATASETS if d in paper):
        ours_psnr, paper_psnr = [], []
        for name in order:
            found = stats[(stats["dataset"] == dataset) & (stats[key] == name)]
            s = found.iloc[0] if len(found) else None
            p_psnr, p_ssim = paper[dataset][name]
            mean = s["test_psnr_y_mean"] if s is not None else math.nan
            row = {"dataset": dataset, key: name,
                   "PSNR (ours)": format_mean_sd(mean, s["test_psnr_y_sd"], s["seeds"]) if s is not None else "—",
                   "PSNR (paper)": p_psnr}
            if paper_has_ssim:
                row["SSIM (ours)"] = (format_mean_sd(s["test_ssim_y_mean"], s["test_ssim_y_sd"], s["seeds"], 4)
                                      if s is not None else "—")
                row["SSIM (paper)"] = p_ssim
            row["real-proxy PSNR (ours)"] = (format_mean_sd(s["realproxy_psnr_y_mean"], s["realproxy_psnr_y_sd"], s["seeds"])
                                             if s is not None else "—")
            rows.append(row)
            ours_psnr.append(mean)
            paper_psnr.append(p_psnr)
        ours_best = order[int(np.nanargmax(ours_psnr))] if not np.isnan(ours_psnr).all() else "—"
        taus.append({"dataset": dataset, "kendall_tau": kendall_tau(ours_psnr, paper_psnr),
                     "best (ours)": ours_best, "best (paper)": order[int(np.argmax(paper_psnr))],
                     "complete": not np.isnan(ours_psnr).any()})
    return pd.DataFrame(rows), pd.DataFrame(taus)


def compare_table_iii(runs: pd.DataFrame, profile: str | Profile) -> tuple[pd.DataFrame, float]:
    """Table III beside the paper: PSNR per (M, D) cell; τ over the cells we have.

    A scaled grid (``ci``) is matched to the paper's cell by position (smallest M with smallest M).
    """
    widths, depths = TABLE_III_GRID.get(get_profile(profile).name, TABLE_III_GRID_DEFAULT)
    paper_widths, paper_depths = TABLE_III_GRID_DEFAULT
    rows, ours, paper = [], [], []
    for blocks, paper_blocks in zip(depths, paper_depths):
        for width, paper_width in zip(widths, paper_widths):
            found = runs[(runs["width"] == width) & (runs["num_blocks"] == blocks)] if len(runs) else runs
            mean = float(found["test_psnr_y"].mean()) if len(found) else math.nan
            p_psnr, p_ssim = PAPER_TABLE_III[(paper_width, paper_blocks)]
            rows.append({"M": width, "D": f"{blocks}+3", "PSNR (ours)": mean, "PSNR (paper)": p_psnr,
                         "SSIM (ours)": float(found["test_ssim_y"].mean()) if len(found) else math.nan,
                         "SSIM (paper)": p_ssim, "paper cell": f"M={paper_width}, D={paper_blocks}+3"})
            if not math.isnan(mean):
                ours.append(mean)
                paper.append(p_psnr)
    return pd.DataFrame(rows), kendall_tau(ours, paper)


def positive_augmentation_table(runs_vii: pd.DataFrame, runs_colour: pd.DataFrame) -> pd.DataFrame:
    """Our two stand-ins for Eq. (7)'s AdaAttN on Rain200H: feature AdaIN (default) vs pixel colour transfer."""
    both = pd.concat([runs_vii, runs_colour], ignore_index=True) if len(runs_colour) else runs_vii
    if not len(both):
        return pd.DataFrame(columns=["setting", "positive augmentation"])
    both = both[(both["dataset"] == "rain200h") & both["contrastive"].isin(["aug_pos", "dual"])]
    stats = mean_sd(both, ["contrastive", "positive_augmentation"],
                    ["test_psnr_y", "test_ssim_y", "realproxy_psnr_y", "realproxy_ssim_y"])
    return pd.DataFrame([{
        "setting": row["contrastive"], "positive augmentation": row["positive_augmentation"],
        "Rain200H PSNR-Y": format_mean_sd(row["test_psnr_y_mean"], row["test_psnr_y_sd"], row["seeds"]),
        "real-proxy PSNR-Y": format_mean_sd(row["realproxy_psnr_y_mean"], row["realproxy_psnr_y_sd"], row["seeds"]),
        "real-proxy SSIM-Y": format_mean_sd(row["realproxy_ssim_y_mean"], row["realproxy_ssim_y_sd"], row["seeds"], 4),
    } for _, row in stats.iterrows()])


def missing_note(missing: list[str]) -> str:
    """One line for notebooks: which runs a table still lacks."""
    if not missing:
        return "all runs of this table are finished"
    return (f"{len(missing)} run(s) not finished yet (the study queue trains them): "
            + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))


def verdict(taus: pd.DataFrame, table: str) -> str:
    """Plain sentences on whether our ordering agrees with the paper's, dataset by dataset."""
    lines = []
    for row in taus.itertuples(index=False):
        tau = row.kendall_tau
        if math.isnan(tau):
            lines.append(f"{table}, {row.dataset}: not enough finished runs to compare.")
            continue
        agreement = ("agrees with" if tau >= 0.6 else "partly agrees with" if tau > 0.2
                     else "does not agree with" if tau > -0.2 else "reverses")
        best = getattr(row, "_2")
        paper_best = getattr(row, "_3")
        lines.append(f"{table}, {row.dataset}: our ordering {agreement} the paper's (Kendall tau {tau:.2f}); "
                     f"best here: {best}, in the paper: {paper_best}"
                     + ("" if row.complete else " (some runs missing)") + ".")
    return "\n".join(lines)


def compare_table_iv(runs: pd.DataFrame) -> pd.DataFrame:
    """Table IV beside the paper: DDN with and without an attached DRN (PSNR and seconds per image)."""
    return _compare_timed(runs, PAPER_TABLE_IV, key="variant")


def compare_table_v(runs: pd.DataFrame) -> pd.DataFrame:
    """Table V beside the paper: the DRN built from SDCAB vs MSARR blocks (PSNR and seconds per image), from the
    runs of table ``"V"`` (trained as Semi-DRDNet, as the paper) or ``"V-supervised"`` (the DRD-Net recipe)."""
    blocks = {"Semi-DRDNet": "sdcab", "BL+SE+SDCAB": "sdcab", "BL+SE+MSARR": "msarr"}
    runs = runs.assign(block=runs["variant"].map(blocks)) if len(runs) else runs
    return _compare_timed(runs, PAPER_TABLE_V, key="block")


def _compare_timed(runs: pd.DataFrame, paper: dict, *, key: str) -> pd.DataFrame:
    rows = []
    for dataset, entries in paper.items():
        for name, (p_psnr, p_time) in entries.items():
            found = runs[(runs["dataset"] == dataset) & (runs[key] == name)] if len(runs) else runs
            rows.append({"dataset": dataset, key: name,
                         "PSNR (ours)": float(found["test_psnr_y"].mean()) if len(found) else math.nan,
                         "PSNR (paper)": p_psnr,
                         "s/image (ours, CPU)": float(found["test_seconds_per_image"].mean()) if len(found) else math.nan,
                         "s/image (paper, GPU)": p_time})
    return pd.DataFrame(rows)


def fig13_table(runs: pd.DataFrame, profile: str | Profile) -> pd.DataFrame:
    """Fig. 13's loss combinations on Rain200H (the paper gives them only as a bar chart)."""
    rows = []
    for label, spec in zip(FIG13_COMBINATIONS, table_runs("fig13", profile)):
        match = runs[(runs["variant"] == spec.variant) & (runs["lambda_r"] == spec.lambda_r)
                     & (runs["semi_supervised"] == spec.semi_supervised)
                     & (runs["contrastive"].fillna("none") == (spec.contrastive or "none"))] if len(runs) else runs
        rows.append({"losses": label, "test PSNR-Y": float(match["test_psnr_y"].mean()) if len(match) else math.nan,
                     "test SSIM-Y": float(match["test_ssim_y"].mean()) if len(match) else math.nan,
                     "real-proxy PSNR-Y": float(match["realproxy_psnr_y"].mean()) if len(match) else math.nan})
    return pd.DataFrame(rows)


def collect_runs(profile: str | Profile, runs_dir: Path | None = None) -> pd.DataFrame:
    """Every finished run of a profile, one row each, with its provenance columns (the committed CSV)."""
    root = runs_root(profile) if runs_dir is None else Path(runs_dir)
    rows = []
    for path in sorted(root.glob("*/metrics.json")):
        record = json.loads(path.read_text())
        rows.append(_flatten(record) | {
            "profile": record["profile"], "vgg_weights": record["vgg_weights"], "bf16": record["bf16"],
            "patch_size": record["patch_size"], "batch_size": record["batch_size"],
            "commits": " ".join(record["commits"]), "machines": "; ".join(record["machines"])})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the study, from the shell


def _compared(table: str, runs: pd.DataFrame, profile: Profile,
              runs_vii: pd.DataFrame | None = None) -> tuple[pd.DataFrame, str]:
    """One table beside the paper's, and its verdict line (empty where the table has none).

    ``runs_vii``: Table VII's runs, for "VII-colour", when the caller has read them already.
    """
    if table == "II":
        compared, taus = compare_table_ii(runs)
        return compared, verdict(taus, "Table II")
    if table == "III":
        compared, tau = compare_table_iii(runs, profile)
        return compared, f"Kendall tau over the grid cells: {tau:.2f}"
    if table == "VII":
        compared, taus = compare_table_vii(runs)
        return compared, verdict(taus, "Table VII")
    if table == "IV":
        return compare_table_iv(runs), ""
    if table in ("V", "V-supervised"):
        return compare_table_v(runs), ""
    if table == "VII-colour":  # shown beside Table VII's AdaIN runs of the same settings
        if runs_vii is None:
            runs_vii, _ = run_table("VII", profile, train_missing=False)
        return positive_augmentation_table(runs_vii, runs), ""
    return fig13_table(runs, profile), ""


def report(profile: str | Profile) -> str:
    """Markdown of every table that has finished runs, beside the paper's, with the Kendall τ verdicts
    (what the README quotes)."""
    p = get_profile(profile)
    parts, read = [], {}
    for table in ("II", "III", "IV", "V", "V-supervised", "VII", "VII-colour", "fig13"):
        runs, missing = run_table(table, p, train_missing=False)
        read[table] = runs
        title = f"### {'Fig. 13' if table == 'fig13' else 'Table ' + table} ({p.name}; {len(runs)} runs finished)"
        if len(runs):
            compared, note = _compared(table, runs, p, runs_vii=read.get("VII"))
            body = to_markdown(compared) + (f"\n{note}\n" if note else "")
        else:
            body = "no finished run yet\n"
        parts.append(f"{title}\n\n{body}\n{missing_note(missing)}\n")
    return "\n".join(parts)


RUN_LOCK = "running.lock"  # held by the worker training a run (git-ignored)
CHECKPOINT_PART_BYTES = 15 * 2**20  # under the 20 MB a file may have in this repository


def park_checkpoints(profile: str | Profile, part_bytes: int = CHECKPOINT_PART_BYTES) -> list[Path]:
    """Cut every unfinished run's checkpoint bigger than ``part_bytes`` into parts, to commit it.

    Run this after stopping the workers at the end of a session; the next :func:`run` of that run
    joins the parts back (checking their checksum) and resumes. Runs being trained are left alone.
    Returns the checkpoints that were split.
    """
    split = []
    for checkpoint in sorted(runs_root(get_profile(profile)).glob("*/checkpoint.pt")):
        if checkpoint.stat().st_size > part_bytes and not is_training(checkpoint.parent):
            split_file(checkpoint, part_bytes)
            split.append(checkpoint)
    return split


def is_training(run_dir: Path) -> bool:
    """Whether a live process holds ``run_dir``'s lock, i.e. is training that run right now."""
    if not (run_dir / RUN_LOCK).exists():
        return False
    with try_lock(run_dir / RUN_LOCK) as free:
        return not free


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Work through the Semi-DRDNet study queue (resumable; start it once per core to share the queue).")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--budget-hours", type=float, default=math.inf,
                        help="start no new run after this many hours (a started run finishes)")
    parser.add_argument("--list", action="store_true", help="print the queue and each run's state, then exit")
    parser.add_argument("--report", action="store_true", help="print every table with finished runs as markdown, then exit")
    parser.add_argument("--only", nargs="*", default=None, help="run ids to run (default: the whole queue)")
    parser.add_argument("--park", action="store_true",
                        help=f"cut the checkpoints of stopped, unfinished runs into {CHECKPOINT_PART_BYTES // 2**20} MB parts "
                             "to commit, then exit")
    args = parser.parse_args(argv)
    p = get_profile(args.profile)
    if args.report:
        print(report(p), flush=True)
        return 0
    if args.park:
        for checkpoint in park_checkpoints(p):
            print(f"split {checkpoint} into parts", flush=True)
        return 0
    queue = [spec for spec in study_queue(p) if args.only is None or spec.run_id in args.only]
    unknown = sorted(set(args.only or ()) - {spec.run_id for spec in queue})
    if unknown:
        parser.error(f"not in the {p.name} study queue (see --list): {', '.join(unknown)}")
    root = runs_root(p)
    if args.list:
        for spec in queue:
            run_dir, checkpoint = root / spec.run_id, root / spec.run_id / "checkpoint.pt"
            state = ("done" if (run_dir / "metrics.json").exists()
                     else "training" if is_training(run_dir)
                     else "in progress" if checkpoint.exists() or has_parts(checkpoint) else "pending")
            print(f"{state:12s} {spec.run_id}")
        return 0
    started = time.perf_counter()
    for spec in queue:
        if (root / spec.run_id / "metrics.json").exists():
            continue
        if (time.perf_counter() - started) / 3600 > args.budget_hours:
            print(f"budget of {args.budget_hours} h spent; stopping before {spec.run_id}", flush=True)
            break
        # Several workers may share the queue (one per core): each run is trained by whoever locks it first.
        with try_lock(root / spec.run_id / RUN_LOCK) as mine:
            if not mine or (root / spec.run_id / "metrics.json").exists():
                continue
            print(f"run {spec.run_id}", flush=True)
            record = run(spec, p, progress=False)
        runs_csv = REPO_ROOT / "results" / p.name / "semi_drdnet_runs.csv"
        with atomic_path(runs_csv) as tmp:
            collect_runs(p).to_csv(tmp, index=False)
        print(f"done {spec.run_id}: test PSNR-Y {record['test']['psnr_y']:.2f}, "
              f"real-proxy {record['realproxy']['psnr_y']:.2f}, {record['train_wall_time_s'] / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

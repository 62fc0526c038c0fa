"""Semi-DRDNet's study runs: one training run per (table row, seed), trained, evaluated and recorded.

A run is a :class:`RunSpec`: what is trained (network, size), on which data, with which losses,
and its seed. Tables II, III, IV, V, VII and Fig. 13 are lists of specs (:func:`table_runs`), and so is
ANLCL's Table 6 (the DRD-Net recipe with ANLCL's loss added, :data:`ANLCL_TABLE`); runs
shared between tables (Semi-DRDNet on Rain200H is in II, V, VII and Fig. 13) are trained once.
Each run lives in ``<runs_root>/<run_id>/`` and is run by the method-neutral :mod:`derainlib.study`:

- ``log.csv`` and ``model.pt`` from :func:`derainlib.train.train` (``checkpoint.pt`` while in progress);
- ``segments.json``: provenance of every training segment (commit, machine, steps, wall time),
  since a long run may be stopped and resumed several times, on different machines;
- ``metrics.json``: the evaluation on the dataset's test split and on the real-proxy test split.

Sizes come from the profile's ``semi_drdnet`` section (:class:`derainlib.profiles.SemiDRDNetSizes`).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path

import pandas as pd

from .. import distributed, study
from ..data.benchmark import build_benchmark, default_benchmark_root, layout_of, open_split, split_root
from ..evaluation import evaluate, summarize
from ..losses import LossWeights
from ..losses.anlcl import ContrastiveSampling
from ..models import build_network, count_parameters
from ..options import check_choice
from ..profiles import Profile, get_profile
from ..runtime import resolve_device
from ..train import ANLCL_TERMS, TrainConfig, load_model, lr_milestone_steps, train
from .semi_drdnet_paper import DATASETS, PAPER_TABLE_IV, PAPER_TABLE_V, TABLE_II_VARIANTS, TABLE_VII_SETTINGS
from .semi_drdnet_stable import DOSES, SELECTED_DOSE, select_dose, stable_config, stable_layer_weights

METHOD = "semi_drdnet"  # the folder name under results/<profile>/

#: Readings of the choices Eq. (5)/(6) leave open (``derainlib.losses.contrastive``), as TrainConfig fields,
#: in the order of preference fixed *before* measuring them: the literal one first, then the fewest
#: departures from it. ``semi_drdnet_stability`` measures each and picks the first stable one.
READINGS: dict[str, dict] = {
    "literal": dict(negative_base="derained", clamp_contrastive=False, contrastive_distance="squared_l2"),
    "clamp": dict(negative_base="derained", clamp_contrastive=True, contrastive_distance="squared_l2"),
    "clamp-l1": dict(negative_base="derained", clamp_contrastive=True, contrastive_distance="l1"),
    "clamp-clean": dict(negative_base="clean", clamp_contrastive=True, contrastive_distance="squared_l2"),
    "clamp-clean-l1": dict(negative_base="clean", clamp_contrastive=True, contrastive_distance="l1"),
    # A reading that is well-posed, each choice argued in docs/semi_drdnet_choices.md: negatives on the fixed,
    # clamped positive; per-batch ratios, mean over k; Gram matrices for Eq. (8)'s unpaired positive; VGG in fp32;
    # the gradient monitor on. Warm start, pool5 (dropped below 128 px crops), the faint-layer band and λ by
    # gradient parity come with it (semi_drdnet_stable.stable_config; RunSpec.init_from).
    "stable": dict(negative_base="clean", clamp_contrastive=True, contrastive_distance="squared_l2",
                   negative_gradient=False, contrastive_ratio="per_batch", negative_reduction="mean",
                   unsupervised_distance="gram", vgg_precision="fp32", monitor_gradients=True),
}

#: The readings the stability diagnostic measures and the study's reading is chosen from, in order of
#: preference (the fewest departures from the paper first). "stable" is not a candidate: it is a different
#: recipe (warm start, λ by parity), reported beside the literal study, not instead of it.
DIAGNOSED_READINGS: tuple[str, ...] = ("literal", "clamp", "clamp-l1", "clamp-clean", "clamp-clean-l1")

#: The reading the study's DualSCRNet runs use: what ``semi_drdnet_stability.chosen_reading`` picked from
#: the committed cpu diagnostic, or the paper as written ("literal") when no reading passed the rule;
#: their results are then reported as unstable (a test checks this agrees with the committed csv).
STUDY_READING = "literal"


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
    # The embedded benchmark's renderer version the run reads: the committed study is version 1; the stable
    # reading's runs read version 2 (a "-v2" in the run id).
    renderer_version: int = 1
    # The run id of a finished run whose model.pt this run starts from (the stable reading's warm start).
    init_from: str | None = None
    # ANLCL's layer and asymmetric contrastive terms added to the supervised loss (ANLCL's Table 6; train.py)
    anlcl_loss: bool = False
    # One of train.ANLCL_TERMS alone instead of both (ANLCL_TERMS_TABLE, which term costs the PSNR); None: both
    anlcl_term: str | None = None

    def __post_init__(self) -> None:
        check_choice("reading", self.reading, tuple(READINGS))
        if (self.reading == "stable") != (self.init_from is not None):
            raise ValueError("the stable reading starts from a supervised run (init_from), and only it does")
        if self.anlcl_loss and (self.semi_supervised or self.contrastive):
            raise ValueError("ANLCL's loss is added to the supervised recipe only (ANLCL's Table 6), not to DualSCRNet")
        if self.anlcl_term is not None:
            if not self.anlcl_loss:
                raise ValueError(f"anlcl_term={self.anlcl_term!r} needs anlcl_loss=True")
            check_choice("anlcl_term", self.anlcl_term, ANLCL_TERMS)

    @property
    def run_id(self) -> str:
        size = "" if self.variant.startswith("DDN") else f"-m{self.width}b{self.num_blocks}"
        parts = [self.dataset, self.variant.replace("+", "_").lower() + size]
        if self.anlcl_loss:
            parts.append("anlcl" if self.anlcl_term is None else f"anlcl-{self.anlcl_term}")
        if self.semi_supervised:
            parts.append("semi")
        if self.contrastive:
            parts.append(self.contrastive + ("" if self.positive_augmentation == "adain" else f"-{self.positive_augmentation}"))
        if self.lambda_r != 0.5:
            parts.append(f"lr{self.lambda_r:g}")
        if self.contrastive and self.reading == "stable":  # λ is the dose, relative to gradient parity
            parts.append("ldsel" if math.isnan(self.lambda_dual) else f"ld{self.lambda_dual:g}")
        elif self.contrastive and self.lambda_dual != 0.5:
            parts.append(f"ld{self.lambda_dual:g}")
        if self.contrastive and self.reading != "literal":
            parts.append(self.reading)
        if self.init_from is not None and self.init_from != warm_start_run(self).run_id:
            parts.append(f"from-{self.init_from}")
        if self.renderer_version != 1:
            parts.append(f"v{self.renderer_version}")
        return "-".join(parts) + f"-s{self.seed}"


def warm_start_run(spec: RunSpec) -> RunSpec:
    """The supervised run a stable run starts from by default: the DRD-Net recipe (``BL+SE+SDCAB``, the
    same network as ``Semi-DRDNet``) or, for DDN, DDN itself, on the same data, size, seed and rain."""
    variant = "BL+SE+SDCAB" if spec.variant == "Semi-DRDNet" else spec.variant
    return RunSpec(spec.dataset, variant, spec.seed, spec.width, spec.num_blocks,
                   renderer_version=spec.renderer_version)


def stable_run(dataset: str, seed: int, width: int, num_blocks: int, dose: float, *, variant: str = "Semi-DRDNet",
               setting: str = "dual", semi_supervised: bool = True, renderer_version: int = 2) -> RunSpec:
    """A run of the stable reading: warm-started from :func:`warm_start_run`, ``λ_dual = λ_unsup = dose``
    times the parity scales (``semi_drdnet_stable``); ``dose=SELECTED_DOSE``: the dose the selection rule
    picks on the validation split from the dose–response runs."""
    base = RunSpec(dataset, variant, seed, width, num_blocks, renderer_version=renderer_version)
    return RunSpec(dataset, variant, seed, width, num_blocks, semi_supervised=semi_supervised, contrastive=setting,
                   lambda_dual=dose, reading="stable", renderer_version=renderer_version,
                   init_from=warm_start_run(base).run_id)


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

    ``datasets`` defaults to the profile's (``ci`` trains Rain200H only: the other datasets' rows stay
    empty; it proves the pipeline in minutes).
    """
    p = get_profile(profile)
    sizes = p.semi_drdnet
    seeds = p.seeds if seeds is None else seeds
    if datasets is None:
        datasets = sizes.datasets
    w, b = sizes.width, sizes.num_blocks
    if table == "II":
        return [supervised_run(d, v, s, w, b) if v != "Semi-DRDNet" else semi_supervised_run(d, s, w, b)
                for d in datasets for s in seeds for v in TABLE_II_VARIANTS]
    if table == "III":  # the architecture-size grid, trained with the DRD-Net recipe (see notebook 11)
        widths, depths = sizes.table_iii_grid
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
    if table in STABLE_TABLES:
        return stable_table_runs(table, p, seeds=seeds, datasets=datasets)
    if table == ANLCL_TABLE:  # the DRD-Net recipe without and with ANLCL's loss, on the stable reading's rain
        return [supervised_run("rain200h", "BL+SE+SDCAB", s, w, b, renderer_version=STABLE_RENDERER_VERSION,
                               anlcl_loss=anlcl_loss) for s in seeds for anlcl_loss in (False, True)]
    if table == ANLCL_TERMS_TABLE:  # each of the two terms alone, first seed: a diagnostic of Table 6's loss
        return [supervised_run("rain200h", "BL+SE+SDCAB", seeds[0], w, b, renderer_version=STABLE_RENDERER_VERSION,
                               anlcl_loss=True, anlcl_term=term) for term in ANLCL_TERMS]
    raise ValueError(f"unknown table {table!r}; valid: II, III, IV, V, V-supervised, VII, VII-colour, fig13, "
                     f"{', '.join(STABLE_TABLES)}, {ANLCL_TABLE}, {ANLCL_TERMS_TABLE}")


#: ANLCL's Table 6 ("boosting performance on supervised deraining methods"): its runs are DRD-Net runs, trained
#: and scored by this study; ``derainlib.experiments.anlcl_tables.table6`` reports them. Its baselines are the
#: stable reading's warm starts.
ANLCL_TABLE = "ANLCL-6"

#: A diagnostic added after Table 6 had its three seeds (not a table of the paper): the DRD-Net recipe with ANLCL's
#: layer term alone and with its asymmetric term alone, first seed, beside Table 6's runs of that seed.
ANLCL_TERMS_TABLE = "ANLCL-6-terms"


#: The stable reading's run lists (issue-free names): the dose–response sweep (one seed), its 3-seed
#: comparison of λ = 0 with the selected dose, and the paper's tables and DDN under the stable reading.
STABLE_TABLES = ("dose", "dose-seeds", "VII-stable", "II-stable", "fig13-stable", "DDN-stable")
#: The renderer version the stable reading's runs read (the photometric rain of the real-proxy domain).
STABLE_RENDERER_VERSION = 2


def stable_table_runs(table: str, profile: str | Profile, *, seeds: tuple[int, ...] | None = None,
                      datasets: tuple[str, ...] | None = None) -> list[RunSpec]:
    """The runs of one of :data:`STABLE_TABLES`, warm starts not included (:func:`warm_starts` lists them).

    Runs at the selected dose carry ``SELECTED_DOSE`` (``ldsel`` in the id): the dose is fixed by the
    selection rule (``semi_drdnet_stable.SELECTION_RULE``) when they train.
    """
    p = get_profile(profile)
    sizes = p.semi_drdnet
    seeds = p.seeds if seeds is None else seeds
    datasets = sizes.datasets if datasets is None else datasets
    w, b, v = sizes.width, sizes.num_blocks, STABLE_RENDERER_VERSION
    if table == "dose":
        return [stable_run("rain200h", seeds[0], w, b, dose, renderer_version=v) for dose in DOSES]
    if table == "dose-seeds":
        return [stable_run("rain200h", s, w, b, dose, renderer_version=v) for dose in (0.0, SELECTED_DOSE) for s in seeds]
    if table == "VII-stable":
        return [stable_run("rain200h", s, w, b, SELECTED_DOSE, setting=setting, renderer_version=v)
                for s in seeds for setting in TABLE_VII_SETTINGS]
    if table == "II-stable":
        return [stable_run(d, s, w, b, dose, renderer_version=v)
                for d in datasets for s in seeds for dose in (0.0, SELECTED_DOSE)]
    if table == "fig13-stable":  # per dataset: L_d + L_r + L_Dual(sup) (no unlabeled data), and the full objective
        return [stable_run(d, seeds[0], w, b, SELECTED_DOSE, semi_supervised=semi_supervised, renderer_version=v)
                for d in datasets for semi_supervised in (False, True)]
    if table == "DDN-stable":  # DualSCRNet attached to DDN (Sec. IV-E), paired with its λ = 0 control
        return [stable_run(d, s, w, b, dose, variant="DDN", renderer_version=v)
                for d in datasets if d in PAPER_TABLE_IV for s in seeds for dose in (0.0, SELECTED_DOSE)]
    raise ValueError(f"unknown stable table {table!r}; valid: {', '.join(STABLE_TABLES)}")


def warm_starts(specs: list[RunSpec]) -> list[RunSpec]:
    """The supervised runs that ``specs`` start from, in first-use order, without repeats."""
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        if spec.init_from is not None:
            base = warm_start_run(spec)
            seen.setdefault(base.run_id, base)
    return list(seen.values())


def stable_queue(profile: str | Profile) -> list[RunSpec]:
    """The stable reading's runs in the order the study trains them: the dose–response sweep first (its
    warm start before it), then the 3-seed comparison, then the paper's tables and DDN."""
    p = get_profile(profile)
    order: list[RunSpec] = []
    for table in STABLE_TABLES:
        runs = table_runs(table, p)
        order += warm_starts(runs) + runs
    return order


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
        stable_queue(p),  # after every run of the committed (literal) study
        table_runs(ANLCL_TABLE, p),
        table_runs(ANLCL_TERMS_TABLE, p),
    ]
    seen: dict[str, RunSpec] = {}
    for group in order:
        for spec in group:
            seen.setdefault(spec.run_id, spec)
    return list(seen.values())


def runs_root(profile: str | Profile, data_root: str | Path | None = None, benchmark_seed: int = 0) -> Path:
    """Where Semi-DRDNet's runs live (:func:`derainlib.study.runs_root`): ``results/<profile>/semi_drdnet/runs``
    (committed for cpu/gpu) on the embedded benchmark rendered with seed 0, a sibling folder for another
    ``benchmark_seed``, ``build/runs/<profile>/semi_drdnet/<folder name>`` on a user's ``data_root``,
    and a fresh temporary folder for a profile that trains inside the notebooks (``ci``)."""
    return study.runs_root(profile, METHOD, data_root, benchmark_seed)


#: The renderer version of the embedded benchmark that Semi-DRDNet's runs read. The committed study was
#: rendered with version 1, so the runs the queue adds to it read the same rain; a study on version 2
#: is a new series of runs.
RENDERER_VERSION = 1


def benchmark_root(profile: str | Profile, data_root: str | Path | None = None, seed: int = 0,
                   version: int = RENDERER_VERSION) -> Path:
    """The data the runs read: a user's ``data_root`` as is, else the embedded benchmark rendered with
    ``seed`` by renderer ``version`` (default :data:`RENDERER_VERSION`; a run spec names its own; built on
    first use; see :func:`run` for what the seed means)."""
    if data_root is not None:
        return Path(data_root)
    return build_benchmark(default_benchmark_root(profile, seed, version), profile, seed=seed, version=version)


def train_config(spec: RunSpec, profile: str | Profile, data_root: Path) -> TrainConfig:
    """The :class:`TrainConfig` of ``spec`` at ``profile``'s sizes, reading ``data_root``."""
    p = get_profile(profile)
    sizes = p.semi_drdnet
    return TrainConfig(
        variant=spec.variant, width=spec.width, num_blocks=spec.num_blocks,
        train_root=str(split_root(data_root, spec.dataset, "train")), train_layout=layout_of(spec.dataset),
        real_root=str(split_root(data_root, "realproxy", "train") / "input") if spec.semi_supervised else None,
        val_root=str(split_root(data_root, spec.dataset, "val")), val_layout=layout_of(spec.dataset),
        val_every_epochs=sizes.val_every_epochs,
        patch_size=sizes.patch_size, batch_size=sizes.batch_size, num_workers=p.num_workers,
        steps=sizes.stable_iterations if spec.reading == "stable" else sizes.iterations,
        learning_rate=sizes.learning_rate,
        semi_supervised=spec.semi_supervised, contrastive=spec.contrastive,
        positive_augmentation=spec.positive_augmentation,
        loss_weights=LossWeights(rain_residual=spec.lambda_r, dual=spec.lambda_dual if spec.contrastive else 0.0),
        seed=spec.seed, device=p.device, bf16=p.bf16, channels_last=p.channels_last, compile_mode=p.compile_mode,
        checkpoint_every=p.checkpoint_every, **READINGS[spec.reading],
        **({"anlcl_terms": ANLCL_TERMS if spec.anlcl_term is None else (spec.anlcl_term,),
            "anlcl_sampling": ContrastiveSampling.from_sizes(p.anlcl)} if spec.anlcl_loss else {}),
        **({"contrastive_layer_weights": stable_layer_weights(sizes.patch_size)} if spec.reading == "stable" else {}),
    )


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


def study_run(spec: RunSpec, profile: str | Profile, *, data_root: str | Path | None = None,
              benchmark_seed: int = 0, progress: bool | None = None) -> study.StudyRun:
    """``spec`` as the study queue runs it: train with :func:`derainlib.train.train`, score with
    :func:`evaluate_run`. The benchmark is built only when the run is trained or scored.

    Under ``torchrun`` (:mod:`derainlib.distributed`) every process trains the run together and rank 0
    alone scores it (:func:`derainlib.study.run_once`)."""
    p = get_profile(profile)
    # Under torchrun every rank trains the run; they build the benchmark one after the other (never two
    # at once in one folder). Training comes first, on every rank, so the cache is filled on each.
    source = cache(lambda: distributed.in_turn(
        lambda: benchmark_root(p, data_root, seed=benchmark_seed, version=spec.renderer_version)))

    def train_run(run_dir: Path) -> study.Trained:
        config = train_config(spec, p, source())
        stable = {}
        if spec.reading == "stable":  # warm start, collapse reference, faint-layer band, λ by parity
            init_dir = run_dir.parent / spec.init_from
            if not (init_dir / study.METRICS).exists():  # the warm start comes first in the queue; train it now
                by_id = {s.run_id: s for s in study_queue(p)} | {warm_start_run(spec).run_id: warm_start_run(spec)}
                study.run_needed(study_run(by_id[spec.init_from], p, data_root=data_root,
                                           benchmark_seed=benchmark_seed, progress=progress), init_dir, p.name)
            dose = resolved_dose(spec, run_dir.parent)
            twin = run_dir.parent / replace(spec, lambda_dual=dose).run_id
            if math.isnan(spec.lambda_dual) and (twin / study.METRICS).is_file():
                return copied_run(twin, run_dir, spec)  # the dose–response sweep already trained this very run
            config = stable_config(config, dose, init_dir, run_dir)  # every rank: its parity steps gather layers
            stable = {"dose": dose, **json.loads((run_dir / "stable.json").read_text())}
            config, stable = distributed.broadcast_object((config, stable))  # rank 0's numbers on every rank
        result = train(config, run_dir, progress=progress)
        if stable:  # what the selection rule reads: the validation split's PSNR-Y at the run's last validation
            logged = result.log["val_psnr_y"].dropna() if "val_psnr_y" in result.log else pd.Series(dtype=float)
            stable["val_psnr_y"] = float(logged.iloc[-1]) if len(logged) else math.nan
        facts = {"spec": asdict(spec), "vgg_weights": config.vgg_weights if spec.contrastive else None,
                 "bf16": config.bf16, "patch_size": config.patch_size, "batch_size": config.batch_size,
                 "benchmark_seed": None if data_root is not None else benchmark_seed,
                 "renderer_version": None if data_root is not None else spec.renderer_version,
                 "collapsed": result.collapsed, **({"stable": stable} if stable else {})}
        return study.Trained(result.steps, result.wall_time_s, facts)

    return study.StudyRun(spec.run_id, train_run, lambda run_dir: evaluate_run(spec, p, source(), run_dir),
                          needs=needed_runs(spec))


def needed_runs(spec: RunSpec) -> tuple[str, ...]:
    """The runs ``spec`` starts from or reads (:attr:`derainlib.study.StudyRun.needs`): its warm start and, at
    the selected dose, every dose–response run the selection rule reads."""
    needs = () if spec.init_from is None else (spec.init_from,)
    if spec.reading == "stable" and math.isnan(spec.lambda_dual):
        needs += tuple(s.run_id for s in sweep_runs(spec))
    return needs


def sweep_runs(spec: RunSpec) -> list[RunSpec]:
    """The dose–response runs whose validation scores pick the dose of ``spec`` (at ``spec``'s sizes)."""
    return [stable_run("rain200h", 0, spec.width, spec.num_blocks, dose, renderer_version=spec.renderer_version)
            for dose in DOSES]


def copied_run(twin: Path, run_dir: Path, spec: RunSpec) -> study.Trained:
    """A run at the selected dose whose seed the dose–response sweep already trained at that dose: the same
    specification once the dose is resolved, so its files are copied, not retrained, and the record says so
    (``copied_from``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("model.pt", "log.csv", "stable.json"):
        shutil.copy2(twin / name, run_dir / name)
    record = study.read_record(twin)
    facts = {key: value for key, value in record.items() if key in ("vgg_weights", "bf16", "patch_size", "batch_size",
                                                                   "benchmark_seed", "renderer_version", "collapsed",
                                                                   "stable")}
    return study.Trained(record["steps"], record["train_wall_time_s"],
                         {"spec": asdict(spec), **facts, "copied_from": twin.name})


def resolved_dose(spec: RunSpec, root: Path) -> float:
    """The run's dose: its own, or for ``SELECTED_DOSE`` the one the selection rule picks from the finished
    dose–response runs in ``root`` (an error, naming what is missing, before they have all finished)."""
    if not math.isnan(spec.lambda_dual):
        return spec.lambda_dual
    sweep = sweep_runs(spec)
    records = [study.read_record(root / s.run_id) for s in sweep]
    missing = [s.run_id for s, r in zip(sweep, records) if r is None]
    if missing:
        raise LookupError(f"{spec.run_id} trains at the dose chosen on the validation split, and the dose–response "
                          f"runs are not all finished (missing: {', '.join(missing)}); train them first")
    return select_dose(pd.DataFrame([dose_row(r) for r in records]))


def dose_row(record: dict) -> dict:
    """What the selection rule reads from a dose–response run's record: dose, seed, validation PSNR-Y, collapse."""
    return {"dose": record["spec"]["lambda_dual"], "seed": record["spec"]["seed"],
            "val_psnr_y": record.get("stable", {}).get("val_psnr_y", math.nan),
            "collapsed": record.get("collapsed") is not None}


def run(spec: RunSpec, profile: str | Profile, *, data_root: str | Path | None = None, benchmark_seed: int = 0,
        progress: bool | None = None) -> dict:
    """Train (or resume) and evaluate one run; return its ``metrics.json`` record.

    ``data_root``: a user's folder of real datasets (arranged as the README says), or ``None``
    for the embedded benchmark, built on first use. A finished run is read back, not retrained.

    ``benchmark_seed`` is the render seed of the embedded benchmark: which rain falls on the shipped
    photos (the notebooks' ``seed`` parameter). It is not a training seed: each run's training seed
    is ``spec.seed`` (the tables train the profile's ``seeds``). Runs on different renderings live in
    different folders (:func:`runs_root`), and the record says which rendering a run read
    (``benchmark_seed``; ``None`` on a user's ``data_root``, where nothing is rendered and the seed
    does not apply). The committed study uses seed 0.
    """
    p = get_profile(profile)
    run_dir = runs_root(p, data_root, benchmark_seed) / spec.run_id
    return study.run_once(study_run(spec, p, data_root=data_root, benchmark_seed=benchmark_seed, progress=progress),
                          run_dir, p.name)


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
    if spec.reading == "stable":  # λ is a dose relative to gradient parity, and the run starts from another
        dose = "the selected dose" if math.isnan(spec.lambda_dual) else f"{spec.lambda_dual:g}"
        rows["losses"] = (f"L_d + {spec.lambda_r:g} L_r + λ (s_sup L_Dual(sup)"
                          + (" + s_unsup L_Dual(unsup)" if spec.semi_supervised else "")
                          + f"), λ = {dose}, s = gradient-parity scales at the warm start")
        rows["DualSCRNet"] += ", stable reading (docs/semi_drdnet_choices.md)"
        rows["warm start"] = spec.init_from
        rows["rain"] = f"renderer version {spec.renderer_version}"
    return pd.DataFrame({"setting": list(rows), "value": list(rows.values())})


def run_table(table: str, profile: str | Profile, *, data_root: str | Path | None = None, benchmark_seed: int = 0,
              train_missing: bool | None = None, progress: bool | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The per-run results of ``table`` (one row per run) and the ids of runs that have no results.

    ``train_missing`` (default: the profile's ``train_in_notebooks``, i.e. only for ``ci``) trains
    missing runs now; otherwise they are listed as missing, for the study queue
    (``python -m derainlib.experiments.semi_drdnet``) to fill. ``benchmark_seed``: as in :func:`run`.
    """
    p = get_profile(profile)
    train_missing = p.train_in_notebooks if train_missing is None else train_missing
    rows, missing = [], []
    for spec in table_runs(table, p):
        if not (runs_root(p, data_root, benchmark_seed) / spec.run_id / study.METRICS).exists() and not train_missing:
            missing.append(spec.run_id)
            continue
        rows.append(_flatten(run(spec, p, data_root=data_root, benchmark_seed=benchmark_seed, progress=progress)))
    return pd.DataFrame(rows), missing


def _flatten(record: dict) -> dict:
    row = {"reading": "literal", **record["spec"], "run_id": record["run_id"], "steps": record["steps"],
           "train_wall_time_s": record["train_wall_time_s"]}
    for split in ("test", "realproxy"):
        row.update({f"{split}_{name}": value for name, value in record[split].items()})
    return row


def collect_runs(profile: str | Profile, runs_dir: Path | None = None) -> pd.DataFrame:
    """Every finished run of a profile, one row each, with its provenance columns (the committed CSV)."""
    rows = []
    for record in study.read_records(runs_root(profile) if runs_dir is None else Path(runs_dir)):
        rows.append(_flatten(record) | {
            "profile": record["profile"], "vgg_weights": record["vgg_weights"], "bf16": record["bf16"],
            "patch_size": record["patch_size"], "batch_size": record["batch_size"],
            "commits": " ".join(record["commits"]), "machines": "; ".join(record["machines"]),
            # records from before renderer versions existed were all rendered by version 1
            "renderer_version": record.get("renderer_version", 1)})
    return pd.DataFrame(rows)

"""ANLCL's study runs: one run per (setting, seed), both training stages of §4.6, evaluated and recorded.

A run is a :class:`RunSpec`: the paired synthetic domain of stage 1 (supervised pretraining), the
unlabeled rainy images of stage 2 (the real-proxy train split, or a user's folder), the sampling and
loss settings the ablations vary (Tables 3-5), and the seed. Each run lives in
``<runs_root>/<run_id>/`` (``results/<profile>/anlcl/runs/`` for the committed study) and is run by the
method-neutral :mod:`derainlib.study`:

- ``log.csv`` and ``model.pt`` from :func:`derainlib.train_anlcl.train_anlcl` (``checkpoint.pt`` while in progress);
- ``segments.json``: provenance of every training segment;
- ``metrics.json``: PSNR/SSIM (Y and RGB) and NIQE on the real-proxy test split (its held-out targets),
  PSNR/SSIM on the pretraining domain's synthetic test split, the benchmark's renderer version, and
  whether the collapse rule stopped the run.

Sizes come from the profile's ``anlcl`` section (:class:`derainlib.profiles.ANLCLSizes`).

Command line: ``python -m derainlib.experiments.anlcl_runs --profile cpu`` works through the study queue
(resumable; start it once per core to share the queue); ``--list`` prints each run's state.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from .. import distributed, study
from ..data.benchmark import (benchmark_renderer_version, build_benchmark, default_benchmark_root, layout_of,
                              open_split, split_root)
from ..data.synthetic import DEFAULT_VERSION
from ..evaluation import evaluate, summarize
from ..losses.anlcl import ContrastiveSampling
from ..profiles import Profile, get_profile
from ..runtime import resolve_device
from ..train import load_model
from ..train_anlcl import CONTRASTIVE_TERMS, ANLCLConfig, train_anlcl

METHOD = "anlcl"  # the folder name under results/<profile>/

#: The embedded benchmark's renderer version ANLCL's runs read by default (the current renderer).
RENDERER_VERSION = DEFAULT_VERSION

#: Sampling strategies of Table 3 (``derainlib.nonlocal_sampling``).
STRATEGIES = ("random", "neighbour", "nonlocal")

SCORES = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "niqe")


@dataclass(frozen=True)
class RunSpec:
    """One ANLCL run. Equal specs are the same run, whichever table asks for it."""

    pretrain_dataset: str  # stage 1's paired synthetic domain, e.g. "rain200h"
    seed: int
    width: int
    num_blocks: int
    positives: str = "nonlocal"  # Table 3
    negatives: str = "nonlocal"
    terms: tuple[str, ...] = CONTRASTIVE_TERMS  # Table 5: the contrastive terms of stage 2
    renderer_version: int = RENDERER_VERSION

    def __post_init__(self) -> None:
        for strategy in (self.positives, self.negatives):
            if strategy not in STRATEGIES:
                raise ValueError(f"sampling strategy {strategy!r}: expected one of {STRATEGIES}")
        unknown = set(self.terms) - set(CONTRASTIVE_TERMS)
        if unknown:
            raise ValueError(f"unknown contrastive terms {sorted(unknown)}; valid: {', '.join(CONTRASTIVE_TERMS)}")

    @property
    def run_id(self) -> str:
        parts = [self.pretrain_dataset, "realproxy", f"anlcl-m{self.width}b{self.num_blocks}"]
        if (self.positives, self.negatives) != ("nonlocal", "nonlocal"):
            parts.append(f"pos-{self.positives}-neg-{self.negatives}")
        if tuple(self.terms) != CONTRASTIVE_TERMS:
            parts.append("terms-" + ("_".join(self.terms) or "none"))
        parts.append(f"v{self.renderer_version}")
        return "-".join(parts) + f"-s{self.seed}"


def default_run(profile: str | Profile, seed: int, pretrain_dataset: str = "rain200h") -> RunSpec:
    """ANLCL's default setting (§4.6) at ``profile``'s sizes."""
    sizes = get_profile(profile).anlcl
    return RunSpec(pretrain_dataset, seed, sizes.width, sizes.num_blocks)


def study_queue(profile: str | Profile) -> list[RunSpec]:
    """Every run of the study: the default setting on Rain200H pretraining + real-proxy fine-tuning, one
    run per seed of the profile. (Tables 3-5's ablation rows are added here as they are built.)"""
    p = get_profile(profile)
    return [default_run(p, seed) for seed in p.seeds]


def runs_root(profile: str | Profile, data_root: str | Path | None = None, benchmark_seed: int = 0,
              real_root: str | Path | None = None) -> Path:
    """Where ANLCL's runs live (:func:`derainlib.study.runs_root`): ``results/<profile>/anlcl/runs`` on the
    embedded benchmark, ``build/runs/<profile>/anlcl/<folder name>`` on a user's ``data_root`` or, when given,
    a user's ``real_root`` of unlabeled images (its name), a fresh temporary folder for ``ci``."""
    return study.runs_root(profile, METHOD, data_root if real_root is None else real_root, benchmark_seed)


def benchmark_root(profile: str | Profile, data_root: str | Path | None = None, seed: int = 0,
                   version: int = RENDERER_VERSION) -> Path:
    """The data the runs read: a user's ``data_root`` as is, else the embedded benchmark (built on first use)."""
    if data_root is not None:
        return Path(data_root)
    return build_benchmark(default_benchmark_root(profile, seed, version), profile, seed=seed, version=version)


def train_config(spec: RunSpec, profile: str | Profile, data_root: Path, real_root: str | Path | None = None) -> ANLCLConfig:
    """The :class:`ANLCLConfig` of ``spec`` at ``profile``'s sizes. Stage 2 reads ``real_root`` (a folder of
    unlabeled rainy images) or, by default, the real-proxy train split's rainy images under ``data_root``."""
    p = get_profile(profile)
    sizes = p.anlcl
    real = Path(real_root) if real_root is not None else split_root(data_root, "realproxy", "train") / "input"
    return ANLCLConfig(
        pretrain_root=str(split_root(data_root, spec.pretrain_dataset, "train")),
        pretrain_layout=layout_of(spec.pretrain_dataset), real_root=str(real),
        width=spec.width, num_blocks=spec.num_blocks, momentum=sizes.momentum,
        pretrain_steps=sizes.pretrain_iterations, steps=sizes.iterations, crop_size=sizes.crop_size,
        batch_size=sizes.batch_size, learning_rate=sizes.learning_rate, num_workers=p.num_workers,
        terms=tuple(spec.terms),
        sampling=ContrastiveSampling.from_sizes(sizes, positives=spec.positives, negatives=spec.negatives),
        seed=spec.seed, device=p.device, bf16=p.bf16, channels_last=p.channels_last,
        checkpoint_every=p.checkpoint_every)


def evaluate_run(spec: RunSpec, profile: str | Profile, data_root: Path, run_dir: Path) -> dict:
    """Score a trained run: the real-proxy test split against its held-out targets (with NIQE), and the
    pretraining domain's synthetic test split. A split missing from a user's data root scores NaN."""
    p = get_profile(profile)
    model, _ = load_model(run_dir / "model.pt", resolve_device(p.device))
    results = {}
    for name, domain, with_niqe in (("realproxy", "realproxy", True), ("test", spec.pretrain_dataset, False)):
        if not split_root(data_root, domain, "test").is_dir():
            results[name] = {key: math.nan for key in SCORES}
            continue
        dataset = open_split(data_root, domain, "test")
        started = time.perf_counter()
        scores = evaluate(model, dataset, bf16=p.bf16, channels_last=p.channels_last, with_niqe=with_niqe,
                          with_range=True)
        results[name] = summarize(scores) | {"images": len(scores),
                                             "seconds_per_image": (time.perf_counter() - started) / len(scores)}
        if with_niqe:  # NIQE is undefined on images under two 96×96 blocks
            results[name]["niqe_images"] = int(scores["niqe"].notna().sum())
    return results


def study_run(spec: RunSpec, profile: str | Profile, *, data_root: str | Path | None = None,
              real_root: str | Path | None = None, benchmark_seed: int = 0,
              progress: bool | None = None) -> study.StudyRun:
    """``spec`` as the study queue runs it: train with :func:`derainlib.train_anlcl.train_anlcl`, score with
    :func:`evaluate_run`. The benchmark is built only when the run is trained or scored."""
    p = get_profile(profile)
    source = cache(lambda: distributed.in_turn(
        lambda: benchmark_root(p, data_root, seed=benchmark_seed, version=spec.renderer_version)))

    def train_run(run_dir: Path) -> study.Trained:
        config = train_config(spec, p, source(), real_root)
        result = train_anlcl(config, run_dir, progress=progress)
        facts = {"spec": asdict(spec), "bf16": config.bf16, "crop_size": config.crop_size,
                 "batch_size": config.batch_size, "pretrain_steps": config.pretrain_steps,
                 "finetune_steps": config.steps, "real_root": None if real_root is None else str(real_root),
                 "benchmark_seed": None if data_root is not None else benchmark_seed,
                 "benchmark_renderer_version": None if data_root is not None else benchmark_renderer_version(source()),
                 "collapsed": result.collapsed}
        return study.Trained(result.steps, result.wall_time_s, facts)

    return study.StudyRun(spec.run_id, train_run, lambda run_dir: evaluate_run(spec, p, source(), run_dir))


def run(spec: RunSpec, profile: str | Profile, *, data_root: str | Path | None = None,
        real_root: str | Path | None = None, benchmark_seed: int = 0, progress: bool | None = None) -> dict:
    """Train (or resume) and evaluate one run; return its ``metrics.json`` record. A finished run is read
    back, not retrained. ``data_root``: a user's datasets (else the embedded benchmark); ``real_root``: a
    user's folder of unlabeled rainy images for stage 2 (else the real-proxy train split)."""
    p = get_profile(profile)
    run_dir = runs_root(p, data_root, benchmark_seed, real_root) / spec.run_id  # never the committed study's folder
    return study.run_once(study_run(spec, p, data_root=data_root, real_root=real_root,
                                    benchmark_seed=benchmark_seed, progress=progress), run_dir, p.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Work through the ANLCL study queue (resumable; start it once per core to share the queue).")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--budget-hours", type=float, default=math.inf,
                        help="start no new run after this many hours (a started run finishes)")
    parser.add_argument("--list", action="store_true", help="print the queue and each run's state, then exit")
    parser.add_argument("--only", nargs="*", default=None, help="run ids to run (default: the whole queue)")
    args = parser.parse_args(argv)
    p = get_profile(args.profile)
    root = runs_root(p)
    queue, unknown = study.select_runs(study_queue(p), args.only)
    if unknown:
        parser.error(f"not in the {p.name} study queue (see --list): {', '.join(unknown)}")
    if args.list:
        print("\n".join(study.list_queue([spec.run_id for spec in queue], root)), flush=True)
        return 0

    def after_each(done: study.StudyRun, record: dict) -> None:
        print(f"done {done.run_id}: real-proxy PSNR-Y {record['realproxy']['psnr_y']:.2f}, "
              f"{record['train_wall_time_s'] / 3600:.2f} h", flush=True)

    study.work_through([study_run(spec, p, progress=False) for spec in queue], root, p.name,
                       budget_hours=args.budget_hours, after_each=after_each)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

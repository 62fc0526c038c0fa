"""ANLCL's study runs: one run per (setting, seed), both training stages of §4.6, evaluated and recorded.

Stage 1 of §4.6 (supervised pretraining) does not depend on anything the ablations vary, so it is trained once
per seed, as its own run (:class:`Stage1Spec`), and every run of that seed starts stage 2 from its end
(:func:`derainlib.train_anlcl.start_after_stage_1` says what carries over). A stage-1 run is also scored: it is
the "pretraining only" baseline stage 2 must beat.

A run is a :class:`RunSpec`: the paired synthetic domain of stage 1 (supervised pretraining), the
unlabeled rainy images of stage 2 (the real-proxy train split, or a user's folder), the settings the
ablations vary (sampling strategies, Table 3; the layer-contrastive encoder, Table 4; the loss terms,
Table 5; the sampling numbers N_B and N_R, Table 9), and the seed. Every setting is in the run id and in
every record (``spec``). :func:`table_runs` lists the runs behind each table, :func:`study_queue` the whole
study, :func:`queue_cpu_hours` what it costs from a measured step time. Each run lives in
``<runs_root>/<run_id>/`` (``results/<profile>/anlcl/runs/`` for the committed study) and is run by the
method-neutral :mod:`derainlib.study`:

- ``log.csv`` and ``model.pt`` from :func:`derainlib.train_anlcl.train_anlcl` (``checkpoint.pt`` while in progress);
- ``segments.json``: provenance of every training segment;
- ``metrics.json``: PSNR/SSIM (Y and RGB) and NIQE on the real-proxy test split (its held-out targets),
  PSNR/SSIM on the real-proxy validation split (``val``: the only scores the selection rule of
  :mod:`derainlib.experiments.anlcl_tables` reads) and on the pretraining domain's synthetic test split,
  the benchmark's renderer version, and whether the collapse rule stopped the run;
- ``scores-<group>.csv``: the per-image scores behind each group (paired differences need them).

Sizes come from the profile's ``anlcl`` section (:class:`derainlib.profiles.ANLCLSizes`).

Command line: ``python -m derainlib.experiments.anlcl_runs --profile cpu`` works through the study queue
(resumable; start it once per core to share the queue); ``--list`` prints each run's state; ``--collect``
writes ``results/<profile>/anlcl_runs.csv`` from the finished runs and ``--report`` also the tables
(:mod:`derainlib.experiments.anlcl_tables`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path

from .. import distributed, study
from ..data.benchmark import (benchmark_renderer_version, build_benchmark, default_benchmark_root, layout_of,
                              open_split, split_root)
from ..data.synthetic import DEFAULT_VERSION
from ..atomic import atomic_path
from ..evaluation import evaluate, summarize
from ..losses.anlcl import NORM_READINGS, ContrastiveSampling
from ..models.anlcl import ENCODERS
from ..options import check_choice
from ..paths import results_dir
from ..profiles import Profile, get_profile
from ..runtime import resolve_device
from ..train import load_model
from ..train_anlcl import (CONTRASTIVE_TERMS, DECOMPOSITION_TERMS, ANLCLConfig, check_term_names, keep_deraining_only,
                           train_anlcl)
from .anlcl_paper import (PAPER_NUM_NEGATIVES, PAPER_TABLE_3, PAPER_TABLE_4, PAPER_TABLE_5, PAPER_TABLE_9_NEGATIVES,
                          PAPER_TABLE_9_POSITIVES, TABLE_5_COLUMNS)

METHOD = "anlcl"  # the folder name under results/<profile>/

#: The embedded benchmark's renderer version ANLCL's runs read by default (the current renderer).
RENDERER_VERSION = DEFAULT_VERSION

#: Sampling strategies of Table 3 (``derainlib.nonlocal_sampling``).
STRATEGIES = ("random", "neighbour", "nonlocal")

#: A run's arithmetic in stage 2 and in its scoring (:attr:`RunSpec.precision`): bf16 autocast, or plain fp32.
PRECISIONS = ("bf16", "fp32")

SCORES = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "niqe")

#: The ablation tables :func:`table_runs` builds. Table 6 (ANLCL's loss on a supervised network) is not among
#: them: its runs are DRD-Net runs of Semi-DRDNet's study (``semi_drdnet_runs.ANLCL_TABLE``), reported by
#: ``anlcl_tables.table6``.
TABLES = ("3", "4", "5", "9")
#: Tables whose every row is trained once per seed of the profile; the others (Table 9's 16-cell grid) with the
#: first seed only.
SEEDED_TABLES = ("3", "4", "5")
#: The contrastive terms of Tables 3, 4 and 9: the NLCL setting, without the asymmetric term (see
#: :mod:`derainlib.experiments.anlcl_paper`: those tables' best rows are Table 5's row without L_AsyCon).
NLCL_TERMS = ("layer", "location")

_SHORT = {"consistency": "mse", "rain_sparsity": "l1", "background_prior": "adv"}
_ENCODER_SHORT = {"image_generator": "imggen", "image_rain_generators": "imgraingen"}


@dataclass(frozen=True)
class Stage1Spec:
    """Stage 1 alone (supervised pretraining of both generators with the GAN, no contrastive loss) on
    ``pretrain_dataset``: shared by every :class:`RunSpec` of its seed, sizes and renderer version."""

    pretrain_dataset: str
    seed: int
    width: int
    num_blocks: int
    renderer_version: int = RENDERER_VERSION

    @property
    def run_id(self) -> str:
        return (f"{self.pretrain_dataset}-anlcl-m{self.width}b{self.num_blocks}-stage1-v{self.renderer_version}"
                f"-s{self.seed}")


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
    encoder: str = "discriminator"  # Table 4: the layer-contrastive encoder
    decomposition_terms: tuple[str, ...] = DECOMPOSITION_TERMS  # Table 5: stage 2's Eq. (2)-(3) terms
    num_positives: int | None = None  # Table 9: N_B; None: the profile's
    num_negatives: int | None = None  # Table 9: N_R; None: the profile's
    finetune_steps: int | None = None  # stage 2's steps; None: the profile's (:func:`check_runs`)
    norms: str = "sum"  # Eq. (2)'s norms in stage 2 (derainlib.losses.anlcl.NORM_READINGS)
    precision: str | None = None  # PRECISIONS; None: the profile's (its bf16 flag)

    def __post_init__(self) -> None:
        check_choice("positives", self.positives, STRATEGIES)
        check_choice("negatives", self.negatives, STRATEGIES)
        check_term_names(self.terms, self.decomposition_terms)
        check_choice("encoder", self.encoder, ENCODERS)
        for count in (self.num_positives, self.num_negatives):
            if count is not None and count < 1:
                raise ValueError(f"sampling numbers must be >= 1, got {count}")
        check_choice("norms", self.norms, NORM_READINGS)
        if self.finetune_steps is not None and self.finetune_steps < 1:
            raise ValueError(f"finetune_steps must be >= 1, got {self.finetune_steps}")
        if self.precision is not None:
            check_choice("precision", self.precision, PRECISIONS)
        # a canonical order, so that equal settings give one run id
        object.__setattr__(self, "terms", tuple(t for t in CONTRASTIVE_TERMS if t in self.terms))
        object.__setattr__(self, "decomposition_terms",
                           tuple(t for t in DECOMPOSITION_TERMS if t in self.decomposition_terms))

    @property
    def stage1(self) -> Stage1Spec:
        """The stage-1 run this run starts stage 2 from."""
        return Stage1Spec(self.pretrain_dataset, self.seed, self.width, self.num_blocks, self.renderer_version)

    @property
    def run_id(self) -> str:
        parts = [self.pretrain_dataset, "realproxy", f"anlcl-m{self.width}b{self.num_blocks}"]
        if (self.positives, self.negatives) != ("nonlocal", "nonlocal"):
            parts.append(f"pos-{self.positives}-neg-{self.negatives}")
        if tuple(self.terms) != CONTRASTIVE_TERMS:
            parts.append("terms-" + ("_".join(self.terms) or "none"))
        if self.encoder != "discriminator":
            parts.append("enc-" + _ENCODER_SHORT[self.encoder])
        if self.decomposition_terms != DECOMPOSITION_TERMS:
            parts.append("no-" + "_".join(_SHORT[t] for t in DECOMPOSITION_TERMS if t not in self.decomposition_terms))
        if self.num_positives is not None:
            parts.append(f"nb{self.num_positives}")
        if self.num_negatives is not None:
            parts.append(f"nr{self.num_negatives}")
        if self.norms != "sum":
            parts.append(f"{self.norms}norms")
        if self.finetune_steps is not None:
            parts.append(f"ft{self.finetune_steps}")
        if self.precision is not None:
            parts.append(self.precision)
        parts.append(f"v{self.renderer_version}")
        return "-".join(parts) + f"-s{self.seed}"


def default_run(profile: str | Profile, seed: int, pretrain_dataset: str = "rain200h") -> RunSpec:
    """ANLCL's default setting (§4.6) at ``profile``'s sizes."""
    sizes = get_profile(profile).anlcl
    return RunSpec(pretrain_dataset, seed, sizes.width, sizes.num_blocks)


def check_runs(profile: str | Profile) -> dict[str, RunSpec]:
    """Runs of the default setting that check the study's own choices. Two of the first seed with four times the
    profile's stage-2 steps: as it is (does the study's stage-2 length change what it measures?) and with Eq. (2)'s
    norms as means (the other reading; in the ``cpu`` study, its first stage-2 run, trained before stage 2 was cut
    from 1000 steps to 250 and the sums chosen; docs/anlcl.md). Where the profile trains in bf16, one run of each
    of the first two seeds in plain fp32 (does bf16 change what the study measures? A CPU without native bf16
    emulates it several times slower than fp32, so there the study could only go on in fp32)."""
    p = get_profile(profile)
    first = default_run(p, p.seeds[0])
    longer = replace(first, finetune_steps=4 * p.anlcl.iterations)
    checks = {"four times as long": longer, "norms as means, four times as long": replace(longer, norms="mean")}
    if p.bf16:
        checks |= {f"fp32, seed {seed}": replace(default_run(p, seed), precision="fp32") for seed in p.seeds[:2]}
    return checks


def uses_bf16(spec: RunSpec | Stage1Spec, profile: str | Profile) -> bool:
    """Whether ``spec`` trains stage 2 and is scored with bf16 autocast: its :attr:`RunSpec.precision`, else the
    profile's flag (a stage-1 run always follows the profile)."""
    precision = spec.precision if isinstance(spec, RunSpec) else None
    return get_profile(profile).bf16 if precision is None else precision == "bf16"


def stage2_steps(spec: RunSpec, profile: str | Profile) -> int:
    """``spec``'s stage-2 steps at ``profile``'s sizes."""
    return get_profile(profile).anlcl.iterations if spec.finetune_steps is None else spec.finetune_steps


def fig10_specs(profile: str | Profile, seed: int) -> dict[str, RunSpec]:
    """Fig. 10's three models: without the contrastive terms, with the layer contrastive (and location: the NLCL
    setting), and with the asymmetric contrastive too (the default)."""
    base = default_run(profile, seed)
    return {"w/o contrastive": replace(base, terms=()), "w/ layer contrastive": replace(base, terms=NLCL_TERMS),
            "w/ asymmetric contrastive": base}


def keeps_every_network(spec: RunSpec | Stage1Spec, profile: str | Profile) -> bool:
    """Whether the study keeps every network in ``spec``'s ``model.pt``: a stage-1 run (stage 2 starts from its
    discriminator) and Fig. 10's models of the profile's first seed (the t-SNE reads their encoder). Every other
    run keeps G_B and G_R alone (:func:`derainlib.train_anlcl.keep_deraining_only`): the committed study is then
    a fraction of the bytes, and every score and ``derain`` read only those."""
    p = get_profile(profile)
    return isinstance(spec, Stage1Spec) or spec in fig10_specs(p, p.seeds[0]).values()


def table9_negatives(profile: str | Profile) -> tuple[int, ...]:
    """Table 9's N_R columns at ``profile``'s crops: the paper's (64 … 512 at 256² crops, N_R = 256 there) scaled
    by the profile's N_R over the paper's, so the middle column is the profile's default."""
    scale = get_profile(profile).anlcl.num_negatives / PAPER_NUM_NEGATIVES
    return tuple(max(1, round(n * scale)) for n in PAPER_TABLE_9_NEGATIVES)


def table_rows(table: str, profile: str | Profile, seed: int) -> list[tuple[str, RunSpec]]:
    """``(row label, run)`` of one table's rows for ``seed``, in the paper's row order (tables :data:`TABLES`).

    Table 3: positive/negative strategies; Table 4: encoders; Tables 3, 4 and 9 without the asymmetric term
    (:data:`NLCL_TERMS`). Table 5: the paper's nine loss combinations (:data:`~.anlcl_paper.PAPER_TABLE_5`).
    Table 9: N_B × N_R, with N_R scaled to the profile's crops (:func:`table9_negatives`); a cell equal to the
    profile's default numbers is the default run of that setting, so it is shared with Tables 3-5.
    """
    base = default_run(profile, seed)
    nlcl = replace(base, terms=NLCL_TERMS)
    if table == "3":
        return [(f"{pos} / {neg}", replace(nlcl, positives=pos, negatives=neg)) for pos, neg in PAPER_TABLE_3]
    if table == "4":
        return [(encoder, replace(nlcl, encoder=encoder)) for encoder in PAPER_TABLE_4]
    if table == "5":
        rows = []
        for keep in PAPER_TABLE_5:
            kept = {term for (_, term), on in zip(TABLE_5_COLUMNS, keep) if on}
            label = " ".join(name for (name, _), on in zip(TABLE_5_COLUMNS, keep) if on)
            rows.append((label, replace(base, terms=tuple(t for t in CONTRASTIVE_TERMS if t in kept),
                                        decomposition_terms=tuple(t for t in DECOMPOSITION_TERMS if t in kept))))
        return rows
    if table == "9":
        sizes = get_profile(profile).anlcl
        rows = []
        for n_b in PAPER_TABLE_9_POSITIVES:
            for n_r in table9_negatives(profile):
                rows.append((f"{n_b} x {n_r}", replace(nlcl, num_positives=None if n_b == sizes.num_positives else n_b,
                                                       num_negatives=None if n_r == sizes.num_negatives else n_r)))
        return rows
    raise ValueError(f"unknown table {table!r}; valid: {', '.join(TABLES)}")


def table_runs(table: str, profile: str | Profile, seeds: tuple[int, ...] | None = None) -> list[RunSpec]:
    """The runs behind one table: every row once per seed (Tables 3-5: the profile's seeds; Table 9: the first)."""
    p = get_profile(profile)
    if seeds is None:
        seeds = p.seeds if table in SEEDED_TABLES else p.seeds[:1]
    return [spec for seed in seeds for _, spec in table_rows(table, p, seed)]


def study_queue(profile: str | Profile) -> list[RunSpec]:
    """Every run of the study, each once: the default setting (Rain200H pretraining, real-proxy fine-tuning)
    and the rows of Tables 3, 4 and 5, seed by seed (a seed's whole set before the next seed's), then Table 9's
    grid with the first seed, then :func:`check_runs`. Runs that several tables share appear once, where first
    asked for. The stage-1 runs they start from are not listed (:func:`work_queue`)."""
    p = get_profile(profile)
    queue = []
    for seed in p.seeds:
        queue.append(default_run(p, seed))
        for table in SEEDED_TABLES:
            queue += table_runs(table, p, seeds=(seed,))
    for table in TABLES:
        if table not in SEEDED_TABLES:
            queue += table_runs(table, p)
    queue += check_runs(p).values()
    return list(dict.fromkeys(queue))


def in_fp32(spec: RunSpec) -> RunSpec:
    """``spec`` trained in plain fp32: its stand-in on a CPU without native bf16 (``anlcl_tables.FP32_RULE``)."""
    return replace(spec, precision="fp32")


def default_of(spec: RunSpec, profile: str | Profile) -> RunSpec:
    """The default run ``spec`` is compared with in the tables: that of its seed, in its arithmetic (an fp32
    stand-in's is the fp32 default run of its seed)."""
    return replace(default_run(profile, spec.seed), precision=spec.precision)


def fp32_rows(profile: str | Profile) -> list[RunSpec]:
    """Every run of :func:`study_queue` in fp32 (:func:`in_fp32`), each seed's fp32 default run before that
    seed's first row: a row trained in fp32 is compared with the default run of its seed in the same arithmetic,
    never with the bf16 one (docs/anlcl.md). Only for a profile that trains in bf16."""
    p = get_profile(profile)
    if not p.bf16:
        raise ValueError(f"the {p.name} profile trains in fp32 already; it has no fp32 stand-ins")
    rows = [row for spec in study_queue(p) if spec.precision is None
            for row in (default_of(in_fp32(spec), p), in_fp32(spec))]
    return list(dict.fromkeys(rows))


def fp32_queue(profile: str | Profile, runs_dir: Path) -> list[RunSpec]:
    """``--fp32``: the :func:`fp32_rows` of the study runs that have not finished under ``runs_dir`` in the
    profile's arithmetic, each with its seed's fp32 default run, in the study queue's order."""
    p = get_profile(profile)
    left = {spec for spec in study_queue(p)
            if spec.precision is None and study.read_record(Path(runs_dir) / spec.run_id) is None}
    seeds = {spec.seed for spec in left}
    return [row for row in fp32_rows(p) if replace(row, precision=None) in left
            or (row == default_of(row, p) and row.seed in seeds)]


def work_queue(profile: str | Profile, queue: list[RunSpec] | None = None) -> list[RunSpec | Stage1Spec]:
    """What the workers train: each stage-1 run just before the first run that starts from it, then that
    run and the rest of :func:`study_queue` (or ``queue``) in order."""
    specs = study_queue(profile) if queue is None else queue
    return list(dict.fromkeys(item for spec in specs for item in (spec.stage1, spec)))


def queue_cpu_hours(profile: str | Profile, pretrain_step_s: float, finetune_step_s: float, *,
                    evaluation_s: float = 0.0, queue: list[RunSpec] | None = None,
                    runs_dir: Path | None = None) -> dict[str, float]:
    """The study queue's cost from measured step times (seconds per step of stage 1 and stage 2, e.g. from
    ``benchmarks/bench_anlcl.py``) and, optionally, seconds to score one run: stage 1 once per seed
    (:class:`Stage1Spec`), stage 2 once per run. ``runs_dir``: leave out runs already finished there. Returns
    ``runs`` (stage-2 runs), ``stage1_runs``, ``steps`` and ``hours`` (wall-clock hours of one worker; the same
    in CPU hours of the machine it was measured on)."""
    p = get_profile(profile)
    specs = work_queue(p, queue)
    if runs_dir is not None:
        specs = [spec for spec in specs if not (Path(runs_dir) / spec.run_id / study.METRICS).is_file()]
    stage1 = sum(isinstance(spec, Stage1Spec) for spec in specs)
    finetuning = sum(stage2_steps(spec, p) for spec in specs if isinstance(spec, RunSpec))
    steps = stage1 * p.anlcl.pretrain_iterations + finetuning
    seconds = (stage1 * p.anlcl.pretrain_iterations * pretrain_step_s + finetuning * finetune_step_s
               + len(specs) * evaluation_s)
    return {"runs": len(specs) - stage1, "stage1_runs": stage1, "steps": steps, "hours": seconds / 3600}


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


def train_config(spec: RunSpec | Stage1Spec, profile: str | Profile, data_root: Path,
                 real_root: str | Path | None = None, stage1_model: str | Path | None = None) -> ANLCLConfig:
    """The :class:`ANLCLConfig` of ``spec`` at ``profile``'s sizes. Stage 2 reads ``real_root`` (a folder of
    unlabeled rainy images) or, by default, the real-proxy train split's rainy images under ``data_root``, and
    starts from ``stage1_model`` (the ``model.pt`` of ``spec.stage1``) when given. A :class:`Stage1Spec` is the
    default setting's config with no stage-2 steps."""
    p = get_profile(profile)
    if isinstance(spec, Stage1Spec):
        default = RunSpec(spec.pretrain_dataset, spec.seed, spec.width, spec.num_blocks,
                          renderer_version=spec.renderer_version)
        return replace(train_config(default, p, data_root, real_root), steps=0)
    sizes = p.anlcl
    real = Path(real_root) if real_root is not None else split_root(data_root, "realproxy", "train") / "input"
    return ANLCLConfig(
        pretrain_root=str(split_root(data_root, spec.pretrain_dataset, "train")),
        pretrain_layout=layout_of(spec.pretrain_dataset), real_root=str(real),
        width=spec.width, num_blocks=spec.num_blocks, momentum=sizes.momentum, encoder=spec.encoder,
        pretrain_steps=sizes.pretrain_iterations, steps=stage2_steps(spec, p), crop_size=sizes.crop_size,
        batch_size=sizes.batch_size, learning_rate=sizes.learning_rate,
        pretrain_learning_rate=sizes.pretrain_learning_rate, num_workers=p.num_workers,
        terms=tuple(spec.terms), decomposition_terms=tuple(spec.decomposition_terms), norms=spec.norms,
        sampling=ContrastiveSampling.from_sizes(
            sizes, positives=spec.positives, negatives=spec.negatives,
            num_positives=sizes.num_positives if spec.num_positives is None else spec.num_positives,
            num_negatives=sizes.num_negatives if spec.num_negatives is None else spec.num_negatives),
        seed=spec.seed, device=p.device, bf16=uses_bf16(spec, p), channels_last=p.channels_last,
        checkpoint_every=p.checkpoint_every, init_weights=None if stage1_model is None else str(stage1_model))


#: Score groups of a record: (name, domain, split, with NIQE).
SCORE_GROUPS = (("realproxy", "realproxy", "test", True), ("val", "realproxy", "val", False),
                ("test", None, "test", False))


def evaluate_run(spec: RunSpec | Stage1Spec, profile: str | Profile, data_root: Path, run_dir: Path) -> dict:
    """Score a trained run: the real-proxy test split against its held-out targets (with NIQE), the real-proxy
    validation split (for the selection rule), and the pretraining domain's synthetic test split; each group's
    per-image scores go to ``scores-<group>.csv``. A split missing from a user's data root scores NaN."""
    p = get_profile(profile)
    model, _ = load_model(run_dir / "model.pt", resolve_device(p.device))
    results = {}
    for name, domain, split, with_niqe in SCORE_GROUPS:
        domain = domain or spec.pretrain_dataset
        if not split_root(data_root, domain, split).is_dir():
            results[name] = {key: math.nan for key in SCORES}
            continue
        dataset = open_split(data_root, domain, split)
        started = time.perf_counter()
        scores = evaluate(model, dataset, bf16=uses_bf16(spec, p), channels_last=p.channels_last, with_niqe=with_niqe,
                          with_range=True)
        with atomic_path(run_dir / f"scores-{name}.csv") as path:
            scores.to_csv(path, index=False)
        results[name] = summarize(scores) | {"images": len(scores),
                                             "seconds_per_image": (time.perf_counter() - started) / len(scores)}
        if with_niqe:  # NIQE is undefined on images under two 96×96 blocks
            results[name]["niqe_images"] = int(scores["niqe"].notna().sum())
    return results


def study_run(spec: RunSpec | Stage1Spec, profile: str | Profile, *, data_root: str | Path | None = None,
              real_root: str | Path | None = None, benchmark_seed: int = 0, progress: bool | None = None,
              keep_networks: bool = True) -> study.StudyRun:
    """``spec`` as the study queue runs it: train with :func:`derainlib.train_anlcl.train_anlcl` (first
    ``spec.stage1`` in the same folder of runs, when it has not been), score with :func:`evaluate_run`. The
    benchmark is built only when the run is trained or scored. ``keep_networks=False``: the finished
    ``model.pt`` keeps G_B and G_R alone (the queue passes :func:`keeps_every_network`)."""
    p = get_profile(profile)
    source = cache(lambda: distributed.in_turn(
        lambda: benchmark_root(p, data_root, seed=benchmark_seed, version=spec.renderer_version)))
    stage1 = spec.stage1 if isinstance(spec, RunSpec) else None  # the run this one starts stage 2 from

    def train_run(run_dir: Path) -> study.Trained:
        stage1_model = None
        if stage1 is not None:
            stage1_dir = run_dir.parent / stage1.run_id
            study.run_needed(study_run(stage1, p, data_root=data_root, real_root=real_root,
                                       benchmark_seed=benchmark_seed, progress=progress), stage1_dir, p.name)
            stage1_model = stage1_dir / "model.pt"
        config = train_config(spec, p, source(), real_root, stage1_model)
        result = train_anlcl(config, run_dir, progress=progress)
        if not keep_networks:
            keep_deraining_only(run_dir / "model.pt")
        facts = {"spec": asdict(spec), "stage": 1 if stage1 is None else 2,
                 "stage1_run": None if stage1 is None else stage1.run_id, "bf16": config.bf16,
                 "crop_size": config.crop_size,
                 "batch_size": config.batch_size, "pretrain_steps": config.pretrain_steps,
                 "finetune_steps": config.steps, "real_root": None if real_root is None else str(real_root),
                 "benchmark_seed": None if data_root is not None else benchmark_seed,
                 "benchmark_renderer_version": None if data_root is not None else benchmark_renderer_version(source()),
                 "collapsed": result.collapsed}
        return study.Trained(result.steps, result.wall_time_s, facts)

    return study.StudyRun(spec.run_id, train_run, lambda run_dir: evaluate_run(spec, p, source(), run_dir),
                          needs=() if stage1 is None else (stage1.run_id,))


def run(spec: RunSpec | Stage1Spec, profile: str | Profile, *, data_root: str | Path | None = None,
        real_root: str | Path | None = None, benchmark_seed: int = 0, progress: bool | None = None) -> dict:
    """Train (or resume) and evaluate one run; return its ``metrics.json`` record. A finished run is read
    back, not retrained. ``data_root``: a user's datasets (else the embedded benchmark); ``real_root``: a
    user's folder of unlabeled rainy images for stage 2 (else the real-proxy train split)."""
    p = get_profile(profile)
    run_dir = runs_root(p, data_root, benchmark_seed, real_root) / spec.run_id  # never the committed study's folder
    return study.run_once(study_run(spec, p, data_root=data_root, real_root=real_root,
                                    benchmark_seed=benchmark_seed, progress=progress), run_dir, p.name)


def main(argv: list[str] | None = None) -> int:
    parser = study.queue_arguments("ANLCL")
    parser.add_argument("--collect", action="store_true",
                        help="write results/<profile>/anlcl_runs.csv from the finished runs, then exit")
    parser.add_argument("--report", action="store_true",
                        help="--collect, plus Tables 3, 4, 5, 9 and Kendall's tau into results/<profile>/, then exit")
    parser.add_argument("--fp32", action="store_true",
                        help="train the study's unfinished runs in plain fp32 instead, each seed's fp32 default run "
                             "with them (a CPU without native bf16; docs/anlcl.md)")
    args = parser.parse_args(argv)
    p = get_profile(args.profile)
    root = runs_root(p)
    if args.collect or args.report:
        from . import anlcl_tables  # it builds on this module's specs

        if args.report:
            from .anlcl_figures import write_figure10_data

            written = anlcl_tables.write_report(p, root) + write_figure10_data(p)
        else:
            anlcl_tables.collect(p, root, write=True)
            written = [results_dir(p.name) / anlcl_tables.RUNS_CSV]
        print("\n".join(str(path) for path in written), flush=True)
        return 0
    queue = study.queue_selection(parser, args, work_queue(p, fp32_queue(p, root) if args.fp32 else None), root)
    if queue is None:
        return 0

    def after_each(done: study.StudyRun, record: dict) -> None:
        print(f"done {done.run_id}: real-proxy PSNR-Y {record['realproxy']['psnr_y']:.2f}, "
              f"{record['train_wall_time_s'] / 3600:.2f} h", flush=True)

    study.work_through([study_run(spec, p, progress=False, keep_networks=keeps_every_network(spec, p))
                        for spec in queue], root, p.name,
                       budget_hours=args.budget_hours, after_each=after_each)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training Semi-DRDNet and its ablations: one loop, readable top to bottom.

Two kinds of run share the loop:

- **supervised**: paired synthetic crops only; the loss is Eq. (10), ``L_d + λ_r L_r`` plus
  ``λ_dual L_Dual(sup)`` when DualSCRNet is on;
- **semi-supervised** (Semi-DRDNet): every step also takes a batch of unlabeled real rainy crops
  and adds ``λ_unsup L_unsup`` (Eq. (9), (13)), the contrastive loss of Eq. (8).

What a long run on a 2-core machine needs:

- **Resumable, exactly.** Batches are a pure function of ``(seed, step)`` (a per-epoch
  permutation, crops from ``(seed, index, epoch)``), so a checkpoint needs only the step number,
  the weights, the optimiser, the scheduler, DualSCRNet's memory bank and the running epoch
  sums. A run interrupted anywhere, even mid-epoch, resumes to the same final weights as an
  uninterrupted one (``tests/test_train.py``).
- **Atomic files.** ``checkpoint.pt``, ``model.pt`` and ``log.csv`` are replaced by rename. A process
  killed mid-write leaves a temporary file (``.checkpoint.<random>.pt``...); the next :func:`train`
  of that folder removes it. One process at a time trains a folder: :func:`train` locks it.
- **NaN guard.** A non-finite loss stops the run with :class:`TrainingDiverged`, naming the step
  and the loss terms, before the bad step touches the weights or the last good checkpoint.

**Batch norm in a semi-supervised step.** The labeled and the unlabeled batch go through the
network in two forwards; in training mode each is normalised by its own batch statistics. The
paper does not say what the eval-mode running statistics should be. If both forwards update them
(``batchnorm_statistics="all"``), the exponential average is dominated by the real batch, the
last forward of every step, and a test image is then normalised by statistics it was never
trained with, which costs several dB on the Rain200H test split against the same weights with
statistics from labeled crops only (``python -m derainlib.experiments.semi_drdnet_stability
--batchnorm`` measures it into ``results/<profile>/semi_drdnet_batchnorm.csv``). So by default
(``"labeled"``) only the labeled forward updates them. The gradients, and so the weights, are the
same either way; only the eval-mode statistics differ.

**Several processes** (``torchrun --nproc_per_node=N``): the pieces shared by every trainer are in
:mod:`derainlib.distributed`. ``batch_size`` stays the global batch (the paper's 8), split evenly over
the processes; DDP averages the gradients, so a step is the step of one process on the whole batch up
to float rounding and batch norm (per-process statistics unless ``sync_batchnorm``). Rank 0 alone
locks the folder and writes ``checkpoint.pt``, ``log.csv`` and ``model.pt``; every rank resumes from
its checkpoint. The logged losses are means over the processes, so the NaN guard stops every process
at the same step. Validation runs on rank 0, on the unwrapped model. DualSCRNet's memory bank is
*gathered*: every rank pushes the rain layers of the whole global batch, in rank order, and draws
the negatives of the whole global batch, keeping its own columns, so every rank's bank equals that of
one process training the global batch, and rank 0's checkpoint restores all of them. A bank per rank
would hold only its rank's layers (fewer, less varied negatives as processes are added) and need a
checkpoint per rank.

**ANLCL's loss on this network** (ANLCL's Table 6, ``anlcl_terms``): its layer and asymmetric contrastive terms
(Eq. (5), (8) of ANLCL) on the layers ``B`` = the network's output and ``R = O − B`` (the rain it removes, so
that ``O = B + R`` as in ANLCL's Eq. (1)), weighted as in ANLCL's Eq. (4) (:class:`~derainlib.losses.anlcl.ANLCLLossWeights`:
μ = 1, γ = 0.01), their patches embedded by a :class:`~derainlib.models.anlcl.DiscriminatorEncoder`. Its MLP heads
join the network's optimiser; its discriminator learns clean crops against the output with its own least-squares
loss and Adam, as ANLCL trains it, and never gives the network an adversarial gradient (the paper adds only the
two contrastive terms). Each step's patches come from :func:`~derainlib.trainer_common.step_generator`, so a
resumed run repeats them; the checkpoint holds the encoder and its optimiser.

Run folder contents: ``checkpoint.pt`` (everything to resume; removed, with any parts it was cut
into, once the run finishes), ``log.csv`` (one row per epoch of the paired data), ``model.pt`` (final
weights + config, what ``derain --checkpoint`` reads). Training a finished folder again reads it back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .atomic import has_parts, read_parts, remove_with_parts
from .data.datasets import PairedImageDataset, UnpairedImageDataset
from .data.errors import DatasetError
from .evaluation import evaluate, summarize
from .runtime import autocast, resolve_device, seed_everything
from . import distributed
from .trainer_common import (TrainingDiverged, add_to_epoch, average_gradients, check_resumable, claim_run_folder,
                             diverged, epoch_means, save_checkpoint, step_generator, warn_if_bf16_is_emulated,
                             write_log)
from .trainer_common import to_device as _to_device
from .losses import (
    DualSCRNet,
    LossWeights,
    detail_repair_loss,
    rain_residual_loss,
    supervised_loss,
    total_loss,
    unsupervised_loss,
)
from .losses.anlcl import ANLCLLossWeights, ContrastiveSampling, anlcl_objective, contrastive_terms, discriminator_loss
from .metrics import psnr
from .options import check_choice
from .models import build_network
from .models.anlcl import DiscriminatorEncoder
from .monitoring import (COLD_START_STEPS, CollapseRule, CollapseWatch, gradient_ratios, out_of_range_fraction,
                         output_gradient_norms)

#: ANLCL's terms that can be added to this network (Table 6 of ANLCL: "we only need to enforce the layer
#: contrastive and asymmetric contrastive loss on the existing methods").
ANLCL_TERMS = ("layer", "asymmetric")

#: The paper decays the learning rate by 0.2 at epochs 30, 50 and 80 of 150; we keep the fractions.
PAPER_LR_MILESTONES = (30 / 150, 50 / 150, 80 / 150)

#: Config fields that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = frozenset({"device", "num_workers", "checkpoint_every", "compile_mode", "init_weights"})
# The number of processes is not in the config: the global batches do not depend on it, so a run may
# be resumed on another number of GPUs (equal up to float rounding and per-process batch norm).

#: torch.compile's modes for TrainConfig.compile_mode. "reduce-overhead" records CUDA graphs: on a GPU the
#: study's batch-8 steps are bound by kernel launches, which graphs remove (benchmarks/bench_compiled_training.py).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")

#: The files :func:`train` writes in a run folder (glob patterns): their temporary files are swept on a resume.
RUN_FILES = ("checkpoint.pt", "checkpoint.pt.part-*", "checkpoint.pt.parts.json", "model.pt", "log.csv")

#: What a checkpoint written before a field existed did, where that differs from today's default.
LEGACY_VALUES = {"batchnorm_statistics": "all"}


@dataclass
class TrainConfig:
    """Everything that defines a run. Stored in every checkpoint; a resume must match it."""

    # what to train (see derainlib.models.build_network)
    variant: str = "Semi-DRDNet"
    width: int = 16
    num_blocks: int = 8
    # data: a paired folder in any supported layout, and an unlabeled real folder for semi-supervision
    train_root: str = ""
    train_layout: str | None = None  # None: detect
    real_root: str | None = None
    val_root: str | None = None
    val_layout: str | None = None
    val_every_epochs: int = 0  # 0: no validation during training
    val_max_images: int | None = None
    patch_size: int = 64
    batch_size: int = 8
    num_workers: int = 0
    # optimisation: Adam, multi-step decay (Sec. IV-B)
    steps: int = 3000
    learning_rate: float = 1e-3
    lr_milestones: tuple[float, ...] = PAPER_LR_MILESTONES  # fractions of ``steps``
    lr_gamma: float = 0.2
    # losses: Eq. (9)-(13); DualSCRNet is off when ``contrastive`` is None
    semi_supervised: bool = False
    contrastive: str | None = None  # "standard" | "aug_pos" | "aug_neg" | "dual" (Table VII)
    positive_augmentation: str = "adain"  # or "colour"; see derainlib.losses.contrastive
    vgg_weights: str = "hed"
    num_negatives: int = 4
    bank_capacity: int = 64
    # the three choices Eq. (5)/(6) leave open; defaults are the literal reading (DualSCRNet's docstring)
    negative_base: str = "derained"  # or "clean"
    clamp_contrastive: bool = False
    contrastive_distance: str = "squared_l2"  # or "l1"
    # further open choices of Eq. (5)-(8), defaults literal (derainlib.losses.contrastive; READINGS["stable"] sets them)
    negative_gradient: bool = False
    contrastive_ratio: str = "per_sample"  # or "per_batch"
    negative_reduction: str = "sum"  # or "mean"
    unsupervised_distance: str | None = None  # None: contrastive_distance; "gram" / "statistics" need no alignment
    contrastive_layer_weights: tuple[float, ...] = (0.2, 0.5, 1.0)  # pool2, pool3, pool5
    vgg_precision: str = "autocast"  # or "fp32"
    bank_bounds: tuple[float, float] | None = None  # the faint-layer filter on the memory bank
    # warm start: a model.pt whose weights the run starts from (a resume reads its checkpoint instead)
    init_weights: str | None = None
    # instruments (derainlib.monitoring): grad_ratio_* columns in log.csv; the collapse rule's reference L_d curve
    monitor_gradients: bool = False
    collapse_reference: tuple[tuple[int, float], ...] | None = None
    # which forwards update batch norm's running statistics (module docstring): "labeled" | "all"
    batchnorm_statistics: str = "labeled"
    loss_weights: LossWeights = field(default_factory=LossWeights)
    # ANLCL's loss added to this network (module docstring): which of ANLCL_TERMS, how they sample, their weights
    # (only ``layer`` and ``asymmetric`` are read) and the learning rate of the encoder's discriminator
    anlcl_terms: tuple[str, ...] = ()
    anlcl_sampling: ContrastiveSampling = field(default_factory=ContrastiveSampling)
    anlcl_loss_weights: ANLCLLossWeights = field(default_factory=ANLCLLossWeights)
    anlcl_discriminator_lr: float = 1e-4  # ANLCL's (§4.6), with the CUT framework's betas (0.5, 0.999)
    # execution
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    channels_last: bool = False
    compile_mode: str | None = None  # None: eager; else torch.compile's mode for the network and the VGG
    # several processes: batch norm over the global batch (derainlib.distributed); no effect in one process
    sync_batchnorm: bool = False
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        if isinstance(self.loss_weights, dict):  # coming back from a checkpoint
            self.loss_weights = LossWeights(**self.loss_weights)
        if isinstance(self.anlcl_sampling, dict):
            self.anlcl_sampling = ContrastiveSampling(**self.anlcl_sampling)
        if isinstance(self.anlcl_loss_weights, dict):
            self.anlcl_loss_weights = ANLCLLossWeights(**self.anlcl_loss_weights)
        self.anlcl_terms = tuple(self.anlcl_terms)
        unknown = set(self.anlcl_terms) - set(ANLCL_TERMS)
        if unknown:
            raise ValueError(f"anlcl_terms: unknown {sorted(unknown)}; valid: {', '.join(ANLCL_TERMS)}")
        if self.anlcl_terms and self.patch_size < self.anlcl_sampling.patch_size:
            raise ValueError(f"patch_size {self.patch_size} is smaller than ANLCL's sampled patches "
                             f"({self.anlcl_sampling.patch_size})")
        self.lr_milestones = tuple(self.lr_milestones)
        self.contrastive_layer_weights = tuple(self.contrastive_layer_weights)
        if self.bank_bounds is not None:
            self.bank_bounds = tuple(self.bank_bounds)
        if self.collapse_reference is not None:
            self.collapse_reference = tuple((int(s), float(d)) for s, d in self.collapse_reference)
        if not self.train_root:
            raise ValueError("TrainConfig.train_root is required: a folder of paired training images")
        if self.semi_supervised and self.contrastive is None:
            raise ValueError("a semi-supervised run needs DualSCRNet: its only unsupervised loss is Eq. (8); "
                             "set contrastive='dual' (or another Table VII setting)")
        if self.semi_supervised and not self.real_root:
            raise ValueError("a semi-supervised run needs real_root: a folder of unlabeled real rainy images")
        check_choice("batchnorm_statistics", self.batchnorm_statistics, ("labeled", "all"))
        if self.compile_mode is not None and self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be None or one of {', '.join(COMPILE_MODES)}, "
                             f"not {self.compile_mode!r}")
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("steps, batch_size and checkpoint_every must be positive")

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- data


def batch_stream(dataset, batch_size: int, seed: int, start_step: int, num_workers: int, *,
                 rank: int = 0, size: int = 1) -> Iterator[dict]:
    """Yield batches forever from ``start_step`` on; batch ``s`` depends on ``(seed, s)`` only
    (:func:`derainlib.distributed.batch_stream`; ``rank`` of ``size`` gets its slice of each batch)."""
    return distributed.batch_stream(dataset, batch_size, seed, start_step, num_workers, rank=rank, size=size)


def steps_per_epoch(dataset, batch_size: int) -> int:
    return max(1, len(dataset) // batch_size)


# --------------------------------------------------------------------------- one step


def build_dual(config: TrainConfig) -> DualSCRNet | None:
    """The run's DualSCRNet (on the CPU), or ``None`` when ``config.contrastive`` is off."""
    if config.contrastive is None:
        return None
    return DualSCRNet(vgg_weights=config.vgg_weights, setting=config.contrastive,
                      positive_augmentation=config.positive_augmentation,
                      num_negatives=config.num_negatives, bank_capacity=config.bank_capacity,
                      seed=config.seed, negative_base=config.negative_base,
                      clamp_images=config.clamp_contrastive, distance=config.contrastive_distance,
                      layer_weights=config.contrastive_layer_weights, negative_gradient=config.negative_gradient,
                      ratio=config.contrastive_ratio, negative_reduction=config.negative_reduction,
                      unsupervised_distance=config.unsupervised_distance, vgg_precision=config.vgg_precision,
                      bank_bounds=config.bank_bounds)


def training_datasets(config: TrainConfig) -> tuple[PairedImageDataset, UnpairedImageDataset | None]:
    """Random crops of the paired training set, and of the unlabeled real set for a semi-supervised run."""
    paired = PairedImageDataset(config.train_root, config.train_layout, crop=config.patch_size,
                                augment=True, seed=config.seed)
    real = None
    if config.semi_supervised:
        real = UnpairedImageDataset(config.real_root, crop=config.patch_size, augment=True, seed=config.seed + 1)
    return paired, real


@contextlib.contextmanager
def batchnorm_momentum(model: nn.Module, momentum: float | None) -> Iterator[list[nn.modules.batchnorm._BatchNorm]]:
    """Every batch-norm layer of ``model`` updates its running statistics with ``momentum`` inside the
    block (0: they stay as they are; ``None``: a cumulative average), then gets its own back."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = momentum
    try:
        yield layers
    finally:
        for layer, saved in zip(layers, momenta):
            layer.momentum = saved


def build_anlcl_encoder(config: TrainConfig) -> DiscriminatorEncoder | None:
    """The E_D that embeds ANLCL's patches (module docstring), or ``None`` without ``anlcl_terms``."""
    return DiscriminatorEncoder() if config.anlcl_terms else None


def anlcl_step_terms(encoder: DiscriminatorEncoder, config: TrainConfig, rainy: torch.Tensor, derained: torch.Tensor,
                     clean: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """ANLCL's terms on this network's output (module docstring), unweighted, as ``anlcl_<term>``, and the
    discriminator's own loss as ``_anlcl_discriminator`` (clean crops real, the output, detached, fake)."""
    encoder.discriminator.requires_grad_(False)  # E_D's trunk learns from its GAN loss only, as in ANLCL
    try:
        terms = contrastive_terms(encoder, rainy, derained, rainy - derained, config.anlcl_sampling,
                                  generator=generator, terms=config.anlcl_terms)
    finally:
        encoder.discriminator.requires_grad_(True)
    d_loss = discriminator_loss(encoder.discriminator(clean), encoder.discriminator(derained.detach()))
    return {**{f"anlcl_{name}": value for name, value in terms.items()}, "_anlcl_discriminator": d_loss}


def training_step(model: nn.Module, dual: DualSCRNet | None, config: TrainConfig,
                  rainy: torch.Tensor, clean: torch.Tensor, real: torch.Tensor | None, *,
                  anlcl_encoder: DiscriminatorEncoder | None = None,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The losses of one step (Eq. (9)-(13), and ANLCL's terms with ``anlcl_encoder``, sampled from
    ``generator``); the caller runs backward on ``total`` (and on ``_anlcl_discriminator`` for E_D)."""
    weights = config.loss_weights
    out = model(rainy)
    terms = {
        "detail": detail_repair_loss(out.derained, clean),  # Eq. (12)
        "rain_residual": rain_residual_loss(out.rain, rainy, clean),  # Eq. (11)
    }
    if dual is not None and weights.dual > 0:
        terms["dual_sup"] = dual.supervised(out.derained, clean, rainy)  # Eq. (5), (6)
    sup = supervised_loss(terms["detail"], terms["rain_residual"], terms.get("dual_sup"), weights)  # Eq. (10)
    unsup = None
    if real is not None:
        # Training-mode normalisation still uses the real batch's own statistics, so gradients do not change.
        frozen = config.batchnorm_statistics == "labeled"
        with batchnorm_momentum(model, 0.0) if frozen else contextlib.nullcontext():
            out_real = model(real)
        # B_r: clean synthetic images, unpaired with the real batch, serve as pseudo labels (Sec. III-C).
        unpaired_clean = clean.roll(1, dims=0)
        terms["dual_unsup"] = dual.unsupervised(out_real.derained, unpaired_clean, real)  # Eq. (7), (8)
        unsup = unsupervised_loss(terms["dual_unsup"])  # Eq. (13)
    terms["total"] = total_loss(sup, unsup, weights)  # Eq. (9)
    if anlcl_encoder is not None:
        terms |= anlcl_step_terms(anlcl_encoder, config, rainy, out.derained, clean, generator)
        added = {name: terms[f"anlcl_{name}"] for name in config.anlcl_terms}
        terms["total"] = terms["total"] + anlcl_objective(added, config.anlcl_loss_weights)  # ANLCL's Eq. (4)
    if dual is not None:
        # The memory bank records rain layers of both phases; they are read from the next step on.
        # Under several processes, those of the whole global batch (module docstring).
        dual.remember(distributed.all_gather_batch(out.rain), "synthetic")
        if real is not None:
            dual.remember(distributed.all_gather_batch(out_real.rain), "real")
    terms["_derained"] = out.derained.detach()
    # what each term reads, for the gradient-ratio monitor and the collapse rule (derainlib.monitoring)
    terms["_outputs"] = {"detail": out.derained, "rain_residual": out.rain, "dual_sup": out.derained,
                         **({"dual_unsup": out_real.derained} if real is not None else {}),
                         **{f"anlcl_{name}": out.derained for name in config.anlcl_terms}}
    return terms


# --------------------------------------------------------------------------- checkpoints


def saved_config(saved: dict) -> dict:
    """A checkpoint's config with the fields it predates: what that run did (:data:`LEGACY_VALUES`),
    else today's default (older runs had no choice)."""
    defaults = {}
    for f in dataclasses.fields(TrainConfig):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # a nested dataclass, as a checkpoint stores it
            value = f.default_factory()
            defaults[f.name] = asdict(value) if dataclasses.is_dataclass(value) else value
    return {**defaults, **LEGACY_VALUES, **saved}


def _check_resumable(saved: dict, config: TrainConfig, path: Path) -> None:
    ignored = set(RESUMABLE_CHANGES)
    if not config.semi_supervised:  # without an unlabeled batch, every forward is a labeled one
        ignored.add("batchnorm_statistics")
    check_resumable(saved_config(saved), config.as_dict(), ignored, path)


def lr_milestone_steps(config: TrainConfig) -> list[int]:
    return sorted({max(1, round(fraction * config.steps)) for fraction in config.lr_milestones})


# --------------------------------------------------------------------------- the run


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    wall_time_s: float
    log: pd.DataFrame
    resumed_from: int  # 0 when the run started fresh
    collapsed: dict | None = None  # the collapse rule's verdict when it stopped the run (derainlib.monitoring)


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    progress: bool | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> RunResult:
    """Train (or resume) the run in ``run_dir`` until ``config.steps``; return its log.

    The folder is locked while this runs (a second process gets :class:`derainlib.atomic.FolderBusy`);
    temporary files that a killed writer left in it are removed first. A finished run (``model.pt``
    without ``checkpoint.pt``) is read back, not retrained; its checkpoint is removed when it finishes.
    Under ``torchrun`` every process calls this with the same arguments; rank 0 locks, reads and writes
    the folder, and every rank returns rank 0's result (module docstring).

    Args:
        progress: tqdm bar; ``None`` shows it only on a terminal (quiet under papermill), on rank 0.
        on_step: called after every optimiser step with ``(step, loss values)``; an exception
            raised there interrupts the run like a kill would (tests use it).
    """
    run_dir = Path(run_dir)
    world = distributed.ensure_process_group()
    with contextlib.ExitStack() as held:
        def prepare() -> tuple[str, RunResult | None]:
            if claim_run_folder(run_dir, held, RUN_FILES):
                return "finished", _finished_run(config, run_dir)
            return "train", None

        kind, finished = distributed.on_main(prepare)  # rank 0 holds the lock until the run ends
        if kind == "finished":
            return finished
        result = _train_locked(config, run_dir, world, progress=progress, on_step=on_step)
        if world.is_main:
            remove_with_parts(run_dir / "checkpoint.pt")  # model.pt and log.csv are what a finished run keeps
        return distributed.broadcast_object(result)  # also: no rank returns before rank 0 has written


def _finished_run(config: TrainConfig, run_dir: Path) -> RunResult:
    """The result of a run that finished earlier, read back from ``model.pt`` and ``log.csv``."""
    model_path, log_path = run_dir / "model.pt", run_dir / "log.csv"
    state = torch.load(model_path, map_location="cpu", weights_only=False)
    _check_resumable(state["config"], config, model_path)
    log = pd.read_csv(log_path) if log_path.exists() else pd.DataFrame()
    return RunResult(run_dir=run_dir, steps=state["step"], wall_time_s=state.get("wall_time_s", math.nan),
                     log=log, resumed_from=state["step"], collapsed=state.get("collapsed"))


def _load_checkpoint(path: Path, config: TrainConfig, device: torch.device, world: distributed.World) -> dict | None:
    """The checkpoint to resume from (``None``: start fresh), on ``device``; checked against ``config``.

    Several processes: rank 0 reads it and sends it to every rank, so all resume from the same state
    (and the others need not see the run folder)."""
    if world.size == 1:
        if not path.exists():
            return None
        state = torch.load(path, map_location=device, weights_only=False)
        _check_resumable(state["config"], config, path)
        return state

    def read() -> dict | None:
        if not path.exists():
            return None
        state = torch.load(path, map_location="cpu", weights_only=False)
        _check_resumable(state["config"], config, path)
        return state

    state = distributed.on_main(read)
    return None if state is None else _to_device(state, device)


def _train_locked(config: TrainConfig, run_dir: Path, world: distributed.World, *, progress: bool | None,
                  on_step: Callable[[int, dict[str, float]], None] | None) -> RunResult:
    checkpoint_path, log_path, model_path = run_dir / "checkpoint.pt", run_dir / "log.csv", run_dir / "model.pt"
    main = world.is_main
    device = distributed.rank_device(resolve_device(config.device)) if world.size > 1 else resolve_device(config.device)
    if main:
        warn_if_bf16_is_emulated(config.bf16, device, run_dir)
    seed_everything(config.seed)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format

    # --- model, loss network, optimiser
    model = build_network(config.variant, width=config.width, num_blocks=config.num_blocks)
    model = model.to(device, memory_format=memory_format)
    if config.init_weights:  # warm start; a resume below replaces these weights with its checkpoint's
        model.load_state_dict(torch.load(config.init_weights, map_location=device, weights_only=False)["model"])
    start = None if config.init_weights else COLD_START_STEPS  # a run from scratch is judged after its cold start
    watch = CollapseWatch(CollapseRule(config.collapse_reference, start=start)) if config.collapse_reference else None
    collapsed: dict | None = None
    dual = build_dual(config)
    dual = dual.to(device) if dual is not None else None
    if dual is not None:
        dual.bank.shard = (world.rank, world.size)  # the gathered bank (module docstring)
    anlcl_encoder = build_anlcl_encoder(config)
    heads: list[nn.Parameter] = []
    optimizer_d = None
    if anlcl_encoder is not None:
        anlcl_encoder = anlcl_encoder.to(device)
        heads = anlcl_encoder.head_parameters()
        optimizer_d = torch.optim.Adam(anlcl_encoder.discriminator.parameters(), lr=config.anlcl_discriminator_lr,
                                       betas=(0.5, 0.999))
    optimizer = torch.optim.Adam([*model.parameters(), *heads], lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, lr_milestone_steps(config), config.lr_gamma)

    # --- data
    paired, real = training_datasets(config)
    val = None
    if main and config.val_root and config.val_every_epochs > 0:
        val = PairedImageDataset(config.val_root, config.val_layout)
    per_epoch = steps_per_epoch(paired, config.batch_size)

    # --- resume
    step, log_rows, sums, wall_before = 0, [], {}, 0.0
    state = _load_checkpoint(checkpoint_path, config, device, world)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if dual is not None:
            dual.load_state_dict(state["dual"])
        if anlcl_encoder is not None:
            anlcl_encoder.load_state_dict(state["anlcl_encoder"])
            optimizer_d.load_state_dict(state["optimizer_d"])
        step, log_rows, sums, wall_before = state["step"], state["log"], state["epoch_sums"], state["wall_time_s"]
        if main:
            write_log(log_path, log_rows)  # drop rows a killed run wrote after its last checkpoint
    del state
    resumed_from = step
    last_saved = step if resumed_from > 0 else None  # a checkpoint is never written before step 1

    # Only the training step runs wrapped (DDP) and compiled: checkpoints and validation use ``model``
    # itself (the same parameters), and the VGG compiles in place, so neither state dict changes its keys.
    stepped = distributed.wrap_model(model, device, sync_batchnorm=config.sync_batchnorm)
    if config.compile_mode is not None:
        stepped = torch.compile(stepped, mode=config.compile_mode)
        if dual is not None:
            dual.vgg.compile(mode=config.compile_mode)

    def checkpoint_state() -> dict:
        return {"config": config.as_dict(), "step": step, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "dual": dual.state_dict() if dual is not None else None,
                **({"anlcl_encoder": anlcl_encoder.state_dict(), "optimizer_d": optimizer_d.state_dict()}
                   if anlcl_encoder is not None else {}),
                "log": log_rows, "epoch_sums": sums, "wall_time_s": wall_before + time.perf_counter() - started}

    shard = dict(rank=world.rank, size=world.size)
    paired_batches = batch_stream(paired, config.batch_size, config.seed, step, config.num_workers, **shard)
    real_batches = (batch_stream(real, config.batch_size, config.seed + 1, step, config.num_workers, **shard)
                    if real else None)
    show = (sys.stderr.isatty() if progress is None else progress) and main
    bar = tqdm(total=config.steps, initial=step, disable=not show, desc=f"{config.variant} ({run_dir.name})")
    started = time.perf_counter()
    model.train()
    while step < config.steps:
        batch = next(paired_batches)
        rainy = batch["rainy"].to(device, memory_format=memory_format)
        clean = batch["clean"].to(device, memory_format=memory_format)
        real_rainy = next(real_batches)["rainy"].to(device, memory_format=memory_format) if real_batches else None

        if config.compile_mode is not None:  # CUDA graphs may reuse the memory of the last step's outputs
            torch.compiler.cudagraph_mark_step_begin()
        with autocast(device, config.bf16):
            terms = training_step(stepped, dual, config, rainy, clean, real_rainy, anlcl_encoder=anlcl_encoder,
                                  generator=step_generator(config.seed, step, world.rank) if anlcl_encoder else None)
        loss = terms.pop("total")
        d_loss = terms.pop("_anlcl_discriminator", None)
        derained = terms.pop("_derained")
        outputs = terms.pop("_outputs")
        values = {name: float(value.detach()) for name, value in terms.items()}
        values["total"] = float(loss.detach())
        if d_loss is not None:
            values["anlcl_discriminator"] = float(d_loss.detach())
        if config.monitor_gradients:
            w = config.loss_weights
            values |= gradient_ratios(output_gradient_norms(terms, outputs, {
                "detail": 1.0, "rain_residual": w.rain_residual, "dual_sup": w.dual, "dual_unsup": w.unsupervised,
                **{f"anlcl_{name}": getattr(config.anlcl_loss_weights, name) for name in config.anlcl_terms}}))
        if watch is not None and "dual_unsup" in outputs:  # the collapse rule's range test (derainlib.monitoring)
            values["real_out_of_range"] = out_of_range_fraction(outputs["dual_unsup"].detach())
        values["train_psnr_y"] = float(psnr(derained.float().clamp(0, 1), clean.float()))
        values = distributed.mean_over_ranks(values)  # every rank sees the same numbers and stops together
        if not math.isfinite(values["total"]) or not math.isfinite(values.get("anlcl_discriminator", 0.0)):
            bar.close()
            raise diverged(run_dir, step, values, checkpoint_path, last_saved)

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(heads)  # DDP averages the network's gradients only
        optimizer.step()
        scheduler.step()
        if anlcl_encoder is not None:  # then the momentum encoder, then D on its own loss (as ANLCL steps them)
            anlcl_encoder.momentum_update()
            optimizer_d.zero_grad(set_to_none=True)
            d_loss.backward()
            average_gradients(anlcl_encoder.discriminator.parameters())
            optimizer_d.step()
        step += 1
        bar.update(1)

        add_to_epoch(sums, values)
        if watch is not None:  # the collapse rule: a collapsed run ends here, logged and saved as if finished
            collapsed = watch.update(step, values["detail"], values.get("real_out_of_range"))
        if step % per_epoch == 0 or step == config.steps or collapsed:
            row = {"epoch": math.ceil(step / per_epoch), "step": step, "lr": optimizer.param_groups[0]["lr"],
                   **epoch_means(sums)}
            if val is not None and (row["epoch"] % config.val_every_epochs == 0 or step == config.steps):
                scores = summarize(evaluate(model, val, bf16=config.bf16, channels_last=config.channels_last,
                                            max_images=config.val_max_images))
                row.update({f"val_{name}": value for name, value in scores.items()})
            row["wall_time_s"] = round(wall_before + time.perf_counter() - started, 2)
            log_rows.append(row)
            if main:
                write_log(log_path, log_rows)
        if step % config.checkpoint_every == 0 or step == config.steps or collapsed:
            if main:
                save_checkpoint(checkpoint_path, checkpoint_state())
            last_saved = step
        if on_step is not None:
            on_step(step, values)
        if collapsed:
            break
    bar.close()

    wall = wall_before + time.perf_counter() - started
    if main and (not model_path.exists() or resumed_from < config.steps):
        save_checkpoint(model_path, {"config": config.as_dict(), "step": step, "model": model.state_dict(),
                                     "wall_time_s": wall, "collapsed": collapsed})
    return RunResult(run_dir=run_dir, steps=step, wall_time_s=wall, log=pd.DataFrame(log_rows),
                     resumed_from=resumed_from, collapsed=collapsed)


# --------------------------------------------------------------------------- loading a trained model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Load ``model.pt`` (or ``checkpoint.pt``) written by :func:`train`: the network and its config.

    An ANLCL run's file (:func:`derainlib.train_anlcl.train_anlcl`) gives its deraining network (G_B, G_R)
    and its :class:`~derainlib.train_anlcl.ANLCLConfig`.

    A file committed in parts (:func:`derainlib.atomic.split_file`) is read from them, checked, in
    memory: loading a model leaves the committed files as they are.
    """
    path = Path(path)
    source = io.BytesIO(read_parts(path)) if not path.is_file() and has_parts(path) else path
    if source is path and not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        state = torch.load(source, map_location=device, weights_only=False)
        if isinstance(state, dict) and state.get("method") == "anlcl":  # derainlib.train_anlcl's model.pt
            from .train_anlcl import model_from_state

            return model_from_state(state, device)
        config = TrainConfig(**{key: value for key, value in saved_config(state["config"]).items()
                                if key in {f.name for f in dataclasses.fields(TrainConfig)}})
    except Exception as error:  # a truncated or foreign file: say which and why
        raise ValueError(f"{path}: not a derainlib checkpoint ({type(error).__name__}: {error})") from error
    model = build_network(config.variant, width=config.width, num_blocks=config.num_blocks)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config

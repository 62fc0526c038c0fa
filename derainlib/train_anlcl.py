"""Training ANLCL: the two stages of §4.6 in one run, readable top to bottom.

Paper: Chang et al., "Unsupervised Deraining: Where Asymmetric Contrastive Learning Meets Self-similarity"
(ANLCL), §4.6: "we utilize supervised deraining knowledge based on synthetic datasets as the initialization
of both generators, and train the generators and discriminator without the CL loss. Second, we train the
whole ANLCL model with overall losses using Eq. (4)."

- **Stage 1** (steps ``1 .. pretrain_steps``): paired synthetic crops (O, B_gt). Both generators are
  supervised, ``|B − B_gt|`` and ``|R − (O − B_gt)|``, with the GAN prior on B and the self-consistency of
  Eq. (2) (:func:`derainlib.losses.anlcl.pretraining_loss`); D learns clean crops B_gt against G_B(O).
- **Stage 2** (the next ``steps``): unlabeled rainy crops only (a real-proxy train split, or any folder of
  rainy images). Every term of Eq. (4): Eq. (2)-(3) and the layer, location and asymmetric contrastive
  terms (:func:`derainlib.losses.anlcl.contrastive_terms`). The GAN needs clean images: D sees clean crops
  of the pretraining set, drawn independently of the rainy batch (unpaired, as in CycleGAN and CUT).

**Stage 1 from a shared run** (``init_weights``). Stage 1 does not depend on anything the ablations vary
(sampling, encoder, stage-2 terms), so a study trains it once per seed: a run with ``steps=0`` is stage 1 alone,
and a run whose ``init_weights`` names that run's ``model.pt`` starts at step ``pretrain_steps`` from its G_B,
G_R and D (:func:`start_after_stage_1`; the two configs must agree on every stage-1 setting). The MLP heads keep
their seeded initialisation (stage 1 gives them no gradient), the momentum encoder starts as a copy of the
online encoder (MoCo's start) and both Adam optimisers start afresh: those are the only differences from
training both stages in one run.

**One step** (both stages): ``B, R = G_B(O), G_R(O)``; the generator-side loss (D frozen, so that its
backward leaves D untouched, as in CUT) and D's least-squares loss on ``B`` detached are both computed
before anything is stepped, so the NaN guard stops the run before a bad step changes any weight. Then the
generator optimiser (G_B, G_R and every MLP head: :meth:`ANLCLNetworks.generator_parameters`) steps, the
momentum encoder follows (MoCo, m of §4.6), D's gradients are zeroed and D steps on its own loss.

**Resumable, exactly.** Batches are a pure function of ``(seed, step)`` (:func:`derainlib.distributed.batch_stream`)
and each step's contrastive samples come from a generator seeded by ``(seed, step, rank)``, so a checkpoint
holds only the step, the networks (with the momentum encoder), both optimisers, the log and the running epoch
sums; a run interrupted anywhere, in either stage, resumes to the same weights (``tests/test_train_anlcl.py``).
``checkpoint.pt``, ``model.pt`` and ``log.csv`` are written atomically; the folder is locked while it trains
and temporary files a killed writer left are swept first.

**Collapse rule** (stage 2). No supervised curve exists to compare an unsupervised run with, so the rule
watches only the derained real batch: over the last ``collapse_window`` steps (default
:data:`COLLAPSE_WINDOW`), more than
``collapse_out_of_range`` of B's values outside [0, 1] (saturated), or a mean per-image standard deviation
below ``collapse_min_std`` (flat). A collapsed run stops there, keeps its weights, and says so in ``model.pt``
and its record.

**Several processes** (``torchrun``): the global batch is split over the ranks; gradients are averaged
after each backward (:func:`derainlib.trainer_common.average_gradients`: two optimisers on one forward do
not fit DistributedDataParallel), so every rank takes the same steps. Rank 0 locks and writes the folder.

Run folder: ``checkpoint.pt`` while training, ``log.csv`` (one row per epoch of the stage's data, with a
``stage`` column), ``model.pt`` (the config and every network's weights but the momentum encoder's, or G_B
and G_R alone after :func:`keep_deraining_only`: ``derain --checkpoint`` reads either).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from . import distributed
from .atomic import remove_with_parts
from .data.datasets import PairedImageDataset, UnpairedImageDataset
from .losses.anlcl import (NORM_READINGS, RAIN_PRIOR_TARGETS, ANLCLLossWeights, ContrastiveSampling, anlcl_objective,
                           contrastive_terms, decomposition_loss, discriminator_loss, pretraining_loss)
from .models.anlcl import ENCODERS, ANLCLDeraining, ANLCLNetworks
from .options import check_choice
from .runtime import autocast, resolve_device, seed_everything
from .trainer_common import (TrainingDiverged, add_to_epoch, average_gradients, check_resumable, claim_run_folder,
                             diverged, epoch_means, save_checkpoint, step_generator, to_device,
                             warn_if_bf16_is_emulated, write_log)

__all__ = ["ALL_NETWORKS", "ANLCLConfig", "ANLCLResult", "COLLAPSE_WINDOW", "DECOMPOSITION_TERMS", "DERAINING_ONLY",
           "DISTANCE_COLUMNS", "METHOD", "apply_step", "build_networks", "keep_deraining_only", "load_networks",
           "model_from_state", "model_weights", "start_after_stage_1", "train_anlcl", "training_step"]

METHOD = "anlcl"  # written into model.pt: derainlib.train.load_model reads ANLCL models by it

#: Config fields that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = frozenset({"device", "num_workers", "checkpoint_every"})

#: Config fields that only stage 2 reads: a run may start stage 2 from a stage-1 run that differs in these
#: (in ``loss_weights``, only in the weights outside :data:`STAGE_1_WEIGHTS`).
STAGE_2_SETTINGS = frozenset({"real_root", "encoder", "steps", "terms", "decomposition_terms", "rain_prior_on", "norms",
                              "sampling", "loss_weights", "collapse_out_of_range", "collapse_min_std",
                              "collapse_window", "init_weights"})
#: Config fields of how stage 2 computes, not of what stage 1 trained: stage 2 may use another arithmetic than
#: the stage-1 run it starts from (the study's fp32 checks start from its bf16 stage-1 runs).
STAGE_2_ARITHMETIC = frozenset({"bf16", "channels_last"})
#: The loss weights stage 1's objective reads (:func:`derainlib.losses.anlcl.pretraining_loss`).
STAGE_1_WEIGHTS = ("supervised_background", "supervised_rain", "consistency", "background_prior")

#: The files a run writes (glob patterns): their temporary files are swept on a resume.
RUN_FILES = ("checkpoint.pt", "checkpoint.pt.part-*", "checkpoint.pt.parts.json", "model.pt", "log.csv")

#: Steps the collapse rule averages over.
COLLAPSE_WINDOW = 50

CONTRASTIVE_TERMS = ("layer", "location", "asymmetric")
#: Eq. (2)-(3)'s terms: self-consistency (MSE), the L1 rain prior and the GAN prior on B. Table 5 drops them
#: one at a time in stage 2; stage 1 always keeps its own objective.
DECOMPOSITION_TERMS = ("consistency", "rain_sparsity", "background_prior")
#: Fig. 7's per-step diagnostics, logged as epoch means (:func:`derainlib.losses.anlcl.feature_distances`).
DISTANCE_COLUMNS = ("dist_image", "dist_rain", "dist_image_rain")


def check_term_names(terms: Iterable[str], decomposition_terms: Iterable[str]) -> None:
    """A ValueError naming any contrastive or decomposition term that is not one of ANLCL's."""
    unknown = set(terms) - set(CONTRASTIVE_TERMS)
    if unknown:
        raise ValueError(f"unknown contrastive terms {sorted(unknown)}; valid: {', '.join(CONTRASTIVE_TERMS)}")
    unknown = set(decomposition_terms) - set(DECOMPOSITION_TERMS)
    if unknown:
        raise ValueError(f"unknown decomposition terms {sorted(unknown)}; valid: {', '.join(DECOMPOSITION_TERMS)}")


@dataclass
class ANLCLConfig:
    """Everything that defines an ANLCL run. Stored in every checkpoint; a resume must match it."""

    # data: paired synthetic crops for stage 1 (and the clean images D sees), unlabeled rainy crops for stage 2
    pretrain_root: str = ""
    pretrain_layout: str | None = None  # None: detect
    real_root: str = ""
    # networks (derainlib.models.anlcl)
    width: int = 60
    num_blocks: int = 9
    layer_features: tuple[int, ...] = (0, 1, 2, 3)
    momentum: float = 0.99
    encoder: str = "discriminator"  # Table 4: the layer-contrastive encoder (derainlib.models.anlcl.ENCODERS)
    neck_norm: bool = False  # the public code's instance norm in the generators' neck (models.anlcl: why not)
    # schedule and optimisation (§4.6: Adam, lr 1e-4, batch 4, 256² crops)
    pretrain_steps: int = 1000
    steps: int = 3000  # stage 2
    crop_size: int = 256
    batch_size: int = 4
    learning_rate: float = 1e-4
    # stage 1's Adam step size (None: ``learning_rate``); a short stage 1 needs a larger one to learn anything
    pretrain_learning_rate: float | None = None
    betas: tuple[float, float] = (0.5, 0.999)  # the CUT framework's Adam, which the public code builds on
    num_workers: int = 0
    # losses: Eq. (4)'s weights, the contrastive terms used in stage 2, and how they sample (Table 3)
    loss_weights: ANLCLLossWeights = field(default_factory=ANLCLLossWeights)
    terms: tuple[str, ...] = CONTRASTIVE_TERMS
    decomposition_terms: tuple[str, ...] = DECOMPOSITION_TERMS  # stage 2's Eq. (2)-(3) terms (Table 5)
    rain_prior_on: str = "rain"  # stage 2's L1 rain prior on R or on O − B (losses.anlcl.RAIN_PRIOR_TARGETS)
    # stage 2's Eq. (2) norms summed over pixels as printed, or averaged (losses.anlcl.NORM_READINGS); the sum
    # scored higher on the study's validation split (docs/anlcl.md, "The study's stage 2")
    norms: str = "sum"
    sampling: ContrastiveSampling = field(default_factory=ContrastiveSampling)
    # the collapse rule (module docstring)
    collapse_out_of_range: float = 0.25
    collapse_min_std: float = 0.005
    collapse_window: int = COLLAPSE_WINDOW
    # execution
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    channels_last: bool = False
    checkpoint_every: int = 100
    # stage 1 from a shared run: the model.pt of a stage-1 run (steps=0) with this run's stage-1 settings
    init_weights: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.loss_weights, dict):  # coming back from a checkpoint
            self.loss_weights = ANLCLLossWeights(**self.loss_weights)
        if isinstance(self.sampling, dict):
            self.sampling = ContrastiveSampling(**self.sampling)
        self.layer_features, self.terms, self.betas = tuple(self.layer_features), tuple(self.terms), tuple(self.betas)
        self.decomposition_terms = tuple(self.decomposition_terms)
        if not self.pretrain_root:
            raise ValueError("ANLCLConfig.pretrain_root is required: a folder of paired synthetic training images")
        if self.steps > 0 and not self.real_root:
            raise ValueError("ANLCLConfig.real_root is required for stage 2: a folder of unlabeled rainy images")
        check_term_names(self.terms, self.decomposition_terms)
        if not self.terms and not self.decomposition_terms and self.steps > 0:
            raise ValueError("stage 2 needs at least one loss term")
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; valid: {', '.join(ENCODERS)}")
        # checked here, not at stage 2's first step after a whole stage 1
        check_choice("rain_prior_on", self.rain_prior_on, RAIN_PRIOR_TARGETS)
        check_choice("norms", self.norms, NORM_READINGS)
        if self.pretrain_steps < 0 or self.steps < 0 or self.pretrain_steps + self.steps < 1:
            raise ValueError("pretrain_steps and steps must be >= 0, and at least one step in all")
        if self.init_weights and self.steps < 1:
            raise ValueError("a run that starts from a stage-1 run (init_weights) needs stage-2 steps")
        if self.batch_size < 1 or self.checkpoint_every < 1 or self.collapse_window < 1:
            raise ValueError("batch_size, checkpoint_every and collapse_window must be positive")
        if self.crop_size < self.sampling.patch_size:
            raise ValueError(f"crop_size {self.crop_size} is smaller than the sampled patches "
                             f"({self.sampling.patch_size})")

    def stage_learning_rate(self, stage: int) -> float:
        """Adam's step size in ``stage`` (1 or 2) for both optimisers."""
        if stage == 1 and self.pretrain_learning_rate is not None:
            return self.pretrain_learning_rate
        return self.learning_rate

    @property
    def total_steps(self) -> int:
        return self.pretrain_steps + self.steps

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- networks


def build_networks(config: ANLCLConfig) -> ANLCLNetworks:
    return ANLCLNetworks(config.width, config.num_blocks, layer_features=config.layer_features,
                         momentum=config.momentum, encoder=config.encoder, neck_norm=config.neck_norm)


def _config_from(saved: dict) -> ANLCLConfig:
    known = {f.name for f in dataclasses.fields(ANLCLConfig)}
    # a run saved before neck_norm existed was trained with the public code's neck norm, before norms existed
    # with Eq. (2)'s norms as means
    legacy = {"neck_norm": True, "norms": "mean"}
    return ANLCLConfig(**(legacy | {key: value for key, value in saved.items() if key in known}))


def model_from_state(state: dict, device: str | torch.device = "cpu") -> tuple[ANLCLDeraining, ANLCLConfig]:
    """The deraining network (G_B, G_R) of an ANLCL ``model.pt`` / ``checkpoint.pt`` state, in eval mode."""
    config = _config_from(state["config"])
    prefix = "deraining."
    weights = {key[len(prefix):]: value for key, value in state["networks"].items() if key.startswith(prefix)}
    model = ANLCLDeraining(config.width, config.num_blocks, neck_norm=config.neck_norm)
    model.load_state_dict(weights)
    return model.to(device).eval(), config


def load_networks(path: str | Path, device: str | torch.device = "cpu") -> tuple[ANLCLNetworks, ANLCLConfig]:
    """Every network of an ANLCL run (generators, discriminator, heads), for analysis. ``model.pt`` does not keep
    the momentum encoder (a training device: stage 2 and a resume rebuild it), so it comes back as a copy of the
    online encoder; a ``checkpoint.pt`` (or an older ``model.pt``) restores it as saved."""
    state = torch.load(path, map_location=device, weights_only=False)
    if state.get("method") != METHOD:
        raise ValueError(f"{path}: not an ANLCL model (method {state.get('method')!r})")
    if state.get("networks_kept", ALL_NETWORKS) != ALL_NETWORKS:
        raise ValueError(f"{path}: this model.pt keeps only the deraining network (G_B, G_R), not the "
                         "discriminator and heads an analysis of the encoder needs")
    config = _config_from(state["config"])
    networks = build_networks(config)
    missing, unexpected = networks.load_state_dict(state["networks"], strict=False)
    if unexpected or any(not key.startswith("key_encoder.") for key in missing):
        raise ValueError(f"{path}: its networks do not match its config (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]})")
    if missing:
        networks.reset_key_encoder()
    return networks.to(device).eval(), config


#: ``networks_kept`` of a ``model.pt``: every network but the momentum encoder, or the deraining network alone.
ALL_NETWORKS, DERAINING_ONLY = "all", "deraining"


def model_weights(networks: ANLCLNetworks) -> dict[str, torch.Tensor]:
    """What ``model.pt`` keeps: every network's weights but the momentum encoder's."""
    return {key: value for key, value in networks.state_dict().items() if not key.startswith("key_encoder.")}


def keep_deraining_only(model_path: str | Path) -> None:
    """Rewrite a finished run's ``model.pt`` with G_B and G_R alone (what ``derain`` and every score read), so
    that a study whose runs need no encoder analysis commits a fraction of the bytes (the discriminator and
    heads are most of them). Idempotent."""
    state = torch.load(model_path, map_location="cpu", weights_only=False)
    if state.get("networks_kept") == DERAINING_ONLY:
        return
    state["networks"] = {key: value for key, value in state["networks"].items() if key.startswith("deraining.")}
    save_checkpoint(Path(model_path), state | {"networks_kept": DERAINING_ONLY})


# --------------------------------------------------------------------------- one step


def training_step(networks: ANLCLNetworks, config: ANLCLConfig, step: int, rainy: torch.Tensor,
                  clean: torch.Tensor, *, paired: bool, rank: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The generator-side terms of step ``step`` (0-based) and D's loss; no backward, no optimiser step.

    ``paired``: stage 1, ``clean`` is ``rainy``'s own target; else stage 2, ``clean`` is an unpaired batch of
    clean images for D. Returns ``(terms, discriminator loss)``; ``terms`` holds the weighted ``"total"``
    (Eq. (4), or stage 1's objective), the unweighted terms, ``"_background"`` (B, detached) and, in stage 2
    with the layer or asymmetric term, Fig. 7's feature distances (:data:`DISTANCE_COLUMNS`, floats).
    """
    discriminator = networks.discriminator
    out = networks(rainy)
    background, rain = out.derained, out.rain
    discriminator.requires_grad_(False)  # its gradients come from its own loss only (CUT's set_requires_grad)
    diagnostics: dict[str, float] = {}
    try:
        fake_prediction = discriminator(background)
        if paired:
            terms = pretraining_loss(background, rain, rainy, clean, fake_prediction)
        else:
            decomposition = decomposition_loss(background, rain, rainy, fake_prediction,
                                               rain_prior_on=config.rain_prior_on, norms=config.norms)
            terms = {name: value for name, value in decomposition.items() if name in config.decomposition_terms}
            if config.terms:
                terms |= contrastive_terms(networks, rainy, background, rain, config.sampling,
                                           generator=step_generator(config.seed, step, rank), terms=config.terms,
                                           diagnostics=diagnostics)
    finally:
        discriminator.requires_grad_(True)
    total = anlcl_objective(terms, config.loss_weights)
    d_loss = discriminator_loss(discriminator(clean), discriminator(background.detach()))
    extra = {name: diagnostics[name] for name in DISTANCE_COLUMNS if name in diagnostics}
    return {"total": total, **terms, "_background": background.detach(), **extra}, d_loss


def apply_step(networks: ANLCLNetworks, optimizer_g: torch.optim.Optimizer, optimizer_d: torch.optim.Optimizer,
               loss: torch.Tensor, d_loss: torch.Tensor) -> None:
    """The updates of one step (module docstring): generators and heads, then the momentum encoder, then D on
    its own loss. Gradients are averaged over the processes after each backward."""
    optimizer_g.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(networks.generator_parameters())
    optimizer_g.step()
    networks.momentum_update()
    optimizer_d.zero_grad(set_to_none=True)  # whatever an earlier backward left in D is not D's gradient
    d_loss.backward()
    average_gradients(networks.discriminator_parameters())
    optimizer_d.step()


# --------------------------------------------------------------------------- checkpoints


def _check_resumable(saved: dict, config: ANLCLConfig, path: Path) -> None:
    # the saved config normalised the same way as this run's (tuples, nested dataclasses)
    check_resumable(_config_from(saved).as_dict(), config.as_dict(), RESUMABLE_CHANGES, path)


def _read_state(path: Path, config: ANLCLConfig) -> dict | None:
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("method") != METHOD:
        raise ValueError(f"{path}: not an ANLCL checkpoint (method {state.get('method')!r})")
    _check_resumable(state["config"], config, path)
    return state


def start_after_stage_1(networks: ANLCLNetworks, config: ANLCLConfig, device: torch.device) -> int:
    """Load the stage-1 run ``config.init_weights`` into ``networks`` (module docstring) and return the step
    stage 2 starts at. Refuses a run that is not stage 1 alone, did not finish it, or differs from ``config``
    in a stage-1 setting."""
    path = Path(config.init_weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the stage-1 run this run starts from has no model.pt; train it first")
    state = torch.load(path, map_location=device, weights_only=False)
    if state.get("method") != METHOD:
        raise ValueError(f"{path}: not an ANLCL model (method {state.get('method')!r})")
    saved = _config_from(state["config"])
    if saved.steps != 0 or state["step"] != config.pretrain_steps:
        raise ValueError(f"{path}: not a finished stage-1 run (stage-2 steps {saved.steps}, step {state['step']}; "
                         f"expected 0 and {config.pretrain_steps})")
    check_resumable(saved.as_dict(), config.as_dict(), RESUMABLE_CHANGES | STAGE_2_SETTINGS | STAGE_2_ARITHMETIC,
                    path)
    stage_1_weights = {name: getattr(config.loss_weights, name) for name in STAGE_1_WEIGHTS}
    if {name: getattr(saved.loss_weights, name) for name in STAGE_1_WEIGHTS} != stage_1_weights:
        raise ValueError(f"{path}: its stage-1 loss weights differ from this run's {stage_1_weights}")
    trained = {key: value for key, value in state["networks"].items()
               if key.startswith(("deraining.", "discriminator."))}
    networks.load_state_dict(trained, strict=False)
    networks.reset_key_encoder()
    return config.pretrain_steps


# --------------------------------------------------------------------------- the run


@dataclass
class ANLCLResult:
    run_dir: Path
    steps: int
    wall_time_s: float
    log: pd.DataFrame
    resumed_from: int  # 0 when the run started fresh
    collapsed: dict | None = None  # the collapse rule's verdict when it stopped the run


def train_anlcl(config: ANLCLConfig, run_dir: str | Path, *, progress: bool | None = None,
                on_step: Callable[[int, dict[str, float]], None] | None = None) -> ANLCLResult:
    """Train (or resume) the ANLCL run in ``run_dir`` through both stages; return its log.

    A finished run (``model.pt`` without ``checkpoint.pt``) is read back, not retrained. Under ``torchrun``
    every process calls this with the same arguments; rank 0 locks, reads and writes the folder.

    Args:
        progress: tqdm bar; ``None`` shows it only on a terminal (quiet under papermill), on rank 0.
        on_step: called after every step with ``(step, logged values)``; an exception raised there
            interrupts the run like a kill would (tests use it).
    """
    run_dir = Path(run_dir)
    world = distributed.ensure_process_group()
    with contextlib.ExitStack() as held:
        def prepare() -> ANLCLResult | None:
            if claim_run_folder(run_dir, held, RUN_FILES):
                state = _read_state(run_dir / "model.pt", config)
                log = pd.read_csv(run_dir / "log.csv") if (run_dir / "log.csv").exists() else pd.DataFrame()
                return ANLCLResult(run_dir, state["step"], state.get("wall_time_s", math.nan), log, state["step"],
                                   state.get("collapsed"))
            return None

        finished = distributed.on_main(prepare)  # rank 0 holds the lock until the run ends
        if finished is not None:
            return finished
        result = _train_locked(config, run_dir, world, progress=progress, on_step=on_step)
        if world.is_main:
            remove_with_parts(run_dir / "checkpoint.pt")
        return distributed.broadcast_object(result)


def _train_locked(config: ANLCLConfig, run_dir: Path, world: distributed.World, *, progress: bool | None,
                  on_step: Callable[[int, dict[str, float]], None] | None) -> ANLCLResult:
    checkpoint_path, log_path, model_path = run_dir / "checkpoint.pt", run_dir / "log.csv", run_dir / "model.pt"
    main = world.is_main
    device = resolve_device(config.device)
    device = distributed.rank_device(device) if world.size > 1 else device
    if main:
        warn_if_bf16_is_emulated(config.bf16, device, run_dir)
    seed_everything(config.seed)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format

    # --- networks and the two optimisers
    networks = build_networks(config).to(device, memory_format=memory_format)
    generator_parameters, discriminator_parameters = networks.generator_parameters(), networks.discriminator_parameters()
    optimizer_g = torch.optim.Adam(generator_parameters, lr=config.learning_rate, betas=config.betas)
    optimizer_d = torch.optim.Adam(discriminator_parameters, lr=config.learning_rate, betas=config.betas)

    # --- data: paired crops (stage 1, and D's clean images in stage 2), unlabeled rainy crops (stage 2)
    paired = PairedImageDataset(config.pretrain_root, config.pretrain_layout, crop=config.crop_size, augment=True,
                                seed=config.seed)
    # D's clean images in stage 2: the same pairs, their own crops and order (a dataset holds its epoch)
    clean_set = PairedImageDataset(config.pretrain_root, config.pretrain_layout, crop=config.crop_size, augment=True,
                                   seed=config.seed + 2)
    real = (UnpairedImageDataset(config.real_root, crop=config.crop_size, augment=True, seed=config.seed + 1)
            if config.steps > 0 else None)
    per_epoch = {1: max(1, len(paired) // config.batch_size),
                 2: max(1, len(real) // config.batch_size) if real is not None else 1}

    # --- resume
    step, log_rows, sums, wall_before = 0, [], {}, 0.0
    state = distributed.on_main(lambda: _read_state(checkpoint_path, config))
    if state is not None:
        state = to_device(state, device)
        networks.load_state_dict(state["networks"])
        optimizer_g.load_state_dict(state["optimizer_g"])
        optimizer_d.load_state_dict(state["optimizer_d"])
        step, log_rows, sums, wall_before = state["step"], state["log"], state["epoch_sums"], state["wall_time_s"]
        if main:
            write_log(log_path, log_rows)  # drop rows a killed run wrote after its last checkpoint
    elif config.init_weights:
        step = start_after_stage_1(networks, config, device)
    resumed_from = step if state is not None else 0
    last_saved = step if state is not None else None
    del state

    def checkpoint_state() -> dict:
        return {"method": METHOD, "config": config.as_dict(), "step": step, "networks": networks.state_dict(),
                "optimizer_g": optimizer_g.state_dict(), "optimizer_d": optimizer_d.state_dict(),
                "log": log_rows, "epoch_sums": sums, "wall_time_s": wall_before + time.perf_counter() - started}

    shard = dict(rank=world.rank, size=world.size)
    streams: dict[str, object] = {}

    def next_batch(name: str) -> dict:
        """The next batch of stream ``name``; each stream starts at its stage's step when first read."""
        if name not in streams:
            if name == "paired":
                streams[name] = distributed.batch_stream(paired, config.batch_size, config.seed, step,
                                                         config.num_workers, **shard)
            elif name == "real":
                streams[name] = distributed.batch_stream(real, config.batch_size, config.seed + 1,
                                                         step - config.pretrain_steps, config.num_workers, **shard)
            else:  # "clean": D's clean images in stage 2, in another order than any rainy batch
                streams[name] = distributed.batch_stream(clean_set, config.batch_size, config.seed + 2,
                                                         step - config.pretrain_steps, config.num_workers, **shard)
        return next(streams[name])

    show = (sys.stderr.isatty() if progress is None else progress) and main
    bar = tqdm(total=config.total_steps, initial=step, disable=not show, desc=f"ANLCL ({run_dir.name})")
    watch_range: deque[float] = deque(maxlen=config.collapse_window)  # a resumed run's watch starts empty
    watch_std: deque[float] = deque(maxlen=config.collapse_window)
    collapsed: dict | None = None
    started = time.perf_counter()
    networks.train()
    while step < config.total_steps:
        stage = 1 if step < config.pretrain_steps else 2
        for group in (*optimizer_g.param_groups, *optimizer_d.param_groups):  # set every step: resumes stay exact
            group["lr"] = config.stage_learning_rate(stage)
        if stage == 1:
            batch = next_batch("paired")
            rainy, clean = batch["rainy"], batch["clean"]
        else:
            rainy, clean = next_batch("real")["rainy"], next_batch("clean")["clean"]
        rainy = rainy.to(device, memory_format=memory_format)
        clean = clean.to(device, memory_format=memory_format)

        with autocast(device, config.bf16):
            terms, d_loss = training_step(networks, config, step, rainy, clean, paired=stage == 1, rank=world.rank)
        loss = terms.pop("total")
        background = terms.pop("_background").float()
        values = {name: float(value.detach()) if torch.is_tensor(value) else float(value)
                  for name, value in terms.items()}
        values |= {"total": float(loss.detach()), "discriminator": float(d_loss.detach()),
                   "out_of_range": float(((background < 0) | (background > 1)).float().mean()),
                   "output_std": float(background.flatten(1).std(dim=1).mean())}
        values = distributed.mean_over_ranks(values)  # every rank sees the same numbers and stops together
        if not (math.isfinite(values["total"]) and math.isfinite(values["discriminator"])):
            bar.close()
            raise diverged(run_dir, step, {"stage": stage, **values}, checkpoint_path, last_saved)

        apply_step(networks, optimizer_g, optimizer_d, loss, d_loss)
        step += 1
        bar.update(1)

        add_to_epoch(sums, values)
        if stage == 2:  # the collapse rule watches the derained real batch
            watch_range.append(values["out_of_range"])
            watch_std.append(values["output_std"])
            if len(watch_range) == config.collapse_window:
                collapsed = collapse_verdict(step, watch_range, watch_std, config)
        stage_step = step if stage == 1 else step - config.pretrain_steps
        stage_ends = step == config.pretrain_steps or step == config.total_steps
        if stage_step % per_epoch[stage] == 0 or stage_ends or collapsed:
            row = {"stage": stage, "epoch": math.ceil(stage_step / per_epoch[stage]), "step": step,
                   **epoch_means(sums),
                   "wall_time_s": round(wall_before + time.perf_counter() - started, 2)}
            log_rows.append(row)
            if main:
                write_log(log_path, log_rows)
        if step % config.checkpoint_every == 0 or stage_ends or collapsed:
            if main:
                save_checkpoint(checkpoint_path, checkpoint_state())
            last_saved = step
        if on_step is not None:
            on_step(step, values)
        if collapsed:
            break
    bar.close()

    wall = wall_before + time.perf_counter() - started
    if main and (not model_path.exists() or resumed_from < config.total_steps):
        save_checkpoint(model_path, {"method": METHOD, "config": config.as_dict(), "step": step,
                                     "networks": model_weights(networks), "networks_kept": ALL_NETWORKS,
                                     "wall_time_s": wall, "collapsed": collapsed})
    return ANLCLResult(run_dir=run_dir, steps=step, wall_time_s=wall, log=pd.DataFrame(log_rows),
                       resumed_from=resumed_from, collapsed=collapsed)


def collapse_verdict(step: int, out_of_range: deque[float], output_std: deque[float],
                     config: ANLCLConfig) -> dict | None:
    """The collapse rule (module docstring) over the last window of stage 2; ``None`` while it holds."""
    mean_out = sum(out_of_range) / len(out_of_range)
    mean_std = sum(output_std) / len(output_std)
    reasons = []
    if not mean_out <= config.collapse_out_of_range:
        reasons.append(f"{100 * mean_out:.1f}% of B outside [0, 1] (saturated)")
    if not mean_std >= config.collapse_min_std:
        reasons.append(f"mean per-image std of B {mean_std:.4g} < {config.collapse_min_std:g} (flat)")
    if not reasons:
        return None
    return {"step": int(step), "out_of_range_last": mean_out, "output_std_last": mean_std,
            "reason": "; ".join(reasons)}

"""Training Rainmer's representation encoder, or AirNet's, with MoCo on a mixture of rain domains.

Paper: Ran et al., Rainmer (ACM MM 2024), supplement App. B-C; AirNet: Li et al., CVPR 2022, §3.1.

**Data.** Every training image of the chosen domains (e.g. the stand-ins for Rain200H, Rain800, DDN types 1
and 5, GT-Rain and GTAV-balance) in one pool, visited in a seeded order. An item is two crops of one rainy
image (the query and its positive key) and the clean crop under the query where the domain has targets (the
real-proxy training set has none).

**One step** (:func:`training_step`): the key encoder takes its momentum step and encodes the key and the
negatives; Rainmer's loss is the chromatic plus the degradation InfoNCE with their multi-view negatives and
queues (:mod:`derainlib.losses.rainmer`), AirNet's the InfoNCE against its queue. The NaN guard stops the run
before a bad step changes any weight. After the step the queues take the keys, the colour archive the query
crops' mean colours and the bank the rain layers ``O − B`` of the crops with targets.

**Resumable, exactly.** Batches are a pure function of ``(seed, step)``
(:func:`derainlib.distributed.batch_stream`), and the checkpoint holds the encoders with their queues, the
optimiser, the colour archive, the bank with its generator and the log: an interrupted run resumes to the
weights of an uninterrupted one (``tests/test_rainmer.py``). ``checkpoint.pt``, ``model.pt`` and ``log.csv``
are written atomically; the folder is locked while it trains. One process (no ``torchrun``).

Run folder: ``checkpoint.pt`` while training, ``log.csv`` (a row per epoch of the pool and at the end),
``model.pt`` (the query encoder and the config: :func:`load_encoder`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from . import distributed
from .atomic import remove_with_parts
from .data.benchmark import open_domain
from .data.errors import DatasetError
from .losses.rainmer import (ColourArchive, EmbeddingQueue, RainLayerBank, info_nce, mean_colours,
                             momentum_update)
from .models.rainmer import build_encoder, embed
from .options import check_choice
from .runtime import autocast, resolve_device, seed_everything
from .trainer_common import (add_to_epoch, check_resumable, claim_run_folder, diverged, epoch_means, save_checkpoint,
                             to_device, write_log)

__all__ = ["ENCODERS", "METHOD", "RainmerConfig", "RainmerResult", "TwoViewCrops", "build_networks",
           "load_encoder", "train_rainmer", "training_step"]

METHOD = "rainmer_encoder"
ENCODERS = ("rainmer", "airnet")
RESUMABLE_CHANGES = frozenset({"device", "num_workers", "checkpoint_every", "channels_last"})
RUN_FILES = ("checkpoint.pt", "checkpoint.pt.part-*", "checkpoint.pt.parts.json", "model.pt", "log.csv")


@dataclass
class RainmerConfig:
    """Everything that defines a representation run. Stored in every checkpoint; a resume must match it."""

    data_root: str = ""
    domains: tuple[str, ...] = ()  # benchmark domain names; "ddn<k>" is one DDN rain type
    encoder: str = "rainmer"  # or "airnet"
    width: int = 48
    embed_dim: int = 128
    moe_hidden: int = 64
    airnet_width: int = 64
    crop_size: int = 128
    batch_size: int = 8
    steps: int = 1000
    learning_rate: float = 1e-3
    momentum: float = 0.999
    temperature: float = 1.0
    queue_size: int = 1024
    bank_size: int = 256
    colour_archive_size: int = 256
    chromatic_negatives: int = 4
    degradation_negatives: int = 4
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    channels_last: bool = True  # Rainmer's encoder in channels-last (faster on a CPU but for tiny images)
    num_workers: int = 0
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        self.domains = tuple(self.domains)
        if not self.data_root or not self.domains:
            raise ValueError("RainmerConfig needs data_root and at least one domain")
        check_choice("encoder", self.encoder, ENCODERS)
        if min(self.steps, self.batch_size, self.checkpoint_every, self.chromatic_negatives,
               self.degradation_negatives) < 1:
            raise ValueError("steps, batch_size, checkpoint_every and the negative counts must be positive")

    def as_dict(self) -> dict:
        return asdict(self)


def _config_from(saved: dict) -> RainmerConfig:
    known = {f.name for f in dataclasses.fields(RainmerConfig)}
    return RainmerConfig(**{key: value for key, value in saved.items() if key in known})


# --------------------------------------------------------------------------- data


class TwoViewCrops(Dataset):
    """The training images of several domains in one pool; item ``i`` in epoch ``e`` is two crops of one rainy
    image drawn from ``(seed, i, e)``: ``query``, ``key``, ``clean`` (the clean crop under ``query``; zeros
    without a target), ``has_clean`` and ``domain`` (the index into ``domains``)."""

    def __init__(self, root: str | Path, domains: tuple[str, ...], crop: int, seed: int = 0,
                 split: str = "train") -> None:
        self.root, self.domains, self.crop, self.seed, self.epoch = Path(root), tuple(domains), int(crop), int(seed), 0
        self.sources = [open_domain(root, name, split) for name in self.domains]
        self.items = [(d, j) for d, source in enumerate(self.sources) for j in range(len(source))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        domain, j = self.items[index]
        item = self.sources[domain][j]
        rainy = item["rainy"]
        height, width = rainy.shape[-2:]
        if min(height, width) < self.crop:
            raise DatasetError(f"{self.sources[domain].root}/{item['name']}: {width}x{height} image is smaller "
                               f"than the {self.crop}x{self.crop} crops")
        rng = np.random.default_rng([self.seed, index, self.epoch])
        (top, key_top), (left, key_left) = (rng.integers(0, height - self.crop + 1, 2),
                                            rng.integers(0, width - self.crop + 1, 2))

        def cut(image: Tensor, y: int, x: int) -> Tensor:
            return image[:, y:y + self.crop, x:x + self.crop]

        clean = item.get("clean")
        return {"query": cut(rainy, top, left), "key": cut(rainy, key_top, key_left),
                "clean": cut(clean, top, left) if clean is not None else torch.zeros(3, self.crop, self.crop),
                "has_clean": clean is not None, "domain": domain}


# --------------------------------------------------------------------------- networks


class RepresentationNetworks(nn.Module):
    """The query encoder, its momentum key encoder, and one MoCo queue per embedding space."""

    def __init__(self, config: RainmerConfig) -> None:
        super().__init__()
        self.encoder = build_encoder(config.encoder, width=config.width, embed_dim=config.embed_dim,
                                     moe_hidden=config.moe_hidden, airnet_width=config.airnet_width,
                                     channels_last=config.channels_last)
        self.key_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        dim = config.embed_dim if config.encoder == "rainmer" else 4 * config.airnet_width
        self.queues = nn.ModuleDict({space: EmbeddingQueue(dim, config.queue_size) for space in self.encoder.spaces})


def build_networks(config: RainmerConfig) -> RepresentationNetworks:
    return RepresentationNetworks(config)


def initial_networks(config: RainmerConfig) -> RepresentationNetworks:
    """The networks a run of ``config`` starts training from: seeded, then built (the analyses' untrained control)."""
    seed_everything(config.seed)
    return build_networks(config)


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, RainmerConfig]:
    """The trained query encoder of a ``model.pt`` (or ``checkpoint.pt``), in eval mode, and its config."""
    state = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(state, dict) or state.get("method") != METHOD:
        raise ValueError(f"{path}: not a Rainmer/AirNet encoder file (method {state.get('method')!r})")
    config = _config_from(state["config"])
    networks = build_networks(config)
    networks.load_state_dict(state["networks"])
    return networks.encoder.to(device).eval(), config


# --------------------------------------------------------------------------- one step


@dataclass
class ViewMemory:
    """What Rainmer's negatives read: the colour archive and the rain-layer bank (AirNet uses neither)."""

    archive: ColourArchive
    bank: RainLayerBank


def training_step(networks: RepresentationNetworks, config: RainmerConfig, batch: dict, memory: ViewMemory,
                  device: torch.device) -> dict[str, Tensor]:
    """The loss of one batch (``"total"`` and its terms, and the mean positive cosine); no optimiser step.

    The key encoder takes its momentum step first (MoCo); the colour archive takes this batch's colours
    before the chromatic negatives are drawn, so the first step already has dissimilar colours."""
    query, key = batch["query"].to(device), batch["key"].to(device)
    q = embed(networks.encoder, query)
    with torch.no_grad():
        momentum_update(networks.key_encoder, networks.encoder, config.momentum)
        k = embed(networks.key_encoder, key)
    terms: dict[str, Tensor] = {}
    if config.encoder == "airnet":
        terms["degradation"] = info_nce(q["degradation"], k["degradation"], queue=networks.queues["degradation"].read(),
                                        temperature=config.temperature)
    else:
        n, crop = len(query), query.shape[-1]
        memory.archive.push(mean_colours(query))
        clean, has_clean = batch["clean"].to(device), batch["has_clean"].to(device)
        with torch.no_grad():
            chromatic = memory.archive.negatives(query, config.chromatic_negatives)
            degradation = memory.bank.negatives(clean, config.degradation_negatives)
            negatives_chr = embed(networks.key_encoder, chromatic.view(-1, 3, crop, crop))["chromatic"]
            negatives_deg = embed(networks.key_encoder, degradation.view(-1, 3, crop, crop))["degradation"]
        mask = has_clean[:, None].expand(n, config.degradation_negatives)
        terms["chromatic"] = info_nce(q["chromatic"], k["chromatic"], negatives_chr.view(n, -1, q["chromatic"].shape[1]),
                                      networks.queues["chromatic"].read(), temperature=config.temperature)
        terms["degradation"] = info_nce(q["degradation"], k["degradation"],
                                        negatives_deg.view(n, -1, q["degradation"].shape[1]),
                                        networks.queues["degradation"].read(), temperature=config.temperature,
                                        negative_mask=mask)
    total = sum(terms.values())
    positive = torch.stack([(q[s] * k[s]).sum(dim=1).mean() for s in k]).mean()
    return {"total": total, **terms, "positive_cos": positive.detach(), "_keys": k}


def after_step(networks: RepresentationNetworks, config: RainmerConfig, batch: dict, keys: dict[str, Tensor],
               memory: ViewMemory) -> None:
    """The queues take this batch's keys; the bank the rain layers ``O − B`` of the crops with targets."""
    for space, queue in networks.queues.items():
        queue.push(keys[space])
    if config.encoder == "rainmer":
        has_clean = batch["has_clean"]
        if bool(has_clean.any()):
            memory.bank.push((batch["query"] - batch["clean"])[has_clean])


# --------------------------------------------------------------------------- checkpoints


def _read_state(path: Path, config: RainmerConfig) -> dict | None:
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("method") != METHOD:
        raise ValueError(f"{path}: not a Rainmer/AirNet encoder checkpoint (method {state.get('method')!r})")
    check_resumable(_config_from(state["config"]).as_dict(), config.as_dict(), RESUMABLE_CHANGES, path)
    return state


# --------------------------------------------------------------------------- the run


@dataclass
class RainmerResult:
    run_dir: Path
    steps: int
    wall_time_s: float
    log: pd.DataFrame
    resumed_from: int


def train_rainmer(config: RainmerConfig, run_dir: str | Path, *, progress: bool | None = None,
                  on_step: Callable[[int, dict[str, float]], None] | None = None) -> RainmerResult:
    """Train (or resume) the representation run in ``run_dir``; a finished run is read back, not retrained.

    ``on_step(step, values)`` is called after every step; an exception raised there interrupts the run like
    a kill would (tests use it)."""
    run_dir = Path(run_dir)
    with contextlib.ExitStack() as held:
        if claim_run_folder(run_dir, held, RUN_FILES):
            state = _read_state(run_dir / "model.pt", config)
            log = pd.read_csv(run_dir / "log.csv") if (run_dir / "log.csv").exists() else pd.DataFrame()
            return RainmerResult(run_dir, state["step"], state.get("wall_time_s", math.nan), log, state["step"])
        result = _train_locked(config, run_dir, progress=progress, on_step=on_step)
        remove_with_parts(run_dir / "checkpoint.pt")
        return result


def _train_locked(config: RainmerConfig, run_dir: Path, *, progress: bool | None,
                  on_step: Callable[[int, dict[str, float]], None] | None) -> RainmerResult:
    checkpoint_path, log_path, model_path = run_dir / "checkpoint.pt", run_dir / "log.csv", run_dir / "model.pt"
    device = resolve_device(config.device)
    networks = initial_networks(config).to(device)
    networks.key_encoder.load_state_dict(networks.encoder.state_dict())
    optimizer = torch.optim.Adam(networks.encoder.parameters(), lr=config.learning_rate)
    memory = ViewMemory(ColourArchive(config.colour_archive_size), RainLayerBank(config.bank_size, config.seed))
    data = TwoViewCrops(config.data_root, config.domains, config.crop_size, config.seed)
    per_epoch = max(1, len(data) // config.batch_size)

    step, log_rows, sums, wall_before = 0, [], {}, 0.0
    state = _read_state(checkpoint_path, config)
    if state is not None:
        networks.load_state_dict(to_device(state["networks"], device))
        optimizer.load_state_dict(to_device(state["optimizer"], device))
        memory.archive.load_state_dict(state["archive"])
        memory.bank.load_state_dict(state["bank"])
        step, log_rows, sums, wall_before = state["step"], state["log"], state["epoch_sums"], state["wall_time_s"]
        write_log(log_path, log_rows)  # drop rows a killed run wrote after its last checkpoint
    del state
    resumed_from = step
    last_saved = step if resumed_from > 0 else None

    def checkpoint_state() -> dict:
        return {"method": METHOD, "config": config.as_dict(), "step": step, "networks": networks.state_dict(),
                "optimizer": optimizer.state_dict(), "archive": memory.archive.state_dict(),
                "bank": memory.bank.state_dict(), "log": log_rows, "epoch_sums": sums,
                "wall_time_s": wall_before + time.perf_counter() - started}

    stream = distributed.batch_stream(data, config.batch_size, config.seed, step, config.num_workers)
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=config.steps, initial=step, disable=not show, desc=f"{config.encoder} ({run_dir.name})")
    started = time.perf_counter()
    networks.train()
    while step < config.steps:
        batch = next(stream)
        with autocast(device, config.bf16):
            terms = training_step(networks, config, batch, memory, device)
        loss, keys = terms.pop("total"), terms.pop("_keys")
        values = {name: float(value.detach()) for name, value in terms.items()} | {"total": float(loss.detach())}
        if not math.isfinite(values["total"]):
            bar.close()
            raise diverged(run_dir, step, values, checkpoint_path, last_saved)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        after_step(networks, config, batch, keys, memory)
        step += 1
        bar.update(1)
        add_to_epoch(sums, values)
        if step % per_epoch == 0 or step == config.steps:
            log_rows.append({"epoch": math.ceil(step / per_epoch), "step": step, **epoch_means(sums),
                             "wall_time_s": round(wall_before + time.perf_counter() - started, 2)})
            write_log(log_path, log_rows)
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_checkpoint(checkpoint_path, checkpoint_state())
            last_saved = step
        if on_step is not None:
            on_step(step, values)
    bar.close()
    wall = wall_before + time.perf_counter() - started
    if not model_path.exists() or resumed_from < config.steps:
        save_checkpoint(model_path, {"method": METHOD, "config": config.as_dict(), "step": step,
                                     "networks": networks.state_dict(), "wall_time_s": wall})
    return RainmerResult(run_dir, step, wall, pd.DataFrame(log_rows), resumed_from)

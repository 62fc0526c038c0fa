"""Training and inference speed of Semi-DRDNet: derainlib's fast path against a straightforward fp32 one.

What it measures, on the CPU always and on CUDA when present (``--device all``, the default; or
``cpu``, ``cuda``, ``auto``):

- **training steps/s and patches/s** for the supervised step (``L_d + λ_r L_r``, Eq. (10) without
  DualSCRNet) and the semi-supervised step (Eq. (9): a paired batch with ``L_Dual(sup)`` plus an
  unlabeled real batch with ``L_Dual(unsup)``; a semi step counts 2×batch patches), at each
  ``--sizes`` patch×batch (default grid: 100×100 and 64×64, batch 8 and 64). One step is
  forward, loss, backward and an Adam update, i.e. what :func:`derainlib.train.train` does per step.
- **peak memory** of each configuration: ``torch.cuda.max_memory_allocated`` on CUDA; on the CPU
  the peak RSS (``ru_maxrss``) of a fresh process that runs only that configuration, so it includes
  the interpreter, torch and the weights (the ``base MiB`` column is the peak just before the first
  step). With ``--isolate no`` (and ``--quick``) everything runs in this process and the column is
  only the *increase* of this process's peak RSS, a lower bound.
- **inference latency** of one 512×512 image (batch 1), through :func:`derainlib.evaluation.derain`.
- **bf16 accuracy** (with ``--checkpoint model.pt --data ROOT``): mean Y-PSNR of a trained model's
  outputs on up to ``--max-images`` test images in fp32 and in bf16+channels_last, and their
  difference (derainlib's limit: 0.1 dB). Random weights make this check meaningless, so without a
  checkpoint it is skipped.

The two implementations of each training step, on the same network, data and loss:

- ``baseline``: a straightforward fp32 implementation: fp32, contiguous memory, and the contrastive
  loss transcribed directly from Eq. (6)/(8): one VGG-16 forward for the anchor, one for the
  positive and one per negative (:class:`NaiveDualSCRNet`, below). Before timing, the script
  checks on one batch that it computes the same loss and anchor gradient as
  :class:`~derainlib.losses.DualSCRNet` in fp32 (rtol 1e-4).
- ``fast``: derainlib's path: :func:`derainlib.train.training_step` with ``DualSCRNet`` (one no-grad
  VGG pass for the positive and all negatives together, one for the anchor), bf16 autocast and
  channels_last. ``--compile`` also wraps the network and the VGG in ``torch.compile``; the first
  step (``first s`` column, compilation included) is reported apart from the steady state, timed
  after at least 2 warm-up steps. It is off by default: on a 2-core CPU, compiling the full-size
  network took about 2 minutes for a steady-state gain of about 5%. ``--compile-mode reduce-overhead``
  (which implies ``--compile``) also records CUDA graphs on CUDA, for steps bound by kernel launches.

Inputs are seeded random tensors made once, on the device (no disk I/O, no data loader: this is
the step's own speed). DualSCRNet's memory bank is pre-filled with one batch of rain layers per
domain, so every timed semi step uses the full negative set (m = 4). ``--warmup`` steps are left out
of the timing; ``--steps`` steps are timed with ``time.perf_counter`` (after ``torch.cuda.synchronize``
on CUDA). The ``speedup fast/baseline`` lines compare throughputs with derainlib's performance
targets for its fast path: 3× on a CPU, 2× on a GPU.

Run ``python benchmarks/bench_semi_drdnet.py`` for the full-size network (M=64, 16 blocks per
branch) over the whole grid, or choose with ``--nets``, ``--sizes`` and ``--kinds``. Memory bounds
the grid on a 23 GB machine: the fp32 semi step needs roughly 1.8 GB per batch element at 100×100
for the full-size network and 0.3 GB for the study's (extrapolated from small batches), so the
full-size network is measured at batch 8 and the study's network (M=16, 8 blocks) on the grid::

    python benchmarks/bench_semi_drdnet.py --nets 64x16 --sizes 100x8,64x8
    python benchmarks/bench_semi_drdnet.py --nets 16x8

``--quick`` is a seconds-long smoke run (a tiny network; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from derainlib import resolve_device, seed_everything
from derainlib.atomic import atomic_path
from derainlib.evaluation import autocast, derain, evaluate, summarize
from derainlib.losses import (
    DualSCRNet,
    LossWeights,
    RainMemoryBank,
    VGG16Features,
    adain_features,
    augmented_negatives,
    contrastive_ratio,
)
from derainlib.models import build_network, count_parameters
from derainlib.provenance import cpu_capability, cpu_model
from derainlib.train import TrainConfig, training_step

#: derainlib's performance targets: fast-path training throughput over the straightforward fp32 one.
TARGETS = {"cpu": 3.0, "cuda": 2.0}
#: The largest bf16 PSNR change derainlib accepts for its fast path.
BF16_LIMIT_DB = 0.1
KINDS = ("supervised", "semi", "infer")
IMPLS = ("baseline", "fast")
# torch.compile's modes. Under reduce-overhead the 1st call compiles, the 2nd records CUDA graphs and later
# calls replay them, so the timing starts after 3 warm-up steps.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
VARIANT = "Semi-DRDNet"
NUM_NEGATIVES = TrainConfig.num_negatives  # DualSCRNet's defaults, as the study trains them
BANK_CAPACITY = TrainConfig.bank_capacity
INFER_SIZE = 512  # the side of the image whose inference latency is timed
RESULT_TAG = "BENCH-RESULT "


# --------------------------------------------------------------------------- the naive contrastive loss


class NaiveDualSCRNet(nn.Module):
    """DualSCRNet ("dual" setting, AdaIN positive) transcribed directly from Eq. (5)-(8).

    The same quantity as :class:`~derainlib.losses.DualSCRNet`, the straightforward way: a VGG-16
    forward for the anchor, one for the positive and one for *each* negative. Same memory bank and
    seed, so both draw the same negatives. Duck-types DualSCRNet for :func:`training_step`.
    """

    def __init__(self, vgg_weights: str = "hed", num_negatives: int = NUM_NEGATIVES,
                 bank_capacity: int = BANK_CAPACITY, seed: int = 0) -> None:
        super().__init__()
        self.vgg = VGG16Features(vgg_weights)
        self.bank = RainMemoryBank(bank_capacity, seed)
        self.num_negatives = num_negatives

    def supervised(self, derained: Tensor, clean: Tensor, rainy: Tensor) -> Tensor:  # Eq. (6)
        negatives = augmented_negatives(derained, rainy, self.bank, self.num_negatives, real_only=False)
        anchor = self.vgg(derained)
        positive = self.vgg(clean)
        return contrastive_ratio(anchor, positive, [self.vgg(negative) for negative in negatives])

    def unsupervised(self, derained: Tensor, clean_unpaired: Tensor, rainy: Tensor) -> Tensor:  # Eq. (7), (8)
        negatives = augmented_negatives(derained, rainy, self.bank, self.num_negatives, real_only=True)
        anchor = self.vgg(derained)
        positive = adain_features(self.vgg(clean_unpaired), [a.detach() for a in anchor])
        return contrastive_ratio(anchor, positive, [self.vgg(negative) for negative in negatives])

    def remember(self, rain: Tensor, domain: str) -> None:
        self.bank.push(rain.detach(), domain)


def make_dual(impl: str, vgg_weights: str, seed: int) -> nn.Module:
    if impl == "fast":
        return DualSCRNet(vgg_weights=vgg_weights, setting="dual", positive_augmentation="adain",
                          num_negatives=NUM_NEGATIVES, bank_capacity=BANK_CAPACITY, seed=seed)
    return NaiveDualSCRNet(vgg_weights, NUM_NEGATIVES, BANK_CAPACITY, seed)


def random_batch(batch: int, patch: int, device: torch.device, seed: int,
                 memory_format: torch.memory_format = torch.contiguous_format) -> dict[str, Tensor]:
    """Seeded random ``clean``, ``rainy`` (clean plus positive noise), ``real`` and two rain layers."""
    generator = torch.Generator().manual_seed(seed)

    def rand(scale: float = 1.0) -> Tensor:
        return scale * torch.rand(batch, 3, patch, patch, generator=generator)

    clean = rand()
    tensors = {"clean": clean, "rainy": (clean + rand(0.5)).clamp(0, 1), "real": rand(),
               "rain_synthetic": rand(0.5), "rain_real": rand(0.5)}
    return {name: t.to(device, memory_format=memory_format) for name, t in tensors.items()}


def check_naive_matches(device: torch.device, vgg_weights: str, patch: int = 64, batch: int = 2,
                        rtol: float = 1e-4) -> dict[str, float]:
    """Assert that :class:`NaiveDualSCRNet` and DualSCRNet give the same fp32 losses and anchor gradients.

    Both phases, with a bank holding layers of both domains (so the negatives are augmented).
    Returns the losses and the largest relative differences.
    """
    # cuDNN convolutions default to TF32 on CUDA (about 1e-3 relative error): compare in true fp32.
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        return _compare_naive(device, vgg_weights, patch, batch, rtol)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


def _compare_naive(device: torch.device, vgg_weights: str, patch: int, batch: int, rtol: float) -> dict[str, float]:
    data = random_batch(batch, patch, device, seed=1)
    anchors = {"sup": (data["clean"] * 0.7 + 0.1), "unsup": (data["real"] * 0.6 + 0.2)}
    found: dict[str, float] = {}
    for phase, anchor in anchors.items():
        values, grads = [], []
        for impl in IMPLS:
            dual = make_dual(impl, vgg_weights, seed=5).to(device)
            dual.remember(data["rain_synthetic"], "synthetic")
            dual.remember(data["rain_real"], "real")
            x = anchor.clone().requires_grad_(True)
            if phase == "sup":
                loss = dual.supervised(x, data["clean"], data["rainy"])
            else:
                loss = dual.unsupervised(x, data["clean"].roll(1, dims=0), data["real"])
            loss.backward()
            values.append(loss.detach().double().cpu())
            grads.append(x.grad.detach().double().cpu())
        loss_diff = float((values[0] - values[1]).abs() / values[1].abs())
        grad_diff = float((grads[0] - grads[1]).abs().max() / grads[1].abs().max())
        if not (loss_diff <= rtol and grad_diff <= 10 * rtol):
            raise AssertionError(f"the naive contrastive loss differs from DualSCRNet's ({phase}: loss "
                                 f"{float(values[0]):.8g} vs {float(values[1]):.8g}, rel. diff {loss_diff:.2e}; "
                                 f"anchor gradient max rel. diff {grad_diff:.2e})")
        found.update({f"{phase}_naive": float(values[0]), f"{phase}_dualscrnet": float(values[1]),
                      f"{phase}_loss_rel_diff": loss_diff, f"{phase}_grad_rel_diff": grad_diff})
    return found


# --------------------------------------------------------------------------- one configuration


@dataclass(frozen=True)
class Spec:
    """One measured configuration (a row of the table)."""

    device: str
    width: int
    blocks: int
    kind: str  # "supervised", "semi" or "infer"
    patch: int
    batch: int
    impl: str  # "baseline" (fp32, contiguous, naive VGG passes) or "fast" (bf16, channels_last, DualSCRNet)
    steps: int
    warmup: int
    compile: bool = False
    compile_mode: str = "default"  # torch.compile's mode; "reduce-overhead" adds CUDA graphs on CUDA
    threads: int | None = None
    seed: int = 0
    vgg_weights: str = "hed"


def _compile_label(spec: Spec) -> str:
    if not (spec.compile and spec.impl == "fast" and spec.kind != "infer"):
        return ""
    return "+compile" + ("" if spec.compile_mode == "default" else f"({spec.compile_mode})")


def _rss_mib() -> float:
    """This process's peak resident set so far, MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _peak_mib(device: torch.device, rss_offset: float) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return _rss_mib() - rss_offset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _build(spec: Spec, device: torch.device):
    """The closure running one training step (or one inference) of ``spec``, and the model."""
    seed_everything(spec.seed)  # as train() does (deterministic kernels included)
    fast = spec.impl == "fast"
    memory_format = torch.channels_last if fast else torch.contiguous_format
    model = build_network(VARIANT, width=spec.width, num_blocks=spec.blocks).to(device, memory_format=memory_format)
    data = random_batch(spec.batch, spec.patch, device, spec.seed, memory_format)

    if spec.kind == "infer":
        def run() -> None:
            derain(model, data["rainy"], bf16=fast, channels_last=fast)
        return run, model

    semi = spec.kind == "semi"
    config = TrainConfig(train_root="(random tensors)", real_root="(random tensors)" if semi else None,
                         semi_supervised=semi, contrastive="dual" if semi else None,
                         loss_weights=LossWeights(dual=0.5 if semi else 0.0),
                         patch_size=spec.patch, batch_size=spec.batch, seed=spec.seed,
                         device=str(device), bf16=fast, channels_last=fast)
    dual = None
    if semi:
        dual = make_dual(spec.impl, spec.vgg_weights, spec.seed).to(device)
        dual.remember(data["rain_synthetic"], "synthetic")  # a full negative set from the first step on
        dual.remember(data["rain_real"], "real")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    stepped = model
    if spec.compile and fast:
        stepped = torch.compile(model, mode=spec.compile_mode)
        if dual is not None:
            dual.vgg = torch.compile(dual.vgg, mode=spec.compile_mode)
    model.train()
    real = data["real"] if semi else None

    def run() -> None:
        if spec.compile:  # a new iteration: CUDA graphs may reuse the memory of the last step's outputs
            torch.compiler.cudagraph_mark_step_begin()
        with autocast(device, fast):
            terms = training_step(stepped, dual, config, data["rainy"], data["clean"], real)
        loss = terms["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run, model


def measure(spec: Spec, *, isolated: bool = True) -> dict:
    """Build ``spec``, run its warm-up and timed steps; return one table row (as a dict).

    On the CPU the memory columns are this process's peak RSS, or with ``isolated=False`` (other
    configurations ran in this process before) its increase since the start of this call.
    """
    device = resolve_device(spec.device)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    row = {"device": device.type, "net": f"M={spec.width}/{spec.blocks}b", "kind": spec.kind,
           "patch": spec.patch, "batch": spec.batch,
           "impl": spec.impl + _compile_label(spec)}
    rss_offset = 0.0 if isolated else _rss_mib()
    try:
        run, model = _build(spec, device)
        row["params"] = count_parameters(model)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _sync(device)
        row["base MiB"] = _peak_mib(device, rss_offset)
        start = time.perf_counter()
        run()
        _sync(device)
        row["first s"] = time.perf_counter() - start
        for _ in range(spec.warmup - 1):
            run()
        _sync(device)
        start = time.perf_counter()
        for _ in range(spec.steps):
            run()
        _sync(device)
        elapsed = time.perf_counter() - start
        patches_per_step = spec.batch * (2 if spec.kind == "semi" else 1)
        row.update({"s/step": elapsed / spec.steps, "steps/s": spec.steps / elapsed,
                    "patches/s": patches_per_step * spec.steps / elapsed,
                    "peak MiB": _peak_mib(device, rss_offset), "note": ""})
    except torch.OutOfMemoryError as error:
        row["note"] = f"out of memory ({str(error).splitlines()[0][:80]})"
    except Exception as error:  # a compiler failure costs its row, not the rows after it
        if not spec.compile:
            raise
        row["note"] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:100]}"
    finally:
        run = model = None  # free this configuration before the next one runs in this process
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def measure_isolated(spec: Spec) -> dict:
    """:func:`measure` in a fresh Python process, so that its peak RSS is this configuration's own."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(spec))]
    done = subprocess.run(command, capture_output=True, text=True)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    why = f"exit {done.returncode}" + (" (killed: out of memory?)" if done.returncode in (-9, 137) else "")
    sys.stderr.write(done.stderr[-3000:])
    return {"device": spec.device, "net": f"M={spec.width}/{spec.blocks}b", "kind": spec.kind,
            "patch": spec.patch, "batch": spec.batch, "impl": spec.impl, "note": f"worker failed: {why}"}


# --------------------------------------------------------------------------- bf16 accuracy


def bf16_accuracy(checkpoint: str, data_root: str, device: torch.device, max_images: int) -> dict[str, float]:
    """Mean Y-PSNR of a trained model on a paired folder, in fp32 and in bf16+channels_last."""
    from derainlib.data.datasets import PairedImageDataset
    from derainlib.train import load_model

    model, _ = load_model(checkpoint, device)
    dataset = PairedImageDataset(data_root, layout=None)
    fp32 = summarize(evaluate(model, dataset, max_images=max_images))["psnr_y"]
    model = model.to(memory_format=torch.channels_last)
    bf16 = summarize(evaluate(model, dataset, bf16=True, channels_last=True, max_images=max_images))["psnr_y"]
    return {"images": min(len(dataset), max_images), "fp32": fp32, "bf16": bf16, "difference": bf16 - fp32}


# --------------------------------------------------------------------------- the command line


def _pairs(text: str, what: str) -> list[tuple[int, int]]:
    try:
        pairs = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item.strip()]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise argparse.ArgumentTypeError(f"{what}: expected a comma-separated list like 100x8,64x8, got {text!r}")
    return pairs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="all",
                        help="all (the CPU, and CUDA when present; default), cpu, cuda, or auto (CUDA when present)")
    parser.add_argument("--nets", default="64x16", type=lambda t: _pairs(t, "--nets"),
                        help="networks as WIDTHxBLOCKS, comma-separated: 64x16 is the paper's full size, "
                             "16x8 the CPU study's (default 64x16)")
    parser.add_argument("--width", type=int, help="a single network's width M (with --blocks; overrides --nets)")
    parser.add_argument("--blocks", type=int, help="a single network's blocks per branch (with --width)")
    parser.add_argument("--sizes", default="100x8,64x8,100x64,64x64", type=lambda t: _pairs(t, "--sizes"),
                        help="training PATCHxBATCH combinations (default: 100x8,64x8,100x64,64x64)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="what to measure: supervised, semi, infer (comma-separated; default all)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (inference: timed runs) per configuration")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed steps first (at least 1; 2 with --compile, 3 with reduce-overhead)")
    parser.add_argument("--infer-size", type=int, default=INFER_SIZE, help="side of the inference image (default 512)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network and the VGG (fast path)")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES, default="default",
                        help="torch.compile's mode (implies --compile); reduce-overhead records CUDA graphs, "
                             "for launch-bound steps on a GPU")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--vgg-weights", default="hed", help="DualSCRNet's VGG-16 weights (hed, imagenet, random)")
    parser.add_argument("--isolate", choices=("auto", "yes", "no"), default="auto",
                        help="run each configuration in its own process (auto: on the CPU, for its peak RSS)")
    parser.add_argument("--checkpoint", help="a trained model.pt, for the bf16 accuracy check")
    parser.add_argument("--data", help="a paired test folder for the accuracy check "
                                       "(e.g. build/benchmark/cpu/Rain200H/test)")
    parser.add_argument("--max-images", type=int, default=20, help="images scored by the accuracy check")
    parser.add_argument("--csv", help="also write the table to this CSV file")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: width 8, 1 block, patch 32, batch 2, 1 step, 64x64 inference, in this process")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.nets, args.sizes, args.steps, args.warmup, args.infer_size = [(8, 1)], [(32, 2)], 1, 1, 64
        if args.isolate == "auto":
            args.isolate = "no"
    if (args.width is None) != (args.blocks is None):
        parser.error("--width and --blocks go together")
    if args.width is not None:
        args.nets = [(args.width, args.blocks)]
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not args.kinds or set(args.kinds) - set(KINDS):
        parser.error(f"--kinds: choose among {', '.join(KINDS)}")
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be at least 1")
    if min(p for p, _ in args.sizes) < 32:
        parser.error("--sizes: DualSCRNet's VGG needs patches of at least 32 pixels")
    args.compile = args.compile or args.compile_mode != "default"
    if args.compile:  # keep compilation (and CUDA graph recording, see COMPILE_MODES) out of the timing
        args.warmup = max(args.warmup, 3 if args.compile_mode == "reduce-overhead" else 2)
    if (args.checkpoint is None) != (args.data is None):
        parser.error("--checkpoint and --data go together")
    return args


def specs_of(args: argparse.Namespace, devices: list[torch.device]) -> list[Spec]:
    specs = []
    for device in devices:
        common = dict(device=str(device), steps=args.steps, warmup=args.warmup, threads=args.threads,
                      vgg_weights=args.vgg_weights)
        for width, blocks in args.nets:
            for patch, batch in args.sizes:
                for kind in ("supervised", "semi"):
                    if kind in args.kinds:
                        specs += [Spec(width=width, blocks=blocks, kind=kind, patch=patch, batch=batch, impl=impl,
                                       compile=args.compile and impl == "fast",
                                       compile_mode=args.compile_mode, **common) for impl in IMPLS]
            if "infer" in args.kinds:
                specs += [Spec(width=width, blocks=blocks, kind="infer", patch=args.infer_size, batch=1,
                               impl=impl, **common) for impl in IMPLS]
    return specs


def devices_of(name: str) -> list[torch.device]:
    """``all``: the CPU, and CUDA when present; otherwise what :func:`resolve_device` makes of ``name``."""
    if name == "all":
        return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    return [resolve_device(name)]


def speedup_lines(table: pd.DataFrame) -> list[str]:
    lines = []
    keys = ["device", "net", "kind", "patch", "batch"]
    for key, group in table.groupby(keys, sort=False):
        device, net, kind, patch, batch = key
        rates = {impl.split("+")[0]: rate for impl, rate in zip(group["impl"], group.get("patches/s", []))}
        what = f"{device} {net} {kind} {patch}x{patch} batch {batch}"
        if not all(isinstance(rates.get(i), float) and math.isfinite(rates[i]) for i in IMPLS):
            lines.append(f"{what:<44} speedup fast/baseline: n/a (a configuration did not finish)")
            continue
        ratio = rates["fast"] / rates["baseline"]
        if kind == "infer":
            verdict = "inference: no target"
        else:
            target = TARGETS.get(device, TARGETS["cpu"])
            verdict = f"target {target:g}× on {device}: {'met' if ratio >= target else 'NOT met'}"
        lines.append(f"{what:<44} speedup fast/baseline: {ratio:.2f}× ({verdict})")
    return lines


def machine_line(devices: list[torch.device]) -> str:
    line = (f"machine: {platform.node()} · {cpu_model()} ({cpu_capability()}) · "
            f"{torch.get_num_threads()} torch thread(s), {os.cpu_count()} CPUs · torch {torch.__version__}")
    for device in devices:
        if device.type == "cuda":
            line += f" · {torch.cuda.get_device_name(device)}"
    return line


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    # main() may be called from a test: leave the process's thread count and determinism as they were.
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if args.worker:  # one configuration, in a fresh process (see measure_isolated)
            print(RESULT_TAG + json.dumps(measure(Spec(**json.loads(args.worker)))), flush=True)
            return pd.DataFrame()
        if args.threads:
            torch.set_num_threads(args.threads)
        return _run(args)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _run(args: argparse.Namespace) -> pd.DataFrame:
    devices = devices_of(args.device)
    print(machine_line(devices))
    print("baseline = fp32, contiguous, one VGG-16 pass per anchor/positive/negative; "
          f"fast = bf16 autocast, channels_last, DualSCRNet"
          f"{f', torch.compile (mode {args.compile_mode})' if args.compile else ''}; "
          f"random input tensors (no I/O); {args.warmup} warm-up step(s), {args.steps} timed")

    if "semi" in args.kinds:
        for device in devices:
            check = check_naive_matches(device, args.vgg_weights, patch=32 if args.quick else 64)
            print(f"check ({device.type}): naive contrastive loss = DualSCRNet's in fp32 (rtol 1e-4): "
                  f"sup {check['sup_naive']:.6f} vs {check['sup_dualscrnet']:.6f}, "
                  f"unsup {check['unsup_naive']:.6f} vs {check['unsup_dualscrnet']:.6f}; "
                  f"anchor-gradient max rel. diff {max(check['sup_grad_rel_diff'], check['unsup_grad_rel_diff']):.1e}")

    rows, isolated = [], set()
    for spec in specs_of(args, devices):
        isolate = args.isolate == "yes" or (args.isolate == "auto" and spec.device == "cpu")
        row = measure_isolated(spec) if isolate else measure(spec, isolated=False)
        if isolate:
            isolated.add(spec.device)
        rows.append(row)
        done = row.get("s/step") is not None and not pd.isna(row.get("s/step"))
        print(f"  measured {spec.device} {row['net']} {spec.kind} {spec.patch}x{spec.patch} b{spec.batch} "
              f"{row['impl']}: " + (f"{row['s/step']:.3f} s/step" if done else row.get("note", "failed")), flush=True)
    table = pd.DataFrame(rows)
    columns = ["device", "net", "kind", "patch", "batch", "impl", "first s", "s/step", "steps/s", "patches/s",
               "base MiB", "peak MiB", "note"]
    table = table.reindex(columns=columns + ["params"])
    print()
    print(table.drop(columns=["params"]).to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-"))
    print("s/step of an infer row is the latency of one image, patches/s its images/s; a semi step counts "
          "2×batch patches. first s: the first warm-up step.")
    for device in devices:
        memory = ("torch.cuda.max_memory_allocated (base: after building, before the first step)"
                  if device.type == "cuda" else
                  "peak RSS of a process running only that row, interpreter, torch and weights included "
                  "(base: before the first step)" if device.type in isolated else
                  "increase of this process's peak RSS during the row, a lower bound")
        print(f"peak MiB on {device.type}: {memory}")
    sizes = table.dropna(subset=["params"]).drop_duplicates("net")
    print("parameters: " + ", ".join(f"{net} {int(n):,}" for net, n in zip(sizes["net"], sizes["params"])))
    print()
    for line in speedup_lines(table):
        print(line)

    print()
    for device in devices:
        if not args.checkpoint:
            print("bf16 accuracy: skipped (pass --checkpoint model.pt --data ROOT: the 0.1 dB check "
                  "needs trained weights; random weights say nothing)")
            break
        found = bf16_accuracy(args.checkpoint, args.data, device, args.max_images)
        verdict = "met" if abs(found["difference"]) <= BF16_LIMIT_DB else "NOT met"
        print(f"bf16 accuracy on {device.type} ({found['images']} images of {args.data}, {args.checkpoint}): "
              f"Y-PSNR fp32 {found['fp32']:.3f} dB, bf16+channels_last {found['bf16']:.3f} dB, "
              f"difference {found['difference']:+.3f} dB (limit {BF16_LIMIT_DB} dB: {verdict})")
    if args.csv:
        with atomic_path(args.csv) as tmp:
            table.to_csv(tmp, index=False)
        print(f"table written to {args.csv}")
    return table


if __name__ == "__main__":
    main()

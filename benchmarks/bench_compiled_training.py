"""Eager against compiled training, in derainlib's own loop: :func:`derainlib.train.train` with and without
``TrainConfig.compile_mode``.

``bench_semi_drdnet.py`` times one training step in isolation; this script checks that the speed-up of
``torch.compile`` (on a GPU, ``mode="reduce-overhead"``, i.e. CUDA graphs) survives the real loop: data
loading, the two phases of a semi-supervised step, the memory bank, logging and checkpoints. It trains the
same semi-supervised Semi-DRDNet run (Eq. (9), DualSCRNet ``dual``) twice on the ``ci`` embedded benchmark,
eagerly and compiled, with bf16 autocast and channels_last, and prints for each:

- ``first s``: the first step (compilation, and CUDA graph recording, included);
- ``s/step``: the median of the steps after the first ``--warmup``, from :func:`train`'s ``on_step``
  callback (each step ends with ``float(loss)``, which waits for the device);
- the last step's total loss and the mean training Y-PSNR of the last logged epoch, so that a compiled
  run that computes something else shows up.

    python benchmarks/bench_compiled_training.py                      # CUDA when present
    python benchmarks/bench_compiled_training.py --device cpu --steps 6 --mode default --width 8 --blocks 1

Random VGG weights by default: the check is about speed and agreement, and it then needs no weights cache.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from derainlib import resolve_device
from derainlib.data.benchmark import layout_of, split_root
from derainlib.experiments.semi_drdnet import benchmark_root
from derainlib.losses import LossWeights
from derainlib.train import COMPILE_MODES, TrainConfig, train


def timed_run(config: TrainConfig, run_dir: Path, warmup: int) -> dict:
    """Train ``config`` in ``run_dir``; its timings and final figures as one table row."""
    stamps, losses = [time.perf_counter()], []

    def on_step(step: int, values: dict[str, float]) -> None:
        stamps.append(time.perf_counter())
        losses.append(values["total"])

    result = train(config, run_dir, progress=False, on_step=on_step)
    durations = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"compile_mode": config.compile_mode or "eager", "first s": durations[0],
            "s/step": statistics.median(durations[warmup:]), "last loss": losses[-1],
            "train Y-PSNR": float(result.log["train_psnr_y"].iloc[-1])}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (CUDA when present)")
    parser.add_argument("--mode", choices=COMPILE_MODES, default="reduce-overhead", help="torch.compile's mode")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of s/step (compiling, recording)")
    parser.add_argument("--vgg-weights", default="random")
    args = parser.parse_args(argv)
    if not 0 < args.warmup < args.steps:
        parser.error("--warmup must be at least 1 and below --steps")

    device = resolve_device(args.device)
    data = benchmark_root("ci")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for mode in (None, args.mode):
            config = TrainConfig(
                width=args.width, num_blocks=args.blocks,
                train_root=str(split_root(data, "rain200h", "train")), train_layout=layout_of("rain200h"),
                real_root=str(split_root(data, "realproxy", "train") / "input"),
                patch_size=args.patch, batch_size=args.batch, steps=args.steps, semi_supervised=True,
                contrastive="dual", vgg_weights=args.vgg_weights, loss_weights=LossWeights(dual=0.5),
                device=str(device), bf16=True, channels_last=True, compile_mode=mode,
                checkpoint_every=args.steps)
            rows.append(timed_run(config, Path(scratch) / (mode or "eager"), args.warmup))
    table = pd.DataFrame(rows)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"derainlib.train.train, semi-supervised Semi-DRDNet M={args.width}/{args.blocks} blocks, "
          f"{args.patch}x{args.patch} batch {args.batch}, {args.steps} steps, bf16 + channels_last, "
          f"VGG {args.vgg_weights}, on {device.type} ({name}), torch {torch.__version__}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    eager, compiled = table.iloc[0], table.iloc[1]
    print(f"speed-up compiled/eager (s/step): {eager['s/step'] / compiled['s/step']:.2f}x; "
          f"last loss {eager['last loss']:.4f} vs {compiled['last loss']:.4f}")
    return table


if __name__ == "__main__":
    main()

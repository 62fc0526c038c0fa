"""Training steps per second with 1, 2, ... processes (DistributedDataParallel), and the scaling efficiency.

    python benchmarks/bench_ddp.py                      # CPU: 1 and 2 processes (gloo)
    python benchmarks/bench_ddp.py --device cuda        # every power of two up to the GPU count (NCCL)

Each configuration trains the same run with :func:`derainlib.train.train` (data loading, DDP's gradient
all-reduce, the logged losses' all-reduce, rank 0's checkpoint) on a folder of random images, in
processes started the way ``torchrun`` starts them. The global batch stays ``--batch`` (split over the
processes, as in a real run), so the ideal is N times the steps per second of one process; the
efficiency is the measured speedup over N. The first ``--warmup`` steps are not timed. On a CPU the
processes share its cores (each gets cores / N threads): there, expect little or no gain.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from derainlib import distributed  # noqa: E402
from derainlib.data.imageio import write_image  # noqa: E402
from derainlib.train import TrainConfig, train  # noqa: E402


def make_data(root: Path, count: int, size: int) -> Path:
    """``count`` random image pairs (input/ <-> target/): only the timing matters."""
    rng = np.random.default_rng(0)
    for i in range(1, count + 1):
        for folder in ("input", "target"):
            write_image(root / folder / f"{i}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, size: int, port: int, config: dict, run_dir: str, threads: int, warmup: int,
            out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size), LOCAL_WORLD_SIZE=str(size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    distributed.ensure_process_group()
    times: dict[int, float] = {}
    train(TrainConfig(**config), run_dir, progress=False, on_step=lambda step, _: times.__setitem__(step, time.perf_counter()))
    if rank == 0:
        last = max(times)
        Path(out).write_text(f"{(last - warmup) / (times[last] - times[warmup])}")
    distributed.end_spawned_rank()


def steps_per_second(config: TrainConfig, processes: int, threads: int, warmup: int, work: Path) -> float:
    """Timed steps per second of ``config`` trained by ``processes`` processes (fresh run folder)."""
    run_dir, out = work / f"run-{processes}", work / f"steps-{processes}.txt"
    if processes == 1:  # one process: no process group at all, as a user's plain run
        times: dict[int, float] = {}
        torch.set_num_threads(threads)
        train(config, run_dir, progress=False, on_step=lambda step, _: times.__setitem__(step, time.perf_counter()))
        last = max(times)
        return (last - warmup) / (times[last] - times[warmup])
    mp.spawn(_worker, args=(processes, _free_port(), config.as_dict(), str(run_dir), threads, warmup, str(out)),
             nprocs=processes, join=True)
    return float(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--processes", default=None,
                        help="comma-separated process counts (default: 1,2 on cpu; 1,2,4,... up to the GPU count)")
    parser.add_argument("--variant", default="Semi-DRDNet")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8, help="global batch (split over the processes)")
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--sync-batchnorm", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: CPU cores / processes)")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")

    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if args.processes:
        counts = [int(n) for n in args.processes.split(",")]
    elif args.device == "cuda":
        counts = [n for n in (1, 2, 4, 8, 16) if n <= gpus]
    else:
        counts = [1, 2]
    if args.device == "cuda" and (not gpus or max(counts) > gpus):
        parser.error(f"{max(counts)} processes on cuda need as many GPUs; torch sees {gpus}")
    load = ", load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    print(f"machine: {cores} CPU cores{load}, {gpus} GPU(s)"
          + (f" ({torch.cuda.get_device_name(0)})" if gpus else "") + f"; torch {torch.__version__}")
    print("a busy CPU (load above its core count) slows multi-threaded processes most: compare runs made at the "
          "same load, or fix --threads")
    if args.device == "cpu":
        print(f"on the CPU the processes share its {cores} cores (each gets {cores} / N threads unless --threads): expect little "
              "or no gain from more processes; several GPUs (or machines) are what DDP is for")
    elif gpus < 2:
        print("one GPU: the scaling efficiency needs several; only 1 process is measured")

    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as folder:
        work = Path(folder)
        data = make_data(work / "data", count=args.batch * 4, size=args.patch)
        config = TrainConfig(variant=args.variant, width=args.width, num_blocks=args.blocks, train_root=str(data),
                             train_layout="rain13k", patch_size=args.patch, batch_size=args.batch,
                             steps=args.steps, checkpoint_every=args.steps, device=args.device,
                             sync_batchnorm=args.sync_batchnorm)
        print(f"run: {args.variant} M={args.width} D={args.blocks}, {args.patch}x{args.patch} crops, global batch "
              f"{args.batch}, {args.steps - args.warmup} timed steps after {args.warmup}, device {args.device}"
              + (", sync batch norm" if args.sync_batchnorm else ""))
        print(f"{'processes':>9} {'threads':>7} {'batch/process':>13} {'steps/s':>8} {'images/s':>9} {'speedup':>8} "
              f"{'efficiency':>10}")
        base = None
        for n in counts:
            # The processes share the CPU's cores (for data loading, on GPUs).
            threads = args.threads or max(1, cores // n)
            rate = steps_per_second(config, n, threads, args.warmup, work)
            base = rate if base is None else base
            speedup = rate / base
            print(f"{n:>9} {threads:>7} {args.batch // n:>13} {rate:>8.3f} {rate * args.batch:>9.1f} {speedup:>7.2f}x "
                  f"{speedup / n:>9.0%}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

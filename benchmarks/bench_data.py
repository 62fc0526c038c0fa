"""Data throughput on this machine: the rain renderer per domain, and the loaders with 2 workers.

Prints images per second of ``derainlib.data.render`` at 256×256 and 512×512 (``--sizes``) for every
domain (DDN cycles through its 14 rain types) and every renderer version asked for (``--versions``,
default both: 1, the first renderer, and 2, the photometric one), in one process, and crops per second of a
``PairedImageDataset`` over the built benchmark's Rain200H train split through a DataLoader with
2 workers (``--workers``). Run with ``make bench`` or ``python benchmarks/bench_data.py [--profile cpu]``;
``--root`` reads a benchmark built elsewhere (otherwise the profile's own is built if needed).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from derainlib.data import DOMAINS, build_benchmark, render
from derainlib.data.benchmark import open_split
from derainlib.data.photos import load_manifest, load_photo
from derainlib.provenance import cpu_capability, cpu_model


def square_photo(size: int) -> np.ndarray:
    """A real photo, centre-cropped and resized to size×size (tiled if the photo is smaller)."""
    photo = load_photo(load_manifest()["file"].iloc[0])
    side = min(photo.shape[:2])
    top, left = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
    tensor = torch.from_numpy(photo[top:top + side, left:left + side]).permute(2, 0, 1)[None].float()
    resized = torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True)
    return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def renderer_throughput(size: int, seconds: float, version: int) -> dict[str, float]:
    clean = square_photo(size)
    rates = {}
    for domain in DOMAINS:
        count, start = 0, time.perf_counter()
        while count < 3 or time.perf_counter() - start < seconds:
            render(clean, domain, seed=count, ddn_type=count % 14 + 1 if domain == "ddn" else None, version=version)
            count += 1
        rates[domain] = count / (time.perf_counter() - start)
    return rates


def loader_throughput(root: Path, crop: int, workers: int, batches: int) -> float:
    """Crops per second of Rain200H's train split under ``root`` through a DataLoader (batch 8)."""
    dataset = open_split(root, "rain200h", "train", crop=crop, augment=True)
    loader = DataLoader(dataset, batch_size=8, shuffle=True, num_workers=workers)
    seen, start, epoch = 0, None, 0
    while seen < batches * 8:
        dataset.set_epoch(epoch)
        for batch in loader:
            if start is None:  # the first batch pays for worker start-up: leave it out
                start = time.perf_counter()
                continue
            seen += batch["rainy"].shape[0]
            if seen >= batches * 8:
                break
        epoch += 1
    return seen / (time.perf_counter() - start)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci", help="whose benchmark build the loader reads (default ci)")
    parser.add_argument("--root", type=Path, help="a built benchmark to read instead of the profile's own")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per domain and size (at least 3 images)")
    parser.add_argument("--sizes", default="256,512", help="square image sides for the renderer, comma-separated")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batches", type=int, default=100, help="timed loader batches of 8 crops")
    parser.add_argument("--versions", default="1,2", help="renderer versions to time, comma-separated")
    parser.add_argument("--no-loader", action="store_true", help="skip the loader test (it builds a benchmark)")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--sizes: expected comma-separated integers like 256,512, got {args.sizes!r}")
    try:
        args.versions = [int(v) for v in args.versions.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--versions: expected comma-separated integers like 1,2, got {args.versions!r}")
    if not args.sizes or min(args.sizes) < 16:
        parser.error("--sizes: the renderer needs images of at least 16 pixels")
    if args.seconds < 0 or args.workers < 0 or args.batches < 1:
        parser.error("--seconds and --workers must be at least 0, --batches at least 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Print the tables; return ``{"renderer": {(size, version): {domain: images/s}}, "loader": crops/s or None}``."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the renderer is NumPy/SciPy; keep torch from competing in the loader test
    try:
        print(f"machine: {platform.node()} · {cpu_model()} ({cpu_capability()}) · "
              f"{torch.get_num_threads()} torch thread(s), {os.cpu_count()} CPUs · torch {torch.__version__}")
        print("\nrenderer, images/s (one process)")
        columns = [(size, version) for size in args.sizes for version in args.versions]
        table = {(size, version): renderer_throughput(size, args.seconds, version) for size, version in columns}
        print(f"{'domain':<16}" + "".join(f"{f'{size}x{size}/v{version}':>13}" for size, version in columns))
        for domain in DOMAINS:
            print(f"{domain:<16}" + "".join(f"{table[column][domain]:>13.1f}" for column in columns))
        if args.no_loader:
            return {"renderer": table, "loader": None}
        root = args.root if args.root is not None else build_benchmark(profile=args.profile, progress=True)
        crops = loader_throughput(root, 64, args.workers, args.batches)
        print(f"\nloader, crops/s (Rain200H train, {root}, 64x64 crops, batch 8, {args.workers} workers): {crops:.0f}")
        return {"renderer": table, "loader": crops}
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()

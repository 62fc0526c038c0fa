"""Data throughput on this machine: the rain renderer per domain, and the loaders with 2 workers.

Prints images per second of ``derainlib.data.synthetic.render`` at 256×256 and 512×512 for every
domain (DDN cycles through its 14 rain types) and every renderer version asked for (``--versions``,
default both: 1, the first renderer, and 2, the photometric one), in one process, and crops per second of a
``PairedImageDataset`` over the built benchmark's Rain200H train split through a DataLoader with
2 workers. Run with ``make bench`` or ``python benchmarks/bench_data.py [--profile cpu]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from derainlib.data import DOMAINS, build_benchmark, render
from derainlib.data.benchmark import open_split
from derainlib.data.photos import load_manifest, load_photo
from derainlib.provenance import cpu_model


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


def loader_throughput(profile: str, crop: int, workers: int, batches: int) -> float:
    dataset = open_split(build_benchmark(profile=profile, progress=True), "rain200h", "train", crop=crop, augment=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci", help="whose benchmark build the loader reads")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per domain and size")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--versions", default="1,2", help="renderer versions to time, comma-separated")
    parser.add_argument("--no-loader", action="store_true", help="skip the loader test (it builds a benchmark)")
    args = parser.parse_args()
    versions = [int(v) for v in args.versions.split(",")]
    torch.set_num_threads(1)  # the renderer is NumPy/SciPy; keep torch from competing in the loader test
    print(f"machine: {platform.node()} · {cpu_model()} · "
          f"{torch.get_num_threads()} torch thread(s), {__import__('os').cpu_count()} CPUs · torch {torch.__version__}")
    print("\nrenderer, images/s (one process)")
    columns = [(size, v) for size in (256, 512) for v in versions]
    table = {(size, v): renderer_throughput(size, args.seconds, v) for size, v in columns}
    print(f"{'domain':<16}" + "".join(f"{f'{s}² v{v}':>11}" for s, v in columns))
    for domain in DOMAINS:
        print(f"{domain:<16}" + "".join(f"{table[c][domain]:>11.1f}" for c in columns))
    if args.no_loader:
        return
    print(f"\nloader, crops/s (Rain200H train, {args.profile} build, 64x64 crops, batch 8, {args.workers} workers): "
          f"{loader_throughput(args.profile, 64, args.workers, batches=100):.0f}")


if __name__ == "__main__":
    main()

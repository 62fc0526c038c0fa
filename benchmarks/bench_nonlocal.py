"""Speed of ANLCL's non-local block matching (Eq. (9)): derainlib's vectorised search against a looped
reference and a straightforward ``unfold`` + ``topk`` version, on the same inputs.

The three implementations compute the same thing: for every anchor patch, the squared L2 distance
(Eq. (9)) to every candidate patch of its 40×40 search window (16×16 patches, stride 1, the window
shifted inside the image at borders), then the top-k nearest or farthest.

- ``looped``: Python loops over images, anchors and candidate positions, one small tensor op per
  candidate, then a sort (the definition, written out; the public NLCL code is built this way).
- ``unfold``: ``F.unfold`` of every patch of the image, a gather of each anchor's window candidates,
  ``((q - p)^2).sum`` and ``torch.topk`` (anchors in chunks, so the gathered candidates stay near
  64 MB; unchunked, the 256-anchor configuration needs 0.5 GB per image).
- ``fast``: :func:`derainlib.nonlocal_sampling.block_match` (only the window's candidates, a batched
  correlation, box sums of the squared image, a stable sort for the tie rule).

Before timing, the script checks on integer-valued images (exact arithmetic) that ``fast`` returns the
looped reference's indices, tie rule included. Timing: each implementation is called repeatedly for at
least ``--seconds`` (at least once) after one warm-up call, on seeded random images of 8-bit levels.
The configurations (``--configs``) are ANLCL's uses: ``layer-pos`` (one anchor per image, N_B = 8
nearest), ``layer-neg`` (one anchor, N_R nearest), ``location`` (N anchors per image, N farthest:
reverse non-local negatives), at the ``cpu`` profile's sizes (batch 4, 128×128 crops, N = N_R = 128),
and ``paper-location`` (one 256×256 image, N = 256 farthest). ``--threads`` defaults to 2.

Targets: ``fast`` at least 100× the looped version, and faster than ``unfold``. ``--quick`` is a
seconds-long smoke run (tiny inputs; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from derainlib.atomic import atomic_path
from derainlib.nonlocal_sampling import block_match, random_anchors, window_origin
from derainlib.provenance import cpu_capability, cpu_model

TARGET_VS_LOOPED = 100.0
PATCH, WINDOW = 16, 40


@dataclass(frozen=True)
class Config:
    name: str
    batch: int
    size: int
    anchors: int
    k: int
    farthest: bool


CONFIGS = {
    "layer-pos": Config("layer-pos", 4, 128, 1, 8, False),
    "layer-neg": Config("layer-neg", 4, 128, 1, 128, False),
    "location": Config("location", 4, 128, 128, 128, True),
    "paper-location": Config("paper-location", 1, 256, 256, 256, True),
}
QUICK = {
    "layer-pos": Config("layer-pos", 2, 48, 1, 8, False),
    "location": Config("location", 1, 48, 6, 32, True),
}


# --------------------------------------------------------------------------- the two comparators


def looped_block_match(images: Tensor, anchors: Tensor, k: int, farthest: bool = False) -> Tensor:
    """Eq. (9) by the definition: loops over images, anchors and candidates; ties in raster order."""
    n, _, h, w = images.shape
    out = torch.empty(n, anchors.shape[1], k, 2, dtype=torch.int64)
    for b in range(n):
        for a, (ay, ax) in enumerate(anchors[b].tolist()):
            wh, ww = min(WINDOW, h), min(WINDOW, w)
            oy = min(max(ay - (WINDOW - PATCH) // 2, 0), h - wh)
            ox = min(max(ax - (WINDOW - PATCH) // 2, 0), w - ww)
            anchor = images[b, :, ay:ay + PATCH, ax:ax + PATCH]
            found = []
            for y in range(oy, oy + wh - PATCH + 1):
                for x in range(ox, ox + ww - PATCH + 1):
                    d = float((anchor - images[b, :, y:y + PATCH, x:x + PATCH]).square().sum())
                    found.append((-d if farthest else d, len(found), y, x))
            found.sort()
            out[b, a] = torch.tensor([(y, x) for _, _, y, x in found[:k]])
    return out


def unfold_block_match(images: Tensor, anchors: Tensor, k: int, farthest: bool = False,
                       chunk_bytes: int = 64 * 2**20) -> Tensor:
    """Straightforward: unfold every patch, gather each anchor's candidates, sum of squares, topk."""
    n, c, h, w = images.shape
    cols_all = w - PATCH + 1
    patches = F.unfold(images, PATCH).transpose(1, 2)  # N×L×(C·P·P)
    origins, wh, ww = window_origin(anchors, (h, w), PATCH, WINDOW)
    dy = torch.arange(wh - PATCH + 1)
    dx = torch.arange(ww - PATCH + 1)
    cand_y = origins[..., 0, None, None] + dy[:, None]
    cand_x = origins[..., 1, None, None] + dx[None, :]
    flat = (cand_y * cols_all + cand_x).reshape(n, anchors.shape[1], -1)  # N×A×K
    anchor_flat = anchors[..., 0] * cols_all + anchors[..., 1]
    per_anchor = flat.shape[-1] * patches.shape[-1] * 4
    step = max(1, chunk_bytes // per_anchor)
    out = []
    for start in range(0, anchors.shape[1], step):
        idx = flat[:, start:start + step]
        cand = torch.stack([patches[b][idx[b]] for b in range(n)])  # N×a×K×CPP
        anchor = torch.stack([patches[b][anchor_flat[b, start:start + step]] for b in range(n)])
        dist = (cand - anchor[:, :, None]).square().sum(-1)
        order = dist.topk(k, dim=-1, largest=farthest).indices
        chosen = idx.gather(-1, order)
        out.append(torch.stack([chosen // cols_all, chosen % cols_all], dim=-1))
    return torch.cat(out, dim=1)


def fast_block_match(images: Tensor, anchors: Tensor, k: int, farthest: bool = False) -> Tensor:
    return block_match(images, anchors, k, patch_size=PATCH, window=WINDOW, farthest=farthest).positions


IMPLS = {"looped": looped_block_match, "unfold": unfold_block_match, "fast": fast_block_match}


# --------------------------------------------------------------------------- measuring


def inputs(config: Config, seed: int = 0, integer: bool = False) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, 16 if integer else 256, (config.batch, 3, config.size, config.size), generator=generator)
    images = levels.float() if integer else levels.float() / 255
    anchors = random_anchors(config.batch, config.anchors, (config.size, config.size), PATCH, generator=generator)
    return images, anchors


def calls_per_second(fn, images: Tensor, anchors: Tensor, k: int, farthest: bool, seconds: float) -> float:
    fn(images, anchors, k, farthest)  # warm-up
    calls, start = 0, time.perf_counter()
    while True:
        fn(images, anchors, k, farthest)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def check(config: Config) -> None:
    """fast and unfold against the looped reference on integer-valued images (exact sums: ties are exact)."""
    images, anchors = inputs(config, seed=1, integer=True)
    anchors[0, 0] = torch.tensor([0, 0])  # a corner: the window is shifted inside the image
    reference = looped_block_match(images, anchors, config.k, config.farthest)
    if not torch.equal(fast_block_match(images, anchors, config.k, config.farthest), reference):
        raise AssertionError(f"{config.name}: fast block matching differs from the looped reference")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing per implementation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny inputs, one call each: a smoke run")
    parser.add_argument("--csv", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    table = QUICK if args.quick else CONFIGS
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    if args.quick and args.configs == parser.get_default("configs"):
        names = list(QUICK)
    unknown = [name for name in names if name not in table]
    if unknown:
        parser.error(f"unknown configs {unknown}; valid: {', '.join(table)}")
    args.config_list = [table[name] for name in names]
    if args.quick:
        args.seconds = 0.0
    return args


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Print the table and the ratios; return the table (one row per configuration and implementation)."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        print(f"machine: {platform.node()} · {cpu_model()} ({cpu_capability()}) · "
              f"{torch.get_num_threads()} torch thread(s), {os.cpu_count()} CPUs · torch {torch.__version__}")
        rows = []
        for config in args.config_list:
            check(config)
            print(f"check ({config.name}): fast = looped reference on integer images, tie rule included")
            images, anchors = inputs(config)
            rate = {name: calls_per_second(fn, images, anchors, config.k, config.farthest, args.seconds)
                    for name, fn in IMPLS.items()}
            for name, value in rate.items():
                rows.append({"config": config.name, "impl": name, "batch": config.batch, "size": config.size,
                             "anchors": config.anchors, "k": config.k, "farthest": config.farthest,
                             "calls/s": value, "anchors/s": value * config.batch * config.anchors})
            vs_looped = rate["fast"] / rate["looped"]
            vs_unfold = rate["fast"] / rate["unfold"]
            print(f"{config.name} (batch {config.batch}, {config.size}², {config.anchors} anchor(s)/image, "
                  f"top-{config.k} {'farthest' if config.farthest else 'nearest'}): "
                  + ", ".join(f"{name} {value:.3g} calls/s" for name, value in rate.items())
                  + f" · fast/looped {vs_looped:.0f}× (target ≥{TARGET_VS_LOOPED:.0f}×: "
                  + f"{'met' if vs_looped >= TARGET_VS_LOOPED else 'not met'}) · fast/unfold {vs_unfold:.1f}× "
                  + f"(target >1×: {'met' if vs_unfold > 1 else 'not met'})")
        table = pd.DataFrame(rows)
        print()
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        if args.csv is not None:
            with atomic_path(args.csv) as tmp:
                table.to_csv(tmp, index=False)
        return table
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()

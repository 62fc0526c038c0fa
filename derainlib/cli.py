"""``derain INPUT_DIR OUTPUT_DIR --checkpoint PATH``: derain a folder of images with a trained model.

Every image in ``INPUT_DIR`` (searched recursively) is derained whole and written as PNG under
``OUTPUT_DIR`` at the same relative path. An image that cannot be read is reported by name and
skipped; the others are still written, and the command exits with status 1 if any failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from . import resolve_device
from .data.datasets import list_images
from .data.errors import DatasetError
from .data.imageio import read_image, write_image
from .evaluation import derain
from .metrics import to_uint8
from .train import load_model


def derain_folder(input_dir: str | Path, output_dir: str | Path, checkpoint: str | Path, *,
                  device: str = "auto", bf16: bool = False, progress: bool | None = None) -> tuple[list[Path], list[str]]:
    """Derain every image under ``input_dir`` into ``output_dir``; return (written paths, error messages)."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise DatasetError(f"{input_dir}: not a folder")
    images = list_images(input_dir, recursive=True)
    if not images:
        raise DatasetError(f"{input_dir}: no images found")
    model, _ = load_model(checkpoint, resolve_device(device))
    written, errors = [], []
    show = sys.stderr.isatty() if progress is None else progress
    for path in tqdm(images, desc="derain", unit="image", disable=not show):
        try:
            rainy = torch.from_numpy(read_image(path)).permute(2, 0, 1).float().div(255.0)
        except DatasetError as error:
            errors.append(str(error))
            continue
        out = derain(model, rainy[None], bf16=bf16)
        target = output_dir / path.relative_to(input_dir).with_suffix(".png")
        written.append(write_image(target, to_uint8(out.derained.cpu())[0]))
    return written, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="derain", description=__doc__.splitlines()[0])
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--checkpoint", type=Path, required=True, help="model.pt (or checkpoint.pt) of a training run")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (faster on recent CPUs and GPUs)")
    args = parser.parse_args(argv)
    try:
        written, errors = derain_folder(args.input_dir, args.output_dir, args.checkpoint,
                                        device=args.device, bf16=args.bf16)
    except (DatasetError, FileNotFoundError, ValueError) as error:
        print(f"derain: error: {error}", file=sys.stderr)
        return 2
    for message in errors:
        print(f"derain: skipped: {message}", file=sys.stderr)
    print(f"derain: wrote {len(written)} image(s) to {args.output_dir}; {len(errors)} failed")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

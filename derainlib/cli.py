"""``derain INPUT OUTPUT [--model NAME | --checkpoint PATH]``: remove rain from your photos with a trained model.

INPUT is an image file or a folder (searched recursively, hidden files and folders skipped). Each
image is derained whole and written as PNG: for a folder, under OUTPUT at the same relative path
with the extension replaced by ``.png``; for a single image, to OUTPUT itself when it ends in an
image extension, else into the folder OUTPUT.

Name collisions: inputs of one folder that differ only by extension (``x.jpg``, ``x.webp``) would
both become ``x.png``; all of them keep their full name instead (``x.jpg.png``, ``x.webp.png``), and
this is reported on stderr. Any clash left after that gets `` (2)``, `` (3)``... before ``.png``.

An image that cannot be read is reported by name and skipped; the others are still written, and the
command exits with status 1 if any failed (2 for a usage error: bad option, missing input, no model).

Imports are lazy: the model, data and training code are imported only once there is something to
derain; ``--help`` and ``--list-models`` read no model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_HELP = ("default: %(default)s, trained on Rain200H, the heaviest of the three training sets (five streak "
                "directions), so it has seen the dense, long streaks of a downpour; see --list-models")

EPILOG = """\
examples:
  derain photo.jpg derained/                 one image, into a folder (derained/photo.png)
  derain photo.jpg clear.png                 one image, to a file
  derain photos/ derained/ --model rain800   a folder, recursively, with a shipped model
  derain photos/ derained/ --checkpoint runs/my-run/model.pt
  derain --list-models

output names: <relative path>.png. Images of one folder that differ only by extension (x.jpg, x.webp)
keep their full name instead (x.jpg.png, x.webp.png), reported on stderr; a clash left after that gets
' (2)', ' (3)'... before .png. An unreadable image is named on stderr and skipped (exit status 1)."""


class UsageError(Exception):
    """A problem with the command line or its paths: reported on stderr with exit status 2."""


def plan_outputs(images: list[Path], input_root: Path, output_root: Path) -> tuple[dict[Path, Path], list[str]]:
    """Where each image of ``input_root`` is written under ``output_root``, and one note per collision.

    ``<relative path>.png`` by default; images of one folder sharing a stem keep their full name
    (``x.webp`` -> ``x.webp.png``); a clash left after that (or between names that differ only in
    case, which collide on case-insensitive file systems) gets `` (2)``, `` (3)``... before ``.png``.
    """
    def key(path: Path) -> str:
        return path.as_posix().casefold()

    plain = {image: image.relative_to(input_root).with_suffix(".png") for image in images}
    groups: dict[str, list[Path]] = {}
    for image, target in plain.items():
        groups.setdefault(key(target), []).append(image)
    notes, planned, taken = [], {}, set()
    for members in groups.values():
        if len(members) > 1:
            for image in members:
                planned[image] = image.relative_to(input_root).with_name(image.name + ".png")
            notes.append(f"{', '.join(m.relative_to(input_root).as_posix() for m in members)} share the name "
                         f"{plain[members[0]].with_suffix('').as_posix()!r}: written as "
                         f"{', '.join(planned[m].as_posix() for m in members)}")
        else:
            planned[members[0]] = plain[members[0]]
    outputs = {}
    for image in images:  # in the listing's (natural) order, so the numbering is stable
        target, number = planned[image], 1
        while key(target) in taken:
            number += 1
            target = planned[image].with_name(f"{planned[image].stem} ({number}).png")
        if number > 1:
            notes.append(f"{image.relative_to(input_root).as_posix()} would overwrite another output: "
                         f"written as {target.as_posix()}")
        taken.add(key(target))
        outputs[image] = output_root / target
    return outputs, notes


def _inputs_and_outputs(source: Path, output: Path) -> tuple[dict[Path, Path], list[str]]:
    from .data.datasets import list_images
    from .data.imageio import IMAGE_EXTENSIONS, is_image_file

    if source.is_file():
        if not is_image_file(source):
            raise UsageError(f"{source}: not an image file name (expected one of {', '.join(IMAGE_EXTENSIONS)})")
        if output.suffix.lower() in IMAGE_EXTENSIONS and not output.is_dir():
            return {source: output}, []
        return {source: output / source.with_suffix(".png").name}, []
    if not source.is_dir():
        raise UsageError(f"{source}: no such file or folder")
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output}: exists and is not a folder (INPUT is a folder, so OUTPUT must be one)")
    images = list_images(source, recursive=True)
    inside = output.resolve()
    images = [image for image in images if inside not in image.resolve().parents]  # earlier outputs in INPUT
    if not images:
        raise UsageError(f"{source}: no images found")
    return plan_outputs(images, source, output)


def derain_images(jobs: dict[Path, Path], model, *, bf16: bool = False,
                  progress: bool | None = None) -> tuple[list[Path], list[str]]:
    """Derain every ``input -> output`` of ``jobs`` with ``model``; return (written paths, error messages)."""
    import torch
    from tqdm import tqdm

    from .data.errors import DatasetError
    from .data.imageio import read_image, write_image
    from .evaluation import derain
    from .metrics import to_uint8

    written, errors = [], []
    show = sys.stderr.isatty() if progress is None else progress
    for source, target in tqdm(jobs.items(), desc="derain", unit="image", disable=not show):
        try:
            rainy = torch.from_numpy(read_image(source)).permute(2, 0, 1).float().div(255.0)
        except DatasetError as error:
            errors.append(str(error))
            continue
        out = derain(model, rainy[None], bf16=bf16)
        written.append(write_image(target, to_uint8(out.derained.cpu())[0]))
    return written, errors


def build_parser() -> argparse.ArgumentParser:
    from .pretrained import DEFAULT_MODEL  # reads no model: cheap

    parser = argparse.ArgumentParser(prog="derain", description="Remove rain from photos with a trained model.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, nargs="?", help="an image file, or a folder of images (recursive)")
    parser.add_argument("output", type=Path, nargs="?",
                        help="a folder (created if needed); or, for a single image, an output file name such as clear.png")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default=DEFAULT_MODEL, help="a shipped model by name (--list-models); " + DEFAULT_HELP)
    which.add_argument("--checkpoint", type=Path,
                       help="instead of a shipped model: model.pt (or checkpoint.pt) of your own training run")
    parser.add_argument("--list-models", action="store_true", help="list the shipped models, one line each, and exit")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (faster on recent CPUs and GPUs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import pretrained

    if args.list_models:
        for name in pretrained.available():
            print(("* " if name == pretrained.DEFAULT_MODEL else "  ") + pretrained.summary(name))
        print(f"(* the default; details: {pretrained.PRETRAINED_ROOT}/<name>/MODEL_CARD.md)")
        return 0
    if args.input is None or args.output is None:
        parser.error("INPUT and OUTPUT are required (or --list-models)")
    try:
        checkpoint = args.checkpoint if args.checkpoint is not None else pretrained.model_path(args.model)
        jobs, notes = _inputs_and_outputs(args.input, args.output)
        for note in notes:
            print(f"derain: name collision: {note}", file=sys.stderr)
        from . import resolve_device
        from .train import load_model

        model, _ = load_model(checkpoint, resolve_device(args.device))
    except (UsageError, FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"derain: error: {error}", file=sys.stderr)
        return 2
    written, errors = derain_images(jobs, model, bf16=args.bf16)
    for message in errors:
        print(f"derain: skipped: {message}", file=sys.stderr)
    where = args.output if args.input.is_dir() else (written[0] if written else args.output)
    print(f"derain: wrote {len(written)} image(s) to {where}; {len(errors)} failed")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

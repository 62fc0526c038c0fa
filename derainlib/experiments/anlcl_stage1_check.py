"""Does ANLCL's stage 1 learn at the study's scale? Short stage-1 runs, one setting changed at a time.

Stage 1 (§4.6) trains both generators on paired synthetic crops, supervised, with the GAN prior on B. The paper
gives neither the weights of the supervised terms nor a schedule for this stage. Its first reading here (L1 on
each layer weighted 1 against the GAN's 1, the public code's instance norm in the generators' neck, Adam at the
paper's 1e-4) stalled in the ``cpu`` study's pilot: after 1000 steps ``|B − B_gt|`` sat at 0.20 and G_B scored
15.1 dB PSNR-Y on the real-proxy test split, against 22.1 dB for the rainy input itself.

:func:`run_variant` trains one setting of :data:`VARIANTS` for ``steps`` stage-1 steps at the profile's sizes
(Rain200H, renderer version 2, seed 0) in a temporary folder and scores G_B on the first validation images of
Rain200H; ``python -m derainlib.experiments.anlcl_stage1_check --profile cpu`` runs them all and writes
``results/<profile>/anlcl_stage1_variants.csv`` (a variant already there at the same steps is kept, not
retrained). The last variant is the setting the study uses since.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import atomic_path
from ..data.benchmark import open_split
from ..evaluation import evaluate
from ..losses.anlcl import ANLCLLossWeights
from ..paths import results_dir
from ..profiles import Profile, get_profile
from ..train import load_model
from ..train_anlcl import ANLCLConfig, train_anlcl
from .anlcl_runs import Stage1Spec, benchmark_root, train_config

__all__ = ["VARIANTS", "Variant", "finished_row", "run_variant", "run_variants", "variant_arguments", "variant_config",
           "write_row"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One stage-1 setting: the neck's instance norm, the supervised terms' weight, the GAN's, Adam's step."""

    name: str
    neck_norm: bool
    supervised_weight: float
    gan_weight: float
    learning_rate: float


#: The first reading, each change alone, then combined; the last is the study's setting.
VARIANTS = (
    Variant("first reading (neck norm, L1 x1, GAN x1, lr 1e-4)", True, 1.0, 1.0, 1e-4),
    Variant("no GAN", True, 1.0, 0.0, 1e-4),
    Variant("L1 x100", True, 100.0, 1.0, 1e-4),
    Variant("no neck norm", False, 1.0, 1.0, 1e-4),
    Variant("L1 x100, lr 1e-3", True, 100.0, 1.0, 1e-3),
    Variant("no neck norm, L1 x100", False, 100.0, 1.0, 1e-4),
    Variant("no neck norm, L1 x100, lr 1e-3 (the study's)", False, 100.0, 1.0, 1e-3),
)

VALIDATION_IMAGES = 12


def variant_config(variant: Variant, profile: str | Profile, data_root: Path, steps: int) -> ANLCLConfig:
    """Stage 1 alone of seed 0 on Rain200H at ``profile``'s sizes, with ``variant``'s settings, for ``steps``."""
    config = train_config(Stage1Spec("rain200h", 0, get_profile(profile).anlcl.width,
                                     get_profile(profile).anlcl.num_blocks), profile, data_root)
    weights = dataclasses.replace(ANLCLLossWeights(), supervised_background=variant.supervised_weight,
                                  supervised_rain=variant.supervised_weight, background_prior=variant.gan_weight)
    return dataclasses.replace(config, pretrain_steps=steps, neck_norm=variant.neck_norm, loss_weights=weights,
                               learning_rate=variant.learning_rate, pretrain_learning_rate=None,
                               checkpoint_every=max(steps, 1))


def run_variant(variant: Variant, profile: str | Profile, steps: int, data_root: Path | None = None) -> dict:
    """Train ``variant`` for ``steps`` stage-1 steps; its last epoch's mean ``|B − B_gt|`` and G_B's PSNR-Y
    on the first :data:`VALIDATION_IMAGES` Rain200H validation images, beside the rainy input's."""
    p = get_profile(profile)
    root = benchmark_root(p) if data_root is None else Path(data_root)
    config = variant_config(variant, p, root, steps)
    validation = open_split(root, "rain200h", "val")
    with tempfile.TemporaryDirectory(prefix="anlcl-stage1-") as folder:
        result = train_anlcl(config, Path(folder) / "run", progress=False)
        model, _ = load_model(Path(folder) / "run" / "model.pt")
        scores = evaluate(model, validation, bf16=config.bf16, max_images=VALIDATION_IMAGES)
    rainy = evaluate(None, validation, max_images=VALIDATION_IMAGES)
    return {"variant": variant.name, "steps": steps, "neck_norm": variant.neck_norm,
            "supervised_weight": variant.supervised_weight, "gan_weight": variant.gan_weight,
            "learning_rate": variant.learning_rate,
            "supervised_background": float(result.log["supervised_background"].iloc[-1]),
            "val_psnr_y": float(scores["psnr_y"].mean()), "rainy_val_psnr_y": float(rainy["psnr_y"].mean()),
            "images": int(len(scores)), "wall_time_s": round(result.wall_time_s, 1)}


def variant_arguments(description: str, stage: int) -> argparse.ArgumentParser:
    """The command line of a stage check: ``--profile``, ``--steps`` and ``--only`` (indices into its variants)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=250, help=f"stage-{stage} steps per variant")
    parser.add_argument("--only", type=int, nargs="*", default=None, help="indices into VARIANTS")
    return parser


def run_variants(output: Path, chosen: Sequence[tuple[Any, int]], train: Callable[[Any, int], dict],
                 names: Sequence[str]) -> None:
    """Train and score each ``(variant, steps)`` of ``chosen`` with ``train`` and add its row to ``output``, keeping
    a variant already there at the same steps (the check resumes where a killed one stopped)."""
    for variant, steps in chosen:
        if not finished_row(output, variant.name, steps).empty:
            print(f"kept: {variant.name} ({steps} steps, already in {output})", flush=True)
            continue
        row = train(variant, steps)
        print(row, flush=True)
        write_row(output, row, names)
    print(f"wrote {output}")


def main(argv: list[str] | None = None) -> int:
    args = variant_arguments(__doc__.splitlines()[0], stage=1).parse_args(argv)
    p = get_profile(args.profile)
    chosen = [VARIANTS[i] for i in args.only] if args.only else list(VARIANTS)
    run_variants(results_dir(p.name) / "anlcl_stage1_variants.csv", [(variant, args.steps) for variant in chosen],
                 lambda variant, steps: run_variant(variant, p, steps), [variant.name for variant in VARIANTS])
    return 0


def finished_row(output: Path, name: str, steps: int) -> pd.DataFrame:
    """The row of the variant called ``name`` at ``steps`` already in ``output`` (empty if none)."""
    if not output.is_file():
        return pd.DataFrame()
    rows = pd.read_csv(output)
    return rows[(rows["variant"] == name) & (rows["steps"] == steps)]


def write_row(output: Path, row: dict, names: Sequence[str] = tuple(variant.name for variant in VARIANTS)) -> None:
    """Add ``row`` to ``output`` (replacing the same variant at the same steps), rows in the order of ``names`` (the
    variants' names), so that a killed check keeps its finished variants and two processes with disjoint ``--only``
    share one file."""
    rows = pd.read_csv(output) if output.is_file() else pd.DataFrame(columns=list(row))
    rows = rows[~((rows["variant"] == row["variant"]) & (rows["steps"] == row["steps"]))]
    rows = pd.concat([rows, pd.DataFrame([row])], ignore_index=True)
    order = {name: i for i, name in enumerate(names)}
    rows = rows.sort_values(["steps", "variant"], key=lambda c: c.map(order) if c.name == "variant" else c)
    with atomic_path(output) as tmp:
        rows.to_csv(tmp, index=False)


if __name__ == "__main__":
    raise SystemExit(main())

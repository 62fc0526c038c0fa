"""Why does ANLCL's stage 2 make G_B worse at the study's scale? Short stage-2 runs, one setting changed at a time.

The ``cpu`` study's first stage-2 run (every term of Eq. (4), 1000 steps on the real-proxy train split's rainy
images, from seed 0's stage-1 run) ended 4.4 dB below the stage-1 model it started from on the real-proxy test
split, and 4 dB below the rainy input (``docs/anlcl.md``). Its log shows the GAN term on B rising while the
contrastive terms fall, and ``‖B + R − O‖²`` near 0.01 (an RMS mismatch of 0.1): nothing held B̂ to the input.

:func:`run_variant` starts stage 2 of seed 0 from that committed stage-1 run (``init_weights``), trains one
setting of :data:`VARIANTS` for ``steps`` steps at the profile's sizes in a temporary folder, and scores G_B on the
real-proxy validation split (the study's selection split) and on the first Rain200H validation images, each beside
the rainy input; ``steps=0`` scores the stage-1 model itself. ``python -m derainlib.experiments.anlcl_stage2_check
--profile cpu`` writes ``results/<profile>/anlcl_stage2_variants.csv`` (a variant already there at the same steps is
kept, not retrained; two processes with disjoint ``--only`` share the file).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from ..data.benchmark import open_split
from ..evaluation import evaluate
from ..losses.anlcl import ANLCLLossWeights
from ..paths import results_dir
from ..profiles import Profile, get_profile
from ..train import load_model
from ..train_anlcl import CONTRASTIVE_TERMS, DECOMPOSITION_TERMS, ANLCLConfig, train_anlcl
from .anlcl_runs import RunSpec, benchmark_root, runs_root, train_config
from .anlcl_stage1_check import run_variants, variant_arguments

__all__ = ["VARIANTS", "Variant", "run_variant", "stage1_model", "variant_config"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One stage-2 setting: its contrastive terms, its Eq. (2)-(3) terms, what the L1 rain prior is taken on and its
    weight (λ), and whether Eq. (2)'s norms are averaged or summed over pixels."""

    name: str
    terms: tuple[str, ...] = CONTRASTIVE_TERMS
    decomposition_terms: tuple[str, ...] = DECOMPOSITION_TERMS
    rain_prior_on: str = "rain"
    rain_prior_weight: float = ANLCLLossWeights().rain_sparsity
    norms: str = "mean"


#: Every term first (the study's setting before it took the norms as sums; every row but the last two takes them
#: as means), then one change each: without the contrastive terms (is it the GAN and the decomposition alone?),
#: without the GAN (is it the adversarial prior?), and the public NLCL code's L1 prior on O - B instead of on R
#: (the one term that ties B to the input), alone and without the GAN; then that prior weighted 100 times the
#: paper's λ (as stage 1 weights its L1 against the GAN), the decomposition alone without the GAN (the sanity
#: floor: nothing in it moves B away from O), and the contrastive terms with that strong prior but no GAN (do they
#: improve on the input once B is held to it?). Last, Eq. (2)'s norms summed over pixels as printed, with every
#: term and without the GAN: the pixel terms then outweigh the others by C·H·W.
VARIANTS = (
    Variant("every term"),
    Variant("no contrastive terms", terms=()),
    Variant("no GAN", decomposition_terms=("consistency", "rain_sparsity")),
    Variant("L1 prior on O - B", rain_prior_on="residual"),
    Variant("L1 prior on O - B, no GAN", decomposition_terms=("consistency", "rain_sparsity"),
            rain_prior_on="residual"),
    Variant("L1 prior on O - B x100", rain_prior_on="residual", rain_prior_weight=10.0),
    Variant("consistency and L1 prior only", terms=(), decomposition_terms=("consistency", "rain_sparsity")),
    Variant("L1 prior on O - B x100, no GAN", decomposition_terms=("consistency", "rain_sparsity"),
            rain_prior_on="residual", rain_prior_weight=10.0),
    Variant("norms summed over pixels", norms="sum"),
    Variant("norms summed over pixels, no GAN", decomposition_terms=("consistency", "rain_sparsity"), norms="sum"),
)

RAIN200H_VALIDATION_IMAGES = 12


def stage1_model(profile: str | Profile, seed: int = 0) -> Path:
    """The ``model.pt`` of the study's stage-1 run of ``seed`` on Rain200H (committed for seed 0)."""
    p = get_profile(profile)
    spec = RunSpec("rain200h", seed, p.anlcl.width, p.anlcl.num_blocks)
    return runs_root(p) / spec.stage1.run_id / "model.pt"


def variant_config(variant: Variant, profile: str | Profile, data_root: Path, steps: int,
                   start: Path) -> ANLCLConfig:
    """Stage 2 alone of seed 0 at ``profile``'s sizes from the stage-1 model ``start``, with ``variant``'s
    settings, for ``steps`` steps."""
    p = get_profile(profile)
    spec = RunSpec("rain200h", 0, p.anlcl.width, p.anlcl.num_blocks, terms=variant.terms,
                   decomposition_terms=variant.decomposition_terms)
    config = train_config(spec, p, data_root, stage1_model=start)
    weights = dataclasses.replace(config.loss_weights, rain_sparsity=variant.rain_prior_weight)
    return dataclasses.replace(config, steps=steps, rain_prior_on=variant.rain_prior_on, norms=variant.norms,
                               loss_weights=weights, checkpoint_every=max(steps, 1))


def run_variant(variant: Variant, profile: str | Profile, steps: int, data_root: Path | None = None,
                start: Path | None = None) -> dict:
    """Train ``variant`` for ``steps`` stage-2 steps (0: the stage-1 model ``start`` as it is) and score G_B on the
    real-proxy validation split and the first :data:`RAIN200H_VALIDATION_IMAGES` Rain200H validation images, beside
    the rainy inputs; also the last epoch's mean GAN term, ``‖B + R − O‖²`` and the share of B outside [0, 1]."""
    p = get_profile(profile)
    root = benchmark_root(p) if data_root is None else Path(data_root)
    start = stage1_model(p) if start is None else Path(start)
    splits = {"realproxy": (open_split(root, "realproxy", "val"), None),
              "rain200h": (open_split(root, "rain200h", "val"), RAIN200H_VALIDATION_IMAGES)}
    row: dict = {"variant": variant.name, "steps": steps, "terms": " ".join(variant.terms),
                 "decomposition_terms": " ".join(variant.decomposition_terms), "rain_prior_on": variant.rain_prior_on,
                 "rain_prior_weight": variant.rain_prior_weight, "norms": variant.norms}
    with tempfile.TemporaryDirectory(prefix="anlcl-stage2-") as folder:
        if steps > 0:
            result = train_anlcl(variant_config(variant, p, root, steps, start), Path(folder) / "run", progress=False)
            last = result.log.iloc[-1]
            row |= {name: float(last[name]) if name in last else float("nan")
                    for name in ("background_prior", "consistency", "rain_sparsity", "out_of_range")}
            row["wall_time_s"] = round(result.wall_time_s, 1)
            start = Path(folder) / "run" / "model.pt"
        model, _ = load_model(start)
        for name, (dataset, images) in splits.items():
            scores = evaluate(model, dataset, bf16=p.bf16, max_images=images, with_range=True)
            rainy = evaluate(None, dataset, max_images=images)
            row |= {f"{name}_val_psnr_y": float(scores["psnr_y"].mean()),
                    f"{name}_rainy_psnr_y": float(rainy["psnr_y"].mean()),
                    f"{name}_out_of_range": float(scores["out_of_range"].mean()), f"{name}_images": int(len(scores))}
    return row


STAGE_1_ROW = Variant("stage 1 alone (no stage-2 step)")


def main(argv: list[str] | None = None) -> int:
    args = variant_arguments(__doc__.splitlines()[0], stage=2).parse_args(argv)
    p = get_profile(args.profile)
    chosen = [(variant, args.steps) for variant in ([VARIANTS[i] for i in args.only] if args.only else VARIANTS)]
    if not args.only:
        chosen.insert(0, (STAGE_1_ROW, 0))
    run_variants(results_dir(p.name) / "anlcl_stage2_variants.csv", chosen,
                 lambda variant, steps: run_variant(variant, p, steps),
                 [STAGE_1_ROW.name] + [variant.name for variant in VARIANTS])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

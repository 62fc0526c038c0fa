#!/usr/bin/env python3
"""Build the shipped models (``derainlib/pretrained/<name>/``) from the study's finished cpu runs.

For each synthetic training set of the study (Rain200L, Rain200H, Rain800) one supervised model is
shipped, chosen by :data:`SELECTION_RULE` on the **validation** split only: the candidates are read
from their ``log.csv`` (the last row holds the validation scores at the final step) and the choice
is made before any test number is opened. Only then is the chosen run's ``metrics.json`` read, and
its test and real-proxy numbers are copied into the card: nothing in a card is typed by hand.

Each model folder gets a copy of the run's ``model.pt`` (the study's files stay where they are),
``card.json`` (what ``derain --list-models`` and :mod:`derainlib.pretrained` read) and
``MODEL_CARD.md``. The output is a pure function of the committed results, so a rerun rewrites
the same bytes.

Usage::

    python scripts/ship_models.py           # write derainlib/pretrained/<name>/
    python scripts/ship_models.py --check   # exit 1 if the committed models or cards differ from a rebuild
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from derainlib import REPO_ROOT, __version__
from derainlib.atomic import atomic_path, write_text_atomic
from derainlib.data.benchmark import DOMAIN_DATASETS, select_photos
from derainlib.data.synthetic import DOMAIN_DESCRIPTIONS, DOMAIN_DESCRIPTIONS_V1
from derainlib.experiments.semi_drdnet import DATASETS, RunSpec, runs_root, table_runs
from derainlib.models import count_parameters
from derainlib.pretrained import PRETRAINED_ROOT
from derainlib.profiles import get_profile
from derainlib.train import load_model

PROFILE = "cpu"  # the study profile: the committed runs whose numbers the study reports

#: Fixed before any test number was read; stated in every card.
SELECTION_RULE = (
    "the highest validation PSNR-Y (the dataset's val split, scored at the run's final step and "
    "recorded in the last row of its log.csv) among the supervised runs of Table II at the study's "
    "network size (M=16, 8+3 blocks; variants BL, BL+SE, BL+SE+DB, BL+SE+RB, BL+SE+SDCAB; seeds 0, 1, 2); "
    "ties go to the first run id in sorted order; test and real-proxy numbers play no part"
)

STUDY_COMMAND = "python -m derainlib.experiments.semi_drdnet --profile cpu --only {run_id}"
SHIP_COMMAND = "python scripts/ship_models.py"


def candidates(dataset: str) -> list[RunSpec]:
    """The runs the rule chooses from: Table II's supervised rows of ``dataset`` at the study's size."""
    return sorted((spec for spec in table_runs("II", PROFILE, datasets=(dataset,)) if not spec.semi_supervised),
                  key=lambda spec: spec.run_id)


def validation_scores(run_dir: Path, steps: int) -> dict[str, float]:
    """The validation PSNR-Y / SSIM-Y at the run's final step, from the last row of ``log.csv``."""
    log = pd.read_csv(run_dir / "log.csv")
    last = log.iloc[-1]
    if int(last["step"]) != steps or not math.isfinite(last.get("val_psnr_y", math.nan)):
        raise SystemExit(f"{run_dir / 'log.csv'}: its last row is not a validation at step {steps}; "
                         "is the run finished?")
    return {"psnr_y": float(last["val_psnr_y"]), "ssim_y": float(last["val_ssim_y"]),
            "psnr_rgb": float(last["val_psnr_rgb"]), "ssim_rgb": float(last["val_ssim_rgb"])}


def choose(dataset: str) -> tuple[RunSpec, dict[str, dict[str, float]]]:
    """Apply :data:`SELECTION_RULE`: return the chosen run and every candidate's validation scores."""
    root, steps = runs_root(PROFILE), get_profile(PROFILE).semi_drdnet.iterations
    scores = {spec.run_id: validation_scores(root / spec.run_id, steps) for spec in candidates(dataset)}
    best = max(sorted(scores), key=lambda run_id: scores[run_id]["psnr_y"])  # max keeps the first of ties
    return next(spec for spec in candidates(dataset) if spec.run_id == best), scores


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def renderer_hashes(commits: list[str]) -> dict[str, str | None]:
    """sha256 of ``derainlib/data/synthetic.py`` at each of the run's commits (the benchmark recipe's
    ``renderer_sha256``), from git. ``None`` where it cannot be known: a commit recorded as ``-dirty``
    (the working tree had uncommitted changes) or one git does not have."""
    hashes = {}
    for commit in commits:
        if commit.endswith("-dirty"):
            hashes[commit] = None
            continue
        shown = subprocess.run(["git", "show", f"{commit}:derainlib/data/synthetic.py"], cwd=REPO_ROOT,
                               capture_output=True)
        hashes[commit] = hashlib.sha256(shown.stdout).hexdigest() if shown.returncode == 0 else None
    return hashes


def build_card(dataset: str) -> tuple[dict, Path]:
    """The card of ``dataset``'s shipped model, and the study ``model.pt`` it ships."""
    spec, validation = choose(dataset)  # the choice is made here, before metrics.json is opened
    run_dir = runs_root(PROFILE) / spec.run_id
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model, config = load_model(run_dir / "model.pt")
    p = get_profile(PROFILE)
    folder = DOMAIN_DATASETS[dataset][0]
    keep = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
    card = {
        "name": dataset,
        "run_id": spec.run_id,
        "profile": PROFILE,
        "variant": spec.variant, "width": spec.width, "num_blocks": spec.num_blocks,
        "parameters": count_parameters(model),
        "steps": metrics["steps"], "seed": spec.seed,
        "patch_size": metrics["patch_size"], "batch_size": metrics["batch_size"],
        "learning_rate": config.learning_rate, "bf16": metrics["bf16"],
        "loss": f"Eq. (10): L_d + {spec.lambda_r:g} L_r (supervised, no DualSCRNet)",
        "training_data": {
            "folder": folder,
            "domain": dataset,
            # records from before renderer versions existed were rendered by version 1
            "renderer_version": (version := metrics.get("renderer_version", 1)),
            "description": (DOMAIN_DESCRIPTIONS_V1 if version == 1 else DOMAIN_DESCRIPTIONS)[dataset],
            "train_images": len(select_photos(p, "train")),
            "benchmark_seed": 0,
            "derainlib_version": __version__,
            "renderer_sha256_at_commit": renderer_hashes(metrics["commits"]),
        },
        "selection": {"rule": SELECTION_RULE,
                      "candidates_val_psnr_y": {run_id: scores["psnr_y"] for run_id, scores in validation.items()}},
        "validation": validation[spec.run_id] | {"images": len(select_photos(p, "val"))},
        "test": {key: metrics["test"][key] for key in (*keep, "images")},
        "realproxy": {key: metrics["realproxy"][key] for key in (*keep, "niqe", "images")},
        "provenance": {"commits": metrics["commits"], "machines": metrics["machines"],
                       "train_wall_time_s": metrics["train_wall_time_s"]},
        "source": {"path": (run_dir / "model.pt").relative_to(REPO_ROOT).as_posix(),
                   "sha256": _sha256(run_dir / "model.pt")},
        "commands": {"train": STUDY_COMMAND.format(run_id=spec.run_id), "ship": SHIP_COMMAND},
    }
    return card, run_dir / "model.pt"


def model_card_markdown(card: dict) -> str:
    """``MODEL_CARD.md``: the card for people."""
    data, val, test, real = card["training_data"], card["validation"], card["test"], card["realproxy"]
    renderer = "; ".join(f"{commit[:12]}: {digest or 'unknown (uncommitted changes at that commit)'}"
                         for commit, digest in data["renderer_sha256_at_commit"].items())
    candidates_table = "\n".join(f"| {run_id} | {psnr:.2f} | {'chosen' if run_id == card['run_id'] else ''} |"
                                 for run_id, psnr in card["selection"]["candidates_val_psnr_y"].items())
    return f"""# Shipped model `{card['name']}`

Use it: `derain INPUT OUTPUT --model {card['name']}` (INPUT an image or a folder).

**What it is.** {card['variant']}, a supervised row of Semi-DRDNet's Table II
(M={card['width']} channels, {card['num_blocks']}+3 blocks per branch, {card['parameters']:,} parameters),
trained with {card['loss']}.

**Training data.** The embedded benchmark's {data['folder']} domain, train split ({data['train_images']} rendered
photographs, benchmark seed {data['benchmark_seed']}, renderer version {data['renderer_version']}, derainlib
{data['derainlib_version']}): {data['description']}
It is synthetic rain on the project's shipped photographs, not the public {data['folder']} dataset.
Renderer (`derainlib/data/synthetic.py`) sha256 at the training commit(s): {renderer}.

**Training.** Profile `{card['profile']}`: {card['steps']} steps, {card['patch_size']}x{card['patch_size']} crops,
batch {card['batch_size']}, Adam at {card['learning_rate']:g}, bf16 autocast: {card['bf16']}, seed {card['seed']}.
Trained in {card['provenance']['train_wall_time_s'] / 60:.0f} min on {', '.join(card['provenance']['machines'])}
(commit(s) {', '.join(c[:12] for c in card['provenance']['commits'])}).

**Why this run.** Chosen by a rule fixed before any test number was read: {card['selection']['rule']}.

| candidate run | val PSNR-Y (dB) | |
|---|---|---|
{candidates_table}

**Scores** (PSNR in dB, SSIM; Y is MATLAB's luma; computed by the study with bf16 autocast = {card['bf16']}).
The real-proxy set is rain from a different image-formation model than any training domain (occluding
layered streaks, haze, defocus, noise, JPEG), scored against held-out clean images: it stands in for real rain.

| split | images | PSNR-Y | SSIM-Y | PSNR-RGB | SSIM-RGB |
|---|---|---|---|---|---|
| {data['folder']} val (selection) | {val['images']} | {val['psnr_y']:.2f} | {val['ssim_y']:.4f} | {val['psnr_rgb']:.2f} | {val['ssim_rgb']:.4f} |
| {data['folder']} test | {test['images']} | {test['psnr_y']:.2f} | {test['ssim_y']:.4f} | {test['psnr_rgb']:.2f} | {test['ssim_rgb']:.4f} |
| real-proxy test | {real['images']} | {real['psnr_y']:.2f} | {real['ssim_y']:.4f} | {real['psnr_rgb']:.2f} | {real['ssim_rgb']:.4f} |

Real-proxy NIQE (lower is better): {real['niqe']:.2f}.

**How it was made.**

```
{card['commands']['train']}
{card['commands']['ship']}
```

The first trains and evaluates the run into `{Path(card['source']['path']).parent.as_posix()}/` (a finished run
is read back, not retrained); the second picks
the runs by the rule above and copies their `model.pt` here (sha256 {card['source']['sha256'][:16]}...).
"""


def ship(out_root: Path = PRETRAINED_ROOT) -> list[Path]:
    """Write every shipped model under ``out_root``; return the folders."""
    folders = []
    for dataset in DATASETS:
        card, source = build_card(dataset)
        folder = out_root / card["name"]
        with atomic_path(folder / "model.pt") as tmp:
            shutil.copyfile(source, tmp)
        write_text_atomic(folder / "card.json", json.dumps(card, indent=1) + "\n")
        write_text_atomic(folder / "MODEL_CARD.md", model_card_markdown(card))
        folders.append(folder)
    return folders


def check(out_root: Path = PRETRAINED_ROOT) -> list[str]:
    """What differs between the shipped models under ``out_root`` and a rebuild from the results."""
    problems = []
    for dataset in DATASETS:
        card, source = build_card(dataset)
        folder = out_root / card["name"]
        expected = {"card.json": (json.dumps(card, indent=1) + "\n").encode(),
                    "MODEL_CARD.md": model_card_markdown(card).encode(), "model.pt": source.read_bytes()}
        for name, data in expected.items():
            if not (folder / name).is_file() or (folder / name).read_bytes() != data:
                problems.append(f"{folder / name}: differs from a rebuild ({SHIP_COMMAND})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare the committed models with a rebuild; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    for folder in ship():
        card = json.loads((folder / "card.json").read_text())
        print(f"{folder.relative_to(REPO_ROOT)}: {card['run_id']} (val PSNR-Y {card['validation']['psnr_y']:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

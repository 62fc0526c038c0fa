"""Does Semi-DRDNet's contrastive term train stably? A short diagnostic per reading of Eq. (5)/(6).

Read literally, DualSCRNet builds its augmented negatives from the anchor itself (``O_a^k = I + R^k``,
Eq. (5)), with squared L2 feature distances and no clamping (``derainlib.losses.contrastive``). At the
``cpu`` scale that run diverged: the ratio terms of Eq. (6)/(8) kept growing and the outputs left
[0, 1]. The paper is silent on the three choices that decide this (:data:`READINGS`).

For each reading we train the study's Rain200H Semi-DRDNet run (same configuration, seed and learning
rate schedule) for its first :func:`window_steps` steps, and the supervised DRD-Net recipe (BL+SE+SDCAB,
no DualSCRNet) over the same window as the reference. Every step's loss terms are kept. After the
window the model is scored on the Rain200H and real-proxy test splits, and we measure how much of its
raw real-proxy output lies outside [0, 1].

**The rule that picks the study's reading was fixed before any of these runs**
(:func:`chosen_reading`): the first reading, in :data:`READINGS` order (literal first, then the fewest
departures from it), that is *stable*:

- every loss stayed finite;
- its detail loss ``L_d`` (Eq. (12)), averaged over the window's last 50 steps, is at most 1.5 times
  the reference's; and
- at most 1% of its raw real-proxy output values lie outside [0, 1].

Test PSNR is reported but takes no part in the choice: the choice must not be tuned to the score.

``python -m derainlib.experiments.semi_drdnet_stability --profile cpu`` runs what is missing and writes
``results/<profile>/semi_drdnet_stability.csv``. An interrupted diagnostic restarts its window.

**Which batch-norm statistics** (:func:`batchnorm_table`, ``--batchnorm RUN_DIR ...``): a trained
run scored with its batch-norm running statistics as trained and re-estimated on labeled crops,
unlabeled real crops, or both (``derainlib.train``'s docstring says why this matters).

**Why a reading fails** (:func:`gradient_norms`, ``--gradients``): the L2 norm of each weighted loss
term's gradient over the network's parameters, on a few training batches, from the seeded
initialisation and from the trained supervised DRD-Net. Adam follows the sum of these gradients; a
term whose gradient is orders of magnitude larger than the detail loss's decides where the network goes.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ..atomic import atomic_path, write_text_atomic
from ..data.benchmark import open_split
from ..evaluation import evaluate
from ..models import build_network
from ..options import check_choice
from ..profiles import Profile, get_profile
from ..paths import results_dir
from ..provenance import machine_label, provenance
from ..runtime import autocast, resolve_device, seed_everything
from ..train import batch_stream, batchnorm_momentum, build_dual, load_model, train, training_datasets, training_step
from .semi_drdnet_runs import (DIAGNOSED_READINGS, READINGS, RunSpec, benchmark_root, runs_root, semi_supervised_run,
                               stable_run, supervised_run, train_config)
from .semi_drdnet_stable import stable_config

REFERENCE = "supervised"  # the DRD-Net recipe without DualSCRNet, the yardstick of the rule
LAST_STEPS = 50  # the window's tail over which the losses are averaged
MAX_DETAIL_RATIO = 1.5
MAX_OUT_OF_RANGE = 0.01
TERMS = ("total", "detail", "rain_residual", "dual_sup", "dual_unsup", "train_psnr_y")


class _WindowDone(Exception):
    pass


def window_steps(profile: str | Profile) -> int:
    """Steps per diagnostic: the profile's ``semi_drdnet.stability_window`` (long enough at ``cpu`` scale
    for the literal reading's divergence to be plain; the whole tiny run for ``ci``)."""
    return get_profile(profile).semi_drdnet.stability_window


def stability_root(profile: str | Profile, data_root: str | Path | None = None) -> Path:
    return runs_root(profile, data_root) / "_stability"


def diagnose(reading: str, profile: str | Profile, *, data_root: str | Path | None = None,
             progress: bool | None = None) -> dict:
    """Train one reading (or :data:`REFERENCE`) over the window; return (and store) its summary.

    Stores ``steps.csv`` (every step's loss terms) and ``summary.json`` in its folder under
    :func:`stability_root`; a finished diagnostic is read back, not rerun.
    """
    if reading != REFERENCE and reading not in DIAGNOSED_READINGS:
        raise ValueError(f"reading={reading!r}: expected {REFERENCE!r} or one of {DIAGNOSED_READINGS}")
    p = get_profile(profile)
    folder = stability_root(p, data_root) / reading
    if (folder / "summary.json").exists():
        return json.loads((folder / "summary.json").read_text())
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted window restarts: its step rows are gone
    seed, width, depth = p.seeds[0], p.semi_drdnet.width, p.semi_drdnet.num_blocks
    spec = (supervised_run("rain200h", "BL+SE+SDCAB", seed, width, depth) if reading == REFERENCE
            else semi_supervised_run("rain200h", seed, width, depth, reading=reading))
    source = benchmark_root(p, data_root)
    window = window_steps(p)
    # The full run's configuration (so the learning rate schedule is the study's), stopped after the window.
    config = dataclasses.replace(train_config(spec, p, source), checkpoint_every=window, val_every_epochs=0)
    rows: list[dict] = []

    def keep(step: int, values: dict[str, float]) -> None:
        rows.append({"step": step, **values})
        if step >= window:
            raise _WindowDone

    made = provenance(p.name, {"run_id": spec.run_id, "window": window}, 0.0)  # the code this process runs
    started = time.perf_counter()
    try:
        train(config, folder / "run", progress=progress, on_step=keep)
    except _WindowDone:
        pass
    wall = time.perf_counter() - started
    steps = pd.DataFrame(rows)
    with atomic_path(folder / "steps.csv") as tmp:
        steps.to_csv(tmp, index=False)

    model, _ = load_model(folder / "run" / "checkpoint.pt", resolve_device(p.device))
    scores = {name: evaluate(model, open_split(source, domain, "test"), bf16=p.bf16, channels_last=p.channels_last,
                             with_range=True).mean(numeric_only=True)
              for name, domain in (("test", "rain200h"), ("realproxy", "realproxy"))}
    tail = steps.tail(LAST_STEPS)
    summary = {
        "reading": reading, **({} if reading == REFERENCE else READINGS[reading]),
        "steps": int(steps["step"].iloc[-1]), "finite": bool(steps[[c for c in TERMS if c in steps]].abs().lt(math.inf).all().all()),
        **{f"{term}_last": float(tail[term].mean()) for term in TERMS if term in steps},
        **{f"{term}_max": float(steps[term].max()) for term in ("dual_sup", "dual_unsup") if term in steps},
        "test_psnr_y": float(scores["test"]["psnr_y"]), "realproxy_psnr_y": float(scores["realproxy"]["psnr_y"]),
        "test_out_of_range": float(scores["test"]["out_of_range"]),
        "realproxy_out_of_range": float(scores["realproxy"]["out_of_range"]),
        "seed": seed, "width": width, "num_blocks": depth, "vgg_weights": config.vgg_weights, "bf16": config.bf16,
        "wall_time_s": round(wall, 1), "commit": made["commit"], "machine": machine_label(made["machine"]),
        "cpus": made["machine"]["cpus"], "finished_utc": made["finished_utc"],
    }
    write_text_atomic(folder / "summary.json", json.dumps(summary, indent=1))
    shutil.rmtree(folder / "run")  # the weights of a 300-step window are not worth keeping
    return summary


def is_stable(summary: dict, reference: dict) -> bool:
    """The rule of the module docstring (fixed before the diagnostics ran)."""
    return (summary["finite"]
            and summary["detail_last"] <= MAX_DETAIL_RATIO * reference["detail_last"]
            and summary["realproxy_out_of_range"] <= MAX_OUT_OF_RANGE)


def chosen_reading(table: pd.DataFrame) -> str | None:
    """The first stable reading in :data:`DIAGNOSED_READINGS` order, from :func:`stability_table`; ``None`` if none is."""
    rows = table.set_index("reading")
    if REFERENCE not in rows.index:
        raise ValueError("the stability table has no reference row; run the supervised reference first")
    for reading in DIAGNOSED_READINGS:
        if reading in rows.index and rows.loc[reading, "stable"]:
            return reading
        if reading not in rows.index:
            return None  # an earlier, preferred reading is not measured yet: no choice can be made
    return None


def stability_table(summaries: list[dict]) -> pd.DataFrame:
    """One row per diagnostic, in :data:`READINGS` order after the reference, with the rule's verdict."""
    by_reading = {s["reading"]: s for s in summaries}
    if REFERENCE not in by_reading:
        raise ValueError("no reference diagnostic among the summaries")
    reference = by_reading[REFERENCE]
    rows = []
    for name in (REFERENCE, *DIAGNOSED_READINGS):
        if name in by_reading:
            s = by_reading[name]
            rows.append({**s, "detail_vs_reference": s["detail_last"] / reference["detail_last"],
                         "stable": name == REFERENCE or is_stable(s, reference)})
    return pd.DataFrame(rows)


def stability_csv(profile: str | Profile) -> Path:
    return results_dir(get_profile(profile).name) / "semi_drdnet_stability.csv"


def load_steps(profile: str | Profile) -> dict[str, pd.DataFrame]:
    """Every finished diagnostic's per-step losses, reference first, then in :data:`READINGS` order."""
    root = stability_root(profile)
    return {name: pd.read_csv(root / name / "steps.csv") for name in (REFERENCE, *DIAGNOSED_READINGS)
            if (root / name / "summary.json").exists()}


def gradient_norms(reading: str, profile: str | Profile, *, setting: str = "dual", weights_from: str | Path | None = None,
                   batches: int = 4, data_root: str | Path | None = None) -> pd.DataFrame:
    """How hard each weighted term of Eq. (9)/(10) pulls on the network, under one reading.

    For the study's Rain200H Semi-DRDNet configuration (with Table VII's ``setting``), on its first
    ``batches`` training batches (paired and real), returns one row per (batch, term) with the term's value and the L2 norm of
    the gradient of ``λ · term`` over all network parameters (``λ`` from Eq. (9)/(10): 1 for ``L_d``,
    ``λ_r``, ``λ_dual``, ``λ_unsup``). ``weights_from``: a ``model.pt`` to start from (e.g. the trained
    supervised DRD-Net); ``None``: the run's seeded initialisation. Before each batch is measured, the
    network's rain layers for it are pushed into the memory bank, so the augmented negatives of
    Eq. (5) exist from the first batch on, as they do after a run's first step.
    """
    check_choice("reading", reading, DIAGNOSED_READINGS)
    p = get_profile(profile)
    spec = semi_supervised_run("rain200h", p.seeds[0], p.semi_drdnet.width, p.semi_drdnet.num_blocks, setting=setting,
                               reading=reading)
    config = train_config(spec, p, benchmark_root(p, data_root))
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model = build_network(config.variant, width=config.width, num_blocks=config.num_blocks).to(device)
    if weights_from is not None:
        trained, _ = load_model(weights_from, device)
        model.load_state_dict(trained.state_dict())
    model.train()  # batch norm as in training
    dual = build_dual(config).to(device)
    paired, real = training_datasets(config)
    paired_batches = batch_stream(paired, config.batch_size, config.seed, 0, 0)
    real_batches = batch_stream(real, config.batch_size, config.seed + 1, 0, 0)
    w = config.loss_weights
    lambdas = {"detail": 1.0, "rain_residual": w.rain_residual, "dual_sup": w.dual, "dual_unsup": w.unsupervised}
    parameters = list(model.parameters())
    rows = []
    for index in range(batches):
        batch = next(paired_batches)
        rainy, clean = batch["rainy"].to(device), batch["clean"].to(device)
        real_rainy = next(real_batches)["rainy"].to(device)
        with torch.no_grad(), autocast(device, config.bf16):
            dual.remember(model(rainy).rain, "synthetic")
            dual.remember(model(real_rainy).rain, "real")
        with autocast(device, config.bf16):
            terms = training_step(model, dual, config, rainy, clean, real_rainy)
        for term, weight in lambdas.items():
            grads = torch.autograd.grad(weight * terms[term], parameters, retain_graph=True, allow_unused=True)
            norm = torch.sqrt(sum(g.float().pow(2).sum() for g in grads if g is not None))
            rows.append({"reading": reading, "setting": setting, "vgg_weights": config.vgg_weights, "batch": index,
                         "term": term, "weight": weight, "value": float(terms[term].detach()),
                         "grad_norm": float(norm)})
    return pd.DataFrame(rows)


def gradient_csv(profile: str | Profile) -> Path:
    return results_dir(get_profile(profile).name) / "semi_drdnet_gradients.csv"


#: What :func:`gradient_table` measures: every reading with DualSCRNet's full ``dual`` setting, then the
#: literal reading with Table VII's other settings (does the augmentation decide it?).
GRADIENT_CASES = (*((reading, "dual") for reading in DIAGNOSED_READINGS),
                  *(("literal", setting) for setting in ("standard", "aug_pos", "aug_neg")))


def gradient_table(profile: str | Profile, trained_model: str | Path, *, batches: int = 4) -> pd.DataFrame:
    """:func:`gradient_norms` for every case of :data:`GRADIENT_CASES`, from the initialisation and from
    ``trained_model``; one row per (start, reading, setting, term), averaged over the batches, with the
    ratio of each term's gradient norm to the detail loss's."""
    keys = ["start", "reading", "setting"]
    parts = [gradient_norms(reading, profile, setting=setting, weights_from=weights_from, batches=batches).assign(start=start)
             for start, weights_from in (("init", None), ("trained DRD-Net", trained_model))
             for reading, setting in GRADIENT_CASES]
    table = (pd.concat(parts).groupby([*keys, "term", "vgg_weights"], sort=False)[["weight", "value", "grad_norm"]]
             .mean().reset_index())
    detail = table[table["term"] == "detail"].set_index(keys)["grad_norm"]
    table["vs_detail"] = table["grad_norm"] / detail.loc[list(zip(*(table[k] for k in keys)))].to_numpy()
    return table


def reestimated_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """A copy of ``model`` whose batch-norm running statistics are the plain mean over ``batches``
    (training-mode forwards, no gradients; the weights are untouched)."""
    model = copy.deepcopy(model)
    with batchnorm_momentum(model, None) as layers:
        for layer in layers:
            layer.reset_running_stats()
        model.train()
        with torch.no_grad():
            for batch in batches:
                model(batch.to(next(model.parameters()).device))
    return model.eval()


#: Whose crops :func:`batchnorm_table` re-estimates the running statistics from.
BATCHNORM_SOURCES = ("as trained", "labeled", "real", "labeled+real")


def batchnorm_table(run_dir: str | Path, profile: str | Profile, *, batches: int = 50,
                    max_images: int | None = None, data_root: str | Path | None = None) -> pd.DataFrame:
    """Y-PSNR of a finished semi-supervised run on its dataset's and the real-proxy test splits, with
    batch norm's running statistics from each of :data:`BATCHNORM_SOURCES`: as trained, or re-estimated
    over ``batches`` training batches (the run's first ones: labeled crops, real crops, or both
    concatenated into one batch). One row per source."""
    p = get_profile(profile)
    run_dir = Path(run_dir)
    spec = RunSpec(**json.loads((run_dir / "metrics.json").read_text())["spec"])
    source = benchmark_root(p, data_root)
    config = train_config(spec, p, source)
    model, _ = load_model(run_dir / "model.pt", resolve_device(config.device))
    paired, real = training_datasets(config)

    def crops(kind: str) -> Iterator[torch.Tensor]:
        labeled = batch_stream(paired, config.batch_size, config.seed, 0, 0)
        unlabeled = batch_stream(real, config.batch_size, config.seed + 1, 0, 0)
        for _ in range(batches):
            parts = {"labeled": [next(labeled)], "real": [next(unlabeled)],
                     "labeled+real": [next(labeled), next(unlabeled)]}[kind]
            yield torch.cat([part["rainy"] for part in parts])

    rows = []
    for kind in BATCHNORM_SOURCES:
        scored = model if kind == "as trained" else reestimated_batchnorm(model, crops(kind))
        row = {"run_id": spec.run_id, "statistics": kind}
        for name, domain in (("test", spec.dataset), ("realproxy", "realproxy")):
            scores = evaluate(scored, open_split(source, domain, "test"), bf16=config.bf16, max_images=max_images)
            row[f"{name}_psnr_y"] = float(scores["psnr_y"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def batchnorm_csv(profile: str | Profile) -> Path:
    return results_dir(get_profile(profile).name) / "semi_drdnet_batchnorm.csv"


def stable_finetune(profile: str | Profile, init_run: str | Path, work_dir: str | Path, *, steps: int = 40,
                    dose: float = 0.5, max_images: int = 8, data_root: str | Path | None = None) -> pd.DataFrame:
    """Does the stable reading train? A short fine-tune of a finished supervised run under ``reading="stable"``
    at ``dose``, against the supervised control (the same fine-tune with ``L_d + λ_r L_r`` only), both from
    ``init_run``'s weights, with the profile's network, crops and batch, plain fp32, the learning-rate
    schedule compressed to ``steps``. One row per model (the warm start as is, the control, stable): PSNR-Y
    on the first ``max_images`` images of the Rain200H and real-proxy test splits, ``L_d`` over the last 10
    steps, the collapse verdict and the last logged gradient ratios. ``data_root`` must hold the rain the
    init run was trained on (default: the benchmark of :data:`RENDERER_VERSION`)."""
    p = get_profile(profile)
    init_run, work_dir = Path(init_run), Path(work_dir)
    source = benchmark_root(p, data_root)
    sizes = dict(steps=steps, checkpoint_every=steps, val_every_epochs=0, bf16=False, channels_last=False,
                 num_workers=0, compile_mode=None)
    spec = stable_run("rain200h", p.seeds[0], p.semi_drdnet.width, p.semi_drdnet.num_blocks, dose, renderer_version=1)
    control_spec = supervised_run("rain200h", "BL+SE+SDCAB", p.seeds[0], p.semi_drdnet.width, p.semi_drdnet.num_blocks)
    control = dataclasses.replace(train_config(control_spec, p, source), **sizes,
                                  init_weights=str(init_run / "model.pt"))
    stable = stable_config(dataclasses.replace(train_config(spec, p, source), **sizes), dose, init_run, work_dir / "stable")
    device = resolve_device(p.device)
    rows = []
    for name, config in (("warm start", None), ("supervised control", control), (f"stable, dose {dose:g}", stable)):
        row: dict = {"model": name}
        if config is None:
            model, _ = load_model(init_run / "model.pt", device)
        else:
            folder = work_dir / name.split(",")[0].replace(" ", "_")
            started = time.perf_counter()
            result = train(config, folder, progress=False)
            model, _ = load_model(folder / "model.pt", device)
            tail = result.log  # epoch rows; the step-level tail is in the last row's means
            row |= {"steps": result.steps, "train_s": round(time.perf_counter() - started, 1),
                    "detail_last_epoch": float(tail["detail"].iloc[-1]),
                    "collapsed": result.collapsed is not None,
                    **{c: float(tail[c].iloc[-1]) for c in tail if c.startswith("grad_ratio_") or c == "grad_norm_detail"}}
        for split, domain in (("test", "rain200h"), ("realproxy", "realproxy")):
            scores = evaluate(model, open_split(source, domain, "test"), max_images=max_images, with_range=True)
            row[f"{split}_psnr_y"] = float(scores["psnr_y"].mean())
            row[f"{split}_out_of_range"] = float(scores["out_of_range"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def finetune_csv(profile: str | Profile) -> Path:
    return results_dir(get_profile(profile).name) / "semi_drdnet_stable_finetune.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train each reading of Eq. (5)/(6) over a short window.")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--readings", nargs="*", default=[REFERENCE, *READINGS])
    parser.add_argument("--gradients", metavar="MODEL_PT", default=None,
                        help="instead: measure every term's gradient norm, from the initialisation and from "
                             "this trained supervised model.pt, and write results/<profile>/semi_drdnet_gradients.csv")
    parser.add_argument("--batchnorm", metavar="RUN_DIR", nargs="+", default=None,
                        help="instead: score these finished runs with each source of batch-norm statistics, "
                             "and write results/<profile>/semi_drdnet_batchnorm.csv")
    parser.add_argument("--finetune", metavar="RUN_DIR", default=None,
                        help="instead: fine-tune this finished supervised run for --steps steps under the stable "
                             "reading and as the supervised control, and write results/<profile>/"
                             "semi_drdnet_stable_finetune.csv")
    parser.add_argument("--steps", type=int, default=40, help="steps of --finetune")
    parser.add_argument("--dose", type=float, default=0.5, help="the stable reading's dose in --finetune")
    parser.add_argument("--data-root", default=None, help="the data --finetune reads (default: the embedded benchmark)")
    args = parser.parse_args(argv)
    if args.finetune is not None:
        made = provenance(get_profile(args.profile).name, {"init_run": args.finetune}, 0.0)
        work = Path(tempfile.mkdtemp(prefix="stable-finetune-"))
        table = stable_finetune(args.profile, args.finetune, work, steps=args.steps, dose=args.dose,
                                data_root=args.data_root).assign(
            init_run=Path(args.finetune).name, commit=made["commit"], machine=machine_label(made["machine"]))
        shutil.rmtree(work)
        with atomic_path(finetune_csv(args.profile)) as tmp:
            table.to_csv(tmp, index=False)
        print(table.T.to_string(), flush=True)
        return 0
    if args.batchnorm is not None:
        made = provenance(get_profile(args.profile).name, {"runs": args.batchnorm}, 0.0)
        table = pd.concat([batchnorm_table(run_dir, args.profile) for run_dir in args.batchnorm]).assign(
            commit=made["commit"], machine=machine_label(made["machine"]))
        with atomic_path(batchnorm_csv(args.profile)) as tmp:
            table.to_csv(tmp, index=False)
        print(table.to_string(index=False, float_format="%.2f"), flush=True)
        return 0
    if args.gradients is not None:
        made = provenance(get_profile(args.profile).name, {"trained_model": args.gradients}, 0.0)
        table = gradient_table(args.profile, args.gradients).assign(
            commit=made["commit"], machine=machine_label(made["machine"]))
        with atomic_path(gradient_csv(args.profile)) as tmp:
            table.to_csv(tmp, index=False)
        print(table.pivot_table(index=["start", "reading", "setting"], columns="term", values="vs_detail", sort=False)
              .to_string(float_format="%.3g"), flush=True)
        return 0
    for reading in args.readings:
        print(f"diagnose {reading}", flush=True)
        diagnose(reading, args.profile, progress=False)
    summaries = [json.loads(path.read_text()) for path in sorted(stability_root(args.profile).glob("*/summary.json"))]
    table = stability_table(summaries)
    with atomic_path(stability_csv(args.profile)) as tmp:
        table.to_csv(tmp, index=False)
    columns = ["reading", "detail_last", "detail_vs_reference", "dual_sup_last", "dual_unsup_last",
               "realproxy_out_of_range", "test_psnr_y", "realproxy_psnr_y", "stable"]
    print(table[[c for c in columns if c in table]].to_string(index=False), flush=True)
    print(f"chosen reading: {chosen_reading(table)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

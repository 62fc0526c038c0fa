"""ANLCL's speed on this machine: the study's training step and every network's inference (Table 8), each as
a fraction of this device's measured bf16 matmul peak.

What it prints (:mod:`derainlib.experiments.anlcl_speed` does the measuring):

- **peak**: FLOP/s of a 2048² bf16 matrix product (best of 5), timed in this run, on each device; on the CPU also
  per CPU second of this process (threads summed), which other jobs' load does not change.
- **training step** at the profile's sizes (default ``cpu``: width 32, 9 blocks, batch 4, 128² crops, N = N_R =
  128), for stage 1 (pretraining) and stage 2 (every loss of Eq. (4)): seconds per step, the conv and linear
  MACs of forward and backward counted exactly with forward hooks, TFLOP/s and the fraction of the peak, in wall time
  and (CPU) in CPU time, the second against the CPU-time peak. Each
  ``--variants`` entry (``bf16+cl``, ``bf16``, ``fp32``, ``fp32+cl``) is one precision/layout.
- **study queue**: runs, steps and the hours :func:`derainlib.experiments.anlcl_runs.queue_cpu_hours` estimates
  from the measured stage 1 and stage 2 step times of the first variant: CPU seconds on the CPU (CPU hours: with
  ``--threads 1``, the wall-clock hours of one worker on an otherwise idle core), wall seconds on CUDA.
- **Table 8**: parameters, size (MB, float32) and ms per 256² image (batch 1) of every derainlib network, fp32
  and bf16 with channels_last, with the bf16 fraction of the peak (on the CPU also in CPU time, against the CPU-time
  peak); ANLCL's network at inference is G_B.

``--device`` ``cpu`` (default), ``cuda`` or ``all`` (the CPU, and CUDA when present). ``--threads`` defaults to
what torch uses. ``--quick`` is a seconds-long smoke run at the ``ci`` profile's sizes (its figures mean
nothing). ``--json PATH`` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import pandas as pd
import torch

from derainlib.experiments import anlcl_runs, anlcl_speed
from derainlib.profiles import get_profile

VARIANTS = {"bf16+cl": (True, True), "bf16": (True, False), "fp32": (False, False), "fp32+cl": (False, True)}


def _devices(choice: str) -> list[torch.device]:
    if choice == "all":
        return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    return [torch.device(choice)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "all"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=2, help="timed training steps (best of)")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated of {', '.join(VARIANTS)} (default: the profile's own)")
    parser.add_argument("--no-table8", action="store_true", help="skip Table 8")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run at the ci profile's sizes")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    profile = get_profile("ci" if args.quick else args.profile)
    threads_before = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    own = "bf16" if profile.bf16 else "fp32"
    own += "+cl" if profile.channels_last else ""
    variants = args.variants.split(",") if args.variants else [own]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; valid: {', '.join(VARIANTS)}")
    out: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                            f"{torch.get_num_threads()} threads, torch {torch.__version__}",
                 "profile": profile.name, "load_average": os.getloadavg()[0], "devices": {}}
    print(f"machine: {out['machine']}; load average {out['load_average']:.2f}; profile {profile.name}", flush=True)
    try:
        for device in _devices(args.device):
            figures: dict = {}
            peak = anlcl_speed.matmul_peak(device, size=512 if args.quick else 2048)
            figures["bf16_peak_tflops"] = peak / 1e12
            cpu_peak = (anlcl_speed.matmul_peak(device, size=512 if args.quick else 2048, clock="cpu")
                        if device.type == "cpu" else None)
            line = f"[{device.type}] bf16 matmul peak: {peak / 1e12:.3f} TFLOP/s"
            if cpu_peak is not None:
                figures["bf16_peak_tflops_per_cpu_second"] = cpu_peak / 1e12
                line += f", {cpu_peak / 1e12:.3f} TFLOP per CPU second"
            print(line, flush=True)
            steps = {}
            for name in variants:
                bf16, cl = VARIANTS[name]
                for stage in (1, 2):
                    r = anlcl_speed.training_step_speed(profile, device=device, stage=stage, steps=args.steps,
                                                        peak=peak, cpu_peak=cpu_peak, bf16=bf16, channels_last=cl)
                    steps[f"{name} stage {stage}"] = r
                    cpu = (f"; {r['cpu_seconds_per_step']:.3f} CPU s, {100 * r['cpu_fraction_of_peak']:.1f}% of the "
                           "CPU-time peak" if "cpu_fraction_of_peak" in r else "")
                    print(f"[{device.type}] training step {name}, stage {stage}: {r['seconds_per_step']:.3f} s, "
                          f"{r['total_gmacs']:.1f} GMAC (forward {r['forward_gmacs']:.1f}), {r['tflops']:.3f} TFLOP/s, "
                          f"{100 * r['fraction_of_peak']:.1f}% of peak{cpu}", flush=True)
            figures["training_steps"] = steps
            first = variants[0]
            key = "cpu_seconds_per_step" if device.type == "cpu" else "seconds_per_step"
            queue = anlcl_runs.queue_cpu_hours(profile, steps[f"{first} stage 1"][key], steps[f"{first} stage 2"][key])
            figures["queue"] = queue
            unit = "CPU hours" if device.type == "cpu" else "hours of one GPU"
            print(f"[{device.type}] study queue ({profile.name}, {first}): {queue['stage1_runs']} stage-1 + {queue['runs']} runs, "
                  f"{queue['steps']} steps, "
                  f"~{queue['hours']:.0f} {unit} (training only)", flush=True)
            if not args.no_table8:
                networks = None
                if args.quick:
                    networks = {k: v for k, v in anlcl_speed.table8_networks(profile).items() if "ci study" in k}
                table = anlcl_speed.table8(profile, device=device, size=64 if args.quick else 256,
                                           repeats=1 if args.quick else 2, peak=peak, cpu_peak=cpu_peak,
                                           networks=networks)
                figures["table8"] = table.to_dict("records")
                with pd.option_context("display.width", 200, "display.max_columns", 20):
                    print(f"[{device.type}] Table 8 (ms per {'64' if args.quick else '256'}² image, batch 1):")
                    print(table.drop(columns="device").round(3).to_string(index=False), flush=True)
            out["devices"][device.type] = figures
    finally:
        torch.set_num_threads(threads_before)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    return out


if __name__ == "__main__":
    main()

"""How fast ANLCL trains and derains on this machine: Table 8 and the fraction of the matmul peak.

- :func:`matmul_peak` times a large matrix product (bf16 by default) on this device: the FLOP/s the device's
  vector/matrix units reach on the easiest possible work, against which every other figure is a fraction.
- :func:`count_macs` counts the multiply-accumulates of every convolution and linear layer a piece of code
  runs, exactly, with forward hooks: the forward MACs, and the backward MACs that autograd will spend on them
  (one forward's worth for the weight gradient when the weight trains, one for the input gradient when the
  input needs one). Elementwise work, normalisation and the losses' own products are not counted, so the
  fraction of peak is a lower bound on how busy the units are.
- :func:`training_step_speed` times the study's ANLCL step (:func:`derainlib.train_anlcl.training_step` and
  :func:`~derainlib.train_anlcl.apply_step`, as the trainer runs them) on random crops at a profile's sizes.
- :func:`inference_speed` and :func:`table8`: parameters, model size and ms per 256² image of every network
  in derainlib (Table 8 lists the paper's; ANLCL's is its G_B, the only network inference needs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator

import pandas as pd
import torch
from torch import nn

from ..losses.anlcl import ContrastiveSampling
from ..models import build_network
from ..models.anlcl import PAPER, PUBLIC_NLCL, ResidualGenerator
from ..models.semi_drdnet import count_parameters
from ..options import check_choice
from ..profiles import Profile, get_profile
from ..runtime import autocast
from ..train_anlcl import ANLCLConfig, apply_step, build_networks, training_step

__all__ = ["MacCount", "count_macs", "inference_speed", "matmul_peak", "table8", "table8_networks",
           "training_step_speed"]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int,
                  clock: str = "wall") -> float:
    """The best of ``repeats`` timings of ``fn``: wall-clock seconds, or (``clock="cpu"``) this process's CPU
    seconds, all threads summed: on a CPU shared with other jobs the CPU time of a call stays what it costs, where
    its wall time grows with the others' load."""
    check_choice("clock", clock, ("wall", "cpu"))
    now = time.perf_counter if clock == "wall" else time.process_time
    for _ in range(warmup):
        fn()
    _synchronize(device)
    times = []
    for _ in range(repeats):
        started = now()
        fn()
        _synchronize(device)
        times.append(now() - started)
    return min(times)


def matmul_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, size: int = 2048,
                repeats: int = 5, clock: str = "wall") -> float:
    """FLOP/s of a ``size``² × ``size``² matrix product in ``dtype`` (best of ``repeats``, 2·size³ FLOPs each);
    ``clock="cpu"``: FLOPs per CPU second of this process (all threads summed), on the CPU only."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    seconds = _best_seconds(lambda: a @ b, device, repeats, warmup=2, clock=clock)
    return 2 * size ** 3 / seconds


@dataclasses.dataclass
class MacCount:
    forward: int = 0
    backward: int = 0

    @property
    def total(self) -> int:
        return self.forward + self.backward


def _layer_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    return output.numel() * module.in_features  # nn.Linear


@contextlib.contextmanager
def count_macs(*modules: nn.Module) -> Iterator[MacCount]:
    """Count the conv and linear MACs run inside the block by any layer of ``modules`` (see module docstring)."""
    count = MacCount()

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        macs = _layer_macs(module, inputs, output)
        count.forward += macs
        if torch.is_grad_enabled():
            count.backward += macs * (int(module.weight.requires_grad) + int(inputs[0].requires_grad))

    handles = [layer.register_forward_hook(hook) for m in modules for layer in m.modules()
               if isinstance(layer, (nn.Conv2d, nn.Linear))]
    try:
        yield count
    finally:
        for handle in handles:
            handle.remove()


def _study_config(profile: Profile, **overrides) -> ANLCLConfig:
    sizes = profile.anlcl
    values = dict(pretrain_root="(random crops)", real_root="(random crops)", width=sizes.width,
                  num_blocks=sizes.num_blocks, momentum=sizes.momentum, crop_size=sizes.crop_size,
                  batch_size=sizes.batch_size, learning_rate=sizes.learning_rate,
                  sampling=ContrastiveSampling.from_sizes(sizes), bf16=profile.bf16, channels_last=profile.channels_last)
    return ANLCLConfig(**(values | overrides))


def training_step_speed(profile: str | Profile = "cpu", *, device: str | torch.device = "cpu", steps: int = 3,
                        warmup: int = 1, stage: int = 2, peak: float | None = None,
                        cpu_peak: float | None = None, seed: int = 0, **overrides) -> dict[str, float]:
    """Seconds per ANLCL training step at ``profile``'s sizes (``stage`` 1: pretraining, 2: every loss of
    Eq. (4)), its conv/linear MACs (:func:`count_macs`) and, given this device's ``peak`` FLOP/s
    (:func:`matmul_peak`), the fraction of it the step reaches. On the CPU it also reports the step's CPU seconds
    (``cpu_seconds_per_step``, this process's threads summed: what a step costs whatever else runs) and, given
    ``cpu_peak`` (``matmul_peak(clock="cpu")``), the fraction of peak in CPU time (``cpu_fraction_of_peak``),
    which load from other jobs does not change. ``overrides`` set :class:`ANLCLConfig` fields (``bf16``,
    ``channels_last``, ``encoder``, ``terms`` …)."""
    p = get_profile(profile)
    config = _study_config(p, **overrides)
    device = torch.device(device)
    torch.manual_seed(seed)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    networks = build_networks(config).to(device, memory_format=memory_format).train()
    optimizer_g = torch.optim.Adam(networks.generator_parameters(), lr=config.learning_rate, betas=config.betas)
    optimizer_d = torch.optim.Adam(networks.discriminator_parameters(), lr=config.learning_rate, betas=config.betas)
    shape = (config.batch_size, 3, config.crop_size, config.crop_size)
    clean = torch.rand(shape, device=device).to(memory_format=memory_format)
    rainy = (clean + 0.3 * torch.rand(shape, device=device).pow(8)).clamp(0, 1).to(memory_format=memory_format)
    step_index = [0]

    def one_step() -> None:
        with autocast(device, config.bf16):
            terms, d_loss = training_step(networks, config, step_index[0], rainy, clean, paired=stage == 1)
        apply_step(networks, optimizer_g, optimizer_d, terms["total"], d_loss)
        step_index[0] += 1

    for _ in range(warmup):
        one_step()
    with count_macs(networks) as macs:
        one_step()
    seconds = _best_seconds(one_step, device, steps, warmup=0)
    result = {"seconds_per_step": seconds, "forward_gmacs": macs.forward / 1e9, "total_gmacs": macs.total / 1e9,
              "tflops": 2 * macs.total / seconds / 1e12}
    if peak is not None:
        result["fraction_of_peak"] = 2 * macs.total / seconds / peak
    if device.type == "cpu":
        cpu_seconds = _best_seconds(one_step, device, steps, warmup=0, clock="cpu")
        result["cpu_seconds_per_step"] = cpu_seconds
        if cpu_peak is not None:
            result["cpu_fraction_of_peak"] = 2 * macs.total / cpu_seconds / cpu_peak
    return result


def inference_speed(model: nn.Module, *, size: int = 256, device: str | torch.device = "cpu", bf16: bool = False,
                    channels_last: bool = False, repeats: int = 5, warmup: int = 2,
                    peak: float | None = None, cpu_peak: float | None = None) -> dict[str, float]:
    """ms to derain one ``size``² image (batch 1, best of ``repeats``) and its MACs; with ``peak``, the fraction
    of it reached. On the CPU also the CPU ms (threads summed) and, with ``cpu_peak`` (``matmul_peak(clock="cpu")``),
    the fraction of it in CPU time."""
    device = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).eval()
    x = torch.rand(1, 3, size, size, device=device).to(memory_format=memory_format)

    def forward() -> None:
        with torch.inference_mode(), autocast(device, bf16):
            model(x)

    with count_macs(model) as macs:
        forward()
    seconds = _best_seconds(forward, device, repeats, warmup)
    result = {"ms": 1e3 * seconds, "gmacs": macs.forward / 1e9}
    if peak is not None:
        result["fraction_of_peak"] = 2 * macs.forward / seconds / peak
    if device.type == "cpu":
        cpu_seconds = _best_seconds(forward, device, repeats, 0, clock="cpu")
        result["cpu_ms"] = 1e3 * cpu_seconds
        if cpu_peak is not None:
            result["cpu_fraction_of_peak"] = 2 * macs.forward / cpu_seconds / cpu_peak
    return result


def table8_networks(profile: str | Profile = "cpu") -> dict[str, nn.Module]:
    """Every deraining network of derainlib, at its paper's size and at ``profile``'s study size."""
    p = get_profile(profile)
    return {
        "ANLCL G_B (paper: width 60, 9 blocks)": ResidualGenerator(PAPER.width, PAPER.num_blocks),
        "ANLCL G_B (public NLCL: width 32, 16 blocks)": ResidualGenerator(PUBLIC_NLCL.width, PUBLIC_NLCL.num_blocks),
        f"ANLCL G_B ({p.name} study: width {p.anlcl.width}, {p.anlcl.num_blocks} blocks)":
            ResidualGenerator(p.anlcl.width, p.anlcl.num_blocks),
        "Semi-DRDNet (paper: M=64, 16 blocks)": build_network("Semi-DRDNet", 64, 16),
        f"Semi-DRDNet ({p.name} study: M={p.semi_drdnet.width}, {p.semi_drdnet.num_blocks} blocks)":
            build_network("Semi-DRDNet", p.semi_drdnet.width, p.semi_drdnet.num_blocks),
        "DDN": build_network("DDN"),
        "DDN+DRN": build_network("DDN+DRN"),
    }


def table8(profile: str | Profile = "cpu", *, device: str | torch.device = "cpu", size: int = 256, repeats: int = 3,
           peak: float | None = None, cpu_peak: float | None = None,
           networks: dict[str, nn.Module] | None = None) -> pd.DataFrame:
    """Table 8 for derainlib: parameters, size (MB, float32) and ms per ``size``² image of every network, in
    fp32 and in bf16 with channels_last, on ``device``; with ``peak`` (bf16 FLOP/s) the bf16 fraction of it; on
    the CPU also CPU ms (threads summed) and, with ``cpu_peak``, the bf16 fraction of the CPU-time peak."""
    rows = []
    nan = float("nan")
    for name, model in (table8_networks(profile) if networks is None else networks).items():
        fp32 = inference_speed(model, size=size, device=device, repeats=repeats, warmup=1)
        fast = inference_speed(model, size=size, device=device, bf16=True, channels_last=True, repeats=repeats,
                               warmup=1, peak=peak, cpu_peak=cpu_peak)
        rows.append({"network": name, "parameters": count_parameters(model),
                     "size MB": count_parameters(model) * 4 / 1e6, "GMACs": fp32["gmacs"],
                     "ms fp32": fp32["ms"], "ms bf16+CL": fast["ms"],
                     "bf16 fraction of peak": fast.get("fraction_of_peak", nan),
                     "CPU ms fp32": fp32.get("cpu_ms", nan), "CPU ms bf16+CL": fast.get("cpu_ms", nan),
                     "bf16 fraction of CPU-time peak": fast.get("cpu_fraction_of_peak", nan),
                     "device": torch.device(device).type})
    return pd.DataFrame(rows)

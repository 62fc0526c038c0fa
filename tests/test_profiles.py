"""Profiles, seeding and device selection."""

from __future__ import annotations

import pytest
import torch

import derainlib
from derainlib.profiles import PROFILES, get_profile


def test_the_four_profiles_exist_and_grow():
    assert list(PROFILES) == ["ci", "cpu", "gpu", "paper"]
    ci, cpu, paper = get_profile("ci"), get_profile("cpu"), get_profile("paper")
    assert ci.iterations < cpu.iterations < paper.iterations
    assert ci.width <= cpu.width <= paper.width
    assert ci.device == "cpu" and cpu.device == "auto" and get_profile("gpu").device == "cuda"
    assert paper.width == 64 and paper.depth == 16 and paper.patch_size == 100 and paper.batch_size == 8


def test_profile_passes_through_and_unknown_names_fail():
    assert get_profile(PROFILES["cpu"]) is PROFILES["cpu"]
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        get_profile("fast")


def test_seed_everything_repeats_torch_and_numpy():
    import numpy as np

    derainlib.seed_everything(7)
    first = (torch.rand(3), np.random.rand(3))
    derainlib.seed_everything(7)
    second = (torch.rand(3), np.random.rand(3))
    assert torch.equal(first[0], second[0]) and (first[1] == second[1]).all()


def test_seeded_training_steps_are_bit_identical_on_cpu():
    def run() -> torch.Tensor:
        derainlib.seed_everything(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.PReLU(), torch.nn.Conv2d(8, 3, 3, padding=1))
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(3):
            x = torch.rand(2, 3, 16, 16)
            loss = (model(x) - x).abs().mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(run(), run())


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert derainlib.resolve_device("auto").type == expected
    assert derainlib.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            derainlib.resolve_device("cuda")

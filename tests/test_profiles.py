"""Profiles, seeding and device selection."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import derainlib
from derainlib.profiles import PROFILES, get_profile


def test_the_four_profiles_exist_and_grow():
    assert list(PROFILES) == ["ci", "cpu", "gpu", "paper"]
    ci, cpu, paper = get_profile("ci"), get_profile("cpu"), get_profile("paper")
    assert ci.semi_drdnet.iterations < cpu.semi_drdnet.iterations < paper.semi_drdnet.iterations
    assert ci.semi_drdnet.width <= cpu.semi_drdnet.width <= paper.semi_drdnet.width
    assert ci.device == "cpu" and cpu.device == "auto" and get_profile("gpu").device == "cuda"
    sizes = paper.semi_drdnet
    assert (sizes.width, sizes.num_blocks, sizes.patch_size, sizes.batch_size) == (64, 16, 100, 8)
    assert sizes.table_iii_grid == ((16, 32, 64), (8, 12, 16))  # the paper's Table III


def test_profiles_are_the_only_place_sizes_are_chosen_by_profile():
    """No module branches on a profile's name: what differs between profiles is a field of the profile."""
    root = Path(derainlib.__file__).parent
    offenders = [f"{path.relative_to(root)}:{number}" for path in sorted(root.rglob("*.py")) if path.name != "profiles.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"""\.name\s*[=!]=\s*["'](ci|cpu|gpu|paper)["']|\{\s*["'](ci|cpu|gpu|paper)["']\s*:""", line)]
    assert offenders == []


def test_as_dict_flattens_the_method_sections():
    record = get_profile("cpu").as_dict()
    assert record["name"] == "cpu" and record["semi_drdnet.width"] == 16 and "semi_drdnet" not in record
    assert all(not isinstance(value, dict) for value in record.values())


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


def test_importing_derainlib_loads_neither_torch_nor_numpy():
    """``derain --help`` must start at once: the package root imports nothing heavy."""
    import subprocess
    import sys

    code = "import sys, derainlib; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules)); print(derainlib.REPO_ROOT)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(derainlib.__file__).parents[1]).stdout.splitlines()
    assert out[0] == "[]" and Path(out[1]) == Path(derainlib.__file__).parents[1]

"""The shipped models: chosen on the validation split, cards copied from the study's records, small, packaged."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import json
import tomllib

import pandas as pd
import pytest

from derainlib import REPO_ROOT, pretrained
from derainlib.data.synthetic import DOMAIN_DESCRIPTIONS_V1
from derainlib.models import count_parameters

RUNS = REPO_ROOT / "results" / "cpu" / "semi_drdnet" / "runs"
SHIPPED = pretrained.available()


def ship_models_script():
    spec = importlib.util.spec_from_file_location("ship_models", REPO_ROOT / "scripts" / "ship_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SHIPPED)
def test_the_chosen_run_has_the_best_validation_psnr_of_its_candidates(name):
    card = pretrained.card(name)
    candidates = card["selection"]["candidates_val_psnr_y"]
    # Read independently of the script: every supervised Table II run of this dataset at M=16, 8+3 blocks.
    expected = sorted(f"{name}-{variant}-m16b8-s{seed}" for variant in ("bl", "bl_se", "bl_se_db", "bl_se_rb",
                                                                        "bl_se_sdcab") for seed in (0, 1, 2))
    assert sorted(candidates) == expected
    val = {run_id: float(pd.read_csv(RUNS / run_id / "log.csv")["val_psnr_y"].iloc[-1]) for run_id in expected}
    assert candidates == val
    assert card["run_id"] == max(expected, key=lambda run_id: val[run_id])
    assert "validation" in card["selection"]["rule"] and "test" in card["selection"]["rule"]


@pytest.mark.parametrize("name", SHIPPED)
def test_the_card_numbers_are_the_runs_records(name):
    card = pretrained.card(name)
    metrics = json.loads((RUNS / card["run_id"] / "metrics.json").read_text())
    for split in ("test", "realproxy"):
        assert all(card[split][key] == metrics[split][key] for key in card[split])
    last = pd.read_csv(RUNS / card["run_id"] / "log.csv").iloc[-1]
    assert card["validation"]["psnr_y"] == last["val_psnr_y"] and card["validation"]["ssim_y"] == last["val_ssim_y"]
    assert (card["steps"], card["seed"], card["variant"]) == (metrics["steps"], metrics["spec"]["seed"],
                                                              metrics["spec"]["variant"])
    assert card["commands"]["train"].endswith(f"--only {card['run_id']}")
    text = (pretrained.PRETRAINED_ROOT / name / "MODEL_CARD.md").read_text()
    assert f"{card['test']['psnr_y']:.2f}" in text and f"{card['realproxy']['psnr_y']:.2f}" in text
    assert card["selection"]["rule"] in text
    # the study's runs were rendered by renderer version 1: the card describes that rain, not today's default
    version = metrics.get("renderer_version", 1)
    assert card["training_data"]["renderer_version"] == version == 1
    assert card["training_data"]["description"] == DOMAIN_DESCRIPTIONS_V1[card["training_data"]["domain"]]


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_file_is_the_studys_model_and_small(name):
    card = pretrained.card(name)
    shipped = pretrained.model_path(name)
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == card["source"]["sha256"]
    assert (REPO_ROOT / card["source"]["path"]).read_bytes() == shipped.read_bytes()  # copied, not moved
    assert all(path.stat().st_size < 2 * 2**20 for path in shipped.parent.iterdir())
    model, config = pretrained.load(name)
    assert (config.variant, config.width, config.num_blocks) == (card["variant"], card["width"], card["num_blocks"])
    assert count_parameters(model) == card["parameters"] and not model.training


def test_the_committed_models_and_cards_are_what_the_script_builds(monkeypatch):
    script = ship_models_script()
    committed = {name: pretrained.card(name)["training_data"]["renderer_sha256_at_commit"] for name in SHIPPED}
    if not (REPO_ROOT / ".git").exists():  # the renderer hashes come from git history
        monkeypatch.setattr(script, "renderer_hashes",
                            lambda commits: next(h for h in committed.values() if list(h) == commits))
    assert script.check() == []


def test_an_unknown_name_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="no shipped model named 'nope'; shipped models: " + ", ".join(SHIPPED)):
        pretrained.model_path("nope")


def test_the_shipped_files_are_package_data():
    patterns = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["derainlib"]
    files = [path.relative_to(REPO_ROOT / "derainlib").as_posix()
             for path in pretrained.PRETRAINED_ROOT.rglob("*") if path.is_file() and path.suffix != ".py"
             and "__pycache__" not in path.parts]
    assert files and all(any(fnmatch.fnmatch(f, pattern) for pattern in patterns) for f in files)

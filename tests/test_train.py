"""The training loop: it learns, it uses both batches, it resumes exactly, it stops on NaN, it cleans up."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from derainlib import train as train_module
from derainlib import trainer_common
from derainlib.atomic import FolderBusy, lock_folder, split_file
from derainlib.data.imageio import read_image, write_image
from derainlib.data.synthetic import render
from derainlib.losses import DualSCRNet, LossWeights
from derainlib.losses.anlcl import ContrastiveSampling
from derainlib.metrics import psnr
from derainlib.models import build_network
from derainlib.train import TrainConfig, TrainingDiverged, load_model, train, training_step


def _clean_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth colourful scene with some edges: enough structure for rain to be separable."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([0.5 + 0.4 * np.sin(6 * x + rng.uniform(0, 6)), 0.5 + 0.4 * np.cos(5 * y + rng.uniform(0, 6)),
                      0.3 + 0.4 * (x > rng.uniform(0.3, 0.7))], axis=-1)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def make_paired(root: Path, count: int, size: int = 40, seed: int = 0) -> Path:
    """A Rain13K-layout folder (input/ <-> target/) of rendered Rain200L pairs."""
    rng = np.random.default_rng(seed)
    for i in range(1, count + 1):
        clean = _clean_image(rng, size)
        write_image(root / "target" / f"{i}.png", clean)
        write_image(root / "input" / f"{i}.png", render(clean, "rain200h", seed=i))
    return root


def make_real(root: Path, count: int, size: int = 40) -> Path:
    rng = np.random.default_rng(99)
    for i in range(1, count + 1):
        write_image(root / f"{i}.png", render(_clean_image(rng, size), "realproxy", seed=i))
    return root


def tiny_config(tmp_path: Path, **overrides) -> TrainConfig:
    paired = make_paired(tmp_path / "paired", 6)
    settings = dict(variant="Semi-DRDNet", width=4, num_blocks=1, train_root=str(paired), train_layout="rain13k",
                    patch_size=32, batch_size=2, steps=12, checkpoint_every=5, device="cpu")
    if overrides.pop("semi", False):
        settings |= dict(semi_supervised=True, contrastive="dual", vgg_weights="random",
                         real_root=str(make_real(tmp_path / "real", 4)))
    return TrainConfig(**(settings | overrides))


def test_a_tiny_model_overfits_one_pair(tmp_path):
    paired = make_paired(tmp_path / "one", 1, size=32)
    config = TrainConfig(variant="BL+SE+SDCAB", width=8, num_blocks=1, train_root=str(paired), train_layout="rain13k",
                         patch_size=32, batch_size=1, steps=150, learning_rate=3e-3, checkpoint_every=150)
    rainy, clean = (torch.from_numpy(read_image(paired / folder / "1.png")).permute(2, 0, 1)[None].float() / 255
                    for folder in ("input", "target"))
    before = psnr(rainy, clean)
    train(config, tmp_path / "run", progress=False)
    model, _ = load_model(tmp_path / "run" / "model.pt")
    with torch.no_grad():
        after = psnr(model.eval()(rainy).derained.clamp(0, 1), clean)
    assert after > before + 3.0, (before, after)
    parts = split_file(tmp_path / "run" / "model.pt", 20_000)  # as a model too big for one committed file is stored
    rejoined, _ = load_model(tmp_path / "run" / "model.pt")
    assert all(part.exists() for part in parts) and not (tmp_path / "run" / "model.pt").exists()  # read, not joined
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rejoined.state_dict().values()))


def test_the_semi_supervised_step_uses_both_batches():
    torch.manual_seed(0)
    model = build_network("Semi-DRDNet", width=4, num_blocks=1)
    dual = DualSCRNet(vgg_weights="random", setting="dual")
    config = TrainConfig(train_root="unused", real_root="unused", semi_supervised=True, contrastive="dual")
    rainy, clean = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)

    def gradients(real: torch.Tensor) -> tuple[dict, list[torch.Tensor]]:
        model.zero_grad()
        terms = training_step(model, dual, config, rainy, clean, real)
        terms["total"].backward()
        return terms, [p.grad.clone() for p in model.parameters()]

    terms, first = gradients(torch.rand(2, 3, 32, 32))
    assert {"detail", "rain_residual", "dual_sup", "dual_unsup", "total"} <= set(terms)
    assert dual.bank.count("real") == 2 and dual.bank.count("synthetic") == 2
    # Another real batch changes the gradient: the unlabeled images take part in the update.
    _, second = gradients(torch.rand(2, 3, 32, 32))
    assert any(not torch.allclose(a, b) for a, b in zip(first, second))
    expected = terms["detail"] + 0.5 * terms["rain_residual"] + 0.5 * terms["dual_sup"] + 1.0 * terms["dual_unsup"]
    assert torch.allclose(terms["total"], expected)


def _batchnorm_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in model.named_buffers() if "running" in name}


@pytest.mark.parametrize("statistics", ["labeled", "all"])
def test_only_the_labeled_forward_updates_batchnorm_statistics_by_default(statistics):
    torch.manual_seed(0)
    model = build_network("Semi-DRDNet", width=4, num_blocks=1)
    reference = build_network("Semi-DRDNet", width=4, num_blocks=1)
    reference.load_state_dict(model.state_dict())
    dual = DualSCRNet(vgg_weights="random", setting="dual")
    config = TrainConfig(train_root="unused", real_root="unused", semi_supervised=True, contrastive="dual",
                         batchnorm_statistics=statistics)
    rainy, clean = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    real = 0.5 + 2.0 * torch.rand(2, 3, 32, 32)  # another domain: its statistics differ
    training_step(model, dual, config, rainy, clean, real)
    reference(rainy)  # the labeled forward alone
    after, labeled_only = _batchnorm_buffers(model), _batchnorm_buffers(reference)
    same = all(torch.allclose(after[name], labeled_only[name]) for name in after)
    assert same == (statistics == "labeled")
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_the_batchnorm_choice_does_not_change_the_gradients():
    grads = {}
    for statistics in ("labeled", "all"):
        torch.manual_seed(0)
        model = build_network("Semi-DRDNet", width=4, num_blocks=1)
        dual = DualSCRNet(vgg_weights="random", setting="dual", seed=0)
        config = TrainConfig(train_root="unused", real_root="unused", semi_supervised=True, contrastive="dual",
                             batchnorm_statistics=statistics)
        generator = torch.Generator().manual_seed(1)
        rainy, clean, real = (torch.rand(2, 3, 32, 32, generator=generator) for _ in range(3))
        training_step(model, dual, config, rainy, clean, real)["total"].backward()
        grads[statistics] = [p.grad for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(grads["labeled"], grads["all"]))


def test_a_semi_supervised_checkpoint_from_before_the_batchnorm_choice_is_not_resumed(tmp_path):
    # Those runs let the real batch update the statistics; resuming them under the new default would mix both.
    config = tiny_config(tmp_path, semi=True, steps=6)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", progress=False, on_step=_interrupt_at(5))
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    del state["config"]["batchnorm_statistics"]
    torch.save(state, path)
    with pytest.raises(ValueError, match="batchnorm_statistics: checkpoint 'all', now 'labeled'"):
        train(config, tmp_path / "run", progress=False)
    assert load_model(path)[1].batchnorm_statistics == "all"  # what that run did, not today's default
    legacy = TrainConfig(**(config.as_dict() | {"batchnorm_statistics": "all", "loss_weights": LossWeights()}))
    assert train(legacy, tmp_path / "run", progress=False).resumed_from == 5


def _interrupt_at(stop: int):
    def interrupt(step, _values):
        if step == stop:
            raise KeyboardInterrupt

    return interrupt


@pytest.mark.slow
@pytest.mark.parametrize("semi", [False, True])
def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, semi):
    config = tiny_config(tmp_path, semi=semi)  # 6 pairs / batch 2: 3 steps per epoch, checkpoints at 5 and 10
    train(config, tmp_path / "straight", progress=False)
    with pytest.raises(KeyboardInterrupt):  # mid-epoch, two steps after the last checkpoint: those are redone
        train(config, tmp_path / "resumed", progress=False, on_step=_interrupt_at(7))
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["step"] == 5
    result = train(config, tmp_path / "resumed", progress=False)
    assert result.resumed_from == 5 and result.steps == 12
    straight = torch.load(tmp_path / "straight" / "model.pt", weights_only=False)["model"]
    resumed = torch.load(tmp_path / "resumed" / "model.pt", weights_only=False)["model"]
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
    logs = [pd.read_csv(tmp_path / name / "log.csv") for name in ("straight", "resumed")]
    assert list(logs[1]["epoch"]) == [1, 2, 3, 4]  # no duplicated rows from the lost steps
    pd.testing.assert_frame_equal(logs[0].drop(columns="wall_time_s"), logs[1].drop(columns="wall_time_s"))


def test_a_finished_run_is_not_retrained(tmp_path):
    config = tiny_config(tmp_path, steps=3)
    train(config, tmp_path / "run", progress=False)
    again = train(config, tmp_path / "run", progress=False)
    assert again.resumed_from == 3 and again.steps == 3


def test_resuming_with_another_configuration_is_refused(tmp_path):
    config = tiny_config(tmp_path, steps=5)
    train(config, tmp_path / "run", progress=False)
    changed = TrainConfig(**(config.as_dict() | {"learning_rate": 5e-4, "loss_weights": LossWeights()}))
    with pytest.raises(ValueError, match="learning_rate"):
        train(changed, tmp_path / "run", progress=False)


def test_a_run_resumes_with_its_data_moved_but_not_with_other_data():
    """A clone on another machine, or a renamed benchmark folder, holds the same dataset and split: a
    resume is allowed. Another dataset or split, or another setting, is refused by name."""
    from derainlib.trainer_common import check_resumable

    saved = {"train_root": "/old/build/benchmark/cpu/Rain200H/train", "real_root": "/old/cpu/RealProxy/train/input",
             "patch_size": (64, 64)}
    moved = {"train_root": "/new/clone/build/benchmark/cpu-v1/Rain200H/train",
             "real_root": "/new/cpu-v1/RealProxy/train/input", "patch_size": [64, 64]}
    check_resumable(saved, moved, (), Path("checkpoint.pt"))
    with pytest.raises(ValueError, match="train_root"):
        check_resumable(saved, moved | {"train_root": "/new/Rain200L/train"}, (), Path("checkpoint.pt"))
    with pytest.raises(ValueError, match="patch_size"):
        check_resumable(saved, moved | {"patch_size": (48, 48)}, (), Path("checkpoint.pt"))
    check_resumable(saved, moved | {"patch_size": (48, 48)}, ("patch_size",), Path("checkpoint.pt"))


def test_a_checkpoint_from_before_a_field_existed_resumes_as_its_default(tmp_path):
    config = tiny_config(tmp_path, steps=6)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", progress=False, on_step=_interrupt_at(5))
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    for name in ("negative_base", "clamp_contrastive", "contrastive_distance", "batchnorm_statistics", "anlcl_terms",
                 "anlcl_sampling", "anlcl_loss_weights", "anlcl_discriminator_lr"):
        del state["config"][name]
    torch.save(state, path)
    assert train(config, tmp_path / "run", progress=False).resumed_from == 5
    elsewhere = TrainConfig(**(config.as_dict() | {"contrastive_distance": "l1", "loss_weights": LossWeights()}))
    torch.save(state, path)
    with pytest.raises(ValueError, match="contrastive_distance"):
        train(elsewhere, tmp_path / "run", progress=False)


def test_compiled_training_keeps_its_state_dicts_and_resumes_without_compiling(tmp_path, monkeypatch):
    compiled = []

    def compile_wrapper(module, *, mode):  # torch.compile(model): a wrapper, used for the training step only
        compiled.append((type(module).__name__, mode))
        return module

    monkeypatch.setattr(train_module.torch, "compile", compile_wrapper)
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *, mode: compiled.append((type(self).__name__, mode)))
    config = tiny_config(tmp_path, semi=True, compile_mode="reduce-overhead")
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", progress=False, on_step=_interrupt_at(7))
    network = type(build_network("Semi-DRDNet", width=4, num_blocks=1)).__name__
    assert compiled == [(network, "reduce-overhead"), ("VGG16Features", "reduce-overhead")]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert not any("_orig_mod" in key for key in state["model"])  # loadable by an eager model
    eager = TrainConfig(**(config.as_dict() | {"compile_mode": None}))
    assert train(eager, tmp_path / "run", progress=False).resumed_from == 5  # an execution choice, like device
    with pytest.raises(ValueError, match="compile_mode must be None or one of"):
        TrainConfig(**(config.as_dict() | {"compile_mode": "fastest"}))


@pytest.mark.parametrize("native", [False, True])
def test_the_emulated_bf16_warning_names_the_run_and_the_way_out(tmp_path, monkeypatch, native):
    monkeypatch.setattr(trainer_common, "cpu_has_native_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for bf16 in (True, False):
            trainer_common.warn_if_bf16_is_emulated(bf16, torch.device("cpu"), tmp_path / "run")
    slow = [w for w in caught if "is emulated" in str(w.message)]
    assert len(slow) == (0 if native else 1)
    if slow:
        assert str(tmp_path / "run") in str(slow[0].message) and "bf16=False" in str(slow[0].message)


def test_training_asks_whether_bf16_is_emulated(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(train_module, "warn_if_bf16_is_emulated", lambda *args: asked.append(args))
    train(tiny_config(tmp_path, steps=1, bf16=True), tmp_path / "run", progress=False)
    assert asked == [(True, torch.device("cpu"), tmp_path / "run")]


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, checkpoint_every=3)
    real_loss = train_module.detail_repair_loss
    calls = {"n": 0}

    def poisoned(derained, clean):
        calls["n"] += 1
        value = real_loss(derained, clean)
        return value * float("nan") if calls["n"] == 5 else value

    monkeypatch.setattr(train_module, "detail_repair_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at step 5 .*step 3\) is kept"):
        train(config, tmp_path / "run", progress=False)
    kept = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert kept["step"] == 3
    assert all(torch.isfinite(value).all() for value in kept["model"].values() if value.is_floating_point())


def test_the_log_has_one_row_per_epoch(tmp_path):
    result = train(tiny_config(tmp_path, steps=7), tmp_path / "run", progress=False)
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert list(log["epoch"]) == [1, 2, 3] and list(log["step"]) == [3, 6, 7]
    assert {"lr", "total", "detail", "rain_residual", "train_psnr_y", "wall_time_s"} <= set(log.columns)
    assert result.log.shape == log.shape


def test_the_learning_rate_decays_at_the_papers_fractions():
    config = TrainConfig(train_root="x", steps=150)
    assert train_module.lr_milestone_steps(config) == [30, 50, 80]


def test_semi_supervision_needs_real_images_and_dualscrnet():
    with pytest.raises(ValueError, match="real_root"):
        TrainConfig(train_root="x", semi_supervised=True, contrastive="dual")
    with pytest.raises(ValueError, match="DualSCRNet"):
        TrainConfig(train_root="x", semi_supervised=True, real_root="y")


def test_load_model_names_a_bad_file(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="model.pt: not a derainlib checkpoint"):
        load_model(bad)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")


def test_the_contrastive_loss_reaches_both_branches_and_never_the_vgg():
    torch.manual_seed(0)
    model = build_network("Semi-DRDNet", width=4, num_blocks=1)
    dual = DualSCRNet(vgg_weights="random", setting="dual")
    rainy, clean = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    dual.remember(torch.rand(2, 3, 32, 32) * 0.2, "synthetic")  # so Eq. (5) negatives take part
    dual.supervised(model(rainy).derained, clean, rainy).backward()
    for branch in (model.rrn, model.drn):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in branch.parameters())
    assert all(p.grad is None for p in dual.vgg.parameters())


def test_a_resume_removes_the_temporary_files_of_a_killed_writer(tmp_path):
    config = tiny_config(tmp_path, steps=6)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir, progress=False, on_step=_interrupt_at(5))
    # what a SIGKILL during torch.save / to_csv / a split leaves (atomic_path's temporary names)
    leftovers = [".checkpoint.ab12cd34.pt", ".model.zz_9y8x7.pt", ".log.q1w2e3r4.csv",
                 ".checkpoint.pt.a1b2c3d4.part-000", ".checkpoint.pt.parts.k9j8h7g6.json"]
    for name in leftovers:
        (run_dir / name).write_bytes(b"partial")
    others = ["notes.txt", ".model.old.pt", ".segments_backup.abcdefgh.txt", "model.pt.bak"]  # not ours: kept
    for name in others:
        (run_dir / name).write_text("keep")
    assert train(config, run_dir, progress=False).resumed_from == 5
    assert not [name for name in leftovers if (run_dir / name).exists()]
    assert all((run_dir / name).read_text() == "keep" for name in others)


def test_a_finished_run_keeps_its_model_and_log_but_no_checkpoint(tmp_path):
    config = tiny_config(tmp_path, steps=6, checkpoint_every=2)
    train(config, tmp_path / "run", progress=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["log.csv", "model.pt"]


def test_a_checkpoint_parked_in_parts_resumes_and_the_parts_go_when_the_run_ends(tmp_path):
    config = tiny_config(tmp_path, steps=6)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir, progress=False, on_step=_interrupt_at(5))
    parts = split_file(run_dir / "checkpoint.pt", 20_000)  # as a long run is committed mid-way
    assert len(parts) > 1
    assert train(config, run_dir, progress=False).resumed_from == 5
    assert not list(run_dir.glob("checkpoint.pt*")) and (run_dir / "model.pt").exists()


def test_a_folder_being_trained_is_not_trained_twice_at_once(tmp_path):
    config = tiny_config(tmp_path, steps=2)
    with lock_folder(tmp_path / "run"):  # as another live training process holds it
        with pytest.raises(FolderBusy, match="run: another process is training a run in this folder"):
            train(config, tmp_path / "run", progress=False)
    assert train(config, tmp_path / "run", progress=False).steps == 2


# --------------------------------------------------------------------------- ANLCL's loss on this network (Table 6)

TINY_SAMPLING = ContrastiveSampling(num_positives=2, num_negatives=4, num_location_negatives=4, patch_size=8,
                                    search_window=16)


def anlcl_config(tmp_path: Path, **overrides) -> TrainConfig:
    return tiny_config(tmp_path, variant="BL+SE+SDCAB", anlcl_terms=("layer", "asymmetric"),
                       anlcl_sampling=TINY_SAMPLING, **overrides)


def test_anlcls_terms_reach_the_network_and_heads_but_not_the_discriminator(tmp_path):
    config = anlcl_config(tmp_path)
    model = build_network(config.variant, width=config.width, num_blocks=config.num_blocks)
    encoder = train_module.build_anlcl_encoder(config)
    rainy, clean = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    terms = training_step(model, None, config, rainy, clean, None, anlcl_encoder=encoder,
                          generator=torch.Generator().manual_seed(0))
    assert {"anlcl_layer", "anlcl_asymmetric", "_anlcl_discriminator"} <= set(terms)
    supervised = float(terms["detail"].detach() + config.loss_weights.rain_residual * terms["rain_residual"].detach())
    added = float(terms["anlcl_layer"].detach() + 0.01 * terms["anlcl_asymmetric"].detach())  # μ = 1, γ = 0.01
    assert float(terms["total"]) == pytest.approx(supervised + added, rel=1e-5)
    heads = encoder.head_parameters()
    layer_only = torch.autograd.grad(terms["anlcl_layer"], [*model.parameters(), *heads], retain_graph=True,
                                     allow_unused=True)
    assert all(g is not None and float(g.abs().sum()) > 0 for g in layer_only[-len(heads):])  # every head learns
    assert any(g is not None and float(g.abs().sum()) > 0 for g in layer_only[:-len(heads)])  # so does the network
    terms["total"].backward()
    assert all(p.grad is None for p in encoder.discriminator.parameters())  # D learns from its GAN loss only
    terms["_anlcl_discriminator"].backward()
    assert all(p.grad is not None for p in encoder.discriminator.parameters())


def test_a_run_with_anlcls_loss_steps_every_part_and_resumes_to_the_same_weights(tmp_path):
    config = anlcl_config(tmp_path, steps=8)
    steps = []
    train(config, tmp_path / "straight", progress=False, on_step=lambda step, values: steps.append(values))
    assert {"anlcl_layer", "anlcl_asymmetric", "anlcl_discriminator"} <= set(steps[0])
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", progress=False, on_step=_interrupt_at(7))
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    fresh = train_module.build_anlcl_encoder(config).state_dict()
    changed = {key for key, value in saved["anlcl_encoder"].items() if not torch.equal(value, fresh[key])}
    for prefix in ("layer_heads.", "discriminator.", "key_encoder."):  # heads, D and the momentum copy all moved
        assert any(key.startswith(prefix) for key in changed), prefix
    assert train(config, tmp_path / "resumed", progress=False).resumed_from == 5
    straight, resumed = (torch.load(tmp_path / name / "model.pt", weights_only=False)["model"]
                         for name in ("straight", "resumed"))
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)


def test_anlcl_terms_are_checked():
    with pytest.raises(ValueError, match="location"):
        TrainConfig(train_root="x", anlcl_terms=("location",))
    with pytest.raises(ValueError, match="patch_size 8"):
        TrainConfig(train_root="x", anlcl_terms=("layer",), patch_size=8)

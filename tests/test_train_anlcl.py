"""ANLCL's trainer: both stages run, every head and both optimisers move, D steps on its own loss only,
an interrupted run resumes exactly (in either stage), NaN stops it, and derain reads its model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from derainlib import cli
from derainlib import train_anlcl as train_anlcl_module
from derainlib.data.imageio import read_image, write_image
from derainlib.data.synthetic import render
from derainlib.losses.anlcl import ContrastiveSampling
from derainlib.train import load_model
from derainlib.train_anlcl import (ANLCLConfig, TrainingDiverged, build_networks, collapse_verdict,
                                   keep_deraining_only, load_networks, train_anlcl, training_step)


def _clean_image(rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([0.5 + 0.4 * np.sin(6 * x + rng.uniform(0, 6)), 0.5 + 0.4 * np.cos(5 * y + rng.uniform(0, 6)),
                      0.3 + 0.4 * (x > rng.uniform(0.3, 0.7))], axis=-1)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def make_data(root: Path, size: int = 40) -> tuple[Path, Path]:
    """A Rain13K-layout paired folder of 4 rendered pairs and a folder of 4 unlabeled rainy images."""
    rng = np.random.default_rng(0)
    for i in range(1, 5):
        clean = _clean_image(rng, size)
        write_image(root / "paired" / "target" / f"{i}.png", clean)
        write_image(root / "paired" / "input" / f"{i}.png", render(clean, "rain200h", seed=i))
        write_image(root / "real" / f"{i}.png", render(_clean_image(rng, size), "realproxy", seed=i))
    return root / "paired", root / "real"


def tiny_config(tmp_path: Path, **overrides) -> ANLCLConfig:
    paired, real = make_data(tmp_path / "data")
    sampling = ContrastiveSampling(num_positives=3, num_negatives=6, num_location_negatives=6, patch_size=8,
                                   search_window=16)
    settings = dict(pretrain_root=str(paired), pretrain_layout="rain13k", real_root=str(real), width=4,
                    num_blocks=2, pretrain_steps=3, steps=3, crop_size=32, batch_size=2, learning_rate=1e-3,
                    sampling=sampling, checkpoint_every=2, device="cpu")
    return ANLCLConfig(**(settings | overrides))


def _batch(config: ANLCLConfig, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, config.crop_size, config.crop_size, generator=g), \
        torch.rand(2, 3, config.crop_size, config.crop_size, generator=g)


def test_a_stage_two_step_moves_every_head_both_generators_and_d(tmp_path):
    config = tiny_config(tmp_path, learning_rate=1e-2)
    torch.manual_seed(0)
    networks = build_networks(config)
    g_opt = torch.optim.Adam(networks.generator_parameters(), lr=config.learning_rate)
    d_opt = torch.optim.Adam(networks.discriminator_parameters(), lr=config.learning_rate)
    before = {name: p.detach().clone() for name, p in networks.named_parameters()}
    keys_before = [p.detach().clone() for p in networks.key_encoder.parameters()]
    rainy, clean = _batch(config)
    terms, d_loss = training_step(networks, config, 0, rainy, clean, paired=False)
    assert {"layer", "location", "asymmetric", "consistency", "rain_sparsity", "background_prior"} <= set(terms)
    g_opt.zero_grad()
    terms["total"].backward()
    assert all(p.grad is None for p in networks.discriminator_parameters())  # D frozen in the generator backward
    g_opt.step()
    networks.momentum_update()
    d_opt.zero_grad()
    d_loss.backward()
    d_opt.step()
    after = dict(networks.named_parameters())
    for prefix in ("layer_heads.", "location_heads.", "deraining.image_generator.", "deraining.rain_generator.",
                   "discriminator."):
        moved = {name: not torch.equal(before[name], after[name]) for name in before if name.startswith(prefix)}
        assert moved and all(moved.values()), f"unchanged after a step: {[n for n, m in moved.items() if not m]}"
    assert all(not torch.equal(a, b) for a, b in zip(keys_before, networks.key_encoder.parameters()))


def test_the_discriminator_steps_on_its_own_gradient_only(tmp_path):
    config = tiny_config(tmp_path)
    torch.manual_seed(0)
    networks = build_networks(config)
    rainy, clean = _batch(config)
    terms, d_loss = training_step(networks, config, 0, rainy, clean, paired=False)
    terms["total"].backward()
    for p in networks.discriminator_parameters():  # as a contrastive backward through an unfrozen D would
        p.grad = torch.ones_like(p)
    d_params = networks.discriminator_parameters()
    expected = torch.autograd.grad(d_loss, d_params, retain_graph=True)
    optimizer = torch.optim.SGD(d_params, lr=1.0)
    optimizer.zero_grad(set_to_none=True)
    d_loss.backward()
    for p, g in zip(d_params, expected):
        torch.testing.assert_close(p.grad, g)


def test_stage_one_is_supervised_without_contrastive_terms(tmp_path):
    config = tiny_config(tmp_path)
    networks = build_networks(config)
    rainy, clean = _batch(config)
    terms, _ = training_step(networks, config, 0, rainy, clean, paired=True)
    assert {"supervised_background", "supervised_rain"} <= set(terms)
    assert not {"layer", "location", "asymmetric"} & set(terms)


def test_both_stages_run_and_log_per_epoch(tmp_path):
    config = tiny_config(tmp_path)
    result = train_anlcl(config, tmp_path / "run", progress=False)
    assert result.steps == 6 and result.collapsed is None
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert list(log["stage"]) == [1, 1, 2, 2] and list(log["step"]) == [2, 3, 5, 6]  # 2 steps per epoch of 4 images
    assert log.loc[log.stage == 1, "supervised_background"].notna().all()
    assert log.loc[log.stage == 2, ["layer", "location", "asymmetric"]].notna().all().all()
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    again = train_anlcl(config, tmp_path / "run", progress=False)  # a finished run is read back
    assert again.resumed_from == 6


def test_training_asks_whether_bf16_is_emulated(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(train_anlcl_module, "warn_if_bf16_is_emulated", lambda *args: asked.append(args))
    train_anlcl(tiny_config(tmp_path, pretrain_steps=1, steps=1, bf16=True), tmp_path / "run", progress=False)
    assert asked == [(True, torch.device("cpu"), tmp_path / "run")]  # once for both stages


@pytest.mark.parametrize("stop_at", [2, 4, "4 from stage 1"])  # inside stage 1, inside stage 2
def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, stop_at):
    config = tiny_config(tmp_path, checkpoint_every=1 if stop_at != 2 else 2)
    if stop_at == "4 from stage 1":  # stage 2 started from a stage-1 run
        train_anlcl(dataclasses.replace(config, steps=0), tmp_path / "stage1", progress=False)
        config, stop_at = dataclasses.replace(config, init_weights=str(tmp_path / "stage1" / "model.pt")), 4
    train_anlcl(config, tmp_path / "whole", progress=False)

    def stop(step, values):
        if step == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_anlcl(config, tmp_path / "parts", progress=False, on_step=stop)
    resumed = train_anlcl(config, tmp_path / "parts", progress=False)
    assert resumed.resumed_from == stop_at
    whole, _ = load_networks(tmp_path / "whole" / "model.pt")
    parts, _ = load_networks(tmp_path / "parts" / "model.pt")
    for (name, a), b in zip(whole.state_dict().items(), parts.state_dict().values()):
        assert torch.equal(a, b), name
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "whole" / "log.csv").drop(columns="wall_time_s"),
                                  pd.read_csv(tmp_path / "parts" / "log.csv").drop(columns="wall_time_s"))


def _stage_weights(state: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(("deraining.", "discriminator."))}


def test_stage_one_alone_equals_the_first_stage_of_a_whole_run_and_stage_two_starts_from_it(tmp_path):
    config = tiny_config(tmp_path)

    def stop(step, values):
        if step == config.pretrain_steps:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the whole run's checkpoint at the end of stage 1
        train_anlcl(config, tmp_path / "whole", progress=False, on_step=stop)
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["networks"]
    stage1 = train_anlcl(dataclasses.replace(config, steps=0), tmp_path / "stage1", progress=False)
    assert stage1.steps == config.pretrain_steps
    alone, _ = load_networks(tmp_path / "stage1" / "model.pt")
    for name, value in _stage_weights(whole).items():
        assert torch.equal(value, alone.state_dict()[name]), name

    started = {}

    def first(step, values):
        if not started:
            started["step"] = step

    config2 = dataclasses.replace(config, init_weights=str(tmp_path / "stage1" / "model.pt"), encoder="image_generator")
    result = train_anlcl(config2, tmp_path / "stage2", progress=False, on_step=first)
    assert started["step"] == config.pretrain_steps + 1 and result.steps == config.total_steps
    log = pd.read_csv(tmp_path / "stage2" / "log.csv")
    assert list(log["stage"]) == [2, 2] and list(log["step"]) == [5, 6]


def test_stage_one_steps_with_its_own_learning_rate_and_stage_two_with_the_run_s(tmp_path, monkeypatch):
    """``pretrain_learning_rate`` is Adam's step size in stage 1 only, also across a resume at the stage boundary."""
    import derainlib.train_anlcl as module

    config = tiny_config(tmp_path, pretrain_learning_rate=5e-3, learning_rate=2e-4)
    assert config.stage_learning_rate(1) == 5e-3 and config.stage_learning_rate(2) == 2e-4
    assert tiny_config(tmp_path).stage_learning_rate(1) == tiny_config(tmp_path).learning_rate  # None: the same
    seen: list[tuple[float, float]] = []
    original = module.apply_step

    def record(networks, optimizer_g, optimizer_d, loss, d_loss):
        seen.append((optimizer_g.param_groups[0]["lr"], optimizer_d.param_groups[0]["lr"]))
        original(networks, optimizer_g, optimizer_d, loss, d_loss)

    monkeypatch.setattr(module, "apply_step", record)

    def stop(step, values):
        if step == config.pretrain_steps:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_anlcl(config, tmp_path / "run", progress=False, on_step=stop)
    train_anlcl(config, tmp_path / "run", progress=False)  # resumes at the first step of stage 2
    assert seen == [(5e-3, 5e-3)] * config.pretrain_steps + [(2e-4, 2e-4)] * config.steps


def test_stage_two_takes_only_what_stage_one_trained_and_starts_moco_from_the_online_encoder(tmp_path):
    config = tiny_config(tmp_path)
    train_anlcl(dataclasses.replace(config, steps=0), tmp_path / "stage1", progress=False)
    from derainlib.train_anlcl import start_after_stage_1

    config2 = dataclasses.replace(config, init_weights=str(tmp_path / "stage1" / "model.pt"))
    networks = build_networks(config2)
    assert start_after_stage_1(networks, config2, torch.device("cpu")) == config.pretrain_steps
    saved = torch.load(tmp_path / "stage1" / "model.pt", weights_only=False)["networks"]
    for name, value in _stage_weights(saved).items():
        assert torch.equal(networks.state_dict()[name], value), name
    online = [*networks.discriminator.feature_layers.parameters(), *networks.layer_heads.parameters()]
    keys = [*networks.key_encoder.feature_layers.parameters(), *networks.key_encoder.heads.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(online, keys))


def test_stage_two_refuses_a_stage_one_run_with_other_stage_one_settings(tmp_path):
    config = tiny_config(tmp_path)
    train_anlcl(dataclasses.replace(config, steps=0), tmp_path / "stage1", progress=False)
    other = dataclasses.replace(config, init_weights=str(tmp_path / "stage1" / "model.pt"), learning_rate=0.5)
    with pytest.raises(ValueError, match="learning_rate"):
        train_anlcl(other, tmp_path / "stage2", progress=False)
    in_bf16 = dataclasses.replace(config, init_weights=str(tmp_path / "stage1" / "model.pt"), bf16=True,
                                  channels_last=True, steps=1)  # another arithmetic is not another stage 1
    assert train_anlcl(in_bf16, tmp_path / "stage2bf16", progress=False).steps == config.pretrain_steps + 1
    supervised = dataclasses.replace(config.loss_weights, supervised_background=7.0)  # a stage-1 weight in loss_weights
    with pytest.raises(ValueError, match="stage-1 loss weights"):
        train_anlcl(dataclasses.replace(config, init_weights=str(tmp_path / "stage1" / "model.pt"),
                                        loss_weights=supervised), tmp_path / "stage2w", progress=False)
    train_anlcl(config, tmp_path / "whole", progress=False)
    with pytest.raises(ValueError, match="not a finished stage-1 run"):  # a whole run is not stage 1 alone
        train_anlcl(dataclasses.replace(config, init_weights=str(tmp_path / "whole" / "model.pt")),
                    tmp_path / "stage2b", progress=False)
    with pytest.raises(FileNotFoundError, match="train it first"):
        train_anlcl(dataclasses.replace(config, init_weights=str(tmp_path / "missing" / "model.pt")),
                    tmp_path / "stage2c", progress=False)


def test_a_changed_config_is_refused_on_resume(tmp_path):
    config = tiny_config(tmp_path)

    def stop(step, values):
        if step == 2:  # after the first checkpoint
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_anlcl(config, tmp_path / "run", progress=False, on_step=stop)
    with pytest.raises(ValueError, match="learning_rate"):
        train_anlcl(dataclasses.replace(config, learning_rate=0.5), tmp_path / "run", progress=False)


def test_a_non_finite_loss_stops_the_run(tmp_path, monkeypatch):
    from derainlib import train_anlcl as module

    config = tiny_config(tmp_path)
    real_step = module.training_step

    def poisoned(networks, config, step, rainy, clean, **kwargs):
        terms, d_loss = real_step(networks, config, step, rainy, clean, **kwargs)
        if step == 3:
            terms["total"] = terms["total"] * float("nan")
        return terms, d_loss

    monkeypatch.setattr(module, "training_step", poisoned)
    with pytest.raises(TrainingDiverged, match="step 4 .stage=2"):
        train_anlcl(config, tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 3 and not (tmp_path / "run" / "model.pt").exists()


def test_the_collapse_rule():
    config = ANLCLConfig(pretrain_root="paired", real_root="real", collapse_out_of_range=0.25, collapse_min_std=0.005)
    assert collapse_verdict(60, [0.1] * 50, [0.2] * 50, config) is None
    assert "saturated" in collapse_verdict(60, [0.5] * 50, [0.2] * 50, config)["reason"]
    assert "flat" in collapse_verdict(60, [0.0] * 50, [0.001] * 50, config)["reason"]
    assert collapse_verdict(60, [float("nan")] * 50, [0.2] * 50, config) is not None  # NaN counts as collapsed


def test_a_collapsed_run_stops_and_says_so(tmp_path):
    config = tiny_config(tmp_path, collapse_window=1, collapse_min_std=10.0)  # every output is "flat"
    result = train_anlcl(config, tmp_path / "run", progress=False)
    assert result.steps == config.pretrain_steps + 1 and "flat" in result.collapsed["reason"]
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=False)
    assert saved["collapsed"] == result.collapsed and saved["step"] == result.steps


def test_derain_reads_an_anlcl_model(tmp_path):
    config = tiny_config(tmp_path, pretrain_steps=1, steps=1)
    train_anlcl(config, tmp_path / "run", progress=False)
    model, loaded = load_model(tmp_path / "run" / "model.pt")
    assert isinstance(loaded, ANLCLConfig) and loaded.width == 4
    image = tmp_path / "data" / "real" / "1.png"
    out = tmp_path / "out.png"
    assert cli.main([str(image), str(out), "--checkpoint", str(tmp_path / "run" / "model.pt"), "--device", "cpu"]) == 0
    written = read_image(out)
    with torch.no_grad():
        expected = model(torch.from_numpy(read_image(image)).permute(2, 0, 1)[None].float() / 255).derained
    assert written.shape == (40, 40, 3)
    assert np.abs(written.astype(float) - (expected[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255)).max() <= 1.0


def test_model_pt_leaves_out_the_momentum_encoder_and_can_keep_the_deraining_network_alone(tmp_path):
    config = tiny_config(tmp_path, pretrain_steps=1, steps=2)
    train_anlcl(config, tmp_path / "run", progress=False)
    path = tmp_path / "run" / "model.pt"
    saved = torch.load(path, weights_only=False)
    assert saved["networks"] and not any(key.startswith("key_encoder.") for key in saved["networks"])
    networks, _ = load_networks(path)  # the momentum encoder comes back as a copy of the online one
    key, online = networks.key_encoder.state_dict(), networks.discriminator.state_dict()
    assert any(name.startswith("feature_layers") for name in key)
    assert all(torch.equal(key[name], online[name]) for name in online if name in key)
    image = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        before = load_model(path)[0](image).derained
    size = path.stat().st_size
    keep_deraining_only(path)
    keep_deraining_only(path)  # idempotent
    assert path.stat().st_size < size / 2
    assert set(torch.load(path, weights_only=False)["networks"]) == {f"deraining.{k}" for k in
                                                                    networks.deraining.state_dict()}
    with torch.no_grad():
        assert torch.equal(load_model(path)[0](image).derained, before)
    with pytest.raises(ValueError, match=r"model\.pt: this model\.pt keeps only the deraining network"):
        load_networks(path)


# ----------------------------------------------------------------------------- two processes (gloo)


def _train_anlcl(config: dict, run_dir: str) -> None:
    train_anlcl(ANLCLConfig(**config), run_dir, progress=False)


@pytest.mark.slow  # two processes start torch: ~30 s on 2 cores
def test_two_processes_take_stage_ones_step_of_one_process_and_finish_stage_two(tmp_path):
    from test_distributed import spawn_ranks

    one = tiny_config(tmp_path, batch_size=4, pretrain_steps=2, steps=1)
    train_anlcl(dataclasses.replace(one, steps=0, real_root=""), tmp_path / "one", progress=False)
    # stage 1 only in two processes: averaged gradients of half batches are the whole batch's gradient
    config = dataclasses.replace(one, steps=0, real_root="").as_dict()
    spawn_ranks(_train_anlcl, config=config, run_dir=str(tmp_path / "two"))
    a, _ = load_networks(tmp_path / "one" / "model.pt")
    b, _ = load_networks(tmp_path / "two" / "model.pt")
    # Outputs, not weights: a conv bias before instance norm has a zero gradient up to rounding, which Adam's
    # first steps (about lr × sign) turn into different but inert values; gradients near zero elsewhere can flip
    # sign the same way, which moves a few output values by a few 1e-4.
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for f in (lambda n: n(x).derained, lambda n: n(x).rain, lambda n: n.discriminator(x)):
            torch.testing.assert_close(f(a), f(b), rtol=1e-4, atol=5e-4)
    # both stages in two processes: rank 0 writes one finished run
    spawn_ranks(_train_anlcl, config=one.as_dict(), run_dir=str(tmp_path / "both"))
    assert list(pd.read_csv(tmp_path / "both" / "log.csv")["stage"]) == [1, 1, 2]  # one step per epoch of 4 images


def test_the_neck_norm_follows_the_config_and_older_runs_load_with_the_norm_they_trained_with(tmp_path):
    from derainlib.train_anlcl import _config_from

    config = tiny_config(tmp_path)
    assert not config.neck_norm and isinstance(build_networks(config).deraining.image_generator.neck[1],
                                               torch.nn.Identity)
    public = dataclasses.replace(config, neck_norm=True)
    assert isinstance(build_networks(public).deraining.rain_generator.neck[1], torch.nn.InstanceNorm2d)
    saved = config.as_dict()
    del saved["neck_norm"]  # a model.pt written before the option existed: the public code's neck
    assert _config_from(saved).neck_norm and not _config_from(config.as_dict()).neck_norm
    del saved["norms"]  # ... and before Eq. (2)'s norms could be sums: they were means
    assert _config_from(saved).norms == "mean" and _config_from(config.as_dict()).norms == config.norms == "sum"


def test_a_config_with_an_unknown_rain_prior_target_or_norm_reading_is_refused_before_training():
    with pytest.raises(ValueError, match="rain_prior_on='image'"):
        ANLCLConfig(pretrain_root="paired", real_root="real", rain_prior_on="image")
    with pytest.raises(ValueError, match="norms='max'"):
        ANLCLConfig(pretrain_root="paired", real_root="real", norms="max")
    assert ANLCLConfig(pretrain_root="paired", real_root="real", rain_prior_on="residual").rain_prior_on == "residual"

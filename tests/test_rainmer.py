"""Rainmer's encoder, its MoCo losses and negatives, the trainer's resume, and the representation analyses."""

from __future__ import annotations

import dataclasses
import sys
import types

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from derainlib.analysis import rainmer as analysis
from derainlib.losses.rainmer import (ColourArchive, EmbeddingQueue, RainLayerBank, info_nce, momentum_update,
                                      most_dissimilar_colours, recolour)
from derainlib.models.rainmer import NUM_EXPERTS, NUM_STAGES, AirNetEncoder, MixtureOfExperts, RainmerEncoder
from derainlib.profiles import get_profile


def test_moe_weights_are_a_softmax_over_the_experts_of_each_stage():
    torch.manual_seed(0)
    moe = MixtureOfExperts(channels=8, hidden=6)
    x = torch.randn(3, 8, 12, 12)
    weights = moe.expert_weights(x)
    assert weights.shape == (3, NUM_STAGES, NUM_EXPERTS)
    assert torch.allclose(weights.sum(dim=-1), torch.ones(3, NUM_STAGES), atol=1e-6)
    assert (weights > 0).all()
    assert moe(x).shape == x.shape and (moe(x) >= 0).all()  # ReLU after the residual (Eq. (3))


def test_projector_outputs_are_unit_vectors():
    torch.manual_seed(0)
    out = RainmerEncoder(width=8, embed_dim=16, moe_hidden=8)(torch.rand(2, 3, 20, 20))
    for vectors in (out.chromatic, out.degradation):
        assert vectors.shape == (2, 16)
        assert torch.allclose(vectors.norm(dim=1), torch.ones(2), atol=1e-5)
    airnet = AirNetEncoder(width=4).eval()(torch.rand(2, 3, 20, 20))
    assert torch.allclose(airnet.norm(dim=1), torch.ones(2), atol=1e-5)


def test_relationship_matrix_is_symmetric_and_the_mean_pairwise_cosine():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(7, 4))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.array(["a", "a", "a", "b", "b", "c", "c"])
    matrix = analysis.relationship_matrix(vectors, labels, ["a", "b", "c"])
    assert np.allclose(matrix.to_numpy(), matrix.to_numpy().T)
    for x in "abc":
        for y in "abc":
            by_hand = np.mean([u @ v for u in vectors[labels == x] for v in vectors[labels == y]])
            assert matrix.loc[x, y] == pytest.approx(by_hand)


def test_spherical_umap_uses_the_supplements_parameters(monkeypatch):
    captured = {}

    class FakeUMAP:
        def __init__(self, **kwargs):
            captured.update(kwargs)

        def fit_transform(self, vectors):
            return np.column_stack([np.full(len(vectors), np.pi / 2), np.zeros(len(vectors))])

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    coords = analysis.spherical_umap(np.eye(5)[:, :3], n_epochs=7)
    assert captured == {"n_neighbors": 4, "metric": "cosine", "output_metric": "haversine", "min_dist": 0.0,
                        "random_state": 42, "n_epochs": 7}  # 50 capped below the 5 samples
    # θ = π/2, φ = 0 is the point (1, 0, 0): longitude 0, latitude 0
    assert np.allclose(coords[["longitude", "latitude"]].to_numpy(), 0.0, atol=1e-9)
    captured.clear()
    analysis.spherical_umap(np.random.default_rng(0).normal(size=(80, 3)))
    assert captured["n_neighbors"] == 50


def test_bootstrap_intervals_contain_the_point_estimates():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(60, 5)) + np.repeat(np.eye(5)[:3], 20, axis=0)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.repeat(["a", "b", "c"], 20)
    table = analysis.bootstrap_relationships(vectors, labels, ["a", "b", "c"], resamples=300)
    assert len(table) == 6
    assert ((table["low"] <= table["score"]) & (table["score"] <= table["high"])).all()
    assert (table["high"] > table["low"]).all()


def test_key_encoder_moves_by_momentum():
    query, key = nn.Linear(3, 2), nn.Linear(3, 2)
    before = key.weight.detach().clone()
    momentum_update(key, query, 0.999)
    assert torch.allclose(key.weight, 0.999 * before + 0.001 * query.weight.detach())


def test_info_nce_prefers_the_positive_and_masks_missing_negatives():
    q = torch.tensor([[1.0, 0.0]])
    good = info_nce(q, torch.tensor([[1.0, 0.0]]), torch.tensor([[[0.0, 1.0]]]), temperature=0.1)
    bad = info_nce(q, torch.tensor([[0.0, 1.0]]), torch.tensor([[[1.0, 0.0]]]), temperature=0.1)
    assert good < bad
    masked = info_nce(q, torch.tensor([[1.0, 0.0]]), torch.tensor([[[1.0, 0.0]]]), temperature=0.1,
                      negative_mask=torch.tensor([[False]]))
    assert masked == pytest.approx(0.0, abs=1e-6)
    queue = EmbeddingQueue(2, 3)
    queue.push(torch.eye(2).repeat(3, 1))
    assert len(queue.read()) == 3


def test_rain_layer_bank_keeps_the_newest_256():
    bank = RainLayerBank(capacity=256)
    for start in range(0, 300, 50):
        bank.push(torch.arange(start, start + 50, dtype=torch.float32).view(50, 1, 1, 1).expand(50, 3, 2, 2))
    assert len(bank) == 256
    assert bank.layers[0, 0, 0, 0] == 300 - 256 and bank.layers[-1, 0, 0, 0] == 299
    negatives = bank.negatives(torch.zeros(2, 3, 2, 2), 3)
    assert negatives.shape == (2, 3, 3, 2, 2)
    assert (negatives[:, 0] == 0).all()  # the clean crop itself comes first


def test_chromatic_negatives_take_the_most_dissimilar_archive_colours():
    archive = torch.tensor([[0.5, 0.5, 0.5], [0.9, 0.1, 0.1], [0.5, 0.4, 0.5], [0.1, 0.1, 0.9]])
    picked = most_dissimilar_colours(torch.tensor([0.5, 0.5, 0.5]), archive, 2)
    assert sorted(round(float(row[0]), 3) for row in picked) == [0.1, 0.9]  # not the greys near (0.5, 0.5, 0.5)
    image = torch.full((3, 4, 4), 0.5)
    recoloured = recolour(image, torch.tensor([0.2, 0.3, 0.4]))
    assert torch.allclose(recoloured.mean(dim=(1, 2)), torch.tensor([0.2, 0.3, 0.4]), atol=1e-6)
    colours = ColourArchive(8)
    colours.push(archive)
    negatives = colours.negatives(image[None], 1)
    assert negatives.shape == (1, 1, 3, 4, 4)
    assert torch.allclose(negatives[0, 0].mean(dim=(1, 2)), torch.tensor([0.9, 0.1, 0.1]), atol=1e-6) or \
        torch.allclose(negatives[0, 0].mean(dim=(1, 2)), torch.tensor([0.1, 0.1, 0.9]), atol=1e-6)


def test_rank_correlation_on_a_hand_example():
    result = analysis.rank_correlation([1, 2, 3, 4], [10, 30, 20, 40])
    # ranks (1,2,3,4) vs (1,3,2,4): rho = 1 - 6*2/(4*15) = 0.8; tau = (5 - 1)/6
    assert result["spearman"] == pytest.approx(0.8)
    assert result["kendall"] == pytest.approx(4 / 6)
    assert result["pairs"] == 4


def test_transfer_pairs_skip_the_diagonal_and_average_seeds():
    relationship = pd.DataFrame([[1.0, 0.2], [0.2, 1.0]], index=["a", "b"], columns=["a", "b"])
    transfer = pd.DataFrame({"train_domain": ["a", "a", "a", "b"], "test_domain": ["b", "b", "a", "a"],
                             "gain_y": [1.0, 3.0, 9.0, 4.0]})
    pairs = analysis.transfer_pairs(relationship, transfer)
    assert sorted(zip(pairs.train_domain, pairs.test_domain, pairs.gain_y)) == [("a", "b", 2.0), ("b", "a", 4.0)]


def test_own_neighbour_share_and_silhouette_see_separated_sets():
    rng = np.random.default_rng(0)
    vectors = np.concatenate([rng.normal([5, 0, 0], 0.1, (15, 3)), rng.normal([0, 5, 0], 0.1, (15, 3))])
    labels = np.repeat(["x", "y"], 15)
    assert (analysis.own_neighbour_share(vectors, labels, k=5) == 1.0).all()
    assert analysis.silhouette(vectors, labels) > 0.9
    assert analysis.knn_accuracy(vectors, labels) == 1.0


def _tiny_benchmark(root):
    from derainlib.data.imageio import write_image

    rng = np.random.default_rng(0)
    for i in range(1, 5):
        clean = rng.integers(0, 200, (24, 28, 3), dtype=np.uint8)
        rainy = np.clip(clean.astype(int) + rng.integers(0, 55, clean.shape), 0, 255).astype(np.uint8)
        write_image(root / "Rain200H" / "train" / "rain" / "X2" / f"norain-{i}x2.png", rainy)
        write_image(root / "Rain200H" / "train" / "norain" / f"norain-{i}.png", clean)
        write_image(root / "RealProxy" / "train" / "input" / f"{i}.png", rainy[::-1].copy())
    return root


def test_training_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    from derainlib.train_rainmer import RainmerConfig, load_encoder, train_rainmer

    root = _tiny_benchmark(tmp_path / "data")
    config = RainmerConfig(data_root=str(root), domains=("rain200h", "realproxy"), encoder="rainmer", width=4,
                           embed_dim=8, moe_hidden=4, crop_size=12, batch_size=2, steps=2, queue_size=4,
                           colour_archive_size=8, chromatic_negatives=2, degradation_negatives=2, checkpoint_every=1,
                           channels_last=False)
    whole = train_rainmer(config, tmp_path / "whole", progress=False)
    assert whole.steps == 2 and np.isfinite(whole.log["total"]).all()

    class Stop(Exception):
        pass

    def stop_at_1(step, values):
        if step == 1:
            raise Stop

    with pytest.raises(Stop):
        train_rainmer(config, tmp_path / "parted", progress=False, on_step=stop_at_1)
    resumed = train_rainmer(config, tmp_path / "parted", progress=False)
    assert resumed.resumed_from == 1 and resumed.steps == 2
    a, _ = load_encoder(tmp_path / "whole" / "model.pt")
    b, _ = load_encoder(tmp_path / "parted" / "model.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    assert not (tmp_path / "parted" / "checkpoint.pt").exists()


def test_a_committed_checkpoint_resumes_in_another_clone_and_a_changed_setting_is_refused(tmp_path):
    import dataclasses
    import shutil

    from derainlib.train_rainmer import RainmerConfig, train_rainmer

    here = _tiny_benchmark(tmp_path / "clone-a" / "benchmark" / "cpu-v2")
    config = RainmerConfig(data_root=str(here), domains=("rain200h", "realproxy"), encoder="rainmer", width=4,
                           embed_dim=8, moe_hidden=4, crop_size=12, batch_size=2, steps=2, queue_size=4,
                           colour_archive_size=8, chromatic_negatives=2, degradation_negatives=2, checkpoint_every=1,
                           channels_last=False)

    def stop_at_1(step, values):
        if step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_rainmer(config, tmp_path / "run", progress=False, on_step=stop_at_1)
    there = tmp_path / "clone-b" / "benchmark" / "cpu-v2"  # the same benchmark in another checkout
    shutil.copytree(here, there)
    with pytest.raises(ValueError, match="learning_rate"):
        train_rainmer(dataclasses.replace(config, data_root=str(there), learning_rate=0.5), tmp_path / "run",
                      progress=False)
    resumed = train_rainmer(dataclasses.replace(config, data_root=str(there)), tmp_path / "run", progress=False)
    assert resumed.resumed_from == 1 and resumed.steps == 2


def test_the_transfer_test_reads_renderer_matched_drdnet_runs_that_the_semi_drdnet_queue_trains(monkeypatch, tmp_path):
    from derainlib.experiments import rainmer_runs
    from derainlib.experiments import semi_drdnet_runs

    specs = rainmer_runs.drdnet_specs("cpu")
    queue = {spec.run_id for spec in semi_drdnet_runs.study_queue("cpu")}
    assert {spec.renderer_version for spec in specs} == {rainmer_runs.RENDERER_VERSION}
    assert {spec.run_id for spec in specs} <= queue and "rain200h-bl_se_sdcab-m16b8-v2-s0" in {s.run_id for s in specs}
    monkeypatch.setattr(rainmer_runs, "results_dir", lambda name: tmp_path)
    with pytest.raises(FileNotFoundError, match="--only rain200l-bl_se_sdcab-m16b8-v2-s0"):
        rainmer_runs.write_transfer_table("cpu", tmp_path / "out.csv")


def test_image_statistics_and_their_standardisation():
    image = torch.zeros(1, 3, 4, 4)
    image[0, 0, :, 2:] = 1.0  # red: a vertical edge between columns 1 and 2
    stats = analysis.ImageStatistics()(image)["statistics"][0]
    assert stats[:3].tolist() == [0.5, 0.0, 0.0]  # means
    assert stats[6:9].tolist() == pytest.approx([1 / 3, 0.0, 0.0])  # mean |horizontal difference|: one edge in 3
    assert stats[9:].tolist() == [0.0, 0.0, 0.0]  # no vertical change
    features = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]])
    scaled = analysis.standardized(features)
    assert np.allclose(np.linalg.norm(scaled, axis=1), 1.0) and np.all(scaled[:, 1] == 0)  # a constant column is 0
    z = (features[:, 0] - 3.0) / features[:, 0].std()  # the first column's z-scores, before each row's scaling
    assert np.allclose(scaled[:, 0] * np.linalg.norm([z, 0 * z, (features[:, 2] - 5) / features[:, 2].std()], axis=0), z)


def test_a_learned_space_beats_its_controls_only_when_both_numbers_are_above_both():
    from derainlib.experiments.rainmer_figures import against_controls

    def rows(seed, learned, untrained, statistics):
        return [{"run": f"rainmer-s{seed}", "space": space, "silhouette": s, "knn_accuracy": k}
                for space, (s, k) in (("degradation", learned), ("untrained degradation", untrained),
                                      ("statistics", statistics))]

    numbers = pd.DataFrame(rows(0, (0.2, 0.8), (0.0, 0.4), (0.05, 0.5)) + rows(1, (0.2, 0.45), (0.0, 0.4), (0.05, 0.5))
                           + [{"run": "airnet-s0", "space": "degradation", "silhouette": 0.1, "knn_accuracy": 0.9}])
    table = against_controls(numbers)
    assert table["beats controls"].tolist() == ["yes", "no", "no controls"]  # seed 1's k-NN is below the statistics'
    assert table.loc[0, "knn_accuracy statistics"] == 0.5 and table.loc[0, "silhouette untrained"] == 0.0


def test_the_untrained_control_is_the_runs_seeded_start():
    from derainlib.train_rainmer import RainmerConfig, initial_networks

    config = RainmerConfig(data_root="x", domains=("rain200h",), width=4, embed_dim=8, moe_hidden=4)
    a, b = initial_networks(config).state_dict(), initial_networks(config).state_dict()
    c = initial_networks(RainmerConfig(**(config.as_dict() | {"seed": 1}))).state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert any(not torch.equal(a[key], c[key]) for key in a)


def _fake_run(encoder, domain_set, order, spaces_of):
    """A RunSpaces of 8 images per domain, each space given by ``spaces_of(labels)`` (name -> N × D)."""
    from derainlib.experiments.rainmer_figures import RunSpaces
    from derainlib.experiments.rainmer_runs import RunSpec

    labels = np.repeat(np.array(order), 8)
    table = analysis.EmbeddingTable(labels, np.arange(len(labels)).astype(str), spaces_of(labels))
    return RunSpaces(RunSpec(encoder, domain_set, 0), list(order), table, table)


def test_every_picture_claim_is_also_checked_on_the_untrained_control():
    from derainlib.experiments.rainmer_figures import claim_table, untrained_view
    from derainlib.experiments.rainmer_runs import domains

    rng = np.random.default_rng(0)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def separated(labels):  # one direction per domain: every domain isolated
        names = sorted(set(labels))
        return unit(np.eye(16)[[names.index(label) for label in labels]] + 0.01 * rng.normal(size=(len(labels), 16)))

    def mixed(labels):
        return unit(rng.normal(size=(len(labels), 16)))

    def spaces(learned, start, names):
        return lambda labels: ({name: learned(labels) for name in names}
                               | {f"untrained {name}": start(labels) for name in names})

    both = ("chromatic", "degradation")
    runs = {"rainmer-fig2": _fake_run("rainmer", "fig2", domains("fig2", "ci"), spaces(separated, mixed, both)),
            "airnet-fig2": _fake_run("airnet", "fig2", domains("fig2", "ci"),
                                     spaces(separated, mixed, ("degradation",))),
            "rainmer-fig3": _fake_run("rainmer", "fig3", domains("fig3", "ci"), spaces(separated, mixed, both))}
    view = untrained_view(runs["rainmer-fig2"])
    assert set(view.table.spaces) == set(both)
    assert np.array_equal(view.vectors("chromatic"), runs["rainmer-fig2"].table.spaces["untrained chromatic"])

    table = claim_table({0: runs}, "ci").set_index("rule", append=True)
    untrained = table["untrained seeds holding"].tolist()
    assert untrained[0] == "—" and table["measured untrained"].iloc[0] == "—"  # C.1 is against the controls already
    isolated = table.xs("own-neighbour share ≥ 0.5", level="rule")
    assert (isolated["seeds holding"] == "1/1").all() and (isolated["untrained seeds holding"] == "0/1").all()
    assert "seed 0: " in table["measured untrained"].iloc[1]

    def learned_only(run):
        names = [name for name in run.table.spaces if not name.startswith("untrained")]
        return _fake_run(run.spec.encoder, run.spec.domain_set, run.order,
                         lambda labels: {name: mixed(labels) for name in names})

    without = {key: learned_only(run) for key, run in runs.items()}
    assert untrained_view(without["rainmer-fig2"]) is None
    assert set(claim_table({0: without}, "ci")["untrained seeds holding"]) == {"—"}


def test_fp32_training_is_bit_reproducible_and_the_check_finds_the_first_differing_step(ci_benchmark, monkeypatch):
    from derainlib.experiments import rainmer_runs

    spec = rainmer_runs.study_queue("ci")[0]
    table = rainmer_runs.reproducibility(spec, "ci", 3, data_root=ci_benchmark)
    assert list(table["precision"]) == ["fp32"]  # the ci profile trains without bf16
    assert table["first_differing_step"].item() == -1 and table["max_relative_difference"].item() == 0.0
    monkeypatch.setattr(rainmer_runs, "repeated_losses", lambda config: [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.3, 4.0]])
    bf16 = dataclasses.replace(get_profile("ci"), bf16=True)
    table = rainmer_runs.reproducibility(spec, bf16, 4, data_root=ci_benchmark)
    assert list(table["precision"]) == ["bf16 autocast", "fp32"]
    assert list(table["first_differing_step"]) == [2, 2] and list(table["differing_steps"]) == [1, 1]
    assert table["max_relative_difference"].iloc[0] == pytest.approx(0.1)

"""derainlib.analysis.embeddings: VGG-16 features of image sets, their t-SNE map and nearest-set distances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

from derainlib.analysis.embeddings import mean_nearest_distance, tsne_embedding, vgg_features
from derainlib.losses import VGG16Features, adain


@pytest.fixture(scope="module")
def vgg() -> VGG16Features:
    return VGG16Features("random")  # fixed-seed weights: no download, same every run


def images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def blobs(centre: float, n: int, dims: int, seed: int) -> np.ndarray:
    return centre + np.random.default_rng(seed).standard_normal((n, dims))


# --------------------------------------------------------------------------- vgg_features


@pytest.mark.parametrize("level, width", [(0, 128 * 8 * 8), (1, 256 * 4 * 4), (-1, 512 * 1 * 1)])
def test_features_are_one_flat_float64_row_per_image_at_each_level(vgg, level, width):
    x = images(3)
    feats = vgg_features(x, vgg, level=level)
    assert feats.shape == (3, width) and feats.dtype == np.float64
    with torch.no_grad():
        expected = vgg(x)[level].flatten(1).double().numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-6)
    assert np.isfinite(feats).all() and feats.std() > 0


def test_batching_does_not_change_the_features(vgg):
    x, style = images(5), images(5, seed=1)
    whole = vgg_features(x, vgg, level=1, style=style, batch_size=16)
    # 5 images in batches of 2: the last batch is short, and each image must keep its own style image.
    np.testing.assert_allclose(vgg_features(x, vgg, level=1, style=style, batch_size=2), whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(vgg_features(x, vgg, level=1, style=style, batch_size=16), whole)  # deterministic


def test_style_gives_each_image_the_channel_statistics_of_its_style_image(vgg):
    x, style = images(4), images(4, seed=1) * 0.3 + 0.6  # a brighter, flatter style set
    level = 0  # pool2: 8x8 positions per channel, so mean and spread are statistics
    moved = vgg_features(x, vgg, level=level, style=style).reshape(4, 128, -1)
    plain = vgg_features(x, vgg, level=level).reshape(4, 128, -1)
    with torch.no_grad():
        target = vgg(style)[level].double().flatten(2).numpy()
        expected = adain(vgg(x)[level], vgg(style)[level]).double().flatten(2).numpy()
    np.testing.assert_allclose(moved, expected, rtol=1e-5, atol=1e-5)
    # AdaIN's eps (1e-5 under the square root) only matters where a channel barely varies (ReLU zeros).
    live = (target.std(axis=2) > 0.03) & (plain.std(axis=2) > 0.03)
    assert live.sum() > 100
    np.testing.assert_allclose(moved.mean(axis=2), target.mean(axis=2), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(moved.std(axis=2)[live], target.std(axis=2)[live], rtol=1e-2)
    # Pairing matters: image i takes style i's statistics, not another's.
    swapped = vgg_features(x, vgg, level=level, style=style.flip(0)).reshape(4, 128, -1)
    assert not np.allclose(swapped.mean(axis=2), moved.mean(axis=2), atol=1e-3)
    assert not np.allclose(plain.mean(axis=2), target.mean(axis=2), atol=1e-3)  # without style: untouched


def test_images_too_small_for_pool5_are_refused(vgg):
    with pytest.raises(ValueError, match="pool5 needs H, W >= 32"):
        vgg_features(images(2, size=16), vgg)


def test_a_style_set_of_another_length_is_refused(vgg):
    with pytest.raises(ValueError, match="style"):
        vgg_features(images(3), vgg, style=images(1))


# --------------------------------------------------------------------------- tsne_embedding


def test_tsne_gives_one_labelled_point_per_sample_in_group_order():
    groups = {"a": blobs(0.0, 7, 20, seed=0), "b": blobs(0.0, 5, 20, seed=1)}
    table = tsne_embedding(groups, seed=0)
    assert list(table.columns) == ["group", "x", "y"]
    assert list(table["group"]) == ["a"] * 7 + ["b"] * 5
    assert np.isfinite(table[["x", "y"]].to_numpy()).all()


def test_tsne_is_repeatable_with_a_seed():
    groups = {"a": blobs(0.0, 15, 60, seed=0), "b": blobs(1.0, 15, 60, seed=1)}
    first = tsne_embedding(groups, seed=3)
    again = tsne_embedding(groups, seed=3)
    np.testing.assert_array_equal(first[["x", "y"]].to_numpy(), again[["x", "y"]].to_numpy())


def test_clearly_separated_sets_stay_separated_in_the_map():
    # Three sets 30 standard deviations apart in 200 dimensions (more than the 50 PCA keeps).
    groups = {name: blobs(30.0 * i, 20, 200, seed=i) for i, name in enumerate(("real", "synthetic", "augmented"))}
    table = tsne_embedding(groups, seed=0)
    xy, labels = table[["x", "y"]].to_numpy(), table["group"].to_numpy()
    _, nearest = NearestNeighbors(n_neighbors=2).fit(xy).kneighbors(xy)  # [:, 0] is the point itself
    assert (labels[nearest[:, 1]] == labels).all()
    assert silhouette_score(xy, labels) > 0.5


def test_fewer_samples_than_pca_dimensions_still_embed():
    table = tsne_embedding({"a": blobs(0.0, 3, 4, seed=0), "b": blobs(5.0, 3, 4, seed=1)}, seed=0, pca_dims=50)
    assert len(table) == 6 and np.isfinite(table[["x", "y"]].to_numpy()).all()


def test_groups_of_different_feature_widths_are_refused():
    with pytest.raises(ValueError):
        tsne_embedding({"a": blobs(0.0, 5, 10, seed=0), "b": blobs(0.0, 5, 12, seed=1)})


# --------------------------------------------------------------------------- mean_nearest_distance


def test_mean_nearest_distance_by_hand():
    source = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    target = np.array([[0.0, 0.0], [6.0, 8.0]])
    assert mean_nearest_distance(source, target) == pytest.approx((0.0 + 5.0 + 0.0) / 3)
    assert mean_nearest_distance(target, source) == pytest.approx(0.0)  # not symmetric: each target is in source
    assert mean_nearest_distance(source, source) == 0.0


def test_mean_nearest_distance_grows_with_the_gap_between_sets():
    base = blobs(0.0, 30, 16, seed=0)
    gaps = [mean_nearest_distance(base + shift, blobs(0.0, 30, 16, seed=1)) for shift in (0.0, 1.0, 5.0, 20.0)]
    assert gaps == sorted(gaps) and gaps[0] > 0
    assert gaps[-1] == pytest.approx(20.0 * 4, rel=0.15)  # far apart: about the shift's length, 20*sqrt(16)
    shifted = mean_nearest_distance(base + 7.0, blobs(0.0, 30, 16, seed=1) + 7.0)
    assert shifted == pytest.approx(gaps[0])  # moving both sets together changes nothing


@pytest.mark.parametrize("source, target", [
    (np.zeros((3, 2)), np.zeros((3, 3))),  # different feature widths
    (np.zeros((3, 2)), np.zeros((0, 2))),  # nothing to be near
])
def test_mean_nearest_distance_refuses_sets_that_cannot_be_compared(source, target):
    with pytest.raises(ValueError):
        mean_nearest_distance(source, target)

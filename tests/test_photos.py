"""Checks of the committed photo set (data/photos) and of derainlib.data.photos."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from derainlib.data import photos
from derainlib.data.errors import DatasetError


@pytest.fixture(scope="module")
def manifest():
    return photos.load_manifest()


@pytest.fixture(scope="module")
def hashes(manifest):
    # Recomputed from the files, not trusted from the collection script.
    return {name: photos.perceptual_hash(photos.photo_dir() / name) for name in manifest["file"]}


def test_manifest_size_and_columns(manifest):
    assert len(manifest) >= 150
    assert tuple(manifest.columns) == photos.MANIFEST_COLUMNS
    assert manifest["file"].is_unique


def test_files_match_checksums_and_sizes(manifest):
    for row in manifest.itertuples():
        path = photos.photo_dir() / row.file
        assert path.is_file(), row.file
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row.sha256, row.file
        with Image.open(path) as image:
            assert image.size == (row.width, row.height), row.file
            assert image.mode == "RGB", row.file
        assert max(row.width, row.height) <= 512, row.file


def test_every_row_has_provenance_and_licence(manifest):
    for column in ("source_package", "package_version", "path_in_package", "licence", "scene"):
        assert (manifest[column].str.strip() != "").all(), column


def test_split_proportions(manifest):
    assert set(manifest["split"]) == set(photos.SPLITS)
    shares = manifest["split"].value_counts(normalize=True)
    for split, target in {"train": 0.70, "val": 0.10, "test": 0.20}.items():
        assert abs(shares[split] - target) <= 0.05, (split, shares[split])


def test_no_scene_straddles_splits(manifest):
    splits_per_scene = manifest.groupby("scene")["split"].nunique()
    assert (splits_per_scene == 1).all(), list(splits_per_scene[splits_per_scene > 1].index)


def test_total_size_within_budget(manifest):
    total = sum((photos.photo_dir() / name).stat().st_size for name in manifest["file"])
    assert total <= 25 * 1024 * 1024


def test_no_near_duplicates_across_splits(manifest, hashes):
    rows = list(zip(manifest["file"], manifest["split"]))
    offenders = [
        (a, b)
        for i, (a, split_a) in enumerate(rows)
        for b, split_b in rows[i + 1:]
        if split_a != split_b and photos.hamming_distance(hashes[a], hashes[b]) <= photos.NEAR_DUPLICATE_BITS
    ]
    assert not offenders


def test_photo_paths_and_load_photo(manifest):
    everything = photos.photo_paths()
    assert [p.name for p in everything] == list(manifest["file"])
    by_split = {split: photos.photo_paths(split) for split in photos.SPLITS}
    assert sum(len(paths) for paths in by_split.values()) == len(everything)
    first = by_split["test"][0]
    image = photos.load_photo(first.name)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert np.array_equal(image, photos.load_photo(first))


def test_unknown_split_is_rejected():
    with pytest.raises(DatasetError, match="train, val, test"):
        photos.photo_paths("validation")


def test_missing_manifest_names_path(tmp_path, monkeypatch):
    monkeypatch.setenv(photos.PHOTOS_ENV_VAR, str(tmp_path))
    with pytest.raises(DatasetError, match=str(tmp_path)):
        photos.load_manifest()


def test_perceptual_hash_survives_rescaling(manifest):
    path = photos.photo_dir() / manifest["file"].iloc[0]
    original = photos.load_photo(path)
    smaller = np.asarray(Image.fromarray(original).resize((200, 150), Image.Resampling.BILINEAR))
    assert photos.hamming_distance(photos.perceptual_hash(original), photos.perceptual_hash(smaller)) <= 6

"""Tests for derainlib.data.datasets: every layout on a tiny fixture tree, crops, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from derainlib.data.datasets import (
    LAYOUTS,
    PairedImageDataset,
    UnpairedImageDataset,
    detect_layout,
    find_pairs,
)
from derainlib.data.errors import DatasetError

H, W = 10, 12  # every fixture image is 12 wide and 10 high (side-by-side files are 24 wide)
_counter = iter(range(1, 10_000))


def pattern(height: int = H, width: int = W) -> np.ndarray:
    """A new image whose pixels differ from every other image made in this session."""
    value = next(_counter)
    y, x = np.mgrid[0:height, 0:width]
    channels = [(value * 7 + y * 3 + x) % 256, (value * 13) % 256 + 0 * x, (value // 7 + x * y) % 256]
    return np.stack(channels, axis=2).astype(np.uint8)


def save(path: Path, image: np.ndarray | None = None) -> np.ndarray:
    """Write ``image`` (a fresh pattern by default) to ``path``; returns what the file holds."""
    image = pattern() if image is None else image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        return np.asarray(Image.open(path).convert("RGB"))  # lossy: compare with what was stored
    return image


# Each builder makes a tree under ``base`` and returns (root, [(name, rainy, clean), ...]) in the
# natural order the dataset must produce.
Expected = list[tuple[str, np.ndarray, np.ndarray]]


def build_rain200h(base: Path) -> tuple[Path, Expected]:
    root = base / "Rain200H" / "test"
    out = []
    for i in (1, 2, 10):  # 10 after 2: natural order
        clean = save(root / "norain" / f"norain-{i}.png")
        out.append((f"rain/X2/norain-{i}x2", save(root / "rain" / "X2" / f"norain-{i}x2.png"), clean))
    return root, out


def build_rain200l(base: Path) -> tuple[Path, Expected]:
    root = base / "Rain200L" / "train"
    out = []
    for i in (1, 2, 10):
        clean = save(root / "norain" / f"norain-{i}.png")
        out.append((f"rain/norain-{i}x2", save(root / "rain" / f"norain-{i}x2.bmp"), clean))  # bmp/png mix
    return root, out


def build_rain100(base: Path) -> tuple[Path, Expected]:
    root = base / "Rain100H"
    out = []
    for i in (1, 2, 100):
        clean = save(root / f"norain-{i:03d}.png")
        out.append((f"rain-{i:03d}", save(root / f"rain-{i:03d}.tif"), clean))
    save(root / "rainregion-001.png")  # JORDER's extra maps are ignored
    return root, out


def _side_by_side(root: Path, rainy_left: bool) -> Expected:
    out = []
    for i in (1, 2, 10):
        rainy, clean = pattern(), pattern()
        both = np.concatenate([rainy, clean] if rainy_left else [clean, rainy], axis=1)
        save(root / f"{i}.png", both)
        out.append((str(i), rainy, clean))
    return out


def build_rain800(base: Path) -> tuple[Path, Expected]:
    root = base / "Rain800" / "test"
    return root, _side_by_side(root, rainy_left=False)


def build_rain1200(base: Path) -> tuple[Path, Expected]:
    root = base / "DID-MDN-datasets" / "DID-MDN-test"
    return root, _side_by_side(root, rainy_left=True)


def build_rain13k(base: Path) -> tuple[Path, Expected]:
    root = base / "test" / "Rain100H"
    out = []
    for name in ("a1", "a2", "b"):
        clean = save(root / "target" / f"{name}.png")
        out.append((f"input/{name}", save(root / "input" / f"{name}.png"), clean))
    return root, out


def build_ddn(base: Path) -> tuple[Path, Expected]:
    root = base / "Rain1400" / "test"
    out = []
    for image_id in (901, 902):
        clean = save(root / "norain" / f"{image_id}.jpg")
        for k in (1, 2, 14):
            out.append((f"rain/{image_id}_{k}", save(root / "rain" / f"{image_id}_{k}.jpg"), clean))
    return root, out


def build_spa(base: Path) -> tuple[Path, Expected]:
    root = base / "Testing" / "real_test_1000"
    out = []
    for i in (0, 1, 12):
        clean = save(root / "gt" / f"{i:03d}gt.png")
        out.append((f"rain/{i:03d}", save(root / "rain" / f"{i:03d}.png"), clean))
    return root, out


def build_gtrain(base: Path) -> tuple[Path, Expected]:
    root = base / "GT-RAIN_test"
    out = []
    for scene in ("Gurutto_1-2", "Oinari_0-0"):
        clean = save(root / scene / f"{scene}-C-000.png")
        for k in (0, 1, 10):
            out.append((f"{scene}/{scene}-R-{k:03d}", save(root / scene / f"{scene}-R-{k:03d}.png"), clean))
    return root, out


def build_gtav_nightrain(base: Path) -> tuple[Path, Expected]:
    root = base / "GTAV-NightRain" / "set1" / "test"
    out = []
    for scene in ("0000", "0001"):
        clean = save(root / "gt" / f"{scene}.png")
        for k in ("00", "01"):
            out.append((f"rainy/{scene}_{k}", save(root / "rainy" / f"{scene}_{k}.png"), clean))
    return root, out


def build_snow100k(base: Path) -> tuple[Path, Expected]:
    root = base / "Snow100K-S"
    out = []
    for name in ("beautiful_smile_00001", "beautiful_smile_00002"):
        clean = save(root / "gt" / f"{name}.png")
        save(root / "mask" / f"{name}.png")
        out.append((f"synthetic/{name}", save(root / "synthetic" / f"{name}.png"), clean))
    return root, out


def build_raindrop(base: Path) -> tuple[Path, Expected]:
    root = base / "test_a"
    out = []
    for i, ext in ((0, "png"), (1, "bmp"), (2, "png")):
        clean = save(root / "gt" / f"{i}_clean.png")
        out.append((f"data/{i}_rain", save(root / "data" / f"{i}_rain.{ext}"), clean))
    return root, out


def build_raincityscapes(base: Path) -> tuple[Path, Expected]:
    root = base / "RainCityscapes"
    out = []
    scenes = (("train", "aachen", "aachen_000000_000019"), ("val", "frankfurt", "frankfurt_000000_000294"))
    for split, city, stem in scenes:
        clean = save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
        for pattern_id in (1, 2):
            name = f"{stem}_leftImg8bit_rain_alpha_0.01_beta_0.005_dropsize_0.01_pattern_{pattern_id}"
            rainy = save(root / "leftImg8bit_rain" / split / city / f"{name}.png")
            out.append((f"leftImg8bit_rain/{split}/{city}/{name}", rainy, clean))
    return root, out


BUILDERS = {
    "rain200h": build_rain200h,
    "rain200l": build_rain200l,
    "rain100": build_rain100,
    "rain800": build_rain800,
    "rain1200": build_rain1200,
    "rain13k": build_rain13k,
    "ddn": build_ddn,
    "spa": build_spa,
    "gtrain": build_gtrain,
    "gtav_nightrain": build_gtav_nightrain,
    "snow100k": build_snow100k,
    "raindrop": build_raindrop,
    "raincityscapes": build_raincityscapes,
}


def as_uint8_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.transpose(2, 0, 1).copy()).float() / 255


def test_every_layout_has_a_fixture():
    assert set(BUILDERS) == set(LAYOUTS)


@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_layout_detection_pairing_names_and_pixels(tmp_path, layout):
    root, expected = BUILDERS[layout](tmp_path / "data")
    assert detect_layout(root) == layout
    dataset = PairedImageDataset(root)
    assert dataset.layout == layout
    assert len(dataset) == len(dataset.pairs) == len(expected)
    assert [item[0] for item in expected] == [dataset[i]["name"] for i in range(len(dataset))]
    for i, (name, rainy, clean) in enumerate(expected):
        item = dataset[i]
        assert item["name"] == name
        for key, image in (("rainy", rainy), ("clean", clean)):
            tensor = item[key]
            assert tensor.dtype == torch.float32 and tensor.shape == (3, H, W)
            assert torch.equal(tensor, as_uint8_tensor(image)), f"{layout} item {i} {key} has the wrong pixels"
    # The same layout given explicitly gives the same pairs.
    assert find_pairs(root, layout) == dataset.pairs


def test_pairs_are_paths_and_rainy_paths_match_names(tmp_path):
    root, expected = build_gtrain(tmp_path)
    dataset = PairedImageDataset(root)
    for (rainy, clean), name in zip(dataset.pairs, dataset.names):
        assert rainy.exists() and clean.exists()
        assert rainy.relative_to(root).with_suffix("").as_posix() == name
        assert "C-000" in clean.name
    assert len(set(dataset.names)) == len(dataset.names)


def test_spa_repackaged_rainy_folder_with_same_names(tmp_path):
    root = tmp_path / "x" / "real_test_1000"
    rainy = save(root / "rainy" / "rain-001.png")
    clean = save(root / "gt" / "rain-001.png")
    dataset = PairedImageDataset(root)
    assert dataset.layout == "spa"
    assert torch.equal(dataset[0]["rainy"], as_uint8_tensor(rainy))
    assert torch.equal(dataset[0]["clean"], as_uint8_tensor(clean))


def test_gtav_same_name_pairing(tmp_path):
    root = tmp_path / "set2" / "train"
    clean = save(root / "gt" / "0007_03.png")
    save(root / "rainy" / "0007_03.png")
    dataset = PairedImageDataset(root, layout="gtav_nightrain")
    assert torch.equal(dataset[0]["clean"], as_uint8_tensor(clean))


def test_gray_and_rgba_partners_are_converted(tmp_path):
    root = tmp_path / "test" / "Rain100L"
    for folder in ("input", "target"):
        (root / folder).mkdir(parents=True)
    gray = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    Image.fromarray(gray, "L").save(root / "target" / "a.png")
    rgba = np.dstack([pattern(), np.full((H, W), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "input" / "a.png")
    item = PairedImageDataset(root)[0]
    assert torch.equal(item["clean"], as_uint8_tensor(np.repeat(gray[:, :, None], 3, axis=2)))
    assert torch.equal(item["rainy"], as_uint8_tensor(rgba[:, :, :3]))


# ----------------------------------------------------------------------------------------------
# Crops, flips and seeds
# ----------------------------------------------------------------------------------------------


def coordinate_image(height: int, width: int, blue: int) -> np.ndarray:
    """R = x, G = y: the crop's top-left pixel tells where it was taken."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x, y, np.full_like(x, blue)], axis=2).astype(np.uint8)


@pytest.fixture
def coordinate_pairs(tmp_path) -> Path:
    root = tmp_path / "coords"
    for i in range(6):
        save(root / "input" / f"{i}.png", coordinate_image(30, 40, blue=i))
        save(root / "target" / f"{i}.png", coordinate_image(30, 40, blue=100 + i))
    return root


def crop_origin(tensor: torch.Tensor) -> tuple[int, int]:
    """(left, top) of a crop of a coordinate image, flipped or not."""
    pixels = (tensor * 255).round().to(torch.int64)
    return int(pixels[0, 0].min()), int(pixels[1, 0, 0])


def test_crop_same_location_for_rainy_and_clean(coordinate_pairs):
    dataset = PairedImageDataset(coordinate_pairs, crop=8, seed=3)
    origins = set()
    for i in range(len(dataset)):
        item = dataset[i]
        assert item["rainy"].shape == item["clean"].shape == (3, 8, 8)
        assert crop_origin(item["rainy"]) == crop_origin(item["clean"])
        assert torch.equal(item["rainy"][:2], item["clean"][:2])  # same R, G: same pixels
        # Blue channel proves the partner is the right file.
        assert round(float(item["rainy"][2, 0, 0]) * 255) == i
        assert round(float(item["clean"][2, 0, 0]) * 255) == 100 + i
        origins.add(crop_origin(item["rainy"]))
    assert len(origins) > 1  # crops are random, not all at one place


def test_crop_reproducible_and_seed_and_epoch_dependent(coordinate_pairs):
    def origins(seed: int, epoch: int = 0) -> list:
        dataset = PairedImageDataset(coordinate_pairs, crop=8, seed=seed)
        dataset.set_epoch(epoch)
        return [crop_origin(dataset[i]["rainy"]) for i in range(len(dataset))]

    assert origins(1) == origins(1)
    assert origins(1) != origins(2)
    assert origins(1, epoch=0) != origins(1, epoch=1)
    # Reading items in another order does not change them: pure function of (seed, index, epoch).
    dataset = PairedImageDataset(coordinate_pairs, crop=8, seed=1)
    backwards = [crop_origin(dataset[i]["rainy"]) for i in reversed(range(len(dataset)))]
    assert backwards[::-1] == origins(1)


def test_crop_independent_of_num_workers(coordinate_pairs):
    dataset = PairedImageDataset(coordinate_pairs, crop=8, augment=True, seed=5)
    dataset.set_epoch(2)

    def batches(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(dataset, batch_size=2, shuffle=False, num_workers=workers)
        return [torch.cat([batch["rainy"], batch["clean"]]) for batch in loader]

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 3
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))


def test_augment_flips_both_images_together(coordinate_pairs):
    flips = []
    for epoch in range(4):
        dataset = PairedImageDataset(coordinate_pairs, crop=8, augment=True, seed=0)
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            item = dataset[i]
            assert torch.equal(item["rainy"][:2], item["clean"][:2])
            row = item["rainy"][0, 0]
            flips.append(bool(row[0] > row[-1]))  # R = x decreasing: flipped
    assert any(flips) and not all(flips)


def test_augment_does_not_move_the_crop(coordinate_pairs):
    plain = PairedImageDataset(coordinate_pairs, crop=8, seed=4)
    flipped = PairedImageDataset(coordinate_pairs, crop=8, augment=True, seed=4)
    for i in range(len(plain)):
        assert crop_origin(plain[i]["rainy"]) == crop_origin(flipped[i]["rainy"])


def test_side_by_side_crop(tmp_path):
    root, expected = build_rain1200(tmp_path)
    dataset = PairedImageDataset(root, crop=4, seed=0)
    item = dataset[0]
    assert item["rainy"].shape == item["clean"].shape == (3, 4, 4)


# ----------------------------------------------------------------------------------------------
# Unpaired folders
# ----------------------------------------------------------------------------------------------


def test_unpaired_folder_recursive_names_and_pixels(tmp_path):
    root = tmp_path / "Real200"
    files = {"1": "1.png", "10": "10.png", "2": "2.bmp", "sub/3": "sub/3.png"}
    images = {name: save(root / file) for name, file in files.items()}
    save(root / ".hidden.png")
    (root / "notes.txt").write_text("not an image")
    dataset = UnpairedImageDataset(root)
    assert dataset.names == ["1", "2", "10", "sub/3"]
    for i, name in enumerate(dataset.names):
        item = dataset[i]
        assert item["name"] == name and set(item) == {"rainy", "name"}
        assert torch.equal(item["rainy"], as_uint8_tensor(images[name]))


def test_unpaired_crop_seeded(tmp_path):
    root = tmp_path / "real"
    for i in range(4):
        save(root / f"{i}.png", coordinate_image(30, 40, blue=i))
    a = UnpairedImageDataset(root, crop=8, augment=True, seed=9)
    b = UnpairedImageDataset(root, crop=8, augment=True, seed=9)
    assert all(torch.equal(a[i]["rainy"], b[i]["rainy"]) for i in range(4))
    assert a[0]["rainy"].shape == (3, 8, 8)


def test_unpaired_crop_larger_than_image(tmp_path):
    save(tmp_path / "r" / "small.png")
    with pytest.raises(DatasetError, match=r"small\.png.*16x16.*12x10"):
        UnpairedImageDataset(tmp_path / "r", crop=16)


# ----------------------------------------------------------------------------------------------
# Bad input: each error names the file or folder
# ----------------------------------------------------------------------------------------------


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as info:
        PairedImageDataset(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
    with pytest.raises(DatasetError, match="nowhere"):
        UnpairedImageDataset(tmp_path / "nowhere")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty") as info:
        PairedImageDataset(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value)
    with pytest.raises(DatasetError, match="empty"):
        UnpairedImageDataset(tmp_path / "empty")


def test_empty_rainy_folder(tmp_path):
    (tmp_path / "input").mkdir()
    (tmp_path / "target").mkdir()
    with pytest.raises(DatasetError, match=r"input.*no images"):
        PairedImageDataset(tmp_path, layout="rain13k")


def test_unknown_layout_name(tmp_path):
    root, _ = build_rain13k(tmp_path)
    with pytest.raises(DatasetError, match="unknown layout 'rain9000'") as info:
        PairedImageDataset(root, layout="rain9000")
    for name in LAYOUTS:
        assert name in str(info.value)


def test_undetectable_layout_lists_every_layout(tmp_path):
    root = tmp_path / "mystery"
    save(root / "photos" / "a.png")  # images, but in no known structure
    with pytest.raises(DatasetError) as info:
        detect_layout(root)
    message = str(info.value)
    assert str(root) in message and "no known dataset layout" in message
    for name, layout in LAYOUTS.items():
        assert f"  {name}: {layout.expects}" in message.splitlines()


def test_rainy_without_clean(tmp_path):
    root, _ = build_rain200h(tmp_path)
    save(root / "rain" / "X2" / "norain-7x2.png")
    with pytest.raises(DatasetError) as info:
        PairedImageDataset(root)
    message = str(info.value)
    assert str(root / "rain" / "X2" / "norain-7x2.png") in message
    assert str(root / "norain" / "norain-7") in message


@pytest.mark.parametrize("layout", ["rain100", "ddn", "spa", "gtav_nightrain", "raindrop", "raincityscapes"])
def test_rainy_without_clean_every_two_file_layout(tmp_path, layout):
    root, expected = BUILDERS[layout](tmp_path)
    dataset = PairedImageDataset(root)
    # Remove one clean file: its rainy partners must now fail, naming the rainy file.
    _, clean_path = dataset.pairs[0]
    clean_path.unlink()
    with pytest.raises(DatasetError, match="no clean partner") as info:
        PairedImageDataset(root, layout=layout)
    assert str(dataset.pairs[0][0]) in str(info.value)


def test_gtrain_scene_without_clean(tmp_path):
    root, _ = build_gtrain(tmp_path)
    (root / "Oinari_0-0" / "Oinari_0-0-C-000.png").unlink()
    with pytest.raises(DatasetError, match=r"Oinari_0-0-R-000\.png.*C-000"):
        PairedImageDataset(root, layout="gtrain")


def test_size_mismatch_at_construction(tmp_path):
    root = tmp_path / "pairs"
    save(root / "input" / "a.png", pattern(10, 12))
    save(root / "target" / "a.png", pattern(10, 14))
    with pytest.raises(DatasetError) as info:
        PairedImageDataset(root)
    message = str(info.value)
    assert "size mismatch" in message and "12x10" in message and "14x10" in message
    assert str(root / "input" / "a.png") in message and str(root / "target" / "a.png") in message


def test_size_mismatch_at_loading(tmp_path):
    root = tmp_path / "pairs"
    save(root / "input" / "a.png", pattern(10, 12))
    save(root / "target" / "a.png", pattern(10, 12))
    dataset = PairedImageDataset(root)
    save(root / "target" / "a.png", pattern(11, 12))  # the file changed after construction
    with pytest.raises(DatasetError, match=r"size mismatch.*12x10.*12x11"):
        dataset[0]
    assert len(PairedImageDataset(root, check_sizes=False)) == 1  # header checks can be skipped


def test_truncated_image_fails_on_loading(tmp_path):
    root, _ = build_rain13k(tmp_path)
    path = root / "input" / "a1.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    dataset = PairedImageDataset(root)  # the header is intact: construction succeeds
    with pytest.raises(DatasetError, match="truncated") as info:
        dataset[0]
    assert str(path) in str(info.value)


def test_non_image_with_image_extension(tmp_path):
    root, _ = build_rain13k(tmp_path)
    path = root / "target" / "a2.png"
    path.write_text("this is not a PNG")
    with pytest.raises(DatasetError, match="not an image") as info:
        PairedImageDataset(root)
    assert str(path) in str(info.value)


def test_crop_larger_than_image(tmp_path):
    root, _ = build_rain13k(tmp_path)
    with pytest.raises(DatasetError) as info:
        PairedImageDataset(root, crop=11)
    message = str(info.value)
    assert "a1.png" in message and "11x11" in message and "12x10" in message


def test_odd_side_by_side_width(tmp_path):
    root = tmp_path / "x" / "Rain800" / "test"
    save(root / "1.png", pattern(10, 24))
    save(root / "2.png", pattern(10, 25))
    with pytest.raises(DatasetError, match=r"2\.png.*odd width 25"):
        PairedImageDataset(root)
    with pytest.raises(DatasetError, match=r"2\.png.*odd width 25"):
        PairedImageDataset(root, layout="rain1200")


def test_ambiguous_side_by_side(tmp_path):
    root = tmp_path / "a" / "b" / "pairs"  # no 800 / 1200 / DID in the last path components
    save(root / "1.png", pattern(10, 24))
    with pytest.raises(DatasetError, match="ambiguous") as info:
        PairedImageDataset(root)
    assert "layout=" in str(info.value) and str(root) in str(info.value)
    # Explicit layouts resolve it, and give the two halves the other way round.
    rain800, rain1200 = PairedImageDataset(root, layout="rain800")[0], PairedImageDataset(root, layout="rain1200")[0]
    assert torch.equal(rain800["rainy"], rain1200["clean"])
    assert torch.equal(rain800["clean"], rain1200["rainy"])


def test_duplicate_stems_are_rejected(tmp_path):
    root, _ = build_rain13k(tmp_path)
    save(root / "target" / "a1.bmp")
    with pytest.raises(DatasetError, match=r"a1\.bmp|a1\.png"):
        PairedImageDataset(root)


def test_negative_seed_and_bad_crop(tmp_path):
    root, _ = build_rain13k(tmp_path)
    with pytest.raises(DatasetError, match="seed"):
        PairedImageDataset(root, seed=-1)
    with pytest.raises(DatasetError, match="crop"):
        PairedImageDataset(root, crop=0)


def test_index_out_of_range(tmp_path):
    root, expected = build_rain13k(tmp_path)
    with pytest.raises(IndexError):
        PairedImageDataset(root)[len(expected)]

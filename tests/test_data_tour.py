"""Pieces of the data tour that the notebook alone would not pin down."""

from __future__ import annotations

import numpy as np
import torch

from derainlib.experiments.data_tour import _axial_mean_deg, _image, photo_sources_table


def test_axial_mean_treats_opposite_directions_as_one_line():
    # +89° and -89° are two nearly horizontal lines: their mean is horizontal, not vertical.
    assert abs(abs(_axial_mean_deg(np.array([89.0, -89.0]), np.ones(2))) - 90.0) < 1e-6
    assert abs(_axial_mean_deg(np.array([10.0, 20.0]), np.array([1.0, 1.0])) - 15.0) < 1e-6
    assert abs(_axial_mean_deg(np.array([10.0, 40.0]), np.array([3.0, 0.0])) - 10.0) < 1e-6
    assert np.isnan(_axial_mean_deg(np.array([np.nan]), np.ones(1)))


def test_image_inverts_the_loaders_scaling():
    image = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    np.testing.assert_array_equal(_image(tensor), image)


def test_photo_sources_table_counts_every_photo_once():
    table = photo_sources_table()
    assert table["total"].sum() == table[["train", "val", "test"]].to_numpy().sum() >= 150
    assert table["licences"].str.len().min() > 0


def test_tour_reads_a_users_real_dataset_folder(tmp_path):
    """A user's folder: no benchmark manifest, JPEGs with the dataset's own ids, only some splits."""
    import matplotlib

    matplotlib.use("Agg")
    from PIL import Image

    from derainlib.experiments.data_tour import domain_gallery, rain_statistics_table, split_sizes_table

    rng = np.random.default_rng(0)
    test = tmp_path / "DDN-Data" / "test"
    (test / "rain").mkdir(parents=True)
    (test / "norain").mkdir()
    for image_id in (901, 902):
        clean = rng.integers(0, 200, size=(40, 48, 3), dtype=np.uint8)
        Image.fromarray(clean).save(test / "norain" / f"{image_id}.jpg")
        for rain_type in (1, 2):
            Image.fromarray(np.clip(clean.astype(int) + 40 * rain_type, 0, 255).astype(np.uint8)).save(
                test / "rain" / f"{image_id}_{rain_type}.jpg")
    (tmp_path / "Rain800" / "test_syn").mkdir(parents=True)  # the real name of Rain800's test split

    sizes = split_sizes_table(tmp_path)
    assert sizes.set_index("domain").loc["ddn", ["train", "val", "test"]].tolist() == [0, 0, 4]
    assert sizes.set_index("domain").loc["rain800", "test"] == 0
    statistics = rain_statistics_table(tmp_path)
    assert statistics["domain"].tolist() == ["ddn"] and statistics["pairs"].item() == 4
    assert statistics["renderer_version"].isna().all()  # real-dataset folders have no renderer
    assert statistics["coverage"].item() > 0.5  # a brightening of 40 or 80 levels covers most pixels
    assert 5 < statistics["input_psnr"].item() < 25 and 0 < statistics["input_ssim"].item() < 1
    figure = domain_gallery(tmp_path, scenes=(0, 1))
    assert len(figure.axes) == 2 * 2  # clean + ddn, two rows

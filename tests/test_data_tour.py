"""Pieces of the data tour that the notebook alone would not pin down."""

from __future__ import annotations

import numpy as np
import torch

from derainlib.experiments.data_tour import _axial_mean_deg, photo_sources_table, to_uint8


def test_axial_mean_treats_opposite_directions_as_one_line():
    # +89° and -89° are two nearly horizontal lines: their mean is horizontal, not vertical.
    assert abs(abs(_axial_mean_deg(np.array([89.0, -89.0]), np.ones(2))) - 90.0) < 1e-6
    assert abs(_axial_mean_deg(np.array([10.0, 20.0]), np.array([1.0, 1.0])) - 15.0) < 1e-6
    assert abs(_axial_mean_deg(np.array([10.0, 40.0]), np.array([3.0, 0.0])) - 10.0) < 1e-6
    assert np.isnan(_axial_mean_deg(np.array([np.nan]), np.ones(1)))


def test_to_uint8_inverts_the_loaders_scaling():
    image = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    np.testing.assert_array_equal(to_uint8(tensor), image)


def test_photo_sources_table_counts_every_photo_once():
    table = photo_sources_table()
    assert table["total"].sum() == table[["train", "val", "test"]].to_numpy().sum() >= 150
    assert table["licences"].str.len().min() > 0

"""Tests for derainlib.data.imageio: conversions, errors that name the file, atomic writes."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from derainlib.data.errors import DatasetError
from derainlib.data.imageio import image_size, is_image_file, read_image, write_image


def rgb(height: int = 10, width: int = 12) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 20, y * 25, (x + y) * 5], axis=2).astype(np.uint8)


def write_png_rgb16(path: Path, image: np.ndarray) -> None:
    """A minimal 16-bit-per-channel RGB PNG (colour type 2, depth 16); PIL cannot write one."""
    height, width, _ = image.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + image[y].astype(">u2").tobytes() for y in range(height))  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)


def test_rgb_roundtrip(tmp_path):
    image = rgb()
    path = write_image(tmp_path / "sub" / "a.png", image)
    result = read_image(path)
    assert result.dtype == np.uint8 and result.shape == (10, 12, 3)
    assert np.array_equal(result, image)
    assert image_size(path) == (12, 10)


def test_grayscale_is_replicated(tmp_path):
    gray = rgb()[:, :, 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    assert np.array_equal(read_image(tmp_path / "g.png"), np.repeat(gray[:, :, None], 3, axis=2))


def test_rgba_drops_alpha(tmp_path):
    image = rgb()
    rgba = np.dstack([image, np.full((10, 12), 3, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png"), image)


def test_palette_image(tmp_path):
    image = rgb()
    Image.fromarray(image).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(tmp_path / "p.png")
    result = read_image(tmp_path / "p.png")
    assert result.shape == (10, 12, 3) and result.dtype == np.uint8


def test_16bit_grayscale_is_scaled(tmp_path):
    gray8 = rgb()[:, :, 1]
    gray16 = gray8.astype(np.uint16) * 257  # v * 257 is the exact 16-bit form of 8-bit v
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert np.array_equal(read_image(tmp_path / "g16.png"), np.repeat(gray8[:, :, None], 3, axis=2))


def test_16bit_rgb_png(tmp_path):
    image8 = rgb()
    write_png_rgb16(tmp_path / "c16.png", image8.astype(np.uint16) * 257)
    assert np.array_equal(read_image(tmp_path / "c16.png"), image8)
    assert image_size(tmp_path / "c16.png") == (12, 10)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="no such image") as info:
        read_image(tmp_path / "gone.png")
    assert "gone.png" in str(info.value)
    with pytest.raises(DatasetError, match="gone.png"):
        image_size(tmp_path / "gone.png")


def test_non_image_file_with_image_extension(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_text("hello")
    with pytest.raises(DatasetError, match="not an image") as info:
        read_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(DatasetError, match="not an image"):
        image_size(path)


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_truncated_image(tmp_path, ext):
    path = tmp_path / f"t.{ext}"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_write_image_rejects_non_uint8_and_leaves_no_temporary(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_image(tmp_path / "f.png", rgb().astype(np.float32))
    write_image(tmp_path / "ok.png", rgb())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]


def test_is_image_file():
    assert is_image_file("a.PNG") and is_image_file("b.jpeg") and is_image_file("c.tif")
    assert not is_image_file("d.txt") and not is_image_file("e")

"""Reading and writing images with errors that name the file.

Every image in derainlib goes through :func:`read_image`, so that a truncated file, a text file
with a ``.png`` name or an odd pixel format fails (or is converted) the same way everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..atomic import atomic_path
from .errors import DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name has an image extension (the content is checked on reading)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _to_rgb_uint8(image: Image.Image, path: Path) -> np.ndarray:
    """Convert any PIL mode to uint8 RGB: grayscale is replicated, alpha dropped, 16-bit rescaled."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit integer) grayscale: scale the full range down to 8 bits.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(np.round(array / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        raise DatasetError(f"{path}: floating-point images are not supported; save it as 8- or 16-bit")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA").convert("RGB")  # drop alpha: the colour channels are kept as stored
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as a uint8 H×W×3 RGB array.

    Grayscale, palette, RGBA and 16-bit PNGs are converted, not rejected (16-bit PNGs that PIL
    opens as RGB are already reduced to 8 bits by PIL). A missing file, a non-image file with an
    image extension or a truncated image raises :class:`DatasetError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            image.load()  # force decoding now, so truncation is caught here and not later
            return _to_rgb_uint8(image, path)
    except UnidentifiedImageError as error:
        raise DatasetError(f"{path}: not an image file (PIL cannot identify it)") from error
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"{path}: corrupt or truncated image ({error})") from error


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Return ``(width, height)`` from the file header only (cheap: no pixel decoding).

    Used to check pair sizes and crop sizes when a dataset is built. A missing or non-image file
    raises :class:`DatasetError` naming it; truncation of the pixel data is only caught by
    :func:`read_image`.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            return image.size
    except UnidentifiedImageError as error:
        raise DatasetError(f"{path}: not an image file (PIL cannot identify it)") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{path}: corrupt image header ({error})") from error


def write_image(path: str | os.PathLike, image: np.ndarray, **save_kwargs) -> Path:
    """Write a uint8 H×W×3 (or H×W) array atomically: a temporary file in the same folder, then a rename.

    The format follows the extension (PNG is lossless; pass ``quality=`` for JPEG).
    """
    path = Path(path)
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: write_image expects uint8, got {image.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=Image.registered_extensions().get(path.suffix.lower()), **save_kwargs)
    return path

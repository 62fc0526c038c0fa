"""The embedded set of real photographs (``data/photos``).

The photographs come from Debian packages and Python packages with known licences; they are
rebuilt from scratch by ``scripts/collect_photos.py``, which also writes ``MANIFEST.csv`` (one
row per photo: provenance, licence, checksum, size, scene group and split) and ``LICENSES.md``.

The split is assigned per *scene* (a group of near-duplicates), so that no photo in the test
split has a near-copy in the training split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.fft import dctn

from .errors import DatasetError
from .imageio import read_image

#: Environment variable that points the API at another photo folder (e.g. a test fixture).
PHOTOS_ENV_VAR = "DERAINLIB_PHOTOS"
#: The folder committed with the repository: ``<repo>/data/photos``.
DEFAULT_PHOTO_DIR = Path(__file__).resolve().parents[2] / "data" / "photos"

MANIFEST_NAME = "MANIFEST.csv"
SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = (
    "file",
    "source_package",
    "package_version",
    "path_in_package",
    "licence",
    "sha256",
    "width",
    "height",
    "scene",
    "split",
)

#: Two photos whose perceptual hashes differ in at most this many of 64 bits are treated as
#: near-duplicates (same scene). Re-encodings and rescalings of one photo land at 0-4 bits;
#: unrelated photos are typically 20-40 bits apart.
NEAR_DUPLICATE_BITS = 10


def photo_dir() -> Path:
    """The photo folder in effect: ``$DERAINLIB_PHOTOS`` when set (read on each call), else
    :data:`DEFAULT_PHOTO_DIR`."""
    override = os.environ.get(PHOTOS_ENV_VAR)
    return Path(override) if override else DEFAULT_PHOTO_DIR


def load_manifest() -> pd.DataFrame:
    """Read ``MANIFEST.csv`` of the photo folder as a DataFrame (one row per photo, file order).

    Raises :class:`DatasetError` naming the path when the manifest is missing or lacks columns.
    """
    path = photo_dir() / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(
            f"{path}: photo manifest not found; run scripts/collect_photos.py or set "
            f"{PHOTOS_ENV_VAR} to a folder holding {MANIFEST_NAME}"
        )
    # keep_default_na=False: a licence such as "NA" must never turn into a float NaN.
    manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [column for column in MANIFEST_COLUMNS if column not in manifest.columns]
    if missing:
        raise DatasetError(f"{path}: manifest lacks columns {missing}")
    manifest["width"] = manifest["width"].astype(int)
    manifest["height"] = manifest["height"].astype(int)
    return manifest


def photo_paths(split: str | None = None) -> list[Path]:
    """Paths of the photos in manifest order, all of them or those of one split.

    ``split`` is one of ``"train"``, ``"val"``, ``"test"`` or ``None`` (all photos); anything
    else raises :class:`DatasetError` listing the valid values.
    """
    if split is not None and split not in SPLITS:
        raise DatasetError(f"unknown photo split {split!r}; valid splits: {', '.join(SPLITS)} (or None)")
    manifest = load_manifest()
    if split is not None:
        manifest = manifest[manifest["split"] == split]
    folder = photo_dir()
    return [folder / name for name in manifest["file"]]


def load_photo(file_or_path: str | os.PathLike) -> np.ndarray:
    """Load one photo as a uint8 H×W×3 RGB array.

    A bare file name (``"scratch_lake.jpg"``) is looked up in the photo folder; any other path
    is read as given.
    """
    path = Path(file_or_path)
    if not path.is_absolute() and path.parent == Path(".") and not path.exists():
        path = photo_dir() / path
    return read_image(path)


def perceptual_hash(image: np.ndarray | Image.Image | str | os.PathLike) -> int:
    """64-bit DCT perceptual hash of an image (file path, PIL image or uint8 array).

    The image is reduced to 32×32 grayscale; the 8×8 lowest DCT frequencies are compared to
    their median. The result survives rescaling and JPEG re-encoding, so it finds the same
    photo at another resolution or in another package.
    """
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    gray = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(gray, norm="ortho")[:8, :8].ravel()
    # The DC term only measures brightness; the median of the AC terms is the usual threshold.
    bits = low > np.median(low[1:])
    return int(sum(1 << index for index, bit in enumerate(bits) if bit))


def hamming_distance(hash_a: int, hash_b: int) -> int:
    """Number of differing bits between two perceptual hashes."""
    return (hash_a ^ hash_b).bit_count()

"""The dataset classes the trainers read: rainy/clean pairs and unlabeled rainy images.

* :class:`PairedImageDataset` — rainy/clean pairs from one of the layouts in
  :data:`~derainlib.data.layouts.LAYOUTS` (detected from the folder when ``layout=None``).
* :class:`UnpairedImageDataset` — a plain folder of rainy images (Real200, SPA-Data's rainy-only
  ``real_world`` frames, FCRealRain, a RealProxy train split), searched recursively.

An item's ``name`` is the rainy image's path relative to ``root``, without extension. Side-by-side
layouts (``rain800``, ``rain1200``) are split in halves when an item is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DatasetError
from .files import Pair, image_key, index_images, list_images  # list_images: the derain command imports it from here
from .imageio import IMAGE_EXTENSIONS, image_size, read_image
from .layouts import LAYOUTS, Layout, check_layout_name, check_root, detect_layout, find_pairs

__all__ = [
    "LAYOUTS",
    "Layout",
    "PairedImageDataset",
    "UnpairedImageDataset",
    "detect_layout",
    "find_pairs",
    "list_images",
]

# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float32 3xHxW equal to ``uint8 / 255``."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(torch.float32).div_(255.0)


def _check_seed(seed: int) -> int:
    if int(seed) < 0:
        raise DatasetError(f"seed must be a non-negative integer, got {seed}")
    return int(seed)


def _check_crop(crop: int | None) -> int | None:
    if crop is not None and int(crop) <= 0:
        raise DatasetError(f"crop must be a positive integer or None, got {crop}")
    return None if crop is None else int(crop)


class _SeededAugment:
    """Crop and flip shared by both datasets; the draws are a pure function of (seed, index, epoch).

    Workers of a DataLoader hold copies of the dataset, so nothing here may depend on the order
    in which items are drawn: a fresh generator is made from (seed, index, epoch) per item.
    """

    seed: int
    crop: int | None
    augment: bool
    epoch: int

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops and flips ``__getitem__`` returns (call it before each epoch)."""
        self.epoch = int(epoch)

    def _transform(self, index: int, images: list[np.ndarray], names: list[str]) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, index, self.epoch])
        height, width = images[0].shape[:2]
        if self.crop is not None:
            self._check_crop_fits(names[0], width, height)
            top = int(rng.integers(0, height - self.crop + 1))
            left = int(rng.integers(0, width - self.crop + 1))
            images = [im[top : top + self.crop, left : left + self.crop] for im in images]
        # The flip is drawn after the crop, so augment=True does not change crop locations.
        if self.augment and rng.random() < 0.5:
            images = [im[:, ::-1] for im in images]
        return images

    def _check_crop_fits(self, path: Path | str, width: int, height: int) -> None:
        if self.crop is not None and (self.crop > width or self.crop > height):
            raise DatasetError(
                f"{path}: crop {self.crop}x{self.crop} is larger than the image ({width}x{height}, W x H)"
            )


class PairedImageDataset(_SeededAugment, Dataset):
    """Rainy/clean pairs from one public dataset layout (see :data:`LAYOUTS`).

    Items are ``{"rainy": 3xHxW float32 in [0, 1], "clean": same, "name": str}``, where
    ``name`` is the rainy image's path relative to ``root`` without extension.

    Args:
        root: the folder that directly contains the layout (e.g. ``Rain200H/test``).
        layout: a key of :data:`LAYOUTS`, or ``None`` to detect it.
        crop: side of a square crop taken at the same place in both images, or ``None``.
        augment: random horizontal flip, the same for both images.
        seed: crops and flips of item ``i`` in epoch ``e`` depend on ``(seed, i, e)`` only,
            so they do not change with ``num_workers``; call :meth:`set_epoch` per epoch.
        check_sizes: read every image header at construction to report size mismatches and
            too-large crops early (cheap: headers only). Sizes are checked again on loading.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        layout: str | None = None,
        crop: int | None = None,
        augment: bool = False,
        seed: int = 0,
        *,
        check_sizes: bool = True,
    ) -> None:
        self.root = check_root(root)
        self.layout = detect_layout(self.root) if layout is None else check_layout_name(layout).name
        self.side_by_side = LAYOUTS[self.layout].side_by_side
        self.crop = _check_crop(crop)
        self.augment = bool(augment)
        self.seed = _check_seed(seed)
        self.epoch = 0
        self.pairs: list[Pair] = find_pairs(self.root, self.layout)
        self.names = [image_key(rainy, self.root) for rainy, _ in self.pairs]
        if check_sizes:
            for rainy, clean in self.pairs:
                self._check_pair_sizes(rainy, clean)

    def __len__(self) -> int:
        return len(self.pairs)

    def _check_pair_sizes(self, rainy: Path, clean: Path) -> None:
        if self.side_by_side:
            width, height = image_size(rainy)  # the odd-width case was rejected by find_pairs
            self._check_crop_fits(rainy, width // 2, height)
            return
        rainy_size, clean_size = image_size(rainy), image_size(clean)
        if rainy_size != clean_size:
            raise _size_mismatch(rainy, rainy_size, clean, clean_size)
        self._check_crop_fits(rainy, *rainy_size)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rainy_path, clean_path = self.pairs[index]
        if self.side_by_side:
            both = read_image(rainy_path)
            width = both.shape[1]
            if width % 2:
                raise DatasetError(f"{rainy_path}: side-by-side image has odd width {width}")
            left, right = both[:, : width // 2], both[:, width // 2 :]
            return (left, right) if self.side_by_side == "left" else (right, left)
        rainy, clean = read_image(rainy_path), read_image(clean_path)
        if rainy.shape != clean.shape:
            raise _size_mismatch(rainy_path, rainy.shape[1::-1], clean_path, clean.shape[1::-1])
        return rainy, clean

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        rainy, clean = self._load(index)
        rainy, clean = self._transform(index, [rainy, clean], [str(self.pairs[index][0])])
        return {"rainy": _to_tensor(rainy), "clean": _to_tensor(clean), "name": self.names[index]}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, layout={self.layout!r}, "
            f"pairs={len(self)}, crop={self.crop})"
        )


def _size_mismatch(rainy: Path, rainy_size: Sequence[int], clean: Path, clean_size: Sequence[int]) -> DatasetError:
    rw, rh = rainy_size
    cw, ch = clean_size
    return DatasetError(f"size mismatch: rainy {rainy} is {rw}x{rh} but clean {clean} is {cw}x{ch} (W x H)")


class UnpairedImageDataset(_SeededAugment, Dataset):
    """A plain folder of rainy images, searched recursively (Real200, SPA-Data ``real_world``
    frames, FCRealRain, a RealProxy train split).

    Items are ``{"rainy": 3xHxW float32 in [0, 1], "name": str}`` with ``name`` the path relative
    to ``root`` without extension. ``crop``, ``augment``, ``seed`` and :meth:`set_epoch` behave as
    in :class:`PairedImageDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        crop: int | None = None,
        augment: bool = False,
        seed: int = 0,
        *,
        check_sizes: bool = True,
    ) -> None:
        self.root = check_root(root)
        self.crop = _check_crop(crop)
        self.augment = bool(augment)
        self.seed = _check_seed(seed)
        self.epoch = 0
        self.paths = list(index_images(self.root, recursive=True).values())  # rejects a.png next to a.jpg
        if not self.paths:
            raise DatasetError(f"{self.root}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)})")
        self.names = [image_key(path, self.root) for path in self.paths]
        if check_sizes and self.crop is not None:
            for path in self.paths:
                self._check_crop_fits(path, *image_size(path))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        (rainy,) = self._transform(index, [read_image(self.paths[index])], [str(self.paths[index])])
        return {"rainy": _to_tensor(rainy), "name": self.names[index]}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, images={len(self)}, crop={self.crop})"

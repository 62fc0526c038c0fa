"""Listing image files and pairing two folders by name: the rules every dataset layout shares.

* any extension in :data:`~derainlib.data.imageio.IMAGE_EXTENSIONS` is accepted, on either side,
  in any mix; partners are matched by name without extension;
* hidden files (``.DS_Store``, macOS ``._x.png`` resource forks) are ignored;
* images are sorted naturally (``rain-2`` before ``rain-10``);
* a rainy image without its clean partner is an error (never silently skipped) and the message
  names the rainy file and the clean path that was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .errors import DatasetError
from .imageio import IMAGE_EXTENSIONS, is_image_file

Pair = tuple[Path, Path]

# --------------------------------------------------------------------------------------------
# Small file helpers
# --------------------------------------------------------------------------------------------


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers numerically: ``a2 < a10``, case-insensitively."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text)]


def is_visible_image(path: Path) -> bool:
    # Hidden files are skipped: macOS copies leave "._name.png" resource forks next to images.
    return path.is_file() and not path.name.startswith(".") and is_image_file(path)


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (recursively if asked), hidden files excluded, naturally sorted."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    images = [path for path in candidates if is_visible_image(path)]
    if recursive:  # skip anything under a hidden folder too
        images = [path for path in images if not any(p.startswith(".") for p in path.relative_to(folder).parts)]
    return sorted(images, key=lambda path: natural_key(path.relative_to(folder).as_posix()))


def image_key(path: Path, base: Path) -> str:
    """A path relative to ``base`` without extension, POSIX style: the matching key and item name."""
    return path.relative_to(base).with_suffix("").as_posix()


def index_images(folder: Path, recursive: bool = False) -> dict[str, Path]:
    """Map ``relative path without extension`` -> file for every image in ``folder``.

    Two files that differ only by extension (``1.png`` and ``1.jpg``) make the partner ambiguous,
    so they are an error.
    """
    index: dict[str, Path] = {}
    for path in list_images(folder, recursive):
        key = image_key(path, folder)
        if key in index:
            raise DatasetError(
                f"{folder}: two images share the name {key!r} ({index[key].name} and {path.name}); "
                "names without extension must be unique, remove one"
            )
        index[key] = path
    return index


def missing_partner(rainy: Path, clean_dir: Path, candidates: Sequence[str]) -> DatasetError:
    expected = " or ".join(str(clean_dir / f"{key}.*") for key in candidates)
    return DatasetError(
        f"{rainy}: rainy image has no clean partner; expected {expected} "
        f"(any of {', '.join(IMAGE_EXTENSIONS)})"
    )


def pair_folders(
    rainy_dir: Path,
    clean_dir: Path,
    clean_keys: Callable[[str], Sequence[str]],
    recursive: bool = False,
) -> list[Pair]:
    """Pair every image of ``rainy_dir`` with the first existing key ``clean_keys(rainy_key)`` in ``clean_dir``."""
    for folder in (rainy_dir, clean_dir):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: expected folder is missing")
    clean = index_images(clean_dir, recursive)
    rainy_index = index_images(rainy_dir, recursive)  # also rejects rainy names that differ only by extension
    if not rainy_index:
        raise DatasetError(f"{rainy_dir}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)})")
    pairs = []
    for key, rainy in rainy_index.items():
        candidates = list(dict.fromkeys(clean_keys(key)))  # de-duplicated, order kept
        partner = next((clean[c] for c in candidates if c in clean), None)
        if partner is None:
            raise missing_partner(rainy, clean_dir, candidates)
        pairs.append((rainy, partner))
    return pairs


def sample_stems(folder: Path, count: int = 16) -> list[str]:
    """Stems of the first few images of a folder (enough for name-based detection, cheap on big sets)."""
    if not folder.is_dir():
        return []
    return [path.stem for path in list_images(folder)[:count]]


def all_match(pattern: str, stems: Iterable[str]) -> bool:
    stems = list(stems)
    return bool(stems) and all(re.fullmatch(pattern, stem) for stem in stems)


def with_parent(key: str, name: str) -> str:
    """Replace the last component of a relative key: ``a/b/x`` + ``y`` -> ``a/b/y``."""
    parent = key.rpartition("/")[0]
    return f"{parent}/{name}" if parent else name

"""The public deraining datasets' folder layouts, as their public code reads them, and layout detection.

Every layout is a small :class:`Layout`: a name, one line saying what it expects, a ``detect``
test and a ``find_pairs`` function. ``root`` is always the folder that directly contains the
layout (e.g. ``Rain200H/test``, not ``Rain200H``); the shared naming and pairing rules are in
:mod:`derainlib.data.files`. Side-by-side layouts (``rain800``, ``rain1200``) store each pair in
one file; their pairs hold the same path twice and the image is split in halves when loaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetError
from .files import (
    Pair,
    all_match,
    index_images,
    list_images,
    missing_partner,
    natural_key,
    pair_folders,
    sample_stems,
    with_parent,
)
from .imageio import IMAGE_EXTENSIONS, image_size

__all__ = ["LAYOUTS", "Layout", "check_layout_name", "check_root", "detect_layout", "find_pairs"]

# --------------------------------------------------------------------------------------------
# The layouts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """One dataset folder layout.

    ``expects`` is the one-line description shown when detection fails. ``side_by_side`` is
    ``None`` for two-file pairs, else which half of the single file is rainy: ``"left"`` or
    ``"right"``.
    """

    name: str
    expects: str
    detect: Callable[[Path], bool]
    find_pairs: Callable[[Path], list[Pair]]
    side_by_side: str | None = None


# -- Rain200H / Rain200L (DRD-Net code) ------------------------------------------------------

_X2 = re.compile(r"(.+)x2", re.IGNORECASE)


def _rain200_clean_keys(key: str) -> list[str]:
    # "norain-12x2" -> "norain-12"; a name without the x2 suffix is looked up as is.
    match = _X2.fullmatch(key)
    return [match.group(1), key] if match else [key]


def _find_rain200h(root: Path) -> list[Pair]:
    """Rain200H as DRD-Net's code reads it::

        root/                      (e.g. Rain200H/test)
        ├── rain/
        │   └── X2/
        │       ├── norain-1x2.png
        │       └── norain-2x2.png
        └── norain/
            ├── norain-1.png
            └── norain-2.png
    """
    return pair_folders(root / "rain" / "X2", root / "norain", _rain200_clean_keys)


def _find_rain200l(root: Path) -> list[Pair]:
    """Rain200L as DRD-Net's code reads it (like Rain200H, without the X2 folder)::

        root/                      (e.g. Rain200L/train)
        ├── rain/
        │   ├── norain-1x2.png
        │   └── norain-2x2.png
        └── norain/
            ├── norain-1.png
            └── norain-2.png
    """
    return pair_folders(root / "rain", root / "norain", _rain200_clean_keys)


def _has_rain_norain(root: Path) -> bool:
    return (root / "rain").is_dir() and (root / "norain").is_dir()


def _detect_rain200h(root: Path) -> bool:
    return _has_rain_norain(root) and (root / "rain" / "X2").is_dir()


def _detect_rain200l(root: Path) -> bool:
    if not _has_rain_norain(root) or (root / "rain" / "X2").is_dir():
        return False
    return not all_match(r".+_\d+", sample_stems(root / "rain"))  # those names are DDN's


# -- DDN Rain1400 / Rain14000 ----------------------------------------------------------------

_ID_K = re.compile(r"(.+)_(\d+)")


def _id_k_clean_keys(key: str) -> list[str]:
    # GTAV-NightRain: "0000_01" -> "0000" (render k of scene id); the same name is tried first.
    match = _ID_K.fullmatch(key)
    return [key, match.group(1)] if match else [key]


def _ddn_clean_keys(key: str) -> list[str]:
    # "901_3" -> "901": rain type k of clean image id.
    match = _ID_K.fullmatch(key)
    return [match.group(1)] if match else [key]


def _find_ddn(root: Path) -> list[Pair]:
    """DDN-Data (Rain1400 / Rain14000): 14 rain types per clean image::

        root/                      (e.g. Rain1400/test)
        ├── rain/
        │   ├── 901_1.jpg  ...  901_14.jpg
        │   └── 902_1.jpg  ...
        └── norain/
            ├── 901.jpg
            └── 902.jpg
    """
    return pair_folders(root / "rain", root / "norain", _ddn_clean_keys)


def _detect_ddn(root: Path) -> bool:
    return (
        _has_rain_norain(root)
        and not (root / "rain" / "X2").is_dir()
        and all_match(r".+_\d+", sample_stems(root / "rain"))
    )


# -- Rain100L / Rain100H (PReNet style) ------------------------------------------------------

_RAIN100_RAINY = re.compile(r"rain-(.+)")


def _find_rain100(root: Path) -> list[Pair]:
    """Rain100L/H as PReNet's code reads them: rainy and clean in one folder::

        root/                      (e.g. RainTrainH, or Rain100H for the test set)
        ├── rain-1.png             (test sets: rain-001.png)
        ├── norain-1.png           (test sets: norain-001.png)
        ├── rain-2.png
        └── norain-2.png

    Other files in the folder (JORDER's ``rainregion-*``, ``rainstreak-*``) are ignored.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: expected folder is missing")
    clean = index_images(root)
    pairs = []
    for rainy in list_images(root):
        match = _RAIN100_RAINY.fullmatch(rainy.stem)
        if not match:
            continue  # norain-*, rainregion-*, rainstreak-*
        key = f"norain-{match.group(1)}"
        if key not in clean:
            raise missing_partner(rainy, root, [key])
        pairs.append((rainy, clean[key]))
    if not pairs:
        raise DatasetError(f"{root}: no rainy images named rain-*.{{png,jpg,...}}")
    return pairs


def _detect_rain100(root: Path) -> bool:
    stems = [path.stem for path in list_images(root)] if root.is_dir() else []
    return any(s.startswith("rain-") for s in stems) and any(s.startswith("norain-") for s in stems)


# -- Rain800 / Rain1200 (side by side) -------------------------------------------------------


def _find_side_by_side(root: Path) -> list[Pair]:
    """A folder of images that each hold a pair side by side (the same path on both sides).

    Rain800 (RESCAN / DRD-Net's split script): left half = ground truth, right half = rainy.
    Rain1200 (DID-MDN): left half = rainy, right half = ground truth::

        root/                      (e.g. Rain800/test or DID-MDN-test)
        ├── 1.jpg                  (width 2W: [clean | rainy] for Rain800, [rainy | clean] for Rain1200)
        └── 2.jpg

    An odd total width cannot be split and is an error naming the file.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: expected folder is missing")
    images = list_images(root)
    if not images:
        raise DatasetError(f"{root}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)})")
    for path in images:
        width, height = image_size(path)
        if width % 2:
            raise DatasetError(
                f"{path}: side-by-side image has odd width {width} (height {height}); "
                "it cannot be split into two equal halves"
            )
    return [(path, path) for path in images]


def _detect_side_by_side(root: Path) -> bool:
    """Images directly in ``root``, with no subfolders of images, and wider than tall."""
    if not root.is_dir() or _detect_rain100(root):
        return False
    images = list_images(root)[:8]
    if not images:
        return False
    try:
        return all(w > h for w, h in (image_size(p) for p in images))
    except DatasetError:
        return False  # an unreadable file: let the explicit loader report it


# Names in the root path that tell the two side-by-side sets apart (only the last three
# components are looked at, so unrelated parent folders do not interfere).
_HINT_800 = re.compile(r"(?<!\d)800(?!\d)")
_HINT_1200 = re.compile(r"(?<!\d)1200(0)?(?!\d)|(?<![a-z])did(?![a-z])")


def _side_by_side_hint(root: Path) -> str | None:
    # The path as the user wrote it (made absolute, symlinks kept): its names are the ones they chose.
    parts = [part.lower() for part in root.absolute().parts[-3:]]
    is_800 = any(_HINT_800.search(part) for part in parts)
    is_1200 = any(_HINT_1200.search(part) for part in parts)
    if is_800 == is_1200:
        return None
    return "rain800" if is_800 else "rain1200"


# -- Rain13K / Restormer style ---------------------------------------------------------------


def _find_rain13k(root: Path) -> list[Pair]:
    """Restormer/MPRNet style, same names on both sides::

        root/                      (e.g. Datasets/test/Rain100H or train/Rain13K)
        ├── input/
        │   ├── 1.png
        │   └── 2.png
        └── target/
            ├── 1.png
            └── 2.png
    """
    return pair_folders(root / "input", root / "target", lambda key: [key])


def _detect_rain13k(root: Path) -> bool:
    return (root / "input").is_dir() and (root / "target").is_dir()


# -- SPA-Data ---------------------------------------------------------------------------------

_SPA_RAIN_SUFFIX = re.compile(r"(.+?)[_-]?rain(y)?", re.IGNORECASE)


def _spa_clean_keys(key: str) -> list[str]:
    # "000" -> "000gt" (as distributed), "000" (re-packaged copies), "000_gt";
    # "000_rain" / "000rain" -> "000_gt" / "000gt" / "000".
    bases = [key]
    match = _SPA_RAIN_SUFFIX.fullmatch(key)
    if match:
        bases.append(match.group(1))
    return [f"{base}{suffix}" for base in bases for suffix in ("gt", "", "_gt", "-gt")]


def _spa_rainy_dir(root: Path) -> Path:
    return root / "rain" if (root / "rain").is_dir() else root / "rainy"


def _find_spa(root: Path) -> list[Pair]:
    """SPA-Data test set (Wang et al. CVPR 2019), ``real_test_1000`` as distributed and used
    by public evaluation code::

        root/                      (e.g. Testing/real_test_1000)
        ├── rain/                  (some re-packaged copies call it rainy/)
        │   ├── 000.png
        │   └── 001.png
        └── gt/
            ├── 000gt.png          (re-packaged copies: 000.png or 000_gt.png)
            └── 001gt.png

    A rainy name ending in ``rain``/``_rain`` is also matched to the same base name with ``gt``.
    The official ``real_test_1000.txt`` (lines "rainy_path gt_path") is not needed.
    """
    return pair_folders(_spa_rainy_dir(root), root / "gt", _spa_clean_keys)


def _detect_spa(root: Path) -> bool:
    if not (root / "gt").is_dir():
        return False
    if (root / "rain").is_dir():
        return True
    return (root / "rainy").is_dir() and not _detect_gtav(root)


# -- GTAV-NightRain ---------------------------------------------------------------------------


def _find_gtav(root: Path) -> list[Pair]:
    """GTAV-NightRain (``set{1,2,3}/{train,test}/{rainy,gt}``); root is one split folder::

        root/                      (e.g. GTAV-NightRain/set1/test)
        ├── rainy/
        │   ├── 0000_00.png        (several rainy renders per scene: {id}_{k})
        │   ├── 0000_01.png
        │   └── 0001_00.png
        └── gt/
            ├── 0000.png
            └── 0001.png

    A rainy image with the same name as a gt image pairs with it directly.
    """
    return pair_folders(root / "rainy", root / "gt", _id_k_clean_keys)


def _detect_gtav(root: Path) -> bool:
    return (
        (root / "rainy").is_dir()
        and (root / "gt").is_dir()
        and all_match(r"\d+_\d+", sample_stems(root / "rainy"))
    )


# -- GT-Rain ----------------------------------------------------------------------------------


def _find_gtrain(root: Path) -> list[Pair]:
    """GT-Rain (Ba et al. ECCV 2022); root is one split folder of scene folders::

        root/                      (e.g. GT-RAIN_test)
        ├── Gurutto_1-2/
        │   ├── Gurutto_1-2-C-000.png    (the scene's one clean frame)
        │   ├── Gurutto_1-2-R-000.png    (rainy frames; every one pairs with the clean frame)
        │   └── Gurutto_1-2-R-001.png
        └── <scene>/ ...

    Images in a scene that are neither ``*C-000*`` nor ``*R-<n>*`` are ignored.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: expected folder is missing")
    scenes = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    scenes.sort(key=lambda p: natural_key(p.name))
    pairs = []
    for scene in scenes:
        images = list_images(scene)
        cleans = [p for p in images if "C-000" in p.stem]
        rainy = [p for p in images if p not in cleans and re.search(r"R-\d+", p.stem)]
        if not rainy:
            continue
        if not cleans:
            raise DatasetError(
                f"{rainy[0]}: rainy image has no clean partner; expected {scene}/*C-000*.png "
                f"(any of {', '.join(IMAGE_EXTENSIONS)})"
            )
        if len(cleans) > 1:
            names = ", ".join(p.name for p in cleans)
            raise DatasetError(f"{scene}: several clean frames ({names}); a GT-Rain scene has exactly one *C-000*")
        pairs.extend((path, cleans[0]) for path in rainy)
    if not pairs:
        raise DatasetError(f"{root}: no scene folders with *R-*.png rainy frames")
    return pairs


def _detect_gtrain(root: Path) -> bool:
    if not root.is_dir():
        return False
    for scene in root.iterdir():
        if scene.is_dir() and any("C-000" in p.stem for p in list_images(scene)):
            return True
    return False


# -- Extras for the multi-weather analyses ----------------------------------------------------


def _find_snow100k(root: Path) -> list[Pair]:
    """Snow100K (Liu et al. 2018); ``mask/`` is ignored::

        root/                      (e.g. Snow100K-L or test/Snow100K-S)
        ├── synthetic/
        │   └── beautiful_smile_00001.jpg
        ├── gt/
        │   └── beautiful_smile_00001.jpg
        └── mask/                  (ignored)
    """
    return pair_folders(root / "synthetic", root / "gt", lambda key: [key])


def _detect_snow100k(root: Path) -> bool:
    return (root / "synthetic").is_dir() and (root / "gt").is_dir()


_RAINDROP_RAINY = re.compile(r"(.+)_rain", re.IGNORECASE)


def _find_raindrop(root: Path) -> list[Pair]:
    """Raindrop (Qian et al. CVPR 2018)::

        root/                      (e.g. test_a)
        ├── data/
        │   ├── 0_rain.png
        │   └── 1_rain.jpg
        └── gt/
            ├── 0_clean.png
            └── 1_clean.jpg
    """

    def clean_keys(key: str) -> list[str]:
        match = _RAINDROP_RAINY.fullmatch(key)
        return [f"{match.group(1)}_clean"] if match else [key]

    return pair_folders(root / "data", root / "gt", clean_keys)


def _detect_raindrop(root: Path) -> bool:
    return (root / "data").is_dir() and (root / "gt").is_dir()


_CITYSCAPES_RAINY = re.compile(r"(.+)_leftImg8bit_rain_alpha_.+_beta_.+_dropsize_.+_pattern_.+")


def _find_raincityscapes(root: Path) -> list[Pair]:
    """RainCityscapes (Hu et al. CVPR 2019); every split found under the root is used::

        root/
        ├── leftImg8bit_rain/
        │   └── <split>/<city>/<stem>_leftImg8bit_rain_alpha_0.01_beta_0.005_dropsize_0.01_pattern_1.png
        └── leftImg8bit/
            └── <split>/<city>/<stem>_leftImg8bit.png

    Each clean image has many rainy renderings (alpha, beta, drop size, pattern).
    """

    def clean_keys(key: str) -> list[str]:
        match = _CITYSCAPES_RAINY.fullmatch(key.rpartition("/")[2])
        return [with_parent(key, f"{match.group(1)}_leftImg8bit")] if match else [key]

    return pair_folders(root / "leftImg8bit_rain", root / "leftImg8bit", clean_keys, recursive=True)


def _detect_raincityscapes(root: Path) -> bool:
    return (root / "leftImg8bit_rain").is_dir() and (root / "leftImg8bit").is_dir()


_SIDE_BY_SIDE = {"detect": _detect_side_by_side, "find_pairs": _find_side_by_side}

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            "rain200h", "rain/X2/norain-{i}x2.* <-> norain/norain-{i}.*", _detect_rain200h, _find_rain200h
        ),
        Layout(
            "rain200l",
            "rain/norain-{i}x2.* <-> norain/norain-{i}.* (no rain/X2 folder)",
            _detect_rain200l,
            _find_rain200l,
        ),
        Layout("rain100", "rain-{i}.* <-> norain-{i}.* in the root folder itself", _detect_rain100, _find_rain100),
        Layout(
            "rain800",
            "images directly in root, side by side: left = clean, right = rainy",
            side_by_side="right",
            **_SIDE_BY_SIDE,
        ),
        Layout(
            "rain1200",
            "images directly in root, side by side: left = rainy, right = clean",
            side_by_side="left",
            **_SIDE_BY_SIDE,
        ),
        Layout("rain13k", "input/<name>.* <-> target/<name>.*", _detect_rain13k, _find_rain13k),
        Layout("ddn", "rain/{id}_{k}.* <-> norain/{id}.*", _detect_ddn, _find_ddn),
        Layout("spa", "rain/{n}.* <-> gt/{n}gt.* (or gt/{n}.*)", _detect_spa, _find_spa),
        Layout(
            "gtrain", "<scene>/*R-*.* <-> <scene>/*C-000*.* (one folder per scene)", _detect_gtrain, _find_gtrain
        ),
        Layout("gtav_nightrain", "rainy/{id}_{k}.* <-> gt/{id}.* (or the same name)", _detect_gtav, _find_gtav),
        Layout("snow100k", "synthetic/<name>.* <-> gt/<name>.* (mask/ ignored)", _detect_snow100k, _find_snow100k),
        Layout("raindrop", "data/{i}_rain.* <-> gt/{i}_clean.*", _detect_raindrop, _find_raindrop),
        Layout(
            "raincityscapes",
            "leftImg8bit_rain/<split>/<city>/<stem>_leftImg8bit_rain_alpha_*_beta_*_dropsize_*_pattern_*.* "
            "<-> leftImg8bit/<split>/<city>/<stem>_leftImg8bit.*",
            _detect_raincityscapes,
            _find_raincityscapes,
        ),
    )
}


# --------------------------------------------------------------------------------------------
# Detection and pairing
# --------------------------------------------------------------------------------------------


def check_root(root: str | os.PathLike) -> Path:
    """The root as a Path; a missing root, a file, or an empty folder is an error naming it."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: dataset folder does not exist")
    if not path.is_dir():
        raise DatasetError(f"{path}: dataset root is not a folder")
    if not any(p for p in path.iterdir() if not p.name.startswith(".")):
        raise DatasetError(f"{path}: dataset folder is empty")
    return path


def check_layout_name(layout: str) -> Layout:
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    return LAYOUTS[layout]


def detect_layout(root: str | os.PathLike) -> str:
    """Name of the layout that fits ``root``.

    Raises :class:`DatasetError` when none fits (the message lists every layout and what it
    expects), and for a side-by-side folder whose path names do not say Rain800 vs Rain1200.
    """
    root = check_root(root)
    matches = [name for name, layout in LAYOUTS.items() if layout.detect(root)]
    side = [name for name in matches if LAYOUTS[name].side_by_side]
    if side:
        hint = _side_by_side_hint(root)
        if hint is None:
            raise DatasetError(
                f"{root}: side-by-side images are ambiguous between rain800 (left = clean, right = rainy) "
                f"and rain1200 (left = rainy, right = clean) and the folder names do not say which; "
                f"pass layout='rain800' or layout='rain1200' explicitly"
            )
        matches = [name for name in matches if name not in side] + [hint]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise DatasetError(f"{root}: several layouts fit ({', '.join(matches)}); pass layout= explicitly")
    tried = "\n".join(f"  {name}: {layout.expects}" for name, layout in LAYOUTS.items())
    raise DatasetError(f"{root}: no known dataset layout fits this folder; layouts tried:\n{tried}")


def find_pairs(root: str | os.PathLike, layout: str) -> list[Pair]:
    """``(rainy_path, clean_path)`` for every rainy image of ``root`` in ``layout``, naturally sorted."""
    spec = check_layout_name(layout)
    root = check_root(root)
    pairs = spec.find_pairs(root)
    return sorted(pairs, key=lambda pair: natural_key(pair[0].relative_to(root).as_posix()))

#!/usr/bin/env python3
"""Rebuild ``data/photos`` (the embedded set of real photographs) from scratch.

Sources, all with a licence that allows redistribution:

* Debian 12 packages, fetched with ``apt-get download`` and unpacked with ``dpkg -x`` (nothing is
  installed). GCompris keeps its pictures inside Qt ``.rcc`` bundles, read by a small parser here.
* Photos shipped inside installed Python wheels (scikit-image, scikit-learn, matplotlib).

Only the files named in the curated ALLOWLISTs below are kept: every one was looked at (contact
sheets) and is a real photograph, not an icon, drawing, render, screenshot or abstract wallpaper.
A rerun therefore reproduces the committed set exactly (as long as the package versions match;
the script stops if an allowlisted file is missing).

Each photo is converted to RGB, downscaled with Lanczos so that its longer side is at most 512 px
(never upscaled) and saved as JPEG quality 90 under ``<source>_<stem>.jpg``. Near-duplicates are
grouped into scenes (known pairs plus a perceptual hash), and scenes are split 70/10/20 into
train/val/test deterministically.

Usage (needs root or a working ``apt-get download``, and network access to the Debian mirror)::

    .venv/bin/python scripts/collect_photos.py            # writes data/photos
    .venv/bin/python scripts/collect_photos.py --out DIR  # somewhere else
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

from derainlib.data.photos import (  # noqa: E402
    MANIFEST_COLUMNS,
    NEAR_DUPLICATE_BITS,
    SPLITS,
    hamming_distance,
    perceptual_hash,
)

MAX_SIDE = 512
JPEG_QUALITY = 90
SPLIT_TARGETS = {"train": 0.70, "val": 0.10, "test": 0.20}
MAX_TOTAL_BYTES = 25 * 1024 * 1024

# ---------------------------------------------------------------------------------------------
# Curated allowlists. Each entry: (path inside the package, output stem or None for the file's
# own stem). Paths are relative to the unpacked package root (or, for GCompris, to the .rcc).
# ---------------------------------------------------------------------------------------------

_SCRATCH = "usr/share/scratch/Media/Backgrounds/"
_OPENCV = "usr/share/doc/opencv-doc/examples/"
_PLASMA = "usr/share/wallpapers/"
_GC_CAT = "/gcompris/src/activities/categorization/resource/images/"

DEBIAN_ALLOWLIST: dict[str, tuple[str, list[tuple[str, str | None]]]] = {
    # package: (short source name used in file names, [(path, stem), ...])
    "scratch": ("scratch", [(_SCRATCH + p, None) for p in [
        "Indoors/chalkboard.jpg", "Indoors/clothing-store.jpg", "Indoors/hall.jpg",
        "Indoors/kitchen.jpg", "Indoors/the-movies-inside.jpg",
        "Nature/beach-malibu.jpg", "Nature/canyon.jpg", "Nature/flower-bed.jpg", "Nature/flowers.gif",
        "Nature/forest.jpg", "Nature/garden-rock.jpg", "Nature/grand-canyon.jpg",
        "Nature/gravel-desert.jpg", "Nature/hill.jpg", "Nature/lake.jpg", "Nature/moon.jpg",
        "Nature/pathway.jpg", "Nature/tree.jpg", "Nature/water-and-rocks.jpg", "Nature/wave.jpg",
        "Outdoors/all-sports-mural.jpg", "Outdoors/atom-playground.jpg", "Outdoors/bench-with-view.jpg",
        "Outdoors/berkeley-mural.jpg", "Outdoors/boardwalk.jpg", "Outdoors/brick-wall-and-stairs.jpg",
        "Outdoors/brick-wall2.jpg", "Outdoors/building-at-mit.jpg", "Outdoors/building-fireproof.jpg",
        "Outdoors/castle.jpg", "Outdoors/city-with-water.jpg", "Outdoors/city-with-water2.jpg",
        "Outdoors/driveway.jpg", "Outdoors/hallway_outdoors.jpg", "Outdoors/hay_field.jpg",
        "Outdoors/houses.jpg", "Outdoors/mansion.jpg", "Outdoors/mural-faro.jpg",
        "Outdoors/parking-ramp.jpg", "Outdoors/pool.jpg", "Outdoors/route66.jpg", "Outdoors/silos.jpg",
        "Outdoors/the-movies.jpg", "Outdoors/train-tracks1.jpg", "Outdoors/train-tracks2.jpg",
        "Outdoors/village.jpg", "Outdoors/wooden-house.jpg",
        "Sports/baseball-field.jpg", "Sports/basketball-court1-a.jpg", "Sports/basketball-court1-b.jpg",
        "Sports/football-field.jpg", "Sports/playing-field.jpg", "Sports/tennis-backboard.jpg",
    ]]),
    "opencv-doc": ("opencv", [(_OPENCV + "data/" + p, None) for p in [
        "aero1.jpg", "aero3.jpg", "aloeL.jpg", "aloeR.jpg", "apple.jpg", "baboon.jpg",
        "basketball1.png", "basketball2.png", "board.jpg", "box_in_scene.png", "building.jpg",
        "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg", "graf1.png", "graf3.png",
        "home.jpg", "left.jpg", "right.jpg", "leuvenA.jpg", "leuvenB.jpg", "messi5.jpg", "orange.jpg",
        "rubberwhale1.png", "rubberwhale2.png", "squirrel_cls.jpg", "stuff.jpg",
    ]] + [(_OPENCV + f"text/scenetext0{i}.jpg", None) for i in range(1, 7)] + [
        (_OPENCV + "hfs/data/000.jpg", "hfs000"),
        (_OPENCV + "hfs/data/001.jpg", "hfs001"),
        (_OPENCV + "hfs/data/002.jpg", "hfs002"),
        (_OPENCV + "reg/home.png", "reg_home"),
        (_OPENCV + "dnn_superres/butterfly.png", "superres_butterfly"),
        (_OPENCV + "alphamat/input_images/plant.jpg", "alphamat_plant"),
    ]),
    "palapeli-data": ("palapeli", [("usr/share/palapeli/collection/" + p, None) for p in [
        "castle-maintenon.jpg", "cincinnati-bridge.jpg", "citrus-fruits.jpg",
        "european-honey-bee.jpg", "panther-chameleon-female.jpg",
    ]]),
    "lomiri-wallpapers-16.04": ("lomiri", [("usr/share/backgrounds/" + p, None) for p in [
        "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
        "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
        "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg", "greentock_by_Peter_Nerlich.jpg",
        "life_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "seeding_by_Clements_Engelhardt.jpg", "sunset_by_Aitzol_Berasategi.jpg",
    ]]),
    "lomiri-wallpapers-20.04": ("lomiri", [
        ("usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg", None),
    ]),
    "plasma-workspace-wallpapers": ("plasma", [
        # The image files are named after their resolution; the wallpaper name is the stem.
        (_PLASMA + f"{name}/contents/images/{size}.jpg", name) for name, size in [
            ("BytheWater", "2560x1600"), ("ColdRipple", "2560x1600"), ("ColorfulCups", "2560x1600"),
            ("DarkestHour", "2560x1600"), ("EveningGlow", "2560x1600"), ("FallenLeaf", "2560x1600"),
            ("Grey", "2560x1600"), ("Kite", "2560x1600"), ("OneStandsOut", "2560x1600"),
            ("Path", "2560x1600"), ("summer_1am", "2560x1600"),
        ]
    ]),
    "tuxpaint-data": ("tuxpaint", [("usr/share/tuxpaint/templates/" + p, None) for p in [
        "burnt_bark.jpg", "cliff.jpg", "corn_maze.jpg", "jellyfish.jpg", "lighthouse.jpg",
        "mossy_bark.jpg", "mossy_log.jpg", "mudstone.jpg", "ocean_splash.jpg", "ocean_waves.jpg",
        "redwoods_above.jpg", "rocks.jpg", "sheep.jpg", "spiders_web.jpg", "sun_behind_clouds.jpg",
        "sun_behind_leaves.jpg", "trees_above.jpg", "trees_at_dusk.jpg", "wool_mill_machine.jpg",
    ]]),
    "mate-backgrounds": ("mate", [("usr/share/backgrounds/mate/nature/" + p, None) for p in [
        "Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg", "GreenMeadow.jpg",
        "LadyBird.jpg", "Storm.jpg", "TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg",
    ]]),
    "lxqt-themes": ("lxqt", [("usr/share/lxqt/wallpapers/" + p, None) for p in [
        "Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png",
        "beam.png", "butterfly.png", "cloud.png", "flowers.png", "fog.jpg",
        "this-is-not-windows.jpg",
    ]]),
    # GCompris: "<bundle>.rcc:<path inside the bundle>". Only photos that debian/copyright names
    # in a file-specific stanza are listed (the catch-all "Files: *" is not trusted for photos).
    "gcompris-qt-data": ("gcompris", [
        (f"usr/share/gcompris-qt/rcc/explore_world_animals.rcc:/gcompris/src/activities/"
         f"explore_world_animals/resource/animals/{p}.webp", None) for p in [
            # bison, giraffe, hedgehog, jaguar and narwhal have no file-specific stanza: left out.
            "chameleon", "crocodile", "dragon", "kangaroo", "koala", "lemur", "moose", "panda",
            "polar_bear", "scarlet_macaw",
        ]
    ] + [
        (f"usr/share/gcompris-qt/rcc/explore_farm_animals.rcc:/gcompris/src/activities/"
         f"explore_farm_animals/resource/animals/{p}.webp", f"farm_{p}") for p in [
            "cat", "chicken", "cow", "dog", "duck", "horse", "owl", "pig", "sheep",
        ]
    ] + [
        (f"usr/share/gcompris-qt/rcc/categorization.rcc:{_GC_CAT}{p}.webp", None) for p in [
            "monuments/IndiaGate", "monuments/arcDeTriomphe", "monuments/bayterek",
            "monuments/burj",  # brandenburgGate: no file-specific stanza "monuments/cathedral",
            "monuments/christTheRedeemer", "monuments/colosseum", "monuments/empireState",
            "monuments/greatPyramid", "monuments/greatWall", "monuments/kutubMinar",
            "monuments/leaningTowerOfPisa", "monuments/monument1", "monuments/monument2",
            "monuments/monument3", "monuments/mountRushmore", "monuments/operaHouse",
            "monuments/parthenon", "monuments/statueOfLiberty", "monuments/tajMahal",
            "monuments/usCapitol", "monuments/victoriaMemorial", "monuments/zimniPalace",
            "renewable/dam1", "renewable/dam2", "renewable/dam3", "renewable/dam4", "renewable/dam5",
            "renewable/geothermal", "renewable/solar1", "renewable/solar2", "renewable/solar3",
            "renewable/solar4", "renewable/solar5", "renewable/solar7", "renewable/solar8",
            "renewable/windmill", "renewable/windmill1", "renewable/windmill11", "renewable/windmill12",
            "renewable/windmill13", "renewable/windmill14", "renewable/windmill15",
            "renewable/windmill2", "renewable/windmill3", "renewable/windmill4", "renewable/windmill5",
            "renewable/windmill6", "renewable/windmill7", "renewable/windmill8", "renewable/windmill9",
        ]
    ]),
}

# Python wheels: (distribution, path relative to the installed package dir, stem, licence,
# copyright/attribution line).
PYTHON_ALLOWLIST: list[tuple[str, str, str, str, str]] = [
    ("scikit-image", "skimage/data/astronaut.png", "astronaut", "public-domain", "NASA (Eileen Collins)"),
    ("scikit-image", "skimage/data/camera.png", "camera", "CC0-1.0", "Lav Varshney"),
    ("scikit-image", "skimage/data/chelsea.png", "chelsea", "CC0-1.0", "Stefan van der Walt"),
    ("scikit-image", "skimage/data/coffee.png", "coffee", "CC0-1.0", "Rachel Michetti"),
    ("scikit-image", "skimage/data/rocket.jpg", "rocket", "public-domain", "SpaceX"),
    ("scikit-image", "skimage/data/motorcycle_left.png", "motorcycle_left", "BSD-3-Clause",
     "Middlebury 2014 stereo (Scharstein et al.), shipped in scikit-image"),
    ("scikit-image", "skimage/data/motorcycle_right.png", "motorcycle_right", "BSD-3-Clause",
     "Middlebury 2014 stereo (Scharstein et al.), shipped in scikit-image"),
    ("scikit-learn", "sklearn/datasets/images/china.jpg", "china", "CC-BY-2.0", "danielbuechele (Flickr)"),
    ("scikit-learn", "sklearn/datasets/images/flower.jpg", "flower", "CC-BY-2.0", "vultilion (Flickr)"),
    ("matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "grace_hopper", "public-domain",
     "U.S. Navy photograph"),
]

# Pairs known to show the same scene (stereo pairs, two views, one photo twice). The perceptual
# hash catches re-encodings; these catch different viewpoints the hash cannot.
KNOWN_SAME_SCENE: list[tuple[str, ...]] = [
    ("skimage_motorcycle_left", "skimage_motorcycle_right"),
    ("opencv_aloeL", "opencv_aloeR"),
    ("opencv_left", "opencv_right"),
    ("opencv_aero1", "opencv_aero3"),
    ("opencv_basketball1", "opencv_basketball2"),
    ("opencv_graf1", "opencv_graf3"),
    ("opencv_leuvenA", "opencv_leuvenB"),
    ("opencv_rubberwhale1", "opencv_rubberwhale2"),
    ("scratch_basketball-court1-a", "scratch_basketball-court1-b"),
    ("scratch_city-with-water", "scratch_city-with-water2"),
    ("scratch_the-movies", "scratch_the-movies-inside"),
]


# ---------------------------------------------------------------------------------------------
# Debian helpers
# ---------------------------------------------------------------------------------------------

def apt_download(packages: list[str], workdir: Path) -> dict[str, tuple[Path, str]]:
    """``apt-get download`` each package; return {package: (unpacked root, version)}."""
    debs = workdir / "debs"
    debs.mkdir()
    subprocess.run(["apt-get", "download", *packages], cwd=debs, check=True)
    result = {}
    for package in packages:
        (deb,) = debs.glob(f"{package}_*.deb")
        version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                                 capture_output=True, text=True).stdout.strip()
        root = workdir / "x" / package
        root.mkdir(parents=True)
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        result[package] = (root, version)
    return result


@dataclass
class CopyrightStanza:
    patterns: list[str]
    copyright: str
    licence: str


def parse_dep5(text: str) -> list[CopyrightStanza]:
    """Parse the Files stanzas of a machine-readable (DEP-5) debian/copyright file."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, list[str]] = {}
        current = None
        for line in block.splitlines():
            match = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            if match:
                current = match.group(1).lower()
                fields[current] = [match.group(2).strip()]
            elif current and line.startswith((" ", "\t")):
                fields[current].append(line.strip())
        if "files" in fields and "license" in fields:
            patterns = " ".join(fields["files"]).split()
            holder = next((c for c in fields.get("copyright", []) if c), "")
            stanzas.append(CopyrightStanza(patterns, holder, fields["license"][0]))
    return stanzas


# Where each package's installed files come from in its source tree, so debian/copyright
# patterns (source paths, anchored at the source root) can be applied: (installed, source).
SOURCE_PREFIXES: dict[str, list[tuple[str, str]]] = {
    "scratch": [("usr/share/scratch/", "")],
    "opencv-doc": [(_OPENCV + "data/", "samples/data/"), (_OPENCV, "contrib/modules/")],
    "palapeli-data": [("usr/share/palapeli/", "")],
    "lomiri-wallpapers-16.04": [("usr/share/backgrounds/", "16.04/")],
    "lomiri-wallpapers-20.04": [("usr/share/backgrounds/", "20.04/")],
    "plasma-workspace-wallpapers": [("usr/share/", "")],
    "tuxpaint-data": [("usr/share/tuxpaint/", "")],
    "mate-backgrounds": [("usr/share/backgrounds/mate/", "")],
    "lxqt-themes": [("usr/share/lxqt/", "")],
    "gcompris-qt-data": [("/gcompris/", "")],  # paths inside the .rcc bundles
}


def source_path(package: str, installed: str) -> str:
    for prefix, replacement in SOURCE_PREFIXES[package]:
        if installed.startswith(prefix):
            return replacement + installed[len(prefix):]
    raise RuntimeError(f"{package}: no source prefix for {installed}")


def copyright_for(stanzas: list[CopyrightStanza], path: str) -> tuple[CopyrightStanza, bool]:
    """The stanza governing a source path (DEP-5: last match wins, ``*`` also matches ``/``) and
    whether it is specific (anything but the catch-all ``Files: *``)."""
    # GCompris converted its pictures to .webp after debian/copyright was written for .jpg/.png.
    candidates = [path] + [re.sub(r"\.webp$", ext, path) for ext in (".jpg", ".png")]
    best = None
    for stanza in stanzas:
        if any(fnmatch.fnmatchcase(c, p) for p in stanza.patterns for c in candidates):
            best = stanza
    if best is None:
        raise RuntimeError(f"no debian/copyright stanza matches {path}")
    return best, best.patterns != ["*"]


LXQT_WALLPAPER_LICENCE = ("CC-BY-SA-3.0", "2022 LXQt Project Team (wallpapers/License)")

# Licence spellings normalised to the Debian/SPDX-style short names used elsewhere.
SPDX = {"LGPLv3": "LGPL-3"}


def plasma_licence(root: Path, path: str) -> tuple[str, str] | None:
    """Plasma wallpapers carry their own licence and author in ``metadata.json``."""
    metadata = root / path.split("/contents/")[0] / "metadata.json"
    if not metadata.is_file():
        return None
    plugin = json.loads(metadata.read_text())["KPlugin"]
    authors = ", ".join(a.get("Name", "") for a in plugin.get("Authors", []))
    licence = plugin.get("License", "")
    return SPDX.get(licence, licence), authors


# ---------------------------------------------------------------------------------------------
# Qt resource bundles (.rcc)
# ---------------------------------------------------------------------------------------------

def read_rcc(path: Path) -> dict[str, bytes]:
    """All files of a Qt binary resource bundle: {"/path/in/bundle": bytes}.

    Format (qrc "qres" v1-v3): a header with offsets of the tree, data and names sections;
    tree nodes are 14 (v1) or 22 bytes; file data may be zlib-compressed (flag 1). Zstandard
    entries (flag 4) are skipped: they are not needed for the photos used here.
    """
    blob = path.read_bytes()
    if blob[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt .rcc bundle")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset:names + offset + 2])
        start = names + offset + 6  # skip length and the 4-byte hash
        return blob[start:start + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}

    def walk(index: int, prefix: str) -> None:
        offset = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", blob[offset:offset + 6])
        name = name_at(name_offset) if index else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", blob[offset + 6:offset + 14])
            for child in range(first, first + count):
                walk(child, f"{prefix}{name}/" if index else "/")
            return
        (data_offset,) = struct.unpack(">I", blob[offset + 10:offset + 14])
        start = data + data_offset
        (size,) = struct.unpack(">I", blob[start:start + 4])
        raw = blob[start + 4:start + 4 + size]
        if flags & 4:
            return  # zstd: not supported, not needed
        files[prefix + name] = zlib.decompress(raw[4:]) if flags & 1 else raw

    walk(0, "")
    return files


# ---------------------------------------------------------------------------------------------
# Collection
# ---------------------------------------------------------------------------------------------

@dataclass
class Photo:
    file: str
    source_package: str
    package_version: str
    path_in_package: str
    licence: str
    holder: str
    image: Image.Image


def sanitise(stem: str) -> str:
    """ASCII file-name stem: letters, digits, '-' and '_' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", stem.encode("ascii", "ignore").decode()).strip("-")


def open_rgb(data: bytes | Path) -> Image.Image:
    image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    image.load()
    # Palette/alpha images: composite alpha away the same way derainlib's reader does.
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
    return image.convert("RGB")


def collect_debian(workdir: Path) -> list[Photo]:
    unpacked = apt_download(list(DEBIAN_ALLOWLIST), workdir)
    photos = []
    for package, (source, entries) in DEBIAN_ALLOWLIST.items():
        root, version = unpacked[package]
        copyright_path = root / "usr/share/doc" / package / "copyright"
        stanzas = parse_dep5(copyright_path.read_text(encoding="utf-8", errors="replace"))
        bundles: dict[str, dict[str, bytes]] = {}
        for path, stem in entries:
            if ".rcc:" in path:
                bundle, inner = path.split(":", 1)
                if bundle not in bundles:
                    bundles[bundle] = read_rcc(root / bundle)
                image = open_rgb(bundles[bundle][inner])
                licence_path = source_path(package, inner)
            else:
                full = root / path
                if not full.is_file():
                    raise FileNotFoundError(f"{package} {version}: allowlisted {path} is missing")
                image = open_rgb(full)
                licence_path = source_path(package, path)
            stanza, specific = copyright_for(stanzas, licence_path)
            if package == "gcompris-qt-data" and not specific:
                raise RuntimeError(f"{path}: only the catch-all copyright stanza covers it")
            licence, holder = stanza.licence, stanza.copyright
            if package == "plasma-workspace-wallpapers":
                licence, holder = plasma_licence(root, path) or (licence, holder)
            elif package == "lxqt-themes" and "/wallpapers/" in path and not specific:
                # debian/copyright has only its catch-all here; wallpapers/License is specific.
                licence, holder = LXQT_WALLPAPER_LICENCE
            stem = stem or Path(path.split(":")[-1]).stem
            photos.append(Photo(f"{source}_{sanitise(stem)}.jpg", package, version, path,
                                SPDX.get(licence, licence), holder, image))
    return photos


def collect_python() -> list[Photo]:
    from importlib import metadata

    photos = []
    for dist, relpath, stem, licence, holder in PYTHON_ALLOWLIST:
        distribution = metadata.distribution(dist)
        full = Path(distribution.locate_file(relpath))
        source = {"scikit-image": "skimage", "scikit-learn": "sklearn"}.get(dist, dist)
        photos.append(Photo(f"{source}_{sanitise(stem)}.jpg", f"{dist} (PyPI)", distribution.version,
                            relpath, licence, holder, open_rgb(full)))
    return photos


def downscale(image: Image.Image) -> Image.Image:
    """Lanczos-downscale so the longer side is at most MAX_SIDE; never upscale."""
    scale = MAX_SIDE / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def group_scenes(files: list[str], hashes: dict[str, int]) -> dict[str, str]:
    """Connected components of 'same scene': known pairs plus perceptual-hash near-duplicates.
    The scene id is the alphabetically first file stem of the component."""
    parent = {f: f for f in files}

    def find(f: str) -> str:
        while parent[f] != f:
            parent[f] = parent[parent[f]]
            f = parent[f]
        return f

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    known = set(files)
    for group in KNOWN_SAME_SCENE:
        members = [f"{stem}.jpg" for stem in group]
        absent = [m for m in members if m not in known]
        if absent:
            raise RuntimeError(f"KNOWN_SAME_SCENE names photos not in the set: {absent}")
        for other in members[1:]:
            union(members[0], other)
    for i, a in enumerate(files):
        for b in files[i + 1:]:
            if hamming_distance(hashes[a], hashes[b]) <= NEAR_DUPLICATE_BITS:
                union(a, b)
    return {f: Path(find(f)).stem for f in files}


def assign_splits(scenes: dict[str, str]) -> dict[str, str]:
    """Whole scenes go to train/val/test: scenes in sha256 order, each to the split furthest
    below its target share (ties broken in train, val, test order). Deterministic."""
    sizes: dict[str, int] = {}
    for scene in scenes.values():
        sizes[scene] = sizes.get(scene, 0) + 1
    total = sum(sizes.values())
    counts = {split: 0 for split in SPLITS}
    scene_split = {}
    for scene in sorted(sizes, key=lambda s: hashlib.sha256(s.encode()).hexdigest()):
        split = max(SPLITS, key=lambda s: SPLIT_TARGETS[s] * total - counts[s])
        scene_split[scene] = split
        counts[split] += sizes[scene]
    return {f: scene_split[scene] for f, scene in scenes.items()}


def write_licenses(manifest: pd.DataFrame, holders: dict[str, str], out: Path) -> None:
    lines = [
        "# Licences of the embedded photographs",
        "",
        "The photographs in this folder are redistributed, downscaled (longer side at most 512 px) and",
        "re-encoded as JPEG, under the licences of the packages they were taken from, listed below.",
        "`MANIFEST.csv` gives the licence of every single file and its path inside its package.",
        "Licences are read from each Debian package's `/usr/share/doc/<package>/copyright`",
        "(the file-specific stanza where one exists; for plasma-workspace-wallpapers from each",
        "wallpaper's `metadata.json`, which names the author and licence) and, for Python wheels, from",
        "the data documentation shipped in the wheel. Rebuild with `scripts/collect_photos.py`.",
        "",
    ]
    for package, rows in manifest.groupby("source_package", sort=True):
        lines.append(f"## {package} {rows['package_version'].iloc[0]}")
        lines.append("")
        lines.append(f"- photos: {len(rows)}")
        for licence, group in rows.groupby("licence", sort=True):
            who = sorted({holders[f] for f in group["file"] if holders[f]})
            lines.append(f"- {licence} ({len(group)} photos); copyright: {'; '.join(who) or 'not stated'}")
        lines.append("")
    lines += [
        "## Notes",
        "",
        "- gcompris-qt-data: only photos that debian/copyright covers with a file-specific stanza are",
        "  included; those stanzas name the original `.jpg`/`.png` files, which GCompris now ships",
        "  converted to `.webp` inside its Qt `.rcc` bundles (matched by name).",
        "- plasma-workspace-wallpapers: debian/copyright says `Files: *` GPL-2+; each wallpaper's",
        "  own metadata.json says LGPLv3 (recorded as LGPL-3) and names the photographer.",
        "- lxqt-themes: debian/copyright has only the catch-all `Files: *` LGPL-2.1+ for the",
        "  wallpapers; the package's own `wallpapers/License` says CC-BY-SA-3.0 (2022 LXQt Project",
        "  Team; photos by stefonarch), which is what MANIFEST.csv records.",
        "- opencv-doc, palapeli-data, tuxpaint-data: debian/copyright covers these photos only by",
        "  its catch-all `Files: *` stanza, whose licence is recorded.",
        "- scikit-image motorcycle_left/right are Middlebury 2014 stereo images shipped in the",
        "  BSD-3-Clause scikit-image wheel without a separate licence.",
        "",
    ]
    (out / "LICENSES.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "data" / "photos")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="collect_photos_") as tmp:
        photos = collect_debian(Path(tmp)) + collect_python()

    names = [p.file for p in photos]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuntimeError(f"duplicate output names: {duplicates}")

    if args.out.exists():
        shutil.rmtree(args.out)  # from scratch: no stale photos survive a rerun
    args.out.mkdir(parents=True)

    rows, hashes, holders = [], {}, {}
    for photo in photos:
        target = args.out / photo.file
        downscale(photo.image).save(target, "JPEG", quality=JPEG_QUALITY, optimize=True)
        with Image.open(target) as saved:
            width, height = saved.size
        # Hash the saved JPEG, exactly as a test re-reading the file will.
        hashes[photo.file] = perceptual_hash(target)
        holders[photo.file] = photo.holder
        rows.append({
            "file": photo.file, "source_package": photo.source_package,
            "package_version": photo.package_version, "path_in_package": photo.path_in_package,
            "licence": photo.licence, "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
            "width": width, "height": height,
        })

    scenes = group_scenes(names, hashes)
    splits = assign_splits(scenes)
    manifest = pd.DataFrame(rows)
    manifest["scene"] = manifest["file"].map(scenes)
    manifest["split"] = manifest["file"].map(splits)
    manifest = manifest[list(MANIFEST_COLUMNS)]
    manifest.to_csv(args.out / "MANIFEST.csv", index=False)
    write_licenses(manifest, holders, args.out)

    total = sum(f.stat().st_size for f in args.out.glob("*.jpg"))
    if total > MAX_TOTAL_BYTES:
        raise RuntimeError(f"photo set is {total / 2**20:.1f} MiB, over the 25 MiB budget")
    print(f"{len(manifest)} photos, {manifest['scene'].nunique()} scenes, {total / 2**20:.2f} MiB")
    print(manifest["split"].value_counts().to_string())
    print(manifest["source_package"].value_counts().to_string())


if __name__ == "__main__":
    main()

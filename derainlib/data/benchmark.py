"""The embedded benchmark: the shipped photographs rendered into every rain domain, on disk.

:func:`build_benchmark` writes each domain **in the folder layout of the public dataset it
emulates**, so that every experiment reads it through the same loaders
(:class:`~derainlib.data.datasets.PairedImageDataset`) that a user with the real datasets uses::

    <root>/
      MANIFEST.json                                  recipe (renderer version included) + sha256 of every file
      Rain200L/<split>/rain/norain-{i}x2.png         ↔ norain/norain-{i}.png
      Rain200H/<split>/rain/X2/norain-{i}x2.png      ↔ norain/norain-{i}.png
      Rain800/<split>/{i}.png                        side by side: clean | rainy
      DDN-Data/<split>/rain/{i}_{k}.png              ↔ norain/{i}.png   (k = DDN rain type)
      GTAV-NightRain/set1/<split>/rainy/{i:04d}_00.png ↔ gt/{i:04d}.png
      Snow100K/<split>/synthetic/{i}.png             ↔ gt/{i}.png
      RainDrop/<split>/data/{i}_rain.png             ↔ gt/{i}_clean.png
      RainCityscapes/<split>/leftImg8bit_rain/<split>/proxy/…_rain_….png ↔ leftImg8bit/<split>/proxy/…
      RealProxy/train/input/{i}.png                  rainy only: unlabeled "real" training data
      RealProxy/{val,test}/input/{i}.png             ↔ target/{i}.png (held-out ground truth, evaluation only)

``<split>`` is ``train``, ``val`` or ``test``, taken from the photo manifest's fixed split, so a test
photograph is never seen in training in any domain. Every rendering is seeded by
(seed, domain, split, photo, rain type), so a build is a pure function of its recipe.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .. import __version__
from ..paths import build_dir
from ..profiles import Profile, get_profile
from . import photos, streaks, synthetic
from .errors import DatasetError
from .imageio import write_image

SPLITS = photos.SPLITS  # a benchmark split holds the photos of the same manifest split
MANIFEST_NAME = "MANIFEST.json"
MANIFEST_FORMAT = 1

#: domain -> (dataset folder under the benchmark root, loader layout name)
DOMAIN_DATASETS: dict[str, tuple[str, str]] = {
    "rain200l": ("Rain200L", "rain200l"),
    "rain200h": ("Rain200H", "rain200h"),
    "rain800": ("Rain800", "rain800"),
    "ddn": ("DDN-Data", "ddn"),
    "night": ("GTAV-NightRain/set1", "gtav_nightrain"),
    "snow": ("Snow100K", "snow100k"),
    "raindrop": ("RainDrop", "raindrop"),
    "raincityscapes": ("RainCityscapes", "raincityscapes"),
    "realproxy": ("RealProxy", "rain13k"),
}


def default_benchmark_root(profile: str | Profile, seed: int = 0, version: int = synthetic.DEFAULT_VERSION) -> Path:
    """Where a profile's benchmark is built: ``$DERAINLIB_DATA/<name>`` or ``build/benchmark/<name>``.

    ``<name>`` is the profile, then ``-seed<n>`` for a render seed other than 0, then ``-v<version>``
    (the renderer version), e.g. ``ci-v2`` or ``cpu-seed3-v1``: renderings of different seeds or
    renderer versions never replace or mix with each other."""
    synthetic._check_version(version)
    base = os.environ.get("DERAINLIB_DATA")
    name = get_profile(profile).name + (f"-seed{int(seed)}" if seed else "") + f"-v{int(version)}"
    return (Path(base) if base else build_dir("benchmark")) / name


def split_root(root: str | os.PathLike, domain: str, split: str) -> Path:
    """The layout root of one domain's split (the folder a loader is pointed at)."""
    if domain not in DOMAIN_DATASETS:
        raise DatasetError(f"unknown domain {domain!r}; valid domains: {', '.join(DOMAIN_DATASETS)}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return Path(root) / DOMAIN_DATASETS[domain][0] / split


def layout_of(domain: str) -> str:
    """The loader layout name a domain is written in."""
    if domain not in DOMAIN_DATASETS:
        raise DatasetError(f"unknown domain {domain!r}; valid domains: {', '.join(DOMAIN_DATASETS)}")
    return DOMAIN_DATASETS[domain][1]


def _pair_paths(domain: str, split_dir: Path, split: str, index: int, rain_type: int) -> tuple[Path, Path]:
    """(rainy path, clean path) of one rendering in its dataset's naming. Rain800 has one file for both."""
    i = index + 1  # public datasets count from 1
    if domain == "rain200l":
        return split_dir / "rain" / f"norain-{i}x2.png", split_dir / "norain" / f"norain-{i}.png"
    if domain == "rain200h":
        return split_dir / "rain" / "X2" / f"norain-{i}x2.png", split_dir / "norain" / f"norain-{i}.png"
    if domain == "rain800":
        return split_dir / f"{i}.png", split_dir / f"{i}.png"
    if domain == "ddn":
        return split_dir / "rain" / f"{i}_{rain_type}.png", split_dir / "norain" / f"{i}.png"
    if domain == "night":  # GTAV-NightRain counts from 0 and numbers the rainy renders of a scene
        return split_dir / "rainy" / f"{index:04d}_00.png", split_dir / "gt" / f"{index:04d}.png"
    if domain == "snow":
        return split_dir / "synthetic" / f"{i:05d}.png", split_dir / "gt" / f"{i:05d}.png"
    if domain == "raindrop":
        return split_dir / "data" / f"{i}_rain.png", split_dir / "gt" / f"{i}_clean.png"
    if domain == "raincityscapes":
        stem = f"proxy_{i:06d}_000019"
        rain_name = f"{stem}_leftImg8bit_rain_alpha_0.02_beta_0.01_dropsize_0.005_pattern_{rain_type}.png"
        return (split_dir / "leftImg8bit_rain" / split / "proxy" / rain_name,
                split_dir / "leftImg8bit" / split / "proxy" / f"{stem}_leftImg8bit.png")
    if domain == "realproxy":
        return split_dir / "input" / f"{i}.png", split_dir / "target" / f"{i}.png"
    raise DatasetError(f"unknown domain {domain!r}; valid domains: {', '.join(DOMAIN_DATASETS)}")


def rendering_seed(seed: int, domain: str, split: str, photo_sha256: str, rain_type: int) -> int:
    """A stable 32-bit seed for one rendering (Python's ``hash`` is salted per process, so not that)."""
    key = f"{seed}|{domain}|{split}|{photo_sha256}|{rain_type}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")


def resize_longer_side(image: np.ndarray, size: int | None) -> np.ndarray:
    """Downscale (never upscale) so the longer side is ``size``, with Lanczos; ``None`` keeps the image."""
    height, width = image.shape[:2]
    if size is None or max(height, width) <= size:
        return image
    scale = size / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(new_size, Image.Resampling.LANCZOS))


def select_photos(profile: Profile, split: str) -> list[dict]:
    """The manifest rows a profile uses for a split: evenly spaced through the manifest for variety."""
    manifest = photos.load_manifest()
    rows = manifest[manifest["split"] == split].to_dict("records")
    count = {"train": profile.n_train, "val": profile.n_val, "test": profile.n_test}[split]
    if count is None or count >= len(rows):
        return rows
    picks = np.linspace(0, len(rows) - 1, count).round().astype(int)
    return [rows[p] for p in picks]


def domain_rain_types(domain: str, ddn_types: tuple[int, ...]) -> tuple[int, ...]:
    """The rain types each clean photo is rendered with: DDN has several (1-14), the rest one."""
    return tuple(ddn_types) if domain == "ddn" else (1,)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class _PhotoJob:
    """Everything one worker needs to render one photo into every domain (picklable)."""

    photo_file: str
    photo_sha256: str
    split: str
    index: int
    image_size: int | None
    seed: int
    domains: tuple[str, ...]
    ddn_types: tuple[int, ...]
    out_dir: str
    version: int = synthetic.DEFAULT_VERSION


def _render_photo(job: _PhotoJob) -> dict[str, str]:
    """Render one photo into every domain, write the files, return {relative path: sha256}."""
    out_dir = Path(job.out_dir)
    clean = resize_longer_side(photos.load_photo(job.photo_file), job.image_size)
    written: list[Path] = []
    for domain in job.domains:
        split_dir = split_root(out_dir, domain, job.split)
        for rain_type in domain_rain_types(domain, job.ddn_types):
            seed = rendering_seed(job.seed, domain, job.split, job.photo_sha256, rain_type)
            # The target is the photo, or the relit scene (version 2 night and realproxy).
            rainy, target = synthetic.render_pair(clean, domain, seed, ddn_type=rain_type if domain == "ddn" else None,
                                                  version=job.version)
            rainy_path, clean_path = _pair_paths(domain, split_dir, job.split, job.index, rain_type)
            if domain == "rain800":  # one side-by-side file: ground truth left, rainy right
                write_image(rainy_path, np.concatenate([target, rainy], axis=1))
                written.append(rainy_path)
                continue
            write_image(rainy_path, rainy)
            written.append(rainy_path)
            # The real-proxy training split is unlabeled: its clean images are never written.
            if not (domain == "realproxy" and job.split == "train") and clean_path not in written:
                write_image(clean_path, target)
                written.append(clean_path)
    return {path.relative_to(out_dir).as_posix(): _sha256_file(path) for path in written}


def benchmark_recipe(
    profile: Profile, seed: int, domains: tuple[str, ...], version: int = synthetic.DEFAULT_VERSION
) -> dict:
    """Everything a build depends on: when it is unchanged, an existing build is reused."""
    return {
        "format": MANIFEST_FORMAT,
        "derainlib": __version__,
        "profile": profile.name,
        "seed": seed,
        "image_size": profile.image_size,
        "ddn_types": list(profile.ddn_types),
        "domains": list(domains),
        "photos": {split: [row["sha256"] for row in select_photos(profile, split)] for split in SPLITS},
        # The renderer version, and the source of every module it runs: changing either changes the
        # images, so it invalidates old builds.
        "renderer_version": int(version),
        "renderer_domains": {domain: int(version) for domain in domains},
        "renderer_sha256": synthetic.renderer_source_sha256(version),
    }


def verify_benchmark(root: str | os.PathLike, recipe: dict | None = None) -> bool:
    """True when ``root`` holds a complete build whose files match its manifest (and ``recipe``, if given)."""
    manifest_path = Path(root) / MANIFEST_NAME
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if recipe is not None and manifest.get("recipe") != recipe:
        return False
    files = manifest.get("files", {})
    return bool(files) and all(
        (Path(root) / rel).is_file() and _sha256_file(Path(root) / rel) == digest for rel, digest in files.items()
    )


def _remove_abandoned_staging(root: Path) -> None:
    """Delete staging folders left by builds that were killed (their process is gone): they can be GBs."""
    for folder in root.parent.glob(f".{root.name}.building-*"):
        try:
            pid = int(folder.name.removeprefix(f".{root.name}.building-").split("-", 1)[0])
            os.kill(pid, 0)  # raises if no such process
        except ValueError:  # not ours to judge: an unexpected name
            continue
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, but another user's
            continue


def build_benchmark(
    root: str | os.PathLike | None = None,
    profile: str | Profile = "ci",
    *,
    seed: int = 0,
    version: int = synthetic.DEFAULT_VERSION,
    domains: tuple[str, ...] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Render the embedded benchmark for ``profile`` under ``root`` and return ``root``.

    An existing build whose ``MANIFEST.json`` matches this recipe and whose files match their
    checksums is reused as it is. Otherwise everything is rendered into a temporary sibling folder
    and moved into place only when complete, so an interrupted build leaves no half-written root.
    ``workers`` processes render in parallel (default: the CPU count); the bytes do not depend on it.
    ``version`` is the renderer version (:data:`derainlib.data.synthetic.RENDERER_VERSIONS`; default 2,
    the photometric renderer; 1 reproduces the renderer of the first results). The manifest records
    it, the default root is named after it, and :func:`verify_benchmark` with this recipe rejects a
    build of another version, so builds of two versions never mix.
    """
    profile = get_profile(profile)
    root = Path(root) if root is not None else default_benchmark_root(profile, seed, version)
    domains = tuple(domains) if domains is not None else tuple(DOMAIN_DATASETS)
    for domain in domains:
        layout_of(domain)  # validates the name
    recipe = benchmark_recipe(profile, seed, domains, version)
    if verify_benchmark(root, recipe):
        return root

    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(root)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.building-{os.getpid()}-"))
    try:
        jobs = [
            _PhotoJob(row["file"], row["sha256"], split, index, profile.image_size, seed, domains,
                      profile.ddn_types, str(staging), int(version))
            for split in SPLITS
            for index, row in enumerate(select_photos(profile, split))
        ]
        workers = workers or os.cpu_count() or 1
        files: dict[str, str] = {}
        with tqdm(total=len(jobs), desc=f"rendering {profile.name} benchmark", disable=not progress) as bar:
            if workers == 1:
                for result in map(_render_photo, jobs):
                    files.update(result)
                    bar.update()
            else:
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    for result in pool.map(_render_photo, jobs, chunksize=1):
                        files.update(result)
                        bar.update()
        manifest = {"recipe": recipe, "files": dict(sorted(files.items()))}
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
        # Swap into place: the old build (if any) is removed only after the new one is complete.
        old = root.with_name(f".{root.name}.old-{os.getpid()}")
        if root.exists():
            root.rename(old)
        staging.rename(root)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def benchmark_renderer_version(root: str | os.PathLike) -> int:
    """The renderer version a built benchmark was rendered with (from its ``MANIFEST.json``), for results rows.

    Manifests written before renderer versions existed carry none: they were rendered by version 1.
    """
    path = Path(root) / MANIFEST_NAME
    try:
        recipe = json.loads(path.read_text())["recipe"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise DatasetError(f"{path}: not a readable benchmark manifest ({error})") from error
    return int(recipe.get("renderer_version", 1))


def available_domains(root: str | os.PathLike, split: str | None = None) -> list[str]:
    """The domains whose dataset folder (and ``split`` folder, if given) exists under ``root``.

    ``root`` is a built benchmark or a user's folder of real datasets arranged the same way.
    """
    return [domain for domain, (folder, _) in DOMAIN_DATASETS.items()
            if (Path(root) / folder / (split or "")).is_dir()]


def open_split(root: str | os.PathLike, domain: str, split: str, **dataset_kwargs):
    """One domain's split as a dataset, through the public loaders.

    Real-proxy training data is unlabeled (an :class:`UnpairedImageDataset` of its ``input`` folder);
    everything else is a :class:`PairedImageDataset` in the domain's layout.
    """
    from .datasets import PairedImageDataset, UnpairedImageDataset

    folder = split_root(root, domain, split)
    if domain == "realproxy" and split == "train":
        return UnpairedImageDataset(folder / "input", **dataset_kwargs)
    return PairedImageDataset(folder, layout=layout_of(domain), **dataset_kwargs)


def parse_domain(name: str) -> tuple[str, int | None]:
    """A domain name, or a DDN rain type written ``ddn<k>`` (``"ddn5"`` → ``("ddn", 5)``), as (domain, type)."""
    if name.startswith("ddn") and name[3:].isdigit():
        rain_type = int(name[3:])
        if not 1 <= rain_type <= 14:
            raise DatasetError(f"{name!r}: DDN rain types are 1 to 14")
        return "ddn", rain_type
    layout_of(name)  # validates the name
    return name, None


def open_domain(root: str | os.PathLike, name: str, split: str, **dataset_kwargs):
    """:func:`open_split` of a domain, or of one DDN rain type (``"ddn1"``: the pairs ``{i}_1`` only)."""
    domain, rain_type = parse_domain(name)
    dataset = open_split(root, domain, split, **dataset_kwargs)
    if rain_type is not None:
        keep = [i for i, (rainy, _) in enumerate(dataset.pairs) if Path(rainy).stem.endswith(f"_{rain_type}")]
        if not keep:
            raise DatasetError(f"{dataset.root}: no DDN pairs of rain type {rain_type} (files named <i>_{rain_type})")
        dataset.pairs = [dataset.pairs[i] for i in keep]
        dataset.names = [dataset.names[i] for i in keep]
    return dataset


def load_rendering(dataset, domain: str, split: str, index: int, rain_type: int = 1) -> dict:
    """The ``index``-th photo of a split as rendered in ``domain`` (same index = same scene in every domain).

    ``dataset`` is that split opened with :func:`open_split`; it is passed in so that callers reading
    many scenes open (and size-check) each split once.
    """
    rainy_path, _ = _pair_paths(domain, dataset.root, split, index, rain_type)
    rainy_paths = [Path(pair[0]) for pair in dataset.pairs]
    if rainy_path not in rainy_paths:
        raise DatasetError(f"{rainy_path}: not in the {domain} {split} split under {dataset.root}")
    return dataset[rainy_paths.index(rainy_path)]


def main(argv: list[str] | None = None) -> None:
    """``python -m derainlib.data.benchmark --profile cpu [--root DIR] [--seed N] [--version V]``: build (or verify) a benchmark."""
    import argparse

    from ..profiles import PROFILES

    parser = argparse.ArgumentParser(description="Render the embedded deraining benchmark to disk.")
    parser.add_argument("--profile", default="ci", choices=sorted(PROFILES))
    parser.add_argument("--root", type=Path, default=None, help="default: build/benchmark/<profile>")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--version", type=int, default=synthetic.DEFAULT_VERSION, choices=synthetic.RENDERER_VERSIONS,
                        help="renderer version (1: the renderer of the first results; 2: the photometric one)")
    parser.add_argument("--workers", type=int, default=None, help="render processes (default: CPU count)")
    args = parser.parse_args(argv)
    root = build_benchmark(args.root, args.profile, seed=args.seed, version=args.version, workers=args.workers)
    files = len(json.loads((root / MANIFEST_NAME).read_text())["files"])
    print(f"{root}: {files} files, manifest verified")


if __name__ == "__main__":
    main()

"""The renderer study: rain statistics of renderer version 1 against version 2, and comparison figures.

Functions a notebook calls:

* :func:`study_photos` — ``n`` shipped photos (test split first), resized to a longer side;
* :func:`statistics_rows` / :func:`statistics_table` — every statistic of
  :func:`derainlib.analysis.rain_statistics.rendering_statistics` per photo, domain and version,
  and the per-(domain, version) means side by side;
* :func:`check_ranges` — which domain means fall outside :data:`EXPECTED_RANGES`, the documented
  ranges version 2 is built to produce;
* :func:`comparison_figure` — per domain: the version 1 render, the version 2 render, a 100 % crop
  of each, and a line on the look of the public dataset the domain imitates (:data:`PUBLIC_LOOK`);
* :func:`versions_table` — the means as a flat table (one row per domain and version), for saving;
* :func:`write_comparison` — all of the above at a profile's sizes (``renderer_photos``,
  ``renderer_size``), the table saved as ``00_renderer_versions`` and one figure per domain as
  ``00_renderer_<domain>``; notebook 00 calls it, and so does whoever writes the ``cpu`` numbers.

Everything is computed on the fly from the renderer (only :func:`write_comparison` writes files, and
only with an ``output_dir``), fast enough for the ``ci`` profile at a few photos of 128 px.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..analysis.rain_statistics import rendering_statistics, structure_tensor_orientation
from ..data import photos as photo_store
from ..data.benchmark import resize_longer_side
from ..data.synthetic import DOMAINS, RENDERER_VERSIONS, render_layers, render_pair
from ..paths import REPO_ROOT
from ..profiles import Profile, get_profile
from ..reporting import save_figure, save_table

__all__ = [
    "PUBLIC_LOOK",
    "EXPECTED_RANGES",
    "STUDY_COLUMNS",
    "study_photos",
    "statistics_rows",
    "statistics_table",
    "check_ranges",
    "comparison_figure",
    "versions_table",
    "Comparison",
    "write_comparison",
    "TABLE_NAME",
    "study_figure_path",
]

#: The name :func:`write_comparison` saves its table under (``results/<profile>/00_renderer_versions.csv``).
TABLE_NAME = "00_renderer_versions"

#: One line on what each public dataset looks like at full size (what the domain should imitate).
PUBLIC_LOOK: dict[str, str] = {
    "rain200l": "Rain200L/Rain100L: sparse, thin, semi-transparent bright streaks in one direction, varied length.",
    "rain200h": "Rain200H/Rain100H: dense, wide streaks in several near-parallel layers; some haze of fine rain.",
    "rain800": "Rain800: Photoshop rain of varied heaviness, from drizzle to downpour, often with a light veil.",
    "ddn": "DDN-Data (Rain1400): 14 rain types per photo differing in density, length, width and angle.",
    "night": "GTAV-NightRain: dark night scenes lit by lamps; rain visible mainly near the lights; the target is night.",
    "snow": "Snow100K: white flakes of three sizes, large near ones blurred, some motion-blurred.",
    "raindrop": "RainDrop (Qian et al.): defocused water drops on glass showing a blurred, flipped background.",
    "realproxy": "Real rain (SPA, Real200): faint streaks and veil under dull light, camera noise, JPEG.",
    "raincityscapes": "RainCityscapes: street scenes with streaks and fog by depth; far buildings fogged, near cars clear.",
}

#: The statistics tabulated by :func:`statistics_table` (means over photos).
STUDY_COLUMNS: tuple[str, ...] = (
    "coverage", "mean_intensity", "anisotropy_streaks", "orientation_spread_deg", "length_median", "width_median",
    "contrast", "brighter_share", "psnr_in", "ssim_in", "niqe_in", "target_luminance", "anisotropy_rain_layer",
    "entropy_image", "entropy_rain", "sv_top_image", "sv_top_rain", "entropy_lower", "sv_faster", "holds",
)

#: Documented ranges of per-domain means that version 2 is built to produce, measured with
#: :func:`statistics_table` on shipped photos at 128-256 px (seed 0): coverage is the share of pixels
#: the rain changes by 10/255 or more; ``anisotropy_streaks`` the structure-tensor coherence of the
#: streak layer (1 = parallel); ``orientation_spread_deg`` the circular spread of tile orientations;
#: ``target_luminance`` the mean luminance of the clean target. The tests check a few photos against them.
EXPECTED_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "rain200l": {"coverage": (0.015, 0.12), "anisotropy_streaks": (0.45, 1.0), "orientation_spread_deg": (0.0, 12.0),
                 "contrast": (0.03, 0.4), "psnr_in": (25.0, 45.0)},
    "rain200h": {"coverage": (0.2, 0.65), "anisotropy_streaks": (0.45, 1.0), "orientation_spread_deg": (0.0, 12.0),
                 "contrast": (0.03, 0.4), "psnr_in": (15.0, 30.0)},
    "rain800": {"coverage": (0.05, 0.9), "anisotropy_streaks": (0.3, 1.0), "psnr_in": (16.0, 40.0)},
    "ddn": {"coverage": (0.01, 0.5), "anisotropy_streaks": (0.4, 1.0), "orientation_spread_deg": (0.0, 12.0)},
    "night": {"target_luminance": (0.0, 0.25), "coverage": (0.0, 0.3), "psnr_in": (20.0, 50.0)},
    "snow": {"coverage": (0.02, 0.4), "anisotropy_streaks": (0.0, 0.45), "brighter_share": (0.95, 1.0)},
    "raindrop": {"coverage": (0.01, 0.4), "anisotropy_streaks": (0.0, 0.6)},
    "realproxy": {"coverage": (0.05, 1.0), "psnr_in": (15.0, 40.0)},
    "raincityscapes": {"coverage": (0.2, 1.0), "psnr_in": (8.0, 30.0)},
}


def study_photos(n: int = 4, size: int = 256, split: str = "test") -> list[np.ndarray]:
    """``n`` shipped photos of ``split`` (evenly spaced through the manifest), longer side ``size``."""
    manifest = photo_store.load_manifest()
    rows = manifest[manifest["split"] == split]
    if n > len(rows):
        raise ValueError(f"asked for {n} photos but the {split} split has {len(rows)}")
    picks = np.linspace(0, len(rows) - 1, n).round().astype(int)
    return [resize_longer_side(photo_store.load_photo(rows["file"].iloc[p]), size) for p in picks]


def _ddn_type(index: int) -> int:
    return index % 14 + 1  # cycle through the 14 types across photos


def statistics_rows(
    photos: Iterable[np.ndarray], *, domains: Iterable[str] = DOMAINS, versions: Iterable[int] = RENDERER_VERSIONS,
    seed: int = 0, with_niqe: bool = True,
) -> Any:
    """One row per (photo, domain, version): every rendering statistic, as a ``pandas.DataFrame``.

    Photo ``i`` is rendered with seed ``seed + i`` (and DDN type ``i % 14 + 1``), the same for both
    versions, so the versions see the same photos. The rain layer is taken against the domain's
    clean target (the relit scene for version 2 ``night`` and ``realproxy``).
    ``anisotropy_rain_layer`` is the structure-tensor coherence of the renderer's own rain map
    (``info["rain"]``: version 1's streak layer or mask, version 2's alpha map), before fog, veil,
    camera noise or JPEG, which dominate the gradients of ``O - B`` in ``realproxy`` and ``raincityscapes``.
    """
    import pandas as pd

    rows = []
    for i, photo in enumerate(photos):
        for domain in domains:
            for version in versions:
                kw = {"ddn_type": _ddn_type(i)} if domain == "ddn" else {}
                rainy, info = render_layers(photo, domain, seed + i, version=version, **kw)
                target = info["target"]
                row: dict[str, Any] = {"photo": i, "domain": domain, "version": version}
                row.update(rendering_statistics(target, rainy, with_niqe=with_niqe))
                row["anisotropy_rain_layer"] = structure_tensor_orientation(info["rain"])[1]
                t = target.astype(np.float64) / 255.0
                row["target_luminance"] = float((0.299 * t[..., 0] + 0.587 * t[..., 1] + 0.114 * t[..., 2]).mean())
                rows.append(row)
    return pd.DataFrame(rows)


def statistics_table(rows: Any, columns: Iterable[str] = STUDY_COLUMNS) -> Any:
    """Means per domain and version (rows: domain; columns: (statistic, version)), old beside new."""
    columns = [c for c in columns if c in rows.columns]
    table = rows.groupby(["domain", "version"])[columns].mean().unstack("version")
    return table.reindex([d for d in DOMAINS if d in table.index])


def check_ranges(rows: Any, ranges: dict[str, dict[str, tuple[float, float]]] = EXPECTED_RANGES) -> list[str]:
    """Version 2 domain means outside :data:`EXPECTED_RANGES`, as readable lines (empty: all inside)."""
    new = rows[rows["version"] == 2].groupby("domain").mean(numeric_only=True)
    problems = []
    for domain, limits in ranges.items():
        if domain not in new.index:
            continue
        for stat, (lo, hi) in limits.items():
            value = float(new.loc[domain, stat])
            if not lo <= value <= hi:
                problems.append(f"{domain}: {stat} = {value:.3g}, documented range [{lo}, {hi}]")
    return problems


def comparison_figure(photo: np.ndarray, domain: str, *, seed: int = 0, crop: int = 96, ddn_type: int = 9) -> Any:
    """Old (v1) and new (v2) render of one photo, each with a 100 % crop, under the public dataset's look.

    The crop (``crop`` x ``crop`` pixels, shown pixel for pixel) is taken where the version 2 rain
    layer is strongest on average, so it shows streaks rather than an empty patch. Returns a
    ``matplotlib.figure.Figure``.
    """
    import matplotlib.pyplot as plt
    from scipy import ndimage

    kw = {"ddn_type": ddn_type} if domain == "ddn" else {}
    old, old_target = render_pair(photo, domain, seed, version=1, **kw)
    new, new_target = render_pair(photo, domain, seed, version=2, **kw)
    h, w = photo.shape[:2]
    c = min(crop, h, w)
    energy = ndimage.uniform_filter(np.abs(new.astype(np.float32) - new_target.astype(np.float32)).mean(axis=2), c)
    lo, hi = c // 2, (h - c + c // 2, w - c + c // 2)
    inner = energy[lo : hi[0] + 1, lo : hi[1] + 1]
    cy, cx = np.unravel_index(int(np.argmax(inner)), inner.shape)
    y0, x0 = int(cy), int(cx)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), gridspec_kw={"width_ratios": [w / h, w / h, 1, 1]})
    panels = [(old, "version 1"), (new, "version 2"), (old[y0:y0 + c, x0:x0 + c], "v1, crop at full resolution"),
              (new[y0:y0 + c, x0:x0 + c], "v2, crop at full resolution")]
    for ax, (image, title) in zip(axes, panels):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[:2]:
        ax.add_patch(plt.Rectangle((x0, y0), c, c, fill=False, edgecolor="yellow", linewidth=1))
    fig.suptitle(f"{domain} — {PUBLIC_LOOK[domain]}", fontsize=10)
    fig.tight_layout()
    return fig


def versions_table(rows: Any, columns: Iterable[str] = STUDY_COLUMNS) -> Any:
    """Means per domain and version as a flat ``pandas.DataFrame``: columns ``domain``, ``version``, then
    the statistics; version 1's row directly above version 2's. True/false columns (``holds``, ...)
    become the share of photos where they are true. :func:`check_ranges` accepts this table as well as
    the per-photo rows (one row per domain and version averages to itself)."""
    columns = [c for c in columns if c in rows.columns]
    table = rows.groupby(["domain", "version"])[columns].mean().reset_index()
    order = {domain: i for i, domain in enumerate(DOMAINS)}
    table = table.sort_values(["domain", "version"], key=lambda c: c.map(order) if c.name == "domain" else c)
    return table.reset_index(drop=True)


@dataclass
class Comparison:
    """What :func:`write_comparison` computed: the table, the range problems, and the per-domain figures."""

    table: Any
    problems: list[str]
    photos: int
    size: int
    figures: dict[str, Path] = field(default_factory=dict)  # domain -> saved PNG (empty without output_dir)


def write_comparison(
    profile: str | Profile, output_dir: str | os.PathLike | None, *, seed: int = 0,
    domains: Iterable[str] = DOMAINS, with_niqe: bool = True,
) -> Comparison:
    """Renderer version 1 against 2 at the profile's sizes: statistics, range check, and one figure per domain.

    Renders ``profile.renderer_photos`` shipped test photos (longer side ``profile.renderer_size``)
    into every domain with both versions (:func:`statistics_rows`), saves :func:`versions_table` as
    ``<output_dir>/results/00_renderer_versions.{csv,md}`` and :func:`comparison_figure` of the first
    photo as ``<output_dir>/figures/00_renderer_<domain>.{png,pdf}`` (nothing is written when
    ``output_dir`` is None). Figures are closed after saving, so a notebook shows none unless asked.
    """
    import matplotlib.pyplot as plt

    settings = get_profile(profile)
    domains = list(domains)
    photos = study_photos(settings.renderer_photos, settings.renderer_size)
    rows = statistics_rows(photos, domains=domains, seed=seed, with_niqe=with_niqe)
    table = versions_table(rows)
    save_table(table, TABLE_NAME, output_dir)
    figures: dict[str, Path] = {}
    for domain in domains:
        fig = comparison_figure(photos[0], domain, seed=seed)
        saved = save_figure(fig, f"00_renderer_{domain}", output_dir)
        plt.close(fig)
        if saved:
            figures[domain] = saved[0]
    return Comparison(table=table, problems=check_ranges(rows), photos=len(photos), size=settings.renderer_size,
                      figures=figures)


def study_figure_path(domain: str, profile: str = "cpu") -> Path:
    """The committed comparison figure of ``domain`` written by :func:`write_comparison` with ``profile``
    (``figures/<profile>/00_renderer_<domain>.png``); FileNotFoundError naming the command when missing."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; valid domains: {', '.join(DOMAINS)}")
    path = REPO_ROOT / "figures" / profile / f"00_renderer_{domain}.png"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not written yet; renderer_study.write_comparison({profile!r}, output_dir) "
                                "writes it under output_dir/figures")
    return path

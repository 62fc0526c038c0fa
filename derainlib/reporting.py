"""Saving figures and tables the same way from every notebook, and checking ci tables against their reference.

Notebooks take an ``output_dir`` parameter. When it is ``None`` (interactive use, and nbval's
re-run of the committed notebooks) nothing is written; ``make reproduce`` passes a staging folder
and moves what the notebook wrote there into place only after the notebook succeeded
(:mod:`derainlib.reproduce` says where). Figures are saved as PNG and PDF with fixed metadata, so a
rerun gives the same bytes. :func:`save_figure` / :func:`save_table` hold the profile's own outputs;
:func:`save_study_figure` holds figures drawn only from the committed study results
(``results/cpu``), which every profile redraws identically into ``figures/study/``.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import matplotlib.figure
import numpy as np
import pandas as pd

from .paths import RESULTS_ROOT, results_dir

#: Bootstrap resamples of the test images in :func:`paired_difference`, and the interval's coverage.
BOOTSTRAP_SAMPLES = 10_000
CONFIDENCE = 0.95

# Fixed metadata: no creation date or library version that would change the files on every run.
_PNG_METADATA = {"Software": None}
_PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}


# Where, under a notebook's output_dir, the figures drawn from the committed study go (reproduce moves them
# to figures/study/, whatever the profile).
STUDY_FIGURES = Path("study") / "figures"
# The profile whose committed results are the study the notebooks show first.
STUDY_PROFILE = "cpu"


def save_figure(fig: matplotlib.figure.Figure, name: str, output_dir: str | os.PathLike | None,
                *, subfolder: str | os.PathLike = "figures") -> list[Path]:
    """Write ``<output_dir>/figures/<name>.png`` and ``.pdf``; do nothing when ``output_dir`` is None."""
    if output_dir is None:
        return []
    folder = Path(output_dir) / subfolder
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight", metadata=_PNG_METADATA)
    fig.savefig(paths[1], bbox_inches="tight", metadata=_PDF_METADATA)
    return paths


def save_study_figure(fig: matplotlib.figure.Figure, name: str, output_dir: str | os.PathLike | None) -> list[Path]:
    """Like :func:`save_figure`, for a figure drawn only from committed study results: ``make reproduce``
    moves it to ``figures/study/<name>.{png,pdf}`` whatever the profile, so every run redraws the same files."""
    return save_figure(fig, name, output_dir, subfolder=STUDY_FIGURES)


def read_study_table(name: str, profile: str = STUDY_PROFILE) -> pd.DataFrame:
    """A table a notebook wrote with the study's profile, as committed in ``results/<profile>/<name>.csv``."""
    path = results_dir(profile) / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not written yet; `python -m derainlib.reproduce --profile {profile}` "
                                "writes it")
    return pd.read_csv(path)


def study_output_dir(profile: str, output_dir: str | os.PathLike | None) -> str | os.PathLike | None:
    """``output_dir`` when the notebook runs with the study's profile, else ``None``: tables derived from the
    study (Kendall's tau, verdicts) are saved into ``results/cpu`` by a cpu run only, never by a ci run."""
    return output_dir if profile == STUDY_PROFILE else None


def to_markdown(table: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    """A GitHub-flavoured markdown table (pandas' own needs the optional ``tabulate`` package)."""

    def cell(value: object) -> str:
        if isinstance(value, (float, np.floating)):
            return "nan" if np.isnan(value) else float_format.format(value)
        return str(value)

    header = [str(column) for column in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def save_table(table: pd.DataFrame, name: str, output_dir: str | os.PathLike | None) -> list[Path]:
    """Write ``<output_dir>/results/<name>.csv`` and ``.md``; do nothing when ``output_dir`` is None."""
    if output_dir is None:
        return []
    folder = Path(output_dir) / "results"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.csv", folder / f"{name}.md"]
    table.to_csv(paths[0], index=False)
    paths[1].write_text(to_markdown(table))
    return paths


# How far a ci-profile number may move between CPUs before check_table calls it a change: the one place the
# tolerance is stated (tolerance_text() prints it). Training reruns bit for bit on one CPU, but floating-point
# kernels differ between processors (bf16 and fp32 alike), so numbers move in the 2nd-3rd decimal; the README
# gives the differences measured between processors. The bounds leave a wide margin above them.
REFERENCE_TOLERANCES = {"PSNR": 0.25, "SSIM": 0.005, "NIQE": 0.25}
REFERENCE_RELATIVE_TOLERANCE = 0.02
# Set to 1 (``python -m derainlib.reproduce --update-reference``) to write new results/ci references.
UPDATE_REFERENCE_ENV = "DERAINLIB_UPDATE_REFERENCE"
_LEADING_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)")


def tolerance_text() -> str:
    """The tolerances of :func:`check_table`, in words (for notebooks and error messages)."""
    units = {"PSNR": " dB"}
    absolute = ", ".join(f"{key} ±{value:g}{units.get(key, '')}" for key, value in REFERENCE_TOLERANCES.items())
    return f"{absolute}, any other number ±{REFERENCE_RELATIVE_TOLERANCE:.0%}"


def updating_reference() -> bool:
    """Whether this run was asked to write new ci references (``--update-reference``)."""
    return os.environ.get(UPDATE_REFERENCE_ENV, "") == "1"


def pipeline_check_note(profile: str, iterations: int, width: int, depth: int) -> str:
    """The line a notebook prints under its pipeline-check heading: what its own runs are, and what they are not."""
    if profile == "ci":
        return (f"Pipeline check (profile ci: {iterations} training steps, M = {width}, D = {depth}+3, tiny images). "
                "These numbers mean nothing about the methods and no conclusion is drawn from them. Each table is "
                f"compared with the committed results/ci reference within {tolerance_text()} (numbers differ slightly "
                "between CPUs), and the notebook fails on a larger change.")
    return (f"This profile's own runs (profile {profile}: {iterations} steps, M = {width}, D = {depth}+3)"
            + (", the study's runs read back: the same numbers as above." if profile == STUDY_PROFILE else "."))


class ReferenceMismatch(AssertionError):
    """A table differs from its committed reference by more than the tolerances."""


def _as_number(value: object) -> float | None:
    """The number a table cell shows: a float, or the leading number of "24.25 ± 0.12 (n=2)"; None for text."""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    match = _LEADING_NUMBER.match(str(value))
    if match:
        return float(match.group(1))
    return float("nan") if str(value).strip().lower() in ("", "nan") else None


def _within(column: str, ours: float, reference: float) -> bool:
    if np.isnan(ours) or np.isnan(reference):
        return np.isnan(ours) and np.isnan(reference)
    absolute = next((tol for key, tol in REFERENCE_TOLERANCES.items() if key in column), None)
    if absolute is not None:
        return abs(ours - reference) <= absolute
    return abs(ours - reference) <= REFERENCE_RELATIVE_TOLERANCE * max(abs(reference), 1e-12)


# The notebook parameters the committed ci reference is written with (a default `make reproduce`).
REFERENCE_RUN = {"profile": "ci", "seed": 0, "data_root": None}


def check_table(
    table: pd.DataFrame,
    name: str,
    run: dict,
    results_root: str | os.PathLike | None = None,
) -> str:
    """Compare a ci-profile table with its committed reference ``results/ci/<name>.csv``, within tolerances.

    nbval cannot compare these tables exactly: training gives slightly different numbers on different
    CPUs (see REFERENCE_TOLERANCES). So the committed notebooks ignore those outputs and call this
    instead, which raises ``ReferenceMismatch`` when a number moved by more than the tolerance, or a
    text cell or the table's shape changed. ``run`` holds the notebook's ``profile``, ``seed`` and
    ``data_root``: the check runs whenever they are ``REFERENCE_RUN``'s (nbval, interactive use with
    the defaults, and ``make reproduce``); another profile, seed or dataset gives other numbers, and
    the line says it was not compared. Only an explicit ``--update-reference`` (environment variable
    ``DERAINLIB_UPDATE_REFERENCE=1``) turns the check off, because that run writes the new reference;
    its line then says how many cells changed. Columns about time are skipped. Returns the line to print.
    """
    if {key: run.get(key) for key in REFERENCE_RUN} != REFERENCE_RUN:
        return f"{name}: not compared (the committed reference is for {REFERENCE_RUN})"
    root = Path(results_root) if results_root is not None else RESULTS_ROOT
    reference_path = root / "ci" / f"{name}.csv"
    if updating_reference():
        try:
            _compare_with_reference(table, reference_path)
            change = "no number moved beyond tolerance"
        except ReferenceMismatch as error:
            change = str(error).splitlines()[0]
        return f"{name}: not compared, this run writes the new ci reference (--update-reference); {change}"
    compared = _compare_with_reference(table, reference_path)
    return f"{name}: {compared} numbers match the committed ci reference within tolerance"


def _compare_with_reference(table: pd.DataFrame, reference_path: Path) -> int:
    """The number of cells compared; raises ReferenceMismatch on a difference beyond tolerance."""
    update = "if the change is intended, `python -m derainlib.reproduce --update-reference` writes a new reference"
    if not reference_path.exists():
        raise ReferenceMismatch(f"{reference_path}: no committed reference; {update}")
    reference = pd.read_csv(reference_path, dtype=str, keep_default_na=False)
    columns = [str(column) for column in table.columns if "s/image" not in str(column) and "time" not in str(column)]
    missing = [column for column in columns if column not in reference.columns]
    if missing or len(reference) != len(table):
        raise ReferenceMismatch(
            f"{reference_path}: the table's shape changed (reference {len(reference)} rows, now {len(table)}; "
            f"columns missing from the reference: {missing}); {update}")
    differences, compared = [], 0
    for row in range(len(table)):
        for column in columns:
            ours, theirs = table[column].iloc[row], reference[column].iloc[row]
            ours_number, reference_number = _as_number(ours), _as_number(theirs)
            if ours_number is None or reference_number is None:
                same = str(ours) == str(theirs)
            else:
                same = _within(column, ours_number, reference_number)
                compared += 1
            if not same:
                differences.append(f"row {row}, {column!r}: {ours} (reference {theirs})")
    if differences:
        raise ReferenceMismatch(
            f"{reference_path}: {len(differences)} cells differ beyond tolerance ({tolerance_text()}):\n  "
            + "\n  ".join(differences[:12]) + f"\n{update}")
    return compared


def paired_difference(treated: np.ndarray, control: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES,
                      confidence: float = CONFIDENCE, seed: int = 0) -> dict[str, float]:
    """Mean paired difference ``treated - control`` with percentile bootstrap intervals.

    ``treated`` and ``control``: ``seeds x images`` arrays (or one row, ``images``), the same image in
    the same column and the same training seed in the same row. ``low``/``high``: each image's difference is
    averaged over the seeds, and the images are resampled with replacement ``samples`` times (the images are the
    population the claim is about; this interval holds their spread, not the spread between training runs).
    ``seed_low``/``seed_high`` (two seeds or more, else NaN): a two-level bootstrap that resamples the seeds too
    (rows with replacement, then images with replacement), so the spread between training runs widens it; with
    three seeds it is coarse. Returns those, ``mean``, ``images`` and ``seeds``.
    """
    t, c = np.atleast_2d(np.asarray(treated, float)), np.atleast_2d(np.asarray(control, float))
    if t.shape != c.shape:
        raise ValueError(f"treated {t.shape} and control {c.shape} must pair seed by seed and image by image")
    if t.shape[1] < 2:
        raise ValueError("a bootstrap over images needs at least 2 images")
    if not np.isfinite(t).all() or not np.isfinite(c).all():
        raise ValueError("the scores hold NaN or Inf: a paired difference needs a score for every image")
    differences = t - c
    per_image = differences.mean(axis=0)
    rng = np.random.default_rng(seed)
    seeds, images = differences.shape
    tails = [(1 - confidence) / 2, 1 - (1 - confidence) / 2]
    low, high = np.quantile(per_image[rng.integers(0, images, size=(samples, images))].mean(axis=1), tails)
    seed_low = seed_high = math.nan
    if seeds >= 2:
        rows = rng.integers(0, seeds, size=(samples, seeds, 1))
        columns = rng.integers(0, images, size=(samples, 1, images))
        seed_low, seed_high = np.quantile(differences[rows, columns].mean(axis=(1, 2)), tails)
    return {"mean": float(per_image.mean()), "low": float(low), "high": float(high), "seed_low": float(seed_low),
            "seed_high": float(seed_high), "images": int(images), "seeds": int(seeds)}

"""Saving figures and tables the same way from every notebook.

Notebooks take an ``output_dir`` parameter. When it is ``None`` (interactive use, and nbval's
re-run of the committed notebooks) nothing is written; ``make reproduce`` passes a staging folder
and moves its ``figures/`` and ``results/`` into the repository only after the notebook succeeded.
Figures are saved as PNG and PDF with fixed metadata, so a rerun gives the same bytes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib.figure
import numpy as np
import pandas as pd

from . import REPO_ROOT

# Fixed metadata: no creation date or library version that would change the files on every run.
_PNG_METADATA = {"Software": None}
_PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}


def save_figure(fig: matplotlib.figure.Figure, name: str, output_dir: str | os.PathLike | None) -> list[Path]:
    """Write ``<output_dir>/figures/<name>.png`` and ``.pdf``; do nothing when ``output_dir`` is None."""
    if output_dir is None:
        return []
    folder = Path(output_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight", metadata=_PNG_METADATA)
    fig.savefig(paths[1], bbox_inches="tight", metadata=_PDF_METADATA)
    return paths


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


# How far a ci-profile number may move between CPU generations before check_table calls it a change.
# Measured: bf16 training on AMD Zen 4 vs Zen 5 moves PSNR by up to 0.06 dB, SSIM by up to 0.0005 and
# the VGG feature distances of Fig. 8 by up to 0.5 %; fp32 training on an AVX2 Zen 3 against the AVX-512
# reference moves Table IV's PSNR by up to 0.03 dB. The bounds below leave about 4x that margin.
REFERENCE_TOLERANCES = {"PSNR": 0.25, "SSIM": 0.005, "NIQE": 0.25}
REFERENCE_RELATIVE_TOLERANCE = 0.02
_LEADING_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)")


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
REFERENCE_RUN = {"profile": "ci", "seed": 0, "data_root": None, "output_dir": None}


def check_table(
    table: pd.DataFrame,
    name: str,
    run: dict,
    results_root: str | os.PathLike | None = None,
) -> str:
    """Compare a ci-profile table with its committed reference ``results/ci/<name>.csv``, within tolerances.

    nbval cannot compare these tables exactly: bf16 training gives slightly different numbers on
    different CPU generations (see REFERENCE_TOLERANCES). So the committed notebooks ignore those
    outputs and call this instead, which raises ``ReferenceMismatch`` when a number moved by more than
    the tolerance, or a text cell changed. ``run`` holds the notebook's ``profile``, ``seed``,
    ``data_root`` and ``output_dir``; the check runs only when they are ``REFERENCE_RUN``'s (nbval, or
    interactive use with the defaults): another seed or dataset gives other numbers, and a
    ``make reproduce`` run (an ``output_dir``) writes the new reference. Columns about time are skipped.
    Returns the line to print.
    """
    if run.get("output_dir") is not None and run.get("profile") == "ci":
        return f"{name}: this run writes the ci reference"
    if {key: run.get(key) for key in REFERENCE_RUN} != REFERENCE_RUN:
        return f"{name}: not compared (the committed reference is for {REFERENCE_RUN})"
    root = Path(results_root) if results_root is not None else REPO_ROOT / "results"
    reference_path = root / "ci" / f"{name}.csv"
    if not reference_path.exists():
        raise ReferenceMismatch(f"{reference_path}: no committed reference; `make reproduce` writes it")
    reference = pd.read_csv(reference_path, dtype=str, keep_default_na=False)
    columns = [str(column) for column in table.columns if "s/image" not in str(column) and "time" not in str(column)]
    missing = [column for column in columns if column not in reference.columns]
    if missing or len(reference) != len(table):
        raise ReferenceMismatch(
            f"{reference_path}: the table's shape changed (reference {len(reference)} rows, now {len(table)}; "
            f"columns missing from the reference: {missing}); if intended, `make reproduce` writes a new reference")
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
            f"{reference_path}: {len(differences)} cells differ beyond tolerance {REFERENCE_TOLERANCES} "
            f"(relative {REFERENCE_RELATIVE_TOLERANCE} otherwise):\n  " + "\n  ".join(differences[:12])
            + "\nif the change is intended, `make reproduce` writes a new reference")
    return f"{name}: {compared} numbers match the committed ci reference within tolerance"

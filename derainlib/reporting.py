"""Saving figures and tables the same way from every notebook.

Notebooks take an ``output_dir`` parameter. When it is ``None`` (interactive use, and nbval's
re-run of the committed notebooks) nothing is written; ``make reproduce`` passes a staging folder
and moves its ``figures/`` and ``results/`` into the repository only after the notebook succeeded.
Figures are saved as PNG and PDF with fixed metadata, so a rerun gives the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.figure
import numpy as np
import pandas as pd

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

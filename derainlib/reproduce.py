"""Run the numbered notebooks headlessly with papermill (``make reproduce`` and ``make notebooks``).

Nothing committed is touched by a failed run: each notebook executes into a private staging
folder, and only when it finishes without error are its outputs moved into place
(``build/notebooks/<profile>/``, ``figures/<profile>/``, ``results/<profile>/``), file by file with
an atomic rename. Each run leaves ``results/<profile>/<notebook>.provenance.json``: the commit,
machine, parameters, versions and wall time behind that notebook's tables. ``--update-committed`` instead refreshes the committed notebooks in
``notebooks/`` (executed with their defaults, i.e. the ``ci`` profile, for nbval to re-run).

Usage::

    python -m derainlib.reproduce --profile ci                    # every notebook, in number order
    python -m derainlib.reproduce --profile cpu notebooks/00_data_tour.ipynb
    python -m derainlib.reproduce --update-committed
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from . import REPO_ROOT
from .profiles import PROFILES, get_profile
from .provenance import provenance

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook raised while executing; nothing of its run was moved into place."""


def numbered_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The notebooks whose names start with a number, in number order."""
    return sorted(path for path in folder.glob("[0-9]*.ipynb"))


def _move_tree(source: Path, target: Path) -> list[Path]:
    """Move every file under ``source`` to the same place under ``target`` (atomic rename per file)."""
    moved = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, destination)
        moved.append(destination)
    return moved


def strip_run_metadata(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop papermill's per-run metadata (timestamps, durations) so committed notebooks diff cleanly."""
    notebook.metadata.pop("papermill", None)
    for cell in notebook.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    return notebook


def execute(notebook: Path, output: Path, parameters: dict) -> None:
    """Execute ``notebook`` into ``output`` with papermill in the notebook's folder; raise NotebookFailed."""
    import papermill

    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters, cwd=str(notebook.parent),
            progress_bar=False, log_output=False, kernel_name="python3",
        )
    except papermill.PapermillExecutionError as error:
        raise NotebookFailed(f"{notebook}: cell {error.exec_count} raised {error.ename}: {error.evalue}") from error


def run_notebook(
    notebook: Path,
    profile: str,
    *,
    parameters: dict | None = None,
    build_dir: Path = REPO_ROOT / "build" / "notebooks",
    figures_dir: Path = REPO_ROOT / "figures",
    results_dir: Path = REPO_ROOT / "results",
) -> dict[str, list[Path]]:
    """Execute one notebook with ``profile``; on success move its outputs into place and return them."""
    profile = get_profile(profile).name
    build_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=build_dir, prefix=f".{notebook.stem}.staging-"))
    try:
        executed = staging / notebook.name
        parameters = {"profile": profile, "output_dir": str(staging / "out"), **(parameters or {})}
        start = time.perf_counter()
        execute(notebook, executed, parameters)
        record = provenance(profile, {k: v for k, v in parameters.items() if k != "output_dir"},
                            time.perf_counter() - start)
        (staging / "out" / "results").mkdir(parents=True, exist_ok=True)
        (staging / "out" / "results" / f"{notebook.stem}.provenance.json").write_text(json.dumps(record, indent=1))
        copy = build_dir / profile / notebook.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        os.replace(executed, copy)
        return {
            "figures": _move_tree(staging / "out" / "figures", figures_dir / profile),
            "results": _move_tree(staging / "out" / "results", results_dir / profile),
            "notebook": [copy],
        }
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def update_committed(notebook: Path) -> Path:
    """Re-execute a committed notebook with its default parameters and replace it only on success."""
    staging = Path(tempfile.mkdtemp(dir=notebook.parent, prefix=f".{notebook.stem}.staging-"))
    try:
        executed = staging / notebook.name
        execute(notebook, executed, parameters={})
        nbformat.write(strip_run_metadata(nbformat.read(executed, as_version=4)), executed)
        os.replace(executed, notebook)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every numbered notebook")
    parser.add_argument("--profile", default="ci", choices=sorted(PROFILES))
    parser.add_argument("--seed", type=int, default=None, help="passed to the notebooks' seed parameter")
    parser.add_argument("--data-root", default=None, help="a folder holding the real datasets")
    parser.add_argument("--update-committed", action="store_true",
                        help="refresh notebooks/ in place (default parameters: the ci profile)")
    args = parser.parse_args(argv)
    notebooks = [path.resolve() for path in args.notebooks] or numbered_notebooks()
    if not notebooks:
        print(f"no numbered notebooks in {NOTEBOOK_DIR}", file=sys.stderr)
        return 1
    extra = {key: value for key, value in (("seed", args.seed), ("data_root", args.data_root)) if value is not None}
    for notebook in notebooks:
        start = time.perf_counter()
        try:
            if args.update_committed:
                update_committed(notebook)
                outputs = {"notebook": [notebook]}
            else:
                outputs = run_notebook(notebook, args.profile, parameters=extra)
        except NotebookFailed as error:
            print(f"FAILED {error}\nNothing of this run was moved into place.", file=sys.stderr)
            return 1
        written = sum(len(paths) for paths in outputs.values())
        print(f"ok {notebook.name} [{args.profile}] in {time.perf_counter() - start:.0f} s, {written} files written")
    return 0


if __name__ == "__main__":
    sys.exit(main())

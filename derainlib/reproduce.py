"""Run the numbered notebooks headlessly with papermill (``make reproduce`` and ``make notebooks``).

Nothing committed is touched by a failed run: each notebook executes into a private staging
folder, and only when it finishes without error are its outputs moved into place, file by file
with an atomic rename:

- the executed copy: ``build/notebooks/<profile>/``;
- figures drawn only from the committed study (``results/cpu``): ``figures/study/``, redrawn
  identically by every run;
- the profile's own figures and tables, with ``<notebook>.provenance.json`` (commit, machine,
  parameters, versions, wall time): ``figures/<profile>/`` and ``results/<profile>/`` for
  ``cpu``, ``gpu`` and ``paper``. For ``ci`` the committed ``figures/ci`` and ``results/ci`` are
  the reference its tables are checked against (``derainlib.reporting.check_table``, which fails
  the notebook on a change beyond tolerance), so a ``ci`` run writes them under
  ``build/reproduce/ci/`` and leaves the reference alone; ``--update-reference`` writes a new
  reference into ``figures/ci`` and ``results/ci`` instead (and does not compare).

``--update-committed`` instead refreshes the committed notebooks in ``notebooks/`` (executed with
their defaults, i.e. the ``ci`` profile, for nbval to re-run), with the kernelspec that
ipykernel installs, so that JupyterLab opens them unmodified.

Usage::

    python -m derainlib.reproduce --profile ci                    # every notebook, in number order
    python -m derainlib.reproduce --profile ci --update-reference # ... and write new results/ci references
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
from .reporting import REFERENCE_RUN, STUDY_FIGURES, UPDATE_REFERENCE_ENV

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
# The kernel the committed notebooks name: ipykernel's own spec ("Python 3 (ipykernel)"), which is what
# JupyterLab finds in the environment; another name makes it mark a notebook modified on opening.
try:
    from ipykernel.kernelspec import get_kernel_dict as _kernel_dict

    _KERNEL = _kernel_dict()
    KERNELSPEC = {"display_name": _KERNEL["display_name"], "language": _KERNEL["language"], "name": "python3"}
except ImportError:  # ipykernel ships with the dev extra; without it notebooks cannot run anyway
    KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


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


def execute(notebook: Path, output: Path, parameters: dict, *, update_reference: bool = False) -> None:
    """Execute ``notebook`` into ``output`` with papermill in the notebook's folder; raise NotebookFailed.

    ``update_reference`` tells the kernel's ``check_table`` (through ``DERAINLIB_UPDATE_REFERENCE``)
    that this run writes new ci references; otherwise the variable is cleared, so the checks run.
    """
    import papermill

    previous = os.environ.pop(UPDATE_REFERENCE_ENV, None)
    if update_reference:
        os.environ[UPDATE_REFERENCE_ENV] = "1"
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters, cwd=str(notebook.parent),
            progress_bar=False, log_output=False, kernel_name="python3",
        )
    except papermill.PapermillExecutionError as error:
        raise NotebookFailed(f"{notebook}: cell {error.exec_count} raised {error.ename}: {error.evalue}") from error
    finally:
        os.environ.pop(UPDATE_REFERENCE_ENV, None)
        if previous is not None:
            os.environ[UPDATE_REFERENCE_ENV] = previous


def run_notebook(
    notebook: Path,
    profile: str,
    *,
    parameters: dict | None = None,
    build_dir: Path = REPO_ROOT / "build" / "notebooks",
    figures_dir: Path = REPO_ROOT / "figures",
    results_dir: Path = REPO_ROOT / "results",
    check_dir: Path = REPO_ROOT / "build" / "reproduce",
    update_reference: bool = False,
) -> dict[str, list[Path]]:
    """Execute one notebook with ``profile``; on success move its outputs into place and return them.

    With the reference profile (``ci``) the profile's outputs go to ``check_dir/ci/{figures,results}``
    unless ``update_reference``, which writes them to ``figures_dir/ci`` and ``results_dir/ci`` (the
    committed reference) and tells the notebook's checks not to compare. Figures drawn from the committed
    study go to ``figures_dir/study`` in every case.
    """
    profile = get_profile(profile).name
    if update_reference and profile != REFERENCE_RUN["profile"]:
        raise ValueError(f"update_reference: only the {REFERENCE_RUN['profile']} profile has a committed reference, "
                         f"not {profile!r}")
    if profile == REFERENCE_RUN["profile"] and not update_reference:
        figures_target, results_target = check_dir / profile / "figures", check_dir / profile / "results"
    else:
        figures_target, results_target = figures_dir / profile, results_dir / profile
    build_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=build_dir, prefix=f".{notebook.stem}.staging-"))
    try:
        executed = staging / notebook.name
        parameters = {"profile": profile, "output_dir": str(staging / "out"), **(parameters or {})}
        start = time.perf_counter()
        execute(notebook, executed, parameters, update_reference=update_reference)
        record = provenance(profile, {k: v for k, v in parameters.items() if k != "output_dir"},
                            time.perf_counter() - start)
        (staging / "out" / "results").mkdir(parents=True, exist_ok=True)
        (staging / "out" / "results" / f"{notebook.stem}.provenance.json").write_text(json.dumps(record, indent=1))
        copy = build_dir / profile / notebook.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        os.replace(executed, copy)
        return {
            "study figures": _move_tree(staging / "out" / STUDY_FIGURES, figures_dir / "study"),
            "figures": _move_tree(staging / "out" / "figures", figures_target),
            "results": _move_tree(staging / "out" / "results", results_target),
            "notebook": [copy],
        }
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def set_kernelspec(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Name ipykernel's kernel as JupyterLab does, so that opening the notebook changes nothing."""
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    return notebook


def update_committed(notebook: Path) -> Path:
    """Re-execute a committed notebook with its default parameters and replace it only on success."""
    staging = Path(tempfile.mkdtemp(dir=notebook.parent, prefix=f".{notebook.stem}.staging-"))
    try:
        executed = staging / notebook.name
        execute(notebook, executed, parameters={})
        nbformat.write(set_kernelspec(strip_run_metadata(nbformat.read(executed, as_version=4))), executed)
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
    parser.add_argument("--update-reference", action="store_true",
                        help="ci only: write new references into figures/ci and results/ci instead of checking "
                             "the tables against them")
    args = parser.parse_args(argv)
    if args.update_reference and (args.profile != REFERENCE_RUN["profile"] or args.update_committed):
        parser.error(f"--update-reference goes with --profile {REFERENCE_RUN['profile']} only")
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
                outputs = run_notebook(notebook, args.profile, parameters=extra,
                                       update_reference=args.update_reference)
        except NotebookFailed as error:
            print(f"FAILED {error}\nNothing of this run was moved into place.", file=sys.stderr)
            return 1
        written = sum(len(paths) for paths in outputs.values())
        print(f"ok {notebook.name} [{args.profile}] in {time.perf_counter() - start:.0f} s, {written} files written")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where results, study runs and build products live, for every method.

- ``results/<profile>/``: committed tables and records (:func:`results_dir`);
- ``results/<profile>/<method>/runs/<run_id>/``: one study run (:func:`method_runs_root`);
- ``build/``: what is rebuilt on demand and never committed (the rendered benchmark, runs on a
  user's own data: :func:`build_dir`).
"""

from __future__ import annotations

from pathlib import Path

#: The repository root when derainlib is installed editable (the supported way: ``make setup``).
REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_ROOT = REPO_ROOT / "results"
BUILD_ROOT = REPO_ROOT / "build"


def results_dir(profile_name: str) -> Path:
    """``results/<profile>/``: the committed tables and study runs of one profile."""
    return RESULTS_ROOT / profile_name


def method_runs_root(profile_name: str, method: str) -> Path:
    """``results/<profile>/<method>/runs``: one folder per study run of ``method``."""
    return results_dir(profile_name) / method / "runs"


def build_dir(*parts: str) -> Path:
    """A folder under ``build/`` (git-ignored): ``build_dir("benchmark", "ci")``."""
    return BUILD_ROOT.joinpath(*parts)

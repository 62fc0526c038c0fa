"""Shared test fixtures, and a guard that no test writes into the repository.

Tests write only into pytest's temporary folders (``tmp_path``, ``tmp_path_factory``). Two things
keep that true:

- every embedded benchmark a test builds through the default location goes under a temporary
  ``$DERAINLIB_DATA`` for the whole test run (a user's own ``$DERAINLIB_DATA`` is left alone);
- the files of the repository tree (``build/`` included; ``.git``, ``.venv`` and caches excluded)
  are listed before and after each test module and the whole run: a module that adds, changes
  or deletes one gets an error naming the files, and the run fails.

Quick loop: ``pytest tests -m "not slow"`` leaves out the tests marked ``slow`` (the longest ones);
``make test`` runs everything.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from derainlib import REPO_ROOT

# Never compared: version control, the environment, and caches that Python and pytest write themselves.
_SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
_SKIPPED_SUFFIXES = (".egg-info",)


def tree_snapshot(root: Path = REPO_ROOT) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file under ``root`` except the skipped folders."""
    found: dict[str, tuple[int, int]] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:  # removed while walking (another process): nothing of ours to report
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in _SKIPPED_DIRS and not entry.name.endswith(_SKIPPED_SUFFIXES):
                    stack.append(Path(entry.path))
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found[os.path.relpath(entry.path, root)] = (stat.st_size, stat.st_mtime_ns)
    return found


def tree_changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """One line per file added, changed or deleted between two snapshots, sorted by path."""
    lines = [f"added    {p}" for p in after.keys() - before.keys()]
    lines += [f"deleted  {p}" for p in before.keys() - after.keys()]
    lines += [f"changed  {p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    return sorted(lines, key=lambda line: line[9:])


def _describe(changes: list[str], limit: int = 20) -> str:
    shown = changes[:limit] + ([f"... and {len(changes) - limit} more"] if len(changes) > limit else [])
    return "\n".join("  " + line for line in shown)


# --------------------------------------------------------------------------- the repository guard

_SNAPSHOT = pytest.StashKey[dict]()  # the tree when the test run started
_CHANGES = pytest.StashKey[list]()  # what differs when it finished


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_SNAPSHOT] = tree_snapshot()


@pytest.fixture(autouse=True, scope="module")
def _module_writes_nothing_into_the_repository(request: pytest.FixtureRequest) -> Iterator[None]:
    before = tree_snapshot()
    yield
    changes = tree_changes(before, tree_snapshot())
    if changes:
        pytest.fail(f"{request.node.nodeid} wrote into the repository tree {REPO_ROOT} "
                    f"(tests must write only under tmp_path):\n{_describe(changes)}", pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_SNAPSHOT, None)
    if before is None:
        return
    changes = tree_changes(before, tree_snapshot())
    if changes:
        session.config.stash[_CHANGES] = changes
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    changes = config.stash.get(_CHANGES, None)
    if changes:
        terminalreporter.write_sep("!", "the tests wrote into the repository tree", red=True, bold=True)
        terminalreporter.write_line(f"{len(changes)} file(s) under {REPO_ROOT} differ from the start of the run "
                                    "(tests must write only under tmp_path; another process changing the tree "
                                    "while the tests ran shows up here too):")
        terminalreporter.write_line(_describe(changes, limit=50))


# --------------------------------------------------------------------------- shared data


@pytest.fixture(autouse=True, scope="session")
def benchmark_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``$DERAINLIB_DATA`` for the test run: embedded benchmarks built at their default place land here."""
    home = tmp_path_factory.mktemp("derainlib-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DERAINLIB_DATA", str(home))
        yield home


@pytest.fixture(scope="session")
def ci_benchmark(benchmark_home: Path) -> Path:
    """The ``ci`` embedded benchmark, built once per test run at its default place under :func:`benchmark_home`."""
    from derainlib.data import build_benchmark
    from derainlib.data.benchmark import default_benchmark_root

    return build_benchmark(default_benchmark_root("ci"), "ci", workers=1, progress=False)


def import_script(path: Path) -> Iterator[ModuleType]:
    """Import a script (e.g. under ``benchmarks/``) as a module, for a module-scoped fixture to yield."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass in it looks its module up while being defined
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)

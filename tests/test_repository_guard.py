"""The guard in conftest.py that fails a run whose tests write into the repository tree."""

from __future__ import annotations

import os

from conftest import tree_changes, tree_snapshot


def test_snapshot_sees_added_changed_and_deleted_files_but_not_caches(tmp_path):
    (tmp_path / "results" / "cpu").mkdir(parents=True)
    (tmp_path / "results" / "cpu" / "table.csv").write_text("a\n")
    (tmp_path / "old.txt").write_text("old")
    before = tree_snapshot(tmp_path)
    assert set(before) == {os.path.join("results", "cpu", "table.csv"), "old.txt"}

    (tmp_path / "build" / "benchmark").mkdir(parents=True)
    (tmp_path / "build" / "benchmark" / "x.png").write_bytes(b"png")  # ignored by git, still caught
    (tmp_path / "results" / "cpu" / "table.csv").write_text("ab\n")
    (tmp_path / "old.txt").unlink()
    for cache in (".git", ".venv", "__pycache__", ".pytest_cache", "derainlib.egg-info"):
        (tmp_path / cache).mkdir()
        (tmp_path / cache / "file").write_text("not compared")
    changes = tree_changes(before, tree_snapshot(tmp_path))
    assert changes == [f"added    {os.path.join('build', 'benchmark', 'x.png')}", "deleted  old.txt",
                       f"changed  {os.path.join('results', 'cpu', 'table.csv')}"]


def test_a_rewrite_with_the_same_size_counts_as_a_change(tmp_path):
    path = tmp_path / "same.txt"
    path.write_text("a")
    before = tree_snapshot(tmp_path)
    path.write_text("b")
    os.utime(path, ns=(before["same.txt"][1] + 10**9, before["same.txt"][1] + 10**9))
    assert tree_changes(before, tree_snapshot(tmp_path)) == ["changed  same.txt"]
    assert tree_changes(before, before) == []

"""Atomic-file helpers: normal file modes, the sweep of a killed writer's leftovers, the locks, files in parts."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from derainlib.atomic import (
    FolderBusy,
    atomic_path,
    has_parts,
    is_temporary_of,
    join_file,
    lock_folder,
    read_parts,
    remove_with_parts,
    split_file,
    sweep_temporary,
    try_lock,
    write_text_atomic,
)
from derainlib.data.imageio import write_image


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_open_would_give_them(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        written = [write_text_atomic(tmp_path / "a.json", "{}"),
                   write_image(tmp_path / "b.png", np.zeros((4, 5, 3), np.uint8))]
        (tmp_path / "c.pt").write_bytes(b"x" * 10)
        written += split_file(tmp_path / "c.pt", 4)
    finally:
        os.umask(old)
    assert {oct(path.stat().st_mode & 0o777) for path in written} == {oct(mode)}


def test_a_writer_killed_mid_write_leaves_a_temporary_file_that_the_sweep_removes(tmp_path):
    killed = subprocess.run(
        [sys.executable, "-c",
         "import os, signal\nfrom derainlib.atomic import atomic_path\n"
         f"with atomic_path({str(tmp_path / 'model.pt')!r}) as tmp:\n"
         "    tmp.write_bytes(b'half a model')\n    os.kill(os.getpid(), signal.SIGKILL)"])
    assert killed.returncode == -9
    (left,) = [path for path in tmp_path.iterdir()]
    assert left.name.startswith(".model.") and left.name.endswith(".pt")
    (tmp_path / "model.pt").write_bytes(b"the real one")
    (tmp_path / ".model.backup.pt").write_bytes(b"someone else's")
    assert sweep_temporary(tmp_path, ["log.csv"]) == []  # not a temporary of these targets
    assert sweep_temporary(tmp_path, ["model.pt"]) == [left]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.backup.pt", "model.pt"]


@pytest.mark.parametrize("name, patterns, expected", [
    (".checkpoint.ab_12cd3.pt", ["checkpoint.pt"], True),
    (".checkpoint.pt.ab12cd34.part-003", ["checkpoint.pt.part-*"], True),
    (".checkpoint.pt.parts.ab12cd34.json", ["checkpoint.pt.parts.json"], True),
    (".running.ab12cd34", ["running"], True),
    (".checkpoint.ab12cd34.pt", ["model.pt"], False),
    (".checkpoint.AB12CD34.pt", ["checkpoint.pt"], False),  # mkstemp draws lower case only
    (".checkpoint.ab12cd3.pt", ["checkpoint.pt"], False),
    ("checkpoint.ab12cd34.pt", ["checkpoint.pt"], False),
])
def test_temporary_names_are_recognised_exactly(name, patterns, expected):
    assert is_temporary_of(name, patterns) == expected


def test_real_temporary_names_are_recognised(tmp_path):
    for target in ("model.pt", "checkpoint.pt.part-000", "log.csv", "checkpoint.pt.parts.json"):
        with atomic_path(tmp_path / target) as tmp:
            assert is_temporary_of(tmp.name, [target]) and not is_temporary_of(tmp.name, ["other.pt"])


def test_a_locked_folder_is_refused_by_name_and_released_after(tmp_path):
    with lock_folder(tmp_path / "run"):
        with pytest.raises(FolderBusy, match=r"run: another process is writing in this folder"):
            with lock_folder(tmp_path / "run"):
                pass
    with lock_folder(tmp_path / "run"):
        pass


def test_remove_with_parts_removes_the_file_or_its_parts_and_nothing_else(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"x" * 50)
    split_file(path, 20)
    (tmp_path / "model.pt").write_bytes(b"kept")
    assert len(remove_with_parts(path)) == 4  # three parts and the manifest
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    path.write_bytes(b"x")
    assert remove_with_parts(path) == [path] and not path.exists()


def test_a_held_lock_is_refused_and_released_after_the_block(tmp_path):
    path = tmp_path / "run" / "running.lock"
    with try_lock(path) as first:
        assert first
        with try_lock(path) as second:  # another open of the file, as another worker would do
            assert not second
    with try_lock(path) as again:
        assert again


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "running.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom derainlib.atomic import try_lock\n"
         f"with try_lock({str(path)!r}) as got:\n    print(got, flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        with try_lock(path) as got:
            assert not got
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while True:
        with try_lock(path) as got:
            if got or time.monotonic() > deadline:
                break
        time.sleep(0.1)
    assert got and path.exists()


def test_a_split_file_joins_back_byte_for_byte(tmp_path):
    path = tmp_path / "checkpoint.pt"
    data = bytes(range(256)) * 41  # 10,496 bytes: four parts of 3,000 and a short last one
    path.write_bytes(data)
    parts = split_file(path, 3000)
    assert [part.name for part in parts] == [f"checkpoint.pt.part-{i:03d}" for i in range(4)]
    assert [part.stat().st_size for part in parts] == [3000, 3000, 3000, 1496]
    assert not path.exists() and has_parts(path)
    assert read_parts(path) == data and has_parts(path) and not path.exists()  # reading leaves the parts
    assert join_file(path).read_bytes() == data
    assert not has_parts(path) and not list(tmp_path.glob("*.part-*"))


def test_a_new_split_replaces_the_parts_of_an_older_one(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"x" * 100)
    split_file(path, 10)
    join_file(path)
    (tmp_path / "checkpoint.pt.part-009").write_bytes(b"stale")  # as a killed join would leave
    path.write_bytes(b"y" * 25)
    assert len(split_file(path, 10)) == 3 and not (tmp_path / "checkpoint.pt.part-009").exists()
    assert join_file(path).read_bytes() == b"y" * 25


def test_a_missing_or_damaged_part_is_named_and_nothing_is_removed(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"abcdefghij" * 10)
    parts = split_file(path, 30)
    parts[1].write_bytes(b"X" + parts[1].read_bytes()[1:])
    with pytest.raises(ValueError, match=r"checkpoint\.pt: .*do not match checkpoint\.pt\.parts\.json.*damaged"):
        join_file(path)
    parts[2].unlink()
    with pytest.raises(ValueError, match=r"checkpoint\.pt: cannot rebuild it, missing part\(s\) checkpoint\.pt\.part-002"):
        join_file(path)
    assert not path.exists() and has_parts(path) and parts[0].exists()

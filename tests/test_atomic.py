"""Atomic-file helpers: the run lock that lets study workers share one queue, and checkpoints in parts."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from derainlib.atomic import has_parts, join_file, read_parts, split_file, try_lock


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

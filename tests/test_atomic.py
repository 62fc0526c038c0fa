"""The run lock that lets several study workers share one queue."""

from __future__ import annotations

import subprocess
import sys
import time

from derainlib.atomic import try_lock


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

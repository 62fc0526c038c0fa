"""Atomic file writes: a temporary file in the target's folder, then one rename.

A reader (or a resumed run) sees either the old file or the new one, never half of one, even
when the writer is killed mid-write. Checkpoints, results tables and images all go through here.
Also here: the lock that lets study workers share one queue, and checkpoints cut into committable parts.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


@contextmanager
def try_lock(path: str | os.PathLike) -> Iterator[bool]:
    """Hold an exclusive, non-blocking lock on ``path`` for the ``with`` block; yield whether it was got.

    ``flock`` locks belong to the open file, so the operating system drops them when their process
    ends, however it ends: a killed worker never leaves a stale lock behind (the empty file stays).
    """
    import fcntl  # POSIX only, like the rest of the study tooling

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# A partial checkpoint of a wide network is bigger than a git host takes in one file (M=64 with Adam's
# moments: over 30 MB), yet a long run must be committed mid-way to resume in a later session. So it is
# committed in parts, with a manifest that lets the join check it got every byte back.


def _parts_manifest(path: Path) -> Path:
    return path.with_name(path.name + ".parts.json")


def split_file(path: str | os.PathLike, part_bytes: int) -> list[Path]:
    """Cut ``path`` into ``<name>.part-000``, ``-001``... of at most ``part_bytes`` each, plus a manifest.

    ``path`` itself is removed only once every part and the manifest are written, so a split that is
    killed half-way leaves the original in place. Returns the parts.
    """
    path = Path(path)
    if part_bytes < 1:
        raise ValueError(f"part_bytes must be positive, got {part_bytes}")
    data = path.read_bytes()
    for stale in path.parent.glob(path.name + ".part-*"):
        stale.unlink()
    parts = []
    for index, start in enumerate(range(0, max(len(data), 1), part_bytes)):
        part = path.with_name(f"{path.name}.part-{index:03d}")
        with atomic_path(part) as tmp:
            tmp.write_bytes(data[start:start + part_bytes])
        parts.append(part)
    manifest = {"parts": [part.name for part in parts], "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest()}
    write_text_atomic(_parts_manifest(path), json.dumps(manifest, indent=1))
    path.unlink()
    return parts


def has_parts(path: str | os.PathLike) -> bool:
    """Whether ``path`` was split by :func:`split_file` and not joined since."""
    return _parts_manifest(Path(path)).exists()


def read_parts(path: str | os.PathLike) -> bytes:
    """The bytes of ``path`` as :func:`split_file` stored them, checked, without touching the parts.

    A missing part or a wrong byte count or checksum raises ``ValueError`` naming the file.
    """
    path = Path(path)
    manifest_path = _parts_manifest(path)
    manifest = json.loads(manifest_path.read_text())
    missing = [name for name in manifest["parts"] if not (path.parent / name).is_file()]
    if missing:
        raise ValueError(f"{path}: cannot rebuild it, missing part(s) {', '.join(missing)} ({manifest_path.name})")
    data = b"".join((path.parent / name).read_bytes() for name in manifest["parts"])
    if len(data) != manifest["bytes"] or hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise ValueError(f"{path}: its parts give {len(data)} bytes that do not match {manifest_path.name} "
                         f"({manifest['bytes']} bytes, sha256 {manifest['sha256'][:12]}...): a part is damaged")
    return data


def join_file(path: str | os.PathLike) -> Path:
    """Rebuild ``path`` from the parts :func:`split_file` wrote, check it, and remove the parts.

    Errors are :func:`read_parts`'s, and leave the parts as they were.
    """
    path = Path(path)
    data = read_parts(path)
    manifest_path = _parts_manifest(path)
    parts = json.loads(manifest_path.read_text())["parts"]
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    manifest_path.unlink()  # first: parts left by a join killed here are stale, and ignored
    for name in parts:
        (path.parent / name).unlink(missing_ok=True)
    return path

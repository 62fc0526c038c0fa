"""Atomic file writes: a temporary file in the target's folder, then one rename.

A reader (or a resumed run) sees either the old file or the new one, never half of one, even
when the writer is killed mid-write. Checkpoints, results tables and images all go through here.
A writer killed mid-write (SIGKILL, power loss) leaves its temporary file behind:
:func:`sweep_temporary` removes those, for a caller that knows it is the folder's only writer.
Also here: the locks that keep two processes from writing one run folder, and files cut into parts.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

# mkstemp's random part: 8 characters from this alphabet (CPython's tempfile._RandomNameSequence).
_RANDOM_PART = re.compile(r"[a-z0-9_]{8}")


def _temporary_affixes(path: Path) -> tuple[str, str]:
    """The prefix and suffix of :func:`atomic_path`'s temporary files for ``path``: ``.<stem>.`` and ``<suffix>``.

    The suffix is kept so that writers choosing a format by extension (PIL, pandas) still see it.
    """
    return f".{path.stem}.", path.suffix


def default_file_mode() -> int:
    """The mode a new file gets from ``open()`` under the current umask (0o644 under the usual 022)."""
    try:  # Linux reports the umask without changing it, which is safe with threads
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)  # elsewhere the only way to read it is to set it, and set it back at once
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. The file gets the
    mode of a file created by ``open()`` (:func:`default_file_mode`), not the 0600 of ``mkstemp``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temporary_affixes(path)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, default_file_mode())
    finally:
        os.close(handle)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_temporary_of(name: str, patterns: Iterable[str]) -> bool:
    """Whether the file name ``name`` is a temporary file :func:`atomic_path` made for a target whose
    name matches one of the glob ``patterns`` (e.g. ``".model.k3j_9x2a.pt"`` for ``"model.pt"``)."""
    patterns = list(patterns)
    if not name.startswith("."):
        return False
    head, dot, last = name.rpartition(".")
    # The target's suffix is either the name's last ".xxx" or empty; try both readings.
    for body, suffix in ((head, dot + last), (name, "")) if head else ((name, ""),):
        stem, _, random_part = body[1:].rpartition(".")
        target = Path(stem + suffix)
        if (stem and _RANDOM_PART.fullmatch(random_part) and target.stem == stem and target.suffix == suffix
                and any(fnmatch.fnmatchcase(target.name, pattern) for pattern in patterns)):
            return True
    return False


def sweep_temporary(folder: str | os.PathLike, patterns: Iterable[str]) -> list[Path]:
    """Remove the temporary files killed writers left in ``folder`` for targets matching ``patterns``.

    Call it only while no other process writes those targets (a run folder is swept by the
    training process that holds its lock, :func:`lock_folder`): a live writer's temporary file
    looks the same. Other files, and subfolders, are left alone. Returns the removed files.
    """
    folder, patterns = Path(folder), list(patterns)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.is_symlink() and is_temporary_of(path.name, patterns):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


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


class FolderBusy(RuntimeError):
    """Another live process holds the folder's lock (:func:`lock_folder`)."""


@contextmanager
def lock_folder(path: str | os.PathLike, what: str = "writing in") -> Iterator[Path]:
    """Hold an exclusive lock on the folder ``path`` itself (created if needed) for the ``with`` block.

    Raises :class:`FolderBusy` naming the folder when another process holds it. Like
    :func:`try_lock`, the operating system drops the lock when its holder dies, however it dies.
    Where ``fcntl`` does not exist (Windows) the block runs unlocked.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield path
        return
    handle = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusy(f"{path}: another process is {what} this folder; "
                             "wait for it to finish, or use another folder") from None
        yield path
    finally:
        os.close(handle)  # closing the descriptor releases the lock


# A partial checkpoint of a wide network is bigger than a git host takes in one file (M=64 with Adam's
# moments: over 30 MB), yet a long run may have to be committed mid-way, to be resumed later or on
# another machine. So it is committed in parts, with a manifest that lets the join check it got every
# byte back.


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


def remove_with_parts(path: str | os.PathLike) -> list[Path]:
    """Remove ``path`` and, if it was split by :func:`split_file`, its parts and manifest; return what went."""
    path = Path(path)
    manifest = _parts_manifest(path)
    removed = [p for p in (path, manifest, *sorted(path.parent.glob(path.name + ".part-*"))) if p.is_file()]
    if manifest in removed:  # first, so that a removal killed half-way leaves stale parts, not a broken set
        manifest.unlink()
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


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

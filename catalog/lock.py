"""One writer per catalogue: a lock file beside it, held from before a run's scan until its load.

DuckDB locks the file only while a connection is open; an ingest holds none during its scan, so
two runs into one catalogue would both scan and the second load would silently replace the first.
``writer_lock(path)`` makes the second one fail at once, naming the first.

The lock is a POSIX record lock (``fcntl.lockf``) on ``<catalogue>.lock``: the kernel drops it
when its process dies, however it dies, so a killed run never blocks the next one. (Not
``flock``: processes forked while it is held, such as DataLoader workers, would share it and keep
it after their parent was killed.) The file holds the holder's pid, host, command and start time
for the error message; a holder that ends normally removes it. Re-entrant within one thread.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

__all__ = ["CatalogueLocked", "lock_path", "writer_lock", "holder"]


class CatalogueLocked(Exception):
    """Another process (or thread) is writing this catalogue."""


_held: dict[str, list] = {}  # real lock path -> [fd, depth, thread id]
_guard = threading.Lock()


def lock_path(catalog_path: str | Path) -> Path:
    """``<catalogue>.lock`` beside the real file (a symlinked catalogue has one lock)."""
    real = Path(os.path.realpath(catalog_path))
    return real.with_name(real.name + ".lock")


def _describe(info: dict | None) -> str:
    if not info:
        return "another process (it has not written its details yet)"
    where = "" if info.get("host") == socket.gethostname() else f" on {info.get('host')}"
    return f"pid {info.get('pid')}{where} ({info.get('command', '?')}) since {info.get('since', '?')}"


def _read(fd: int) -> dict | None:
    try:
        text = os.pread(fd, 1 << 16, 0).decode("utf-8", "replace").strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def holder(catalog_path: str | Path) -> dict | None:
    """Who holds the catalogue's writer lock (pid, host, command, since), or None when it is free."""
    path = lock_path(catalog_path)
    with _guard:
        if str(path) in _held:
            return _read(_held[str(path)][0])
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        if not _try_lock(fd, _read(fd)):
            return _read(fd) or {}
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)  # drops no lock of ours: this process holds none on this file


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_lock(fd: int, info: dict | None) -> bool:
    """Take the kernel lock without waiting; False when another process holds it."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        # A file system without record locks: judge by the recorded pid on this host.
        if info and info.get("host") == socket.gethostname() and _alive(int(info.get("pid", 0))):
            return info.get("pid") == os.getpid()
        return True


def _command() -> str:
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    if argv[0] in ("cli.py", "__main__.py"):  # python -m ingest.cli
        argv[0] = "neurocat"
    text = " ".join(argv)
    return text if len(text) <= 500 else text[:497] + "..."


def _acquire(path: Path, what: str) -> int:
    for _ in range(50):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            old = _read(fd)
            if not _try_lock(fd, old):
                for _ in range(20):  # the holder may be between creating the file and writing to it
                    if old:
                        break
                    time.sleep(0.05)
                    old = _read(fd)
                raise CatalogueLocked(f"the catalogue {path.with_suffix('')} is being written by {_describe(old)}; "
                                      f"wait for it to finish, or write to another catalogue")
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed the file as we opened it: try the new one
                os.close(fd)
                continue
            if old:  # a holder that ended normally empties and removes the file
                warnings.warn(f"took over the writer lock of {path.with_suffix('')} left by {_describe(old)}, "
                              f"which is no longer running", stacklevel=4)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(), "what": what,
                    "since": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            return fd
        except BaseException:
            os.close(fd)
            raise
    raise CatalogueLocked(f"could not take the writer lock {path}: other processes keep replacing it")


@contextlib.contextmanager
def writer_lock(catalog_path: str | Path, what: str = "") -> Iterator[Path]:
    """Hold the catalogue's writer lock for the block; ``CatalogueLocked`` names the holder when taken.

    ``what`` says what this writer does (stored for the message another writer gets).
    """
    path = lock_path(catalog_path)
    key, me = str(path), threading.get_ident()
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            if entry[2] != me:
                raise CatalogueLocked(f"the catalogue {path.with_suffix('')} is being written by another thread "
                                      f"of this process ({_describe(_read(entry[0]))})")
            entry[1] += 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            _held[key] = [_acquire(path, what), 1, me]
    try:
        yield path
    finally:
        with _guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                fd = entry[0]
                try:  # remove while still locked, so no one can take a file that is going away
                    path.unlink(missing_ok=True)
                    os.ftruncate(fd, 0)
                finally:
                    os.close(fd)  # releases the kernel lock

"""Guarding a run directory: one process at a time, writable before any work, no stale temporary files.

:class:`RunLock` holds an exclusive ``flock`` on ``RUN_DIR/.lock`` for the life of a run. The kernel
drops a ``flock`` when its process dies, however it dies (even SIGKILL), so a lock left by a dead
process never blocks a new one; the pid written into the file only serves the error message.
"""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Optional

from .errors import UserError, UserFileExistsError

LOCK_NAME = ".lock"


class RunDirectoryError(UserError):
    """A run directory cannot be used: another process holds it, or it is not writable."""


class RunExistsError(RunDirectoryError, UserFileExistsError):
    """A new run was asked to write into a directory that already holds one."""


class RunLock:
    """Exclusive lock of a run directory (created if missing); use as a context manager.

    Raises :class:`RunDirectoryError` naming the directory and the holder's pid when another live
    process holds it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        ensure_writable(self.run_dir)
        path = self.run_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirectoryError(f"{self.run_dir} is in use by another run (pid {holder}); wait for it to "
                                    f"finish or choose another run.dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def ensure_writable(directory: Path) -> None:
    """Create ``directory`` if needed and check that a file can be created in it, before any work is
    done whose result would be lost. Raises :class:`RunDirectoryError` naming the directory."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write_test.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        why = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.ENOSPC: "no space left on device"}.get(err.errno, err.strerror)
        raise RunDirectoryError(f"{directory}: expected a writable directory, found: {why}") from None


def remove_stale_temporaries(run_dir: Path) -> list:
    """Delete ``.NAME.*.tmp`` files left by atomic writes of a killed process (call with the lock held).
    Returns the removed paths."""
    removed = []
    for tmp in Path(run_dir).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed

"""Exclusive locks that say who holds them: one process per run, project or comparison."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import lock_descriptor

from kerasimg.errors import UserError


@contextlib.contextmanager
def exclusive(lock_path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold ``lock_path`` for the block, or raise ``UserError`` naming the holder's PID at once.

    The lock is the operating system's (``flock`` on Unix, ``LockFileEx`` on Windows, through
    ``filelock``), so it is released when the process dies, however it dies; the file only
    carries the holder's PID for the message.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not lock_descriptor(fd, blocking=False):
            raise UserError(
                f"{what} is in use by another kerasimg process (PID {_holder(fd)}); wait for it to "
                "finish or stop it first."
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(fd: int) -> str:
    """The PID the holder wrote, or ``unknown`` (Windows keeps a locked byte unreadable)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 32).decode(errors="replace").strip() or "unknown"
    except OSError:
        return "unknown"

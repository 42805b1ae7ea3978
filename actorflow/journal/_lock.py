"""One owner per journal, across processes (D8).

An exclusive ``flock`` on a side file (``<journal>.lock``) that holds the owner's pid. The kernel
drops the lock when the owner's process dies, SIGKILL included, so a restart is never blocked by a
stale lock. SQLite's own locks are not enough: they keep a second writer out only while a
transaction is open.
"""

from __future__ import annotations

import fcntl
import os
from typing import Optional

from ..exceptions import JournalLockedError

__all__ = ["OwnerLock"]


class OwnerLock:
    """The owner lock of the journal at ``journal_path``."""

    def __init__(self, journal_path: str) -> None:
        self.path = journal_path + ".lock"
        self._fd: Optional[int] = None
        self._created = False

    def acquire(self) -> None:
        """Take the lock or raise ``JournalLockedError`` naming the owner's pid."""
        self._created = not os.path.exists(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            owner = f"process {pid}" if pid is not None else "another process"
            message = (f"journal {self.path[:-5]!r} is owned by {owner}, a running ActorSystem; "
                       "stop that system first, or give this one another journal file")
            raise JournalLockedError(message, path=self.path[:-5], pid=pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self, remove: bool = False) -> None:
        """Drop the lock; ``remove``: delete the side file if this lock created it (a journal
        that was rejected leaves nothing behind)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if remove and self._created:
                os.unlink(self.path)  # still holding the lock: nobody else can be using it
            else:
                os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)


def _read_pid(fd: int) -> Optional[int]:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None

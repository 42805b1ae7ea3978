"""The journal of a system: where executions are recorded (API.md D8, D9).

``Journal`` is the small interface that the system and the supervisors call. ``MemoryJournal``
(``journal=None``) keeps the index of open executions and the retained closed ones in memory;
``SqliteJournal`` (``journal=PATH``, in ``sqlite``) writes them to a SQLite file so that a restart
of the owning program loses nothing. ``_schema`` validates a file before anything is written
(foreign, newer and corrupt files are rejected untouched), ``_lock`` keeps one owner per file,
``_codec`` turns executions into rows and back.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from ._lock import OwnerLock
from .base import Journal, MemoryJournal, Recovered, StoredRun

__all__ = ["Journal", "MemoryJournal", "OwnerLock", "Recovered", "StoredRun", "open_journal",
           "SYNC_MODES"]

SYNC_MODES = ("normal", "full")


def open_journal(path: "str | os.PathLike[str] | None", sync: str, retention: float,
                 now: Callable[[], float]) -> Journal:
    """The journal for ``ActorSystem(journal=path)``: in memory for None, else SQLite.

    The SQLite module is imported only here, so a system without a journal never loads it.
    """
    if path is None:
        return MemoryJournal(retention, now)
    from .sqlite import SqliteJournal

    return SqliteJournal(os.fspath(path), sync, retention)

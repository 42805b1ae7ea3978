"""The journal of a durable system (API.md D8): where executions are recorded so that a restart
of the owning program loses nothing.

The layers that have landed so far are the ones every journal file goes through before anything
is written: ``_schema`` (the versioned SQLite schema, and the check that rejects a foreign, newer
or corrupt file without touching it) and ``_lock`` (one owning process per journal, across
processes). The journal interface, its in-memory and SQLite implementations and the system's
wiring are tracked in issue 11.
"""

from ._lock import OwnerLock
from ._schema import SCHEMA_VERSION

__all__ = ["OwnerLock", "SCHEMA_VERSION"]

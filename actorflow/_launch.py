"""Starting a worker process: a fresh interpreter that never runs the program's main module.

multiprocessing's ``spawn`` re-runs the parent's ``__main__`` in every child, so a script
without an ``if __name__ == "__main__":`` guard started a system in each worker, and a program
read from stdin could not be re-run at all. A worker here is ``python -c`` running
``actorflow._boot``: it gets the parent's ``sys.path`` and ``sys.argv`` over its pipe, and
nothing else of the main module; activities defined there travel by value (cloudpickle).

Each worker leads its own process group (set before ``exec``, so there is no window): the
terminal's Ctrl-C (SIGINT to the foreground group) reaches only the owner, which shuts the
workers down in order (D6), and whatever activity code starts lives in the worker's group, which
is killed with the worker (D2), after it exits, and by the worker itself when the owner dies.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import subprocess
import sys
import threading
from multiprocessing import spawn
from multiprocessing.connection import Pipe
from typing import Any, Dict, List, Optional, Set

__all__ = ["WorkerProcess", "active_workers", "kill_group"]

# The directory that holds the ``actorflow`` package: the child must import it before it has
# the parent's sys.path (a source checkout on a path set at run time, for example).
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BOOT_CODE = f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); from actorflow._boot import main; main()"

# A process group of its own, made in the child before exec (no window for a Ctrl-C). Python
# 3.10 has no ``process_group``: a new session (setsid) also leads a new group, and preexec_fn is
# unsafe in a process that runs threads.
_OWN_GROUP: Dict[str, Any] = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
)

_live: Set["WorkerProcess"] = set()
_live_lock = threading.Lock()


def active_workers() -> List["WorkerProcess"]:
    """Worker processes of this process still running (reaps those that exited), like
    ``multiprocessing.active_children()`` for multiprocessing's children."""
    with _live_lock:
        workers = list(_live)
    return [w for w in workers if w.is_alive()]


def kill_group(pgid: int) -> None:
    """SIGKILL every process in group ``pgid``; a group already gone is fine."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _interpreter() -> str:
    """The python that workers run: multiprocessing's choice (sys.executable unless changed with
    ``multiprocessing.set_executable()``), so a program that embeds Python can point it at one."""
    executable = spawn.get_executable()
    if not executable:
        text = ("cannot start worker processes: sys.executable is empty (an embedded interpreter?); "
                "call multiprocessing.set_executable() with the path of a python binary first")
        raise RuntimeError(text)
    return os.fsdecode(executable)


def _pidfds_work() -> bool:
    """Whether this kernel has pidfds (Linux 5.3+): a descriptor readable once a process exits."""
    try:
        os.close(os.pidfd_open(os.getpid()))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return False
    return True


_PIDFDS = _pidfds_work()


class WorkerProcess:
    """One worker process, with the part of ``multiprocessing.Process``'s interface the pool
    uses: ``pid``, ``sentinel``, ``kill``, ``join``, ``exitcode``, ``is_alive``, ``close``.
    ``kill`` and ``join`` take the worker's whole process group with it."""

    def __init__(self, name: str, boot: Dict[str, Any]) -> None:
        self.name = name
        parent_conn, child_conn = Pipe(duplex=True)
        child_fd = child_conn.fileno()
        fallback_r = fallback_w = -1
        if not _PIDFDS:
            fallback_r, fallback_w = os.pipe()  # EOF once the worker (its only holder) exits
        pass_fds = (child_fd,) if fallback_w < 0 else (child_fd, fallback_w)
        try:
            self._popen = subprocess.Popen(
                [_interpreter(), *subprocess._args_from_interpreter_flags(), "-c", _BOOT_CODE, str(child_fd)],
                stdin=subprocess.DEVNULL, pass_fds=pass_fds, close_fds=True, **_OWN_GROUP,
            )
        except BaseException:
            parent_conn.close()
            for fd in (fallback_r, fallback_w):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            child_conn.close()
        if fallback_w >= 0:
            os.close(fallback_w)
        self.pid: int = self._popen.pid
        # a pidfd of an unreaped child is valid even if it has exited already
        self.sentinel: int = (
            fallback_r if fallback_r >= 0 else os.pidfd_open(self.pid)  # type: ignore[attr-defined]
        )
        self.conn = parent_conn
        self._reap_lock = threading.Lock()
        with _live_lock:
            _live.add(self)
        try:
            parent_conn.send_bytes(pickle.dumps(boot, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            pass  # it died at once; its sentinel reports the exit

    @property
    def exitcode(self) -> Optional[int]:
        return self._popen.returncode

    def kill(self) -> None:
        """SIGKILL the worker and everything in its process group."""
        with self._reap_lock:
            if self._popen.returncode is None:  # not reaped: the group id is still ours
                kill_group(self.pid)

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait up to ``timeout`` for the worker to exit; then kill what is left of its group
        (before reaping, while the pid cannot be reused) and reap it."""
        if self._popen.returncode is not None:
            return
        if not _readable(self.sentinel, timeout):
            return
        with self._reap_lock:
            if self._popen.returncode is None:
                kill_group(self.pid)
                self._popen.wait()
        with _live_lock:
            _live.discard(self)

    def is_alive(self) -> bool:
        if self._popen.returncode is not None:
            return False
        if _readable(self.sentinel, 0):
            self.join(0)
            return False
        return True

    def close(self) -> None:
        """Release the sentinel once the worker is reaped (a worker still running keeps it)."""
        if self._popen.returncode is None or self.sentinel < 0:
            return
        os.close(self.sentinel)
        self.sentinel = -1


def _readable(fd: int, timeout: Optional[float]) -> bool:
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))

"""``Outcome``: the one-shot, thread-safe result slot behind an ``ActivityHandle``.

A ``concurrent.futures.Future`` builds a Condition and an RLock per instance; with one per
execution that is most of the objects an execution keeps alive, and it shows up in the garbage
collector's time in bursts. Here a thread that blocks on an unresolved outcome waits on a bare
lock of its own (cheaper than a ``threading.Event``, which builds a Condition), and every outcome
shares one short-held lock.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional

__all__ = ["Outcome"]

_allocate_lock = threading.Lock
_lock = threading.Lock()  # guards every Outcome's transition; held for a few attribute writes


class Outcome:
    """Set once (result or error); wait for it from any thread; callbacks run on the setter."""

    __slots__ = ("_done", "_result", "_error", "_waiters", "_callbacks")

    def __init__(self) -> None:
        self._done = False
        self._result: Any = None
        self._error: Optional[BaseException] = None
        self._waiters: Optional[List[Any]] = None  # acquired locks, released when resolved
        self._callbacks: Optional[List[Callable[["Outcome"], None]]] = None

    def done(self) -> bool:
        return self._done

    def set(self, result: Any = None, error: Optional[BaseException] = None) -> bool:
        """Resolve; False (and no effect) if already resolved: the first outcome wins (R5)."""
        with _lock:
            if self._done:
                return False
            self._result, self._error, self._done = result, error, True
            waiters, callbacks = self._waiters, self._callbacks
            self._waiters = self._callbacks = None
        for waiter in waiters or ():
            waiter.release()
        for callback in callbacks or ():
            callback(self)
        return True

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until resolved or ``timeout`` seconds pass; True if resolved."""
        if self._done:
            return True
        waiter = _allocate_lock()
        waiter.acquire()
        with _lock:
            if self._done:
                return True
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
        if timeout is None:
            waiter.acquire()
            return True
        if waiter.acquire(timeout=max(0.0, timeout)):
            return True
        with _lock:  # timed out: withdraw, unless set() got to it meanwhile
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return self._done

    def add_done_callback(self, callback: Callable[["Outcome"], None]) -> None:
        """Call ``callback(self)`` once resolved (at once if it already is)."""
        with _lock:
            if not self._done:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        callback(self)

    def result(self, timeout: Optional[float] = None) -> Any:
        """The result, or raise the error; the builtin ``TimeoutError`` if ``timeout`` passes."""
        if not self.wait(timeout):
            raise TimeoutError(f"the activity did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._result

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if not self.wait(timeout):
            raise TimeoutError(f"the activity did not finish within {timeout} s")
        return self._error

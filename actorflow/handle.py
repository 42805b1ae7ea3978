"""``ActivityHandle``: the caller's view of one execution (API.md).

The handle wraps an ``Outcome`` (a slim one-shot future) that the supervisor settles directly (no relay
thread), so it can be awaited from asyncio and waited on from plain threads alike. Results stay
pickled bytes until the caller asks for them, which keeps decoding off the supervisor's thread.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Callable, Generator, Generic, List, Optional, TypeVar

from . import _serde
from ._outcome import Outcome
from .exceptions import ActorflowError
from .history import HistoryEvent, to_events

__all__ = ["ActivityHandle"]

T = TypeVar("T")
_UNSET = object()


class ActivityHandle(Generic[T]):
    """A started execution. Do not construct directly: use ``ActorSystem.start_activity``."""

    __slots__ = ("_activity_id", "_activity_type", "_future", "_request_cancel", "_value", "_history",
                 "_to_datetime", "_earlier_history")

    def __init__(
        self,
        activity_id: str,
        activity_type: str,
        future: Outcome,
        request_cancel: Callable[[], None],
        history: List[Any],
        to_datetime: Callable[[float], datetime],
        earlier_history: Optional[Callable[[], List[HistoryEvent]]] = None,
    ) -> None:
        self._activity_id = activity_id
        self._activity_type = activity_type
        self._future = future
        self._request_cancel = request_cancel
        self._value: Any = _UNSET
        self._history = history
        self._to_datetime = to_datetime
        # D8: the events an earlier system recorded in the journal, read when asked for.
        self._earlier_history = earlier_history

    @property
    def activity_id(self) -> str:
        return self._activity_id

    @property
    def activity_type(self) -> str:
        return self._activity_type

    def done(self) -> bool:
        """True once the execution's outcome is known to the caller."""
        return self._future.done()

    def cancel(self) -> bool:
        """Request cancellation per the handle's cancellation type (R59-R63, R93).

        Returns False if the handle was already resolved (the request then does nothing).
        """
        if self._future.done():
            return False
        self._request_cancel()
        return True

    def history(self) -> List[HistoryEvent]:
        """The execution's events so far, in order (scheduled, attempts, failures with the reason
        for each retry delay, cancel requests, and how it closed), timed by the system's clock."""
        events = to_events(self._history, self._to_datetime)
        if self._earlier_history is not None:  # D8: what systems before this one recorded
            events = self._earlier_history() + events
        return events

    def result(self, timeout: Optional[float] = None) -> T:
        """Block until the execution ends; return its result or raise its ``ActivityError``.

        Raises the builtin ``TimeoutError`` if ``timeout`` seconds pass first, as
        ``concurrent.futures.Future.result`` does.
        """
        data = self._future.result(timeout)
        return self._decode(data)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """Block until the execution ends; return its ``ActivityError``, or None on success."""
        return self._future.exception(timeout)

    def _decode(self, data: bytes) -> T:
        if self._value is _UNSET:
            try:
                self._value = _serde.loads(data)
            except Exception as exc:
                raise ActorflowError(
                    f"the result of activity {self._activity_type!r} (id {self._activity_id!r}) was "
                    f"pickled by the worker but cannot be unpickled here: {exc!r}; make its class "
                    "importable in the calling process"
                ) from exc
        return self._value

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait().__await__()

    async def _wait(self) -> T:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def transfer(source: Outcome) -> None:
            def settle() -> None:
                if not waiter.done():
                    waiter.set_result(None)

            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:
                pass  # the awaiting loop has closed

        self._future.add_done_callback(transfer)
        try:
            await waiter
        except asyncio.CancelledError:
            # Cancelling the task that awaits a handle requests cancellation (API.md, R59).
            if not self._future.done():
                self._request_cancel()
            raise
        error = self._future.exception()
        if error is not None:
            raise error
        return self._decode(self._future.result())

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<ActivityHandle {self._activity_type!r} id={self._activity_id!r} {state}>"

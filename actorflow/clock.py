"""The injectable clock: the only module that reads the time (STYLE.md 2.5).

Every deadline in actorflow is a float of seconds on a ``Clock``'s monotonic scale. The
``SystemClock`` adds a random offset, as trio does, so code that mixes it with
``time.monotonic()`` breaks at once instead of subtly. ``to_datetime`` maps a clock reading to the
aware UTC datetime that ``activity.info()`` reports.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from typing import Callable, Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "sleep", "timestamp_function", "from_timestamp_function"]


@runtime_checkable
class Clock(Protocol):
    """What the runtime needs from a clock."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Real seconds to wait until ``deadline`` (0 if it has passed)."""
        ...

    def to_datetime(self, t: float) -> datetime:
        """The aware UTC datetime of the clock reading ``t``."""
        ...

    def add_waker(self, waker: Callable[[], None]) -> None:
        """Register a callback to run when time jumps (virtual clocks); may be a no-op."""
        ...

    def remove_waker(self, waker: Callable[[], None]) -> None:
        """Undo ``add_waker``."""
        ...


class SystemClock:
    """Real time: ``time.monotonic()`` plus a random offset."""

    def __init__(self) -> None:
        self._offset = random.uniform(10_000.0, 200_000.0)
        self._wall_base = time.time()
        self._mono_base = time.monotonic() + self._offset

    def now(self) -> float:
        return time.monotonic() + self._offset

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return max(0.0, deadline - self.now())

    def to_datetime(self, t: float) -> datetime:
        return datetime.fromtimestamp(self.to_timestamp(t), tz=timezone.utc)

    def to_timestamp(self, t: float) -> float:
        """The POSIX timestamp of the reading ``t`` (``to_datetime(t).timestamp()``, cheaper)."""
        return self._wall_base + (t - self._mono_base)

    def add_waker(self, waker: Callable[[], None]) -> None:
        pass

    def remove_waker(self, waker: Callable[[], None]) -> None:
        pass


def timestamp_function(clock: Clock) -> Callable[[float], float]:
    """``clock.to_timestamp`` if the clock has one, else the same through ``to_datetime``."""
    fast = getattr(clock, "to_timestamp", None)
    if fast is not None:
        return fast
    return lambda t: clock.to_datetime(t).timestamp()


def from_timestamp_function(clock: Clock) -> Callable[[float], float]:
    """The inverse of ``timestamp_function``: the clock reading of a POSIX timestamp.

    A journal stores wall-clock times, because a reading means nothing to the next system,
    whose clock has another origin (D8); every clock maps readings to timestamps linearly.
    """
    origin = timestamp_function(clock)(0.0)
    return lambda ts: ts - origin


def monotonic() -> float:
    """Plain ``time.monotonic()``, for code that measures real elapsed time (worker side)."""
    return time.monotonic()


def sleep(seconds: float) -> None:
    """Real sleep; used only where the runtime must wait for an OS event that has no waker."""
    time.sleep(seconds)


def wall_now() -> datetime:
    """The current aware UTC datetime."""
    return datetime.now(timezone.utc)

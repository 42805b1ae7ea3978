"""Shared value types: the retry policy (SEMANTICS R20-R24)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Optional, Sequence

__all__ = [
    "RetryPolicy",
    "ActivityCancellationType",
    "ActivityIDReusePolicy",
    "ActivityIDConflictPolicy",
    "Priority",
]


class ActivityCancellationType(enum.IntEnum):
    """What ``handle.cancel()`` does (R60; integer values of R41)."""

    TRY_CANCEL = 0
    WAIT_CANCELLATION_COMPLETED = 1
    ABANDON = 2


class ActivityIDReusePolicy(enum.IntEnum):
    """Whether an ``activity_id`` whose last run is closed (and retained) may start again (D9).

    Members and values as ``temporalio.common.ActivityIDReusePolicy``. ``UNSPECIFIED`` means the
    default, ``ALLOW_DUPLICATE``.
    """

    UNSPECIFIED = 0
    ALLOW_DUPLICATE = 1
    ALLOW_DUPLICATE_FAILED_ONLY = 2
    REJECT_DUPLICATE = 3


class ActivityIDConflictPolicy(enum.IntEnum):
    """What ``start_activity`` does when the ``activity_id`` is open (D9).

    Members and values as ``temporalio.common.ActivityIDConflictPolicy``. ``UNSPECIFIED`` means
    the default, ``FAIL``.
    """

    UNSPECIFIED = 0
    FAIL = 1
    USE_EXISTING = 2


@dataclass(frozen=True)
class Priority:
    """Dispatch order of waiting attempts (D9), as ``temporalio.common.Priority``.

    ``priority_key`` runs from 1 (first) to 5 (last); None means the default, 3. Attempts waiting
    in one task queue are dispatched by key, first in first out within a key. ``fairness_key``
    and ``fairness_weight`` are accepted for compatibility and recorded, but do not change the
    order (actorflow has no fairness balancing).
    """

    priority_key: Optional[int] = None
    fairness_key: Optional[str] = None
    fairness_weight: Optional[float] = None

    default: ClassVar["Priority"]

    MIN_KEY: ClassVar[int] = 1
    MAX_KEY: ClassVar[int] = 5
    DEFAULT_KEY: ClassVar[int] = 3

    @property
    def effective_key(self) -> int:
        """The key attempts are ordered by: ``priority_key``, or 3 when unset."""
        return self.priority_key if self.priority_key is not None else self.DEFAULT_KEY


Priority.default = Priority()

_TIMEOUT_TYPE_NAMES = ("StartToClose", "ScheduleToStart", "ScheduleToClose", "Heartbeat")


@dataclass(frozen=True)
class RetryPolicy:
    """How failed attempts are retried (R20).

    Args:
        initial_interval: the first backoff interval (default 1 s).
        backoff_coefficient: each interval is the previous one times this (default 2.0).
        maximum_interval: the cap on an interval; ``None`` means 100 x ``initial_interval``.
        maximum_attempts: attempts in all, including the first; 0 means unlimited, 1 no retry.
        non_retryable_error_types: ``ApplicationError.type`` values that stop retrying at once
            (exact string match, R30); ``"TemporalTimeout:StartToClose"`` and
            ``"TemporalTimeout:Heartbeat"`` make those timeouts non-retryable.

    Like Temporal's, the policy is validated when an activity is started with it (R24, R91), so
    an invalid policy fails ``start_activity`` before anything is scheduled.

    Zero-valued fields follow Temporal (R22): a zero ``initial_interval`` or
    ``maximum_interval`` and a zero ``backoff_coefficient`` mean "use the default".
    """

    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_interval: Optional[timedelta] = None
    maximum_attempts: int = 0
    non_retryable_error_types: Optional[Sequence[str]] = None

    def _validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the field and the fix (R24, S31)."""
        _check_type("initial_interval", self.initial_interval, timedelta)
        if self.maximum_interval is not None:
            _check_type("maximum_interval", self.maximum_interval, timedelta)
        if isinstance(self.backoff_coefficient, bool) or not isinstance(
            self.backoff_coefficient, (int, float)
        ):
            raise TypeError(
                "RetryPolicy.backoff_coefficient must be a number such as 2.0, "
                f"got {type(self.backoff_coefficient).__name__}"
            )
        if isinstance(self.maximum_attempts, bool) or not isinstance(self.maximum_attempts, int):
            raise TypeError(
                "RetryPolicy.maximum_attempts must be an int (0 = unlimited), "
                f"got {type(self.maximum_attempts).__name__}"
            )
        types = self.non_retryable_error_types
        if types is not None:
            if isinstance(types, str) or not all(isinstance(t, str) for t in types):
                raise TypeError(
                    "RetryPolicy.non_retryable_error_types must be a list of strings such as "
                    f"['ValueError'], got {types!r}"
                )
            for t in types:
                if t.startswith("TemporalTimeout:") and t.split(":", 1)[1] not in _TIMEOUT_TYPE_NAMES:
                    raise ValueError(
                        f"RetryPolicy.non_retryable_error_types has {t!r}: after "
                        f"'TemporalTimeout:' use one of {', '.join(_TIMEOUT_TYPE_NAMES)}"
                    )
        if self.maximum_attempts == 1:
            return  # R24: every other check is skipped when retries are off.
        if self.initial_interval < timedelta(0):
            raise ValueError("Initial interval cannot be negative")
        if self.backoff_coefficient != 0 and self.backoff_coefficient < 1:
            raise ValueError("Backoff coefficient cannot be less than 1")
        if self.maximum_interval is not None:
            if self.maximum_interval < timedelta(0):
                raise ValueError("Maximum interval cannot be negative")
            if self.maximum_interval != timedelta(0) and self.maximum_interval < self.initial_interval:
                raise ValueError("Maximum interval cannot be less than initial interval")
        if self.maximum_attempts < 0:
            raise ValueError("Maximum attempts cannot be negative")

    @classmethod
    def from_fields(cls, fields: tuple) -> "RetryPolicy":
        """Rebuild a policy from the plain fields a RUN message carries (seconds, _messages.py)."""
        initial, coefficient, maximum, attempts, types = fields
        return cls(
            initial_interval=timedelta(seconds=initial), backoff_coefficient=coefficient,
            maximum_interval=timedelta(seconds=maximum), maximum_attempts=attempts,
            non_retryable_error_types=types,
        )

    def with_defaults(self) -> "RetryPolicy":
        """The effective policy with zero/None fields filled in (R20-R22), as ``info()`` shows."""
        initial = self.initial_interval if self.initial_interval > timedelta(0) else timedelta(seconds=1)
        coefficient = self.backoff_coefficient if self.backoff_coefficient else 2.0
        maximum = self.maximum_interval
        if not maximum:
            maximum = initial * 100
        return RetryPolicy(
            initial_interval=initial,
            backoff_coefficient=float(coefficient),
            maximum_interval=maximum,
            maximum_attempts=self.maximum_attempts,
            non_retryable_error_types=tuple(self.non_retryable_error_types or ()),
        )


def _check_type(name: str, value: object, expected: type) -> None:
    if not isinstance(value, expected):
        raise TypeError(
            f"RetryPolicy.{name} must be a datetime.timedelta such as timedelta(seconds=1), "
            f"got {value!r}"
        )

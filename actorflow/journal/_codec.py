"""How an execution is written into a journal's row and read back (D8).

Everything is stored as builtins (and the exceptions of ``actorflow.exceptions``) pickled with
the standard library: no internal class is pickled by reference, so renaming one never breaks an
existing journal. Times are stored as POSIX timestamps: a clock reading means nothing to the next
system, whose clock has another origin; ``to_timestamp`` / ``from_timestamp`` convert.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable, Dict, Optional, Tuple

from .._execution import SNAPSHOT_FIELDS, STATUS_OF_OUTCOME, TIME_FIELDS, ExecutionConfig
from .._retry import EffectivePolicy

__all__ = ["options_of", "config_of", "encode_state", "decode_state", "encode_outcome",
           "decode_outcome", "dumps", "loads", "dumps_detail", "STATUS_OF_OUTCOME"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_TIME_INDEXES = tuple(i for i, name in enumerate(SNAPSHOT_FIELDS) if name in TIME_FIELDS)
_TIMERS_INDEX = SNAPSHOT_FIELDS.index("_timers")
_STATE_INDEX = SNAPSHOT_FIELDS.index("state")
FORMAT = 1  # of the blobs below; bump with a schema migration when they change


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=_PROTOCOL)


def loads(data: bytes) -> Any:
    return pickle.loads(data)


def options_of(record: Any) -> Dict[str, Any]:
    """Every option of the execution but its ids (those are columns), as builtins."""
    config: ExecutionConfig = record.machine.config
    p = config.policy
    return {
        "start_to_close": config.start_to_close,
        "schedule_to_close": config.schedule_to_close,
        "schedule_to_start": config.schedule_to_start,
        "heartbeat": config.heartbeat,
        "policy": (p.initial_interval, p.backoff_coefficient, p.maximum_interval, p.maximum_attempts,
                   tuple(p.non_retryable_error_types)),
        "cancellation_type": config.cancellation_type,
        "start_delay": config.start_delay,
        "priority": config.priority,
        "throttle": record.throttle,
        "policy_fields": record.policy_fields,
    }


def config_of(options: Dict[str, Any], activity_id: str, activity_type: str, run_id: str) -> ExecutionConfig:
    initial, coefficient, maximum, attempts, types = options["policy"]
    return ExecutionConfig(
        activity_id=activity_id,
        activity_type=activity_type,
        start_to_close=options["start_to_close"],
        schedule_to_close=options["schedule_to_close"],
        schedule_to_start=options["schedule_to_start"],
        heartbeat=options["heartbeat"],
        policy=EffectivePolicy(initial, coefficient, maximum, attempts, tuple(types)),
        cancellation_type=options["cancellation_type"],
        run_id=run_id,
        start_delay=options["start_delay"],
        priority=options["priority"],
        durable=True,
    )


def _state_to_wall(snapshot: tuple, to_timestamp: Callable[[float], float]) -> list:
    values = list(snapshot)
    for i in _TIME_INDEXES:
        if values[i] is not None:
            values[i] = to_timestamp(values[i])
    values[_TIMERS_INDEX] = tuple((kind, attempt, to_timestamp(deadline))
                                  for kind, attempt, deadline in values[_TIMERS_INDEX])
    state = values[_STATE_INDEX]
    values[_STATE_INDEX] = None if state is None else state.value
    return values


def encode_state(snapshot: tuple, to_timestamp: Callable[[float], float]) -> bytes:
    """The machine's snapshot with wall-clock times (enums as their values)."""
    return dumps(tuple(_state_to_wall(snapshot, to_timestamp)))


def decode_state(data: bytes, from_timestamp: Optional[Callable[[float], float]] = None) -> tuple:
    """A snapshot for ``ExecutionStateMachine.restore`` (times on the clock of
    ``from_timestamp``; left as timestamps without one)."""
    from .._execution import State
    from ..exceptions import RetryState

    values = list(loads(data))
    if values[_STATE_INDEX] is not None:
        values[_STATE_INDEX] = State(values[_STATE_INDEX])
    retry_index = SNAPSHOT_FIELDS.index("retry_state")
    if values[retry_index] is not None:
        values[retry_index] = RetryState(values[retry_index])
    if from_timestamp is not None:
        for i in _TIME_INDEXES:
            if values[i] is not None:
                values[i] = from_timestamp(values[i])
        values[_TIMERS_INDEX] = tuple((kind, attempt, from_timestamp(deadline))
                                      for kind, attempt, deadline in values[_TIMERS_INDEX])
    return tuple(values)


def encode_outcome(record: Any) -> Optional[bytes]:
    """A closed execution's outcome: ``("result", bytes)`` or ``("error", ActivityError)``."""
    machine = record.machine
    if machine.outcome == "completed":
        return dumps(("result", machine.result))
    return dumps(("error", machine.final_error))




def dumps_detail(value: Any) -> bytes:
    """A history entry's detail; one that cannot be pickled (a heartbeat detail of a class
    this process cannot pickle) is kept as its ``repr`` rather than lost or failing the commit."""
    try:
        return dumps(value)
    except Exception:  # noqa: BLE001
        return dumps({key: (item if _picklable(item) else repr(item)) for key, item in dict(value).items()})


def _picklable(value: Any) -> bool:
    try:
        dumps(value)
        return True
    except Exception:  # noqa: BLE001
        return False


def decode_outcome(data: Optional[bytes]) -> Optional[Tuple[str, Any]]:
    return None if data is None else loads(data)

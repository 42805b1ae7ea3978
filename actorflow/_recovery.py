"""Executions read back from a journal: resumed ones, and handles to those this system does not run.

The journal records; it does not decide. A run read back is turned into the same
``ExecutionRecord`` and ``ExecutionStateMachine`` that a start creates (``restore()`` from its
snapshot), and the supervisors feed it ``Resume``: the machine decides what happened while no
system ran (D8). Closed runs and runs of activity types this system does not register get
handles that read the journal.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Dict, List, Tuple

from . import _serde
from ._execution import ExecutionStateMachine, Schedule, suspended_by_shutdown
from ._messages import RecoverExecutions
from ._outcome import Outcome
from .clock import Clock, from_timestamp_function
from .exceptions import ActivityError, ApplicationError, RetryState
from .handle import ActivityHandle
from .history import HistoryEvent, to_events
from .supervisor import ExecutionRecord

__all__ = ["Recovery"]

log = logging.getLogger(__name__)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


class Recovery:
    """Rebuilds a journal's open executions and hands out handles that read the journal."""

    def __init__(self, journal: Any, clock: Clock, shards: int) -> None:
        self._journal = journal
        self._from_ts = from_timestamp_function(clock)
        self._shards = shards
        self._foreign_waiters: List[Tuple[Outcome, Any]] = []  # (future, StoredRun)

    # -- resuming ---------------------------------------------------------------------------

    def resume(self, recovered: Any, supervisors: List[Any]) -> None:
        """Give every recovered run to its supervisor (D8); warn once about the others."""
        from .journal import _codec

        by_shard: Dict[int, List[ExecutionRecord]] = {}
        for run in recovered.runs:
            record = self._record_of(run, _codec)
            self._journal.adopt(record)
            by_shard.setdefault(record.shard, []).append(record)
        for shard, records in by_shard.items():
            supervisors[shard].tell(RecoverExecutions(records))
        if recovered.runs:
            log.info("journal %s: resumed %d open executions", getattr(self._journal, "path", ""),
                     len(recovered.runs))
        if recovered.unregistered:
            listing = ", ".join(f"{name!r} ({n})" for name, n in sorted(recovered.unregistered.items()))
            log.warning(
                "journal %s holds open executions of activity types this system does not register: "
                "%s. They stay untouched in the journal for a system that registers them "
                "(ActorSystem(activities=[...]))", getattr(self._journal, "path", ""), listing)

    def _record_of(self, run: Any, codec: Any) -> ExecutionRecord:
        options = run.options
        config = codec.config_of(options, run.activity_id, run.activity_type, run.run_id)
        details = _serde.decode_details(run.details_bytes) if run.details_bytes else ()
        if run.state is None:
            # Committed before its first snapshot: scheduled at its start time, as it was.
            fresh = ExecutionStateMachine(config)
            fresh.handle(Schedule(), self._from_ts(run.start_time))
            machine = ExecutionStateMachine.restore(config, fresh.snapshot(), details)
        else:
            machine = ExecutionStateMachine.restore(config, run.state, details)
        return ExecutionRecord(
            exec_id=run.exec_id,
            shard=run.exec_id % self._shards,
            machine=machine,
            future=Outcome(),
            fn_name=run.activity_type,
            fn_bytes=None,
            args_bytes=run.args_bytes,
            task_queue=run.task_queue,
            throttle=options["throttle"],
            details_bytes=run.details_bytes,
            policy_fields=tuple(options["policy_fields"]),
            start_time=self._from_ts(run.start_time),
            history_base=run.history_seq,
        )

    # -- handles ----------------------------------------------------------------------------

    def earlier_history(self, record: ExecutionRecord) -> Any:
        journal = self._journal

        def read() -> List[HistoryEvent]:
            return to_events(journal.history_prefix(record), _utc)

        return read

    def closed_handle(self, run: Any) -> ActivityHandle:
        """A retained run of the journal: its outcome and history as committed."""
        future = Outcome()
        kind, value = run.outcome if run.outcome is not None else ("error", None)
        if kind == "result":
            future.set(value, None)
        else:
            future.set(None, value if value is not None else _lost_outcome(run))
        return self._stored_handle(run, future, _closed_cancel)

    def foreign_handle(self, run: Any) -> ActivityHandle:
        """An open run whose activity type this system does not register: it stays untouched,
        so the handle resolves only when this system shuts down (D8)."""
        future = Outcome()
        self._foreign_waiters.append((future, run))

        def cancel() -> None:
            raise ValueError(
                f"activity {run.activity_id!r} is of type {run.activity_type!r}, which this system does "
                "not register, so it cannot run or cancel it: cancel it from a system that registers "
                "the type (ActorSystem(activities=[...]))")

        return self._stored_handle(run, future, cancel)

    def _stored_handle(self, run: Any, future: Outcome, cancel: Any) -> ActivityHandle:
        journal = self._journal
        exec_id = run.exec_id
        return ActivityHandle(run.activity_id, run.activity_type, future, cancel, [], _utc,
                              lambda: to_events(journal.history_of(exec_id), _utc))

    def detach_foreign(self) -> None:
        """Shutdown: handles on untouched runs resolve as D8 says (IN_PROGRESS)."""
        waiters, self._foreign_waiters = self._foreign_waiters, []
        for future, run in waiters:
            future.set(None, suspended_by_shutdown(run.activity_type, run.activity_id))


def _lost_outcome(run: Any) -> ActivityError:
    error = ActivityError("Activity execution closed", activity_type=run.activity_type,
                          activity_id=run.activity_id, retry_state=RetryState.INTERNAL_SERVER_ERROR)
    error.__cause__ = ApplicationError(f"the journal holds no outcome for closed run {run.run_id}",
                                       type="JournalOutcomeMissing", non_retryable=True)
    return error


def _closed_cancel() -> None:
    """A closed run has nothing to cancel; ``handle.cancel()`` returns False before calling this."""

"""Validation and normalisation at the call (R11-R13, R20-R24, R88, R90/D5).

Uses the pure helpers of ``actorflow.system``; no ActorSystem is started (an unstarted
``ActorSystem`` is only constructed where the check lives on it: the activity name, S30).
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest

from actorflow import activity
from actorflow._retry import EffectivePolicy
from actorflow.common import RetryPolicy
from actorflow.system import (
    _NO_ARG,
    ActorSystem,
    _call_args,
    _effective_policy,
    _normalise,
    _optional_timeout,
)

S = lambda seconds: timedelta(seconds=seconds)  # noqa: E731
NO_TIMEOUT_MESSAGE = "Activity must have start_to_close_timeout or schedule_to_close_timeout"
TIMEOUT_NAMES = [
    "schedule_to_close_timeout",
    "schedule_to_start_timeout",
    "start_to_close_timeout",
    "heartbeat_timeout",
]


def timeouts(s2c=None, s2s=None, stc=None, hb=None):
    """The start_activity pipeline: each option checked, then R11."""
    return _normalise(
        _optional_timeout("schedule_to_close_timeout", s2c),
        _optional_timeout("schedule_to_start_timeout", s2s),
        _optional_timeout("start_to_close_timeout", stc),
        _optional_timeout("heartbeat_timeout", hb),
    )


# ----------------------------------------------------------------------------- R11 / R12


@pytest.mark.parametrize(
    "given, expected",
    [
        # R11.1 / S7: only S2C -> stc = s2s = S2C; heartbeat stays disabled
        (dict(s2c=S(10)), (S(10), S(10), S(10), None)),
        # S32: stc 60 > S2C 10 is lowered; heartbeat 120 is lowered to stc (R12)
        (dict(s2c=S(10), stc=S(60), hb=S(120)), (S(10), S(10), S(10), S(10))),
        # R11.1: min(given, S2C)
        (dict(s2c=S(10), stc=S(5), s2s=S(20)), (S(10), S(10), S(5), None)),
        (dict(s2c=S(10), stc=S(5), s2s=S(3), hb=S(1)), (S(10), S(3), S(5), S(1))),
        # R11.2: only stc -> S2C and s2s unbounded
        (dict(stc=S(5)), (None, None, S(5), None)),
        (dict(stc=S(5), s2s=S(3)), (None, S(3), S(5), None)),
        (dict(stc=S(5), s2s=S(30)), (None, S(30), S(5), None)),  # no S2C: s2s is not capped by stc
        # R11.4 / R12: heartbeat := min(given, start_to_close)
        (dict(stc=S(5), hb=S(10)), (None, None, S(5), S(5))),
        (dict(stc=S(5), hb=S(2)), (None, None, S(5), S(2))),
        (dict(s2c=S(4), hb=S(6)), (S(4), S(4), S(4), S(4))),
    ],
    ids=[
        "S7-only-s2c",
        "S32",
        "min-stc",
        "all-given",
        "only-stc",
        "stc-s2s",
        "s2s-uncapped",
        "hb-capped",
        "hb-kept",
        "hb-capped-by-s2c",
    ],
)
def test_R11_R12_normalisation(given, expected):
    """R11/R12: normalisation applied once when the execution is scheduled."""
    assert timeouts(**given) == expected


@pytest.mark.parametrize(
    "given",
    [dict(), dict(s2s=S(5)), dict(hb=S(5)), dict(s2s=S(5), hb=S(1))],
    ids=["none", "only-s2s", "only-hb", "s2s-hb"],
)
def test_R13_no_close_timeout_is_rejected_with_temporals_message(given):
    """R13/S31: neither start_to_close nor schedule_to_close -> Temporal's exact ValueError."""
    with pytest.raises(ValueError) as info:
        timeouts(**given)
    assert str(info.value) == NO_TIMEOUT_MESSAGE


@pytest.mark.parametrize("name", TIMEOUT_NAMES)
@pytest.mark.parametrize("value", [timedelta(0), S(-1), timedelta(microseconds=-1)])
def test_R13_D5_zero_or_negative_timeout_names_the_option(name, value):
    """R13/D5: a zero or negative timeout is a ValueError naming the option (stricter than Temporal)."""
    with pytest.raises(ValueError, match=re.escape(name)):
        _optional_timeout(name, value)


def test_R13_D5_zero_start_to_close_alone_is_rejected():
    """R13: Temporal treats stc=0 alone as "not given"; D5 rejects it, naming the option."""
    with pytest.raises(ValueError, match="start_to_close_timeout must be positive"):
        timeouts(stc=timedelta(0))


@pytest.mark.parametrize("name", TIMEOUT_NAMES)
@pytest.mark.parametrize("value", [5, 5.0, "5s"])
def test_timeout_must_be_a_timedelta(name, value):
    """API.md: durations are timedelta; anything else is a TypeError naming the option."""
    with pytest.raises(TypeError, match=re.escape(name)):
        _optional_timeout(name, value)


def test_positive_timeouts_pass_through():
    assert _optional_timeout("heartbeat_timeout", None) is None
    assert _optional_timeout("heartbeat_timeout", timedelta(microseconds=1)) == timedelta(microseconds=1)


# ----------------------------------------------------------------------------- R20-R24 retry policy


@pytest.mark.parametrize(
    "policy, message",
    [
        (RetryPolicy(backoff_coefficient=0.5), "Backoff coefficient cannot be less than 1"),  # S31
        (
            RetryPolicy(maximum_interval=S(0.5)),
            "Maximum interval cannot be less than initial interval",
        ),  # S31
        (RetryPolicy(maximum_attempts=-1), "Maximum attempts cannot be negative"),  # S31
        (RetryPolicy(initial_interval=S(-1)), "Initial interval cannot be negative"),
        (RetryPolicy(maximum_interval=S(-1)), "Maximum interval cannot be negative"),
        (
            RetryPolicy(initial_interval=S(5), maximum_interval=S(4)),
            "Maximum interval cannot be less than initial interval",
        ),
        # the SDK's check order: initial interval first, then coefficient, then maximum, then attempts
        (
            RetryPolicy(initial_interval=S(-1), backoff_coefficient=0.5, maximum_attempts=-1),
            "Initial interval cannot be negative",
        ),
        (
            RetryPolicy(backoff_coefficient=0.5, maximum_interval=S(-1)),
            "Backoff coefficient cannot be less than 1",
        ),
        (RetryPolicy(maximum_interval=S(-1), maximum_attempts=-1), "Maximum interval cannot be negative"),
    ],
)
def test_R24_S31_retry_policy_messages(policy, message):
    """R24/S31: the Python SDK's exact messages, raised when the activity is started (R91)."""
    with pytest.raises(ValueError) as info:
        _effective_policy(policy)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "policy",
    [
        RetryPolicy(maximum_attempts=1, backoff_coefficient=0.5),  # S16
        RetryPolicy(maximum_attempts=1, initial_interval=S(-1)),
        RetryPolicy(maximum_attempts=1, maximum_interval=S(-1)),
        RetryPolicy(maximum_attempts=1, maximum_interval=S(0.5)),
    ],
)
def test_R24_S16_validation_skipped_when_maximum_attempts_is_1(policy):
    """R24/S16: every check is skipped when maximum_attempts == 1."""
    effective = _effective_policy(policy)[0]
    assert effective.maximum_attempts == 1


@pytest.mark.parametrize(
    "policy, expected",
    [
        (RetryPolicy(backoff_coefficient=1.0), EffectivePolicy(1.0, 1.0, 100.0)),  # constant interval
        (RetryPolicy(initial_interval=S(3), maximum_interval=S(3)), EffectivePolicy(3.0, 2.0, 3.0)),
        (
            RetryPolicy(S(2), 3.0, S(20), 5, ["ValueError"]),
            EffectivePolicy(2.0, 3.0, 20.0, 5, ("ValueError",)),
        ),
    ],
)
def test_R24_allowed_edges(policy, expected):
    """R24: coefficient exactly 1.0 and maximum_interval == initial_interval are allowed."""
    assert _effective_policy(policy)[0] == expected


@pytest.mark.parametrize(
    "policy, expected",
    [
        (None, EffectivePolicy(1.0, 2.0, 100.0, 0, ())),  # R21: no policy -> defaults
        (RetryPolicy(), EffectivePolicy(1.0, 2.0, 100.0, 0, ())),
        (RetryPolicy(initial_interval=timedelta(0)), EffectivePolicy(1.0, 2.0, 100.0)),  # R22
        (RetryPolicy(initial_interval=S(2), maximum_interval=timedelta(0)), EffectivePolicy(2.0, 2.0, 200.0)),
        (RetryPolicy(initial_interval=S(2)), EffectivePolicy(2.0, 2.0, 200.0)),  # R20: 100 x initial
        # R22 as actorflow chose (documented on RetryPolicy): coefficient 0 means the default 2.0
        (RetryPolicy(backoff_coefficient=0), EffectivePolicy(1.0, 2.0, 100.0)),
    ],
    ids=["none", "default", "zero-initial", "zero-maximum", "maximum-default", "zero-coefficient"],
)
def test_R20_R22_defaults_and_zero_fields(policy, expected):
    """R20-R22: None and zero-valued fields get Temporal's defaults."""
    assert _effective_policy(policy)[0] == expected


def test_S2_info_view_of_the_default_policy():
    """S2/R72: info().retry_policy shows the effective policy: 1 s, 2.0, 100 s, 0 attempts."""
    full = RetryPolicy.from_fields(_effective_policy(None)[1])  # what the worker's info() shows
    assert full == RetryPolicy(S(1), 2.0, S(100), 0, ())
    assert isinstance(full.backoff_coefficient, float)


def test_R24_timeout_names_in_non_retryable_types():
    """R24 (server check): "TemporalTimeout:" must be followed by a valid timeout type name."""
    for name in ("StartToClose", "ScheduleToStart", "ScheduleToClose", "Heartbeat"):
        _effective_policy(RetryPolicy(non_retryable_error_types=[f"TemporalTimeout:{name}"]))
    with pytest.raises(ValueError, match="TemporalTimeout:startToClose"):
        _effective_policy(RetryPolicy(non_retryable_error_types=["TemporalTimeout:startToClose"]))
    # without the prefix any string is an ordinary error type
    _effective_policy(RetryPolicy(non_retryable_error_types=["Temporal Timeout", "TemporalTimeout"]))


@pytest.mark.parametrize(
    "policy, field",
    [
        (RetryPolicy(initial_interval=1), "initial_interval"),  # type: ignore[arg-type]
        (RetryPolicy(maximum_interval=2.0), "maximum_interval"),  # type: ignore[arg-type]
        (RetryPolicy(backoff_coefficient="2"), "backoff_coefficient"),  # type: ignore[arg-type]
        (RetryPolicy(maximum_attempts=2.0), "maximum_attempts"),  # type: ignore[arg-type]
        (RetryPolicy(maximum_attempts=True), "maximum_attempts"),
        (RetryPolicy(non_retryable_error_types="ValueError"), "non_retryable_error_types"),
        (RetryPolicy(non_retryable_error_types=[ValueError]), "non_retryable_error_types"),  # type: ignore[list-item]
    ],
)
def test_retry_policy_type_errors_name_the_field(policy, field):
    """API.md: a clear TypeError naming the field."""
    with pytest.raises(TypeError, match=field):
        _effective_policy(policy)


def test_retry_policy_must_be_a_retry_policy():
    with pytest.raises(TypeError, match="retry_policy"):
        _effective_policy({"maximum_attempts": 3})  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- R88 arg / args


@pytest.mark.parametrize(
    "arg, args, expected",
    [
        (_NO_ARG, (), ()),
        (5, (), (5,)),
        (None, (), (None,)),  # None is a real argument
        ((1, 2), (), ((1, 2),)),  # one tuple argument stays one argument
        (_NO_ARG, [1, 2], (1, 2)),
        (_NO_ARG, (1,), (1,)),
    ],
)
def test_R88_call_args(arg, args, expected):
    """R88: one positional arg, or several through args=[...]."""
    assert _call_args(arg, args) == expected


def test_R88_arg_and_args_rejected():
    """R88: giving both raises Temporal's ValueError("Cannot have arg and args")."""
    with pytest.raises(ValueError) as info:
        _call_args(1, [2])
    assert str(info.value) == "Cannot have arg and args"


@pytest.mark.parametrize("args", ["ab", b"ab", {1, 2}, 3])
def test_R88_args_must_be_a_sequence(args):
    with pytest.raises(TypeError, match="args"):
        _call_args(_NO_ARG, args)


# ----------------------------------------------------------------------------- R90 / D5 / S30


@activity.defn
def known_activity(x: int) -> int:
    return x


@pytest.fixture
def unstarted_system():
    """An ActorSystem that is constructed but never started: no process, thread or actor."""
    before = threading.active_count()
    system = ActorSystem(activities=[known_activity], workers=1)
    yield system
    assert not system.running
    assert threading.active_count() == before


def test_S30_D5_unknown_activity_name_rejected_at_the_call(unstarted_system):
    """S30/R90/D5: an unknown name is a ValueError at the call that lists the known names."""
    with pytest.raises(ValueError) as info:
        unstarted_system.start_activity(
            "nope", start_to_close_timeout=S(5), retry_policy=RetryPolicy(maximum_attempts=2)
        )
    assert "'nope'" in str(info.value) and "known_activity" in str(info.value)


def test_D5_call_options_are_validated_before_anything_runs(unstarted_system):
    """R91/D5: every option is checked before the system state is even looked at."""
    system = unstarted_system
    with pytest.raises(ValueError) as info:
        system.start_activity(known_activity, 1)
    assert str(info.value) == NO_TIMEOUT_MESSAGE
    with pytest.raises(ValueError, match="heartbeat_timeout"):
        system.start_activity(known_activity, 1, start_to_close_timeout=S(5), heartbeat_timeout=timedelta(0))
    with pytest.raises(ValueError, match="Backoff coefficient cannot be less than 1"):
        system.start_activity(
            known_activity, 1, start_to_close_timeout=S(5), retry_policy=RetryPolicy(backoff_coefficient=0.5)
        )
    with pytest.raises(ValueError, match="Cannot have arg and args"):
        system.start_activity(known_activity, 1, args=[2], start_to_close_timeout=S(5))
    with pytest.raises(ValueError, match="cancellation_type"):
        system.start_activity(known_activity, 1, start_to_close_timeout=S(5), cancellation_type=7)
    with pytest.raises(TypeError, match="cannot be pickled"):
        system.start_activity(known_activity, threading.Lock(), start_to_close_timeout=S(5))
    # valid options: only then does the (unstarted) system refuse
    with pytest.raises(RuntimeError, match="not running"):
        system.start_activity(known_activity, 1, start_to_close_timeout=S(5))


def test_validated_timeouts_are_remembered_and_bad_ones_are_rejected_every_time(unstarted_system):
    """start_activity keeps the normalised timeouts per combination (a hot-path cache): a bad
    combination is never remembered, and each good one keeps its own R11/R12/R49 result."""
    system = unstarted_system
    for _ in range(2):
        with pytest.raises(ValueError, match="heartbeat_timeout"):
            system.start_activity(known_activity, 1, start_to_close_timeout=S(5), heartbeat_timeout=timedelta(0))
        with pytest.raises(TypeError, match="start_to_close_timeout"):
            system.start_activity(known_activity, 1, start_to_close_timeout=[5])  # unhashable
    assert system._timing_cache == {}
    for _ in range(2):
        with pytest.raises(RuntimeError, match="not running"):
            system.start_activity(known_activity, 1, start_to_close_timeout=S(5), heartbeat_timeout=S(10))
        with pytest.raises(RuntimeError, match="not running"):
            system.start_activity(known_activity, 1, schedule_to_close_timeout=S(8))
    assert system._timing_cache == {
        (None, None, S(5), S(10)): (None, None, 5.0, 5.0, 4.0),  # R12: hb capped by stc; R49: 0.8 x
        (S(8), None, None, None): (8.0, 8.0, 8.0, None, 30.0),  # R11: both default to s2c
    }

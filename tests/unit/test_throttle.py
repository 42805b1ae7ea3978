"""R49 heartbeat throttle interval, and S32's throttle after normalisation (R11)."""

from datetime import timedelta

import pytest

from actorflow.system import _normalise, heartbeat_throttle_interval

DEFAULT, MAXIMUM = timedelta(seconds=30), timedelta(seconds=60)


@pytest.mark.parametrize("heartbeat_timeout, expected", [
    (timedelta(seconds=1), 0.8),
    (timedelta(seconds=10), 8.0),
    (timedelta(seconds=100), 60.0),  # capped by max_heartbeat_throttle_interval
    (None, 30.0),  # default_heartbeat_throttle_interval
])
def test_R49_throttle_interval_examples(heartbeat_timeout, expected):
    assert heartbeat_throttle_interval(heartbeat_timeout, DEFAULT, MAXIMUM) == pytest.approx(expected)


def test_R49_throttle_uses_the_systems_own_intervals():
    assert heartbeat_throttle_interval(None, timedelta(seconds=2), MAXIMUM) == 2.0
    assert heartbeat_throttle_interval(timedelta(seconds=50), DEFAULT, timedelta(seconds=5)) == 5.0


def test_S32_throttle_follows_the_normalised_heartbeat_timeout():
    s2c, s2s, stc, hb = _normalise(timedelta(seconds=10), None, timedelta(seconds=60), timedelta(seconds=120))
    assert (stc, hb) == (timedelta(seconds=10), timedelta(seconds=10))
    assert heartbeat_throttle_interval(hb, DEFAULT, MAXIMUM) == pytest.approx(8.0)

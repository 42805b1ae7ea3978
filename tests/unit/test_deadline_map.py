"""``timer.DeadlineMap``: the pure sorted map the timer actor owns (STYLE.md 2.6, SEMANTICS R14)."""

from __future__ import annotations

import pytest

from actorflow.timer import DeadlineMap


def make(*entries) -> DeadlineMap:
    dm = DeadlineMap()
    for entry in entries:
        dm.add(*entry)
    return dm


@pytest.mark.parametrize(
    "entries, expected",
    [
        # by deadline
        ([("c", 3.0), ("a", 1.0), ("b", 2.0)], ["a", "b", "c"]),
        # same deadline: by priority (R14: START_TO_CLOSE=1 < SCHEDULE_TO_START=2 < S2C=3 < HEARTBEAT=4)
        ([("hb", 5.0, 4), ("s2c", 5.0, 3), ("stc", 5.0, 1), ("s2s", 5.0, 2)], ["stc", "s2s", "s2c", "hb"]),
        # same deadline and priority: by insertion, never by key or id()
        ([("z", 1.0), ("a", 1.0), ("m", 1.0)], ["z", "a", "m"]),
        # deadline beats priority
        ([("late-high", 2.0, 0), ("early-low", 1.0, 9)], ["early-low", "late-high"]),
        # mixed key types never get compared with each other
        ([((1, 2, 3), 1.0), ("s", 1.0), (7, 1.0)], [(1, 2, 3), "s", 7]),
    ],
    ids=["deadline", "priority", "insertion", "deadline-first", "mixed-keys"],
)
def test_pop_due_order(entries, expected):
    """pop_due returns keys in (deadline, priority, insertion) order."""
    dm = make(*entries)
    assert [key for key, _ in dm.pop_due(100.0)] == expected
    assert len(dm) == 0


def test_pop_due_returns_deadlines_and_only_due_entries():
    """Entries due at ``now`` (inclusive) are removed and returned with their deadlines; later ones stay."""
    dm = make(("a", 1.0), ("b", 2.0), ("c", 2.5))
    assert dm.pop_due(0.5) == []
    assert dm.pop_due(2.0) == [("a", 1.0), ("b", 2.0)]
    assert len(dm) == 1 and "c" in dm and "a" not in dm
    assert dm.next_deadline() == 2.5
    assert dm.pop_due(10.0) == [("c", 2.5)]
    assert dm.next_deadline() is None


def test_add_replaces_the_key():
    """Adding a key again replaces its deadline (a re-armed heartbeat timer, R9)."""
    dm = make(("hb", 1.0), ("other", 2.0))
    dm.add("hb", 3.0)
    assert len(dm) == 2
    assert dm.pop_due(2.0) == [("other", 2.0)]
    assert dm.pop_due(3.0) == [("hb", 3.0)]


def test_replace_counts_as_a_new_insertion():
    """A replaced key sorts after entries of equal deadline and priority that were added before."""
    dm = make(("a", 1.0), ("b", 1.0))
    dm.add("a", 1.0)
    assert [k for k, _ in dm.pop_due(1.0)] == ["b", "a"]


def test_replace_can_change_priority():
    dm = make(("a", 1.0, 5), ("b", 1.0, 3))
    dm.add("a", 1.0, 1)
    assert [k for k, _ in dm.pop_due(1.0)] == ["a", "b"]


def test_cancel():
    """cancel forgets a pending key and says whether it was pending."""
    dm = make(("a", 1.0), ("b", 2.0))
    assert dm.cancel("a") is True
    assert dm.cancel("a") is False  # already cancelled
    assert dm.cancel("never") is False
    assert "a" not in dm and "b" in dm and len(dm) == 1
    assert dm.pop_due(5.0) == [("b", 2.0)]
    assert dm.cancel("b") is False  # already fired


def test_cancel_then_add_again():
    dm = make(("a", 1.0))
    dm.cancel("a")
    dm.add("a", 4.0)
    assert dm.next_deadline() == 4.0
    assert dm.pop_due(4.0) == [("a", 4.0)]


def test_len_contains_and_next_deadline_of_empty_map():
    dm = DeadlineMap()
    assert len(dm) == 0
    assert "x" not in dm
    assert dm.next_deadline() is None
    assert dm.pop_due(float("inf")) == []


def test_next_deadline_is_the_earliest():
    dm = make(("a", 3.0), ("b", 1.5), ("c", 2.0))
    assert dm.next_deadline() == 1.5
    dm.cancel("b")
    assert dm.next_deadline() == 2.0


def test_large_table_matches_a_reference_sort():
    """Many entries pop exactly in sorted (deadline, priority, insertion index) order."""
    entries = [(f"k{i}", float((i * 7) % 5), (i * 3) % 4) for i in range(60)]
    dm = make(*entries)
    expected = [key for _, _, _, key in sorted((d, p, i, k) for i, (k, d, p) in enumerate(entries))]
    assert [key for key, _ in dm.pop_due(10.0)] == expected

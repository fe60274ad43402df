"""``rounds``: exact per-entity order inside a vectorised micro-batch."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from predictor.batching import rounds

slot_lists = st.lists(st.integers(min_value=0, max_value=12), max_size=200)


@given(slot_lists)
def test_rounds_partition_unique_slots_in_order(values: list[int]) -> None:
    slots = np.array(values, dtype=np.int64)
    out = rounds(slots)
    flat = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
    # every index exactly once
    assert sorted(flat.tolist()) == list(range(len(values)))
    for r in out:
        assert len(r) > 0
        # unique slots within a round, indices ascending (arrival order)
        assert len(set(slots[r].tolist())) == len(r)
        assert np.all(np.diff(r) > 0)
    # per slot, the rounds visit its events in arrival order, one per round
    position = {int(i): k for k, r in enumerate(out) for i in r}
    for s in set(values):
        mine = [i for i, v in enumerate(values) if v == s]
        assert [position[i] for i in mine] == list(range(len(mine)))


@given(slot_lists)
def test_number_of_rounds_is_the_largest_multiplicity(values: list[int]) -> None:
    out = rounds(np.array(values, dtype=np.int64))
    expected = max((values.count(v) for v in set(values)), default=0)
    assert len(out) == expected


def test_all_distinct_is_a_single_round() -> None:
    out = rounds(np.array([5, 3, 9, 0]))
    assert len(out) == 1 and out[0].tolist() == [0, 1, 2, 3]


def test_empty() -> None:
    assert rounds(np.zeros(0, dtype=np.int64)) == []

"""Loss accounting: gaps, late data, duplicates, wrap, resets; bulk equals one-by-one."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.flows.sequence import SequenceTracker

A = b"\x00" * 10 + b"\xff\xff" + bytes([10, 0, 0, 1])
B = b"\x00" * 10 + b"\xff\xff" + bytes([10, 0, 0, 2])


def test_in_order_gap_late_and_duplicate() -> None:
    t = SequenceTracker()
    assert t.observe(A, 0, "netflow_v5", 100, 30) == "first"
    assert t.observe(A, 0, "netflow_v5", 130, 30) == "in_order"
    assert t.observe(A, 0, "netflow_v5", 220, 30) == "gap"  # 160..219 missing
    st_ = t.state(A, 0, "netflow_v5")
    assert st_ is not None
    assert st_.missing == 60
    assert t.observe(A, 0, "netflow_v5", 160, 30) == "out_of_order"
    assert st_.missing == 30
    assert st_.out_of_order == 1
    assert t.observe(A, 0, "netflow_v5", 160, 30) == "duplicate"
    assert t.observe(A, 0, "netflow_v5", 190, 30) == "out_of_order"
    assert (st_.missing, st_.duplicated, st_.out_of_order, st_.received) == (0, 1, 2, 180)
    assert st_.expected == 250


def test_wrap_at_two_to_the_32() -> None:
    t = SequenceTracker()
    t.observe(A, 7, "netflow_v9", 2**32 - 2, 1)
    assert t.observe(A, 7, "netflow_v9", 2**32 - 1, 1) == "in_order"
    assert t.observe(A, 7, "netflow_v9", 0, 1) == "in_order"
    assert t.observe(A, 7, "netflow_v9", 3, 1) == "gap"
    assert t.observe(A, 7, "netflow_v9", 1, 1) == "out_of_order"
    st_ = t.state(A, 7, "netflow_v9")
    assert st_ is not None
    assert st_.missing == 1


def test_reset_and_unknown_count() -> None:
    t = SequenceTracker(reset_threshold=1000)
    t.observe(A, 0, "ipfix", 5_000_000, 10)
    assert t.observe(A, 0, "ipfix", 3, 10) == "reset"
    assert t.observe(A, 0, "ipfix", 13, None) == "in_order"
    assert t.observe(A, 0, "ipfix", 99, 5) == "first"  # unknown count: resynchronised
    st_ = t.state(A, 0, "ipfix")
    assert st_ is not None
    assert (st_.resets, st_.missing) == (1, 0)


def test_keys_are_separate_and_json_round_trips() -> None:
    t = SequenceTracker()
    t.observe(A, 0, "sflow", 1, 1)
    t.observe(A, 1, "sflow", 10, 1)
    t.observe(B, 0, "sflow", 5, 1)
    t.observe(A, 0, "sflow", 4, 1)
    t2 = SequenceTracker.from_json(t.to_json())
    assert t2.snapshot() == t.snapshot()
    assert t2.totals() == {"missing": 2, "duplicated": 0, "out_of_order": 0, "resets": 0}
    rows = {(r["exporter"], r["domain"]): r for r in t.snapshot()}
    assert rows[(A.hex(), 0)]["unit"] == "datagrams"


events = st.lists(
    st.tuples(
        st.sampled_from([A, B]),
        st.integers(0, 2),
        st.integers(-40, 80),
        st.integers(-1, 30),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events=events, start=st.integers(0, 2**32 - 1))
def test_bulk_equals_one_by_one(events, start):  # type: ignore[no-untyped-def]
    one, bulk = SequenceTracker(), SequenceTracker()
    # Mostly in-order streams with jumps, so both the fast and the slow path run.
    cursor: dict[tuple[bytes, int], int] = {}
    rows = []
    for exp, dom, jump, count in events:
        seq = (cursor.get((exp, dom), start) + (jump if jump < 10 else 0)) % 2**32
        rows.append((exp, dom, seq, count))
        cursor[(exp, dom)] = (seq + max(count, 0)) % 2**32
    for exp, dom, seq, count in rows:
        one.observe(exp, dom, "netflow_v5", seq, count if count >= 0 else None)
    half = len(rows) // 2
    for part in (rows[:half], rows[half:]):
        if part:
            bulk.observe_many(
                np.frombuffer(b"".join(r[0] for r in part), np.uint8).reshape(-1, 16),
                np.array([r[1] for r in part], np.uint32),
                "netflow_v5",
                np.array([r[2] for r in part], np.uint32),
                np.array([r[3] for r in part], np.int64),
            )
    assert sorted(bulk.snapshot(), key=str) == sorted(one.snapshot(), key=str)

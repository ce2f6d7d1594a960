"""The allowance consumption order: equal to a 3-key lexsort (subscription, start, record);
the slots of the ordered records, and the state's units left across batches."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rating_engine.rating.allowance_kernel import allowance_slots
from rating_engine.tariff.allowances import AllowanceState, _time_order

_I64 = st.integers(-(1 << 62), (1 << 62) - 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5), _I64), max_size=60))
def test_order_equals_lexsort_with_ties(rows: list[tuple[int, int, int]]) -> None:
    sub, start, rid = np.array(rows, np.int64).reshape(-1, 3).T
    assert _time_order(sub, start, rid).tolist() == np.lexsort((rid, start, sub)).tolist()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(_I64, _I64, _I64), min_size=1, max_size=30))
def test_order_equals_lexsort_beyond_one_key(rows: list[tuple[int, int, int]]) -> None:
    # ranges too wide to pack (subscription, start) in one int64 take the lexsort
    sub, start, rid = np.array(rows, np.int64).reshape(-1, 3).T
    assert _time_order(sub, start, rid).tolist() == np.lexsort((rid, start, sub)).tolist()


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(1, 4)), max_size=40),
    st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True), min_size=4,
             max_size=4),
)  # fmt: skip
def test_slots_are_the_distinct_pairs(rows: list[tuple[int, int]],
                                      entries: list[list[int]]) -> None:  # fmt: skip
    # records in subscription order, each with an eligibility entry (1-based) listing
    # allowances: one slot per distinct (subscription, allowance), in the records' order
    rows = sorted(rows, key=lambda r: r[0])
    sub = np.array([r[0] for r in rows], np.int64)
    elig = np.array([r[1] for r in rows], np.int32)
    ptr = np.array([0, *np.cumsum([len(e) for e in entries])], np.int64)
    allow = np.array([a for e in entries for a in e], np.int64)
    order = np.arange(len(rows), dtype=np.int64)
    slot_ptr, slot_ix, slot_sub, slot_allow = allowance_slots(order, sub, elig, ptr, allow, 4)
    pairs = [(int(s), a) for s, e in zip(sub, elig, strict=True) for a in entries[e - 1]]
    got = [(int(slot_sub[k]), int(slot_allow[k])) for k in slot_ix]
    assert got == pairs
    assert slot_ptr.tolist() == [0, *np.cumsum([len(entries[e - 1]) for e in elig])]
    assert len(set(zip(slot_sub.tolist(), slot_allow.tolist(), strict=True))) == len(slot_sub)
    assert sorted(set(pairs)) == sorted(zip(slot_sub.tolist(), slot_allow.tolist(),
                                            strict=True))  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(st.lists(st.dictionaries(st.tuples(st.integers(0, 30), st.sampled_from("ab")),
                                st.integers(0, 99), max_size=12), max_size=6))  # fmt: skip
def test_state_put_take_match_a_dict(batches: list[dict[tuple[int, str], int]]) -> None:
    state, model = AllowanceState(), {}
    names = ["a", "b"]
    for batch in batches:
        keys = sorted(batch, key=lambda k: (-k[0], k[1]))  # any order
        sids = np.array([k[0] for k in keys], np.int64)
        codes = np.array([names.index(k[1]) for k in keys], np.int64)
        full = np.array([1000, 2000], np.int64)
        expect = [model.get(k, 1000 if k[1] == "a" else 2000) for k in keys]
        assert state.take(sids, names, codes, full).tolist() == expect
        state.put(sids, names, codes, np.array([batch[k] for k in keys], np.int64))
        model.update(batch)
        assert state.remaining == model

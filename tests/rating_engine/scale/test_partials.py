"""Usage sums of rated chunks: per chunk, combined in any grouping, and accumulated in dense
slots, all equal to a plain Python sum over the records."""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from rating_engine.scale.partials import (
    UsageAccumulator,
    combine_usage_partials,
    usage_partial,
)
from rating_engine.schemas import LABEL, RATED_SCHEMA

START = 1_790_000_000_000_000  # the period's start, us
SERVICES = ["voice", "sms", "data"]
CURRENCIES = ["EUR", "USD"]


def _rated(rows: list[tuple[int, int, int, bool, int, int, int]]) -> pa.Table:
    n = len(rows)
    col = list(zip(*rows, strict=True)) if rows else [[]] * 7
    sub, svc, cur, late, billed, allowance, cost = (np.array(c, np.int64) for c in col)
    label = lambda codes, names: pa.DictionaryArray.from_arrays(  # noqa: E731
        pa.array(codes, pa.int32()), pa.array(names)
    )
    return pa.table(
        {
            "record_id": pa.array(np.arange(n, dtype=np.int64)),
            "subscription_id": pa.array(sub),
            "account_id": pa.array(sub // 3),  # three subscriptions an account
            "service": label(svc, SERVICES),
            "start_time": pa.array(
                np.where(late.astype(bool), START - 1, START + 5), pa.timestamp("us", tz="UTC")
            ),
            "tariff_id": label(np.zeros(n, np.int32), ["t"]),
            "tariff_version": label(np.zeros(n, np.int32), ["v"]),
            "destination_set": pa.nulls(n, LABEL),
            "matched_prefix": pa.nulls(n, LABEL),
            "band": label(np.zeros(n, np.int32), ["b"]),
            "billed_units": pa.array(billed),
            "allowance_units": pa.array(allowance),
            "cost": pa.array(cost),
            "currency": label(cur, CURRENCIES),
        },
        schema=RATED_SCHEMA,
    )


def _reference(rows: list) -> dict:
    out: dict = defaultdict(lambda: [0, 0, 0, 0])
    for sub, svc, cur, late, billed, allowance, cost in rows:
        key = (sub // 3, sub, SERVICES[svc], bool(late), CURRENCIES[cur])
        for i, v in enumerate((billed, allowance, cost, 1)):
            out[key][i] += v
    return dict(out)


def _as_dict(table: pa.Table) -> dict:
    return {
        (r["account_id"], r["subscription_id"], r["service"], r["late"], r["currency"]): [
            r["billed_units"],
            r["allowance_units"],
            r["cost"],
            r["records"],
        ]
        for r in table.to_pylist()
    }


row = st.tuples(
    st.integers(1, 40), st.integers(0, 2), st.integers(0, 1), st.booleans(),
    st.integers(0, 10**6), st.integers(0, 10**3), st.integers(-(10**9), 10**12),
)  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(st.lists(row, max_size=120), st.lists(st.integers(0, 120), max_size=4))
def test_partials_combine_and_accumulate_exactly(rows: list, cuts: list[int]) -> None:
    reference = _reference(rows)
    whole = _rated(rows)
    assert _as_dict(usage_partial(whole, START)) == reference
    bounds = [0, *sorted(min(c, len(rows)) for c in cuts), len(rows)]
    pieces = [whole.slice(a, b - a) for a, b in itertools.pairwise(bounds)]
    combined = combine_usage_partials(*(usage_partial(p, START) for p in pieces))
    assert _as_dict(combined) == reference
    sub_ids = np.arange(1, 41, dtype=np.int64)
    acc = UsageAccumulator(sub_ids, sub_ids // 3, CURRENCIES, START)
    for piece in pieces:
        acc.add(piece)
    assert _as_dict(acc.table()) == reference


def test_rows_without_a_slot_still_count() -> None:
    """A subscription missing from the slots (and an unknown currency) is summed aside."""
    rows = [(1, 0, 0, False, 5, 1, 100), (99, 1, 1, True, 7, 0, 30), (2, 2, 1, False, 1, 0, 2)]
    acc = UsageAccumulator(np.array([1, 2], np.int64), np.array([0, 0], np.int64), ["EUR"], START)
    acc.add(_rated(rows))
    assert _as_dict(acc.table()) == _reference(rows)

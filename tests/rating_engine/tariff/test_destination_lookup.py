"""Destination look-up: the kernel's jump table, two-digit blocks and trie walk against a
plain longest-prefix reference, for prefixes of 1..10 digits and numbers of any length,
with non-digits anywhere (every path of the look-up: jump, block, walk, short numbers)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from reference_rater import subscriptions_table, usage_table

from rating_engine.rating.rate import compile_plan, rate_usage
from rating_engine.tariff.load import parse_tariff

T0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
SUBS = subscriptions_table([{"tariff_id": "t"}])
digits = st.text("0123456789", min_size=1, max_size=10)
numbers = st.text("0123456789", max_size=14) | st.text("0123456789+#*a", max_size=14)


@st.composite
def case(draw: st.DrawFn) -> tuple[dict[str, str], list[str]]:
    prefixes = draw(st.lists(digits, min_size=1, max_size=40, unique=True))
    # numbers that extend a prefix (so deep matches happen), and arbitrary ones
    extend = st.tuples(st.sampled_from(prefixes), numbers).map(lambda pn: pn[0] + pn[1])
    # a prefix cut short: the number ends inside the trie
    cut = st.sampled_from(prefixes).flatmap(lambda p: st.integers(0, len(p)).map(lambda k: p[:k]))
    dests = draw(st.lists(extend | cut | numbers, min_size=1, max_size=30))
    set_of = {p: f"s{draw(st.integers(0, 3))}" for p in prefixes}
    return set_of, dests


def _tariff(set_of: dict[str, str]) -> Any:
    sets: dict[str, list[str]] = {}
    for p, s in set_of.items():
        sets.setdefault(s, []).append(p)
    doc = {
        "tariff": {"id": "t", "currency": "EUR", "timezone": "UTC", "version": "v1",
                   "active_from": datetime(2025, 1, 1, tzinfo=UTC)},
        "destinations": sets,
        "bands": {"all": {"weekdays": [1, 2, 3, 4, 5, 6, 7]}},
        "rates": {"r": {"groups": [{"rate": "0.01", "unit": 1, "increment": 1}]}},
        "pricing": [{"service": "sms", "destinations": s, "band": "all", "rate": "r"}
                    for s in sets],
    }  # fmt: skip
    return parse_tariff(doc, "lookup.toml")


@settings(max_examples=300, deadline=None)
@given(case())
def test_longest_prefix_matches_reference(c: tuple[dict[str, str], list[str]]) -> None:
    set_of, dests = c
    plan = compile_plan({"t": _tariff(set_of)}, years=(2026, 2026))
    rows = [{"service": "sms", "destination": d, "start_time": T0} for d in dests]
    res = rate_usage(usage_table(rows), SUBS, plan)
    got = {
        rid: (p, s)
        for rid, p, s in zip(
            res.rated["record_id"].to_pylist(),
            res.rated["matched_prefix"].to_pylist(),
            res.rated["destination_set"].to_pylist(),
            strict=True,
        )
    }
    for rid, reason in zip(
        res.rejected["record_id"].to_pylist(), res.rejected["reason"].to_pylist(), strict=True
    ):
        assert reason == "no_destination"
        got[rid] = (None, None)
    for rid, d in enumerate(dests, start=1):
        hits = [p for p in set_of if d.startswith(p)]
        best = max(hits, key=len) if hits else None
        assert got[rid] == (best, set_of[best] if best else None), (d, sorted(set_of))

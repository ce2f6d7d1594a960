"""95th percentile of 5-minute rates (burstable billing)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ip_flow_builders import T0_US, flows, subscriptions

from rating_engine.errors import RatingError
from rating_engine.traffic.attribution import build_prefix_index
from rating_engine.traffic.percentile import (
    INTERVAL_US,
    combine_samples,
    p95_from_samples,
    p95_index,
    percentile_95,
    percentile_samples,
)

W = INTERVAL_US


def test_p95_index_drops_top_five_percent() -> None:
    for n in (1, 2, 19, 20, 21, 100, 288, 8640, 8928):
        assert p95_index(n) == math.ceil(0.95 * n) - 1
    assert p95_index(100) == 94  # samples 95..99 (the top 5) are discarded
    assert p95_index(8640) == 8207


def test_hand_case_20_intervals() -> None:
    idx = build_prefix_index(
        subscriptions([(1, "10.0.0.0/24", None, None), (2, "10.0.1.0/24", None, None)])
    )
    # 20 intervals; subscription 1 downloads 3000 B in interval 0 and 6000 B in interval 7,
    # uploads 300 B in 19 intervals; subscription 2 idle.
    rows = [
        {"src": "8.8.8.8", "dst": "10.0.0.1", "bytes": 3000, "start": T0_US},
        {"src": "8.8.8.8", "dst": "10.0.0.1", "bytes": 6000, "start": T0_US + 7 * W + 5},
    ] + [
        {"src": "10.0.0.2", "dst": "8.8.8.8", "bytes": 300, "start": T0_US + i * W}
        for i in range(19)
    ]
    out = percentile_95(flows(rows), idx, T0_US, T0_US + 20 * W).to_pylist()
    # index ceil(0.95*20)-1 = 18 of 20 ascending: down -> 3000 (6000 is the top 5 %), up -> 300
    assert out == [
        {
            "subscription_id": 1,
            "account_id": 10,
            "samples": 20,
            "p95_bps": 80,
            "p95_down_bps": 3000 * 8 // 300,
            "p95_up_bps": 300 * 8 // 300,
        },
        {
            "subscription_id": 2,
            "account_id": 20,
            "samples": 20,
            "p95_bps": 0,
            "p95_down_bps": 0,
            "p95_up_bps": 0,
        },
    ]


def test_long_flow_spread_exactly() -> None:
    idx = build_prefix_index(subscriptions([(1, "10.0.0.0/24", None, None)]))
    # 1000 bytes over [T0 + W/2, T0 + 2.5 W): 1/4 in interval 0, 1/2 in 1, 1/4 in 2
    rows = [
        {
            "src": "8.8.8.8",
            "dst": "10.0.0.1",
            "bytes": 1001,
            "start": T0_US + W // 2,
            "end": T0_US + 5 * W // 2,
        }
    ]
    s = percentile_samples(flows(rows), idx, T0_US, T0_US + 4 * W).to_pylist()
    assert [(r["interval"], r["bytes_down"]) for r in s] == [(0, 250), (1, 500), (2, 251)]
    # pieces before the period are dropped
    s = percentile_samples(flows(rows), idx, T0_US + W, T0_US + 3 * W).to_pylist()
    assert [(r["interval"], r["bytes_down"]) for r in s] == [(0, 500), (1, 251)]


def test_period_must_be_whole_intervals() -> None:
    idx = build_prefix_index(subscriptions([(1, "10.0.0.0/24", None, None)]))
    with pytest.raises(RatingError, match="multiple of 5 minutes"):
        percentile_95(flows([]), idx, T0_US, T0_US + W + 1)


def _pieces(start: int, end: int, nbytes: int, p0: int, n: int) -> dict[int, int]:
    """Twin of the spreading rule, with Python integers."""
    end = max(end, start)
    d = end - start
    if d == 0:
        j = (start - p0) // W
        return {j: nbytes} if 0 <= j < n else {}
    shift = max(0, d.bit_length() - 32)
    dd = d >> shift

    def cum(stop: int) -> int:
        return nbytes * ((stop - start) >> shift) // dd

    out = {}
    first, last = (start - p0) // W, (end - 1 - p0) // W
    for j in range(max(first, 0), min(last, n - 1) + 1):
        prev = 0 if j == first else cum(p0 + j * W)
        out[j] = cum(min(end, p0 + (j + 1) * W)) - prev
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.booleans(),
            st.sampled_from(["10.0.0.1", "10.0.1.1", "10.0.2.1"]),
            st.integers(-3 * W, 30 * W),
            st.integers(0, 2 * 3600 * 10**6),
            st.integers(0, 10**9),
            st.integers(0, 4),
        ),
        max_size=30,
    ),
    n=st.integers(1, 24),
    cut=st.integers(0, 30),
)
def test_matches_reference(
    rows: list[tuple[bool, str, int, int, int, int]], n: int, cut: int
) -> None:
    subs = {"10.0.0.1": 1, "10.0.1.1": 2}  # 10.0.2.1 is in no block
    idx = build_prefix_index(
        subscriptions([(1, "10.0.0.0/24", None, None), (2, "10.0.1.0/24", None, None)])
    )
    flow_rows = []
    down: dict[int, dict[int, int]] = {1: {}, 2: {}}
    up: dict[int, dict[int, int]] = {1: {}, 2: {}}
    for is_down, addr, off, dur, nbytes, mult in rows:
        start = T0_US + off
        flow_rows.append(
            {
                "src": "8.8.8.8" if is_down else addr,
                "dst": addr if is_down else "8.8.8.8",
                "start": start,
                "end": start + dur,
                "bytes": nbytes,
                "sampling_interval": mult,
            }
        )
        if addr in subs:
            acc = (down if is_down else up)[subs[addr]]
            for j, v in _pieces(start, start + dur, nbytes * max(mult, 1), T0_US, n).items():
                acc[j] = acc.get(j, 0) + v
    table = flows(flow_rows)
    got = percentile_95(table, idx, T0_US, T0_US + n * W).to_pylist()
    for r in got:
        sid = r["subscription_id"]
        ref = []
        for side in (down, up):
            samples = sorted(side[sid].get(j, 0) for j in range(n))
            ref.append(samples[math.ceil(0.95 * n) - 1] * 8 // 300)
        assert (r["p95_down_bps"], r["p95_up_bps"], r["p95_bps"]) == (ref[0], ref[1], max(ref))
        assert r["samples"] == n
    cut = min(cut, table.num_rows)
    parts = [
        percentile_samples(table.slice(0, cut), idx, T0_US, T0_US + n * W),
        percentile_samples(table.slice(cut), idx, T0_US, T0_US + n * W),
    ]
    whole = percentile_samples(table, idx, T0_US, T0_US + n * W)
    assert combine_samples(parts).equals(combine_samples([whole]))
    assert p95_from_samples(combine_samples(parts), idx, T0_US, T0_US + n * W).to_pylist() == got

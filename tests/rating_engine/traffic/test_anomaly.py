from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ip_flow_builders import HOUR_US, T0_US, flows

from collectors.addresses import address_to_bytes
from collectors.schemas import TIMESTAMP
from rating_engine.errors import RatingError
from rating_engine.traffic.aggregate import bucket_traffic
from rating_engine.traffic.anomaly import (
    INTERFACE_SPEED_SCHEMA,
    SEQUENCE_STATS_SCHEMA,
    exporter_silence,
    interface_utilisation,
    scan_detections,
    sequence_loss,
)
from rating_engine.traffic.detections import DETECTION_SCHEMA, object_names
from rating_engine.traffic.seasonal import (
    BaselineParams,
    hour_of_week,
    hour_of_week_baseline,
    seasonal_detections,
)

MIN_US = 60_000_000
FIVE = 5 * MIN_US
WEEKS = 3
H0, H1 = T0_US, T0_US + WEEKS * 168 * HOUR_US  # T0 is a Monday 00:00 UTC


def _series(cells: dict[tuple[int, int], int]) -> tuple[pa.Table, pa.Array]:
    """{(series, hour index from H0): value} -> hourly series table and its object names."""
    keys = sorted(cells)
    table = pa.table(
        {
            "bucket_start": pa.array([H0 + h * HOUR_US for _s, h in keys]).cast(TIMESTAMP),
            "bytes": pa.array([cells[k] for k in keys], pa.uint64()),
        }
    )
    return table, pa.array([f"subscription:{s}" for s, _h in keys])


def _twin(cells: dict[tuple[int, int], int], slot: int, end_hour: int) -> dict[str, tuple]:
    """statistics-module reference of the documented baseline (hours before ``end_hour``)."""
    out = {}
    for s in sorted({s for s, _h in cells}):
        seen = [h for (x, h) in cells if x == s and h < end_hour]
        if not seen:
            continue
        hours = [h for h in range(min(seen), end_hour) if (h + 0) % 168 == slot]
        if not hours:
            continue
        xs = [float(cells.get((s, h), 0)) for h in hours]
        med = statistics.median(xs)
        mad = statistics.median([abs(x - med) for x in xs])
        out[f"subscription:{s}"] = (med, mad, len(xs), len({h // 168 for h in hours}))
    return out


cells_st = st.dictionaries(
    st.tuples(st.integers(0, 2), st.integers(0, WEEKS * 168 - 1)),
    st.integers(0, 10_000),
    min_size=1,
    max_size=120,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=cells_st, slots=st.lists(st.integers(0, 167), min_size=1, max_size=4))
def test_baseline_matches_statistics_twin(
    cells: dict[tuple[int, int], int], slots: list[int]
) -> None:
    table, objects = _series(cells)
    got = hour_of_week_baseline(table, objects, "bytes", bucket_us=HOUR_US, history=(H0, H1),
                                slots=slots).to_pylist()  # fmt: skip
    want = {(o, slot): v for slot in set(slots) for o, v in _twin(cells, slot, WEEKS * 168).items()}
    assert {(r["object"], r["hour_of_week"]) for r in got} == set(want)
    for r in got:
        med, mad, n, weeks = want[(r["object"], r["hour_of_week"])]
        assert r["median"] == pytest.approx(med)
        assert r["mad"] == pytest.approx(mad)
        assert (r["samples"], r["weeks"]) == (n, weeks)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=cells_st, x=st.integers(0, 50_000), hour=st.integers(0, 167))
def test_seasonal_severity_matches_twin(
    cells: dict[tuple[int, int], int], x: int, hour: int
) -> None:
    p = BaselineParams(mad_floor_abs=50.0, mad_floor_rel=0.1)
    end_hour = WEEKS * 168 + hour
    hist = {k: v for k, v in cells.items() if k[1] < WEEKS * 168}
    judged = {k: v for k, v in hist.items()}
    judged[(0, end_hour)] = x
    table, objects = _series(judged)
    ev = H0 + end_hour * HOUR_US
    got = seasonal_detections(table, objects, bucket_us=HOUR_US, evaluate=(ev, ev + HOUR_US),
                              history_start=H0, params=p).to_pylist()  # fmt: skip
    want = {}
    for obj, (med, mad, _n, weeks) in _twin(hist, hour, WEEKS * 168).items():
        if weeks < p.min_weeks:
            continue
        value = x if obj == "subscription:0" else 0
        floor = max(mad, p.mad_floor_abs, p.mad_floor_rel * abs(med))
        z = 0.6745 * (value - med) / floor
        level = sum(abs(z) >= t for t in p.tiers)
        if level:
            sev = ("warning", "minor", "major", "critical")[level - 1]
            want[obj] = ("traffic_high" if z > 0 else "traffic_low", sev, value)
    assert {r["object"]: (r["kind"], r["severity"], r["observed"]) for r in got} == want
    for r in got:
        # the observed value lies beyond the threshold, on the side the direction says
        if r["direction"] == "above":
            assert r["observed"] >= r["threshold"] - 1e-6 > r["baseline"]
        else:
            assert r["observed"] <= r["threshold"] + 1e-6 < r["baseline"]


def test_flat_series_needs_floor_and_min_weeks() -> None:
    # one week only: no judgement; a flat zero series with the floor: a small blip is quiet
    one_week = {(0, h): 1000 for h in range(168)}
    table, objects = _series({**one_week, (0, 168): 10**9})
    ev = H0 + 168 * HOUR_US
    assert seasonal_detections(table, objects, bucket_us=HOUR_US, evaluate=(ev, ev + HOUR_US),
                               history_start=H0).num_rows == 0  # fmt: skip
    two = {(0, h): 1000 for h in range(2 * 168)}
    table, objects = _series({**two, (0, 2 * 168): 1500})
    ev = H0 + 2 * 168 * HOUR_US
    out = seasonal_detections(table, objects, bucket_us=HOUR_US, evaluate=(ev, ev + HOUR_US),
                              history_start=H0)  # fmt: skip
    assert out.num_rows == 0  # 500 above a flat 1000: z = 0.6745 * 500 / 1000
    assert out.schema == DETECTION_SCHEMA


def test_baseline_input_errors() -> None:
    table, objects = _series({(0, 1): 5})
    with pytest.raises(RatingError, match="divide an hour"):
        hour_of_week_baseline(table, objects, "bytes", bucket_us=7 * MIN_US, history=(H0, H1),
                              slots=[0])  # fmt: skip
    with pytest.raises(RatingError, match="no field packets"):
        hour_of_week_baseline(table, objects, "packets", bucket_us=HOUR_US, history=(H0, H1),
                              slots=[0])  # fmt: skip
    shifted = table.set_column(0, "bucket_start", pa.array([H0 + 1]).cast(TIMESTAMP))
    with pytest.raises(RatingError, match="not aligned"):
        hour_of_week_baseline(shifted, objects, "bytes", bucket_us=HOUR_US, history=(H0, H1),
                              slots=[0])  # fmt: skip
    with pytest.raises(RatingError, match="ascending"):
        sequence_loss(_seq([("e", 0, 100, 50)]), window=(0, 10 * MIN_US), tiers=(0.5, 0.1, 1, 2))


def test_hour_of_week_starts_monday() -> None:
    assert hour_of_week(np.array([T0_US, T0_US + 25 * HOUR_US, T0_US - HOUR_US])).tolist() == [
        0,
        25,
        167,
    ]


def _exporter_flows(spec: dict[str, list[int]]) -> pa.Table:
    rows: list[dict[str, Any]] = []
    for exp, starts in spec.items():
        for t in starts:
            rows.append({"src": "10.0.0.1", "dst": "10.0.0.2", "start": t,
                         "exporter": address_to_bytes(exp)})  # fmt: skip
    return flows(rows)


def test_exporter_silence() -> None:
    end = T0_US + 2 * HOUR_US
    every = list(range(T0_US, end, FIVE))
    spec = {
        "192.0.2.1": every,  # alive
        "192.0.2.2": [t for t in every if t < end - 10 * MIN_US],  # silent 10 min
        "192.0.2.3": [t for t in every if t < end - 65 * MIN_US],  # silent 65 min
        "192.0.2.4": every[-30:-28],  # never had a baseline
    }
    series = bucket_traffic(_exporter_flows(spec), "exporter", "5min")
    got = exporter_silence(
        series, bucket_us=FIVE, window_end=end, history_start=T0_US, min_active_buckets=6
    )
    rows = {r["object"]: (r["severity"], r["observed"], r["threshold"]) for r in got.to_pylist()}
    assert rows == {
        "exporter:192.0.2.2": ("major", 10.0, 10.0),
        "exporter:192.0.2.3": ("critical", 65.0, 60.0),
    }
    assert set(got.column("kind").to_pylist()) == {"exporter_silent"}
    quiet = exporter_silence(series, bucket_us=FIVE, window_end=end, history_start=T0_US,
                             silence_minutes=15, min_active_buckets=6)  # fmt: skip
    assert quiet.column("object").to_pylist() == ["exporter:192.0.2.3"]


def _seq(rows: list[tuple[str, int, int, int]]) -> pa.Table:
    return pa.table(
        {
            "exporter": [r[0] for r in rows],
            "interval_start": pa.array([r[1] for r in rows]).cast(TIMESTAMP),
            "interval_end": pa.array([r[1] + MIN_US for r in rows]).cast(TIMESTAMP),
            "expected": pa.array([r[2] for r in rows], pa.int64()),
            "received": pa.array([r[3] for r in rows], pa.int64()),
        },
        schema=SEQUENCE_STATS_SCHEMA,
    )


def test_sequence_loss() -> None:
    stats = _seq([
        ("192.0.2.1", 0, 1000, 990), ("192.0.2.1", MIN_US, 1000, 1000),  # 0.5 %: fine
        ("192.0.2.2", 0, 500, 450), ("192.0.2.2", MIN_US, 500, 450),  # 10 %: major
        ("192.0.2.3", 0, 50, 0),  # too few to judge
        ("192.0.2.4", 20 * MIN_US, 1000, 0),  # outside the window
    ])  # fmt: skip
    got = sequence_loss(stats, window=(0, 10 * MIN_US)).to_pylist()
    assert [(r["object"], r["severity"], r["observed"], r["threshold"]) for r in got] == [
        ("exporter:192.0.2.2", "major", pytest.approx(0.1), 0.05)
    ]


def test_interface_utilisation() -> None:
    t = T0_US
    rows = [
        # 1 Gbit/s interface 3: 30 GB in 5 min = 800 Mbit/s -> 80 % (minor)
        {"src": "10.0.0.1", "dst": "10.0.0.2", "start": t, "bytes": 30_000_000_000,
         "input_if": 3, "output_if": 4},
        # interface 4 (output) has no speed -> not judged; interface 5: idle
        {"src": "10.0.0.1", "dst": "10.0.0.2", "start": t, "bytes": 1000, "input_if": 5,
         "output_if": 4},
    ]  # fmt: skip
    speeds = pa.table(
        {"exporter": ["192.0.2.1", "192.0.2.1"], "if_index": pa.array([3, 5], pa.uint32()),
         "speed_bps": pa.array([10**9, 10**9], pa.uint64())},
        schema=INTERFACE_SPEED_SCHEMA,
    )  # fmt: skip
    f = flows(rows)
    s_in = bucket_traffic(f, "input_if", "5min")
    got = interface_utilisation(s_in, speeds, bucket_us=FIVE, evaluate=(t, t + FIVE)).to_pylist()
    assert [(r["object"], r["metric"], r["severity"]) for r in got] == [
        ("interface:192.0.2.1/3", "in_utilisation", "minor")
    ]
    assert got[0]["observed"] == pytest.approx(0.8)
    s_out = bucket_traffic(f, "output_if", "5min")
    assert (
        interface_utilisation(s_out, speeds, bucket_us=FIVE, evaluate=(t, t + FIVE)).num_rows == 0
    )
    later = interface_utilisation(s_in, speeds, bucket_us=FIVE, evaluate=(t + FIVE, t + 2 * FIVE))
    assert later.num_rows == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["203.0.113.1", "203.0.113.2"]), st.integers(1, 400),
                  st.sampled_from([0x02, 0x12, 0x10, 0x1B, 0x06]), st.sampled_from([6, 17])),
        min_size=1, max_size=300,
    )
)  # fmt: skip
def test_scan_counts_match_twin(recs: list[tuple[str, int, int, int]]) -> None:
    rows = [{"src": s, "dst": "198.51.100.1", "dst_port": port, "tcp_flags": flags,
             "protocol": proto, "start": T0_US} for s, port, flags, proto in recs]  # fmt: skip
    got = scan_detections(flows(rows), window=(T0_US, T0_US + FIVE), port_tiers=(10, 20, 50, 100),
                          syn_tiers=(5, 10, 20, 40)).to_pylist()  # fmt: skip
    want = {}
    for src in {r[0] for r in recs}:
        ports = len({p for s, p, _f, _pr in recs if s == src})
        syn = sum(1 for s, _p, f, pr in recs if s == src and pr == 6 and f & 0x12 == 0x02)
        for kind, v, tiers in (("port_scan", ports, (10, 20, 50, 100)),
                               ("syn_flood", syn, (5, 10, 20, 40))):  # fmt: skip
            level = sum(v >= t for t in tiers)
            if level:
                want[(f"source:{src}", kind)] = (float(v), ("warning", "minor", "major",
                                                             "critical")[level - 1])  # fmt: skip
    assert {(r["object"], r["kind"]): (r["observed"], r["severity"]) for r in got} == want
    outside = scan_detections(flows(rows), window=(T0_US + FIVE, T0_US + 2 * FIVE),
                              port_tiers=(1, 2, 3, 4), syn_tiers=(1, 2, 3, 4))  # fmt: skip
    assert outside.num_rows == 0


def test_object_names() -> None:
    f = flows([{"src": "2001:db8::1", "dst": "10.0.0.2", "input_if": 7, "exporter": None}])
    assert object_names(f, "source").to_pylist() == ["source:2001:db8::1"]
    assert object_names(f, "interface_in").to_pylist() == ["interface:::/7"]
    s = pa.table({"subscription_id": pa.array([42], pa.int64())})
    assert object_names(s, "subscription").to_pylist() == ["subscription:42"]
    with pytest.raises(RatingError, match="unknown object kind"):
        object_names(s, "planet")

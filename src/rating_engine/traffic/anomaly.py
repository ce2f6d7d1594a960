"""Detections over traffic series: a seasonal robust baseline and four rule families.

Every function is pure (Arrow tables in, a :data:`DETECTION_SCHEMA` table out). Series
come from :func:`rating_engine.traffic.aggregate.bucket_traffic` (key column(s), ``bucket_start``,
``bytes``, ``packets``, ``flows``); times are int64 microseconds since the epoch (UTC).

**Seasonal baseline** (:func:`hour_of_week_baseline`, :func:`seasonal_detections`). For a
bucket starting at ``t`` its slot is the hour of week ``h = (t // 1 h + 72) mod 168``
(0 = Monday 00:00 UTC). The baseline samples of a series for slot ``h`` are *all*
epoch-aligned buckets of that slot in the history window ``[history_start, eval_start)``
from the series' first bucket seen in that window on; buckets without a row count as 0
(a series is sparse: no flows means no row). Then::

    median = median(samples)
    MAD    = median(|samples - median|)
    MAD'   = max(MAD, mad_floor_abs, mad_floor_rel * |median|)   # a flat series has MAD 0
    z      = 0.6745 * (x - median) / MAD'                        # Iglewicz-Hoaglin robust z

A slot needs samples from at least ``min_weeks`` distinct weeks, else the series is not
judged (minimum history). ``|z| >= warning / minor / major / critical`` (default 3.5, 5,
8, 12) gives that severity; ``z > 0`` is ``traffic_high`` (direction ``above``), ``z < 0``
``traffic_low`` (``below``). The detection's ``threshold`` is the value of ``x`` at which
the severity given was reached: ``median ± level * MAD' / 0.6745``.

**Rules.** Exporter silence (:func:`exporter_silence`), sequence-loss rate
(:func:`sequence_loss`), interface utilisation (:func:`interface_utilisation`) and the
SYN-flood / port-scan heuristic (:func:`scan_detections`); each documents its measure.
Severity tiers are ``(warning, minor, major, critical)`` lower bounds on the measure
(``math.inf`` disables a level).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from collectors.addresses import address_from_bytes
from collectors.schemas import TIMESTAMP
from rating_engine.errors import RatingError
from rating_engine.traffic.aggregate import bucket_traffic, distinct_peers

__all__ = [
    "DETECTION_KINDS",
    "DETECTION_SCHEMA",
    "INTERFACE_SPEED_SCHEMA",
    "SEQUENCE_STATS_SCHEMA",
    "SEVERITIES",
    "BaselineParams",
    "Tiers",
    "concat_detections",
    "empty_detections",
    "exporter_silence",
    "hour_of_week",
    "hour_of_week_baseline",
    "interface_utilisation",
    "object_names",
    "scan_detections",
    "seasonal_detections",
    "sequence_loss",
]

HOUR_US = 3_600_000_000
WEEK_US = 168 * HOUR_US
_MINUTE_US = 60_000_000
# 1970-01-01 was a Thursday: +72 h makes slot 0 Monday 00:00 UTC (as in aggregate.py).
_HOW_SHIFT = 72
_Z_SCALE = 0.6745

#: Suggested severities, ascending.
SEVERITIES = ("warning", "minor", "major", "critical")

#: What a detection is about (also the key of the alarm mapping in ``bss.assurance.alarms``).
DETECTION_KINDS = (
    "traffic_high",
    "traffic_low",
    "exporter_silent",
    "sequence_loss",
    "interface_utilisation",
    "syn_flood",
    "port_scan",
)


def _f(name: str, type_: pa.DataType, nullable: bool, doc: str) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


DETECTION_SCHEMA = pa.schema(
    [
        _f(
            "object",
            pa.string(),
            False,
            "what is affected: exporter:<addr>, subscription:<id>, interface:<addr>/<ifIndex>, "
            "source:<addr>",
        ),
        _f("kind", pa.string(), False, "one of " + ", ".join(DETECTION_KINDS)),
        _f(
            "metric",
            pa.string(),
            False,
            "what was measured (bytes, silent_minutes, loss_rate, in_utilisation, ...)",
        ),
        _f("observed", pa.float64(), False, "the measured value in the window"),
        _f("threshold", pa.float64(), False, "the value at which the suggested severity starts"),
        _f("baseline", pa.float64(), True, "expected value (hour-of-week median); null for rules"),
        _f("direction", pa.string(), False, "above or below: which side of threshold it is"),
        _f("window_start", TIMESTAMP, False, "start of the judged window, UTC"),
        _f("window_end", TIMESTAMP, False, "end of the judged window (exclusive), UTC"),
        _f("severity", pa.string(), False, "suggested severity: warning, minor, major, critical"),
        _f("detail", pa.string(), False, "one line for people"),
    ]
)

#: Sequence accounting per exporter and interval: expected vs received export units.
SEQUENCE_STATS_SCHEMA = pa.schema(
    [
        _f("exporter", pa.string(), False, "exporter address as text"),
        _f("interval_start", TIMESTAMP, False, "start of the counting interval, UTC"),
        _f("interval_end", TIMESTAMP, False, "end of the counting interval, UTC"),
        _f("expected", pa.int64(), False, "units the sequence numbers say were sent"),
        _f("received", pa.int64(), False, "units received"),
    ]
)

#: Interface speeds for the utilisation rule.
INTERFACE_SPEED_SCHEMA = pa.schema(
    [
        _f("exporter", pa.string(), False, "exporter address as text"),
        _f("if_index", pa.uint32(), False, "SNMP ifIndex"),
        _f("speed_bps", pa.uint64(), False, "interface speed in bits per second"),
    ]
)

#: Lower bounds (warning, minor, major, critical) of a measure.
Tiers = tuple[float, float, float, float]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BaselineParams:
    """Thresholds on |robust z| and the MAD floor of the seasonal baseline (see module doc)."""

    tiers: Tiers = (3.5, 5.0, 8.0, 12.0)
    mad_floor_abs: float = 1000.0
    mad_floor_rel: float = 0.05
    min_weeks: int = 2
    directions: tuple[str, ...] = ("above", "below")


def hour_of_week(t_us: I64) -> I64:
    """Slot 0..167 of each time (0 = Monday 00:00-01:00 UTC)."""
    return np.asarray((t_us // HOUR_US + _HOW_SHIFT) % 168, dtype=np.int64)


def empty_detections() -> pa.Table:
    """A zero-row detection table."""
    return DETECTION_SCHEMA.empty_table()


def concat_detections(tables: Sequence[pa.Table]) -> pa.Table:
    """Detection tables stacked, sorted by object, kind, metric and window."""
    parts = [t for t in tables if t.num_rows]
    if not parts:
        return empty_detections()
    out = pa.concat_tables(parts)
    keys = [(c, "ascending") for c in ("object", "kind", "metric", "window_start")]
    return out.take(pc.sort_indices(out, sort_keys=keys))


def _table(
    objects: Sequence[str],
    kind: str | Sequence[str],
    metric: str | Sequence[str],
    observed: Sequence[float] | F64,
    threshold: Sequence[float] | F64,
    baseline: Sequence[float | None] | F64 | None,
    direction: str | Sequence[str],
    window_start: Sequence[int] | I64,
    window_end: Sequence[int] | I64,
    severity: Sequence[str],
    detail: Sequence[str],
) -> pa.Table:
    n = len(objects)

    def col(v: str | Sequence[str]) -> list[str]:
        return [v] * n if isinstance(v, str) else list(v)

    base = pa.nulls(n, pa.float64()) if baseline is None else pa.array(baseline, pa.float64())
    return pa.table(
        [
            pa.array(list(objects), pa.string()),
            pa.array(col(kind), pa.string()),
            pa.array(col(metric), pa.string()),
            pa.array(observed, pa.float64()),
            pa.array(threshold, pa.float64()),
            base,
            pa.array(col(direction), pa.string()),
            pa.array(window_start, pa.int64()).cast(TIMESTAMP),
            pa.array(window_end, pa.int64()).cast(TIMESTAMP),
            pa.array(list(severity), pa.string()),
            pa.array(list(detail), pa.string()),
        ],
        schema=DETECTION_SCHEMA,
    )


def _grade(values: F64, tiers: Tiers) -> tuple[I64, F64]:
    """Severity index (-1 none, 0 warning .. 3 critical) and the bound reached, per value."""
    _check_tiers(tiers)
    level = np.full(values.shape[0], -1, dtype=np.int64)
    bound = np.full(values.shape[0], np.nan)
    for i, lim in enumerate(tiers):
        hit = values >= lim
        level[hit] = i
        bound[hit] = lim
    return level, bound


def _addr_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Address column -> text, converting each distinct value once."""
    enc = pc.dictionary_encode(pc.fill_null(column, pa.scalar(b"\x00" * 16, pa.binary(16))))
    arr = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
    words = [str(address_from_bytes(v)) for v in arr.dictionary.to_pylist()]
    return pa.array(words, pa.string()).take(arr.indices)


def object_names(table: pa.Table, kind: str) -> pa.Array:
    """Alarmed-object names for the key columns of a kernel result.

    ``kind``: ``subscription`` (``subscription_id``), ``exporter``, ``source``
    (``src_addr``), ``interface_in`` / ``interface_out`` (``exporter`` + ``input_if`` /
    ``output_if`` -> ``interface:<exporter>/<ifIndex>``).
    """
    if kind == "subscription":
        ids = pc.cast(table.column("subscription_id"), pa.string())
        return pc.binary_join_element_wise("subscription:", ids, "").combine_chunks()
    if kind in ("exporter", "source"):
        text = _addr_text(table.column("exporter" if kind == "exporter" else "src_addr"))
        return pc.binary_join_element_wise(f"{kind}:", text, "")
    if kind in ("interface_in", "interface_out"):
        ifc = table.column("input_if" if kind == "interface_in" else "output_if")
        exp = _addr_text(table.column("exporter"))
        return pc.binary_join_element_wise(
            "interface:", exp, "/", pc.cast(ifc, pa.string()).combine_chunks(), ""
        )
    raise RatingError(f"object_names: unknown object kind {kind!r}")


def _times(table: pa.Table, name: str) -> I64:
    return np.asarray(pc.cast(table.column(name), pa.int64()).to_numpy(), dtype=np.int64)


def _encode(objects: pa.Array) -> tuple[I64, list[str]]:
    enc = pc.dictionary_encode(objects)
    arr = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
    return arr.indices.to_numpy().astype(np.int64), arr.dictionary.to_pylist()


@dataclass(frozen=True)
class _SlotBaseline:
    median: F64
    mad: F64
    samples: I64
    weeks: I64


def _slot_baseline(
    codes: I64, t: I64, v: F64, nseries: int, first_seen: I64, grid: I64, slot: int
) -> _SlotBaseline:
    """Median/MAD per series over the history buckets ``grid`` of one hour-of-week slot."""
    times = grid[hour_of_week(grid) == slot]
    m = times.shape[0]
    mat = np.zeros((nseries, m))
    mat[times[None, :] < first_seen[:, None]] = np.nan
    rows = np.flatnonzero(np.isin(t, times))
    mat[codes[rows], np.searchsorted(times, t[rows])] = v[rows]
    samples = np.sum(~np.isnan(mat), axis=1).astype(np.int64)
    week = (times // HOUR_US + _HOW_SHIFT) // 168
    j0 = np.searchsorted(times, first_seen)
    weeks = np.zeros(nseries, dtype=np.int64)
    if m:
        # every week between the first valid bucket and the last holds the slot
        has = j0 < m
        weeks[has] = week[-1] - week[j0[has]] + 1
    median = np.full(nseries, np.nan)
    mad = np.full(nseries, np.nan)
    ok = samples > 0
    if ok.any():
        sub = mat[ok]
        med = np.nanmedian(sub, axis=1)
        median[ok] = med
        mad[ok] = np.nanmedian(np.abs(sub - med[:, None]), axis=1)
    return _SlotBaseline(median, mad, samples, weeks)


@dataclass(frozen=True)
class _Prepared:
    names: list[str]
    codes: I64  # every row of the series
    t: I64
    v: F64
    hist: npt.NDArray[np.bool_]  # rows in the history window
    first_seen: I64  # per series, first bucket in history (int64 max: never)
    grid: I64  # every aligned bucket start of the history window


def _prepare(
    series: pa.Table, objects: pa.Array, metric: str, bucket_us: int, history: tuple[int, int]
) -> _Prepared:
    if bucket_us <= 0 or HOUR_US % bucket_us:
        raise RatingError(f"seasonal baseline: bucket of {bucket_us} us does not divide an hour")
    if metric not in series.schema.names:
        raise RatingError(f"seasonal baseline: series has no field {metric}")
    codes, names = _encode(objects)
    t = _times(series, "bucket_start")
    v = np.asarray(series.column(metric).to_numpy(), dtype=np.float64)
    if np.any(t % bucket_us):
        raise RatingError(f"seasonal baseline: field bucket_start not aligned to {bucket_us} us")
    h0, h1 = history
    hist = (t >= h0) & (t < h1)
    first_seen = np.full(len(names), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, codes[hist], t[hist])
    grid = np.arange(-(-h0 // bucket_us) * bucket_us, h1, bucket_us, dtype=np.int64)
    return _Prepared(names, codes, t, v, hist, first_seen, grid)


def _baseline_of(pr: _Prepared, slot: int) -> _SlotBaseline:
    h = pr.hist
    return _slot_baseline(
        pr.codes[h], pr.t[h], pr.v[h], len(pr.names), pr.first_seen, pr.grid, slot
    )


def hour_of_week_baseline(
    series: pa.Table,
    objects: pa.Array,
    metric: str,
    *,
    bucket_us: int,
    history: tuple[int, int],
    slots: Sequence[int],
) -> pa.Table:
    """Baseline of every series for each slot: ``object``, ``hour_of_week``, ``median``,
    ``mad``, ``samples``, ``weeks`` (series never seen in ``history`` are left out)."""
    pr = _prepare(series, objects, metric, bucket_us, history)
    names = pr.names
    seen = np.flatnonzero(pr.first_seen < np.iinfo(np.int64).max)
    out: dict[str, list[object]] = {
        k: [] for k in ("object", "hour_of_week", "median", "mad", "samples", "weeks")
    }
    for slot in sorted(set(slots)):
        b = _baseline_of(pr, slot)
        for i in seen:
            if b.samples[i] == 0:
                continue
            out["object"].append(names[i])
            out["hour_of_week"].append(slot)
            out["median"].append(float(b.median[i]))
            out["mad"].append(float(b.mad[i]))
            out["samples"].append(int(b.samples[i]))
            out["weeks"].append(int(b.weeks[i]))
    return pa.table(
        {
            "object": pa.array(out["object"], pa.string()),
            "hour_of_week": pa.array(out["hour_of_week"], pa.int16()),
            "median": pa.array(out["median"], pa.float64()),
            "mad": pa.array(out["mad"], pa.float64()),
            "samples": pa.array(out["samples"], pa.int64()),
            "weeks": pa.array(out["weeks"], pa.int64()),
        }
    )


def seasonal_detections(
    series: pa.Table,
    objects: pa.Array,
    metric: str = "bytes",
    *,
    bucket_us: int,
    evaluate: tuple[int, int],
    history_start: int,
    params: BaselineParams | None = None,
) -> pa.Table:
    """Judge every complete bucket in ``evaluate`` against the hour-of-week baseline from
    ``[history_start, evaluate[0])``; ``objects`` names each row of ``series``.

    A series with a baseline but no row in an evaluated bucket is judged at 0.
    """
    p = params or BaselineParams()
    e0, e1 = evaluate
    pr = _prepare(series, objects, metric, bucket_us, (history_start, e0))
    names = pr.names
    judged_rows = np.flatnonzero((pr.t >= e0) & (pr.t < e1))
    ev_codes, ev_t, ev_v = pr.codes[judged_rows], pr.t[judged_rows], pr.v[judged_rows]
    parts: list[pa.Table] = []
    cache: dict[int, _SlotBaseline] = {}
    # complete buckets only: a bucket cut by the window's end would look like a drop
    for start in range(-(-e0 // bucket_us) * bucket_us, e1 - bucket_us + 1, bucket_us):
        slot = int(hour_of_week(np.array([start]))[0])
        if slot not in cache:
            cache[slot] = _baseline_of(pr, slot)
        b = cache[slot]
        x = np.zeros(len(names))
        at = ev_t == start
        x[ev_codes[at]] = ev_v[at]
        judged = np.flatnonzero(b.weeks >= p.min_weeks)
        if judged.size == 0:
            continue
        med, mad = b.median[judged], b.mad[judged]
        floor = np.maximum(mad, np.maximum(p.mad_floor_abs, p.mad_floor_rel * np.abs(med)))
        z = _Z_SCALE * (x[judged] - med) / floor
        level, bound = _grade(np.abs(z), p.tiers)
        up = z > 0
        allowed = np.where(up, "above" in p.directions, "below" in p.directions)
        hit = np.flatnonzero((level >= 0) & allowed)
        if hit.size == 0:
            continue
        sign = np.where(up[hit], 1.0, -1.0)
        thr = med[hit] + sign * bound[hit] * floor[hit] / _Z_SCALE
        objs = [names[judged[i]] for i in hit]
        obs = x[judged][hit]
        parts.append(
            _table(
                objs,
                ["traffic_high" if u else "traffic_low" for u in up[hit]],
                metric,
                obs,
                thr,
                med[hit],
                ["above" if u else "below" for u in up[hit]],
                np.full(hit.size, start),
                np.full(hit.size, start + bucket_us),
                [SEVERITIES[k] for k in level[hit]],
                [
                    f"{metric} {o:.0f} vs hour-of-week median {m:.0f} "
                    f"(MAD {d:.0f}, robust z {zz:+.1f})"
                    for o, m, d, zz in zip(obs, med[hit], mad[hit], z[hit], strict=True)
                ],
            )
        )
    return concat_detections(parts)


def exporter_silence(
    series: pa.Table,
    *,
    bucket_us: int,
    window_end: int,
    history_start: int,
    silence_minutes: float = 10.0,
    critical_minutes: float = 60.0,
    min_active_buckets: int = 12,
) -> pa.Table:
    """Exporters with no flows for ``silence_minutes`` up to ``window_end`` that had a baseline.

    ``series``: ``bucket_traffic(flows, "exporter", bucket)``. Last activity = end of the
    exporter's last bucket with flows before ``window_end``; baseline = at least
    ``min_active_buckets`` buckets with flows in ``[history_start, window_end - silence)``.
    Observed = minutes silent; major from ``silence_minutes``, critical from
    ``critical_minutes``.
    """
    silence_us = int(silence_minutes * _MINUTE_US)
    if series.num_rows == 0:
        return empty_detections()
    codes, names = _encode(object_names(series, "exporter"))
    t = _times(series, "bucket_start")
    flows = np.asarray(series.column("flows").to_numpy(), dtype=np.int64)
    live = (flows > 0) & (t >= history_start) & (t < window_end)
    last = np.full(len(names), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, codes[live], t[live] + bucket_us)
    base = live & (t < window_end - silence_us)
    active = np.bincount(codes[base], minlength=len(names))
    silent_us = window_end - np.minimum(last, window_end)
    hit = np.flatnonzero((active >= min_active_buckets) & (silent_us >= silence_us))
    minutes = silent_us[hit] / _MINUTE_US
    critical = minutes >= critical_minutes
    return _table(
        [names[i] for i in hit],
        "exporter_silent",
        "silent_minutes",
        minutes,
        np.where(critical, critical_minutes, silence_minutes),
        None,
        "above",
        np.maximum(last[hit], history_start),
        np.full(hit.size, window_end),
        ["critical" if c else "major" for c in critical],
        [f"no flows for {m:.0f} min (active in {active[i]} buckets before)"
         for m, i in zip(minutes, hit, strict=True)],
    )  # fmt: skip


def sequence_loss(
    stats: pa.Table,
    *,
    window: tuple[int, int],
    tiers: Tiers = (0.01, 0.02, 0.05, 0.2),
    min_expected: int = 100,
) -> pa.Table:
    """Loss rate ``(expected - received) / expected`` per exporter over the intervals that
    start in ``window`` (``SEQUENCE_STATS_SCHEMA``); judged from ``min_expected`` units."""
    start = _times(stats, "interval_start")
    sel = (start >= window[0]) & (start < window[1])
    if not sel.any():
        return empty_detections()
    part = stats.filter(pa.array(sel))
    grouped = part.group_by("exporter").aggregate([("expected", "sum"), ("received", "sum")])
    expected = np.asarray(grouped.column("expected_sum").to_numpy(), dtype=np.float64)
    received = np.asarray(grouped.column("received_sum").to_numpy(), dtype=np.float64)
    ok = expected >= min_expected
    rate = np.where(ok, (expected - received) / np.maximum(expected, 1.0), 0.0)
    level, bound = _grade(rate, tiers)
    hit = np.flatnonzero(ok & (level >= 0))
    exporters = grouped.column("exporter").to_pylist()
    return _table(
        [f"exporter:{exporters[i]}" for i in hit],
        "sequence_loss",
        "loss_rate",
        rate[hit],
        bound[hit],
        None,
        "above",
        np.full(hit.size, window[0]),
        np.full(hit.size, window[1]),
        [SEVERITIES[k] for k in level[hit]],
        [f"{expected[i] - received[i]:.0f} of {expected[i]:.0f} export units missing"
         for i in hit],
    )  # fmt: skip


def interface_utilisation(
    series: pa.Table,
    speeds: pa.Table,
    *,
    bucket_us: int,
    evaluate: tuple[int, int],
    tiers: Tiers = (0.7, 0.8, 0.9, 0.98),
) -> pa.Table:
    """Utilisation ``bytes * 8 / (bucket seconds * speed_bps)`` per interface and bucket.

    ``series``: ``bucket_traffic(flows, "input_if" or "output_if", bucket)`` (renormalised
    by sampling). A flow's bytes count in the bucket it starts in, so long flows can push
    a bucket above 1. Interfaces missing from ``speeds`` (``INTERFACE_SPEED_SCHEMA``) are
    not judged.
    """
    side = "interface_in" if "input_if" in series.schema.names else "interface_out"
    metric = "in_utilisation" if side == "interface_in" else "out_utilisation"
    t = _times(series, "bucket_start")
    sel = (t >= evaluate[0]) & (t < evaluate[1])
    if not sel.any() or speeds.num_rows == 0:
        return empty_detections()
    part = series.filter(pa.array(sel))
    objs = object_names(part, side).to_pylist()
    speed_of = {
        f"interface:{e}/{i}": float(s)
        for e, i, s in zip(
            speeds.column("exporter").to_pylist(),
            speeds.column("if_index").to_pylist(),
            speeds.column("speed_bps").to_pylist(),
            strict=True,
        )
        if s
    }
    speed = np.array([speed_of.get(o, np.nan) for o in objs])
    nbytes = np.asarray(part.column("bytes").to_numpy(), dtype=np.float64)
    util = np.nan_to_num(nbytes * 8.0 / (bucket_us / 1e6 * speed), nan=0.0)
    level, bound = _grade(util, tiers)
    hit = np.flatnonzero(level >= 0)
    ts = t[sel][hit]
    return _table(
        [objs[i] for i in hit],
        "interface_utilisation",
        metric,
        util[hit],
        bound[hit],
        None,
        "above",
        ts,
        ts + bucket_us,
        [SEVERITIES[k] for k in level[hit]],
        [f"{util[i]:.0%} of {speed[i] / 1e6:.0f} Mbit/s" for i in hit],
    )


def scan_detections(
    flows: pa.Table,
    *,
    window: tuple[int, int],
    port_tiers: Tiers = (100, 250, 1000, 5000),
    syn_tiers: Tiers = (500, 1000, 5000, 20000),
) -> pa.Table:
    """Per source address over ``window`` (flows starting in it):

    - ``port_scan``: distinct destination ports (any destination host; exact count);
    - ``syn_flood``: TCP flows whose flags have SYN but not ACK (``flags & 0x12 == 0x02``),
      i.e. connection attempts never answered, counted as flows (not renormalised).
    """
    if flows.num_rows == 0:
        return empty_detections()
    parts: list[pa.Table] = []
    ports = distinct_peers(flows, "src_addr", "dst_port", window)
    if ports.num_rows:
        parts.append(_per_source(ports, "peers", "port_scan", "distinct_dst_ports", port_tiers,
                                 window, "distinct destination ports"))  # fmt: skip
    tcp = pc.equal(flows.column("protocol"), 6)
    syn_only = pc.equal(pc.bit_wise_and(flows.column("tcp_flags"), pa.scalar(0x12, pa.uint16())), 2)
    syn = flows.filter(pc.and_(tcp, syn_only))
    if syn.num_rows:
        counts = bucket_traffic(syn, "src_addr", None, window=window, renormalise=False)
        parts.append(_per_source(counts, "flows", "syn_flood", "syn_only_flows", syn_tiers,
                                 window, "SYN-only TCP flows"))  # fmt: skip
    return concat_detections(parts)


def _per_source(
    table: pa.Table, column: str, kind: str, metric: str, tiers: Tiers,
    window: tuple[int, int], what: str,
) -> pa.Table:  # fmt: skip
    values = np.asarray(table.column(column).to_numpy(), dtype=np.float64)
    level, bound = _grade(values, tiers)
    hit = np.flatnonzero(level >= 0)
    if hit.size == 0:
        return empty_detections()
    objs = object_names(table.take(pa.array(hit)), "source").to_pylist()
    return _table(
        objs, kind, metric, values[hit], bound[hit], None, "above",
        np.full(hit.size, window[0]), np.full(hit.size, window[1]),
        [SEVERITIES[k] for k in level[hit]], [f"{values[i]:.0f} {what}" for i in hit],
    )  # fmt: skip


def _check_tiers(tiers: Tiers) -> None:
    if any(math.isnan(x) for x in tiers) or any(b < a for a, b in itertools.pairwise(tiers)):
        raise RatingError(f"severity tiers {tiers} must be ascending")

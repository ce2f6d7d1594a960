"""Rule detections over traffic: exporter silence, sequence loss, interface utilisation, scans.

Every function is pure (Arrow tables in, a
:data:`~rating_engine.traffic.detections.DETECTION_SCHEMA` table out) and documents its
measure. Series come from :func:`rating_engine.traffic.aggregate.bucket_traffic`; times are
int64 microseconds since the epoch (UTC). Severity tiers are ``(warning, minor, major,
critical)`` lower bounds on the measure (``math.inf`` disables a level). The seasonal
(hour-of-week) detections are in :mod:`rating_engine.traffic.seasonal`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collectors.schemas import TIMESTAMP
from rating_engine.traffic.aggregate import bucket_traffic, distinct_peers
from rating_engine.traffic.detections import (
    SEVERITIES,
    Tiers,
    concat_detections,
    detection_table,
    empty_detections,
    encode_objects,
    grade,
    object_names,
    times_us,
)

__all__ = [
    "INTERFACE_SPEED_SCHEMA",
    "SEQUENCE_STATS_SCHEMA",
    "exporter_silence",
    "interface_utilisation",
    "scan_detections",
    "sequence_loss",
]

_MINUTE_US = 60_000_000


def _f(name: str, type_: pa.DataType, nullable: bool, doc: str) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


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
    codes, names = encode_objects(object_names(series, "exporter"))
    t = times_us(series, "bucket_start")
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
    return detection_table(
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
    start = times_us(stats, "interval_start")
    sel = (start >= window[0]) & (start < window[1])
    if not sel.any():
        return empty_detections()
    part = stats.filter(pa.array(sel))
    grouped = part.group_by("exporter").aggregate([("expected", "sum"), ("received", "sum")])
    expected = np.asarray(grouped.column("expected_sum").to_numpy(), dtype=np.float64)
    received = np.asarray(grouped.column("received_sum").to_numpy(), dtype=np.float64)
    ok = expected >= min_expected
    rate = np.where(ok, (expected - received) / np.maximum(expected, 1.0), 0.0)
    level, bound = grade(rate, tiers)
    hit = np.flatnonzero(ok & (level >= 0))
    exporters = grouped.column("exporter").to_pylist()
    return detection_table(
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
    t = times_us(series, "bucket_start")
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
    level, bound = grade(util, tiers)
    hit = np.flatnonzero(level >= 0)
    ts = t[sel][hit]
    return detection_table(
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
    level, bound = grade(values, tiers)
    hit = np.flatnonzero(level >= 0)
    if hit.size == 0:
        return empty_detections()
    objs = object_names(table.take(pa.array(hit)), "source").to_pylist()
    return detection_table(
        objs, kind, metric, values[hit], bound[hit], None, "above",
        np.full(hit.size, window[0]), np.full(hit.size, window[1]),
        [SEVERITIES[k] for k in level[hit]], [f"{values[i]:.0f} {what}" for i in hit],
    )  # fmt: skip

"""One assurance run: flows -> traffic series -> detections -> alarms -> tickets.

:func:`run_assurance` reads the workspace's flows for ``[window_end - lookback,
window_end)`` by day partition (:func:`collectors.dataset.read_dataset`), aggregates
chunks of a few million flows into partial series with the group-by kernels and combines
them (memory holds series, not weeks of flows), then judges the last ``policy.window``
against the history:

- hour-of-week baseline on ``policy.metric`` per subscription and per exporter;
- exporter silence; interface utilisation (when ``policy.interface_speeds`` is given);
  SYN-flood / port-scan over the judged window; sequence-loss rate from the collector
  stats dataset (``W/collector_stats``: per exporter, received = ``datagrams``, expected
  = received + ``sequence_missing`` - exact for NetFlow v9 and sFlow, whose sequence
  numbers count datagrams, an approximation for v5 and IPFIX).

Flows without an exporter (pcap metering) count for subscriptions but not for exporter
rules. The detections go through :func:`bss.assurance.alarms.apply_detections` and
:func:`bss.assurance.tickets.sync_tickets` in one transaction. ``served`` (which subscriptions'
traffic went through each exporter and interface, for the tickets' affected customers)
is taken from the last day of flows read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bss.assurance.alarms import AlarmPolicy, AlarmSyncSummary, apply_detections
from bss.assurance.tickets import TicketPolicy, TicketSyncSummary, sync_tickets
from bss.db import transaction
from bss.errors import ValidationError
from collectors.dataset import read_dataset
from collectors.schemas import FLOW_SCHEMA, TIMESTAMP
from collectors.udp.stats import STATS_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.traffic.aggregate import bucket_traffic, combine_traffic
from rating_engine.traffic.anomaly import (
    SEQUENCE_STATS_SCHEMA,
    exporter_silence,
    interface_utilisation,
    scan_detections,
    sequence_loss,
)
from rating_engine.traffic.attribution import PrefixIndex, build_prefix_index, flow_entries
from rating_engine.traffic.detections import Tiers, concat_detections, object_names
from rating_engine.traffic.groupby_kernel import bucket_width_us
from rating_engine.traffic.seasonal import BaselineParams, seasonal_detections

__all__ = ["AssurancePolicy", "AssuranceSummary", "run_assurance", "served_objects"]

log = logging.getLogger(__name__)
_DAY_US = 86_400_000_000
_CHUNK_ROWS = 4_000_000


@dataclass(frozen=True)
class AssurancePolicy:
    """What a run judges and how; the measures are in :mod:`rating_engine.traffic.seasonal`
    and :mod:`rating_engine.traffic.anomaly`."""

    bucket: str = "5min"
    window: timedelta = timedelta(minutes=5)
    metric: str = "bytes"
    baseline: BaselineParams = field(default_factory=BaselineParams)
    seasonal_objects: tuple[str, ...] = ("subscription", "exporter")
    silence_minutes: float = 10.0
    silence_critical_minutes: float = 60.0
    min_active_buckets: int = 12
    interface_speeds: pa.Table | None = None  # INTERFACE_SPEED_SCHEMA
    scans: bool = True
    port_tiers: Tiers = (100, 250, 1000, 5000)
    syn_tiers: Tiers = (500, 1000, 5000, 20000)
    sequence_tiers: Tiers = (0.01, 0.02, 0.05, 0.2)
    alarms: AlarmPolicy = field(default_factory=AlarmPolicy)
    tickets: TicketPolicy = field(default_factory=TicketPolicy)

    def __post_init__(self) -> None:
        for name in ("silence_minutes", "silence_critical_minutes"):
            value = getattr(self, name)
            if not 0 < value < 1e9:  # nan and inf too: they cannot become microseconds
                raise ValidationError(f"assurance: {name} must be a positive number of "
                                      f"minutes, not {value}")  # fmt: skip


@dataclass(frozen=True)
class AssuranceSummary:
    window_start: datetime
    window_end: datetime
    flows_read: int
    detections: dict[str, int]  # per kind
    alarms: AlarmSyncSummary
    tickets: TicketSyncSummary


def _us(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValidationError(f"assurance: time {when.isoformat()} has no time zone; use UTC")
    return int(pa.scalar(when, TIMESTAMP).cast(pa.int64()).as_py())


def _ip_index(conn: duckdb.DuckDBPyConnection, until: datetime) -> PrefixIndex | None:
    """Every IP binding of every product (tariff or not): assurance needs no price."""
    # fetchall, not conn.sql(): a relation refuses to run while an earlier execute()
    # result on this connection is unfinished, and the rows are few
    rows = conn.execute(
        "SELECT s.product_id, p.account_id, s.key_type, s.key, s.active_from, s.active_to "
        "FROM service_identifier s JOIN product p ON p.id = s.product_id "
        "WHERE s.key_type = 'ip' AND s.active_from < ? ORDER BY 1, 4, 5",
        [until],
    ).fetchall()
    names = ("subscription_id", "account_id", "key_type", "key", "active_from", "active_to")
    types = (pa.int64(), pa.int64(), pa.string(), pa.string(), TIMESTAMP, TIMESTAMP)
    table = pa.table(
        [pa.array([r[i] for r in rows], t) for i, t in enumerate(types)], names=list(names)
    )
    return build_prefix_index(table) if table.num_rows else None


def served_objects(flows: pa.Table, index: PrefixIndex) -> dict[str, set[int]]:
    """Exporter and interface objects -> subscriptions whose flows they carried.

    A flow counts for its primary subscription (the destination's, else the source's),
    as in the aggregations. Flows without an exporter are left out.
    """
    flows = flows.filter(pc.is_valid(flows.column("exporter")))
    if flows.num_rows == 0 or index.n_entries == 0:
        return {}
    es, ed = flow_entries(flows, index)
    entry = np.where(ed >= 0, ed, es)
    sub = np.where(entry >= 0, index.subscription_id[np.maximum(entry, 0)], -1)
    keep = np.flatnonzero(sub >= 0)
    out: dict[str, set[int]] = {}
    if keep.size == 0:
        return out
    part = flows.take(pa.array(keep))
    for kind in ("exporter", "interface_in", "interface_out"):
        names = object_names(part, kind)
        codes = pc.dictionary_encode(names)
        idx = np.asarray(codes.indices.to_numpy(), dtype=np.int64)
        dictionary = codes.dictionary.to_pylist()
        for code, s in np.unique(np.stack([idx, sub[keep]], axis=1), axis=0):
            out.setdefault(dictionary[int(code)], set()).add(int(s))
    return out


def _day_folders(workspace: WorkspacePaths, start_us: int, end_us: int) -> list[str]:
    first = start_us // _DAY_US
    last = (end_us - 1) // _DAY_US
    days = pa.array(np.arange(first, last + 1, dtype=np.int64) * _DAY_US).cast(TIMESTAMP)
    return [str(d) for d in pc.strftime(days, format="%Y-%m-%d").to_pylist()]


def _read_flows(
    workspace: WorkspacePaths, start_us: int, end_us: int, each: Callable[[pa.Table], None]
) -> int:
    """Call ``each`` with the range's flows, day partitions gathered into chunks of about
    ``_CHUNK_ROWS`` (few kernel calls on small data, bounded memory on big); returns rows."""
    col = pc.field("flow_start")
    lo, hi = pa.scalar(start_us, pa.int64()).cast(TIMESTAMP), pa.scalar(end_us).cast(TIMESTAMP)
    rows = 0
    pending: list[pa.Table] = []
    held = 0
    for day in _day_folders(workspace, start_us, end_us):
        folder = workspace.flows / f"date={day}"
        if not folder.exists():
            continue
        table = read_dataset(folder, FLOW_SCHEMA, filter=(col >= lo) & (col < hi))
        rows += table.num_rows
        pending.append(table)
        held += table.num_rows
        if held >= _CHUNK_ROWS:
            each(pa.concat_tables(pending).combine_chunks())
            pending, held = [], 0
    if held:
        each(pa.concat_tables(pending).combine_chunks())
    return rows


def _sequence_stats(workspace: WorkspacePaths, window: tuple[int, int]) -> pa.Table:
    """Per exporter and interval: received = datagrams, expected = received + missing."""
    lo, hi = (pa.scalar(w, pa.int64()).cast(TIMESTAMP) for w in window)
    col = pc.field("interval_start")
    stats = read_dataset(
        workspace.collector_stats,
        STATS_SCHEMA,
        filter=(col >= lo) & (col < hi) & pc.field("exporter").is_valid(),
    )
    wide = (
        stats.filter(pc.is_in(stats.column("metric"), pa.array(["datagrams", "sequence_missing"])))
        .group_by(["exporter", "interval_start", "interval_end", "metric"])
        .aggregate([("value", "sum")])
    )
    acc: dict[tuple[str, int, int], list[int]] = {}
    for r in wide.to_pylist():
        slot = acc.setdefault((r["exporter"], r["interval_start"], r["interval_end"]), [0, 0])
        slot[0 if r["metric"] == "datagrams" else 1] += r["value_sum"]
    keys = sorted(acc)
    return pa.table(
        [
            pa.array([k[0] for k in keys], pa.string()),
            pa.array([k[1] for k in keys], TIMESTAMP),
            pa.array([k[2] for k in keys], TIMESTAMP),
            pa.array([acc[k][0] + acc[k][1] for k in keys], pa.int64()),
            pa.array([acc[k][0] for k in keys], pa.int64()),
        ],
        schema=SEQUENCE_STATS_SCHEMA,
    )


def run_assurance(
    conn: duckdb.DuckDBPyConnection,
    workspace: WorkspacePaths,
    *,
    window_end: datetime,
    lookback: timedelta = timedelta(days=28),
    policy: AssurancePolicy | None = None,
) -> AssuranceSummary:
    """Detect over ``[window_end - policy.window, window_end)`` against ``lookback`` of
    history, sync alarms and tickets (atomically) and summarise. ``window_end`` is rounded
    down to the bucket (a partly elapsed bucket would look like a drop in traffic)."""
    p = policy or AssurancePolicy()
    width = bucket_width_us(p.bucket)
    # judged buckets must be complete: the window ends on a bucket boundary
    end = _us(window_end) // width * width
    window_end = pa.scalar(end, pa.int64()).cast(TIMESTAMP).as_py()
    eval_start = end - int(p.window.total_seconds() * 1_000_000)
    hist_start = end - int(lookback.total_seconds() * 1_000_000)
    if not hist_start < eval_start <= end - width:
        raise ValidationError(
            f"assurance: need lookback > window >= one bucket ({p.bucket}); got lookback "
            f"{lookback}, window {p.window}"
        )
    index = _ip_index(conn, window_end)
    parts: dict[str, list[pa.Table]] = {}
    recent: list[pa.Table] = []

    def add(name: str, table: pa.Table) -> None:
        parts.setdefault(name, []).append(table)

    def each(flows: pa.Table) -> None:
        if index is not None:
            add("subscription", bucket_traffic(flows, "subscription", width, index=index))
        with_exporter = flows.filter(pc.is_valid(flows.column("exporter")))
        add("exporter", bucket_traffic(with_exporter, "exporter", width))
        if p.interface_speeds is not None:
            add("interface_in", bucket_traffic(with_exporter, "input_if", width))
            add("interface_out", bucket_traffic(with_exporter, "output_if", width))
        t = pc.cast(flows.column("flow_start"), pa.int64())
        late = flows.filter(pc.greater_equal(t, min(eval_start, end - _DAY_US)))
        if late.num_rows:
            recent.append(late)

    rows = _read_flows(workspace, hist_start, end, each)
    series = {k: combine_traffic(v) for k, v in parts.items() if v}
    found: list[pa.Table] = []
    for kind in p.seasonal_objects:
        s = series.get(kind)
        if s is not None and s.num_rows:
            found.append(
                seasonal_detections(
                    s, object_names(s, kind), p.metric, bucket_us=width,
                    evaluate=(eval_start, end), history_start=hist_start, params=p.baseline,
                )
            )  # fmt: skip
    if "exporter" in series:
        found.append(
            exporter_silence(
                series["exporter"], bucket_us=width, window_end=end, history_start=hist_start,
                silence_minutes=p.silence_minutes, critical_minutes=p.silence_critical_minutes,
                min_active_buckets=p.min_active_buckets,
            )
        )  # fmt: skip
    if p.interface_speeds is not None:
        for kind in ("interface_in", "interface_out"):
            if kind in series:
                found.append(
                    interface_utilisation(series[kind], p.interface_speeds, bucket_us=width,
                                          evaluate=(eval_start, end))
                )  # fmt: skip
    recent_flows = pa.concat_tables(recent) if recent else FLOW_SCHEMA.empty_table()
    if p.scans:
        found.append(
            scan_detections(recent_flows, window=(eval_start, end), port_tiers=p.port_tiers,
                            syn_tiers=p.syn_tiers)
        )  # fmt: skip
    found.append(
        sequence_loss(_sequence_stats(workspace, (eval_start, end)), window=(eval_start, end),
                      tiers=p.sequence_tiers)
    )  # fmt: skip
    detections = concat_detections(found)
    served = served_objects(recent_flows, index) if index is not None else {}
    with transaction(conn):
        alarm_summary = apply_detections(conn, detections, at=window_end, policy=p.alarms)
        ticket_summary = sync_tickets(conn, at=window_end, policy=p.tickets, served=served)
    kinds: dict[str, int] = {}
    for k in detections.column("kind").to_pylist():
        kinds[k] = kinds.get(k, 0) + 1
    start_dt = pa.scalar(eval_start, pa.int64()).cast(TIMESTAMP).as_py()
    log.info("assurance %s: %d flows, detections %s", window_end.isoformat(), rows, kinds)
    return AssuranceSummary(start_dt, window_end, rows, kinds, alarm_summary, ticket_summary)

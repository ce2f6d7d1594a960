"""Collector statistics: counters per interval and per exporter, a log line, the stats
dataset, and the summary of a whole run (:class:`CollectorSummary`).

The stats dataset (``W/collector_stats/``) is long-format: one row per interval,
exporter and metric, so new metrics (``malformed:<reason>``, per-format counts)
need no schema change. ``exporter`` is null on the rows that total all exporters.
Metrics are the decoder's counts (``datagrams``, ``flows``, ``malformed:<reason>``,
``unknown_template``...), the collector's own (``received_bytes``, ``flow_bytes``,
``not_allowed``, ``quarantined``, ``socket_drops`` = datagrams the kernel dropped
because the receive buffer was full) and the loss accounting deltas of the interval
(``sequence_missing``, ``sequence_duplicated``, ``sequence_out_of_order``,
``sequence_resets``).
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from collectors.schemas import TIMESTAMP

__all__ = ["STATS_SCHEMA", "CollectorStats", "CollectorSummary"]

log = logging.getLogger(__name__)


def _f(name: str, type_: pa.DataType, nullable: bool, doc: str) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


STATS_SCHEMA = pa.schema(
    [
        _f("interval_start", TIMESTAMP, False, "start of the stats interval, UTC"),
        _f("interval_end", TIMESTAMP, False, "end of the stats interval, UTC"),
        _f("collector", pa.string(), False, "collector instance (start time and process id)"),
        _f("exporter", pa.string(), True, "exporter address; null on rows totalling all"),
        _f("metric", pa.string(), False, "what is counted (see collectors.udp.stats)"),
        _f("value", pa.int64(), False, "count during the interval"),
    ]
)

_SEQUENCE_KEYS = ("missing", "duplicated", "out_of_order", "resets")
_LOGGED = (
    "datagrams",
    "flows",
    "received_bytes",
    "flow_bytes",
    "rejected",
    "unknown_template",
    "not_allowed",
    "socket_drops",
)


def _exporter_text(hex16: str) -> str:
    """32 hex digits of a 16-byte address -> its text (IPv4-mapped shown as IPv4)."""
    try:
        ip = ipaddress.IPv6Address(bytes.fromhex(hex16))
    except ValueError:
        return hex16
    return str(ip.ipv4_mapped or ip)


class CollectorStats:
    """Interval and running totals; decides which rejections get logged."""

    def __init__(self, collector: str, start_us: int) -> None:
        self.collector = collector
        self.interval_start_us = start_us
        self.interval: Counter[str] = Counter()
        self.per_exporter: dict[str, Counter[str]] = {}
        self.totals: Counter[str] = Counter()
        self._sequence_seen: dict[str, Counter[str]] = {}
        self._logged: set[tuple[str, str]] = set()

    def add(self, counts: Mapping[str, int], exporter: str | None = None) -> None:
        """Add counts to the interval (and to one exporter's counts if given)."""
        for key, value in counts.items():
            if value:
                self.interval[key] += int(value)
                self.totals[key] += int(value)
                if exporter is not None:
                    self.per_exporter.setdefault(exporter, Counter())[key] += int(value)

    def add_exporter(self, exporter: str, counts: Mapping[str, int]) -> None:
        """Counts for one exporter only (the totals come through :meth:`add`)."""
        bucket = self.per_exporter.setdefault(exporter, Counter())
        for key, value in counts.items():
            if value:
                bucket[key] += int(value)

    def should_log(self, exporter: str, reason: str) -> bool:
        """True the first time ``reason`` is seen from ``exporter`` in this interval."""
        key = (exporter, reason)
        if key in self._logged:
            return False
        self._logged.add(key)
        return True

    def sequence_update(self, snapshot: Iterable[Mapping[str, object]]) -> None:
        """Turn the loss tracker's running counters into this interval's deltas.

        ``snapshot`` is :meth:`collectors.flows.sequence.SequenceTracker.snapshot` (one row per
        exporter, domain and format, the exporter as 32 hex digits); deltas are added to
        the totals and to each exporter's counts (``sequence_missing`` ...).
        """
        now: dict[str, Counter[str]] = {}
        for row in snapshot:
            exporter = _exporter_text(str(row.get("exporter", "")))
            bucket = now.setdefault(exporter, Counter())
            for key in _SEQUENCE_KEYS:
                value = row.get(key, 0)
                bucket[key] += value if isinstance(value, int) else 0
        for exporter, counts in now.items():
            seen = self._sequence_seen.setdefault(exporter, Counter())
            for key in _SEQUENCE_KEYS:
                delta = counts[key] - seen[key]
                if delta:
                    metric = f"sequence_{key}"
                    self.interval[metric] += delta
                    self.totals[metric] += delta
                    self.per_exporter.setdefault(exporter, Counter())[metric] += delta
            self._sequence_seen[exporter] = counts

    def log_line(self, seconds: float) -> str:
        """A one-line summary of the interval for the log."""
        parts = [f"{k}={self.interval.get(k, 0)}" for k in _LOGGED]
        rate = self.interval.get("flows", 0) / seconds if seconds > 0 else 0.0
        parts.append(f"flows/s={rate:.0f}")
        malformed = sorted((k, v) for k, v in self.interval.items() if k.startswith("malformed:"))
        if malformed:
            parts.append("malformed{" + ",".join(f"{k[10:]}={v}" for k, v in malformed) + "}")
        gaps = {k: v for k, v in self.interval.items() if k.startswith("sequence_") and v}
        if gaps:
            parts.append("sequence{" + ",".join(f"{k[9:]}={v}" for k, v in gaps.items()) + "}")
        return " ".join(parts)

    def close_interval(self, end_us: int) -> pa.RecordBatch:
        """The interval's rows (STATS_SCHEMA); starts the next interval at ``end_us``."""
        rows: list[tuple[str | None, str, int]] = [
            (None, k, v) for k, v in sorted(self.interval.items())
        ]
        for exporter in sorted(self.per_exporter):
            rows.extend((exporter, k, v) for k, v in sorted(self.per_exporter[exporter].items()))
        n = len(rows)
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array([self.interval_start_us] * n, pa.int64()).cast(TIMESTAMP),
                pa.array([end_us] * n, pa.int64()).cast(TIMESTAMP),
                pa.array([self.collector] * n, pa.string()),
                pa.array([r[0] for r in rows], pa.string()),
                pa.array([r[1] for r in rows], pa.string()),
                pa.array([r[2] for r in rows], pa.int64()),
            ],
            schema=STATS_SCHEMA,
        )
        self.interval = Counter()
        self.per_exporter = {}
        self._logged.clear()
        self.interval_start_us = end_us
        return batch


@dataclass
class CollectorSummary:
    """What one run of the collector did."""

    listen: list[tuple[str, int]]
    datagrams: int = 0
    flows: int = 0
    received_bytes: int = 0
    rejected: int = 0
    not_allowed: int = 0
    socket_drops: int = 0
    flow_files: list[Path] = field(default_factory=list)
    counter_files: list[Path] = field(default_factory=list)
    quarantine_files: list[Path] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    buffer_peak_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--json`` output."""
        return {
            "listen": [f"{h}:{p}" for h, p in self.listen],
            "datagrams": self.datagrams,
            "flows": self.flows,
            "received_bytes": self.received_bytes,
            "rejected": self.rejected,
            "not_allowed": self.not_allowed,
            "socket_drops": self.socket_drops,
            "flow_files": len(self.flow_files),
            "counter_files": len(self.counter_files),
            "quarantine_files": len(self.quarantine_files),
            "stats": dict(self.stats),
            "elapsed_s": round(self.elapsed_s, 3),
            "buffer_peak_bytes": self.buffer_peak_bytes,
        }

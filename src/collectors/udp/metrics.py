"""Prometheus metrics of a running collector (``collect --metrics HOST:PORT``).

The worker thread adds what it did to :class:`CollectorMetrics` (plain counters under a
lock, one lock per chunk, not per flow); a scrape copies them under the same lock and
renders them with ``prometheus_client``, so scrapes never slow the data path. Counters
are cumulative over the run and count what the collector accepted:
``rating_engine_collector_flows_total`` is the number of flow rows handed to the writer,
which equals the rows stored once the writer has flushed (stop, or the next rotation).

Labels: ``exporter`` (the sender's address as text) and ``format`` (``netflow_v5``,
``netflow_v9``, ``ipfix``, ``sflow``, ...; ``unknown`` for datagrams of no known
version). Socket drops are the kernel's, per listening socket (the kernel cannot say
whose datagrams it dropped); writes are per dataset.

====================================================  =====================================
metric                                                meaning
====================================================  =====================================
``rating_engine_collector_flows_total``               flow records decoded and queued
``rating_engine_collector_flow_bytes_total``          their ``bytes`` (traffic, as exported)
``rating_engine_collector_datagrams_total``           datagrams received (allowed senders)
``rating_engine_collector_received_bytes_total``      their size in bytes
``rating_engine_collector_datagrams_rejected_total``  rejected datagrams, ``reason`` label
``rating_engine_collector_sequence_missing_total``    export sequence-gap losses (unit below)
``rating_engine_collector_sequence_resets_total``     exporter restarts seen in sequences
``rating_engine_collector_templates``                 v9/IPFIX templates known (gauge)
``rating_engine_collector_last_datagram_timestamp_seconds``  last datagram (gauge)
``rating_engine_collector_socket_drops_total``        datagrams the kernel dropped (buffer)
``rating_engine_collector_written_rows_total``        rows written to Parquet, ``dataset``
``rating_engine_collector_written_bytes_total``       Parquet bytes written, ``dataset``
``rating_engine_collector_write_seconds``             time to write one rotation (histogram)
``rating_engine_collector_enrich_errors_total``       batches stored without enrichment
====================================================  =====================================

Sequence losses count what each format numbers: flows for NetFlow v5/v7 and IPFIX,
export packets for NetFlow v9, datagrams for sFlow.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CollectorMetrics", "datagram_formats"]

_PREFIX = "rating_engine_collector_"
#: Datagram version fields -> source_format (v32 == 5 is sFlow v5, checked first).
_BY_VERSION = {1: "netflow_v1", 5: "netflow_v5", 7: "netflow_v7", 9: "netflow_v9", 10: "ipfix"}
_WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def datagram_formats(
    buf: bytes | bytearray | memoryview, starts: Sequence[int], lengths: Sequence[int]
) -> list[str]:
    """The export format of each datagram from its version field, ``unknown`` if none."""
    n = len(starts)
    if n == 0:
        return []
    data = np.frombuffer(buf, np.uint8)
    s = np.asarray(starts, np.int64)
    size = np.asarray(lengths, np.int64)
    head = np.zeros((n, 4), np.uint32)
    for k in range(4):
        ok = size > k
        head[ok, k] = data[s[ok] + k]
    v16 = (head[:, 0] << 8) | head[:, 1]
    v32 = (v16 << 16) | (head[:, 2] << 8) | head[:, 3]
    sflow = (size >= 4) & (v32 == 5)
    return [
        "sflow" if sf else _BY_VERSION.get(int(v), "unknown") if n2 >= 2 else "unknown"
        for sf, v, n2 in zip(sflow.tolist(), v16.tolist(), size.tolist(), strict=True)
    ]


def _exporter_text(raw: bytes | None, cache: dict[bytes | None, str]) -> str:
    text = cache.get(raw)
    if text is None:
        if raw is None or len(raw) != 16:
            text = "none"
        else:
            ip = ipaddress.IPv6Address(raw)
            text = str(ip.ipv4_mapped or ip)
        cache[raw] = text
    return text


class CollectorMetrics:
    """Cumulative counts of one collector run and their Prometheus rendering."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.flows: Counter[tuple[str, str]] = Counter()
        self.flow_bytes: Counter[tuple[str, str]] = Counter()
        self.datagrams: Counter[tuple[str, str]] = Counter()
        self.received_bytes: Counter[tuple[str, str]] = Counter()
        self.rejected: Counter[tuple[str, str, str]] = Counter()
        self.last_seen: dict[tuple[str, str], float] = {}
        self.sequence: dict[tuple[str, str], tuple[int, int]] = {}  # (missing, resets)
        self.templates: Counter[tuple[str, str]] = Counter()
        self.socket_drops = 0
        self.enrich_errors = 0
        self.written: Counter[tuple[str, str]] = Counter()  # (dataset, rows|bytes)
        self.listen = ""  # the bound sockets, "host:port,..." (set once they are bound)
        self._names: dict[bytes | None, str] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.write_seconds = Histogram(
            _PREFIX + "write_seconds",
            "Time to write one rotation of a dataset to Parquet (encode, fsync, rename)",
            ["dataset"],
            registry=self.registry,
            buckets=_WRITE_BUCKETS,
        )
        self.registry.register(_Snapshot(self))

    # -- updates (worker and writer threads) ---------------------------------------------------
    def add_datagrams(
        self, hosts: Sequence[str], formats: Sequence[str], lengths: Sequence[int]
    ) -> None:
        """Datagrams received from allowed senders in one chunk."""
        counts = Counter(zip(hosts, formats, strict=True))
        sizes: Counter[tuple[str, str]] = Counter()
        for key, size in zip(zip(hosts, formats, strict=True), lengths, strict=True):
            sizes[key] += size
        now = time.time()
        with self._lock:
            self.datagrams.update(counts)
            self.received_bytes.update(sizes)
            for key in counts:
                self.last_seen[key] = now

    def add_rejected(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Rejected datagrams as (exporter, format, reason)."""
        counts = Counter(rows)
        with self._lock:
            self.rejected.update(counts)

    def add_flows(self, flows: pa.RecordBatch) -> None:
        """Flows queued for the writer, counted per exporter and format."""
        if not flows.num_rows:
            return
        grouped = (
            pa.table(
                {
                    "e": flows.column("exporter"),
                    "f": flows.column("source_format"),
                    "b": flows.column("bytes"),
                }
            )
            .group_by(["e", "f"])
            .aggregate([("b", "count"), ("b", "sum")])
        )
        rows = grouped.to_pydict()
        with self._lock:
            for e, f, count, total in zip(
                rows["e"], rows["f"], rows["b_count"], rows["b_sum"], strict=True
            ):
                key = (_exporter_text(e, self._names), str(f))
                self.flows[key] += int(count)
                self.flow_bytes[key] += int(total or 0)

    def set_state(self, sequence: Iterable[Mapping[str, object]], templates: Iterable[Any]) -> None:
        """The decoder's sequence accounting (its snapshot) and its templates."""
        seq: dict[tuple[str, str], tuple[int, int]] = {}
        for row in sequence:
            raw = bytes.fromhex(str(row.get("exporter", "")))
            key = (_exporter_text(raw, self._names), str(row.get("kind", "unknown")))
            missing, resets = seq.get(key, (0, 0))
            m, r = row.get("missing", 0), row.get("resets", 0)
            seq[key] = (
                missing + (m if isinstance(m, int) else 0),
                resets + (r if isinstance(r, int) else 0),
            )
        known: Counter[tuple[str, str]] = Counter(
            (_exporter_text(t.exporter, self._names), str(t.protocol)) for t in templates
        )
        with self._lock:
            self.sequence = seq
            self.templates = known

    def add_socket_drops(self, count: int) -> None:
        with self._lock:
            self.socket_drops += count

    def add_enrich_error(self) -> None:
        with self._lock:
            self.enrich_errors += 1

    def observe_write(self, dataset: str, rows: int, size: int, seconds: float) -> None:
        """One rotation written (writer thread)."""
        self.write_seconds.labels(dataset).observe(seconds)
        with self._lock:
            self.written[(dataset, "rows")] += rows
            self.written[(dataset, "bytes")] += size

    def totals(self) -> dict[str, int]:
        """Sums over labels (tests, logs)."""
        with self._lock:
            return {
                "flows": sum(self.flows.values()),
                "datagrams": sum(self.datagrams.values()),
                "rejected": sum(self.rejected.values()),
            }

    def copy(self) -> dict[str, Any]:
        with self._lock:
            return {
                "flows": dict(self.flows),
                "flow_bytes": dict(self.flow_bytes),
                "datagrams": dict(self.datagrams),
                "received_bytes": dict(self.received_bytes),
                "rejected": dict(self.rejected),
                "last_seen": dict(self.last_seen),
                "sequence": dict(self.sequence),
                "templates": dict(self.templates),
                "socket_drops": self.socket_drops,
                "enrich_errors": self.enrich_errors,
                "written": dict(self.written),
            }


class _Snapshot(Collector):
    """Renders :class:`CollectorMetrics` at scrape time."""

    def __init__(self, metrics: CollectorMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        m = self.metrics.copy()
        ef = ["exporter", "format"]

        def counter(
            name: str, doc: str, values: Mapping[tuple[str, ...], int], labels: list[str]
        ) -> CounterMetricFamily:
            family = CounterMetricFamily(_PREFIX + name, doc, labels=labels)
            for key, value in sorted(values.items()):
                family.add_metric(list(key), value)
            return family

        yield counter("flows", "Flow records decoded and queued for writing", m["flows"], ef)
        yield counter(
            "flow_bytes",
            "Bytes of the decoded flows, as exported (not renormalised)",
            m["flow_bytes"],
            ef,
        )
        yield counter(
            "datagrams", "Export datagrams received from allowed senders", m["datagrams"], ef
        )
        yield counter("received_bytes", "Bytes of the datagrams received", m["received_bytes"], ef)
        yield counter(
            "datagrams_rejected",
            "Datagrams rejected (quarantined or refused), by reason",
            m["rejected"],
            [*ef, "reason"],
        )
        yield counter(
            "sequence_missing",
            "Records lost by the exporters' sequence numbers "
            "(flows for v5/v7/IPFIX, packets for v9, datagrams for sFlow)",
            {k: v[0] for k, v in m["sequence"].items()},
            ef,
        )
        yield counter(
            "sequence_resets",
            "Sequence restarts seen (exporter reboots)",
            {k: v[1] for k, v in m["sequence"].items()},
            ef,
        )
        gauge = GaugeMetricFamily(_PREFIX + "templates", "v9/IPFIX templates known", labels=ef)
        for key, value in sorted(m["templates"].items()):
            gauge.add_metric(list(key), value)
        yield gauge
        seen = GaugeMetricFamily(
            _PREFIX + "last_datagram_timestamp_seconds",
            "Unix time of the last datagram received",
            labels=ef,
        )
        for key, value in sorted(m["last_seen"].items()):
            seen.add_metric(list(key), value)
        yield seen
        drops = CounterMetricFamily(
            _PREFIX + "socket_drops",
            "Datagrams the kernel dropped because the receive buffer was full",
            labels=["listen"],
        )
        drops.add_metric([self.metrics.listen], m["socket_drops"])
        yield drops
        written = m["written"]
        for unit in ("rows", "bytes"):
            yield counter(
                f"written_{unit}",
                f"Parquet {unit} written, by dataset",
                {(d,): v for (d, u), v in written.items() if u == unit},
                ["dataset"],
            )
        yield counter(
            "enrich_errors",
            "Flow batches stored without enrichment after an enrichment failure",
            {(): m["enrich_errors"]},
            [],
        )

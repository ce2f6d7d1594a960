"""What the collector writes: its four rotating datasets, the writer thread, quarantine rows.

* flows to ``W/flows/`` and sFlow counter records to ``W/counters/`` through
  :class:`collectors.flows.writer.RotatingWriter` (hive ``date=/hour=``, atomic,
  rotated by ``rotate_seconds`` and ``rotate_bytes``); LZ4 by default (``compression``):
  Parquet encoding is the collector's largest CPU cost and zstd doubles it, for files
  about 40% smaller. A writer thread of their own encodes them, so Parquet encoding
  and fsync overlap decoding (pyarrow drops the GIL);
* rejected datagrams to ``W/quarantine/``: Parquet in ``REJECT_SCHEMA`` (stage
  ``decode``, ``source_file`` = ``udp://<exporter>:<port>``, reason, message, the raw
  datagram in ``raw``, ``rejected_at`` = receive time), one file per stats interval;
* statistics to ``W/collector_stats/`` (see :mod:`collectors.udp.stats`).

Every file carries the collector's prefix, so collectors sharing a workspace never
overwrite each other's files.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from collectors.errors import CollectorError
from collectors.flows.writer import RotatingWriter
from collectors.schemas import FLOW_SCHEMA, REJECT_SCHEMA
from collectors.sflow.datagram import COUNTER_SCHEMA
from collectors.udp.stats import STATS_SCHEMA
from collectors.workspace import WorkspacePaths

__all__ = [
    "FLOW_DICTIONARY_COLUMNS",
    "FLOW_STATISTICS_COLUMNS",
    "CollectorOutputs",
    "quarantine_batch",
]

#: Columns that repeat enough for dictionary encoding to pay; the rest are written plain.
FLOW_DICTIONARY_COLUMNS = [
    "exporter",
    "observation_domain",
    "protocol",
    "tcp_flags",
    "tos",
    "input_if",
    "output_if",
    "src_as",
    "dst_as",
    "next_hop",
    "vlan",
    "sampling_interval",
    "direction",
    "source_format",
]
#: Min/max statistics where readers prune on them: the times.
FLOW_STATISTICS_COLUMNS = ["flow_start", "flow_end"]


def quarantine_batch(rows: list[tuple[str, int | None, str, str, bytes, int]]) -> pa.RecordBatch:
    """Rejected datagrams as REJECT_SCHEMA rows: (source, record_no, reason, message, raw, us)."""
    n = len(rows)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(["decode"] * n, pa.string()),
            pa.array([r[0] for r in rows], pa.string()),
            pa.array([r[1] for r in rows], pa.int64()),
            pa.nulls(n, pa.int64()),
            pa.nulls(n, pa.string()),
            pa.array([r[2] for r in rows], pa.string()),
            pa.array([r[3] for r in rows], pa.string()),
            pa.array([r[4] for r in rows], pa.binary()),
            pa.array([r[5] for r in rows], pa.int64()).cast(
                REJECT_SCHEMA.field("rejected_at").type
            ),
        ],
        schema=REJECT_SCHEMA,
    )


class CollectorOutputs:
    """The four rotating writers of one collector, and the thread that writes flows and counters.

    ``quarantine`` and ``collector_stats`` are written by the caller's thread; the
    quarantine rotates every ``stats_interval`` seconds (one file per interval).
    """

    def __init__(
        self,
        workspace: WorkspacePaths,
        prefix: str,
        *,
        rotate_seconds: float,
        rotate_bytes: int,
        stats_interval: float,
        compression: str,
        on_write: Callable[[str, int, int, float], None] | None = None,
        prepare_flows: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None,
    ) -> None:
        # Flows pass through ``prepare_flows`` (enrichment) on the writer thread: its kernel
        # drops the GIL, so it runs on the second core beside the decoding worker.
        self.prepare_flows = prepare_flows
        # every output rotates by size under this collector's file prefix

        def writer(root: Path, schema: pa.Schema, **options: Any) -> RotatingWriter:
            observe = None if on_write is None else functools.partial(on_write, root.name)
            return RotatingWriter(
                root, schema, prefix=prefix, rotate_bytes=rotate_bytes, on_write=observe, **options
            )

        self.flows = writer(
            workspace.flows,
            FLOW_SCHEMA,
            time_column="flow_start",
            rotate_seconds=rotate_seconds,
            compression=compression,
            dictionary_columns=FLOW_DICTIONARY_COLUMNS,
            statistics_columns=FLOW_STATISTICS_COLUMNS,
        )
        self.counters = writer(
            workspace.counters,
            COUNTER_SCHEMA,
            time_column="received_at",
            rotate_seconds=rotate_seconds,
        )
        self.quarantine = writer(
            workspace.quarantine,
            REJECT_SCHEMA,
            time_column="rejected_at",
            rotate_seconds=max(stats_interval, 1e-3),
            hourly=False,
        )
        self.collector_stats = writer(
            workspace.collector_stats,
            STATS_SCHEMA,
            time_column="interval_end",
            rotate_seconds=rotate_seconds,
            hourly=False,
        )
        # Decoded batches for the writer thread; bounded, so a slow disk stalls the worker
        # (and then the socket buffers) instead of growing memory.
        self._to_write: queue.Queue[tuple[RotatingWriter, pa.RecordBatch] | None] = queue.Queue(
            maxsize=8
        )
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._write_loop, name="flow-writer", daemon=True)
        self._thread.start()

    @property
    def thread_id(self) -> int | None:
        """The writer thread's native id while it runs (for its niceness), else None."""
        thread = self._thread
        return thread.native_id if thread is not None and thread.is_alive() else None

    def write_flows(self, batch: pa.RecordBatch) -> None:
        """Queue decoded flows for the writer thread (blocks while 8 batches wait)."""
        self._enqueue(self.flows, batch)

    def write_counters(self, batch: pa.RecordBatch) -> None:
        """Queue sFlow counter records for the writer thread."""
        self._enqueue(self.counters, batch)

    def finish(self) -> None:
        """Let the writer thread write what is queued, flush flows and counters, and end."""
        self._to_write.put(None)
        if self._thread is not None:
            self._thread.join()

    def _enqueue(self, writer: RotatingWriter, batch: pa.RecordBatch) -> None:
        if self.error is not None:
            raise CollectorError(f"writer failed: {self.error!r}")
        if batch.num_rows:
            self._to_write.put((writer, batch))

    def _write_loop(self) -> None:
        try:
            while True:
                try:
                    item = self._to_write.get(timeout=0.2)
                except queue.Empty:
                    item = None
                    done = False
                else:
                    done = item is None
                if item is not None:
                    writer, batch = item
                    if writer is self.flows and self.prepare_flows is not None:
                        batch = self.prepare_flows(batch)
                    writer.add(batch)
                now = time.monotonic()
                self.flows.maybe_rotate(now)
                self.counters.maybe_rotate(now)
                if done:
                    break
            self.flows.flush()
            self.counters.flush()
        except BaseException as exc:  # surfaced by the worker and at the end of run()
            self.error = exc
            while True:  # keep draining so the worker never blocks on a dead writer
                try:
                    if self._to_write.get(timeout=1) is None:
                        break
                except queue.Empty:
                    continue

"""Buffer record batches and write them as hive-partitioned Parquet, rotated by time and size.

A :class:`RotatingWriter` collects batches in memory and writes them out when the
buffer has been open for ``rotate_seconds`` or holds ``rotate_bytes`` of Arrow data,
and on :meth:`RotatingWriter.flush`. Each rotation becomes one file per UTC
date/hour partition (``<root>/date=YYYY-MM-DD/hour=HH/part-<prefix>-<n>.parquet``),
the same layout as :func:`collectors.dataset.write_partitioned` and, like
:func:`collectors.dataset.atomic_write_table`, written to a hidden temporary name,
fsynced and renamed, so readers never see half a file. Part names carry the writer's
prefix (start time, process id, a random tag) and a rotation counter, so two
collectors or two runs never overwrite each other. A rotation is written under the
dataset's shared maintenance lock (:mod:`collectors.retention.lock`), so ``expire`` and
``compact`` can run beside a collector; ``on_write`` hears of each rotation (rows,
bytes, seconds: the collector's metrics).

Why not call ``write_partitioned`` directly: at collector rates its per-row
``strftime`` partition keys and the default writer options (dictionary encoding and
statistics on every column) cost more than decoding. Here the partition key is
integer arithmetic on the microsecond times, dictionary encoding is limited to the
columns that repeat (``dictionary_columns``) and statistics to ``statistics_columns``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collectors.dataset import atomic_write_table
from collectors.retention.lock import dataset_lock

__all__ = ["RotatingWriter", "WriterStats", "default_prefix", "split_by_hour"]

_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US


def split_by_hour(
    table: pa.Table, time_column: str, *, hourly: bool = True
) -> list[tuple[str, pa.Table]]:
    """``[("date=YYYY-MM-DD/hour=HH", rows), ...]`` by the UTC time in ``time_column``."""
    if table.num_rows == 0:
        return []
    us = table.column(time_column).cast(pa.int64()).to_numpy(zero_copy_only=False)
    step = _HOUR_US if hourly else _DAY_US
    keys = np.floor_divide(us, step)
    lo, hi = int(keys.min()), int(keys.max())

    def folder(key: int) -> str:
        try:
            when = datetime.fromtimestamp(key * step / 1_000_000, tz=UTC)
        except (OverflowError, ValueError, OSError):
            # An exporter's clock beyond year 1..9999: keep the rows, apart.
            return "date=out_of_range/hour=00" if hourly else "date=out_of_range"
        day = f"date={when:%Y-%m-%d}"
        return f"{day}/hour={when:%H}" if hourly else day

    if lo == hi:  # the common case: one rotation inside one hour
        return [(folder(lo), table)]
    out = []
    key_array = pa.array(keys)
    for key in np.unique(keys).tolist():
        out.append((folder(int(key)), table.filter(pc.equal(key_array, key))))
    return out


def default_prefix(kind: str) -> str:
    """``<kind>-<UTC start time>-<pid>-<random>``: unique per writer, even within a second."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{kind}-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass
class WriterStats:
    """What a writer has written so far."""

    files: int = 0
    rows: int = 0
    rotations: int = 0
    bytes: int = 0  # Parquet bytes on disk


class RotatingWriter:
    """Buffer batches of one schema; write a rotation when it is old or big enough."""

    def __init__(
        self,
        root: Path,
        schema: pa.Schema,
        *,
        time_column: str,
        prefix: str,
        rotate_seconds: float = 60.0,
        rotate_bytes: int = 64 << 20,
        hourly: bool = True,
        compression: str = "zstd",
        dictionary_columns: list[str] | None = None,
        statistics_columns: list[str] | None = None,
        on_write: Callable[[int, int, float], None] | None = None,
    ) -> None:
        if rotate_seconds <= 0 or rotate_bytes <= 0:
            raise ValueError("rotate_seconds and rotate_bytes must be positive")
        self.root = root
        self.schema = schema
        self.time_column = time_column
        self.prefix = prefix
        self.rotate_seconds = rotate_seconds
        self.rotate_bytes = rotate_bytes
        self.hourly = hourly
        names = set(schema.names)
        self._options: dict[str, Any] = {
            "compression": compression,
            "use_dictionary": [c for c in dictionary_columns if c in names]
            if dictionary_columns is not None
            else True,
            "write_statistics": [c for c in statistics_columns if c in names]
            if statistics_columns is not None
            else True,
        }
        self.on_write = on_write
        self.stats = WriterStats()
        self.written: list[Path] = []
        self._batches: list[pa.RecordBatch] = []
        self._bytes = 0
        self._rows = 0
        self._opened: float | None = None

    @property
    def buffered_rows(self) -> int:
        """Rows held in memory, not yet written."""
        return self._rows

    @property
    def buffered_bytes(self) -> int:
        """Arrow bytes held in memory, not yet written."""
        return self._bytes

    def add(self, batch: pa.RecordBatch, now: float | None = None) -> list[Path]:
        """Buffer ``batch`` (cast to the schema); returns the files of a rotation it caused."""
        if batch.num_rows == 0:
            return self.maybe_rotate(now)
        if batch.schema != self.schema:
            batch = pa.Table.from_batches([batch]).cast(self.schema).to_batches()[0]
        if self._opened is None:
            self._opened = time.monotonic() if now is None else now
        self._batches.append(batch)
        self._bytes += batch.nbytes
        self._rows += batch.num_rows
        if self._bytes >= self.rotate_bytes:
            return self.flush()
        return self.maybe_rotate(now)

    def maybe_rotate(self, now: float | None = None) -> list[Path]:
        """Write the buffer if it has been open for ``rotate_seconds``."""
        if self._opened is None:
            return []
        now = time.monotonic() if now is None else now
        if now - self._opened >= self.rotate_seconds:
            return self.flush()
        return []

    def flush(self) -> list[Path]:
        """Write whatever is buffered (one file per date/hour partition); returns the files."""
        if not self._batches:
            self._opened = None
            return []
        table = pa.Table.from_batches(self._batches, schema=self.schema)
        self.stats.rotations += 1
        part = f"{self.prefix}-{self.stats.rotations:06d}"
        started = time.perf_counter()
        with dataset_lock(self.root, exclusive=False):
            files = [
                atomic_write_table(
                    rows, self.root / folder / f"part-{part}.parquet", **self._options
                )
                for folder, rows in split_by_hour(table, self.time_column, hourly=self.hourly)
            ]
            size = sum(f.stat().st_size for f in files)
        self.stats.files += len(files)
        self.stats.rows += table.num_rows
        self.stats.bytes += size
        if self.on_write is not None:
            self.on_write(table.num_rows, size, time.perf_counter() - started)
        self.written.extend(files)
        self._batches = []
        self._bytes = 0
        self._rows = 0
        self._opened = None
        return files

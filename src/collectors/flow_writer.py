"""Buffer record batches and write them as hive-partitioned Parquet, rotated by time and size.

A :class:`RotatingWriter` collects batches in memory and writes them out when the
buffer has been open for ``rotate_seconds`` or holds ``rotate_bytes`` of Arrow data,
and on :meth:`RotatingWriter.flush`. Each rotation becomes one file per UTC
date/hour partition (``<root>/date=YYYY-MM-DD/hour=HH/part-<prefix>-<n>.parquet``)
via :func:`collectors.dataset.write_partitioned`, which writes to a hidden
temporary name and renames, so readers never see half a file. Part names carry the
writer's prefix (start time and process id) and a rotation counter, so two
collectors or two runs never overwrite each other.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from .dataset import write_partitioned

__all__ = ["RotatingWriter", "WriterStats", "default_prefix"]


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
        files = write_partitioned(
            table, self.root, time_column=self.time_column, part_name=part, hourly=self.hourly
        )
        self.stats.files += len(files)
        self.stats.rows += table.num_rows
        self.written.extend(files)
        self._batches = []
        self._bytes = 0
        self._rows = 0
        self._opened = None
        return files

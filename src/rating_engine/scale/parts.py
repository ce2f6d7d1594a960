"""Dataset parts a partition task reads and writes: by day, by run tag, by bucket.

A billing pass writes its rated and suspense rows as ``part-run-<tag>.parquet`` (one
partition) or ``part-run-<tag>-b<NNN>.parquet`` (bucket NNN) in the day folders; the
tag names the pass, so the rated parts of committed passes are exactly what was billed,
and a pass run again after a crash replaces its own parts. Files are written through a
temporary name and renamed (:class:`DayPartWriter`), so a reader never sees half a file
and a task repeated by the scheduler leaves one copy.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from collectors.dataset import atomic_write_table, dataset_files
from rating_engine.errors import RatingError

__all__ = [
    "DAY_US",
    "DayPartWriter",
    "ScratchWriter",
    "day_folder",
    "day_of_path",
    "drop_rows",
    "files_by_day",
    "ids_in",
    "is_part_of",
    "part_name",
    "read_ipc",
    "remove_tag_parts",
]

DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1)
I64 = npt.NDArray[np.int64]


def part_name(tag: str, bucket: int, buckets: int) -> str:
    """``run-<tag>`` for a single partition, ``run-<tag>-b<NNN>`` for bucket NNN."""
    return f"run-{tag}" if buckets == 1 else f"run-{tag}-b{bucket:03d}"


def is_part_of(path: Path | str, tags: Iterable[str]) -> bool:
    """Whether ``path`` is a rated or suspense part written by a pass with one of ``tags``
    (its suspense of quantity-change records included)."""
    name = Path(path).name
    return any(
        name in (f"part-run-{t}.parquet", f"part-run-{t}-quantities.parquet")
        or (name.startswith(f"part-run-{t}-b") and name[len(f"part-run-{t}-b") :].count("-") == 0)
        for t in tags
    )


def remove_tag_parts(root: Path, tag: str) -> int:
    """Delete every part of pass ``tag`` under ``root`` (all days, all buckets)."""
    removed = 0
    for path in dataset_files(root):
        if is_part_of(path, [tag]):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def day_of_path(path: Path | str) -> int | None:
    """Days since 1970-01-01 of the ``date=YYYY-MM-DD`` folder holding ``path``."""
    for part in Path(path).parts:
        if part.startswith("date="):
            try:
                return (date.fromisoformat(part[5:]) - _EPOCH).days
            except ValueError:
                return None
    return None


def day_folder(day: int) -> str:
    """``date=YYYY-MM-DD`` of a day number."""
    return f"date={datetime.fromtimestamp(day * 86_400, UTC):%Y-%m-%d}"


def files_by_day(root: Path) -> dict[int, list[Path]]:
    """The dataset's visible Parquet files by day; a file outside a day folder is refused."""
    out: dict[int, list[Path]] = {}
    for path in dataset_files(root):
        day = day_of_path(path.relative_to(root))
        if day is None:
            raise RatingError(
                f"file {path}: not in a date=YYYY-MM-DD folder of dataset {root} "
                "(field date); move it into its day's folder"
            )
        out.setdefault(day, []).append(path)
    return out


def ids_in(files: Sequence[Path], column: str = "record_id") -> I64:
    """The sorted values of an int64 column over ``files`` (only that column is read)."""
    parts = [
        pq.read_table(f, columns=[column], page_checksum_verification=True).column(0).to_numpy()
        for f in files
    ]
    ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    ids = ids.astype(np.int64, copy=False)
    ids.sort()
    return ids


class DayPartWriter:
    """One part file per day folder, written as the rows stream in, renamed on close.

    ``write`` splits a table by the UTC day of ``time_column`` and appends each day's rows
    to that day's file; ``close`` fsyncs and renames every file into place; ``abort``
    removes the temporary files. Row order within a day is kept. ``ordered``: the rows
    come in ascending days across writes, so a day's file is published as soon as a write
    starts past it (a reader - the billed-usage ledger - can take it while later days are
    still being rated). ``compression``: the Parquet codec of the files.
    """

    def __init__(self, root: Path, name: str, schema: pa.Schema, time_column: str,
                 *, ordered: bool = False, compression: str = "zstd") -> None:  # fmt: skip
        self.root, self.name, self.schema, self.time_column = root, name, schema, time_column
        self.ordered, self.compression = ordered, compression
        self._published = -(1 << 62)  # days before this one are published (ordered)
        self._open: dict[int, tuple[pq.ParquetWriter, Path, Path]] = {}
        self.rows = 0
        # A dictionary for the text columns only (labels repeat; numbers seldom do, and ids
        # and times never: the encoder would fill one only to fall back to plain), and
        # min/max statistics only for what parts are looked up by - the time and integer
        # ids: the others cost a quarter of the write's CPU for no pruning.
        self._texts = [f.name for f in schema if pa.types.is_dictionary(f.type)
                       or pa.types.is_string(f.type)]  # fmt: skip
        self._keys = [f.name for f in schema if f.name == time_column
                      or (f.name.endswith("_id") and pa.types.is_integer(f.type))]  # fmt: skip

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        us = table.column(self.time_column).cast(pa.int64()).to_numpy()
        days = np.floor_divide(us, DAY_US)
        if days.shape[0] > 1 and np.any(days[1:] < days[:-1]):
            order = np.argsort(days, kind="stable")
            table, days = table.take(pa.array(order)), days[order]
        if self.ordered:
            if days[0] < self._published:  # a published file would be written over
                raise RatingError(f"{self.name}: rows of day {int(days[0])} after that day's "
                                  "part was published (rows out of day order)")  # fmt: skip
            self._publish([d for d in self._open if d < days[0]])
            self._published = int(days[0])
        cuts = np.flatnonzero(np.diff(days)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, days.shape[0]], strict=True):
            self._writer(int(days[lo])).write_table(table.slice(int(lo), int(hi - lo)))
        self.rows += table.num_rows

    def _writer(self, day: int) -> pq.ParquetWriter:
        if day not in self._open:
            final = self.root / day_folder(day) / f"part-{self.name}.parquet"
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
            writer = pq.ParquetWriter(
                tmp, self.schema, compression=self.compression, use_dictionary=self._texts,
                write_statistics=self._keys,
            )  # fmt: skip
            self._open[day] = (writer, tmp, final)
        return self._open[day][0]

    def _publish(self, days: list[int]) -> list[Path]:
        done = []
        for day in days:
            writer, tmp, final = self._open.pop(day)
            writer.close()
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            done.append(final)
        return done

    def close(self) -> list[Path]:
        """Publish every day's file; returns them."""
        return sorted(self._publish(list(self._open)))

    def abort(self) -> None:
        for writer, tmp, _ in self._open.values():
            try:
                writer.close()
            finally:
                tmp.unlink(missing_ok=True)
        self._open.clear()

    def __enter__(self) -> DayPartWriter:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def drop_rows(files: Sequence[Path], column: str, values: I64) -> int:
    """Rewrite ``files`` without the rows whose int64 ``column`` is in ``values`` (sorted);
    a file left empty is removed. Each file is replaced atomically; returns rows dropped."""
    dropped = 0
    if len(values) == 0:
        return 0
    for path in files:
        table = pq.read_table(path, page_checksum_verification=True)
        keep = ~np.isin(np.asarray(table.column(column).to_numpy(), np.int64), values)
        if keep.all():
            continue
        dropped += int((~keep).sum())
        if keep.any():
            atomic_write_table(table.filter(pa.array(keep)), Path(path))
        else:
            Path(path).unlink()
    return dropped


class ScratchWriter:
    """Arrow IPC files (lz4) written batch by batch, renamed into place on close: the
    scratch between two task stages. One file per key, created on its first batch."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self._open: dict[Path, tuple[Any, Any, Path]] = {}

    def write(self, path: Path, table: pa.Table) -> None:
        if path not in self._open:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            sink = pa.OSFile(str(tmp), "wb")
            options = ipc.IpcWriteOptions(compression="lz4")
            self._open[path] = (sink, ipc.new_file(sink, self.schema, options=options), tmp)
        self._open[path][1].write_table(table)

    def close(self) -> None:
        for path, (sink, writer, tmp) in self._open.items():
            writer.close()
            sink.close()
            os.replace(tmp, path)
        self._open.clear()

    def abort(self) -> None:
        for sink, writer, tmp in self._open.values():
            try:
                writer.close()
                sink.close()
            finally:
                tmp.unlink(missing_ok=True)
        self._open.clear()


def read_ipc(path: Path) -> pa.Table:
    """A scratch file written by :class:`ScratchWriter`."""
    with pa.OSFile(str(path), "rb") as source:
        return ipc.open_file(source).read_all()

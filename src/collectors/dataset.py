"""Hive-partitioned Parquet datasets written atomically.

Files land as ``<dataset>/date=YYYY-MM-DD[/hour=HH]/part-<name>.parquet``. Each is
written to a hidden temporary name in the same folder, fsynced and renamed, so a
reader never sees half a file. Part names chosen by the caller make writes
idempotent: writing the same input again replaces the same files.

Pages carry CRC32 checksums, verified on every read, so a part damaged on disk is found
instead of read as wrong numbers. A fault names its file: a write error of the machine
(disk full, read-only) is an ``OSError`` with ``filename`` set, and a part that cannot be
read back is a :class:`~collectors.errors.CorruptFileError` naming the part.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from collectors.errors import CorruptFileError
from collectors.workspace import visible_parts

__all__ = [
    "PARTITION_COLUMNS",
    "atomic_write_bytes",
    "atomic_write_table",
    "broken_parts",
    "dataset_files",
    "naming_path",
    "read_dataset",
    "reading_parts",
    "remove_parts",
    "verify_part",
    "write_partitioned",
]

PARTITION_COLUMNS = ("date", "hour")
_SCAN = pads.ParquetFileFormat(
    default_fragment_scan_options=pads.ParquetFragmentScanOptions(page_checksum_verification=True)
)


@contextlib.contextmanager
def naming_path(path: Path | str) -> Iterator[None]:
    """Give an ``OSError`` raised inside without a file name (Arrow's, zipfile's) ``path``,
    so the message of a full or read-only disk says where."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        reason = exc.strerror or str(exc)
        if exc.errno is not None:
            reason = os.strerror(exc.errno)
        raise OSError(exc.errno, reason, str(path)) from exc


def atomic_write_bytes(path: Path, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` through a temporary file, fsync and a rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with naming_path(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_table(
    table: pa.Table, path: Path, *, compression: str = "zstd", **options: Any
) -> Path:
    """Write ``table`` to ``path`` through a temporary file, fsync and a rename;
    ``options`` go to :func:`pyarrow.parquet.write_table` (page checksums on by default)."""
    options.setdefault("write_page_checksum", True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with naming_path(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, tmp, compression=compression, **options)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_partitioned(
    table: pa.Table,
    root: Path,
    *,
    time_column: str,
    part_name: str,
    hourly: bool = False,
    compression: str = "zstd",
    row_group_size: int | None = None,
) -> list[Path]:
    """Split ``table`` by the UTC date (and hour) of ``time_column`` and write one file each.

    Returns the files written. An empty table writes nothing. Rows keep their order
    within a partition. ``compression`` is the Parquet codec (zstd: smallest; lz4:
    about twice as fast to scan for a third more bytes). ``row_group_size``: rows per
    row group (None: pyarrow's default, 1Mi); smaller groups let a reader that needs a
    few rows decode less.
    """
    if table.num_rows == 0:
        return []
    # Integer bucketing: formatting every timestamp as text costs ~0.5 s per million rows.
    column = table.column(time_column)
    if column.null_count:
        raise ValueError(f"{time_column} has nulls; cannot partition")
    micros = column.cast(pa.int64()).to_numpy()
    step = 3_600_000_000 if hourly else 86_400_000_000
    keys = np.floor_divide(micros, step)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    bounds = np.flatnonzero(np.diff(ordered)) + 1
    written: list[Path] = []
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(ordered)], strict=True):
        start = datetime.fromtimestamp(int(ordered[lo]) * (step // 1_000_000), UTC)
        folder = root / f"date={start:%Y-%m-%d}"
        if hourly:
            folder = folder / f"hour={start:%H}"
        part = table.take(pa.array(order[lo:hi]))
        path = folder / f"part-{part_name}.parquet"
        options = {} if row_group_size is None else {"row_group_size": row_group_size}
        written.append(atomic_write_table(part, path, compression=compression, **options))
    return written


def dataset_files(root: Path) -> list[Path]:
    """The visible Parquet files of a dataset, sorted (temporary files are hidden)."""
    return sorted(visible_parts(root))


def remove_parts(root: Path, part_name: str) -> int:
    """Delete every file of a given part name (all partitions); returns how many."""
    removed = 0
    for path in dataset_files(root):
        if path.name == f"part-{part_name}.parquet":
            path.unlink()
            removed += 1
    return removed


def verify_part(path: Path) -> str | None:
    """None when every page of the part reads back (checksums verified), else why not."""
    try:
        with pq.ParquetFile(path, page_checksum_verification=True) as part:
            for group in range(part.num_row_groups):
                part.read_row_group(group)
    except (pa.ArrowException, OSError) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__  # Arrow's text spans lines
    return None


def broken_parts(files: Iterable[Path]) -> list[tuple[Path, str]]:
    """The parts among ``files`` that do not read back, with the reason."""
    found = []
    for path in files:
        problem = verify_part(path)
        if problem is not None:
            found.append((path, problem))
    return found


@contextlib.contextmanager
def reading_parts(files: Iterable[Path]) -> Iterator[None]:
    """Turn Arrow's error on reading ``files`` into one naming the broken part.

    Arrow's scanner often does not say which file failed (a damaged page header is
    "Couldn't deserialize thrift"); on failure each part is checked alone, which costs a
    read of the dataset only on this error path. A fault of the machine (an ``OSError``
    with an errno: disk, permissions) stays an ``OSError``.
    """
    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None and not _arrow_corruption(exc):
            raise
        broken = broken_parts(files)
        if not broken:
            raise
        path, problem = broken[0]
        more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
        raise CorruptFileError(
            str(path),
            f"Parquet part {path} cannot be read back: {problem}{more}; run `rating-engine "
            "check` to list broken parts and `rating-engine check --quarantine` to move them "
            "aside (it reports the records they held), or restore them from a backup",
        ) from exc


def _arrow_corruption(exc: OSError) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("parquet", "thrift", "checksum", "corrupt", "magic"))


def read_dataset(
    root: Path,
    schema: pa.Schema,
    *,
    filter: pc.Expression | None = None,
    columns: Iterable[str] | None = None,
) -> pa.Table:
    """Read a dataset (without its partition columns) as ``schema``; missing -> empty table.

    Raises :class:`~collectors.errors.CorruptFileError` naming a part that cannot be read.
    """
    files = dataset_files(root)
    cols = list(columns) if columns is not None else schema.names
    if not files:
        return schema.empty_table().select(cols)
    with reading_parts(files):
        ds = pads.dataset([str(f) for f in files], schema=schema, format=_SCAN)
        return ds.to_table(columns=cols, filter=filter)

"""Hive-partitioned Parquet datasets written atomically.

Files land as ``<dataset>/date=YYYY-MM-DD[/hour=HH]/part-<name>.parquet``. Each is
written to a hidden temporary name in the same folder, fsynced and renamed, so a
reader never sees half a file. Part names chosen by the caller make writes
idempotent: writing the same input again replaces the same files.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

__all__ = [
    "PARTITION_COLUMNS",
    "atomic_write_bytes",
    "atomic_write_table",
    "dataset_files",
    "read_dataset",
    "remove_parts",
    "write_partitioned",
]

PARTITION_COLUMNS = ("date", "hour")
_HIDDEN = (".", "_")


def atomic_write_bytes(path: Path, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` through a temporary file, fsync and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
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
    ``options`` go to :func:`pyarrow.parquet.write_table`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
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
) -> list[Path]:
    """Split ``table`` by the UTC date (and hour) of ``time_column`` and write one file each.

    Returns the files written. An empty table writes nothing. Rows keep their order
    within a partition.
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
        written.append(atomic_write_table(part, folder / f"part-{part_name}.parquet"))
    return written


def dataset_files(root: Path) -> list[Path]:
    """The visible Parquet files of a dataset, sorted (temporary files are hidden)."""
    if not root.exists():
        return []
    return sorted(
        p for p in root.rglob("*.parquet") if not any(s.startswith(_HIDDEN) for s in p.parts[-1:])
    )


def remove_parts(root: Path, part_name: str) -> int:
    """Delete every file of a given part name (all partitions); returns how many."""
    removed = 0
    for path in dataset_files(root):
        if path.name == f"part-{part_name}.parquet":
            path.unlink()
            removed += 1
    return removed


def read_dataset(
    root: Path,
    schema: pa.Schema,
    *,
    filter: pc.Expression | None = None,
    columns: Iterable[str] | None = None,
) -> pa.Table:
    """Read a dataset (without its partition columns) as ``schema``; missing -> empty table."""
    files = dataset_files(root)
    cols = list(columns) if columns is not None else schema.names
    if not files:
        return schema.empty_table().select(cols)
    ds = pads.dataset([str(f) for f in files], schema=schema, format="parquet")
    return ds.to_table(columns=cols, filter=filter)

"""Parts of a flows dataset in time order, and the first N flows by time from their
row-group statistics (``query list -c N -O tstart|tend``).

    first = earliest_flows(files, schema, flow_filter, window, "tstart", 20)

Hour partitions (``date=``/``hour=`` folders) hold disjoint, ascending ranges of flow
starts, so a listing in time order opens them in order and stops early; within a
partition, row groups are visited by their smallest time. Part footers are parsed once
per process.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rating_engine.errors import RatingError
from rating_engine.traffic.flow_filter import FlowFilter, combined_columns

__all__ = [
    "IrregularLayoutError",
    "day_number",
    "day_of",
    "earliest_flows",
    "hour_partitions",
    "parquet_parts",
    "partition_groups",
    "time_groups",
]

_HOUR_US = 3_600_000_000
_DAY_US = 86_400_000_000
_DATE = re.compile(r"date=\d{4}-\d{2}-\d{2}")
_HOUR = re.compile(r"hour=\d{2}")


def day_of(path: Path) -> date | None:
    """The ``date=`` partition a path is in (its outermost ``date=`` part), if any."""
    for part in path.parts:
        if part.startswith("date="):
            try:
                return date.fromisoformat(part[5:])
            except ValueError:
                return None
    return None


def parquet_parts(folder: str, found: list[str], days: tuple[int, int] | None) -> None:
    """Parquet files under ``folder`` (as ``os.walk`` would find them: symlinked folders
    not entered), hidden and ``_temporary`` names left out, ``date=`` folders outside
    ``days`` (first and last day since the epoch) not entered. A folder that cannot be
    listed raises its OSError (``os.walk`` skipped it): a query must not leave its flows
    out without a word."""
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith((".", "_")):
                continue
            if entry.is_dir():
                inner = days
                if days is not None and name.startswith("date="):
                    day = day_number(name[5:])
                    if day is not None and not days[0] <= day <= days[1]:
                        continue
                    inner = None  # the outermost date= part is the one that counts
                if not entry.is_symlink():
                    parquet_parts(entry.path, found, inner)
            elif name.endswith(".parquet"):
                found.append(entry.path)


def day_number(text: str) -> int | None:
    """Days since 1970-01-01 of an ISO date, None if it is not one."""
    try:
        return (date.fromisoformat(text) - date(1970, 1, 1)).days
    except ValueError:
        return None


def time_groups(files: Sequence[Path]) -> list[list[Path]] | None:
    """Files grouped by their ``date=``/``hour=`` partition, earliest first; None when a
    file has no date partition (no order can be assumed then)."""
    keyed: dict[tuple[date, int], list[Path]] = {}
    for f in files:
        day = day_of(f)
        if day is None:
            return None
        hour = next((int(p[5:]) for p in f.parts if p.startswith("hour=") and p[5:].isdigit()),
                    -1)  # fmt: skip
        keyed.setdefault((day, hour), []).append(f)
    if any(h == -1 for _, h in keyed) and len({d for d, _ in keyed}) != len(keyed):
        return None  # a day with and without hour partitions: ranges overlap
    return [keyed[k] for k in sorted(keyed)]


def _leaf_index(meta: pq.FileMetaData, name: str) -> int | None:
    for i in range(meta.num_columns):
        if meta.schema.column(i).path == name:
            return i
    return None


def partition_groups(files: Sequence[Path]) -> list[tuple[int, list[Path]]]:
    """``files`` (in stored order) grouped by ``date=``/``hour=`` partition, earliest
    first, each with the partition's first microsecond (every flow in it starts, and so
    ends, no earlier); one unbounded group when a file has no date partition."""
    keyed: dict[int, list[Path]] = {}
    epoch = date(1970, 1, 1)
    for f in files:
        day = day_of(f)
        if day is None:
            return [(-(2**63), list(files))]
        hour = next((int(p[5:]) for p in f.parts if p.startswith("hour=") and p[5:].isdigit()),
                    0)  # fmt: skip
        keyed.setdefault(((day - epoch).days * 24 + hour) * _HOUR_US, []).append(f)
    return sorted(keyed.items())


class IrregularLayoutError(RatingError):
    """A dataset folder not laid out as ``date=YYYY-MM-DD/hour=HH/`` only (internal: the
    listing then lists every part first)."""


def _visible(folder: str) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if not e.name.startswith((".", "_"))),
                      key=lambda e: e.name)  # fmt: skip


def hour_partitions(root: Path, window: tuple[int, int] | None) -> Iterator[tuple[int, list[Path]]]:
    """:func:`partition_groups` of a ``date=YYYY-MM-DD/hour=HH/`` dataset folder, each
    hour folder listed only when its turn comes (a listing that stops early does not walk
    years of partitions); days outside the window skipped. Raises
    :class:`IrregularLayout` on anything else (files or other folders beside them):
    names of this layout sort as their times, so the stored order is the same."""
    if not root.is_dir():
        raise IrregularLayoutError(str(root))
    # a folder's entries are all checked before any of its partitions is handed out: a
    # stray file anywhere in it could hold earlier flows
    days = None if window is None else (window[0] // _DAY_US, (window[1] - 1) // _DAY_US)
    day_folders = [(_folder_number(e, _DATE), e.path) for e in _visible(str(root))]
    for day, day_path in day_folders:
        if days is not None and not days[0] <= day <= days[1]:
            continue
        hour_folders = [(_folder_number(e, _HOUR), e.path) for e in _visible(day_path)]
        for hour, hour_path in hour_folders:
            found: list[str] = []
            parquet_parts(hour_path, found, None)
            if found:
                yield (day * 24 + hour) * _HOUR_US, [Path(f) for f in sorted(found)]


def _folder_number(entry: os.DirEntry[str], pattern: re.Pattern[str]) -> int:
    """The day (since 1970) of a ``date=`` folder or the hour of an ``hour=`` folder."""
    if not pattern.fullmatch(entry.name) or not entry.is_dir() or entry.is_symlink():
        raise IrregularLayoutError(entry.path)
    text = entry.name.partition("=")[2]
    number = day_number(text) if pattern is _DATE else int(text)
    if number is None:
        raise IrregularLayoutError(entry.path)
    return number


_FOOTERS: dict[tuple[str, int, int, int], pq.FileMetaData] = {}
#: footers kept, by their serialized size (an hour part of 16Ki-row groups: ~40 KB)
_FOOTER_BYTES_KEPT = 32 * 1024 * 1024
_footer_bytes = 0
_footers_lock = threading.Lock()


def _parquet_file(path: Path) -> pq.ParquetFile:
    """A part opened with its footer parsed once per process (most of an open's cost:
    row-group statistics of every column); keyed by path, inode, size and modification
    time, so a part written again is read again; the oldest footers are dropped past
    32 MB of them."""
    global _footer_bytes
    st = os.stat(path)
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    meta = _FOOTERS.get(key)
    handle = pq.ParquetFile(path, metadata=meta)
    if meta is None:
        with _footers_lock:
            if key not in _FOOTERS:
                _FOOTERS[key] = handle.metadata
                _footer_bytes += handle.metadata.serialized_size
            while _footer_bytes > _FOOTER_BYTES_KEPT and len(_FOOTERS) > 1:
                oldest = _FOOTERS.pop(next(iter(_FOOTERS)))
                _footer_bytes -= oldest.serialized_size
    return handle


def _row_groups(
    handle: pq.ParquetFile, column: str, window: tuple[int, int] | None
) -> list[tuple[int, int]] | None:
    """(smallest ``column`` value, row group) of the file's row groups that may hold flows
    starting in the window; None without min/max statistics."""
    meta = handle.metadata
    at, start_at = _leaf_index(meta, column), _leaf_index(meta, "flow_start")
    if at is None or start_at is None:
        return None
    out = []
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        if group.num_rows == 0:
            continue
        stats, starts = group.column(at).statistics, group.column(start_at).statistics
        if stats is None or not stats.has_min_max or starts is None or not starts.has_min_max:
            return None
        if window is not None and (starts.max_raw < window[0] or starts.min_raw >= window[1]):
            continue
        out.append((int(stats.min_raw), rg))
    return out


def _matches(
    part: pa.Table,
    flow_filter: FlowFilter | None,
    window: tuple[int, int] | None,
) -> np.ndarray:
    """Positions of the rows of ``part`` in the window that the filter keeps (polars
    evaluates the filter: on one row group it costs a fraction of an Acero plan)."""
    conditions = []
    if window is not None:
        ts = pl.col("flow_start").dt.epoch("us")
        conditions.append((ts >= window[0]) & (ts < window[1]))
    if flow_filter is not None and not flow_filter.matches_all:
        conditions.append(flow_filter.polars)
    if not conditions:
        return np.arange(part.num_rows, dtype=np.int64)
    frame = pl.from_arrow(part, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    where = frame.select(pl.arg_where(pl.all_horizontal(conditions))).to_series()
    return where.to_numpy().astype(np.int64)  # (null: no match)


def earliest_flows(
    partitions: Iterable[tuple[int, list[Path]]],
    schema: pa.Schema,
    flow_filter: FlowFilter | None,
    window: tuple[int, int] | None,
    order: str,
    limit: int,
) -> pa.Table | None:
    """``-c limit -O tstart|tend`` from row-group statistics: ``partitions`` (first
    microsecond, files in stored order; see :func:`partition_groups`) are opened in time
    order and their row groups visited by smallest time, reading only the time and filter
    columns, until the ``limit``-th match so far is earlier than everything left; then the
    full columns are decoded for the row groups holding the result only. Ties keep the
    stored order, as a stable sort of the whole dataset would. None when a file lacks
    statistics or a column (the caller then scans)."""
    wanted = schema.names
    column = "flow_start" if order == "tstart" else "flow_end"
    keys = combined_columns([column, "flow_start"] if window else [column],
                            flow_filter.columns if flow_filter else ())  # fmt: skip
    ts_type = pa.timestamp("us", tz="UTC")
    handles: list[pq.ParquetFile] = []  # file numbers: stored order
    read: dict[tuple[int, int], pa.Table] = {}  # the time and filter columns read so far
    # the limit earliest matches so far: time, file, row group, row (sorted by all four)
    best = np.empty((4, 0), dtype=np.int64)

    def done(bound: int) -> bool:
        return best.shape[1] >= limit and int(best[0, limit - 1]) < bound

    for bound, members in partitions:
        if done(bound):
            break  # every later partition's flows start (and end) after the limit-th match
        pieces: list[tuple[int, int, int]] = []  # (smallest time, file, row group)
        for path in members:
            fi = len(handles)
            handle = _parquet_file(path)
            handles.append(handle)
            arrow = handle.schema_arrow
            if any(c not in arrow.names for c in (*wanted, *keys)):
                return None
            if arrow.field(column).type != ts_type or arrow.field("flow_start").type != ts_type:
                return None
            groups = _row_groups(handle, column, window)
            if groups is None:
                return None
            pieces += [(lowest, fi, rg) for lowest, rg in groups]
        for lowest, fi, rg in sorted(pieces):
            if done(lowest):
                break  # every row group left in this partition starts later
            part = read[(fi, rg)] = handles[fi].read_row_group(rg, columns=keys, use_threads=False)
            rows = _matches(part, flow_filter, window)
            times = part.column(column).cast(pa.int64()).to_numpy()[rows]
            found = np.stack([times, np.full_like(rows, fi), np.full_like(rows, rg), rows])
            merged = np.concatenate([best, found], axis=1)
            best = merged[:, np.lexsort(merged[::-1])[:limit]]
    if best.shape[1] == 0:
        return schema.empty_table()
    # decode the other wanted columns of the row groups that hold the result (up to the
    # last row wanted of each), then put the rows in result order
    pairs = np.unique(best[1:3], axis=1)  # (file, row group) pairs, sorted
    rest = [c for c in wanted if c not in keys]
    pieces_read: list[pa.Table] = []
    offset = np.zeros((len(handles), int(pairs[1].max()) + 1), dtype=np.int64)
    at = 0
    for f, g in zip(pairs[0].tolist(), pairs[1].tolist(), strict=True):
        have = read[(f, g)]
        upto = int(best[3][(best[1] == f) & (best[2] == g)].max()) + 1
        columns = {c: have.column(c).slice(0, upto) for c in keys if c in wanted}
        if rest and upto < have.num_rows:
            batches = handles[f].iter_batches(batch_size=upto, row_groups=[g], columns=rest,
                                              use_threads=False)  # fmt: skip
            columns |= dict(zip(rest, next(iter(batches)).columns, strict=True))
        elif rest:
            more = handles[f].read_row_group(g, columns=rest, use_threads=False)
            columns |= {c: more.column(c) for c in rest}
        pieces_read.append(pa.table([columns[c] for c in wanted], names=wanted))
        offset[f, g] = at
        at += upto
    table = pieces_read[0] if len(pieces_read) == 1 else pa.concat_tables(pieces_read)
    return table.take(pa.array(offset[best[1], best[2]] + best[3]))

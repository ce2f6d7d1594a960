"""Stream a CSV CDR file into usage record batches (constant memory, vectorised).

pyarrow's streaming CSV reader (``open_csv``, 4 MiB blocks) reads
only the mapped columns as strings; :mod:`collectors.cdr.batch` turns them into the usage
schema with Arrow compute and the kernels.
Rows that cannot be used go aside with a reason code; :func:`read_cdr_file` yields one
:class:`CdrChunk` per reader batch holding both.

Line numbers (``source_line``, reject ``record_no``) are 1-based CSV record numbers with the
header as record 1 - the physical line unless an earlier quoted value spans lines. pyarrow
reports the number of each invalid row (wrong column count) when reading single-threaded, and
with ``ignore_empty_lines=False`` a blank line is a row of empty values (dropped and counted as
a blank line, not rejected), so every record is numbered and the number of each good row
follows from the invalid ones before it (:mod:`collectors.cdr.csv_files`). The raw bytes of a
rejected row come from a quote-aware Numba scan of the memory-mapped file that only runs when
a chunk has rejects.

pyarrow cannot pass a malformed row that is not valid text to its handler, so callers should
check the encoding of the whole file first (:func:`collectors.cdr.ingest.ingest_cdr_file` does,
in the same pass as the content hash); otherwise such a file is refused as ``not_csv``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from collectors.cdr.batch import (
    CHUNK_REJECT_SCHEMA,
    MAX_FIELD_BYTES,
    BatchTransformer,
    rejects_from_checks,
)
from collectors.cdr.csv_files import (
    CdrRefusedError,
    RawLines,
    RecordNumbering,
    ScanPoints,
    drop_blank_lines,
    sniff_cdr_file,
)
from collectors.cdr.mapping import CdrMapping
from collectors.schemas import USAGE_SCHEMA

__all__ = [
    "CHUNK_REJECT_SCHEMA",
    "MAX_FIELD_BYTES",
    "READ_BLOCK",
    "CdrChunk",
    "CdrRefusedError",
    "read_cdr_file",
    "sniff_cdr_file",
]

_TRANSFORM_THREADS = 2
#: Bytes of CSV per batch: ~35k CDRs, so the Python around each batch's Arrow and Numba calls
#: stays small; memory stays bounded (a few batches in flight). Not larger: a read buffer of
#: 8 MiB came from fresh pages each block (the kernel zeroing them cost ~0.1 s of CPU per
#: 2M CDRs, and ~120 MB more peak memory).
READ_BLOCK = 4 << 20
_IN_FLIGHT = 2  # batches being transformed while the reader parses the next one


@dataclass
class CdrChunk:
    """One reader batch: usable rows (not yet de-duplicated) and rows put aside."""

    usage: pa.Table
    rejects: pa.Table
    rows_read: int
    skipped: dict[str, int] = field(default_factory=dict)
    blank_lines: int = 0


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def _check_unchanged(path: Path, before: tuple[int, int]) -> None:
    """Refuse a file written to while it was read: its rows (and the hash that names it in
    the ingest ledger) would be of neither version."""
    try:
        after = _identity(path)
    except OSError as exc:
        message = f"{path}: gone while it was read ({exc.strerror})"
        raise CdrRefusedError("changed", message) from exc
    if after != before:
        raise CdrRefusedError(
            "changed",
            f"{path}: the file changed while it was read ({before[0]} -> {after[0]} bytes); "
            "write CDR files elsewhere and move them in when complete",
        )


def read_cdr_file(
    path: Path,
    mapping: CdrMapping,
    *,
    source_name: str | None = None,
    block_size: int = READ_BLOCK,
    is_duplicate: Callable[[np.ndarray], np.ndarray] | None = None,
    trusted_text: bool = False,
) -> Iterator[CdrChunk]:
    """Yield the file's usable rows and its rejected rows, batch by batch.

    ``is_duplicate`` gets each batch's record ids and returns a mask of duplicates; those rows
    are moved to the rejects with reason ``duplicate``. ``trusted_text``: the caller checks
    the file's encoding itself and uses no row of a file that fails (no UTF-8 check per value).

    Raises :class:`CdrRefusedError` for a file that is not this CSV layout (binary, wrong
    header, no line with the mapping's column count, undecodable text). An empty or
    header-only file yields nothing.
    """
    path = Path(path)
    name = source_name or path.name
    header_names = sniff_cdr_file(path, mapping)
    before = _identity(path)
    if path.stat().st_size == 0 or (mapping.csv.header and header_names is None):
        return
    used = mapping.used_columns()
    numbering = RecordNumbering(mapping.csv.header)
    invalid: list[tuple[int, bytes | None, str]] = []
    blank = [0]

    def on_invalid(row: pacsv.InvalidRow) -> str:
        if row.number is None:  # only with use_threads=True, which we never set
            raise CdrRefusedError("internal", f"{path}: pyarrow gave no row number")
        numbering.invalid(row.number)
        text = row.text or ""
        if not text.strip("\r\n"):
            blank[0] += 1
        else:
            raw = text.rstrip("\r\n").encode(mapping.csv.encoding, errors="replace")
            invalid.append(
                (
                    row.number,
                    raw,
                    f"expected {row.expected_columns} columns, found {row.actual_columns}",
                )
            )
        return "skip"

    read_opts = pacsv.ReadOptions(
        use_threads=False,  # keeps InvalidRow.number; the stream is I/O-light anyway
        block_size=block_size,
        column_names=list(mapping.csv.columns) if mapping.csv.columns else None,
        encoding=mapping.csv.encoding
        if mapping.csv.encoding.lower() not in ("utf-8", "utf8")
        else "utf8",
    )
    parse_opts = pacsv.ParseOptions(
        delimiter=mapping.csv.delimiter,
        quote_char=mapping.csv.quote,
        newlines_in_values=True,
        ignore_empty_lines=False,
        invalid_row_handler=on_invalid,
    )
    convert_opts = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in used},
        include_columns=list(used),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        # the ingest checks the whole file's encoding (with its hash, on another thread) and
        # refuses it before any row is written, so the reader need not check every value
        check_utf8=not trusted_text,
    )
    transformer = BatchTransformer(mapping, name)
    # Raw lines are read by forward-only scans: one scanner per transform thread (each takes
    # its chunks in file order) and one for the duplicates, found here in file order.
    points = ScanPoints()  # the scanners skip ahead to where another one got
    raw_lines = RawLines(path, mapping, points)
    scanners: list[RawLines] = [raw_lines]
    local = threading.local()

    def thread_raw_lines() -> RawLines:
        mine: RawLines | None = getattr(local, "raw_lines", None)
        if mine is None:
            mine = local.raw_lines = RawLines(path, mapping, points)
            scanners.append(mine)
        return mine

    def finish(future: Future[CdrChunk]) -> CdrChunk:
        chunk = future.result()
        if is_duplicate is not None and chunk.usage.num_rows:
            _move_duplicates(chunk, is_duplicate, raw_lines)
        return chunk

    try:
        try:
            reader = pacsv.open_csv(
                path,
                read_options=read_opts,
                parse_options=parse_opts,
                convert_options=convert_opts,
            )
        except pa.ArrowException as exc:
            if "Empty CSV file" in str(exc):
                return
            raise CdrRefusedError("not_csv", f"{path}: not readable as CSV: {exc}") from exc
        # The CSV reader (this thread) runs ahead of the transforms (two worker threads: Arrow
        # compute and the Numba kernels release the GIL, so parsing, transforms and the Parquet
        # writer share both cores). Chunks are yielded in file order, at most _IN_FLIGHT
        # transformed at once; record numbers and malformed rows are taken here in read order,
        # and duplicates are found in file order as each chunk is yielded (first one wins).
        with ThreadPoolExecutor(
            max_workers=_TRANSFORM_THREADS, thread_name_prefix="cdr-transform"
        ) as pool:
            pending: deque[Future[CdrChunk]] = deque()
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    batch = None
                    _check_unchanged(path, before)
                except (pa.ArrowException, UnicodeDecodeError) as exc:
                    text = str(exc)
                    if "straddl" in text:  # Arrow's words for a record longer than a block
                        after = numbering.first + numbering.good_seen + len(numbering.gaps) - 1
                        raise CdrRefusedError(
                            "record_too_long",
                            f"{path}: the record after line {after} is longer than the "
                            f"{block_size >> 20} MiB read block",
                        ) from exc
                    reason = "bad_encoding" if "UTF8" in text or "decode" in text else "not_csv"
                    raise CdrRefusedError(reason, f"{path}: cannot read CSV: {exc}") from exc
                lines = numbering.good(batch.num_rows) if batch is not None else None
                bad_rows, blanks = list(invalid), blank[0]
                invalid.clear()
                blank[0] = 0
                if batch is not None or bad_rows or blanks:
                    pending.append(
                        pool.submit(
                            _chunk, batch, lines, transformer, thread_raw_lines, bad_rows, blanks
                        )
                    )
                while len(pending) > (_IN_FLIGHT if batch is not None else 0):
                    yield finish(pending.popleft())
                if batch is None:
                    break
    finally:
        for scanner in scanners:
            scanner.close()


def _duplicates(usage: pa.Table, dup: np.ndarray) -> pa.Table:
    rows = usage.filter(pa.array(dup))
    keys = rows.column("record_key").to_pylist()
    return pa.table(
        {
            "record_no": rows.column("source_line"),
            "record_id": rows.column("record_id"),
            "field": pa.repeat(pa.scalar("record_key"), rows.num_rows),
            "reason": pa.repeat(pa.scalar("duplicate"), rows.num_rows),
            "message": pa.array(
                [f"record key {k!r} was already ingested (earlier file or line)" for k in keys],
                pa.string(),
            ),
            "raw": pa.nulls(rows.num_rows, pa.binary()),
        },
        schema=CHUNK_REJECT_SCHEMA,
    )


def _move_duplicates(
    chunk: CdrChunk, is_duplicate: Callable[[np.ndarray], np.ndarray], raw_lines: RawLines
) -> None:
    """Move the rows whose record id ``is_duplicate`` flags from usage to the rejects."""
    dup = np.asarray(is_duplicate(chunk.usage.column("record_id").to_numpy()), dtype=np.bool_)
    if not dup.any():
        return
    rejects = _duplicates(chunk.usage, dup)
    raws = raw_lines.fetch(rejects.column("record_no").to_numpy())
    rejects = rejects.set_column(5, "raw", pa.array(raws, pa.binary()))
    chunk.usage = chunk.usage.filter(pa.array(~dup))
    chunk.rejects = pa.concat_tables([chunk.rejects, rejects])


def _chunk(
    batch: pa.RecordBatch | None,
    lines: np.ndarray | None,
    transformer: BatchTransformer,
    thread_raw_lines: Callable[[], RawLines],
    invalid: list[tuple[int, bytes | None, str]],
    blank_lines: int,
) -> CdrChunk:
    """Transform one batch (record numbers ``lines``) and add the malformed rows given."""
    parts: list[pa.Table] = []
    skipped: dict[str, int] = {}
    rows_read = len(invalid)
    usage = USAGE_SCHEMA.empty_table()
    if batch is not None and lines is not None and batch.num_rows:
        batch, lines, blank_rows = drop_blank_lines(batch, lines, thread_raw_lines)
        blank_lines += blank_rows
    if batch is not None and lines is not None and batch.num_rows:
        usage, checks = transformer.run(batch, lines)
        rejects, skipped = rejects_from_checks(batch, lines, checks)
        if rejects.num_rows:
            raws = thread_raw_lines().fetch(rejects.column("record_no").to_numpy())
            rejects = rejects.set_column(5, "raw", pa.array(raws, pa.binary()))
        parts.append(rejects)
        rows_read += batch.num_rows
    if invalid:
        parts.append(
            pa.table(
                {
                    "record_no": pa.array([r[0] for r in invalid], pa.int64()),
                    "record_id": pa.nulls(len(invalid), pa.int64()),
                    "field": pa.nulls(len(invalid), pa.string()),
                    "reason": pa.array(["malformed_row"] * len(invalid), pa.string()),
                    "message": pa.array([r[2] for r in invalid], pa.string()),
                    "raw": pa.array([r[1] for r in invalid], pa.binary()),
                },
                schema=CHUNK_REJECT_SCHEMA,
            )
        )
    return CdrChunk(
        usage=usage,
        rejects=pa.concat_tables(parts) if parts else CHUNK_REJECT_SCHEMA.empty_table(),
        rows_read=rows_read,
        skipped=skipped,
        blank_lines=blank_lines,
    )

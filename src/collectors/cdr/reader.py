"""Stream a CSV CDR file into usage record batches (constant memory, vectorised).

pyarrow's streaming CSV reader (``open_csv``, 8 MiB blocks) reads only the mapped columns as
strings; :mod:`collectors.cdr.transforms` turns them into the usage schema with Arrow compute.
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
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from collectors.cdr.csv_files import (
    CdrRefusedError,
    RawLines,
    RecordNumbering,
    ScanPoints,
    drop_blank_lines,
    sniff_cdr_file,
)
from collectors.cdr.kernels import record_ids
from collectors.cdr.mapping import CdrMapping
from collectors.cdr.transforms import (
    compose_key,
    map_values,
    none_if_empty,
    normalise_numbers,
    parse_duration_ms,
    parse_price,
    parse_times,
    parse_unsigned,
)
from collectors.schemas import TIMESTAMP, USAGE_PRICED_SCHEMA, USAGE_SCHEMA

__all__ = [
    "CHUNK_REJECT_SCHEMA",
    "MAX_FIELD_BYTES",
    "READ_BLOCK",
    "CdrChunk",
    "CdrRefusedError",
    "read_cdr_file",
    "sniff_cdr_file",
]

#: Rejects as produced per chunk; the ingest adds stage, source_file and rejected_at.
CHUNK_REJECT_SCHEMA = pa.schema(
    [
        pa.field("record_no", pa.int64()),
        pa.field("record_id", pa.int64()),
        pa.field("field", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("message", pa.string()),
        pa.field("raw", pa.binary()),
    ]
)
_MAX_MSISDN = 15
#: Longest field accepted (bytes); a longer one rejects its row with ``field_too_long``.
MAX_FIELD_BYTES = 4096
_TRANSFORM_THREADS = 2
#: Bytes of CSV per batch: ~70k CDRs, so the ~1.7 ms of Python around each batch's Arrow and
#: Numba calls stays small; memory stays bounded (a few batches in flight).
READ_BLOCK = 8 << 20
_IN_FLIGHT = 2  # batches being transformed while the reader parses the next one


@dataclass
class CdrChunk:
    """One reader batch: usable rows (not yet de-duplicated) and rows put aside."""

    usage: pa.Table
    rejects: pa.Table
    rows_read: int
    skipped: dict[str, int] = field(default_factory=dict)
    blank_lines: int = 0


@dataclass
class _Check:
    mask: np.ndarray
    field: str
    column: str | None
    reason: str
    what: str
    skip: bool = False  # a filter with action "skip": counted, written nowhere


def _mask(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=np.bool_)


def _valid_mask(arr: pa.Array) -> np.ndarray:
    """Where ``arr`` is not null (no compute call when it has no nulls: the usual batch)."""
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=np.bool_)
    return _mask(pc.is_valid(arr))


def _longer_than(arr: pa.Array, limit: int) -> np.ndarray:
    """Where a value is longer than ``limit`` bytes; one max() decides for a clean batch."""
    lengths = pc.binary_length(arr)
    if (pc.max(lengths).as_py() or 0) <= limit:
        return np.zeros(len(arr), dtype=np.bool_)
    return _mask(pc.greater(lengths, limit))


def _const(value: str | None, n: int) -> pa.Array:
    return pa.nulls(n, pa.string()) if value is None else pa.repeat(pa.scalar(value), n)


class _BatchTransformer:
    """Turns one batch of string columns into usage rows and rejects."""

    def __init__(self, mapping: CdrMapping, source_name: str) -> None:
        self.m = mapping
        self.source_name = source_name
        self._consts: dict[str, pa.Array] = {}

    def const(self, value: str | None, n: int) -> pa.Array:
        """``value`` n times: a slice of one array per value made once (repeating a string
        for every batch cost ~15 ns a row); transform threads share it read-only."""
        if value is None:
            return _const(None, n)
        made = self._consts.get(value)
        if made is None or len(made) < n:
            made = self._consts[value] = _const(value, n)
        return made.slice(0, n)

    def run(self, batch: pa.RecordBatch, lines: np.ndarray) -> tuple[pa.Table, list[_Check]]:
        m = self.m
        n = batch.num_rows
        col = {name: batch.column(name) for name in batch.schema.names}
        raw = {name: none_if_empty(a) for name, a in col.items()}
        checks: list[_Check] = []

        present_masks: dict[str, np.ndarray] = {}

        def present(c: str) -> np.ndarray:
            if c not in present_masks:
                present_masks[c] = _valid_mask(raw[c])
            return present_masks[c]

        for flt in m.filters:
            accepted = pc.is_in(raw[flt.column], value_set=pa.array(flt.accept, pa.string()))
            checks.append(
                _Check(
                    ~_mask(accepted),
                    flt.column,
                    flt.column,
                    flt.reason,
                    f"not one of {', '.join(flt.accept)}",
                    skip=flt.action == "skip",
                )
            )

        def required(field_name: str, column: str | None) -> None:
            if column is not None:
                checks.append(
                    _Check(~present(column), field_name, column, "missing_field", "empty")
                )

        for c in m.record_key.columns:
            required("record_key", c)
        required("subscriber", m.subscriber.column)
        required("service", m.service.column)
        required("start_time", m.start_time.column)
        for fname in ("duration", "volume_up", "volume_down", "destination", "origin", "location",
                      "price"):  # fmt: skip
            spec = getattr(m, fname)
            if spec.required:
                required(fname, spec.column)

        for c in m.used_columns():  # a field this long is garbage, whichever field it is
            checks.append(
                _Check(
                    _longer_than(col[c], MAX_FIELD_BYTES),
                    c,
                    c,
                    "field_too_long",
                    f"longer than {MAX_FIELD_BYTES} bytes",
                )
            )

        def bad(field_name: str, column: str, parsed: pa.Array, reason: str, what: str) -> None:
            mask = present(column) & ~_valid_mask(parsed)
            checks.append(_Check(mask, field_name, column, reason, what))

        sub_col = m.subscriber.column
        subscriber = normalise_numbers(raw[sub_col], m.subscriber.normalise, m.numbers)
        if m.subscriber.key_type in ("msisdn", "imsi"):
            no_number = pa.scalar(None, pa.string())
            if m.subscriber.normalise in ("digits", "e164"):
                # the normalised text is ASCII digits or null already: only the length can fail
                lengths = pc.binary_length(subscriber)
                if (pc.max(lengths).as_py() or 0) > _MAX_MSISDN:
                    subscriber = pc.if_else(
                        pc.less_equal(lengths, _MAX_MSISDN), subscriber, no_number
                    )
            else:
                digits_ok = pc.and_(
                    pc.utf8_is_digit(subscriber),
                    pc.less_equal(pc.utf8_length(subscriber), _MAX_MSISDN),
                )
                subscriber = pc.if_else(digits_ok, subscriber, no_number)
        bad("subscriber", sub_col, subscriber, "bad_number", f"not a {m.subscriber.key_type}")

        if m.service.column is not None:
            service = map_values(raw[m.service.column], m.service.values)
            bad("service", m.service.column, service, "bad_service", "unknown service")
        else:
            service = self.const(m.service.constant, n)

        ts_spec = m.start_time
        start = parse_times(raw[ts_spec.column], ts_spec)
        bad(
            "start_time",
            ts_spec.column,
            start,
            "bad_time",
            f"not a valid {ts_spec.format} time in {ts_spec.zone}",
        )

        duration = pa.repeat(pa.scalar(0, pa.int64()), n)
        if m.duration.column is not None:
            duration = parse_duration_ms(raw[m.duration.column], m.duration.unit)
            bad(
                "duration",
                m.duration.column,
                duration,
                "bad_number",
                f"not a {m.duration.unit} duration",
            )
            negative = _mask(pc.less(duration, 0))
            checks.append(
                _Check(negative, "duration", m.duration.column, "negative_duration", "negative")
            )
            duration = pc.fill_null(duration, 0)

        volumes: dict[str, pa.Array] = {}
        for vname in ("volume_up", "volume_down"):
            vspec = getattr(m, vname)
            if vspec.column is None:
                volumes[vname] = pa.repeat(pa.scalar(0, pa.uint64()), n)
                continue
            vol = parse_unsigned(raw[vspec.column])
            bad(vname, vspec.column, vol, "bad_number", "not a non-negative byte count")
            volumes[vname] = pc.fill_null(vol, 0)

        numbers: dict[str, pa.Array] = {}
        for nname in ("destination", "origin"):
            nspec = getattr(m, nname)
            numbers[nname] = (
                _const(None, n)
                if nspec.column is None
                else normalise_numbers(raw[nspec.column], nspec.normalise, m.numbers)
            )
        loc = m.location
        location = raw[loc.column] if loc.column is not None else self.const(loc.constant, n)
        price = None
        if m.price.column is not None:  # issue #25: the price a pass-through rate charges
            price = parse_price(raw[m.price.column], m.price.unit)
            what = "a decimal price" if m.price.unit == "currency" else "integer micro-units"
            bad("price", m.price.column, price, "bad_price", f"not {what}")

        rejected = np.zeros(n, dtype=np.bool_)
        for chk in checks:
            rejected |= chk.mask
        good_mask = pa.array(~rejected)

        def good(arr: pa.Array) -> pa.Array:
            # the usual batch has no bad row: its columns are used as they are, not copied
            return pc.filter(arr, good_mask) if rejected.any() else arr

        key = compose_key([good(raw[c]) for c in m.record_key.columns], m.record_key.prefix)
        if key.null_count:  # only if a key column has null, which `required` rejected
            raise AssertionError("record key null after checks")
        n_good = len(key)
        table = pa.Table.from_arrays(
            [
                pa.array(record_ids(key), pa.int64()),
                key,
                self.const(self.source_name, n_good),
                pa.array(lines[~rejected], pa.int64()),
                good(subscriber),
                self.const(m.subscriber.key_type, n_good),
                good(service),
                good(start).cast(TIMESTAMP),
                good(duration).cast(pa.int64()),
                good(volumes["volume_up"]),
                good(volumes["volume_down"]),
                good(numbers["destination"]),
                good(numbers["origin"]),
                good(location).cast(pa.string()),
                *([] if price is None else [good(price)]),
            ],
            schema=USAGE_SCHEMA if price is None else USAGE_PRICED_SCHEMA,
        )
        return table, checks


def _rejects_from_checks(
    batch: pa.RecordBatch, lines: np.ndarray, checks: list[_Check]
) -> tuple[pa.Table, dict[str, int]]:
    """First failing check per row -> reject rows (raw filled later); skip-filters counted."""
    n = batch.num_rows
    which = np.full(n, -1, dtype=np.int64)
    taken = np.zeros(n, dtype=np.bool_)
    for i, chk in enumerate(checks):
        new = chk.mask & ~taken
        which[new] = i
        taken |= chk.mask
    rows: dict[str, list[object]] = {k: [] for k in ("record_no", "field", "reason", "message")}
    skipped: dict[str, int] = {}
    for i, chk in enumerate(checks):
        idx = np.flatnonzero(which == i)
        if idx.size == 0:
            continue
        if chk.skip:
            skipped[chk.reason] = skipped.get(chk.reason, 0) + int(idx.size)
            continue
        values = (
            batch.column(chk.column).take(pa.array(idx)).to_pylist()
            if chk.column is not None
            else [None] * idx.size
        )
        for line, value in zip(lines[idx].tolist(), values, strict=True):
            rows["record_no"].append(line)
            rows["field"].append(chk.field)
            rows["reason"].append(chk.reason)
            where = chk.field if chk.field == chk.column else f"{chk.field} (column {chk.column})"
            shown = repr(value) if value is None or len(value) <= 200 else f"{value[:200]!r}..."
            rows["message"].append(f"{where}: {chk.what}: {shown}")
    table = pa.table(
        {
            "record_no": pa.array(rows["record_no"], pa.int64()),
            "record_id": pa.nulls(len(rows["record_no"]), pa.int64()),
            "field": pa.array(rows["field"], pa.string()),
            "reason": pa.array(rows["reason"], pa.string()),
            "message": pa.array(rows["message"], pa.string()),
            "raw": pa.nulls(len(rows["record_no"]), pa.binary()),
        },
        schema=CHUNK_REJECT_SCHEMA,
    )
    return table, skipped


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
    transformer = _BatchTransformer(mapping, name)
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
                path, read_options=read_opts, parse_options=parse_opts, convert_options=convert_opts
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
    transformer: _BatchTransformer,
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
        rejects, skipped = _rejects_from_checks(batch, lines, checks)
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

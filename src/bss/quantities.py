"""Quantity-change CSV files into ``W/quantities`` (issue #25): ``rating-engine ingest
quantities``.

A file has a header naming the columns ``product`` (the product number, as order items and
``orders products`` name it), ``metric``, ``valid_from`` (ISO 8601 date-time with an offset or
``Z``; a date alone is 00:00 UTC) and ``change`` (a signed integer); other columns are ignored.
Each good row becomes one :data:`~rating_engine.rating.prorated.QUANTITY_CHANGE_SCHEMA` record
of the product's subscription (a product *is* the subscription the rating layer prices, so the
subscription id is the product number once the database knows the product).

The record id is a hash of the row's parsed content and its line number (not the file name), so
ingesting the same file again - under any name, or after an interruption - finds every record
already in ``W/quantities`` and adds nothing; a file that grew adds only its new rows. Two
identical rows on different lines are two records.

Bad rows go to ``W/rejected`` (stage ``ingest``, the CDR ingest's reject dataset) naming file,
line, field and reason, and are counted; the good rows beside them are written. Reasons:
``bad_number`` (product or change not an integer), ``unknown_product``, ``missing_field`` (an
empty field), ``field_too_long`` (metric), ``bad_time``, ``quantity_out_of_range`` (|change| >
:data:`~rating_engine.rating.prorated.MAX_CHANGE`), ``bad_row`` (wrong number of fields). A file
that is not UTF-8 or lacks a column is refused whole (nothing written).

Every Parquet file is written atomically (temporary file, fsync, rename) under part names made
from the file's content hash, so a rerun after a crash rewrites the same parts, never doubles
them. Ingests of one workspace are serialised by the CDR ingest's lock.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from collectors.cdr.ingest import FileTotals
from collectors.cdr.ledger import file_digest, ingest_lock
from collectors.dataset import dataset_files, read_dataset, write_partitioned
from collectors.errors import IngestError
from collectors.schemas import REJECT_SCHEMA, TIMESTAMP
from collectors.workspace import WorkspacePaths
from rating_engine.rating.prorated import MAX_CHANGE, QUANTITY_CHANGE_SCHEMA

__all__ = [
    "CSV_COLUMNS",
    "QuantityFileResult",
    "QuantityIngestSummary",
    "ingest_quantity_files",
    "parse_valid_from",
    "quantity_record_id",
]

#: The columns a quantity-change CSV must have (in any order).
CSV_COLUMNS = ("product", "metric", "valid_from", "change")
_MAX_METRIC = 256
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class QuantityFileResult:
    """What happened to one file. ``status``: ingested, empty or refused."""

    path: str
    status: str
    sha256: str | None = None
    rows_read: int = 0
    ingested: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    refused_reason: str | None = None
    message: str = ""


@dataclass(frozen=True)
class QuantityIngestSummary(FileTotals):
    """Per-file results of one :func:`ingest_quantity_files` call, with totals."""

    files: tuple[QuantityFileResult, ...]

    def rejected_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            for reason, count in f.rejected.items():
                out[reason] = out.get(reason, 0) + count
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` output."""
        return {
            "files": [asdict(f) for f in self.files],
            "rows_read": self.rows_read,
            "ingested": self.ingested,
            "duplicates": self.duplicates,
            "rejected": sum(self.rejected_by_reason().values()),
            "rejected_by_reason": self.rejected_by_reason(),
            "refused": {f.path: f.refused_reason for f in self.refused},
        }

    def format_text(self) -> str:
        """One line per file, then the totals."""
        lines = self.file_lines("already ingested")
        reasons = ", ".join(f"{r} {c}" for r, c in self.rejected_by_reason().items())
        lines.append(
            f"total: read {self.rows_read}, ingested {self.ingested}, already ingested "
            f"{self.duplicates}, rejected {sum(self.rejected_by_reason().values())}, refused "
            f"files {len(self.refused)}" + (f"; kept out: {reasons}" if reasons else "")
        )
        return "\n".join(lines)


def quantity_record_id(
    product: int, metric: str, valid_from_us: int, change: int, line: int
) -> int:
    """A non-negative int64 id of a row's parsed content and line number (BLAKE2b, 63 bits)."""
    text = f"{product}\x1f{metric}\x1f{valid_from_us}\x1f{change}\x1f{line}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 1


def parse_valid_from(text: str) -> datetime:
    """An ISO 8601 date-time with an offset or ``Z`` (a date alone: 00:00 UTC), in UTC.
    Raises ValueError for anything else, a date-time without an offset included."""
    text = text.strip()
    if _DATE_ONLY.fullmatch(text):
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("no UTC offset (add Z or +HH:MM)")
    return value.astimezone(UTC)


class _RefusedError(IngestError):
    """A whole file refused, with a machine-readable ``reason``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Rejects:
    """The rejected rows of one file, as REJECT_SCHEMA rows."""

    def __init__(self, name: str, now: datetime) -> None:
        self.name = name
        self.now = now
        self.rows: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}

    def add(self, line: int, fieldname: str | None, reason: str, message: str, raw: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        where = f"{self.name} line {line}" + (f" field {fieldname}" if fieldname else "")
        self.rows.append({
            "stage": "ingest", "source_file": self.name, "record_no": line, "record_id": None,
            "field": fieldname, "reason": reason, "message": f"{where}: {message}",
            "raw": raw.encode("utf-8"), "rejected_at": self.now,
        })  # fmt: skip


class _Lines:
    """The file's physical lines as the CSV reader consumes them, so that a rejected
    record keeps its text as it was in the file (a quoted field may span lines)."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.taken: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line: str = next(self._fh)
        self.taken.append(line)
        return line

    def record(self) -> str:
        """The lines read since the last call, without the final line break."""
        text = "".join(self.taken)
        self.taken.clear()
        return text.rstrip("\r\n")


def _parse_row(
    values: dict[str, str], products: set[int]
) -> tuple[tuple[int, str, int, int] | None, tuple[str, str, str] | None]:
    """(product, metric, valid_from us, change) or (field, reason, message) of the first
    fault, fields checked in column order."""
    product_text = values["product"].strip()
    if not product_text:
        return None, ("product", "missing_field", "empty")
    if not _INTEGER.fullmatch(product_text):
        return None, ("product", "bad_number", f"{product_text!r} is not a product number")
    product = int(product_text)
    if product not in products:
        return None, ("product", "unknown_product", f"no product {product}")
    metric = values["metric"].strip()
    if not metric:
        return None, ("metric", "missing_field", "empty")
    if len(metric) > _MAX_METRIC:
        return None, ("metric", "field_too_long", f"longer than {_MAX_METRIC} characters")
    when_text = values["valid_from"].strip()
    if not when_text:
        return None, ("valid_from", "missing_field", "empty")
    try:
        when = parse_valid_from(when_text)
    except ValueError as exc:
        return None, ("valid_from", "bad_time", f"{when_text!r} is not an ISO 8601 time: {exc}")
    valid_us = (when - _EPOCH) // timedelta(microseconds=1)
    change_text = values["change"].strip()
    if not change_text:
        return None, ("change", "missing_field", "empty")
    if not _INTEGER.fullmatch(change_text):
        return None, ("change", "bad_number", f"{change_text!r} is not a signed integer")
    change = int(change_text)
    if abs(change) > MAX_CHANGE:
        return None, ("change", "quantity_out_of_range", f"{change} is beyond +-{MAX_CHANGE}")
    return (product, metric, valid_us, change), None


def _read_file(
    path: Path, products: set[int], rejects: _Rejects
) -> tuple[list[dict[str, Any]], int]:
    """The good records of a file (ids computed) and the number of data rows read."""
    records: list[dict[str, Any]] = []
    rows_read = 0
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            lines = _Lines(fh)
            reader = csv.reader(lines)
            header: list[str] | None = None
            line = 0
            for row in reader:
                start, line = line + 1, reader.line_num
                raw = lines.record()
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                if header is None:
                    header = [c.strip().lower() for c in row]
                    missing = [c for c in CSV_COLUMNS if c not in header]
                    if missing:
                        raise _RefusedError(
                            "bad_header",
                            f"{path}: line {start}: header lacks column(s) {', '.join(missing)} "
                            f"(needs {', '.join(CSV_COLUMNS)})",
                        )
                    continue
                rows_read += 1
                if len(row) != len(header):
                    found = f"{len(row)} fields, the header has {len(header)}"
                    rejects.add(start, None, "bad_row", found, raw)
                    continue
                parsed, fault = _parse_row(dict(zip(header, row, strict=True)), products)
                if fault is not None:
                    rejects.add(start, fault[0], fault[1], fault[2], raw)
                    continue
                assert parsed is not None
                product, metric, valid_us, change = parsed
                records.append({
                    "record_id": quantity_record_id(product, metric, valid_us, change, start),
                    "subscription_id": product, "metric": metric,
                    "valid_from": valid_us, "change": change,
                })  # fmt: skip
    except csv.Error as exc:
        raise _RefusedError("bad_csv", f"{path}: not a CSV file: {exc}") from exc
    except OSError as exc:
        raise _RefusedError("unreadable", f"{path}: cannot read: {exc.strerror}") from exc
    return records, rows_read


def _existing_ids(workspace: WorkspacePaths) -> set[int]:
    table = read_dataset(workspace.quantities, QUANTITY_CHANGE_SCHEMA, columns=["record_id"])
    return set(pc.cast(table.column("record_id"), pa.int64()).to_pylist())


def _ingest_file(
    path: Path,
    workspace: WorkspacePaths,
    products: set[int],
    known: set[int],
    now: datetime,
) -> QuantityFileResult:
    if not path.is_file():
        raise _RefusedError("unreadable", f"{path}: not a readable file")
    sha, bad_at = file_digest(path, encoding="utf-8")
    if bad_at is not None:
        raise _RefusedError("bad_encoding", f"{path}: not UTF-8 text at byte {bad_at}")
    rejects = _Rejects(path.name, now)
    records, rows_read = _read_file(path, products, rejects)
    fresh = [r for r in records if r["record_id"] not in known]
    part = f"quantities-{sha[:16]}"
    if fresh:
        table = pa.Table.from_pydict(
            {name: [r[name] for r in fresh] for name in QUANTITY_CHANGE_SCHEMA.names},
            schema=QUANTITY_CHANGE_SCHEMA.set(3, pa.field("valid_from", pa.int64(), False)),
        )
        table = table.set_column(3, QUANTITY_CHANGE_SCHEMA.field("valid_from"),
                                 pc.cast(table.column("valid_from"), TIMESTAMP))  # fmt: skip
        write_partitioned(table, workspace.quantities, time_column="valid_from", part_name=part)
        known.update(r["record_id"] for r in fresh)
    reject_part = f"part-{part}-r.parquet"
    kept_before = any(p.name == reject_part for p in dataset_files(workspace.rejected))
    if rejects.rows and not kept_before:  # the same file's rejects are kept aside once
        write_partitioned(
            pa.Table.from_pylist(rejects.rows, schema=REJECT_SCHEMA),
            workspace.rejected, time_column="rejected_at", part_name=f"{part}-r",
        )  # fmt: skip
    return QuantityFileResult(
        path=str(path),
        status="ingested" if rows_read else "empty",
        sha256=sha,
        rows_read=rows_read,
        ingested=len(fresh),
        duplicates=len(records) - len(fresh),
        rejected=dict(sorted(rejects.counts.items())),
    )


def ingest_quantity_files(
    conn: duckdb.DuckDBPyConnection, paths: Sequence[Path], workspace: WorkspacePaths
) -> QuantityIngestSummary:
    """Ingest quantity-change CSV files into ``W/quantities`` (see the module docstring).
    Never raises for a refused file: it is listed in the summary with its reason."""
    workspace.ensure()
    products = {int(r[0]) for r in conn.execute("SELECT id FROM product").fetchall()}
    now = datetime.now(UTC).replace(microsecond=0)
    results: list[QuantityFileResult] = []
    with ingest_lock(workspace):
        known = _existing_ids(workspace)
        for path in paths:
            try:
                results.append(_ingest_file(Path(path), workspace, products, known, now))
            except IngestError as exc:
                reason = exc.reason if isinstance(exc, _RefusedError) else "unreadable"
                results.append(QuantityFileResult(
                    path=str(path), status="refused", refused_reason=reason, message=str(exc),
                ))  # fmt: skip
    return QuantityIngestSummary(tuple(results))

"""Ingest CSV CDR files into ``W/usage``: mapping, de-duplication, rejects, exactly-once commit.

For each file: its content hash is looked up in the ingest ledger (same content under any name
is refused and adds nothing); rows stream through :func:`collectors.cdr.reader.read_cdr_file`; a
record whose ``record_id`` is already in ``W/usage``, or earlier in the same run, goes to
``W/rejected`` with reason ``duplicate``; parts are staged, the ledger entry is committed and
the parts are published (:mod:`collectors.cdr.ledger`). Refusals are per file: the summary
lists them and the other files go on.

Files without any data row (empty, header only, blank lines) are reported as ``empty`` and not
recorded in the ledger, so a later empty file is not "already ingested" - nothing is written
for them either way.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from collectors.cdr.kernels import IdSet
from collectors.cdr.ledger import (
    QUARANTINED,
    IngestLedger,
    LedgerEntry,
    committed_ids,
    file_digest,
    ingest_lock,
    part_prefix,
    publish,
    recover,
    staging_dir,
)
from collectors.cdr.mapping import CdrMapping
from collectors.cdr.reader import (
    READ_BLOCK,
    CdrChunk,
    CdrRefusedError,
    read_cdr_file,
    sniff_cdr_file,
)
from collectors.dataset import naming_path
from collectors.errors import IngestError
from collectors.schemas import REJECT_SCHEMA, TIMESTAMP
from collectors.workspace import WorkspacePaths

__all__ = [
    "CdrFileResult",
    "CdrIngestSummary",
    "FileTotals",
    "ingest_cdr_file",
    "ingest_cdr_files",
    "recover_cdr_ingest",
    "write_by_day",
]

_US_PER_DAY = 86_400_000_000
_MAX_BLOCK = 256 << 20  # largest read block tried for a file with a very long record
_PARTS_IN_FLIGHT = 2  # usage parts being written at once
_MIN_SPLIT = 50_000  # rows: the last part of a file is written in two halves from twice this
# dictionary-encode only the columns with few distinct values: cheaper and smaller files
_DICTIONARY_COLUMNS = (
    "source_file", "subscriber_key_type", "service", "location", "stage", "reason", "field"
)  # fmt: skip
# min/max statistics only where a reader prunes row groups by them (a file, lines, times):
# the others (free text, hashes, counts, a few services) never prune one, and the usage
# columns' statistics cost ~10% of the write
_STATISTICS = frozenset(
    ("source_file", "source_line", "start_time", "stage", "record_no", "reason", "rejected_at")
)
# line numbers and times in file order: deltas of a few bits instead of 8 bytes a value;
# durations (ms, under 2^22 for an hour): bit-packed to their width, smaller than LZ4's
# plain pages and about half their CPU
_DELTA_COLUMNS = ("source_line", "start_time", "duration_ms")
#: Usage parts: LZ4 pages cost ~1/4 less CPU to write than zstd (and about half to scan, as
#: for `ingest nfcapd`), for ~1.5x the bytes on random numbers (less where subscribers
#: repeat). Rejected rows keep zstd: raw text, rarely read, compresses well.
USAGE_COMPRESSION = "lz4"


@dataclass(frozen=True)
class CdrFileResult:
    """What happened to one file. ``status``: ingested, empty or refused."""

    path: str
    status: str
    sha256: str | None = None
    rows_read: int = 0
    ingested: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    blank_lines: int = 0
    refused_reason: str | None = None
    message: str = ""


class FileTotals:
    """Totals over the per-file results (``files``: each with ``rows_read``, ``ingested``,
    ``duplicates`` and ``status``) of an ingest of files: CDRs, quantity changes."""

    files: tuple[Any, ...]

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def ingested(self) -> int:
        return sum(f.ingested for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def refused(self) -> tuple[Any, ...]:
        return tuple(f for f in self.files if f.status == "refused")

    def file_lines(self, duplicates: str) -> list[str]:
        """One report line per file (``duplicates``: what the repeated rows are called)."""
        lines = []
        for f in self.files:
            if f.status == "refused":
                lines.append(f"REFUSED ({f.refused_reason}): {f.message}")
                continue
            kept_out = ", ".join(f"{r} {c}" for r, c in sorted(f.rejected.items()))
            lines.append(
                f"{f.path}: {f.status}, read {f.rows_read}, ingested {f.ingested}, "
                f"{duplicates} {f.duplicates}" + (f", rejected: {kept_out}" if kept_out else "")
            )
        return lines


@dataclass(frozen=True)
class CdrIngestSummary(FileTotals):
    """Per-file results of one :func:`ingest_cdr_files` call, with totals."""

    files: tuple[CdrFileResult, ...]
    rolled_forward: int = 0
    rolled_back: int = 0

    def rejected_by_reason(self) -> dict[str, int]:
        """Rows kept out, per reason, ``duplicate`` included."""
        out: dict[str, int] = {}
        for f in self.files:
            for reason, count in [*f.rejected.items(), ("duplicate", f.duplicates)]:
                if count:
                    out[reason] = out.get(reason, 0) + count
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` output."""
        return {
            "files": [asdict(f) for f in self.files],
            "rows_read": self.rows_read,
            "ingested": self.ingested,
            "duplicates": self.duplicates,
            "rejected_by_reason": self.rejected_by_reason(),
            "refused": {f.path: f.refused_reason for f in self.refused},
            "rolled_forward": self.rolled_forward,
            "rolled_back": self.rolled_back,
        }

    def format_text(self) -> str:
        """A short report for people, one line per file then the totals per reason."""
        lines = self.file_lines("duplicates")
        reasons = ", ".join(f"{r} {c}" for r, c in self.rejected_by_reason().items())
        lines.append(
            f"total: read {self.rows_read}, ingested {self.ingested}, "
            f"refused files {len(self.refused)}" + (f"; kept out: {reasons}" if reasons else "")
        )
        return "\n".join(lines)


def _write_part(table: pa.Table, path: Path, compression: str) -> Path:
    """Write one staged part (invisible until published, so no temp name) and fsync it."""
    low_cardinality = [c for c in _DICTIONARY_COLUMNS if c in table.column_names]
    delta = {c: "DELTA_BINARY_PACKED" for c in _DELTA_COLUMNS if c in table.column_names}
    with naming_path(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            table, path, compression=compression, use_dictionary=low_cardinality,
            write_statistics=[c for c in table.column_names if c in _STATISTICS],
            write_page_checksum=True, column_encoding=delta or None,
        )  # fmt: skip
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
    return path


def write_by_day(
    table: pa.Table, root: Path, *, time_column: str, part_name: str, compression: str = "zstd"
) -> list[Path]:
    """Write ``table`` as ``root/date=YYYY-MM-DD/part-<part_name>.parquet`` files (UTC days).

    The layout of :func:`collectors.dataset.write_partitioned`; the day comes from integer
    division of the microsecond times (``strftime`` costs ~0.5 us a row), and rows are only
    reordered when their days are not already in order (CDR files usually are).
    """
    if table.num_rows == 0:
        return []
    micros = pc.cast(table.column(time_column), pa.int64()).to_numpy()
    days = np.floor_divide(micros, _US_PER_DAY)
    if days.size > 1 and np.any(days[1:] < days[:-1]):
        order = np.argsort(days, kind="stable")
        table = table.take(pa.array(order))
        days = days[order]
    cuts = np.flatnonzero(np.diff(days)) + 1
    bounds = [0, *cuts.tolist(), int(days.size)]
    written = []
    for lo, hi in itertools.pairwise(bounds):
        day = dt.date(1970, 1, 1) + dt.timedelta(days=int(days[lo]))
        folder = root / f"date={day.isoformat()}"
        part = folder / f"part-{part_name}.parquet"
        written.append(_write_part(table.slice(lo, hi - lo), part, compression))
    return written


class _FileIngest:
    """Stages one file's usage and reject parts while its chunks stream by."""

    def __init__(
        self,
        path: Path,
        place: _Placement,
        now: dt.datetime,
        rows_per_part: int,
    ) -> None:
        self.path = path
        self.place = place
        self.now = now
        self.rows_per_part = rows_per_part
        self.usage: list[pa.Table] = []
        self.usage_rows = 0
        self.rejects: list[pa.Table] = []
        self.reject_rows = 0
        self.parts = 0
        self.reject_parts = 0
        self.rows_read = self.ingested = self.duplicates = self.blank = 0
        self.rejected: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.writer = ThreadPoolExecutor(
            max_workers=_PARTS_IN_FLIGHT, thread_name_prefix="cdr-part-writer"
        )
        self.pending: deque[Future[list[Path]]] = deque()

    def add(self, chunk: CdrChunk) -> None:
        self.rows_read += chunk.rows_read
        self.blank += chunk.blank_lines
        for reason, count in chunk.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        if chunk.usage.num_rows:
            self.usage.append(chunk.usage)
            self.usage_rows += chunk.usage.num_rows
            self.ingested += chunk.usage.num_rows
        if chunk.rejects.num_rows:
            counts = pc.value_counts(chunk.rejects.column("reason")).to_pylist()
            for item in counts:
                reason, count = item["values"], item["counts"]
                if reason == "duplicate":
                    self.duplicates += count
                else:
                    self.rejected[reason] = self.rejected.get(reason, 0) + count
            self.rejects.append(chunk.rejects)
            self.reject_rows += chunk.rejects.num_rows
        if self.usage_rows >= self.rows_per_part:
            self.flush_usage()
        if self.reject_rows >= self.rows_per_part:
            self.flush_rejects()

    def flush_usage(self, *, last: bool = False) -> None:
        if not self.usage:
            return
        table = pa.concat_tables(self.usage)
        self.usage, self.usage_rows = [], 0
        pieces = [table]
        if last and table.num_rows >= 2 * _MIN_SPLIT:
            # the file's last rows: nothing else is left to run, so they are written as two
            # parts at once, one on each writer thread (a shorter tail)
            half = table.num_rows // 2
            pieces = [table.slice(0, half), table.slice(half)]
        for piece in pieces:
            # Parquet encoding releases the GIL: parts are written on their own threads while
            # the next rows are parsed, _PARTS_IN_FLIGHT at most (bounded memory; parts are
            # separate files, so their writes need no order).
            while len(self.pending) >= _PARTS_IN_FLIGHT:
                self.pending.popleft().result()
            self.pending.append(
                self.writer.submit(
                    write_by_day,
                    piece,
                    self.place.stage / "usage",
                    time_column="start_time",
                    part_name=f"{self.place.prefix}-{self.parts:05d}",
                    compression=USAGE_COMPRESSION,
                )
            )
            self.parts += 1

    def wait(self) -> None:
        """Wait for the parts being written; re-raises the first error."""
        while self.pending:
            self.pending.popleft().result()

    def close(self) -> None:
        self.writer.shutdown(wait=True)

    def flush_rejects(self) -> None:
        if not self.rejects:
            return
        chunk = pa.concat_tables(self.rejects)
        self.rejects, self.reject_rows = [], 0
        n = chunk.num_rows
        table = pa.Table.from_arrays(
            [
                pa.repeat(pa.scalar("ingest"), n),
                pa.repeat(pa.scalar(self.path.name), n),
                chunk.column("record_no"),
                chunk.column("record_id"),
                chunk.column("field"),
                chunk.column("reason"),
                chunk.column("message"),
                chunk.column("raw"),
                pa.repeat(pa.scalar(self.now, TIMESTAMP), n),
            ],
            schema=REJECT_SCHEMA,
        ).sort_by("record_no")
        write_by_day(
            table,
            self.place.stage / "rejected",
            time_column="rejected_at",
            part_name=f"{self.place.prefix}-r{self.reject_parts:05d}",
        )
        self.reject_parts += 1


def _stage(
    path: Path,
    mapping: CdrMapping,
    work: _FileIngest,
    ids: IdSet,
    file_ids: IdSet,
    block_size: int,
) -> None:
    """Read the file into ``work``'s staged parts; on any error nothing stays staged."""

    def is_duplicate(batch_ids: np.ndarray) -> np.ndarray:
        earlier = ids.contains(batch_ids)
        dup: np.ndarray = earlier | file_ids.add(batch_ids, take=~earlier)
        return dup

    try:
        # the text is checked with the file's hash (_Placement): no row is kept otherwise
        chunks = read_cdr_file(
            path, mapping, block_size=block_size, is_duplicate=is_duplicate, trusted_text=True
        )
        for chunk in chunks:
            work.add(chunk)
            work.place.check_early()
        work.flush_usage(last=True)
        work.flush_rejects()
        work.wait()
    except Exception:
        work.close()
        work.place.discard()
        raise
    finally:
        work.close()


class _Placement:
    """Where a file's parts are staged, known once its content hash is.

    The hash (SHA-256 and the encoding check, one pass over the file) runs on its own thread
    while the first rows are parsed: hashlib releases the GIL, so it costs no wall time on a
    second core. The file's refusal by the hash (not valid text, already ingested) is raised
    as soon as the hash is known - before any part is written, which needs the hash for the
    staging folder and the part names - and takes precedence over any other failure, as when
    the hash was taken first. When the ledger holds a file of the same size (or of a size not
    recorded), the hash is awaited before reading, so a file sent again is refused at once.
    """

    def __init__(
        self,
        path: Path,
        mapping: CdrMapping,
        workspace: WorkspacePaths,
        ledger: IngestLedger,
        digest: Future[tuple[str, int | None]],
        now: dt.datetime,
    ) -> None:
        self.path, self.mapping, self.workspace, self.ledger = path, mapping, workspace, ledger
        self.digest, self.now = digest, now
        self._where: tuple[str, Path, str] | None = None

    def resolve(self) -> tuple[str, Path, str]:
        """(sha256, staging folder, part prefix); raises the file's refusal, if any."""
        if self._where is None:
            path, encoding = self.path, self.mapping.csv.encoding
            sha, bad_at = self.digest.result()
            if bad_at is not None:
                # checked before any row: pyarrow cannot hand an undecodable row to its handler
                raise CdrRefusedError(
                    "bad_encoding", f"{path}: not {encoding} text at byte {bad_at}"
                )
            prior = self.ledger.get(sha)
            if prior is not None and prior.status != QUARANTINED:
                raise CdrRefusedError(
                    "already_ingested",
                    f"{path}: same content (sha256 {sha[:16]}...) as {prior.file_name} ingested "
                    f"at {prior.ingested_at}; refused, nothing added",
                )
            stage = staging_dir(self.workspace, sha)
            shutil.rmtree(stage, ignore_errors=True)  # leftovers of an uncommitted attempt
            prefix = part_prefix(sha)
            if prior is not None:  # again after a quarantine: new part names, never the old ones
                prefix = f"{prefix}-again{self.now:%Y%m%dT%H%M%S}"
            self._where = (sha, stage, prefix)
        return self._where

    def check_early(self) -> None:
        """Refuse the file as soon as its hash says so (a file ingested before is not read
        to its end)."""
        if self._where is None and self.digest.done():
            self.resolve()

    @property
    def stage(self) -> Path:
        return self.resolve()[1]

    @property
    def prefix(self) -> str:
        return self.resolve()[2]

    def discard(self) -> None:
        """Remove what was staged (nothing when no part was placed yet)."""
        if self._where is not None:
            shutil.rmtree(self._where[1], ignore_errors=True)


def ingest_cdr_file(
    path: Path,
    mapping: CdrMapping,
    workspace: WorkspacePaths,
    ledger: IngestLedger,
    ids: IdSet,
    *,
    rows_per_part: int = 500_000,
    block_size: int = READ_BLOCK,
    remember: bool = True,
) -> CdrFileResult:
    """Ingest one file (caller holds :func:`ingest_lock` and has run :func:`recover`).

    Raises :class:`collectors.errors.IngestError` (a :class:`~collectors.cdr.reader.CdrRefusedError`
    with a ``reason``) when the file is refused; nothing is written then. ``ids`` gains the
    file's record ids once it is committed (unless ``remember`` is false: the last file).
    """
    path = Path(path)
    if not path.is_file():
        raise CdrRefusedError("unreadable", f"{path}: not a readable file")
    sniff_cdr_file(path, mapping)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdr-digest") as hashing:
        place = _Placement(
            path,
            mapping,
            workspace,
            ledger,
            hashing.submit(file_digest, path, encoding=mapping.csv.encoding),
            now,
        )
        file_size = path.stat().st_size
        if any(e.size in (None, file_size) for e in ledger.entries.values()):
            # maybe a file ingested before: its hash first, so it is refused without reading
            # (a file of a size no entry has cannot be, and is read while it is hashed)
            place.resolve()
        size = block_size
        while True:
            work = _FileIngest(path, place, now, rows_per_part)
            # sized from the file so the id set rarely grows (~60 bytes a CDR line is a floor)
            file_ids = IdSet(capacity=max(1 << 16, file_size // 60))
            try:
                _stage(path, mapping, work, ids, file_ids, size)
            except Exception as exc:
                place.resolve()  # the hash's refusal first (raises it), as if taken first
                if (
                    not isinstance(exc, CdrRefusedError)
                    or exc.reason != "record_too_long"
                    or size >= _MAX_BLOCK
                ):
                    raise
                # A record longer than a read block (a huge field): read the file again with
                # larger blocks; the field is then rejected on its own as field_too_long.
                size = min(size * 4, _MAX_BLOCK)
                continue
            break
        sha, stage, _ = place.resolve()  # an empty file is refused by its hash too
    result = CdrFileResult(
        path=str(path),
        status="ingested" if work.rows_read else "empty",
        sha256=sha,
        rows_read=work.rows_read,
        ingested=work.ingested,
        duplicates=work.duplicates,
        rejected=dict(sorted(work.rejected.items())),
        skipped=dict(sorted(work.skipped.items())),
        blank_lines=work.blank,
    )
    if not work.rows_read:
        shutil.rmtree(stage, ignore_errors=True)
        return result
    entry = LedgerEntry(
        sha256=sha,
        file_name=path.name,
        path=str(path.absolute()),
        mapping=mapping.name,
        rows_read=work.rows_read,
        rows=work.ingested,
        duplicates=work.duplicates,
        rejected=result.rejected,
        skipped=result.skipped,
        ingested_at=now.isoformat(),
        status="committing",
        size=file_size,
    )
    ledger.put(entry)  # the commit point
    publish(workspace, sha)
    ledger.put(LedgerEntry(**{**asdict(entry), "status": "done"}))
    if remember:
        ids.add(file_ids.keys())
    return result


def recover_cdr_ingest(workspace: WorkspacePaths) -> tuple[int, int]:
    """Finish or undo an interrupted CDR ingest without ingesting anything (e.g. before a
    rating run reads ``W/usage``). Returns (files rolled forward, files rolled back)."""
    workspace.ensure()
    with ingest_lock(workspace):
        return recover(workspace, IngestLedger(workspace))


def ingest_cdr_files(
    paths: Sequence[Path],
    mapping: CdrMapping,
    workspace: WorkspacePaths,
    *,
    rows_per_part: int = 500_000,
    block_size: int = READ_BLOCK,
) -> CdrIngestSummary:
    """Ingest CSV CDR files into ``W/usage`` (see the module docstring); never raises for a
    refused file - it is listed in the summary with its reason."""
    workspace.ensure()
    results: list[CdrFileResult] = []
    with ingest_lock(workspace):
        ledger = IngestLedger(workspace)
        forward, back = recover(workspace, ledger)
        ids = committed_ids(workspace)
        for i, path in enumerate(paths):
            try:
                results.append(
                    ingest_cdr_file(
                        Path(path),
                        mapping,
                        workspace,
                        ledger,
                        ids,
                        rows_per_part=rows_per_part,
                        block_size=block_size,
                        remember=i < len(paths) - 1,  # no later file asks about these ids
                    )
                )
            except IngestError as exc:
                reason = exc.reason if isinstance(exc, CdrRefusedError) else "unreadable"
                results.append(
                    CdrFileResult(
                        path=str(path), status="refused", refused_reason=reason, message=str(exc)
                    )
                )
    return CdrIngestSummary(tuple(results), rolled_forward=forward, rolled_back=back)

"""CSV plumbing for CDR files: sniffing a file, numbering its records, fetching raw bytes.

Record numbers are 1-based CSV records with the header as record 1 (the physical line number
unless an earlier quoted value spans lines). pyarrow reports the number of each invalid row
(wrong column count) when it reads single-threaded; :class:`RecordNumbering` derives the
number of every good row from those. :class:`RawLines` gets the exact bytes of given records
from the memory-mapped file with a quote-aware Numba scan
(:func:`collectors.cdr.kernels.record_spans`), only when there are rows to put aside.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collectors.cdr.kernels import record_spans
from collectors.cdr.mapping import CdrMapping
from collectors.errors import IngestError

__all__ = [
    "CdrRefusedError",
    "RawLines",
    "RecordNumbering",
    "ScanPoints",
    "drop_blank_lines",
    "sniff_cdr_file",
]

_SNIFF_BYTES = 64 * 1024
_SNIFF_LINES = 20


class CdrRefusedError(IngestError):
    """A whole CDR file is refused; ``reason`` is a short code for the summary."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def sniff_cdr_file(path: Path, mapping: CdrMapping) -> list[str] | None:
    """Refuse what is plainly not this CSV layout, from the first 64 KiB (binary, wrong
    header, no line with the mapping's column count); returns the header names if any."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise CdrRefusedError("unreadable", f"{path}: cannot read: {exc.strerror}") from exc
    if not head:
        return None
    if b"\x00" in head:
        raise CdrRefusedError("not_csv", f"{path}: binary content (NUL bytes), not a CSV file")
    try:
        text = codecs.getincrementaldecoder(mapping.csv.encoding)().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise CdrRefusedError(
            "bad_encoding", f"{path}: not {mapping.csv.encoding} text at byte {exc.start}"
        ) from exc
    text = text.removeprefix("\ufeff")
    lines = text.splitlines()
    if len(head) == _SNIFF_BYTES and lines:
        lines = lines[:-1]  # the last line may be cut
    rows = list(
        csv.reader(
            io.StringIO("\n".join(lines[: _SNIFF_LINES + 1])),
            delimiter=mapping.csv.delimiter,
            quotechar=mapping.csv.quote,
        )
    )
    rows = [r for r in rows if r]
    if mapping.csv.header:
        if not rows:
            return None
        names = list(rows[0])  # exact: pyarrow selects columns by exact name
        missing = [c for c in mapping.used_columns() if c not in names]
        if missing:
            raise CdrRefusedError(
                "header_mismatch",
                f"{path}: header lacks columns {', '.join(missing)} of mapping {mapping.name} "
                f"(found {', '.join(names[:12])}{'...' if len(names) > 12 else ''})",
            )
        return names
    assert mapping.csv.columns is not None
    want = len(mapping.csv.columns)
    if rows and not any(len(r) == want for r in rows[:_SNIFF_LINES]):
        raise CdrRefusedError(
            "not_csv",
            f"{path}: none of the first {min(len(rows), _SNIFF_LINES)} lines has the "
            f"{want} columns of mapping {mapping.name}",
        )
    return None


class RecordNumbering:
    """Record numbers of good rows from the invalid rows pyarrow reported before them."""

    def __init__(self, header: bool) -> None:
        self.first = 2 if header else 1  # record number of the first data record
        self.good_seen = 0
        self.gaps: list[int] = []  # data index of invalid row i minus i

    def invalid(self, number: int) -> None:
        self.gaps.append(number - self.first - len(self.gaps))

    def good(self, n: int) -> np.ndarray:
        k = np.arange(self.good_seen, self.good_seen + n, dtype=np.int64)
        self.good_seen += n
        before = np.searchsorted(np.asarray(self.gaps, dtype=np.int64), k, side="right")
        return k + before + self.first


class ScanPoints:
    """Where record starts are known in a file: (record number, byte offset) pairs left by
    the scanners of one file, so a scanner skips what another one scanned already (each
    transform thread has its own scanner; without these each read the whole file)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[int] = [1]
        self._offsets: list[int] = [0]

    def add(self, record: int, offset: int) -> None:
        with self._lock:
            i = bisect.bisect_left(self._records, record)
            if i == len(self._records) or self._records[i] != record:
                self._records.insert(i, record)
                self._offsets.insert(i, offset)

    def before(self, record: int) -> tuple[int, int]:
        """The known start (record, offset) nearest at or before ``record``."""
        with self._lock:
            i = bisect.bisect_right(self._records, record) - 1
            return self._records[i], self._offsets[i]


class RawLines:
    """Raw bytes of rejected records, by a forward-only scan of the memory-mapped file."""

    def __init__(self, path: Path, mapping: CdrMapping, points: ScanPoints | None = None) -> None:
        self.path = path
        self.quote = mapping.csv.quote
        self.delimiter = mapping.csv.delimiter
        self.buf: np.ndarray | None = None
        self.pos = 0
        self.record = 1
        self.points = points if points is not None else ScanPoints()

    def fetch(self, record_nos: np.ndarray) -> list[bytes | None]:
        if record_nos.size == 0:
            return []
        if self.buf is None:
            self.buf = np.memmap(self.path, dtype=np.uint8, mode="r")
        order = np.argsort(record_nos, kind="stable")
        wanted = record_nos[order]
        record, pos = self.points.before(int(wanted[0]))
        if record > self.record or wanted[0] < self.record:  # a later known start, or back
            self.pos, self.record = pos, record
        starts, ends, self.pos, self.record = record_spans(
            self.buf,
            wanted,
            quote=self.quote,
            delimiter=self.delimiter,
            pos=self.pos,
            record=self.record,
        )
        self.points.add(self.record, self.pos)
        out: list[bytes | None] = [None] * record_nos.size
        for j, i in enumerate(order.tolist()):
            if starts[j] >= 0:
                out[i] = bytes(self.buf[starts[j] : ends[j]])
        return out

    def close(self) -> None:
        self.buf = None  # np.memmap closes its mapping when collected


def drop_blank_lines(
    batch: pa.RecordBatch, lines: np.ndarray, raw_lines: Callable[[], RawLines]
) -> tuple[pa.RecordBatch, np.ndarray, int]:
    """Drop the rows that are blank lines in the file (counted, not rejected).

    pyarrow reads an empty line as a row of empty values when empty lines are not ignored; a
    row with every mapped column empty is a blank line only if its raw bytes are blank too.
    """
    all_empty = np.ones(batch.num_rows, dtype=np.bool_)
    for column in batch.columns:
        if pc.min(pc.binary_length(column)).as_py() != 0:  # no empty value: no blank line
            return batch, lines, 0
        empty = pc.fill_null(pc.equal(pc.binary_length(column), 0), False)
        all_empty &= np.asarray(empty.to_numpy(zero_copy_only=False), dtype=np.bool_)
    if not all_empty.any():
        return batch, lines, 0
    candidates = np.flatnonzero(all_empty)
    raws = raw_lines().fetch(lines[candidates])
    blank = np.zeros(batch.num_rows, dtype=np.bool_)
    for i, raw in zip(candidates.tolist(), raws, strict=True):
        blank[i] = raw is not None and not raw.strip()
    if not blank.any():
        return batch, lines, 0
    return batch.filter(pa.array(~blank)), lines[~blank], int(blank.sum())

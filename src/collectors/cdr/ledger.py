"""Which CDR files were ingested, and the commit protocol that makes an ingest exactly-once.

The ledger (``W/state/cdr_ingest_ledger.json``, rewritten atomically) maps each file's content
SHA-256 to its name, row counts and time. A file whose hash is there is refused, whatever its
name.

Commit protocol for one file (the ledger entry is the commit point):

1. *stage* - usage and rejected parts are written under ``W/state/cdr_staging/<sha256>/``
   (part names derived from the hash), invisible to readers of ``W/usage`` and ``W/rejected``;
2. *commit* - the ledger entry is written with status ``committing``;
3. *publish* - each staged file is renamed into ``W/usage/...`` or ``W/rejected/...``
   (same file system: atomic per file), then the entry becomes ``done``.

:func:`recover` runs under the ingest lock before every ingest: an entry still ``committing``
is rolled forward (the remaining staged files are renamed; a rename that already happened is
not repeated), and staging folders without a ledger entry are rolled back (deleted). So an
ingest interrupted anywhere leaves either nothing or, after the next run, everything - and
rerunning an interrupted file ingests it exactly once, under the same part names.

An entry with status ``quarantined`` (``rating-engine check --quarantine`` moved one of its
usage parts aside) does not refuse its file: ingesting it again restores the missing records.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from collectors.cdr.kernels import IdSet
from collectors.dataset import dataset_files, read_dataset
from collectors.errors import IngestError
from collectors.schemas import USAGE_SCHEMA
from collectors.workspace import WorkspacePaths

__all__ = [
    "LEDGER_NAME",
    "QUARANTINED",
    "IngestLedger",
    "LedgerEntry",
    "committed_ids",
    "file_digest",
    "file_sha256",
    "ingest_lock",
    "part_prefix",
    "publish",
    "recover",
    "staging_dir",
]

LEDGER_NAME = "cdr_ingest_ledger.json"
#: Status of a file whose usage part was quarantined: it may be ingested again.
QUARANTINED = "quarantined"
_STAGING = "cdr_staging"
_LOCK = "cdr_ingest.lock"
_DATASETS = ("usage", "rejected")


@dataclass(frozen=True)
class LedgerEntry:
    """One ingested file."""

    sha256: str
    file_name: str
    path: str
    mapping: str
    rows_read: int
    rows: int
    duplicates: int
    rejected: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    ingested_at: str = ""
    status: str = "done"
    #: bytes of the file (None in entries written before it was recorded): a file of another
    #: size cannot have the same content, so the ingest need not wait for its hash to start
    size: int | None = None


def file_sha256(path: Path, *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content, read in chunks."""
    return file_digest(path, chunk=chunk)[0]


def file_digest(
    path: Path, *, encoding: str | None = None, chunk: int = 1 << 20
) -> tuple[str, int | None]:
    """Hex SHA-256 of a file and, if ``encoding`` is given, the byte offset of the first byte
    that does not decode (None when the whole file decodes) - one pass over the file."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder(encoding)() if encoding else None
    # In UTF-8 an ASCII block between whole characters decodes as it is: bytes.isascii() is
    # ~50x cheaper than decoding it (CDR files are mostly ASCII).
    ascii_ok = encoding is not None and codecs.lookup(encoding).name == "utf-8"
    bad_at: int | None = None
    done = 0
    # one buffer read into again and again: a new 1 MiB bytes object per block cost fresh,
    # zeroed pages from the kernel each time (a quarter of the hashing's CPU)
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    try:
        with open(path, "rb", buffering=0) as fh:
            while size := fh.readinto(buffer):
                block = view[:size]
                digest.update(block)
                if decoder is not None and bad_at is None:
                    if ascii_ok and _isascii(buffer, size) and not decoder.getstate()[0]:
                        done += size
                        continue
                    try:
                        decoder.decode(block)
                    except UnicodeDecodeError as exc:
                        bad_at = done + max(0, exc.start)
                done += size
        if decoder is not None and bad_at is None:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                bad_at = done  # cut inside a character at the end
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc.strerror}") from exc
    return digest.hexdigest(), bad_at


def _isascii(buffer: bytearray, size: int) -> bool:
    return buffer.isascii() if size == len(buffer) else bytes(buffer[:size]).isascii()


def part_prefix(sha256: str) -> str:
    """Part-name prefix of a file's parts: ``cdr-`` and 16 hex digits of its content hash."""
    return f"cdr-{sha256[:16]}"


def staging_dir(workspace: WorkspacePaths, sha256: str) -> Path:
    return workspace.state / _STAGING / sha256


class IngestLedger:
    """The ledger file, loaded once per ingest and rewritten atomically on every change."""

    def __init__(self, workspace: WorkspacePaths) -> None:
        self.path = workspace.state / LEDGER_NAME
        self.entries: dict[str, LedgerEntry] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.entries = {
                    sha: LedgerEntry(**entry) for sha, entry in data.get("files", {}).items()
                }
            except (OSError, ValueError, TypeError) as exc:
                raise IngestError(f"ingest ledger {self.path}: unreadable: {exc}") from exc

    def get(self, sha256: str) -> LedgerEntry | None:
        return self.entries.get(sha256)

    def put(self, entry: LedgerEntry) -> None:
        """Add or replace an entry and write the ledger (temp file, fsync, rename)."""
        self.entries[entry.sha256] = entry
        data = {"version": 1, "files": {s: asdict(e) for s, e in sorted(self.entries.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def ingest_lock(workspace: WorkspacePaths) -> Iterator[None]:
    """Exclusive lock of the workspace's CDR ingest (blocks while another ingest runs)."""
    workspace.state.mkdir(parents=True, exist_ok=True)
    with open(workspace.state / _LOCK, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def publish(workspace: WorkspacePaths, sha256: str) -> int:
    """Rename a file's staged parts into the datasets; returns how many were moved."""
    stage = staging_dir(workspace, sha256)
    moved = 0
    for name in _DATASETS:
        root = stage / name
        for src in dataset_files(root):
            dest = workspace.root / name / src.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            moved += 1
    shutil.rmtree(stage, ignore_errors=True)
    return moved


def recover(workspace: WorkspacePaths, ledger: IngestLedger) -> tuple[int, int]:
    """Finish committed-but-unpublished files, drop uncommitted staging.

    Returns (files rolled forward, files rolled back).
    """
    forward = back = 0
    for sha, entry in list(ledger.entries.items()):
        if entry.status == "committing":
            publish(workspace, sha)
            ledger.put(LedgerEntry(**{**asdict(entry), "status": "done"}))
            forward += 1
    staging = workspace.state / _STAGING
    if staging.exists():
        for folder in staging.iterdir():
            owner = ledger.entries.get(folder.name)
            if owner is None or owner.status == QUARANTINED:  # an uncommitted attempt
                shutil.rmtree(folder, ignore_errors=True)
                back += 1
    return forward, back


def committed_ids(workspace: WorkspacePaths) -> IdSet:
    """The record ids already in ``W/usage`` (8 bytes each in memory)."""
    table = read_dataset(workspace.usage, USAGE_SCHEMA, columns=["record_id"])
    ids = IdSet(capacity=max(table.num_rows, 1 << 16))
    if table.num_rows:
        column = pc.cast(table.column("record_id"), "int64").combine_chunks()
        ids.add(np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64))
    return ids

"""Verify every Parquet part of a workspace and move broken ones aside (quarantine).

A part is broken when any page fails to read back (footer, page headers, decompression,
page checksums). For each broken part the check recovers what it can name: the row count
from the footer and, from every row group whose ``record_id`` column still reads, the ids
of the records it held - so a report says exactly which records went out of reach. A CDR
usage part is traced to its source file through the ingest ledger; quarantining it marks
that ledger entry ``quarantined``, so ingesting the same file again restores exactly the
missing records (the records still present count as duplicates).

Quarantine moves a part to ``W/broken/<stamp>/<its path in the workspace>`` (a rename on
the same file system) and writes ``manifest.json`` beside it; nothing is deleted. (The
``W/quarantine`` dataset is another thing: datagrams the flow decoders rejected.)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from collectors.cdr.ledger import QUARANTINED, IngestLedger, LedgerEntry, ingest_lock
from collectors.dataset import atomic_write_bytes, naming_path, verify_part
from collectors.workspace import WorkspacePaths

__all__ = ["BrokenPart", "check_parts", "quarantine_parts", "workspace_parts"]

# Not datasets: parts already moved aside, exports and reports.
_SKIP_TOP = {"broken", "reports"}


@dataclass(frozen=True)
class BrokenPart:
    """A part that does not read back, and what it held as far as that can be read."""

    dataset: str  # first folder below the workspace: usage, rated, flows, state, ...
    path: str  # relative to the workspace root
    problem: str
    rows: int | None  # from the footer; None when the footer is unreadable
    record_ids: list[int] = field(default_factory=list)  # readable ids of its records
    unidentified_rows: int | None = None  # rows whose id cannot be read (None: unknown)
    source_files: list[str] = field(default_factory=list)  # CDR files it came from
    moved_to: str | None = None  # relative to the workspace root, after quarantine


def workspace_parts(workspace: WorkspacePaths) -> list[Path]:
    """Every visible Parquet part below the workspace (staged CDR parts included)."""
    root = workspace.root
    if not root.exists():
        return []
    found = []
    for path in root.rglob("*.parquet"):
        rel = path.relative_to(root)
        if rel.parts[0] in _SKIP_TOP or any(p.startswith(".") for p in rel.parts):
            continue
        found.append(path)
    return sorted(found)


def _salvage(path: Path) -> tuple[int | None, list[int], int | None]:
    """(rows in the footer, readable record ids, rows whose id cannot be read)."""
    try:
        with pq.ParquetFile(path, page_checksum_verification=True) as part:
            meta = part.metadata
            if "record_id" not in part.schema_arrow.names:
                return meta.num_rows, [], None
            ids: list[int] = []
            lost = 0
            for group in range(meta.num_row_groups):
                try:
                    column = part.read_row_group(group, columns=["record_id"]).column(0)
                    ids.extend(int(v) for v in column.to_pylist() if v is not None)
                except Exception:  # any failure: this group's ids are out of reach
                    lost += meta.row_group(group).num_rows
            return meta.num_rows, ids, lost
    except Exception:  # the footer itself is gone: nothing can be named from the part
        return None, [], None


def _sources(workspace: WorkspacePaths, path: Path, ledger: IngestLedger | None) -> list[str]:
    """The CDR files a usage/rejected part came from (``part-cdr-<sha16>-...``)."""
    if ledger is None or not path.name.startswith("part-cdr-"):
        return []
    prefix = path.name[len("part-cdr-") :].split("-", 1)[0]
    return sorted(e.path for sha, e in ledger.entries.items() if sha.startswith(prefix))


def _ledger(workspace: WorkspacePaths) -> IngestLedger | None:
    try:
        return IngestLedger(workspace)
    except Exception:  # an unreadable ledger is reported by ingest itself; sources unknown
        return None


def check_parts(workspace: WorkspacePaths) -> tuple[int, list[BrokenPart]]:
    """(parts checked, the broken ones with what they held)."""
    parts = workspace_parts(workspace)
    ledger = _ledger(workspace)
    broken = []
    for path in parts:
        problem = verify_part(path)
        if problem is None:
            continue
        rows, ids, lost = _salvage(path)
        rel = path.relative_to(workspace.root)
        broken.append(
            BrokenPart(
                dataset=rel.parts[0],
                path=str(rel),
                problem=problem,
                rows=rows,
                record_ids=ids,
                unidentified_rows=lost,
                source_files=_sources(workspace, path, ledger),
            )
        )
    return len(parts), broken


def quarantine_parts(
    workspace: WorkspacePaths, broken: list[BrokenPart], *, now: datetime | None = None
) -> tuple[list[BrokenPart], Path | None]:
    """Move ``broken`` parts under ``W/broken/<stamp>/`` and write its manifest.

    Runs under the CDR ingest lock, so no ingest publishes meanwhile. Returns the parts
    with ``moved_to`` set and the manifest's path (None when there was nothing to move).
    """
    if not broken:
        return [], None
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    folder = workspace.broken / stamp
    moved: list[BrokenPart] = []
    with ingest_lock(workspace):
        ledger = _ledger(workspace)
        for part in broken:
            src = workspace.root / part.path
            if not src.exists():
                continue  # moved or replaced since it was checked
            dest = folder / part.path
            with naming_path(dest):
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dest)
            moved.append(replace(part, moved_to=str(dest.relative_to(workspace.root))))
        if ledger is not None:
            _release_sources(ledger, moved)
        manifest = folder / "manifest.json"
        doc: dict[str, Any] = {
            "quarantined_at": stamp,
            "workspace": str(workspace.root),
            "parts": [asdict(p) for p in moved],
        }
        atomic_write_bytes(manifest, json.dumps(doc, indent=1).encode())
    return moved, manifest


def _release_sources(ledger: IngestLedger, moved: list[BrokenPart]) -> None:
    """Mark the CDR files of quarantined usage parts so they may be ingested again."""
    paths = {src for part in moved if part.dataset == "usage" for src in part.source_files}
    for entry in list(ledger.entries.values()):
        if entry.path in paths and entry.status == "done":
            ledger.put(LedgerEntry(**{**asdict(entry), "status": QUARANTINED}))

"""``rating-engine check``: is every stored file of a workspace readable, and what is lost if not.

The database is opened read-only and every column of every table is read, which makes
DuckDB verify the checksum of each block in use. Every Parquet part is read page by page
(:mod:`collectors.dataset_check`). With ``quarantine`` the broken parts are moved aside and
the report says which records are no longer billable: usage records that no bill covers
yet, split from those already billed (the bill stands; only its detail is gone). A broken
database cannot be quarantined: it is restored from a backup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from bss.db import connect
from bss.errors import WorkspaceLockedError
from collectors.dataset_check import BrokenPart, check_parts, quarantine_parts
from collectors.errors import CorruptFileError
from collectors.workspace import WorkspacePaths

__all__ = ["CheckReport", "check_workspace", "failure"]


@dataclass(frozen=True)
class CheckReport:
    """What ``check`` found (and moved, with ``quarantine``)."""

    workspace: str
    parts_checked: int
    broken: list[BrokenPart]
    database: str  # "ok", "absent" or why it cannot be read
    tables_checked: int = 0
    quarantined: bool = False
    manifest: str | None = None
    #: usage record ids no bill covers and that are now out of reach (not billable)
    unbilled_ids: list[int] = field(default_factory=list)
    #: usage record ids out of reach whose bill was already issued (bill unchanged)
    billed_ids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken and self.database in ("ok", "absent")

    @property
    def unidentified_usage_rows(self) -> int | None:
        """Usage rows in broken parts whose ids cannot be read (None: a part's size is unknown)."""
        total = 0
        for part in self.broken:
            if part.dataset == "usage":
                if part.unidentified_rows is None and part.rows != 0:
                    return None
                total += part.unidentified_rows or 0
        return total

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` (record ids as counts; the manifest lists them all)."""
        return {
            "workspace": self.workspace,
            "ok": self.ok,
            "database": self.database,
            "tables_checked": self.tables_checked,
            "parts_checked": self.parts_checked,
            "quarantined": self.quarantined,
            "manifest": self.manifest,
            "broken": [
                {
                    "dataset": p.dataset,
                    "path": p.path,
                    "problem": p.problem,
                    "rows": p.rows,
                    "readable_record_ids": len(p.record_ids),
                    "unidentified_rows": p.unidentified_rows,
                    "source_files": p.source_files,
                    "moved_to": p.moved_to,
                }
                for p in self.broken
            ],
            "usage_not_billable": len(self.unbilled_ids),
            "usage_already_billed": len(self.billed_ids),
            "usage_unidentified": self.unidentified_usage_rows,
            "not_billable_record_ids": self.unbilled_ids[:1000],
        }


def _check_database(path: Path) -> tuple[str, int, duckdb.DuckDBPyConnection | None]:
    """(state, tables read, an open read-only connection when readable)."""
    if not path.exists():
        return "absent", 0, None
    try:
        conn = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        if "could not set lock" in str(exc).lower():  # DuckDB's words for a held lock
            raise WorkspaceLockedError(
                f"{path} is in use by another run; check it when that run has finished"
            ) from exc
        return " ".join(str(exc).split()), 0, None
    try:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
                "ORDER BY table_name"
            ).fetchall()
        ]
        for name in tables:
            # one aggregate per column reads every block of the table (checksums verified)
            conn.execute(f'SELECT max(hash(COLUMNS(*))) FROM "{name}"').fetchall()
    except duckdb.Error as exc:
        conn.close()
        return " ".join(str(exc).split()), 0, None
    return "ok", len(tables), conn


def _billed(conn: duckdb.DuckDBPyConnection | None, ids: list[int]) -> set[int]:
    if conn is None or not ids:
        return set()
    import pyarrow as pa

    conn.register("_lost_ids", pa.table({"record_id": pa.array(ids, pa.int64())}))
    try:
        rows = conn.execute(
            "SELECT DISTINCT b.record_id FROM billed_usage b JOIN _lost_ids USING (record_id)"
        ).fetchall()
    finally:
        conn.unregister("_lost_ids")
    return {int(r) for (r,) in rows}


def check_workspace(workspace: WorkspacePaths, *, quarantine: bool = False) -> CheckReport:
    """Verify the database and every Parquet part; with ``quarantine`` move broken parts aside.

    While parts are moved, the database is held open for writing (when it is readable), so
    no billing run reads the datasets half-moved.
    """
    database, tables, reader = _check_database(workspace.database)
    try:
        checked, broken = check_parts(workspace)
        lost = sorted({i for p in broken if p.dataset == "usage" for i in p.record_ids})
        billed = _billed(reader, lost)
    finally:
        if reader is not None:
            reader.close()
    manifest: Path | None = None
    if quarantine and broken:
        writer = connect(workspace) if database == "ok" else None  # the single-writer lock
        try:
            broken, manifest = quarantine_parts(workspace, broken)
        finally:
            if writer is not None:
                writer.close()
    return CheckReport(
        workspace=str(workspace.root),
        parts_checked=checked,
        broken=broken,
        database=database,
        tables_checked=tables,
        quarantined=quarantine and bool(broken),
        manifest=str(manifest) if manifest else None,
        unbilled_ids=[i for i in lost if i not in billed],
        billed_ids=[i for i in lost if i in billed],
    )


def failure(report: CheckReport) -> CorruptFileError:
    """The error a failed check ends with (exit 9), the report in its ``details``."""
    what = []
    if report.database not in ("ok", "absent"):
        what.append(f"the database {report.workspace}/bss.duckdb cannot be read back")
    if report.broken:
        verb = "moved aside to W/broken" if report.quarantined else "found"
        what.append(f"{len(report.broken)} broken Parquet parts {verb}")
    hint = (
        "restore bss.duckdb from a backup"
        if report.database not in ("ok", "absent")
        else "ingest the listed source files again or restore the parts from a backup"
        if report.quarantined
        else "run `rating-engine check --quarantine` to move them aside"
    )
    error = CorruptFileError(report.workspace, f"{'; '.join(what)}: {hint}")
    error.details = report.to_dict()
    return error

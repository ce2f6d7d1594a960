"""The workspace's DuckDB file: connection, single-writer lock, versioned migrations, history."""

from __future__ import annotations

import errno
import os
import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from bss.errors import BssError, WorkspaceLockedError
from collectors.errors import CorruptFileError
from collectors.workspace import WorkspacePaths

__all__ = [
    "arrow_query",
    "connect",
    "record_transition",
    "schema_version",
    "storage_fault",
    "storage_faults",
    "transaction",
    "utc_now",
]

_LOCK_PID = re.compile(r"PID (\d+)")
_QUOTED_FILE = re.compile(r'file "([^"]+)"')
# DuckDB reports the machine's faults as text inside its own exception types.
_OS_FAULTS = (
    ("no space left on device", errno.ENOSPC),
    ("read-only file system", errno.EROFS),
    ("permission denied", errno.EACCES),
    ("input/output error", errno.EIO),
)
_CORRUPT = ("corrupt database file", "checksum", "not a valid duckdb database file")


def storage_fault(exc: BaseException, path: Path) -> Exception | None:
    """The fault behind a DuckDB error: an ``OSError`` (disk full, read-only, permissions)
    naming the file, or :class:`CorruptFileError` for a database that cannot be read back;
    None for any other error."""
    if not isinstance(exc, duckdb.Error):
        return None
    text = str(exc)
    lower = text.lower()
    for marker, code in _OS_FAULTS:
        if marker in lower:
            named = _QUOTED_FILE.search(text)
            return OSError(code, os.strerror(code), named.group(1) if named else str(path))
    if any(marker in lower for marker in _CORRUPT):
        return CorruptFileError(
            str(path),
            f"the database {path} cannot be read back ({text.strip()}); restore it from a "
            "backup (`rating-engine check` verifies it and every Parquet part)",
        )
    return None


@contextmanager
def storage_faults(path: Path) -> Iterator[None]:
    """Re-raise DuckDB's reports of a full or read-only disk and of a corrupt database file
    as :func:`storage_fault` describes them; other errors pass unchanged."""
    try:
        yield
    except duckdb.Error as exc:
        fault = storage_fault(exc, path)
        if fault is None:
            raise
        raise fault from exc


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _migrations() -> list[tuple[int, str, str]]:
    files = resources.files("bss").joinpath("migrations")
    found = []
    for entry in files.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


def schema_version(conn: duckdb.DuckDBPyConnection) -> int:
    """Highest migration applied; 0 for an empty database."""
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchone()
    if not row or row[0] == 0:
        return 0
    version = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(version[0]) if version else 0


def _migrate(conn: duckdb.DuckDBPyConnection) -> None:
    current = schema_version(conn)
    for version, name, sql in _migrations():
        if version <= current:
            continue
        conn.execute("BEGIN TRANSACTION")
        try:
            if version == 1:
                conn.execute(
                    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                    "name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
                )
            conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, utc_now()]
            )
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise


def connect(workspace: WorkspacePaths, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the workspace database, creating and upgrading the schema when writable.

    DuckDB allows one writing process per file; a second one gets
    :class:`WorkspaceLockedError` naming the process that holds it.
    """
    path: Path = workspace.database
    if read_only and not path.exists():
        raise BssError(
            f"workspace {workspace.root} has no database yet (run a command that writes)"
        )
    workspace.ensure()
    try:
        conn = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        fault = storage_fault(exc, path)
        if fault is not None:
            raise fault from exc
        if not isinstance(exc, duckdb.IOException):
            raise
        text = str(exc)
        if "could not set lock" in text.lower():  # not "in block at ..."
            pid = _LOCK_PID.search(text)
            holder = f"process {pid.group(1)}" if pid else "another process"
            raise WorkspaceLockedError(
                f"workspace {workspace.root} is locked by {holder}; "
                "wait for it to finish or stop it"
            ) from exc
        raise BssError(f"cannot open {path}: {text}") from exc
    with storage_faults(path):
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET enable_progress_bar = false")  # ours is rich's, on stderr
        if not read_only:
            _migrate(conn)
        # the migration check's fetchone() leaves its result open, and DuckDB 2 refuses
        # a relation query (conn.sql in a notebook) until it is discarded
        conn.abort()
    return conn


# Open transaction depth per connection. DuckDB aborts a transaction when BEGIN is tried
# inside it, so nesting must be known before trying, not detected by the failure.
_DEPTH: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, int] = weakref.WeakKeyDictionary()


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT, or ROLLBACK on any exception (nothing half-written).

    Nested use joins the outer transaction: only the outermost commits or rolls back,
    so composite operations (the demo's set-up, an order's items) stay all-or-nothing.
    """
    key = conn
    depth = _DEPTH.get(key, 0)
    if depth:
        _DEPTH[key] = depth + 1
        try:
            yield conn
        finally:
            _DEPTH[key] = depth
        return
    conn.execute("BEGIN TRANSACTION")
    _DEPTH[key] = 1
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")
    finally:
        del _DEPTH[key]


def arrow_query(
    conn: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object] | None = None
) -> pa.Table:
    """Run ``sql`` and return an Arrow table without the DB-API result's extra copy.

    DuckDB 2 refuses a relation query while an ``execute()`` result is unfinished (a
    ``fetchone`` that left rows behind); such a leftover is discarded first.
    """
    conn.abort()
    return conn.sql(sql, params=params).to_arrow_table()


def record_transition(
    conn: duckdb.DuckDBPyConnection,
    entity: str,
    entity_id: object,
    from_state: str | None,
    to_state: str,
    reason: str = "",
    *,
    at: datetime | None = None,
) -> None:
    """Append one state change to ``state_history``."""
    conn.execute(
        "INSERT INTO state_history (entity, entity_id, from_state, to_state, changed_at, reason) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [entity, str(entity_id), from_state, to_state, at or utc_now(), reason],
    )

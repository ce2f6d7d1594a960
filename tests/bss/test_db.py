from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from bss.db import connect, schema_version, transaction
from collectors.workspace import WorkspacePaths


def test_migrations_apply_once(workspace: WorkspacePaths) -> None:
    first = connect(workspace)
    version = schema_version(first)
    assert version >= 1
    first.close()
    again = connect(workspace)
    assert schema_version(again) == version
    rows = again.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert rows == (version,)
    again.close()


def test_money_columns_are_decimal(conn: duckdb.DuckDBPyConnection) -> None:
    types = conn.execute(
        "SELECT DISTINCT data_type FROM information_schema.columns "
        "WHERE column_name IN ('amount', 'amount_excl_tax', 'tax_amount', 'amount_incl_tax', "
        "'amount_due', 'cost')"
    ).fetchall()
    assert {t[0] for t in types} == {"DECIMAL(18,6)"}
    floats = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE data_type IN ('FLOAT', 'DOUBLE', 'REAL') AND table_name IN "
        "('bill', 'bill_line', 'billed_usage', 'product_offering_price', 'tax_rate', "
        "'billing_account', 'billing_run')"
    ).fetchall()
    assert floats == []


def test_nested_transaction_rolls_back_as_one(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("INSERT INTO tax_rate VALUES ('XX', 'x', 0.1)")

    def composite() -> None:
        with transaction(conn):
            conn.execute("INSERT INTO tax_rate VALUES ('YY', 'y', 0.1)")
            with transaction(conn):
                conn.execute("INSERT INTO tax_rate VALUES ('ZZ', 'z', 0.1)")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        composite()
    assert conn.execute("SELECT jurisdiction FROM tax_rate ORDER BY 1").fetchall() == [("XX",)]


def test_second_writer_gets_locked_error(workspace: WorkspacePaths) -> None:
    holder = connect(workspace)
    code = (
        "import sys; from collectors.workspace import WorkspacePaths; from bss.db import connect\n"
        "from bss.errors import WorkspaceLockedError\n"
        f"try:\n    connect(WorkspacePaths(__import__('pathlib').Path({str(workspace.root)!r})))\n"
        "except WorkspaceLockedError as e:\n    print(e); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    holder.close()
    assert proc.returncode == 3, proc.stderr
    assert "is locked by process" in proc.stdout

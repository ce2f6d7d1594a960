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


def test_a_fresh_connection_takes_relation_queries(workspace: WorkspacePaths) -> None:
    """An analyst's first `conn.sql(...)` after connect: DuckDB 2 refuses it while a
    result of connect's own checks is left open."""
    connect(workspace).close()  # created and migrated
    for read_only in (False, True):
        conn = connect(workspace, read_only=read_only)
        assert conn.sql("SELECT count(*) FROM schema_migrations").fetchall()[0][0] >= 1
        conn.close()


# Names that mean money in some table. In the DECIMAL(18,6) tables they are amounts in the
# currency's units; the receivables ledger (0007) keeps integer minor units (cents) in
# columns named `<money name>_minor`, so one name never means both to someone querying.
MONEY_NAMES = ("amount", "amount_excl_tax", "tax_amount", "amount_incl_tax", "amount_due",
               "amount_exact", "taxable_amount", "cost", "delta", "tax", "previous_balance",
               "payments_received", "other_credits", "balance_due", "overdue")  # fmt: skip


def _money_column_faults(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """(table, column, type) of every column breaking the money naming rule."""
    rows = conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns ORDER BY 1, 2"
    ).fetchall()
    faults = []
    for table, column, data_type in rows:
        if column.endswith("_minor"):
            # integer minor units, and a stem that says which money it is
            if data_type != "BIGINT" or column.removesuffix("_minor") not in MONEY_NAMES:
                faults.append((table, column, data_type))
        elif column in MONEY_NAMES and data_type != "DECIMAL(18,6)":
            faults.append((table, column, data_type))  # e.g. a BIGINT `amount` of cents
    return faults


def test_money_columns_are_decimal(conn: duckdb.DuckDBPyConnection) -> None:
    assert _money_column_faults(conn) == []
    decimal = conn.execute(
        "SELECT DISTINCT data_type FROM information_schema.columns "
        "WHERE list_contains(?, column_name)",
        [list(MONEY_NAMES)],
    ).fetchall()
    assert decimal == [("DECIMAL(18,6)",)]
    minor = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE ends_with(column_name, '_minor') AND data_type = 'BIGINT' ORDER BY 1, 2"
    ).fetchall()
    assert ("journal_line", "amount_minor") in minor
    assert ("bill_statement", "balance_due_minor") in minor
    assert ("credit_note", "amount_incl_tax_minor") in minor
    floats = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE data_type IN ('FLOAT', 'DOUBLE', 'REAL') AND table_name IN "
        "('bill', 'bill_line', 'bill_tax', 'billed_usage', 'usage_adjustment', "
        "'product_offering_price', 'tax_rate', 'billing_account', 'billing_run', "
        "'journal_line', 'credit_note', 'credit_note_line', 'bill_statement', 'dunning_step')"
    ).fetchall()
    assert floats == []


def test_money_naming_rule_catches_cents_under_a_decimal_name(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    conn.execute(
        "CREATE TABLE probe (amount BIGINT, balance_due INTEGER, fee_minor BIGINT, "
        "tax_minor DECIMAL(18,6), cost DECIMAL(18,6), overdue_minor BIGINT)"
    )
    assert [f for f in _money_column_faults(conn) if f[0] == "probe"] == [
        ("probe", "amount", "BIGINT"),
        ("probe", "balance_due", "INTEGER"),
        ("probe", "fee_minor", "BIGINT"),
        ("probe", "tax_minor", "DECIMAL(18,6)"),
    ]


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

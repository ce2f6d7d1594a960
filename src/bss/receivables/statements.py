"""A bill's statement (previous balance, payments received, other credits, balance due)
as its JSON carries it: decimal text in the currency's minor digits, only on bills that
have a statement (a first bill has none, so its JSON is what it always was)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from bss.billing.money import minor_units
from bss.receivables.amounts import format_minor

__all__ = [
    "STATEMENT_KEYS",
    "add_statements",
    "currency_digits",
    "minor_texts",
    "statement_members",
]

#: The statement's JSON keys (``bill_statement`` columns, minor units in the table).
STATEMENT_KEYS = ("balance_due", "other_credits", "payments_received", "previous_balance")


def currency_digits(currencies: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """Each row's currency's minor digits (null: 2), looked up once per distinct code."""
    values = currencies.combine_chunks() if isinstance(currencies, pa.ChunkedArray) else currencies
    codes = pc.unique(values)
    table = np.array([minor_units(c) if c else 2 for c in codes.to_pylist()], dtype=np.int64)
    at = pc.fill_null(pc.index_in(values, value_set=codes), 0).to_numpy(zero_copy_only=False)
    return table[np.asarray(at, np.int64)] if len(table) else np.zeros(len(values), np.int64)


def minor_texts(amounts: pa.Array, currencies: pa.Array) -> pa.Array:
    """Minor units -> decimal text with each row's currency digits (1250 EUR -> "12.50");
    nulls stay null. In columns: one pass per distinct number of digits."""
    n = len(amounts)
    values = np.asarray(pc.fill_null(amounts, 0).to_numpy(zero_copy_only=False), np.int64)
    digits = currency_digits(currencies)
    order = np.argsort(digits, kind="stable")
    pieces = []
    for d in np.unique(digits):
        rows = order[digits[order] == d]
        v = values[rows]
        step = 10 ** int(d)
        mag = np.abs(v)
        text = pc.binary_join_element_wise(
            pa.array(np.where(v < 0, "-", "")), pa.array(mag // step).cast(pa.string()), ""
        )
        if d:
            frac = pc.utf8_lpad(pa.array(mag % step).cast(pa.string()), int(d), "0")
            text = pc.binary_join_element_wise(text, frac, ".")
        pieces.append(text)
    joined = pa.concat_arrays(pieces) if pieces else pa.array([], pa.string())
    inverse = np.empty(n, np.int64)
    inverse[order] = np.arange(n)
    out = joined.take(pa.array(inverse))
    return pc.if_else(amounts.is_valid(), out, pa.nulls(n, pa.string()))


def statement_members(head: pa.Table, keys: Sequence[str]) -> dict[str, list[Any]]:
    """For ``bill_texts``: key of the bill JSON -> the statement members that sort right
    before it (``,"balance_due":"632.00"`` or "" on a bill without a statement); ``head``
    has one row per bill with ``currency`` and the statement columns (null: none)."""
    out: dict[str, list[Any]] = {}
    if not set(STATEMENT_KEYS) <= set(head.column_names):
        return out
    currency = head.column("currency").combine_chunks()
    if all(head.column(k).null_count == head.num_rows for k in STATEMENT_KEYS):
        return out  # first bills: nothing to add (the common case of a large run)
    for key in STATEMENT_KEYS:
        values = head.column(key).combine_chunks()
        text = minor_texts(values, currency)
        member = pc.fill_null(pc.binary_join_element_wise(f',"{key}":"', text, '"', ""), "")
        before = next((k for k in sorted(keys) if k > key), None)
        out.setdefault(before or "", []).append(member)
    return out


def add_statements(
    conn: duckdb.DuckDBPyConnection, period: str, bills: list[dict[str, Any]]
) -> None:
    """Add the statement keys to the period's bills (dicts) that have one."""
    rows = conn.execute(
        "SELECT s.bill_no, b.currency, s.balance_due_minor, s.other_credits_minor, "
        "s.payments_received_minor, s.previous_balance_minor FROM bill_statement s "
        "JOIN bill b ON b.bill_no = s.bill_no WHERE b.period = ?",
        [period],
    ).fetchall()
    found = {r[0]: r for r in rows}
    for bill in bills:
        row = found.get(bill["bill_no"])
        if row is not None:
            for key, value in zip(STATEMENT_KEYS, row[2:], strict=True):
                bill[key] = format_minor(int(value), row[1])

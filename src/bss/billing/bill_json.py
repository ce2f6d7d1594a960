"""The canonical JSON of a period's bills and its SHA-256, streamed and built in columns.

``bills_sha256`` is the SHA-256 of ``json.dumps(bills, sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` over the period's bills in ``bill_no``
order (:func:`bss.billing.export.canonical_json`). Building a million bills as Python
dicts for that costs seconds and gigabytes, so here the same bytes are made with Arrow
string kernels from two queries (the bills, and their lines streamed beside them): values
come out of DuckDB as text exactly as :func:`~bss.billing.export.bills_for_period` gets
them, strings are escaped as Python's encoder does (values needing more than quotes
around them go through it), and each bill is one text. The bytes are equal by
construction and checked against ``json.dumps`` by the tests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bss.errors import BillingError
from bss.receivables.statements import statement_members

__all__ = ["bill_texts", "bills_digest", "json_strings"]

_ROWS = 1 << 16
# the bill fields as bills_for_period reads them, one row per bill, and how many lines each
# has; the lines come from a query of their own (joined, the 22 bill fields were repeated
# on every line and sorted with it: twice the CPU and ~0.5 GB more memory at 100k bills)
_BILLS_SQL = """
SELECT b.bill_no, b.account_id, a.external_id AS account, a.name AS account_name, b.period,
       s.previous_balance_minor AS previous_balance,
       s.payments_received_minor AS payments_received,
       s.other_credits_minor AS other_credits, s.balance_due_minor AS balance_due,
       strftime(b.period_start, '%Y-%m-%dT%H:%M:%S+00:00') AS period_start,
       strftime(b.period_end, '%Y-%m-%dT%H:%M:%S+00:00') AS period_end,
       b.bill_date::VARCHAR AS bill_date, b.due_date::VARCHAR AS due_date, b.currency,
       b.amount_excl_tax::VARCHAR AS amount_excl_tax, b.tax_rate::VARCHAR AS tax_rate,
       b.tax_amount::VARCHAR AS tax_amount, b.amount_incl_tax::VARCHAR AS amount_incl_tax,
       b.amount_due::VARCHAR AS amount_due, b.state, b.kind, t.tax_name,
       coalesce(n.lines, 0) AS lines
FROM bill b JOIN billing_account a ON a.id = b.account_id
LEFT JOIN bill_statement s ON s.bill_no = b.bill_no
LEFT JOIN (SELECT x.bill_no, string_agg(x.name, ' / ' ORDER BY x.rate) AS tax_name
           FROM bill_tax x JOIN bill xb ON xb.bill_no = x.bill_no WHERE xb.period = $period
           GROUP BY x.bill_no) t ON t.bill_no = b.bill_no
LEFT JOIN (SELECT l.bill_no, count(*) AS lines
           FROM bill_line l JOIN bill lb ON lb.bill_no = l.bill_no WHERE lb.period = $period
           GROUP BY l.bill_no) n ON n.bill_no = b.bill_no
WHERE b.period = $period
ORDER BY b.bill_no
"""
# the lines of the period's bills, in the bills' order (the same ORDER BY on bill_no)
_LINES_SQL = """
SELECT l.bill_no, l.line_no, l.line_type, l.product_id, l.description, l.quantity, l.unit,
       l.amount::VARCHAR AS amount, l.amount_exact::VARCHAR AS amount_exact
FROM bill_line l JOIN bill b ON b.bill_no = l.bill_no
WHERE b.period = $period
ORDER BY l.bill_no, l.line_no
"""
#: bills made into text at a time
_BILLS_AT_ONCE = 1 << 14
_TEXT_BILL = ("account", "account_name", "amount_due", "amount_excl_tax", "amount_incl_tax",
              "bill_date", "bill_no", "currency", "due_date")  # fmt: skip
_TEXT_TAIL = ("period", "period_end", "period_start", "state", "tax_amount", "tax_name", "tax_rate")
# a control character, a quote or a backslash: the value needs escapes, not only quotes
_NEEDS_ESCAPES = r'[\x00-\x1f"\\]'


def _plain(arr: pa.Array) -> bool:
    """No value holds a control character, a quote or a backslash: checked on the string
    bytes at once (UTF-8 continuation bytes are >= 0x80, so never match)."""
    data = arr.buffers()[2] if len(arr) else None
    if data is None:
        return True
    offsets = np.frombuffer(arr.buffers()[1], np.int32, len(arr) + 1, arr.offset * 4)
    raw = np.frombuffer(data, np.uint8, int(offsets[-1] - offsets[0]), int(offsets[0]))
    return not bool(((raw < 0x20) | (raw == 0x22) | (raw == 0x5C)).any())


def json_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each string as ``json.dumps(value, ensure_ascii=False)`` writes it (null: ``null``)."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    arr = arr.cast(pa.string())
    quoted = pc.binary_join_element_wise('"', arr, '"', "")
    if _plain(arr):  # most columns: one pass over the bytes, no regex per value
        return pc.fill_null(quoted, "null")
    odd = pc.fill_null(pc.match_substring_regex(arr, _NEEDS_ESCAPES), False)
    if pc.any(odd).as_py():
        idx = np.flatnonzero(np.asarray(odd.to_numpy(zero_copy_only=False)))
        fixed = [json.dumps(v, ensure_ascii=False) for v in arr.take(pa.array(idx)).to_pylist()]
        mask = np.zeros(len(arr), bool)
        mask[idx] = True
        quoted = pc.replace_with_mask(quoted, pa.array(mask), pa.array(fixed, pa.string()))
    return pc.fill_null(quoted, "null")


def _ints(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return pc.fill_null(pc.cast(values, pa.string()), "null")


def _member(key: str, text: pa.Array, sep: str = ",") -> list[pa.Array | str]:
    return [f'{sep}"{key}":', text]


def bill_texts(bills: pa.Table, lines: pa.Table) -> pa.Array:
    """One canonical JSON text per bill: ``bills`` one row per bill (its fields and
    ``lines``, how many lines it has) in bill_no order, ``lines`` their lines in the same
    order, line_no within a bill."""
    n = bills.num_rows
    if n == 0:
        return pa.array([], pa.string())

    def col(name: str) -> pa.Array:
        return lines.column(name).combine_chunks()

    def h(name: str) -> pa.Array:
        return bills.column(name).combine_chunks()

    counts = np.asarray(h("lines").to_numpy(zero_copy_only=False), np.int64)
    owner = h("bill_no").take(pa.array(np.repeat(np.arange(n), counts)))
    if (
        int(counts.sum()) != lines.num_rows
        or not pc.all(pc.equal(col("bill_no"), owner), min_count=0).as_py()
    ):
        raise BillingError("the bills JSON: lines out of step with their bills")
    line = pc.binary_join_element_wise(
        '{"amount":', json_strings(col("amount")),
        ',"amount_exact":', json_strings(col("amount_exact")),
        ',"description":', json_strings(col("description")),
        ',"line_no":', _ints(col("line_no")),
        ',"line_type":', json_strings(col("line_type")),
        ',"product_id":', _ints(col("product_id")),
        ',"quantity":', _ints(col("quantity")),
        ',"unit":', json_strings(col("unit")), "}", "",
    )  # fmt: skip
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), line), ",")
    parts: list[pa.Array | str] = ['{"account":', json_strings(h("account"))]
    parts += _member("account_id", _ints(h("account_id")))
    # the account's statement (receivables, issue #23): only on bills that have one
    extra = statement_members(bills, (*_TEXT_BILL, "kind", "lines", *_TEXT_TAIL))
    for key in _TEXT_BILL[1:]:
        parts += [*extra.get(key, []), *_member(key, json_strings(h(key)))]
    # "kind" only on supplementary bills: regular ones keep the JSON they always had
    supplementary = pc.equal(h("kind"), "supplementary")
    parts += [pc.if_else(supplementary, ',"kind":"supplementary"', ""), ',"lines":[', joined, "]"]
    for key in _TEXT_TAIL:
        parts += [*extra.get(key, []), *_member(key, json_strings(h(key)))]
    parts += ["}", ""]
    return pc.binary_join_element_wise(*parts)


def _whole_bills(conn: duckdb.DuckDBPyConnection, period: str) -> Iterator[pa.Array]:
    """The period's bills as texts, a few thousand at a time: the bills are read at once
    (one row each), their lines streamed beside them (a connection streams one result)."""
    params = {"period": period}
    bills = conn.sql(_BILLS_SQL, params=params).to_arrow_table()
    counts = np.asarray(bills.column("lines").to_numpy(), np.int64)
    reader = conn.sql(_LINES_SQL, params=params).to_arrow_reader(_ROWS)
    batches = iter(reader)
    held: list[pa.RecordBatch] = []
    rows = 0
    for lo in range(0, bills.num_rows, _BILLS_AT_ONCE):
        need = int(counts[lo : lo + _BILLS_AT_ONCE].sum())
        while rows < need:
            batch = next(batches, None)
            if batch is None:
                raise BillingError("the bills JSON: fewer lines than its bills have")
            held.append(batch)
            rows += batch.num_rows
        lines = pa.Table.from_batches(held, schema=reader.schema)
        held, rows = [b for b in lines.slice(need).to_batches() if b.num_rows], rows - need
        yield bill_texts(bills.slice(lo, _BILLS_AT_ONCE), lines.slice(0, need))
    if rows or any(b.num_rows for b in batches):
        raise BillingError("the bills JSON: more lines than its bills have")


def bills_digest(conn: duckdb.DuckDBPyConnection, period: str) -> tuple[str, int]:
    """(SHA-256 of the period's canonical bills JSON, number of bills), streamed."""
    digest = hashlib.sha256(b"[")
    bills = 0
    for texts in _whole_bills(conn, period):
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(texts)], pa.int32()),
                                                         texts), ",")  # fmt: skip
        if bills:
            digest.update(b",")
        # the joined text's UTF-8 bytes straight from its Arrow buffer (no Python str)
        ends = np.frombuffer(joined.buffers()[1], np.int32, 2, joined.offset * 4)
        digest.update(memoryview(joined.buffers()[2])[int(ends[0]) : int(ends[1])])
        bills += len(texts)
    digest.update(b"]")
    return digest.hexdigest(), bills

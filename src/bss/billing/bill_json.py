"""The canonical JSON of a period's bills and its SHA-256, streamed and built in columns.

``bills_sha256`` is the SHA-256 of ``json.dumps(bills, sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` over the period's bills in ``bill_no``
order (:func:`bss.billing.export.canonical_json`). Building a million bills as Python
dicts for that costs seconds and gigabytes, so here the same bytes are made with Arrow
string kernels from one streamed query: values come out of DuckDB as text exactly as
:func:`~bss.billing.export.bills_for_period` gets them, strings are escaped as Python's
encoder does (values needing more than quotes around them go through it), and each bill
is one text. The bytes are equal by construction and checked against ``json.dumps`` by
the tests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bss.receivables.statements import statement_members

__all__ = ["bill_texts", "bills_digest", "json_strings"]

_ROWS = 1 << 16
# bill fields as bills_for_period reads them, then the line fields; one row per line
_SQL = """
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
       l.line_no, l.line_type, l.product_id, l.description, l.quantity, l.unit,
       l.amount::VARCHAR AS amount, l.amount_exact::VARCHAR AS amount_exact
FROM bill b JOIN billing_account a ON a.id = b.account_id
LEFT JOIN bill_statement s ON s.bill_no = b.bill_no
LEFT JOIN (SELECT x.bill_no, string_agg(x.name, ' / ' ORDER BY x.rate) AS tax_name
           FROM bill_tax x JOIN bill xb ON xb.bill_no = x.bill_no WHERE xb.period = $period
           GROUP BY x.bill_no) t ON t.bill_no = b.bill_no
LEFT JOIN bill_line l ON l.bill_no = b.bill_no
WHERE b.period = $period
ORDER BY b.bill_no, l.line_no
"""
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


def bill_texts(rows: pa.Table) -> pa.Array:
    """One canonical JSON text per bill; ``rows`` holds whole bills, one row per line
    (a bill without lines: one row with null line fields), in bill_no, line_no order."""
    n = rows.num_rows
    if n == 0:
        return pa.array([], pa.string())

    def col(name: str) -> pa.Array:
        return rows.column(name).combine_chunks()

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
    bill_no = col("bill_no")
    codes = np.asarray(pc.not_equal(bill_no.slice(1), bill_no.slice(0, n - 1)).to_numpy(
        zero_copy_only=False))  # fmt: skip
    first = np.flatnonzero(np.r_[True, codes])
    has_line = np.asarray(col("line_no").is_valid().to_numpy(zero_copy_only=False))
    counts = np.add.reduceat(has_line.astype(np.int64), first)
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
    lines = pa.ListArray.from_arrays(pa.array(offsets), line.filter(pa.array(has_line)))
    joined = pc.binary_join(lines, ",")
    head = rows.take(pa.array(first))

    def h(name: str) -> pa.Array:
        return head.column(name).combine_chunks()

    parts: list[pa.Array | str] = ['{"account":', json_strings(h("account"))]
    parts += _member("account_id", _ints(h("account_id")))
    # the account's statement (receivables, issue #23): only on bills that have one
    extra = statement_members(head, (*_TEXT_BILL, "kind", "lines", *_TEXT_TAIL))
    for key in _TEXT_BILL[1:]:
        parts += [*extra.get(key, []), *_member(key, json_strings(h(key)))]
    # "kind" only on supplementary bills: regular ones keep the JSON they always had
    kind = h("kind")
    supplementary = pc.equal(kind, "supplementary")
    parts += [pc.if_else(supplementary, ',"kind":"supplementary"', ""), ',"lines":[', joined, "]"]
    for key in _TEXT_TAIL:
        parts += [*extra.get(key, []), *_member(key, json_strings(h(key)))]
    parts += ["}", ""]
    return pc.binary_join_element_wise(*parts)


def _whole_bills(conn: duckdb.DuckDBPyConnection, period: str) -> Iterator[pa.Table]:
    """The period's bill rows in batches that never split a bill."""
    reader = conn.sql(_SQL, params={"period": period}).to_arrow_reader(_ROWS)
    carry: pa.Table | None = None
    for batch in reader:
        table = pa.Table.from_batches([batch])
        if carry is not None:
            table = pa.concat_tables([carry, table])
        if table.num_rows == 0:
            continue
        bill_no = table.column("bill_no")
        last = bill_no[table.num_rows - 1]
        tail = int(pc.sum(pc.equal(bill_no, last)).as_py())  # rows are ordered by bill_no
        carry = table.slice(table.num_rows - tail)
        if tail < table.num_rows:
            yield table.slice(0, table.num_rows - tail).combine_chunks()
    if carry is not None and carry.num_rows:
        yield carry.combine_chunks()


def bills_digest(conn: duckdb.DuckDBPyConnection, period: str) -> tuple[str, int]:
    """(SHA-256 of the period's canonical bills JSON, number of bills), streamed."""
    digest = hashlib.sha256(b"[")
    bills = 0
    for table in _whole_bills(conn, period):
        texts = bill_texts(table)
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

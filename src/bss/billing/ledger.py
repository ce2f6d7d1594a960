"""The database writes of a billing pass, in bulk and inside its one transaction.

Bills and lines go in through Arrow tables (not row by row); the billed-usage ledger and
its duplicate check are DuckDB reading the pass's rated parts directly
(:class:`BilledUsageFeed`: part by part while a cluster rates, else once rating is done);
the products a bill took account of and the one-time fees it charged are recorded so that
a later pass bills only what is missing and nothing twice.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bss.billing.lines import BillTotals
from bss.billing.money import micros_to_decimal_array
from bss.billing.passes import PassPlan
from bss.billing.period import Period
from bss.errors import BillingError
from collectors.dataset import dataset_files
from rating_engine.scale.parts import is_part_of

__all__ = [
    "BilledUsageFeed",
    "bill_numbers",
    "check_repeats",
    "record_one_time",
    "repeated_ids",
    "unrecord_accounts",
    "write_bills",
]

_INSERT = (
    "INSERT INTO billed_usage SELECT record_id, account_id, $period, "
    "CAST(CAST(cost AS DECIMAL(18, 0)) * 0.000001 AS DECIMAL(18, 6)) "
    "FROM read_parquet($files)"
)


def bill_numbers(period: Period, accounts: np.ndarray, supplement: np.ndarray | None = None,
                 pass_no: int = 1) -> pa.Array:  # fmt: skip
    """``B<YYYYMM>-<account, 6 digits>``, and ``-S<pass>`` after it for the accounts in
    ``supplement`` (a second bill of the period). Deterministic: a pass repeated after a
    crash writes the same numbers."""
    digits = pc.utf8_lpad(pc.cast(pa.array(accounts, pa.int64()), pa.string()), 6, "0")
    numbers = pc.binary_join_element_wise(f"B{period.name.replace('-', '')}", digits, "-")
    if supplement is None or not len(supplement):
        return numbers
    again = pa.array(np.isin(np.asarray(accounts, np.int64), supplement))
    return pc.if_else(again, pc.binary_join_element_wise(numbers, f"S{pass_no}", "-"), numbers)


def write_bills(
    conn: duckdb.DuckDBPyConnection,
    plan: PassPlan,
    lines: pa.Table,
    totals: BillTotals,
    accounts: pa.Table,
    already_billed: np.ndarray,
) -> pa.Table:
    """Insert the pass's bills, lines (rounded, with their exact amounts) and tax per rate;
    returns (account_id, bill_no) of its bills.

    ``already_billed``: accounts that have a bill for the period (their new bill is
    numbered as a second one)."""
    period = plan.period
    if len(totals.account_id) == 0:
        return pa.table(
            {"account_id": pa.array([], pa.int64()), "bill_no": pa.array([], pa.string())}
        )
    pos = pa.array(np.searchsorted(np.asarray(accounts.column("id").to_numpy()),
                                   totals.account_id))  # fmt: skip
    terms = np.asarray(accounts.column("payment_terms_days").take(pos).to_numpy(), np.int64)
    bill_nos = bill_numbers(period, totals.account_id, already_billed, plan.pass_no)
    bill_date = np.datetime64(period.bill_date, "D")
    bill_table = pa.table({
        "bill_no": bill_nos,
        "account_id": pa.array(totals.account_id, pa.int64()),
        "currency": accounts.column("currency").take(pos),
        "due_date": pa.array(bill_date + terms.astype("timedelta64[D]"), pa.date32()),
        "tax_rate": accounts.column("rate").take(pos),
        "excl": micros_to_decimal_array(pa.array(totals.excl, pa.int64())),
        "tax": micros_to_decimal_array(pa.array(totals.tax, pa.int64())),
        "incl": micros_to_decimal_array(pa.array(totals.incl, pa.int64())),
        "due": micros_to_decimal_array(pa.array(totals.due, pa.int64())),
    })  # fmt: skip
    line_acc = pc.index_in(lines.column("account_id"), value_set=pa.array(totals.account_id))
    line_table = pa.table({
        "bill_no": bill_nos.take(line_acc),
        "line_no": lines.column("line_no"),
        "line_type": lines.column("line_type"),
        "product_id": lines.column("product_id"),
        "description": lines.column("description"),
        "quantity": lines.column("quantity"),
        "unit": lines.column("unit"),
        "amount": micros_to_decimal_array(lines.column("micros")),
        "amount_exact": micros_to_decimal_array(lines.column("exact")),
    })  # fmt: skip
    # the tax per rate with the rate's name as it is today (an account is one rate group)
    tax_table = pa.table({
        "bill_no": bill_nos,
        "rate": accounts.column("rate").take(pos),
        "name": accounts.column("tax_name").take(pos),
        "taxable": bill_table.column("excl"),
        "tax": bill_table.column("tax"),
    })  # fmt: skip
    conn.register("_bills", bill_table)
    conn.register("_lines", line_table)
    conn.register("_taxes", tax_table)
    try:
        conn.execute(
            "INSERT INTO bill SELECT bill_no, account_id, $period, $start, $end, $bill_date, "
            "due_date, currency, excl, tax_rate, tax, incl, due, 'final', $kind, $pass FROM _bills",
            {"period": period.name, "start": period.start, "end": period.end,
             "bill_date": period.bill_date,
             "kind": "supplementary" if plan.supplementary else "regular",
             "pass": plan.pass_no},
        )  # fmt: skip
        conn.execute(
            "INSERT INTO bill_line (bill_no, line_no, line_type, product_id, description, "
            "quantity, unit, amount, amount_exact) SELECT bill_no, line_no, line_type, "
            "product_id, description, quantity, unit, amount, amount_exact FROM _lines"
        )
        conn.execute("INSERT INTO bill_tax SELECT bill_no, rate, name, taxable, tax FROM _taxes")
        # the products these bills took account of: the account's products active in the
        # period, but on a second bill only those no bill of the period had
        conn.execute(
            "INSERT INTO billed_product SELECT $period, p.id, min(b.bill_no) FROM product p "
            "JOIN _bills b ON b.account_id = p.account_id "
            "WHERE p.start_date < $end AND (p.termination_date IS NULL OR "
            "p.termination_date > $start) AND NOT EXISTS (SELECT 1 FROM billed_product bp "
            "WHERE bp.period = $period AND bp.product_id = p.id) GROUP BY p.id",
            {"period": period.name, "start": period.start, "end": period.end},
        )
    finally:
        conn.unregister("_bills")
        conn.unregister("_lines")
        conn.unregister("_taxes")
    return bill_table.select(["account_id", "bill_no"])


def record_one_time(conn: duckdb.DuckDBPyConnection, one_time: pa.Table, bills: pa.Table) -> None:
    """The one-time fees these bills charged (billed once per product and price)."""
    if one_time.num_rows == 0:
        return
    at = pc.index_in(one_time.column("account_id"), value_set=bills.column("account_id"))
    table = one_time.append_column("bill_no", bills.column("bill_no").take(at)).filter(
        pc.is_valid(at)
    )
    conn.register("_one_time", table)
    try:
        conn.execute("INSERT INTO billed_one_time SELECT product_id, price_id, bill_no "
                     "FROM _one_time")  # fmt: skip
    finally:
        conn.unregister("_one_time")


def repeated_ids(conn: duckdb.DuckDBPyConnection, files: list[str]) -> int:
    """How many record ids repeat among ``files`` (DuckDB groups them, spilling to disk
    beyond its memory limit). The query reads the parts only, so it runs on a connection
    of its own: ``conn`` stays free (in its transaction) meanwhile."""
    if not files:
        return 0
    cursor = conn.cursor()
    try:
        ((repeats,),) = cursor.execute(
            "SELECT count(*) FROM (SELECT record_id FROM read_parquet($files) "
            "GROUP BY record_id HAVING count(*) > 1)",
            {"files": files},
        ).fetchall()
    finally:
        cursor.close()
    return int(repeats)


def check_repeats(conn: duckdb.DuckDBPyConnection, files: list[str], period: Period) -> None:
    """Refuse the pass when a record id repeats among its rated parts
    (:func:`repeated_ids`)."""
    repeats = repeated_ids(conn, files)
    if repeats:
        raise BillingError(
            f"period {period.name}: {repeats} rated records repeat a record_id; refusing to "
            "bill any record twice (check the usage dataset)"
        )


def unrecord_accounts(conn: duckdb.DuckDBPyConnection, files: list[str], period: Period,
                      accounts: np.ndarray) -> None:  # fmt: skip
    """Take the records of ``accounts`` in ``files`` (this pass's rated parts, added by a
    :class:`BilledUsageFeed`) out of the ledger again: accounts set aside after rating."""
    if not files or not len(accounts):
        return
    conn.execute(
        "DELETE FROM billed_usage WHERE period = $period AND list_contains($accounts, "
        "account_id) AND record_id IN (SELECT record_id FROM read_parquet($files) "
        "WHERE list_contains($accounts, account_id))",
        {"period": period.name, "files": files,
         "accounts": [int(a) for a in np.asarray(accounts, np.int64)]},
    )  # fmt: skip


class BilledUsageFeed:
    """Adds a pass's rated parts to the billed-usage ledger as they are published, on a
    thread, while the pass is still rating (DuckDB releases the GIL) - or, with ``watch``
    False, all of them in one insert on leaving (when the rating keeps this machine's
    cores busy itself, the ledger beside it only slows it down).

    Use inside the pass's transaction, as a context manager around the rating: nothing
    else may use ``conn`` until it is left. Leaving it takes the parts published since the
    last look and waits for the thread; an error of the thread is raised there (and the
    transaction rolled back by its owner). A part is published whole (written under a
    temporary name and renamed), and a part written again - a retried task - has the same
    rows, so each file is read once. The duplicate check (:func:`check_repeats`) runs
    over all the parts once rating is done. ``defer``: leaving does not take the last
    parts; :meth:`finish` does (on another thread, say, while the caller goes on).
    """

    #: seconds between two looks for new parts
    POLL = 0.25

    def __init__(self, conn: duckdb.DuckDBPyConnection, rated_root: Path, tag: str,
                 period: Period, *, watch: bool = True, defer: bool = False) -> None:  # fmt: skip
        self.conn, self.root, self.tag, self.period = conn, rated_root, tag, period
        self.watch, self.defer = watch, defer
        self.files: list[str] = []  # recorded, in the order they were
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"ledger-{tag}", daemon=True)

    def _published(self) -> list[str]:
        found = (str(p) for p in dataset_files(self.root) if is_part_of(p, [self.tag]))
        return [p for p in found if p not in self._seen]

    def _take(self) -> None:
        new = self._published()
        if new:
            self.conn.execute(_INSERT, {"period": self.period.name, "files": new})
            self._seen.update(new)
            self.files.extend(new)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.POLL):
                self._take()
        except BaseException as exc:  # raised in the owner's thread on leaving
            self._error = exc

    def __enter__(self) -> BilledUsageFeed:
        if self.watch:
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self._stop.set()
        if self.watch:
            self._thread.join()
        if kind is None and not self.defer:
            self.finish()

    def finish(self) -> list[str]:
        """Once left: take the parts published since the thread's last look (an error of
        the thread is raised here); returns every part recorded."""
        if self._error is not None:
            raise self._error
        self._take()
        return self.files

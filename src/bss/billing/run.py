"""Billing runs: rate a period's usage, add recurring, one-time, discount and tax, write bills.

A run streams: usage is read day by day (and account bucket by bucket when a day is
large), rated, and written as Parquet parts named for the run, while only sums per
account, subscription and service travel on; bills are then made from those sums in
whole columns. The same steps run in this process or as tasks on a Dask cluster
(``client=``), with byte-identical bills.

A run is idempotent and atomic. Rated and suspense parts get names derived from the
period, so a rerun replaces them; every database write of a run (bills, lines, the
billed-usage ledger, the run record) happens in one DuckDB transaction, on this process
only, so a run killed at any moment leaves either nothing or everything. A period that
has a run record is final: running it again changes nothing. Usage that arrives after
its period was billed is billed on the next period's bill as a separately described
line, and a tariff corrected after a period was billed re-rates that period's records
and bills the difference on the next bill (``rerating``) - a final bill is never
rewritten.
"""

from __future__ import annotations

import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bss.billing.bill_json import bills_digest
from bss.billing.charges import product_charges
from bss.billing.export import export_bills
from bss.billing.lines import (
    BillTotals,
    adjustment_lines,
    bill_totals,
    number_lines,
    period_charge_lines,
    usage_lines,
)
from bss.billing.money import micros_to_decimal_array
from bss.billing.period import Period, parse_period
from bss.billing.rating_step import (
    CHUNK_ROWS,
    RatingOutcome,
    derive_flow_usage,
    rate_period,
    scratch_folder,
    tariff_plan,
)
from bss.billing.rerating import plan_rerating, record_adjustments
from bss.db import arrow_query, transaction, utc_now
from bss.errors import BillingError
from bss.subscriptions import subscription_table
from collectors.dataset import dataset_files
from collectors.workspace import WorkspacePaths
from rating_engine.rating.rate import RatingPlan
from rating_engine.scale.executor import Executor, executor_for
from rating_engine.scale.parts import is_part_of

__all__ = ["BillingRunResult", "rate_unbilled", "run_billing"]

#: DuckDB's memory while it checks and records the run's records (it spills beyond).
_DB_MEMORY = "256MB"


@dataclass(frozen=True)
class BillingRunResult:
    period: str
    accounts: int
    total: Decimal
    currency_totals: dict[str, str]
    changed: bool
    bills_sha256: str
    rated: int = 0
    suspense: int = 0
    suspense_by_reason: dict[str, int] = field(default_factory=dict)
    exports: Path | None = None
    adjusted_records: int = 0


def _labels(conn: duckdb.DuckDBPyConnection) -> pa.Table:
    """Product id -> its service identifiers, for line descriptions."""
    return arrow_query(
        conn,
        "SELECT product_id, string_agg(key, ' ' ORDER BY key_type, key) AS label "
        "FROM service_identifier GROUP BY product_id",
    )


def _bill_nos(period: Period, accounts: np.ndarray) -> pa.Array:
    """Deterministic, so a rerun of an interrupted run writes the same numbers."""
    digits = pc.utf8_lpad(pc.cast(pa.array(accounts, pa.int64()), pa.string()), 6, "0")
    return pc.binary_join_element_wise(f"B{period.name.replace('-', '')}", digits, "-")


def _write_bills(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    lines: pa.Table,
    totals: BillTotals,
    accounts: pa.Table,
) -> None:
    """Insert every bill and line of the run in bulk (through Arrow, not row by row)."""
    if len(totals.account_id) == 0:
        return
    pos = pa.array(np.searchsorted(np.asarray(accounts.column("id").to_numpy()),
                                   totals.account_id))  # fmt: skip
    currency = accounts.column("currency").take(pos)
    terms = np.asarray(accounts.column("payment_terms_days").take(pos).to_numpy(), np.int64)
    bill_nos = _bill_nos(period, totals.account_id)
    bill_date = np.datetime64(period.bill_date, "D")
    bill_table = pa.table({
        "bill_no": bill_nos,
        "account_id": pa.array(totals.account_id, pa.int64()),
        "currency": currency,
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
    })  # fmt: skip
    conn.register("_bills", bill_table)
    conn.register("_lines", line_table)
    try:
        conn.execute(
            "INSERT INTO bill SELECT bill_no, account_id, $period, $start, $end, $bill_date, "
            "due_date, currency, excl, tax_rate, tax, incl, due, 'final' FROM _bills",
            {"period": period.name, "start": period.start, "end": period.end,
             "bill_date": period.bill_date},
        )  # fmt: skip
        conn.execute(
            "INSERT INTO bill_line SELECT bill_no, line_no, line_type, product_id, description, "
            "quantity, unit, amount FROM _lines"
        )
    finally:
        conn.unregister("_bills")
        conn.unregister("_lines")


def _record_one_time(conn: duckdb.DuckDBPyConnection, period: Period, one_time: pa.Table) -> None:
    if one_time.num_rows == 0:
        return
    table = one_time.append_column(
        "bill_no", _bill_nos(period, np.asarray(one_time.column("account_id").to_numpy()))
    )
    conn.register("_one_time", table)
    try:
        conn.execute("INSERT INTO billed_one_time SELECT product_id, price_id, bill_no "
                     "FROM _one_time")  # fmt: skip
    finally:
        conn.unregister("_one_time")


def _check_unique(conn: duckdb.DuckDBPyConnection, files: list[str], period: Period) -> None:
    """No record id twice among the run's rated parts (DuckDB groups them, spilling to
    disk beyond its memory limit)."""
    if not files:
        return
    ((repeats,),) = conn.execute(
        "SELECT count(*) FROM (SELECT record_id FROM read_parquet($files) GROUP BY record_id "
        "HAVING count(*) > 1)",
        {"files": files},
    ).fetchall()
    if repeats:
        raise BillingError(
            f"period {period.name}: {repeats} rated records repeat a record_id; refusing to "
            "bill any record twice (check the usage dataset)"
        )


def _ledger(conn: duckdb.DuckDBPyConnection, files: list[str], period: Period) -> None:
    _check_unique(conn, files, period)
    _record_billed_usage(conn, files, period)


def _record_billed_usage(conn: duckdb.DuckDBPyConnection, files: list[str], period: Period) -> None:
    """The billed-usage ledger straight from the run's rated parts (DuckDB reads them)."""
    if not files:
        return
    conn.execute(
        "INSERT INTO billed_usage SELECT record_id, account_id, $period, "
        "CAST(CAST(cost AS DECIMAL(18, 0)) * 0.000001 AS DECIMAL(18, 6)) "
        "FROM read_parquet($files)",
        {"period": period.name, "files": files},
    )


def _summary(
    conn: duckdb.DuckDBPyConnection,
    period: str,
    changed: bool,
    digest: tuple[str, int],
    outcome: RatingOutcome | None,
    exports: Path | None,
    adjusted_records: int = 0,
) -> BillingRunResult:
    totals = conn.execute(
        "SELECT currency, sum(amount_incl_tax) FROM bill WHERE period = ? GROUP BY currency "
        "ORDER BY currency",
        [period],
    ).fetchall()
    return BillingRunResult(
        period=period,
        accounts=digest[1],
        total=sum((Decimal(t) for _, t in totals), Decimal(0)),
        currency_totals={cur: str(t) for cur, t in totals},
        changed=changed,
        bills_sha256=digest[0],
        rated=outcome.rated if outcome else 0,
        suspense=outcome.suspense if outcome else 0,
        suspense_by_reason=outcome.suspense_by_reason() if outcome else {},
        exports=exports,
        adjusted_records=adjusted_records,
    )


def _accounts(conn: duckdb.DuckDBPyConnection) -> pa.Table:
    return arrow_query(
        conn,
        "SELECT a.id, a.currency, a.payment_terms_days, t.rate, "
        "CAST(t.rate * 1000000 AS BIGINT) AS rate_micros "
        "FROM billing_account a JOIN tax_rate t ON t.jurisdiction = a.tax_jurisdiction "
        "ORDER BY a.id",
    )


@dataclass(frozen=True)
class _Pass:
    """A billing pass being made: what it rates with, and where its parts go."""

    period: Period
    tag: str
    committed: tuple[str, ...]
    subscriptions: pa.Table
    plan: RatingPlan
    scratch: Path


def _start_pass(
    conn: duckdb.DuckDBPyConnection, workspace: WorkspacePaths, period: Period
) -> _Pass:
    committed = tuple(p for (p,) in conn.execute("SELECT period FROM billing_run").fetchall())
    tag = period.name
    scratch = scratch_folder(workspace, tag)
    shutil.rmtree(scratch, ignore_errors=True)
    return _Pass(period, tag, committed, subscription_table(conn, period.end),
                 tariff_plan(workspace), scratch)  # fmt: skip


def _rate(
    workspace: WorkspacePaths,
    bill: _Pass,
    executor: Executor,
    chunk_rows: int,
    buckets: int | None,
) -> RatingOutcome:
    derive_flow_usage(workspace, bill.period, bill.subscriptions, executor)
    return rate_period(workspace, bill.period, bill.subscriptions, executor, tag=bill.tag,
                       billed_tags=bill.committed, plan=bill.plan, chunk_rows=chunk_rows,
                       buckets=buckets)  # fmt: skip


def rate_unbilled(
    conn: duckdb.DuckDBPyConnection,
    workspace: WorkspacePaths,
    period_name: str,
    *,
    client: Any | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> RatingOutcome:
    """The rating step of the period's billing run, alone: derive usage from flows, rate the
    unbilled usage and write the rated and suspense parts the run would write (the run
    replaces them). Nothing goes into the database. A billed period is refused: its rated
    parts are what its bills rest on."""
    period = parse_period(period_name)
    if conn.execute("SELECT 1 FROM billing_run WHERE period = ?", [period.name]).fetchall():
        raise BillingError(
            f"period {period.name} is billed; its rated parts are what its bills rest on "
            "and stay as they are (`rating-engine rate --period "
            f"{period.name} --force` re-rates it into a new generation beside them)"
        )
    executor = executor_for(client, f"rate-{period.name}-{uuid.uuid4().hex[:8]}", workspace.root)
    bill = _start_pass(conn, workspace, period)
    outcome = _rate(workspace, bill, executor, chunk_rows, None)
    shutil.rmtree(bill.scratch, ignore_errors=True)
    return outcome


def run_billing(
    conn: duckdb.DuckDBPyConnection,
    workspace: WorkspacePaths,
    period_name: str,
    *,
    now: datetime | None = None,
    export: bool = True,
    client: Any | None = None,
    chunk_rows: int = CHUNK_ROWS,
    buckets: int | None = None,
) -> BillingRunResult:
    """Bill ``period_name`` (``YYYY-MM``) for every account with charges or usage.

    ``client``: a ``dask.distributed.Client`` to run the partition tasks on its cluster
    (workers read and write the workspace's Parquet, so it must be on storage they
    share; they are checked before anything is written); None runs them here.
    ``chunk_rows`` (records rated in one call) and ``buckets`` (account partitions; by
    default from the days' sizes and the workers) change how the work is cut, never the
    bills.
    """
    period = parse_period(period_name)
    if period.end > (now or utc_now()):
        raise BillingError(f"period {period.name} has not ended (it ends {period.end:%Y-%m-%d})")
    exports = workspace.reports / "bills" / period.name
    done = conn.execute("SELECT 1 FROM billing_run WHERE period = ?", [period.name]).fetchall()
    if done:
        if export and not exports.exists():
            export_bills(conn, period.name, exports)
        return _summary(conn, period.name, False, bills_digest(conn, period.name), None,
                        exports if export else None)  # fmt: skip

    executor = executor_for(client, f"{period.name}-{uuid.uuid4().hex[:8]}", workspace.root)
    bill = _start_pass(conn, workspace, period)
    tag, plan, committed, scratch = bill.tag, bill.plan, bill.committed, bill.scratch
    outcome = _rate(workspace, bill, executor, chunk_rows, buckets)
    charges = product_charges(conn, period)
    if charges.mismatches.num_rows:
        first = charges.mismatches.slice(0, 1).to_pylist()[0]
        raise BillingError(
            f"price {first['price_id']} is in {first['price_currency']}, account "
            f"{first['account_id']} bills in {first['currency']}"
        )
    rerating = plan_rerating(conn, workspace, period, plan, tags_of={p: (p,) for p in committed},
                             scratch=scratch, chunk_rows=chunk_rows)  # fmt: skip
    labels = _labels(conn)
    accounts = _accounts(conn)
    rated_files = [str(p) for p in dataset_files(workspace.rated) if is_part_of(p, [tag])]
    pa.default_memory_pool().release_unused()  # the chunks' buffers, before DuckDB's turn
    conn.execute(f"SET memory_limit = '{_DB_MEMORY}'")
    try:
        with transaction(conn), ThreadPoolExecutor(max_workers=1) as db:
            # DuckDB checks and records the rated records (it releases the GIL) while the
            # bills are made here; nothing else uses the connection until it is done
            ledger = db.submit(_ledger, conn, rated_files, period)
            adjustments = rerating.run(executor, bill.subscriptions, plan)
            lines = number_lines(
                charges.lines,
                usage_lines(outcome.partial.usage, labels),
                period_charge_lines(outcome.period_charges, labels),
                adjustment_lines(adjustments.partial.sums),
            )
            lines = lines.filter(pc.is_in(lines.column("account_id"),
                                          value_set=accounts.column("id")))  # fmt: skip
            totals = bill_totals(
                lines,
                np.asarray(accounts.column("id").to_numpy(), np.int64),
                np.asarray(accounts.column("rate_micros").to_numpy(), np.int64),
                accounts.column("currency").to_pylist(),
            )
            ledger.result()
            _write_bills(conn, period, lines, totals, accounts)
            record_adjustments(conn, adjustments, period, plan)
            _record_one_time(conn, period, charges.one_time)
            digest = bills_digest(conn, period.name)
            conn.execute(
                "INSERT INTO billing_run (period, finished_at, bills, rated_records, "
                "suspense_records, bills_sha256) VALUES (?, ?, ?, ?, ?, ?)",
                [period.name, utc_now(), digest[1], outcome.rated, outcome.suspense,
                 digest[0]],
            )  # fmt: skip
    finally:
        conn.execute("RESET memory_limit")
    shutil.rmtree(scratch, ignore_errors=True)
    if export:
        export_bills(conn, period.name, exports)
    return _summary(conn, period.name, True, digest, outcome, exports if export else None,
                    adjustments.records)  # fmt: skip

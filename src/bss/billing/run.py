"""Billing runs: rate a period's usage, add recurring, one-time, discount and tax, write bills.

A run streams: usage is read day by day (and account bucket by bucket when a day is
large), rated, and written as Parquet parts named for the run, while only sums per
account, subscription and service travel on; bills are then made from those sums in
whole columns. The same steps run in this process or as tasks on a Dask cluster
(``client=``), with byte-identical bills.

A run never stops on one account: an account whose bill cannot be made (a price or a
tariff in another currency, a tariff the workspace lacks, amounts beyond exact money) is
recorded as a billing exception with its reason (:mod:`bss.billing.exceptions`), its
usage left unbilled, and every other account is billed in the same run. Running the
period again bills what is missing - the accounts still without a bill once the cause is
fixed, accounts and products added since - on supplementary bills, and nothing else
(:mod:`bss.billing.passes`); issued bills are never touched.

A run is idempotent and atomic. Rated and suspense parts get names derived from the
period and pass, so a rerun replaces them; every database write of a run (bills, lines,
exceptions, the billed-usage ledger, the run record) happens in one DuckDB transaction,
on this process only, so a run killed at any moment leaves either nothing or everything.
Usage that arrives after its period was billed is billed on the next period's bill as a
separately described line, and a tariff corrected after a period was billed re-rates
that period's records and bills the difference on the next bill (``rerating``).
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
from bss.billing.charges import ProductCharges, product_charges
from bss.billing.exceptions import (
    accounts_of,
    amount_exceptions,
    by_reason,
    currency_exceptions,
    record_exceptions,
    tariff_exceptions,
    usage_currency_exceptions,
)
from bss.billing.export import export_bills
from bss.billing.ledger import (
    BilledUsageFeed,
    check_repeats,
    record_one_time,
    repeated_ids,
    unrecord_accounts,
    write_bills,
)
from bss.billing.lines import (
    BillTotals,
    adjustment_lines,
    bill_totals,
    number_lines,
    period_charge_lines,
    round_lines,
    usage_lines,
)
from bss.billing.passes import PassPlan, plan_pass
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
from bss.invoice.rounding import RoundingPolicy
from bss.invoice.settings import policy_on
from bss.receivables.bill_entries import post_pass_bills
from bss.receivables.sla_credits import with_sla_credits
from bss.subscriptions import subscription_table
from collectors.workspace import WorkspacePaths
from rating_engine.rating.rate import RatingPlan
from rating_engine.scale.executor import Executor, executor_for
from rating_engine.scale.parts import drop_rows, remove_tag_parts
from rating_engine.scale.rate_partition import Billable
from rating_engine.scale.rerate_partition import ADJUSTMENT_SUM_SCHEMA

__all__ = ["BillingRunResult", "rate_unbilled", "run_billing"]

#: DuckDB's memory while it checks and records the run's records (it spills beyond;
#: the limit is lifted for the bills, whose keys are indexed in memory).
_DB_MEMORY = "256MB"


@dataclass(frozen=True)
class BillingRunResult:
    period: str
    accounts: int  # bills of the period, all passes
    total: Decimal
    currency_totals: dict[str, str]
    changed: bool
    bills_sha256: str  # over all the period's bills
    rated: int = 0
    suspense: int = 0
    suspense_by_reason: dict[str, int] = field(default_factory=dict)
    exports: Path | None = None
    adjusted_records: int = 0
    pass_no: int = 0  # this run's pass of the period (0: nothing was missing)
    supplementary: bool = False
    new_bills: int = 0  # bills this run made
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    exceptions_by_reason: dict[str, int] = field(default_factory=dict)


class _NothingToBillError(Exception):
    """A later pass found nothing to bill: its transaction is rolled back."""

    def __init__(self, listed: list[dict[str, Any]], exceptions: list[Any]) -> None:
        super().__init__("nothing to bill")
        self.listed, self.exceptions = listed, exceptions


def _labels(conn: duckdb.DuckDBPyConnection) -> pa.Table:
    """Product id -> its service identifiers, for line descriptions."""
    return arrow_query(
        conn,
        "SELECT product_id, string_agg(key, ' ' ORDER BY key_type, key) AS label "
        "FROM service_identifier GROUP BY product_id",
    )


def _accounts(conn: duckdb.DuckDBPyConnection) -> pa.Table:
    return arrow_query(
        conn,
        "SELECT a.id, a.external_id, a.currency, a.payment_terms_days, t.rate, "
        "CAST(t.rate * 1000000 AS BIGINT) AS rate_micros, t.name AS tax_name "
        "FROM billing_account a JOIN tax_rate t ON t.jurisdiction = a.tax_jurisdiction "
        "ORDER BY a.id",
    )


def _summary(
    conn: duckdb.DuckDBPyConnection,
    period: str,
    digest: tuple[str, int],
    **extra: Any,
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
        bills_sha256=digest[0],
        **{"changed": False, **extra},
    )


@dataclass(frozen=True)
class _Pass:
    """A billing pass being made: what it rates with, and where its parts go."""

    plan: PassPlan
    subscriptions: pa.Table
    tariffs: RatingPlan
    scratch: Path

    @property
    def period(self) -> Period:
        return self.plan.period


def _start_pass(
    conn: duckdb.DuckDBPyConnection, workspace: WorkspacePaths, plan: PassPlan
) -> _Pass:
    scratch = scratch_folder(workspace, plan.tag)
    shutil.rmtree(scratch, ignore_errors=True)
    return _Pass(plan, subscription_table(conn, plan.period.end), tariff_plan(workspace), scratch)


def _rate(
    workspace: WorkspacePaths,
    bill: _Pass,
    executor: Executor,
    chunk_rows: int,
    buckets: int | None,
    billable: Billable | None = None,
) -> RatingOutcome:
    if bill.plan.pass_no == 1:  # flows are attributed once; a later pass bills what is in
        derive_flow_usage(workspace, bill.period, bill.subscriptions, executor)
    return rate_period(workspace, bill.period, bill.subscriptions, executor, tag=bill.plan.tag,
                       billed_tags=bill.plan.billed_tags, plan=bill.tariffs,
                       chunk_rows=chunk_rows, buckets=buckets, billable=billable)  # fmt: skip


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
    plan = plan_pass(conn, period)
    assert plan is not None  # an unbilled period's next pass is its first
    bill = _start_pass(conn, workspace, plan)
    outcome = _rate(workspace, bill, executor, chunk_rows, None)
    shutil.rmtree(bill.scratch, ignore_errors=True)
    return outcome


def _scope(charges: ProductCharges, plan: PassPlan) -> ProductCharges:
    """The charges a pass bills: all (pass 1), else the missing accounts' and products'."""
    if plan.everyone:
        return charges

    def mine(table: pa.Table) -> pa.Table:
        keep = pc.or_(
            pc.is_in(table.column("account_id"), value_set=pa.array(plan.accounts)),
            pc.is_in(table.column("product_id"), value_set=pa.array(plan.products)),
        )
        return table.filter(keep)

    return ProductCharges(mine(charges.lines), mine(charges.one_time), mine(charges.mismatches))


def _without(table: pa.Table, accounts: np.ndarray) -> pa.Table:
    if not len(accounts) or table.num_rows == 0:
        return table
    return table.filter(pc.invert(pc.is_in(table.column("account_id"),
                                           value_set=pa.array(accounts))))  # fmt: skip


def _lines(charges: ProductCharges, outcome: RatingOutcome, labels: pa.Table,
           adjustments: pa.Table, accounts: pa.Table, skip: np.ndarray,
           policy: RoundingPolicy) -> pa.Table:  # fmt: skip
    """The bill lines, numbered, rounded to the minor unit by the invoice policy."""
    lines = number_lines(
        _without(charges.lines, skip),
        usage_lines(_without(outcome.partial.usage, skip), labels),
        period_charge_lines(_without(outcome.period_charges, skip), labels),
        adjustment_lines(_without(adjustments, skip)),
    )
    lines = lines.filter(pc.is_in(lines.column("account_id"), value_set=accounts.column("id")))
    return round_lines(lines, np.asarray(accounts.column("id").to_numpy(), np.int64),
                       accounts.column("currency").to_pylist(), policy)  # fmt: skip


def _totals(lines: pa.Table, accounts: pa.Table, policy: RoundingPolicy) -> BillTotals:
    return bill_totals(
        lines,
        np.asarray(accounts.column("id").to_numpy(), np.int64),
        np.asarray(accounts.column("rate_micros").to_numpy(), np.int64),
        accounts.column("currency").to_pylist(),
        policy,
    )


def _ledger_and_repeats(conn: duckdb.DuckDBPyConnection, feed: BilledUsageFeed) -> int:
    """The rated parts not in the ledger yet go in; returns how many record ids repeat
    among all of the pass's parts."""
    return repeated_ids(conn, feed.finish())


def _billed_accounts(conn: duckdb.DuckDBPyConnection, period: Period) -> np.ndarray:
    rows = conn.execute("SELECT DISTINCT account_id FROM bill WHERE period = ?",
                        [period.name]).fetchall()  # fmt: skip
    return np.array(sorted(r[0] for r in rows), dtype=np.int64)


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
    """Bill ``period_name`` (``YYYY-MM``): every account with charges or usage on its first
    run, what is missing on a later one (see the module's doc).

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
    plan = plan_pass(conn, period)
    if plan is None:  # billed, and nothing is missing
        if export and not exports.exists():
            export_bills(conn, period.name, exports, workspace=workspace)
        return _summary(conn, period.name, bills_digest(conn, period.name),
                        exports=exports if export else None)  # fmt: skip

    executor = executor_for(client, f"{plan.tag}-{uuid.uuid4().hex[:8]}", workspace.root)
    bill = _start_pass(conn, workspace, plan)
    tariffs = bill.tariffs
    accounts = _accounts(conn)
    policy = policy_on(conn, period.bill_date)  # the invoice settings in force on the bill date
    # SLA credits from assurance join the charges (receivables.sla_credits, issue #23)
    charges = with_sla_credits(conn, period, _scope(product_charges(conn, period), plan))
    # accounts set aside before rating: their usage is not billed by this pass
    early = currency_exceptions(charges.mismatches)
    early += [e for e in tariff_exceptions(bill.subscriptions, tariffs, period)
              if plan.everyone or e.account_id in set(plan.accounts.tolist())]  # fmt: skip
    billable = Billable(plan.everyone, plan.accounts, plan.products, accounts_of(early))
    for root in (workspace.rated, workspace.suspense):  # before the ledger looks for parts
        remove_tag_parts(root, plan.tag)
    conn.execute(f"SET memory_limit = '{_DB_MEMORY}'")
    try:
        with transaction(conn):
            # With the rating on a cluster's workers, DuckDB adds each rated part to the
            # billed-usage ledger as soon as it is published, on a thread, while later
            # days are rated (the driver's cores are free meanwhile). In this process the
            # rating keeps both cores busy itself (1.7 of 2 at 10M records): there the
            # ledger beside it slowed the run, so it takes the parts once rating is done.
            # Nothing else uses the connection until the ledger is done.
            watch = client is not None
            labels = _labels(conn)
            already = _billed_accounts(conn, period)
            with BilledUsageFeed(conn, workspace.rated, plan.tag, period, watch=watch,
                                 defer=True) as feed:  # fmt: skip
                outcome = _rate(workspace, bill, executor, chunk_rows, buckets, billable)
            with ThreadPoolExecutor(max_workers=1) as db:
                # the last parts go into the ledger, then DuckDB looks for a repeated
                # record id among them (on a connection of its own, within its memory
                # limit), on a thread while the bills' lines are made here
                ledger = db.submit(_ledger_and_repeats, conn, feed)
                # and after: usage in another currency, amounts beyond exact money
                late = usage_currency_exceptions(outcome.partial.usage, outcome.period_charges,
                                                 accounts)  # fmt: skip
                skip = accounts_of(early + late)
                empty = ADJUSTMENT_SUM_SCHEMA.empty_table()
                first_skip = skip
                first_lines = _lines(charges, outcome, labels, empty, accounts, skip, policy)
                first = _totals(first_lines, accounts, policy)
                late += amount_exceptions(first.account_id, first.excl, first.incl, first.bound)
                exceptions = sorted(early + late)
                skip = accounts_of(exceptions)
                ids, names = accounts.column("id"), accounts.column("external_id")
                external = dict(zip(ids.to_pylist(), names.to_pylist(), strict=True))
                listed = [{"account": external.get(e.account_id, str(e.account_id)),
                           "account_id": e.account_id, "reason": e.reason,
                           "message": e.message} for e in exceptions]  # fmt: skip
                repeats = ledger.result()
            if plan.supplementary and not len(first.without(skip).account_id):
                raise _NothingToBillError(listed, exceptions)  # its ledger entries roll back
            # accounts set aside after rating: out of the ledger and the rated parts
            unrecord_accounts(conn, feed.files, period, accounts_of(late))
            dropped = drop_rows([Path(f) for f in feed.files], "account_id", accounts_of(late))
            rated_files = sorted(f for f in feed.files if Path(f).exists())
            if repeats:  # refused unless the repeats were all of accounts set aside
                check_repeats(conn, rated_files, period)
            adjustments = None
            if plan.pass_no == 1:
                rerating = plan_rerating(conn, workspace, period, tariffs, tags_of=plan.tags_of,
                                         scratch=bill.scratch, chunk_rows=chunk_rows)  # fmt: skip
                if rerating is not None:
                    pa.default_memory_pool().release_unused()  # the chunks' buffers
                    adjustments = rerating.run(executor, bill.subscriptions, tariffs)
            sums = adjustments.partial.sums if adjustments else empty
            if sums.num_rows == 0 and np.array_equal(skip, first_skip):
                lines, totals = first_lines, first  # the same inputs: made once
            else:
                lines = _lines(charges, outcome, labels, sums, accounts, skip, policy)
                totals = _totals(lines, accounts, policy)
            del first_lines
            if len(amount_exceptions(totals.account_id, totals.excl, totals.incl, totals.bound)):
                raise BillingError(f"period {period.name}: a bill with its re-rating "
                                   "adjustments sums beyond exact money")  # fmt: skip
            # the bills' keys are indexed in memory (DuckDB cannot spill an index)
            conn.execute("RESET memory_limit")
            bills = write_bills(conn, plan, lines, totals, accounts, already)
            post_pass_bills(conn, bills)  # the journal: receivable, revenue, tax (#23)
            if adjustments is not None:
                # deltas of an account set aside stay pending: its periods are re-rated again
                record_adjustments(conn, adjustments, period, tariffs, skip=skip)
            record_one_time(conn, _without(charges.one_time, skip), bills)
            record_exceptions(conn, period, plan.pass_no, exceptions)
            digest = bills_digest(conn, period.name)
            rated = outcome.rated - dropped
            conn.execute(
                "INSERT INTO billing_pass VALUES (?, ?, ?, ?, ?, ?, ?)",
                [period.name, plan.pass_no, utc_now(), bills.num_rows,
                 len({e.account_id for e in exceptions}), rated, outcome.suspense],
            )  # fmt: skip
            if plan.pass_no == 1:
                conn.execute(
                    "INSERT INTO billing_run (period, finished_at, bills, rated_records, "
                    "suspense_records, bills_sha256) VALUES (?, ?, ?, ?, ?, ?)",
                    [period.name, utc_now(), digest[1], rated, outcome.suspense, digest[0]],
                )  # fmt: skip
    except _NothingToBillError as nothing:
        # a later pass that bills nothing records nothing (its exceptions are reported)
        for root in (workspace.rated, workspace.suspense):
            remove_tag_parts(root, plan.tag)
        shutil.rmtree(bill.scratch, ignore_errors=True)
        return _summary(conn, period.name, bills_digest(conn, period.name),
                        exports=exports if export else None, pass_no=plan.pass_no,
                        supplementary=True, exceptions=nothing.listed,
                        exceptions_by_reason=by_reason(nothing.exceptions))  # fmt: skip
    finally:
        conn.execute("RESET memory_limit")
    shutil.rmtree(bill.scratch, ignore_errors=True)
    if export and bills.num_rows:
        export_bills(conn, period.name, exports, workspace=workspace)
    return _summary(
        conn, period.name, digest, changed=True,
        rated=rated, suspense=outcome.suspense,
        suspense_by_reason=outcome.suspense_by_reason(), exports=exports if export else None,
        adjusted_records=adjustments.records if adjustments else 0, pass_no=plan.pass_no,
        supplementary=plan.supplementary, new_bills=bills.num_rows,
        exceptions=listed, exceptions_by_reason=by_reason(exceptions),
    )  # fmt: skip

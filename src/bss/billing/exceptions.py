"""Billing exceptions: accounts whose bill cannot be made, set aside with the reason.

One misconfigured account must not hold back everyone's bills: a pass bills every other
account and records these in ``billing_exception``; their usage stays unbilled (it is
rated again by the pass that bills them, once the cause is fixed). Reasons:

* ``currency_mismatch``: a recurring or one-time price of one of its products is in
  another currency than the account bills in;
* ``usage_currency_mismatch``: its usage (or period pricing) is rated by a tariff in
  another currency;
* ``missing_tariff``: a product's usage price names a tariff the workspace does not have
  (its usage would be refused, and the bill made without it);
* ``amount_out_of_range``: the bill's amounts do not fit exact money (``DECIMAL(18,6)``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bss.billing.period import Period
from rating_engine.tariff.plan import RatingPlan

__all__ = [
    "REASONS",
    "BillingException",
    "accounts_of",
    "amount_exceptions",
    "by_reason",
    "currency_exceptions",
    "record_exceptions",
    "tariff_exceptions",
    "usage_currency_exceptions",
]

REASONS = ("currency_mismatch", "usage_currency_mismatch", "missing_tariff",
           "amount_out_of_range")  # fmt: skip
#: A bill's amounts must fit DECIMAL(18, 6): below 10^12 currency units, in micro-units.
_MAX_MICROS = 10**18


@dataclass(frozen=True, order=True)
class BillingException:
    account_id: int
    reason: str
    message: str


def by_reason(exceptions: list[BillingException]) -> dict[str, int]:
    """Accounts per reason (an account with two reasons counts under both)."""
    return dict(sorted(Counter(e.reason for e in exceptions).items()))


def accounts_of(exceptions: list[BillingException]) -> np.ndarray:
    """The sorted, distinct account ids."""
    return np.array(sorted({e.account_id for e in exceptions}), dtype=np.int64)


def currency_exceptions(mismatches: pa.Table) -> list[BillingException]:
    """From the product charges' prices in another currency than their account's."""
    return [
        BillingException(
            r["account_id"], "currency_mismatch",
            f"price {r['price_id']} is in {r['price_currency']}, account {r['account_id']} "
            f"bills in {r['currency']}",
        )
        for r in mismatches.to_pylist()
    ]  # fmt: skip


def tariff_exceptions(
    subscriptions: pa.Table, plan: RatingPlan, period: Period
) -> list[BillingException]:
    """Products bound during the period to a tariff that is not among the tariffs."""
    ts = subscriptions.schema.field("active_from").type
    active = pc.and_(
        pc.less(subscriptions.column("active_from"), pa.scalar(period.end, ts)),
        pc.fill_null(pc.greater(subscriptions.column("active_to"), pa.scalar(period.start, ts)),
                     True),
    )  # fmt: skip
    unknown = pc.invert(pc.is_in(subscriptions.column("tariff_id"),
                                 value_set=pa.array(plan.tariff_ids, pa.string())))  # fmt: skip
    rows = subscriptions.filter(pc.and_(active, unknown)).select(
        ["account_id", "subscription_id", "tariff_id"]
    )
    seen = {(r["account_id"], r["subscription_id"], r["tariff_id"]) for r in rows.to_pylist()}
    return [
        BillingException(
            a,
            "missing_tariff",
            f"product {s} of account {a} is rated by tariff {t}, which is not among "
            "the workspace's tariffs",
        )
        for a, s, t in sorted(seen)
    ]


def usage_currency_exceptions(
    usage: pa.Table, period_charges: pa.Table, accounts: pa.Table
) -> list[BillingException]:
    """Usage sums (``USAGE_PARTIAL_SCHEMA``) and period pricing in another currency than
    their account's (``accounts``: id, currency)."""
    currency = dict(zip(accounts.column("id").to_pylist(), accounts.column("currency").to_pylist(),
                        strict=True))  # fmt: skip
    found: set[tuple[int, int, str]] = set()
    for table, sub in ((usage, "subscription_id"), (period_charges, "subscription_id")):
        if table.num_rows == 0:
            continue
        own = pc.index_in(table.column("account_id"), value_set=accounts.column("id"))
        theirs = accounts.column("currency").take(own)
        odd = pc.fill_null(pc.not_equal(table.column("currency"), theirs), False)
        for r in table.filter(odd).select(["account_id", sub, "currency"]).to_pylist():
            found.add((r["account_id"], r[sub], r["currency"]))
    return [
        BillingException(
            a,
            "usage_currency_mismatch",
            f"usage of product {s} is rated in {c}, account {a} bills in {currency.get(a, '?')}",
        )
        for a, s, c in sorted(found)
    ]


def amount_exceptions(account_id: np.ndarray, excl: np.ndarray, incl: np.ndarray,
                      bound: np.ndarray) -> list[BillingException]:  # fmt: skip
    """Bills whose lines or totals leave exact money (``bound``: the sum of the lines'
    magnitudes, as float, an upper bound that cannot overflow)."""
    bad = (bound >= 2.0**62) | (np.abs(excl) >= _MAX_MICROS) | (np.abs(incl) >= _MAX_MICROS)
    return [
        BillingException(
            int(a),
            "amount_out_of_range",
            f"the bill of account {a} sums beyond 10^12 currency units (its lines "
            "or totals do not fit exact money)",
        )
        for a in account_id[bad].tolist()
    ]


def record_exceptions(
    conn: duckdb.DuckDBPyConnection,
    period: Period,
    pass_no: int,
    exceptions: list[BillingException],
) -> None:
    """Insert a pass's exceptions (inside its transaction)."""
    if not exceptions:
        return
    messages: dict[tuple[int, str], list[str]] = {}
    for e in sorted(exceptions):
        messages.setdefault((e.account_id, e.reason), []).append(e.message)
    table = pa.table({
        "account_id": pa.array([k[0] for k in messages], pa.int64()),
        "reason": [k[1] for k in messages],
        "message": ["; ".join(dict.fromkeys(m)) for m in messages.values()],
    })  # fmt: skip
    conn.register("_exceptions", table)
    try:
        conn.execute(
            "INSERT INTO billing_exception SELECT $period, $pass, account_id, reason, message "
            "FROM _exceptions",
            {"period": period.name, "pass": pass_no},
        )
    finally:
        conn.unregister("_exceptions")

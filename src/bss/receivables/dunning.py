"""Dunning: an account's level from its oldest overdue amount, and suspension by order.

Levels, from the days past due of the account's oldest open item (:mod:`ageing`) and a
:class:`DunningPolicy`: ``none``, ``reminder`` (from ``reminder_days``), ``final_notice``
(from ``final_notice_days``) and ``suspended`` (from ``suspend_days``). Amounts overdue
up to ``tolerance`` (in the account's currency) are let be. :func:`run_dunning` records
each change of level (``dunning_step``); reaching ``suspended`` raises a product order
``DUN-<account>-<date>`` suspending the account's active products (order items
``suspend``, processed at once), and leaving it - the account paid - raises one that
resumes them. Running it again on the same date changes nothing; a date before the
latest run's is refused (levels would move backwards).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import duckdb

from bss.billing.money import minor_units
from bss.db import transaction, utc_now
from bss.errors import ValidationError
from bss.orders import OrderItem, create_order, process_order
from bss.receivables.ageing import Ageing, age_accounts
from bss.receivables.bill_entries import post_unposted_bills

__all__ = ["LEVELS", "DunningPolicy", "DunningStep", "current_levels", "level_of", "run_dunning"]

LEVELS = ("none", "reminder", "final_notice", "suspended")


@dataclass(frozen=True)
class DunningPolicy:
    reminder_days: int = 1
    final_notice_days: int = 15
    suspend_days: int = 30
    #: overdue amounts at or below this (in each account's own currency) are not chased
    tolerance: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if not 0 < self.reminder_days <= self.final_notice_days <= self.suspend_days:
            raise ValueError("dunning days must rise: reminder <= final notice <= suspension")
        if not self.tolerance.is_finite() or self.tolerance < 0:
            raise ValueError(f"dunning tolerance {self.tolerance} is not an amount")


@dataclass(frozen=True)
class DunningStep:
    account: str
    from_level: str
    to_level: str
    overdue: int  # minor units
    currency: str
    days_overdue: int
    order: str | None  # the suspension or resumption order raised


def level_of(aged: Ageing, policy: DunningPolicy) -> str:
    """The level an account's ageing calls for."""
    limit = policy.tolerance.scaleb(minor_units(aged.currency))  # in minor units
    days = aged.days_overdue if aged.overdue > limit else 0
    if days >= policy.suspend_days:
        return "suspended"
    if days >= policy.final_notice_days:
        return "final_notice"
    if days >= policy.reminder_days:
        return "reminder"
    return "none"


def current_levels(conn: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """Account id -> its last recorded level (accounts never dunned are absent: none)."""
    rows = conn.execute(
        "SELECT account_id, arg_max(to_level, (as_of, recorded_at)) FROM dunning_step "
        "GROUP BY account_id"
    ).fetchall()
    return {int(a): str(level) for a, level in rows}


def _order(conn: duckdb.DuckDBPyConnection, aged: Ageing, action: str, as_of: date) -> str | None:
    status = "active" if action == "suspend" else "suspended"
    products = [int(r[0]) for r in conn.execute(
        "SELECT id FROM product WHERE account_id = ? AND status = ? ORDER BY id",
        [aged.account_id, status]).fetchall()]  # fmt: skip
    if not products:
        return None
    base = f"DUN-{aged.account}-{as_of.isoformat()}" + ("" if action == "suspend" else "-resume")
    # the same move again on one date (suspended, paid, then overdue again): a new order
    taken = {str(r[0]) for r in conn.execute(
        "SELECT external_id FROM product_order WHERE external_id = ? OR external_id LIKE ?",
        [base, f"{base}-%"]).fetchall()}  # fmt: skip
    name = next(n for n in (base, *(f"{base}-{i}" for i in range(2, len(taken) + 3)))
                if n not in taken)  # fmt: skip
    create_order(conn, name, aged.account_id,
                 [OrderItem(action, product_id=p) for p in products],
                 requested_start=datetime.combine(as_of, datetime.min.time(), UTC))  # fmt: skip
    process_order(conn, name)
    return name


def run_dunning(
    conn: duckdb.DuckDBPyConnection, as_of: date, policy: DunningPolicy | None = None,
    *, apply: bool = True,
) -> list[DunningStep]:  # fmt: skip
    """The accounts whose level changes at ``as_of``; with ``apply`` (default) the changes
    are recorded and suspensions / resumptions ordered, all in one transaction."""
    policy = policy or DunningPolicy()
    steps: list[DunningStep] = []
    with transaction(conn):
        latest = conn.execute("SELECT max(as_of) FROM dunning_step").fetchall()[0][0]
        if latest is not None and as_of < latest:
            raise ValidationError(
                f"dunning as of {as_of.isoformat()}: it ran as of {latest.isoformat()} "
                "already; a run cannot go back in time (levels and suspensions would move "
                "backwards): give a date from then on"
            )
        if apply:
            post_unposted_bills(conn)
        levels = current_levels(conn)
        for aged in age_accounts(conn, as_of):
            was = levels.get(aged.account_id, "none")
            level = level_of(aged, policy)
            if level == was:
                continue
            order = None
            if apply and level == "suspended":
                order = _order(conn, aged, "suspend", as_of)
            elif apply and was == "suspended":
                order = _order(conn, aged, "resume", as_of)
            steps.append(DunningStep(aged.account, was, level, aged.overdue, aged.currency,
                                     aged.days_overdue, order))  # fmt: skip
            if apply:
                order_id = conn.execute("SELECT id FROM product_order WHERE external_id = ?",
                                        [order]).fetchone() if order else None  # fmt: skip
                conn.execute(
                    "INSERT INTO dunning_step VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [aged.account_id, as_of, was, level, aged.overdue, aged.days_overdue,
                     order_id[0] if order_id else None, utc_now()],
                )  # fmt: skip
    return steps

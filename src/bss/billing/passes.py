"""Billing passes: what a run of a period bills, given what earlier runs billed.

Pass 1 is the regular run and bills every account. A later pass of the same period (a
``bill --period P`` after P was billed) bills only what is missing: the accounts without
a bill for P (added since, or refused by an earlier pass as an exception and fixed
since) and the products added since to accounts that have one. Its bills are
supplementary. A pass's rated and suspense parts are named for it (``run-P`` for pass 1,
``run-P-s<N>`` after), so the rated parts of committed passes are exactly what was
billed; a pass repeated after a crash has the same number and replaces its own parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
import numpy.typing as npt

from bss.billing.period import Period

__all__ = ["PassPlan", "committed_tags", "pass_tag", "plan_pass"]

I64 = npt.NDArray[np.int64]
_EMPTY = np.zeros(0, np.int64)


def pass_tag(period: str, pass_no: int) -> str:
    """The name a pass's parts carry: ``2026-10`` for pass 1, ``2026-10-s2`` after."""
    return period if pass_no == 1 else f"{period}-s{pass_no}"


def committed_tags(conn: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, ...]]:
    """Each billed period's committed pass tags (their rated parts are what it billed)."""
    out: dict[str, list[str]] = {}
    rows = conn.execute(
        "SELECT period, pass_no FROM billing_pass UNION "
        "SELECT period, 1 FROM billing_run ORDER BY 1, 2"
    ).fetchall()
    for period, pass_no in rows:
        out.setdefault(period, []).append(pass_tag(period, int(pass_no)))
    return {p: tuple(t) for p, t in out.items()}


@dataclass(frozen=True)
class PassPlan:
    """The pass to make: its number and tag, and whom it bills.

    ``everyone`` (pass 1): every account. Otherwise ``accounts`` (without a bill for the
    period) in full, and of the accounts that have one only the ``products`` added since.
    """

    period: Period
    pass_no: int
    tag: str
    tags_of: dict[str, tuple[str, ...]]  # committed passes of every period
    everyone: bool = True
    accounts: I64 = field(default_factory=lambda: _EMPTY)
    products: I64 = field(default_factory=lambda: _EMPTY)

    @property
    def supplementary(self) -> bool:
        return self.pass_no > 1

    @property
    def billed_tags(self) -> tuple[str, ...]:
        return tuple(t for tags in self.tags_of.values() for t in tags)


def _ids(conn: duckdb.DuckDBPyConnection, sql: str, period: Period) -> I64:
    rows = conn.execute(sql, {"period": period.name, "start": period.start,
                              "end": period.end}).fetchall()  # fmt: skip
    return np.array(sorted(int(r[0]) for r in rows), dtype=np.int64)


_ACTIVE = "p.start_date < $end AND (p.termination_date IS NULL OR p.termination_date > $start)"


def plan_pass(conn: duckdb.DuckDBPyConnection, period: Period) -> PassPlan | None:
    """The period's next pass, or None when a billed period has nothing missing."""
    tags_of = committed_tags(conn)
    done = conn.execute(
        "SELECT coalesce(max(pass_no), 0) FROM billing_pass WHERE period = ?", [period.name]
    ).fetchall()[0][0]
    if not done and period.name in tags_of:  # billed before passes were recorded
        done = 1
    pass_no = int(done) + 1
    plan = PassPlan(period, pass_no, pass_tag(period.name, pass_no), tags_of)
    if pass_no == 1:
        return plan
    accounts = _ids(
        conn,
        f"SELECT DISTINCT p.account_id FROM product p WHERE {_ACTIVE} AND NOT EXISTS "
        "(SELECT 1 FROM bill b WHERE b.account_id = p.account_id AND b.period = $period)",
        period,
    )
    products = _ids(
        conn,
        f"SELECT p.id FROM product p WHERE {_ACTIVE} AND EXISTS (SELECT 1 FROM bill b "
        "WHERE b.account_id = p.account_id AND b.period = $period) AND NOT EXISTS "
        "(SELECT 1 FROM billed_product bp WHERE bp.product_id = p.id AND bp.period = $period)",
        period,
    )
    if not len(accounts) and not len(products):
        return None
    return PassPlan(period, pass_no, plan.tag, tags_of, False, accounts, products)

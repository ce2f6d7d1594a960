"""Which stored data issued bills rest on, so retention never removes it.

Billed data is immutable (DESIGN: nothing an issued bill rests on is deleted). For the
flows dataset :func:`flow_guard` keeps a day's partitions when

* **an issued bill rests on them**: usage derived from that day's flows (records whose
  key starts ``flows:``, see ``rating_engine.traffic.usage_from_flows``) is in the
  billed-usage ledger (``billed_usage``); or
* **their bill is still to come**: the day's period (UTC month) has no billing run yet
  and an IP-keyed subscription was active in it, so the period's billing run will derive
  usage from these flows.

Flows of billed periods that no billed usage came from, and flows of periods no IP
subscription covers, may go. A workspace without a database has issued no bill. The
datasets billing writes (usage, rated, suspense) are never expired at all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import duckdb
import pyarrow.compute as pc

from bss.billing.period import parse_period
from bss.db import connect
from bss.subscriptions import subscription_table
from collectors.dataset import read_dataset
from collectors.retention.partitions import Partition
from collectors.schemas import USAGE_SCHEMA
from collectors.workspace import WorkspacePaths

__all__ = ["BILLING_DATASETS", "flow_guard"]

#: Datasets that hold what bills are made of: never expired.
BILLING_DATASETS = ("usage", "rated", "suspense")

_DAY_US = 86_400_000_000
_FAR = datetime(9999, 1, 1, tzinfo=UTC)


def _period_of(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m")


def _billed_flow_days(conn: duckdb.DuckDBPyConnection, workspace: WorkspacePaths) -> set[int]:
    """Days whose flows became usage that an issued bill charged."""
    usage = read_dataset(
        workspace.usage,
        USAGE_SCHEMA,
        columns=["record_id", "start_time"],
        filter=pc.starts_with(pc.field("record_key"), "flows:"),
    )
    if usage.num_rows == 0:
        return set()
    conn.register("flow_usage", usage)
    try:
        rows = conn.execute(
            "SELECT DISTINCT CAST(epoch_us(u.start_time) // ? AS BIGINT) FROM flow_usage u "
            "WHERE u.record_id IN (SELECT record_id FROM billed_usage)",
            [_DAY_US],
        ).fetchall()
    finally:
        conn.unregister("flow_usage")
    return {int(d) for (d,) in rows}


def _pending_periods(conn: duckdb.DuckDBPyConnection, billed: set[str]) -> Callable[[str], bool]:
    """Whether a period without a billing run had an IP subscription active in it."""
    subs = subscription_table(conn, _FAR)
    ip = subs.filter(pc.equal(subs.column("key_type"), "ip"))
    spans = list(
        zip(ip.column("active_from").to_pylist(), ip.column("active_to").to_pylist(), strict=True)
    )
    cache: dict[str, bool] = {}

    def pending(period: str) -> bool:
        if period in billed:
            return False
        if period not in cache:
            p = parse_period(period)
            cache[period] = any(
                start < p.end and (end is None or end > p.start) for start, end in spans
            )
        return cache[period]

    return pending


def flow_guard(workspace: WorkspacePaths) -> Callable[[Partition], str | None]:
    """The reason to keep each flow partition, or None to let it go (see the module doc).

    Reads the database read-only; a workspace whose database another process is writing
    (a billing run) is refused by :func:`bss.db.connect` rather than guessed at.
    """
    if not workspace.database.exists():
        return lambda part: None
    conn = connect(workspace, read_only=True)
    try:
        billed = {p for (p,) in conn.execute("SELECT period FROM billing_run").fetchall()}
        days = _billed_flow_days(conn, workspace)
        pending = _pending_periods(conn, billed)
    finally:
        conn.close()

    def reason(part: Partition) -> str | None:
        day = part.day
        if day is None:
            return None
        period = _period_of(day)
        if day in days:
            return f"an issued bill rests on it (its flows are billed usage of {period})"
        if pending(period):
            return (
                f"period {period} is not billed yet and has IP subscriptions: its bill will "
                f"rest on these flows (run `rating-engine bill --period {period}` first)"
            )
        return None

    return reason

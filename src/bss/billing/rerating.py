"""Adjustments for final periods whose tariffs were corrected after billing.

Each billing run records which compiled tariffs (plan content hash) priced its period.
When a later run finds the tariffs changed, it re-rates every earlier final period's
billed records with the current tariffs (in time order, with a fresh allowance state per
period, as the original run did) and bills the difference per record as an adjustment on
the new bill: a credit when the corrected price is lower, a debit when higher. The final
bills stay as they are; ``usage_adjustment`` keeps every record's delta, and the period is
then marked as priced with the new tariffs, so a correction is applied exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from bss.billing.charges import Line
from bss.billing.money import micros_to_decimal_array
from bss.billing.period import Period, parse_period
from bss.db import arrow_query
from collectors.dataset import read_dataset
from collectors.schemas import USAGE_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.rating.rate import RatingPlan, rate_usage
from rating_engine.tariff.allowances import AllowanceState

__all__ = ["Adjustments", "record_adjustments", "rerate_final_periods"]


@dataclass(frozen=True)
class Adjustments:
    """Per-record deltas (micro-units) of re-rated final periods, and what is now stale."""

    deltas: pa.Table  # record_id, account_id, billed_period, delta
    periods: list[str]
    not_rerated: int  # billed records the corrected tariffs no longer rate (left as billed)

    def lines(self) -> dict[int, list[Line]]:
        """One adjustment line per account and re-rated period."""
        if self.deltas.num_rows == 0:
            return {}
        grouped = self.deltas.group_by(["account_id", "billed_period"]).aggregate(
            [("delta", "sum"), ("record_id", "count")]
        )
        out: dict[int, list[Line]] = {}
        for row in sorted(grouped.to_pylist(), key=lambda r: (r["account_id"], r["billed_period"])):
            amount = row["delta_sum"]
            if amount == 0:
                continue
            what = (
                f"re-rating of {row['billed_period']} usage under corrected tariffs "
                f"({row['record_id_count']} records)"
            )
            kind = "credit" if amount < 0 else "usage"
            out.setdefault(row["account_id"], []).append(
                Line(kind, None, what, row["record_id_count"], "records", amount)
            )
        return out


def rerate_final_periods(
    conn: duckdb.DuckDBPyConnection,
    workspace: WorkspacePaths,
    period: Period,
    subscriptions: pa.Table,
    plan: RatingPlan,
) -> Adjustments:
    """Re-rate final periods before ``period`` that were priced with other tariffs."""
    stale = conn.execute(
        "SELECT period FROM rated_with WHERE period < ? AND tariffs_sha256 <> ? ORDER BY period",
        [period.name, plan.content_hash],
    ).fetchall()
    parts, not_rerated = [], 0
    for (name,) in stale:
        billed = arrow_query(
            conn,
            "SELECT b.record_id, b.account_id, "
            "CAST((b.cost + coalesce(a.delta, 0)) * 1000000 AS BIGINT) AS current "
            "FROM billed_usage b LEFT JOIN (SELECT record_id, sum(delta) AS delta "
            "FROM usage_adjustment GROUP BY record_id) a USING (record_id) "
            "WHERE b.period = $period",
            {"period": name},
        )
        if billed.num_rows == 0:
            continue
        bounds = parse_period(name)
        end = pa.scalar(bounds.end, USAGE_SCHEMA.field("start_time").type)
        usage = read_dataset(workspace.usage, USAGE_SCHEMA, filter=pc.field("start_time") < end)
        usage = usage.filter(pc.is_in(usage.column("record_id"), billed.column("record_id")))
        usage = usage.sort_by([("start_time", "ascending"), ("record_id", "ascending")])
        rated = rate_usage(usage, subscriptions, plan, allowances=AllowanceState()).rated
        not_rerated += billed.num_rows - rated.num_rows
        joined = billed.join(rated.select(["record_id", "cost"]), "record_id", join_type="inner")
        delta = pc.subtract(joined.column("cost"), joined.column("current"))
        changed = joined.append_column("delta", delta).filter(pc.not_equal(delta, 0))
        parts.append(
            pa.table(
                {
                    "record_id": changed.column("record_id"),
                    "account_id": changed.column("account_id"),
                    "billed_period": pa.array([name] * changed.num_rows, pa.string()),
                    "delta": changed.column("delta").cast(pa.int64()),
                }
            )
        )
    schema = pa.schema(
        [("record_id", pa.int64()), ("account_id", pa.int64()), ("billed_period", pa.string()),
         ("delta", pa.int64())]
    )  # fmt: skip
    deltas = pa.concat_tables([p.cast(schema) for p in parts]) if parts else schema.empty_table()
    return Adjustments(deltas, [p for (p,) in stale], not_rerated)


def record_adjustments(
    conn: duckdb.DuckDBPyConnection, adjustments: Adjustments, period: Period, plan: RatingPlan
) -> None:
    """Write the deltas and mark the periods as priced with ``plan`` (inside the run's
    transaction); the period being billed is marked too."""
    if adjustments.deltas.num_rows:
        table = adjustments.deltas.set_column(
            3, "delta", micros_to_decimal_array(adjustments.deltas.column("delta"))
        )
        conn.register("_adjustments", table)
        try:
            conn.execute(
                "INSERT INTO usage_adjustment SELECT record_id, account_id, billed_period, ?, "
                "delta, ? FROM _adjustments",
                [period.name, plan.content_hash],
            )
        finally:
            conn.unregister("_adjustments")
    for name in [*adjustments.periods, period.name]:
        conn.execute("INSERT OR REPLACE INTO rated_with VALUES (?, ?)", [name, plan.content_hash])

"""What-if re-rating: the same usage under two rating plans, revenue side by side.

Revenue per subscription is the sum of record costs plus period-pricing charges
(:mod:`rating_engine.rating.period_pricing`), each plan with its own fresh allowance state (the
usage is one billing period). ``difference`` is ``revenue_b - revenue_a`` (null when the
two currencies differ). Records a plan rejects are counted, never priced.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from rating_engine.rating.period_pricing import apply_period_pricing
from rating_engine.rating.rate import rate_usage
from rating_engine.tariff.allowances import AllowanceState
from rating_engine.tariff.plan import RatingPlan

__all__ = ["WHAT_IF_SCHEMA", "WHAT_IF_TARIFF_SCHEMA", "what_if", "what_if_by_tariff"]

WHAT_IF_SCHEMA = pa.schema(
    [
        pa.field("subscription_id", pa.int64(), nullable=False),
        pa.field("account_id", pa.int64(), nullable=False),
        pa.field("tariff_a", pa.string(), nullable=False),
        pa.field("tariff_b", pa.string(), nullable=False),
        pa.field("currency", pa.string(), nullable=True),
        pa.field("records_a", pa.int64(), nullable=False),
        pa.field("records_b", pa.int64(), nullable=False),
        pa.field("rejected_a", pa.int64(), nullable=False),
        pa.field("rejected_b", pa.int64(), nullable=False),
        pa.field("revenue_a", pa.int64(), nullable=False),
        pa.field("revenue_b", pa.int64(), nullable=False),
        pa.field("difference", pa.int64(), nullable=True),
    ]
)

WHAT_IF_TARIFF_SCHEMA = pa.schema(
    [
        pa.field("tariff_a", pa.string(), nullable=False),
        pa.field("tariff_b", pa.string(), nullable=False),
        pa.field("currency", pa.string(), nullable=True),
        pa.field("subscriptions", pa.int64(), nullable=False),
        pa.field("revenue_a", pa.int64(), nullable=False),
        pa.field("revenue_b", pa.int64(), nullable=False),
        pa.field("difference", pa.int64(), nullable=True),
    ]
)


def _revenue(
    usage: pa.Table, subscriptions: pa.Table, plan: RatingPlan
) -> dict[int, tuple[int, int, int, str]]:
    """subscription_id -> (revenue, rated records, rejected records, currency)."""
    result = rate_usage(usage, subscriptions, plan, allowances=AllowanceState("what-if"))
    out: dict[int, list] = {}
    rated = result.rated
    if rated.num_rows:
        g = rated.group_by(["subscription_id", "currency"]).aggregate(
            [("cost", "sum"), ("cost", "count")]
        )
        for sid, cur, cost, count in zip(
            g["subscription_id"].to_pylist(),
            g["currency"].to_pylist(),
            g["cost_sum"].to_pylist(),
            g["cost_count"].to_pylist(),
            strict=True,
        ):
            out[sid] = [cost, count, 0, cur]
        for row in apply_period_pricing(rated, plan).to_pylist():
            out[row["subscription_id"]][0] += row["charge"]
    if result.rejected.num_rows:
        # rejected records carry no subscription: attribute them via the usage key
        ids = result.rejected["record_id"]
        mask = pc.is_in(usage["record_id"], ids)
        keys = usage.filter(mask).select(["subscriber_key", "start_time"]).to_pylist()
        bind = subscriptions.select(["subscription_id", "key", "active_from", "active_to"])
        by_key: dict[str, list[dict]] = {}
        for b in bind.to_pylist():
            by_key.setdefault(b["key"], []).append(b)
        for k in keys:
            for b in by_key.get(k["subscriber_key"], []):
                to = b["active_to"]
                if b["active_from"] <= k["start_time"] and (to is None or k["start_time"] < to):
                    out.setdefault(b["subscription_id"], [0, 0, 0, None])[2] += 1
                    break
    return {k: (v[0], v[1], v[2], v[3]) for k, v in out.items()}


def what_if(
    usage: pa.Table,
    subscriptions: pa.Table,
    plan_a: RatingPlan,
    plan_b: RatingPlan,
    *,
    tariff_map: Mapping[str, str] | None = None,
) -> pa.Table:
    """Revenue per subscription under ``plan_a`` (as subscribed) and ``plan_b``.

    Under ``plan_b`` each subscription's tariff is ``tariff_map[tariff_id]``; without a map,
    every subscription moves to ``plan_b``'s only tariff (or keeps its tariff id when
    ``plan_b`` holds several). Returns :data:`WHAT_IF_SCHEMA` sorted by subscription.
    """
    if tariff_map is None and len(plan_b.tariff_ids) == 1:
        only = plan_b.tariff_ids[0]
        tariff_map = {t: only for t in set(subscriptions["tariff_id"].to_pylist())}
    mapping = dict(tariff_map or {})
    tariffs_a = subscriptions["tariff_id"].to_pylist()
    subs_b = subscriptions.set_column(
        subscriptions.schema.get_field_index("tariff_id"),
        subscriptions.schema.field("tariff_id"),
        pa.array([mapping.get(t, t) for t in tariffs_a], pa.string()),
    )
    a = _revenue(usage, subscriptions, plan_a)
    b = _revenue(usage, subs_b, plan_b)
    info = {
        sid: (acc, t)
        for sid, acc, t in zip(
            subscriptions["subscription_id"].to_pylist(),
            subscriptions["account_id"].to_pylist(),
            tariffs_a,
            strict=True,
        )
    }
    rows = []
    for sid in sorted(set(a) | set(b)):
        ra = a.get(sid, (0, 0, 0, None))
        rb = b.get(sid, (0, 0, 0, None))
        cur_a = ra[3] or plan_a.currencies[plan_a.tariff_index(info[sid][1])]
        tb = mapping.get(info[sid][1], info[sid][1])
        ib = plan_b.tariff_index(tb)
        cur_b = rb[3] or (plan_b.currencies[ib] if ib >= 0 else None)
        same = cur_a == cur_b
        rows.append(
            {
                "subscription_id": sid,
                "account_id": info[sid][0],
                "tariff_a": info[sid][1],
                "tariff_b": tb,
                "currency": cur_a if same else None,
                "records_a": ra[1],
                "records_b": rb[1],
                "rejected_a": ra[2],
                "rejected_b": rb[2],
                "revenue_a": ra[0],
                "revenue_b": rb[0],
                "difference": rb[0] - ra[0] if same else None,
            }
        )
    return pa.Table.from_pylist(rows, schema=WHAT_IF_SCHEMA)


def what_if_by_tariff(table: pa.Table) -> pa.Table:
    """Roll a :func:`what_if` table up per (tariff_a, tariff_b, currency)."""
    if table.num_rows == 0:
        return WHAT_IF_TARIFF_SCHEMA.empty_table()
    g = table.group_by(["tariff_a", "tariff_b", "currency"], use_threads=False).aggregate(
        [
            ("subscription_id", "count"),
            ("revenue_a", "sum"),
            ("revenue_b", "sum"),
            ("difference", "sum"),
        ]
    )
    out = pa.table(
        {
            "tariff_a": g["tariff_a"],
            "tariff_b": g["tariff_b"],
            "currency": g["currency"],
            "subscriptions": g["subscription_id_count"],
            "revenue_a": g["revenue_a_sum"],
            "revenue_b": g["revenue_b_sum"],
            "difference": g["difference_sum"],
        }
    )
    return out.cast(WHAT_IF_TARIFF_SCHEMA).sort_by([("tariff_a", "ascending")])

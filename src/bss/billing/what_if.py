"""What-if re-rating: a period's usage under the tariffs in force and under other ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from bss.billing.money import from_micros
from bss.billing.period import Period
from bss.billing.rating_step import tariff_plan
from bss.errors import ValidationError
from collectors.dataset import read_dataset
from collectors.schemas import USAGE_PRICED_SCHEMA, USAGE_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.rating.rate import compile_plan, load_tariffs
from rating_engine.rating.what_if import what_if, what_if_by_tariff

__all__ = ["WhatIfReport", "compare_tariffs"]


@dataclass(frozen=True)
class WhatIfReport:
    period: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    by_tariff: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "subscriptions": [dict(zip(self.columns, r, strict=True)) for r in self.rows],
            "by_tariff": self.by_tariff,
        }


def compare_tariffs(
    conn: duckdb.DuckDBPyConnection,
    workspace: WorkspacePaths,
    period: Period,
    subscriptions: pa.Table,
    alternative: Path,
    *,
    replace: str | None = None,
) -> WhatIfReport:
    """Revenue per subscription and product under the workspace's tariffs and ``alternative``.

    The period's usage (CDRs and flow-derived usage already in the workspace) is rated
    twice in memory; nothing is written. ``alternative`` (a tariff file or folder) is laid
    over the workspace's tariffs: a tariff with an id already in force replaces it (a
    correction); ``replace=ID`` moves the subscriptions of tariff ``ID`` to the single
    alternative tariff; with neither, a single alternative tariff takes every subscription.
    """
    if not alternative.exists():
        raise ValidationError(f"what-if tariff {alternative} does not exist")
    current = load_tariffs(workspace.tariffs)
    proposed = load_tariffs(alternative)
    mapping: dict[str, str] = {}
    if replace is not None:
        if replace not in current:
            raise ValidationError(f"--replace {replace}: no such tariff in {workspace.tariffs}")
        if len(proposed) != 1:
            raise ValidationError(f"--replace needs one alternative tariff, {alternative} has "
                                  f"{len(proposed)}")  # fmt: skip
        mapping = {replace: next(iter(proposed))}
    elif not set(proposed) & set(current) and len(proposed) == 1:
        only = next(iter(proposed))
        mapping = {tariff: only for tariff in current}
    cache = workspace.state / "tariff_cache"
    plan_a = tariff_plan(workspace)
    plan_b = compile_plan({**current, **proposed}, cache_dir=cache)
    start = pa.scalar(period.start, USAGE_SCHEMA.field("start_time").type)
    end = pa.scalar(period.end, USAGE_SCHEMA.field("start_time").type)
    usage = read_dataset(
        workspace.usage,
        USAGE_PRICED_SCHEMA,  # parts without prices read as null prices
        filter=(pc.field("start_time") >= start) & (pc.field("start_time") < end),
    ).sort_by([("start_time", "ascending"), ("record_id", "ascending")])
    table = what_if(usage, subscriptions, plan_a, plan_b, tariff_map=mapping)
    products = dict(
        conn.execute(
            "SELECT p.id, o.name || ' (' || a.external_id || ')' FROM product p "
            "JOIN product_offering o ON o.id = p.offering_id "
            "JOIN billing_account a ON a.id = p.account_id"
        ).fetchall()
    )
    columns = ("product", "tariffs", "revenue_a", "revenue_b", "difference", "currency")
    rows = [
        (f"{r['subscription_id']}: {products.get(r['subscription_id'], '')}",
         r["tariff_a"] if r["tariff_a"] == r["tariff_b"] else f"{r['tariff_a']} -> {r['tariff_b']}",
         str(from_micros(r["revenue_a"])), str(from_micros(r["revenue_b"])),
         None if r["difference"] is None else str(from_micros(r["difference"])), r["currency"])
        for r in table.to_pylist()
    ]  # fmt: skip
    by_tariff = [
        {**r, **{k: None if r[k] is None else str(from_micros(r[k]))
                 for k in ("revenue_a", "revenue_b", "difference")}}
        for r in what_if_by_tariff(table).to_pylist()
    ]  # fmt: skip
    return WhatIfReport(period.name, columns, rows, by_tariff)

"""Re-rating a billed period into a new generation beside its billed detail (``rate --force``).

A billed period's rated parts are the audit trail behind its bills: they are never replaced
or deleted. Re-rating such a period with the tariffs in force writes its result beside
them, as generation ``N`` under ``W/rerated/<period>/generation-N/``: per record, the
delta between the new price and what the record stands at now (billed cost plus earlier
adjustments) - the adjustments :mod:`bss.billing.rerating` computes and the next billing
run bills - with ``generation.json`` saying which tariffs priced it and the sums per
account. Nothing billed changes and nothing goes into the database; a generation appears
whole (written under a hidden name, then renamed) or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from bss.billing.period import parse_period
from bss.billing.rating_step import tariff_plan
from bss.db import arrow_query, utc_now
from bss.errors import BillingError
from bss.subscriptions import subscription_table
from collectors.dataset import atomic_write_bytes, naming_path, reading_parts
from collectors.workspace import WorkspacePaths
from rating_engine.rating.rate import SubscriptionIndex
from rating_engine.scale.executor import executor_for
from rating_engine.scale.parts import files_by_day, is_part_of
from rating_engine.scale.rate_partition import DayFiles
from rating_engine.scale.rerate_partition import RerateJob, rerate_period

__all__ = ["Generation", "rerate_generation"]

_CHUNK_ROWS = 1 << 19


@dataclass(frozen=True)
class Generation:
    """What a re-rating of a billed period found; its files are in ``folder``."""

    period: str
    generation: int
    folder: str
    tariffs_sha256: str
    billed: int  # billed records looked at
    rerated: int  # of those, rated again (the rest the tariffs in force reject)
    changed: int  # of those, with a non-zero delta
    delta: str  # the sum of the deltas, a decimal in the accounts' currencies' units
    by_account: dict[str, dict[str, Any]]  # account id -> {"delta": str, "records": int}


def _previous(conn: duckdb.DuckDBPyConnection, period: str) -> tuple[np.ndarray, np.ndarray]:
    table = arrow_query(
        conn,
        "SELECT record_id, CAST(sum(delta) * 1000000 AS BIGINT) AS delta FROM usage_adjustment "
        "WHERE billed_period = $period GROUP BY record_id ORDER BY record_id",
        {"period": period},
    )
    ids = np.asarray(table.column("record_id").to_numpy(), dtype=np.int64)
    return ids, np.asarray(table.column("delta").to_numpy(), dtype=np.int64)


def _next_generation(root: Path) -> int:
    numbers = [
        int(p.name.split("-", 1)[1])
        for p in root.glob("generation-*")
        if p.is_dir() and p.name.split("-", 1)[1].isdigit()
    ]
    return max(numbers, default=0) + 1


def _decimal(micros: int) -> str:
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"


def rerate_generation(
    conn: duckdb.DuckDBPyConnection,
    workspace: WorkspacePaths,
    period_name: str,
    *,
    client: Any | None = None,
    chunk_rows: int = _CHUNK_ROWS,
) -> Generation:
    """Re-rate the billed ``period_name`` with the tariffs in force, as a new generation."""
    period = parse_period(period_name)
    if not conn.execute("SELECT 1 FROM billing_run WHERE period = ?", [period.name]).fetchall():
        raise BillingError(
            f"period {period.name} is not billed: rate it without --force (its rated parts "
            "are then replaced, as nothing rests on them yet)"
        )
    plan = tariff_plan(workspace)
    subscriptions = subscription_table(conn, period.end)
    usage = files_by_day(workspace.usage)
    days = tuple(
        DayFiles(day, tuple(str(p) for p in usage.get(day, [])),
                 tuple(str(p) for p in files if is_part_of(p, [period.name])))
        for day, files in sorted(files_by_day(workspace.rated).items())
    )  # fmt: skip
    days = tuple(d for d in days if d.billed)
    root = workspace.root / "rerated" / period.name
    number = _next_generation(root)
    final = root / f"generation-{number}"
    staging = root / f".generation-{number}.{uuid.uuid4().hex}.tmp"
    executor = executor_for(client, f"rerate-{period.name}-{uuid.uuid4().hex[:8]}", workspace.root)
    try:
        job = RerateJob(period.name, days, str(staging / "deltas"), f"rerate-{period.name}",
                        chunk_rows)  # fmt: skip
        read = [Path(p) for d in days for p in (*d.usage, *d.billed)]
        with reading_parts(read):  # a damaged part is named, whoever read it
            (partial,) = executor.map(
                rerate_period, [job], name=f"rerate-{period.name}",
                index=executor.share(SubscriptionIndex.build(subscriptions, plan)),
                plan=executor.share(plan), previous=executor.share(_previous(conn, period.name)),
            )  # fmt: skip
        by_account: dict[str, dict[str, Any]] = {}
        total = 0
        for row in partial.sums.to_pylist():
            total += int(row["delta"])
            by_account[str(row["account_id"])] = {
                "delta": _decimal(int(row["delta"])),
                "records": int(row["records"]),
            }
        result = Generation(
            period=period.name, generation=number, folder=str(final),
            tariffs_sha256=plan.content_hash, billed=partial.billed, rerated=partial.rerated,
            changed=partial.changed, delta=_decimal(total), by_account=by_account,
        )  # fmt: skip
        doc = {**asdict(result), "created_at": utc_now().isoformat()}
        atomic_write_bytes(staging / "generation.json", json.dumps(doc, indent=1).encode())
        with naming_path(final):
            os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result

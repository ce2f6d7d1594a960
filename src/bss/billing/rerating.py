"""Adjustments for final periods whose tariffs were corrected after billing.

Each billing run records which compiled tariffs (plan content hash) priced its period.
When a later run finds the tariffs changed, it re-rates every earlier final period's
billed records with the current tariffs (in time order, with a fresh allowance state per
period, as the original run did) and bills the difference per record as an adjustment on
the new bill: a credit when the corrected price is lower, a debit when higher. The final
bills stay as they are; ``usage_adjustment`` keeps every record's delta, and the period is
then marked as priced with the new tariffs, so a correction is applied exactly once.

A period's billed records are the rated parts of its committed passes; each period is
one streaming task (:func:`rating_engine.scale.rerate_partition.rerate_period`), periods
run side by side on a cluster, and the per-record deltas go through scratch Parquet
into the database, never through memory at once.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from bss.billing.period import Period
from bss.db import arrow_query
from collectors.dataset import dataset_files
from collectors.workspace import WorkspacePaths
from rating_engine.rating.rate import RatingPlan, SubscriptionIndex
from rating_engine.scale.executor import Executor
from rating_engine.scale.parts import files_by_day, is_part_of
from rating_engine.scale.rate_partition import DayFiles
from rating_engine.scale.rerate_partition import (
    RerateJob,
    ReratePartial,
    combine_rerate_partials,
    rerate_period,
)

__all__ = ["Adjustments", "Rerating", "plan_rerating", "record_adjustments"]


@dataclass(frozen=True)
class Adjustments:
    """Sums of the re-rated final periods' deltas, and what is now stale."""

    partial: ReratePartial
    periods: list[str]
    deltas_root: Path | None  # scratch Parquet of the per-record deltas

    @property
    def records(self) -> int:
        """Records whose price changed."""
        return self.partial.changed

    @property
    def not_rerated(self) -> int:
        """Billed records the corrected tariffs no longer rate (left as billed)."""
        return self.partial.billed - self.partial.rerated


def _previous(conn: duckdb.DuckDBPyConnection, period: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted record ids of the period with the sum of their adjustments so far (micros)."""
    table = arrow_query(
        conn,
        "SELECT record_id, CAST(sum(delta) * 1000000 AS BIGINT) AS delta FROM usage_adjustment "
        "WHERE billed_period = $period GROUP BY record_id ORDER BY record_id",
        {"period": period},
    )
    ids = np.asarray(table.column("record_id").to_numpy(), dtype=np.int64)
    return ids, np.asarray(table.column("delta").to_numpy(), dtype=np.int64)


@dataclass(frozen=True)
class Rerating:
    """What re-rating has to do, read from the database beforehand (so the work itself
    needs no connection and can run while the database is busy with the run's ledger)."""

    stale: list[str]
    jobs: list[tuple[RerateJob, tuple[np.ndarray, np.ndarray]]]  # with earlier deltas
    root: Path

    def run(self, executor: Executor, subscriptions: pa.Table, plan: RatingPlan) -> Adjustments:
        """Re-rate every stale period, a task each (side by side on a cluster)."""
        if not self.jobs:
            return Adjustments(ReratePartial(), self.stale, None)
        index = executor.share(SubscriptionIndex.build(subscriptions, plan))
        shared_plan = executor.share(plan)
        partials = [
            executor.map_partials(rerate_period, [job], name=f"rerate-{job.period}",
                                  index=index, plan=shared_plan,
                                  previous=executor.share(previous))[0]
            for job, previous in self.jobs
        ]  # fmt: skip
        partial = executor.reduce(combine_rerate_partials, partials, name="rerate")
        return Adjustments(partial, self.stale, self.root)


def plan_rerating(
    conn: duckdb.DuckDBPyConnection,
    workspace: WorkspacePaths,
    period: Period,
    plan: RatingPlan,
    *,
    tags_of: dict[str, tuple[str, ...]],
    scratch: Path,
    chunk_rows: int,
) -> Rerating:
    """The final periods before ``period`` priced with other tariffs, to re-rate.

    ``tags_of`` maps each billed period to its committed pass tags (whose rated parts
    are what it billed).
    """
    stale = [
        name
        for (name,) in conn.execute(
            "SELECT period FROM rated_with WHERE period < ? AND tariffs_sha256 <> ? "
            "ORDER BY period",
            [period.name, plan.content_hash],
        ).fetchall()
    ]
    root = scratch / "deltas"
    shutil.rmtree(root, ignore_errors=True)
    if not stale:
        return Rerating([], [], root)
    usage = files_by_day(workspace.usage)
    rated = files_by_day(workspace.rated)
    jobs = []
    for name in stale:
        tags = tags_of.get(name, ())
        days = tuple(
            DayFiles(day, tuple(str(p) for p in usage.get(day, [])),
                     tuple(str(p) for p in files if is_part_of(p, tags)))
            for day, files in sorted(rated.items())
        )  # fmt: skip
        days = tuple(d for d in days if d.billed)
        if days:
            job = RerateJob(name, days, str(root), f"rerate-{name}", chunk_rows)
            jobs.append((job, _previous(conn, name)))
    return Rerating(stale, jobs, root)


def record_adjustments(
    conn: duckdb.DuckDBPyConnection,
    adjustments: Adjustments,
    period: Period,
    plan: RatingPlan,
    *,
    skip: np.ndarray | None = None,
) -> None:
    """Write the deltas and mark the periods as priced with ``plan`` (inside the run's
    transaction); the period being billed is marked too.

    The deltas of the accounts in ``skip`` (set aside by the run) are not written, and
    then the re-rated periods stay marked with their old tariffs: they are re-rated again
    by the next run, which finds the written deltas already in what each record stands at
    and bills only the ones left.
    """
    root = adjustments.deltas_root
    files = [str(f) for f in dataset_files(root)] if root is not None else []
    skipped = np.asarray(skip if skip is not None else [], np.int64)
    if files:
        conn.execute(
            "INSERT INTO usage_adjustment SELECT record_id, account_id, billed_period, $period, "
            "CAST(CAST(delta AS DECIMAL(18, 0)) * 0.000001 AS DECIMAL(18, 6)), $tariffs "
            "FROM read_parquet($files) WHERE NOT list_contains($skip, account_id)",
            {"period": period.name, "tariffs": plan.content_hash, "files": files,
             "skip": skipped.tolist()},
        )  # fmt: skip
    pending = bool(len(skipped)) and bool(
        np.isin(adjustments.partial.sums.column("account_id").to_numpy(), skipped).any()
    )
    for name in [*([] if pending else adjustments.periods), period.name]:
        conn.execute("INSERT OR REPLACE INTO rated_with VALUES (?, ?)", [name, plan.content_hash])

"""The rating part of a billing pass: flows to usage, then usage to rated and suspense.

Both steps stream: flows are attributed one day at a time, and usage is rated in whole
days (one account bucket at a time when a day is larger than a chunk), as partition
tasks of an executor - in this process, or on a Dask cluster. Outputs are Parquet parts
named for the pass, so running a pass again (after a crash, say) replaces its files
instead of adding to them; what the pass bills is reduced to partial sums on the way.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from math import ceil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bss.billing.period import Period
from bss.errors import BillingError
from collectors.dataset import reading_parts, remove_parts
from collectors.schemas import REJECT_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.rating.period_pricing import QUANTITY_SCHEMA, combine_quantities, price_period
from rating_engine.rating.prorated import QUANTITY_CHANGE_SCHEMA, prorated_quantities
from rating_engine.rating.rate import RatingPlan, compile_plan, load_tariffs
from rating_engine.scale.executor import Executor
from rating_engine.scale.flow_partition import FlowDay, FlowUsageJob, derive_day
from rating_engine.scale.partials import RatePartial, combine_rate_partials
from rating_engine.scale.parts import DayPartWriter, files_by_day, is_part_of, remove_tag_parts
from rating_engine.scale.rate_partition import (
    Billable,
    DayFiles,
    RateContext,
    RateJob,
    day_files,
    rate_bucket,
    split_day,
    usage_rows,
)
from rating_engine.scale.routing import AccountRouter
from rating_engine.traffic.attribution import build_prefix_index

__all__ = [
    "CHUNK_ROWS",
    "RatingOutcome",
    "derive_flow_usage",
    "rate_period",
    "scratch_folder",
    "tariff_plan",
]

log = logging.getLogger(__name__)

#: Records rated in one call, at most (whole days; a larger day is split into account
#: buckets). Memory in a chunk is ~1 kB a record, all told; calls cost little more.
CHUNK_ROWS = 1 << 19


@dataclass(frozen=True)
class RatingOutcome:
    """What a pass rated and bills, as sums (no records)."""

    partial: RatePartial
    period_charges: pa.Table  # PERIOD_CHARGE_SCHEMA: tiered/volume pricing of the period
    plan: RatingPlan  # the compiled tariffs that priced it
    tag: str  # the pass's part names: run-<tag>[-bNNN]

    @property
    def rated(self) -> int:
        return self.partial.rated

    @property
    def suspense(self) -> int:
        return self.partial.suspense

    def suspense_by_reason(self) -> dict[str, int]:
        return dict(self.partial.suspense_by_reason)


def tariff_plan(workspace: WorkspacePaths) -> RatingPlan:
    """Compile the workspace's tariffs, cached on disk by content hash."""
    folder = workspace.tariffs
    if not folder.exists() or not any(folder.glob("*.toml")):
        raise BillingError(f"no tariffs in {folder} (add TOML tariff files there)")
    return compile_plan(load_tariffs(folder), cache_dir=workspace.state / "tariff_cache")


def scratch_folder(workspace: WorkspacePaths, tag: str) -> Path:
    """Where a pass keeps its scratch files (removed when the pass is done)."""
    return workspace.state / "billing" / tag


def derive_flow_usage(
    workspace: WorkspacePaths,
    period: Period,
    subscriptions: pa.Table,
    executor: Executor,
    *,
    part: str | None = None,
    earlier: tuple[str, ...] = (),
) -> int:
    """Turn the period's flows into hourly data usage per subscribed IP block.

    Written as the usage part ``part`` (``flows-<period>``) per day, one task per day;
    record ids are derived from (subscription, block, hour), so deriving again yields the
    same records. Records already in the ``earlier`` parts of the period are not
    written again (a supplementary pass adds only what is new).
    """
    name = part or f"flows-{period.name}"
    remove_parts(workspace.usage, name)
    flows = files_by_day(workspace.flows)
    first, last = period.start_us() // 86_400_000_000, (period.end_us() - 1) // 86_400_000_000
    usage = files_by_day(workspace.usage)
    days = [
        FlowDay(day, tuple(str(p) for p in files),
                tuple(str(p) for p in usage.get(day, []) if p.name in
                      {f"part-{e}.parquet" for e in earlier}))
        for day, files in sorted(flows.items())
        if first <= day <= last
    ]  # fmt: skip
    if not days:
        return 0
    job = FlowUsageJob(str(workspace.usage), name, period.start_us(), period.end_us(),
                       f"flows {period.name}")  # fmt: skip
    index = executor.share(build_prefix_index(subscriptions))
    # Workers read the parts directly; a part that cannot be read back is named here.
    with reading_parts([Path(p) for d in days for p in (*d.flows, *d.earlier)]):
        counts = executor.map(derive_day, days, name="flow-usage", job=job, index=index)
    return sum(counts)


def _buckets(executor: Executor, per_day: list[int], chunk_rows: int) -> int:
    """One partition when every day fits a chunk and nothing runs in parallel; else enough
    account buckets for a day's share to fit, and at least two per worker."""
    needed = max(1, ceil(max(per_day, default=0) / chunk_rows))
    return max(needed, 2 * executor.workers) if executor.workers > 1 else needed


def rate_period(
    workspace: WorkspacePaths,
    period: Period,
    subscriptions: pa.Table,
    executor: Executor,
    *,
    tag: str,
    billed_tags: tuple[str, ...],
    billable: Billable | None = None,
    plan: RatingPlan | None = None,
    chunk_rows: int = CHUNK_ROWS,
    buckets: int | None = None,
) -> RatingOutcome:
    """Rate all unbilled usage that started before the period's end.

    Usage of earlier periods that arrived late is included (billed on this period's
    bill); records in the rated parts of ``billed_tags`` (committed passes) are skipped,
    so no record is billed twice. Rated rows this pass does not bill (``billable``) are
    not written.
    """
    plan = plan or tariff_plan(workspace)
    scratch = scratch_folder(workspace, tag)
    shutil.rmtree(scratch / "split", ignore_errors=True)
    for root in (workspace.rated, workspace.suspense):
        remove_tag_parts(root, tag)
    rated_by_day = {
        day: [p for p in files if is_part_of(p, billed_tags)]
        for day, files in files_by_day(workspace.rated).items()
    }
    days = day_files(files_by_day(workspace.usage), rated_by_day, period.end_us())
    # Workers read the parts directly; a part that cannot be read back is named here.
    parts = [Path(p) for d in days for p in (*d.usage, *d.billed)]
    with reading_parts(parts):
        partial = _rate_days(workspace, period, subscriptions, executor, plan, days, tag,
                             billable, chunk_rows, buckets, scratch)  # fmt: skip
    quantities, rejected = _prorated(workspace, period, subscriptions, plan, tag)
    if rejected:
        reasons = dict(partial.suspense_by_reason)
        for reason, count in rejected.items():
            reasons[reason] = reasons.get(reason, 0) + count
        partial = dataclasses.replace(partial, suspense=partial.suspense + sum(rejected.values()),
                                      suspense_by_reason=dict(sorted(reasons.items())))  # fmt: skip
    # Tiers price the period's own usage; late records of earlier periods were (or will
    # be) priced with their own period, never moved into another period's tiers.
    priced = price_period(
        combine_quantities(partial.quantities, quantities),
        plan,
        period_seconds=(period.end_us() - period.start_us()) // 1_000_000,
    )
    return RatingOutcome(partial, priced, plan, tag)


def _prorated(
    workspace: WorkspacePaths, period: Period, subscriptions: pa.Table, plan: RatingPlan,
    tag: str,
) -> tuple[pa.Table, dict[str, int]]:  # fmt: skip
    """The period's prorated quantities from ``W/quantities`` (every record that took effect
    before the period's end: a level carries over), file by file, and the counts of the
    records set aside - written to the pass's suspense naming file, record and field."""
    if not any(pp.measure == "prorated" for t in plan.tariffs.values()
               for pp in t.period_pricing):  # fmt: skip
        return QUANTITY_SCHEMA.empty_table(), {}
    last = (period.end_us() - 1) // 86_400_000_000
    files = [p for day, ps in sorted(files_by_day(workspace.quantities).items())
             if day <= last for p in ps]  # fmt: skip
    parts, rows = [], []
    now = datetime.now(UTC)
    with reading_parts(files):
        for path in files:
            table = pq.read_table(path, columns=QUANTITY_CHANGE_SCHEMA.names,
                                  page_checksum_verification=True)  # fmt: skip
            found = prorated_quantities(table, subscriptions, plan, period.start_us(),
                                        period.end_us())  # fmt: skip
            parts.append(found.quantities)
            for record_id, (reason, message) in found.rejected.items():
                rows.append({"stage": "rating", "source_file": str(path), "record_no": None,
                             "record_id": record_id, "field": message.split(":")[0],
                             "reason": reason, "message": f"{path.name}: {message}",
                             "raw": None, "rejected_at": now})  # fmt: skip
    if rows:
        with DayPartWriter(workspace.suspense, f"run-{tag}-quantities", REJECT_SCHEMA,
                           "rejected_at") as out:  # fmt: skip
            out.write(pa.Table.from_pylist(rows, schema=REJECT_SCHEMA))
    counts: dict[str, int] = {}
    for row in rows:
        reason = str(row["reason"])
        counts[reason] = counts.get(reason, 0) + 1
    return combine_quantities(*parts), counts


def _rate_days(
    workspace: WorkspacePaths,
    period: Period,
    subscriptions: pa.Table,
    executor: Executor,
    plan: RatingPlan,
    days: tuple[DayFiles, ...],
    tag: str,
    billable: Billable | None,
    chunk_rows: int,
    buckets: int | None,
    scratch: Path,
) -> RatePartial:
    per_day = usage_rows(days)
    n = buckets or _buckets(executor, per_day, chunk_rows)
    log.info("rating up to %d usage records in %d days, %d partition(s)", sum(per_day),
             len(days), n)  # fmt: skip
    job = RateJob(str(workspace.usage), str(workspace.rated), str(workspace.suspense),
                  str(scratch), tag, period.start_us(), period.end_us(), days, n,
                  chunk_rows)  # fmt: skip
    router = AccountRouter.build(subscriptions, n) if n > 1 else AccountRouter.single()
    if n > 1:
        shared_router = executor.share(router)
        executor.map(split_day, days, name="usage-split", job=job, router=shared_router)
    context = executor.share(RateContext.of(subscriptions, plan, router, billable))
    partials = executor.map_partials(rate_bucket, range(n), name="rate", job=job,
                                     context=context)  # fmt: skip
    partial: RatePartial = executor.reduce(combine_rate_partials, partials, name="rate")
    shutil.rmtree(scratch / "split", ignore_errors=True)
    return partial

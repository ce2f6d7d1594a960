"""The rating part of a billing run: flows to usage, then usage to rated and suspense.

Outputs are Parquet datasets with part names derived from the period, so rerunning a
period (after a crash, say) replaces its files instead of adding to them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from bss.billing.period import Period
from bss.errors import BillingError
from collectors.dataset import read_dataset, remove_parts, write_partitioned
from collectors.schemas import FLOW_SCHEMA, REJECT_SCHEMA, USAGE_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.rating.period_pricing import apply_period_pricing
from rating_engine.rating.rate import RatingPlan, compile_plan, load_tariffs, rate_usage
from rating_engine.schemas import RATED_SCHEMA
from rating_engine.tariff.allowances import AllowanceState
from rating_engine.traffic.attribution import build_prefix_index
from rating_engine.traffic.usage_from_flows import usage_from_flows

__all__ = ["RatingOutcome", "derive_flow_usage", "rate_period", "tariff_plan"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RatingOutcome:
    rated: pa.Table  # RATED_SCHEMA
    suspense: pa.Table  # REJECT_SCHEMA, stage "rating"
    allowance_ledger: pa.Table
    period_charges: pa.Table  # PERIOD_CHARGE_SCHEMA: tiered/volume pricing of the period
    plan: RatingPlan  # the compiled tariffs that priced it

    def suspense_by_reason(self) -> dict[str, int]:
        if self.suspense.num_rows == 0:
            return {}
        counts = pc.value_counts(self.suspense.column("reason")).to_pylist()
        return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}


def tariff_plan(workspace: WorkspacePaths) -> RatingPlan:
    """Compile the workspace's tariffs, cached on disk by content hash."""
    folder = workspace.tariffs
    if not folder.exists() or not any(folder.glob("*.toml")):
        raise BillingError(f"no tariffs in {folder} (add TOML tariff files there)")
    return compile_plan(load_tariffs(folder), cache_dir=workspace.state / "tariff_cache")


def derive_flow_usage(workspace: WorkspacePaths, period: Period, subscriptions: pa.Table) -> int:
    """Turn the period's flows into hourly data usage per subscribed IP block.

    Written as the usage part ``flows-<period>``; record ids are derived from
    (subscription, block, hour), so deriving again yields the same records.
    """
    start = pa.scalar(period.start, FLOW_SCHEMA.field("flow_start").type)
    end = pa.scalar(period.end, FLOW_SCHEMA.field("flow_start").type)
    flows = read_dataset(
        workspace.flows,
        FLOW_SCHEMA,
        filter=(pc.field("flow_start") >= start) & (pc.field("flow_start") < end),
    )
    part = f"flows-{period.name}"
    remove_parts(workspace.usage, part)
    if flows.num_rows == 0:
        return 0
    index = build_prefix_index(subscriptions)
    usage = usage_from_flows(flows, index, bucket="hour", source_file=f"flows {period.name}")
    write_partitioned(usage, workspace.usage, time_column="start_time", part_name=part)
    return int(usage.num_rows)


def rate_period(
    workspace: WorkspacePaths,
    period: Period,
    subscriptions: pa.Table,
    billed_record_ids: pa.ChunkedArray | pa.Array,
) -> RatingOutcome:
    """Rate all unbilled usage that started before the period's end.

    Usage of earlier periods that arrived late is included (billed on this period's
    bill); usage already billed is skipped, so no record is billed twice.
    """
    derived = derive_flow_usage(workspace, period, subscriptions)
    end = pa.scalar(period.end, USAGE_SCHEMA.field("start_time").type)
    usage = read_dataset(workspace.usage, USAGE_SCHEMA, filter=pc.field("start_time") < end)
    if len(billed_record_ids):
        usage = usage.filter(pc.invert(pc.is_in(usage.column("record_id"), billed_record_ids)))
    # No sort needed: rate_usage consumes allowances in (start_time, record_id) order per
    # subscription over the whole call.
    log.info("rating %d usage records (%d derived from flows)", usage.num_rows, derived)
    plan = tariff_plan(workspace)
    result = rate_usage(usage, subscriptions, plan, allowances=AllowanceState())
    rated = result.rated.select(RATED_SCHEMA.names).cast(RATED_SCHEMA)
    suspense = result.rejected.select(REJECT_SCHEMA.names).cast(REJECT_SCHEMA)
    part = f"run-{period.name}"
    for root, table, column in (
        (workspace.rated, rated, "start_time"),
        (workspace.suspense, suspense, "rejected_at"),
    ):
        remove_parts(root, part)
        write_partitioned(table, root, time_column=column, part_name=part)
    # Tiers price the period's own usage; late records of earlier periods were (or will
    # be) priced with their own period, never moved into another period's tiers.
    in_period = rated.filter(
        pc.greater_equal(
            rated.column("start_time"),
            pa.scalar(period.start, rated.schema.field("start_time").type),
        )
    )
    charges = apply_period_pricing(in_period, plan)
    return RatingOutcome(rated, suspense, result.allowance_ledger, charges, plan)

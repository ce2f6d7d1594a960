"""Rating engine: tariffs compiled to arrays, Numba kernels over Arrow usage and flows.

Rating (``rate_usage``, ``rate_stream``), flow attribution and usage (``attribute_flows``,
``usage_from_flows``), aggregations (``top_n``, ``bucket_traffic``, ``percentile_95``) and
anomaly detection. Per-partition steps take and return Arrow tables or record batches and
hold no global state, so they run unchanged as Dask tasks. Names are imported on first
use (PEP 562): importing the package loads neither Numba nor pyarrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collectors.lazy import lazy_getattr
from rating_engine.errors import FilterError, RatingError, TariffError

if TYPE_CHECKING:
    from rating_engine.cgrates.importer import import_cgrates
    from rating_engine.rating.period_pricing import apply_period_pricing
    from rating_engine.rating.rate import (
        RatingResult,
        compile_plan,
        load_tariff,
        load_tariffs,
        rate_stream,
        rate_usage,
    )
    from rating_engine.rating.what_if import what_if, what_if_by_tariff
    from rating_engine.schemas import RATED_SCHEMA, SUBSCRIPTION_SCHEMA, decode_labels
    from rating_engine.tariff.allowances import AllowanceState
    from rating_engine.tariff.model import Tariff
    from rating_engine.tariff.plan import RatingPlan
    from rating_engine.traffic.aggregate import (
        bucket_traffic,
        combine_traffic,
        distinct_peers,
        hour_of_week_profile,
        top_conversations,
        top_n,
        with_address_text,
    )
    from rating_engine.traffic.anomaly import (
        exporter_silence,
        interface_utilisation,
        scan_detections,
        sequence_loss,
    )
    from rating_engine.traffic.attribution import (
        PrefixIndex,
        attribute_batches,
        attribute_flows,
        build_prefix_index,
    )
    from rating_engine.traffic.detections import DETECTION_SCHEMA
    from rating_engine.traffic.flow_filter import FlowFilter, compile_filter
    from rating_engine.traffic.flow_query import bucket_traffic_dataset, top_n_dataset
    from rating_engine.traffic.flow_stats import flow_statistics, parse_stat, select_flows
    from rating_engine.traffic.percentile import percentile_95
    from rating_engine.traffic.seasonal import BaselineParams, seasonal_detections
    from rating_engine.traffic.usage_from_flows import record_id_for_key, usage_from_flows

_LAZY = {
    "RATED_SCHEMA": "schemas",  # pyarrow: not loaded for the errors alone (the CLI's start)
    "SUBSCRIPTION_SCHEMA": "schemas",
    "decode_labels": "schemas",
    "bucket_traffic": "traffic.aggregate",
    "combine_traffic": "traffic.aggregate",
    "distinct_peers": "traffic.aggregate",
    "hour_of_week_profile": "traffic.aggregate",
    "top_conversations": "traffic.aggregate",
    "top_n": "traffic.aggregate",
    "with_address_text": "traffic.aggregate",
    "AllowanceState": "tariff.allowances",
    "DETECTION_SCHEMA": "traffic.detections",
    "BaselineParams": "traffic.seasonal",
    "exporter_silence": "traffic.anomaly",
    "interface_utilisation": "traffic.anomaly",
    "scan_detections": "traffic.anomaly",
    "seasonal_detections": "traffic.seasonal",
    "sequence_loss": "traffic.anomaly",
    "PrefixIndex": "traffic.attribution",
    "attribute_batches": "traffic.attribution",
    "attribute_flows": "traffic.attribution",
    "build_prefix_index": "traffic.attribution",
    "bucket_traffic_dataset": "traffic.flow_query",
    "top_n_dataset": "traffic.flow_query",
    "FlowFilter": "traffic.flow_filter",
    "compile_filter": "traffic.flow_filter",
    "flow_statistics": "traffic.flow_stats",
    "parse_stat": "traffic.flow_stats",
    "select_flows": "traffic.flow_stats",
    "percentile_95": "traffic.percentile",
    "apply_period_pricing": "rating.period_pricing",
    "import_cgrates": "cgrates.importer",
    "RatingResult": "rating.rate",
    "compile_plan": "rating.rate",
    "load_tariff": "rating.rate",
    "load_tariffs": "rating.rate",
    "rate_stream": "rating.rate",
    "rate_usage": "rating.rate",
    "Tariff": "tariff.model",
    "RatingPlan": "tariff.plan",
    "record_id_for_key": "traffic.usage_from_flows",
    "usage_from_flows": "traffic.usage_from_flows",
    "what_if": "rating.what_if",
    "what_if_by_tariff": "rating.what_if",
}

__all__ = [
    "DETECTION_SCHEMA",
    "RATED_SCHEMA",
    "SUBSCRIPTION_SCHEMA",
    "AllowanceState",
    "BaselineParams",
    "FilterError",
    "FlowFilter",
    "PrefixIndex",
    "RatingError",
    "RatingPlan",
    "RatingResult",
    "Tariff",
    "TariffError",
    "apply_period_pricing",
    "attribute_batches",
    "attribute_flows",
    "bucket_traffic",
    "bucket_traffic_dataset",
    "build_prefix_index",
    "combine_traffic",
    "compile_filter",
    "compile_plan",
    "decode_labels",
    "distinct_peers",
    "exporter_silence",
    "flow_statistics",
    "hour_of_week_profile",
    "import_cgrates",
    "interface_utilisation",
    "load_tariff",
    "load_tariffs",
    "parse_stat",
    "percentile_95",
    "rate_stream",
    "rate_usage",
    "record_id_for_key",
    "scan_detections",
    "seasonal_detections",
    "select_flows",
    "sequence_loss",
    "top_conversations",
    "top_n",
    "top_n_dataset",
    "usage_from_flows",
    "what_if",
    "what_if_by_tariff",
    "with_address_text",
]


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return __all__

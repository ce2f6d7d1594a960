"""Rating engine: tariffs compiled to arrays, Numba kernels over Arrow usage and flows.

Rating (``rate_usage``, ``rate_stream``), flow attribution and usage (``attribute_flows``,
``usage_from_flows``), aggregations (``top_n``, ``bucket_traffic``, ``percentile_95``) and
anomaly detection. Per-partition steps take and return Arrow tables or record batches and
hold no global state, so they run unchanged as Dask tasks. Names are imported on first
use (PEP 562): importing the package does not load Numba.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collectors.lazy import lazy_getattr

from .errors import RatingError, TariffError
from .schemas import RATED_SCHEMA, SUBSCRIPTION_SCHEMA, decode_labels

if TYPE_CHECKING:
    from .aggregate import (
        bucket_traffic,
        combine_traffic,
        distinct_peers,
        hour_of_week_profile,
        top_conversations,
        top_n,
        with_address_text,
    )
    from .allowances import AllowanceState
    from .anomaly import (
        DETECTION_SCHEMA,
        BaselineParams,
        exporter_silence,
        interface_utilisation,
        scan_detections,
        seasonal_detections,
        sequence_loss,
    )
    from .attribution import PrefixIndex, attribute_batches, attribute_flows, build_prefix_index
    from .flow_query import bucket_traffic_dataset, top_n_dataset
    from .percentile import percentile_95
    from .period_pricing import apply_period_pricing
    from .rating import (
        RatingResult,
        compile_plan,
        load_tariff,
        load_tariffs,
        rate_stream,
        rate_usage,
    )
    from .tariff import Tariff
    from .tariff_compile import RatingPlan
    from .usage_from_flows import record_id_for_key, usage_from_flows
    from .what_if import what_if, what_if_by_tariff

_LAZY = {
    "bucket_traffic": "aggregate",
    "combine_traffic": "aggregate",
    "distinct_peers": "aggregate",
    "hour_of_week_profile": "aggregate",
    "top_conversations": "aggregate",
    "top_n": "aggregate",
    "with_address_text": "aggregate",
    "AllowanceState": "allowances",
    "DETECTION_SCHEMA": "anomaly",
    "BaselineParams": "anomaly",
    "exporter_silence": "anomaly",
    "interface_utilisation": "anomaly",
    "scan_detections": "anomaly",
    "seasonal_detections": "anomaly",
    "sequence_loss": "anomaly",
    "PrefixIndex": "attribution",
    "attribute_batches": "attribution",
    "attribute_flows": "attribution",
    "build_prefix_index": "attribution",
    "bucket_traffic_dataset": "flow_query",
    "top_n_dataset": "flow_query",
    "percentile_95": "percentile",
    "apply_period_pricing": "period_pricing",
    "RatingResult": "rating",
    "compile_plan": "rating",
    "load_tariff": "rating",
    "load_tariffs": "rating",
    "rate_stream": "rating",
    "rate_usage": "rating",
    "Tariff": "tariff",
    "RatingPlan": "tariff_compile",
    "record_id_for_key": "usage_from_flows",
    "usage_from_flows": "usage_from_flows",
    "what_if": "what_if",
    "what_if_by_tariff": "what_if",
}

__all__ = [
    "DETECTION_SCHEMA",
    "RATED_SCHEMA",
    "SUBSCRIPTION_SCHEMA",
    "AllowanceState",
    "BaselineParams",
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
    "compile_plan",
    "decode_labels",
    "distinct_peers",
    "exporter_silence",
    "hour_of_week_profile",
    "interface_utilisation",
    "load_tariff",
    "load_tariffs",
    "percentile_95",
    "rate_stream",
    "rate_usage",
    "record_id_for_key",
    "scan_detections",
    "seasonal_detections",
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

"""Status codes the rating kernels write per record: 0 is rated, the rest reject reasons."""

from __future__ import annotations

__all__ = [
    "NEG_DURATION",
    "NEG_PRICE",
    "NO_BAND",
    "NO_DEST",
    "NO_PRICE",
    "NO_RATE",
    "NO_VERSION",
    "OK",
    "OVERFLOW",
    "REASONS",
    "TIME_RANGE",
    "UNKNOWN_KEY",
    "UNKNOWN_SERVICE",
    "UNKNOWN_SUB",
    "UNKNOWN_TARIFF",
    "VOLUME_RANGE",
]

#: Status codes written by the kernels (index = code); 0 is "rated".
REASONS = (
    "rated",
    "unknown_subscription",
    "unknown_tariff",
    "no_tariff_version",
    "negative_duration",
    "time_out_of_range",
    "no_destination",
    "no_rate",
    "no_band",
    "unknown_service",
    "cost_overflow",
    "volume_out_of_range",
    "unknown_key_type",
    "no_price",
    "negative_price",
)
OK, UNKNOWN_SUB, UNKNOWN_TARIFF, NO_VERSION, NEG_DURATION, TIME_RANGE = 0, 1, 2, 3, 4, 5
NO_DEST, NO_RATE, NO_BAND, UNKNOWN_SERVICE, OVERFLOW, VOLUME_RANGE, UNKNOWN_KEY = (
    6,
    7,
    8,
    9,
    10,
    11,
    12,
)
#: Pass-through rates (:mod:`rating_engine.rating.pass_through`): the record carries no
#: price, or a negative one.
NO_PRICE, NEG_PRICE = 13, 14

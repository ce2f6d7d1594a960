"""Arrow schemas the rating engine consumes (subscriptions) and produces (rated usage).

Usage and rejections use the collectors' schemas; money is int64 micro-units
(1e-6 of ``currency``), never a float.
"""

from __future__ import annotations

import pyarrow as pa

from collectors.schemas import TIMESTAMP, documented_field

__all__ = ["MICROS_PER_UNIT", "RATED_SCHEMA", "SUBSCRIPTION_SCHEMA"]

#: Money is carried as integer micro-units of the currency.
MICROS_PER_UNIT = 1_000_000


_f = documented_field


SUBSCRIPTION_SCHEMA = pa.schema(
    [
        _f(
            "subscription_id",
            pa.int64(),
            False,
            "the product (subscription) usage is attributed to",
        ),
        _f("account_id", pa.int64(), False, "billing account that pays for it"),
        _f("key_type", pa.string(), False, "msisdn, imsi or ip"),
        _f("key", pa.string(), False, "E.164 digits, IMSI digits, or an IP prefix in CIDR form"),
        _f("tariff_id", pa.string(), False, "tariff that rates this subscription's usage"),
        _f("active_from", TIMESTAMP, False, "binding valid from (inclusive), UTC"),
        _f("active_to", TIMESTAMP, True, "binding valid to (exclusive), UTC; null = open"),
    ]
)

RATED_SCHEMA = pa.schema(
    [
        _f("record_id", pa.int64(), False, "usage record id (collectors' USAGE_SCHEMA)"),
        _f("subscription_id", pa.int64(), False, "subscription the usage was attributed to"),
        _f("account_id", pa.int64(), False, "billing account of the subscription"),
        _f("service", pa.string(), False, "voice, sms or data"),
        _f("start_time", TIMESTAMP, False, "usage start, UTC"),
        _f("tariff_id", pa.string(), False, "tariff used"),
        _f("tariff_version", pa.string(), False, "version of the tariff in force at start_time"),
        _f("destination_set", pa.string(), True, "destination set matched (voice/sms)"),
        _f("matched_prefix", pa.string(), True, "longest destination prefix that matched"),
        _f("band", pa.string(), False, "time band (first band for a split call)"),
        _f(
            "billed_units",
            pa.int64(),
            False,
            "units charged after increments/blocks: seconds (voice), events (sms), bytes (data)",
        ),
        _f("allowance_units", pa.int64(), False, "of billed_units, how many an allowance covered"),
        _f("cost", pa.int64(), False, "cost in micro-units of currency, rounded per the tariff"),
        _f("currency", pa.string(), False, "ISO 4217 code"),
    ]
)

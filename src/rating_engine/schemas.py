"""Arrow schemas the rating engine consumes (subscriptions) and produces (rated usage).

Usage and rejections use the collectors' schemas; money is int64 micro-units
(1e-6 of ``currency``), never a float.
"""

from __future__ import annotations

import pyarrow as pa

from collectors.schemas import TIMESTAMP, documented_field

__all__ = ["LABEL", "MICROS_PER_UNIT", "RATED_SCHEMA", "SUBSCRIPTION_SCHEMA", "decode_labels"]

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

#: Text columns of rated usage repeat a handful of values (services, tariffs, bands,
#: prefixes): dictionary-encoded, as Parquet stores them, the kernel's codes are the column.
LABEL = pa.dictionary(pa.int32(), pa.string())

RATED_SCHEMA = pa.schema(
    [
        _f("record_id", pa.int64(), False, "usage record id (collectors' USAGE_SCHEMA)"),
        _f("subscription_id", pa.int64(), False, "subscription the usage was attributed to"),
        _f("account_id", pa.int64(), False, "billing account of the subscription"),
        _f("service", LABEL, False, "voice, sms or data"),
        _f("start_time", TIMESTAMP, False, "usage start, UTC"),
        _f("tariff_id", LABEL, False, "tariff used"),
        _f("tariff_version", LABEL, False, "version of the tariff in force at start_time"),
        _f("destination_set", LABEL, True, "destination set matched (voice/sms)"),
        _f("matched_prefix", LABEL, True, "longest destination prefix that matched"),
        _f("band", LABEL, False, "time band (first band for a split call)"),
        _f(
            "billed_units",
            pa.int64(),
            False,
            "units charged after increments/blocks: seconds (voice), events (sms), bytes (data)",
        ),
        _f("allowance_units", pa.int64(), False, "of billed_units, how many an allowance covered"),
        _f("cost", pa.int64(), False, "cost in micro-units of currency, rounded per the tariff"),
        _f("currency", LABEL, False, "ISO 4217 code"),
    ]
)


def decode_labels(table: pa.Table) -> pa.Table:
    """``table`` with its dictionary-encoded columns as plain values (for Arrow kernels,
    such as sorting, that do not take dictionaries)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            plain = table.column(i).cast(field.type.value_type)
            table = table.set_column(i, field.with_type(field.type.value_type), plain)
    return table

"""Rated text columns: dictionary-encoded, each text once in its dictionary.

Version names, sets, prefixes, bands and currencies repeat across tariffs and versions (both
example tariffs have a version "2026.1", the sets "national" and "eu", prefix "49", EUR).
Arrow's own kernels group a dictionary column by code, so a text twice in a dictionary
would split one group in two.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from package_data import TARIFFS
from reference_rater import subscriptions_table, usage_table

from rating_engine import decode_labels
from rating_engine.rating.rate import compile_plan, load_tariffs, rate_usage

DATA = TARIFFS
LABELS = ("service", "tariff_id", "tariff_version", "destination_set", "matched_prefix", "band",
          "currency")  # fmt: skip


def test_dictionaries_hold_each_text_once_and_group_like_text() -> None:
    plan = compile_plan(load_tariffs(DATA), years=(2026, 2026))
    subs = subscriptions_table(
        [{"key": "491700000001", "tariff_id": "mobile-classic"},
         {"key": "491700000002", "tariff_id": "mobile-flex", "subscription_id": 101}]
    )  # fmt: skip
    t0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
    dests = ["4930123", "4915112", "4412345", "3312345", "4990012"]
    rows = [
        {
            "subscriber_key": "491700000001" if i % 2 else "491700000002",
            "service": "voice",
            "destination": dests[i % len(dests)],
            # March to September: both versions of mobile-classic, peak and off-peak
            "start_time": t0 + timedelta(hours=13 * i),
            "duration_ms": 61_000,
        }
        for i in range(400)
    ]
    rated = rate_usage(usage_table(rows), subs, plan).rated
    assert rated.num_rows == len(rows)
    plain = decode_labels(rated)
    for name in LABELS:
        col = rated[name].combine_chunks()
        assert pa.types.is_dictionary(col.type), name
        values = col.dictionary.to_pylist()
        assert len(values) == len(set(values)), (name, values)
        by_code = rated.group_by(name).aggregate([("cost", "sum")])
        by_text = plain.group_by(name).aggregate([("cost", "sum")])
        got = dict(zip(pc.cast(by_code[name], pa.string()).to_pylist(),
                       by_code["cost_sum"].to_pylist(), strict=True))  # fmt: skip
        want = dict(zip(by_text[name].to_pylist(), by_text["cost_sum"].to_pylist(), strict=True))
        assert got == want, name
    # the example tariffs do share these texts: the test exercises the deduplication
    assert set(plain["tariff_version"].to_pylist()) >= {"2026.1", "2026.7"}
    assert len(set(plain["tariff_id"].to_pylist())) == 2

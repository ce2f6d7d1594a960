"""Subscriber look-up: the kernel's key table against a plain dictionary reference.

Keys of every length the kernel treats differently (short keys read as words, long keys
compared byte by byte, keys near the end of the string buffer), several bindings per key
in time, and usage batches sliced at arbitrary offsets (unaligned string data).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_rater import subscriptions_table, usage_table

from rating_engine.key_table import uniform_text
from rating_engine.rating import compile_plan, load_tariffs, rate_usage

DATA = Path(__file__).resolve().parents[2] / "data" / "tariffs"
T0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
_PLAN = compile_plan({"mobile-classic": load_tariffs(DATA)["mobile-classic"]}, years=(2026, 2026))

key_text = st.text(alphabet="0123456789abcdef:.", min_size=1, max_size=40)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[dict], list[dict], int]:
    keys = draw(st.lists(st.tuples(st.sampled_from(["msisdn", "imsi"]), key_text),
                         min_size=1, max_size=12, unique=True))  # fmt: skip
    subs = []
    for kt, key in keys:
        # 1-3 consecutive bindings, possibly with gaps between them
        t = draw(st.integers(0, 40))
        for _ in range(draw(st.integers(1, 3))):
            length = draw(st.integers(1, 30))
            subs.append(
                {
                    "subscription_id": 100 + len(subs),
                    "account_id": 1000 + len(subs),
                    "key_type": kt,
                    "key": key,
                    "tariff_id": "mobile-classic",
                    "active_from": T0 + timedelta(hours=t),
                    "active_to": T0 + timedelta(hours=t + length),
                }
            )
            t += length + draw(st.integers(0, 5))
    unknown = st.tuples(st.sampled_from(["msisdn", "imsi"]), key_text)
    usage = [
        {
            "subscriber_key_type": kt,
            "subscriber_key": key,
            "service": "sms",
            "destination": "4930123",
            "start_time": T0 + timedelta(hours=draw(st.integers(-2, 200)), minutes=30),
        }
        for kt, key in draw(st.lists(st.one_of(st.sampled_from(keys), unknown), max_size=40))
    ]
    return subs, usage, draw(st.integers(0, 7))


@settings(max_examples=200, deadline=None)
@given(scenario())
def test_lookup_matches_reference(case: tuple[list[dict], list[dict], int]) -> None:
    subs, usage, cut = case
    # a leading row sliced off moves every key's bytes by its length: unaligned words
    pad = {"subscriber_key": "x" * cut, "service": "sms", "start_time": T0}
    table = usage_table([pad, *usage]).slice(1)
    res = rate_usage(table, subscriptions_table(subs), _PLAN)
    expected: dict[int, int | None] = {}
    for rid, row in enumerate(usage, start=2):
        hit = [
            s["subscription_id"]
            for s in subs
            if (s["key_type"], s["key"]) == (row["subscriber_key_type"], row["subscriber_key"])
            and s["active_from"] <= row["start_time"] < s["active_to"]
        ]
        assert len(hit) <= 1
        expected[rid] = hit[0] if hit else None
    got: dict[int, int | None] = dict(
        zip(res.rated["record_id"].to_pylist(), res.rated["subscription_id"].to_pylist(),
            strict=True)
    )  # fmt: skip
    for rid, reason in zip(
        res.rejected["record_id"].to_pylist(), res.rejected["reason"].to_pylist(), strict=True
    ):
        assert reason == "unknown_subscription"
        got[rid] = None
    assert got == expected


def test_unaligned_buffer_and_key_at_buffer_end() -> None:
    """Keys whose bytes end exactly at the end of an unpadded, unaligned buffer."""
    key = "4917000000012345"  # 16 bytes: both words
    subs = subscriptions_table([{"key": key, "tariff_id": "mobile-classic"}])
    for lead in range(9):
        data = ("y" * lead + key).encode()
        offsets = pa.array([0, lead, lead + len(key)], pa.int32())
        raw = pa.py_buffer(bytearray(b"\0" + data))  # one byte in: not 8-aligned
        keys = pa.Array.from_buffers(pa.string(), 2, [None, offsets.buffers()[1], raw.slice(1)])
        table = usage_table(
            [{"service": "sms", "destination": "4930123", "start_time": T0}] * 2
        ).set_column(4, "subscriber_key", keys)
        res = rate_usage(table, subs, _PLAN)
        assert res.rated["subscription_id"].to_pylist() == [100]
        assert res.rejected["reason"].to_pylist() == ["unknown_subscription"]


texts = st.lists(st.sampled_from(["voice", "sms", "data", "voicE", "", "vo", "ice"]), max_size=60)


@settings(max_examples=300, deadline=None)
@given(texts, st.data())
def test_uniform_text_matches_reference(values: list[str], data: st.DataObject) -> None:
    arr = pa.array(["pad", *values]).slice(1)  # offsets not starting at 0
    off = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + len(arr) + 1]
    raw = np.frombuffer(arr.buffers()[2], np.uint8) if len(values) else np.zeros(1, np.uint8)
    lo = data.draw(st.integers(0, len(values)))
    hi = data.draw(st.integers(lo, len(values)))
    assert uniform_text(off, raw, lo, hi) == (len(set(values[lo:hi])) <= 1)


def test_chunks_of_one_service_and_mixed_chunks_rate_alike() -> None:
    """A batch large enough for many kernel chunks: runs of one service (decoded once per
    chunk) beside chunks with mixed and misspelt services (decoded per record)."""
    n = 40_000
    svc = ["voice"] * (n // 2) + ["sms"] * (n // 4) + ["voice", "vocie"] * (n // 16)
    svc += ["sms", "voice", "data"] * ((n - len(svc)) // 3)
    svc += ["data"] * (n - len(svc))
    kt = ["msisdn"] * (n - 3) + ["imsi", "msisdn", "msisdn "]
    subs = subscriptions_table([{"key": "491700000001", "tariff_id": "mobile-classic"}])
    rows = [
        {"subscriber_key_type": k, "subscriber_key": "491700000001", "service": s,
         "destination": "4930123", "start_time": T0, "duration_ms": 61_000}
        for s, k in zip(svc, kt, strict=True)
    ]  # fmt: skip
    res = rate_usage(usage_table(rows), subs, _PLAN)
    reasons = dict(zip(res.rejected["record_id"].to_pylist(), res.rejected["reason"].to_pylist(),
                       strict=True))  # fmt: skip
    got_svc = dict(zip(res.rated["record_id"].to_pylist(), res.rated["service"].to_pylist(),
                       strict=True))  # fmt: skip
    for r, (s, k) in enumerate(zip(svc, kt, strict=True)):
        rid = r + 1  # usage_table numbers records from 1
        if s == "vocie":
            assert reasons[rid] == "unknown_service"
        elif k != "msisdn":  # the subscription's key is an msisdn
            assert reasons[rid] == ("unknown_subscription" if k == "imsi" else "unknown_key_type")
        else:
            assert got_svc[rid] == s, (r, s)

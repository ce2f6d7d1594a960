"""Subscriber look-up: the kernel's key table against a plain dictionary reference.

Keys of every length the kernel treats differently (short keys read as words, long keys
compared byte by byte, keys near the end of the string buffer), several bindings per key
in time, and usage batches sliced at arbitrary offsets (unaligned string data).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from package_data import TARIFFS
from reference_rater import subscriptions_table, usage_table

from rating_engine.errors import RatingError
from rating_engine.rating.rate import SubscriptionIndex, compile_plan, load_tariffs, rate_usage
from rating_engine.tariff.key_table import (
    ROW_FROM,
    build_key_table,
    key_code,
    seed_of,
    slot_of,
    uniform_text,
)

DATA = TARIFFS
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


def test_unknown_keys_that_share_words_with_known_ones() -> None:
    """Every key not in the table lands on some row (perfect hash, no probing): the row's
    comparison must tell apart keys that differ only in bytes 8-15, only in bytes 0-7,
    only in type, or (long keys) only in their last byte."""
    known = [("msisdn", f"49170000{i:04d}") for i in range(0, 400, 2)]  # share bytes 0-7
    known += [("msisdn", f"{i:04d}55551234") for i in range(0, 400, 2)]  # share bytes 8-15
    known += [("imsi", f"26201{i:010d}") for i in range(50)]
    known += [("msisdn", "x" * 30 + f"{i:03d}") for i in range(0, 100, 2)]  # long keys
    unknown = [("msisdn", f"49170000{i:04d}") for i in range(1, 400, 2)]
    unknown += [("msisdn", f"{i:04d}55551234") for i in range(1, 400, 2)]
    unknown += [("msisdn", f"26201{i:010d}") for i in range(50)]  # an imsi's text as msisdn
    unknown += [("msisdn", "x" * 30 + f"{i:03d}") for i in range(1, 100, 2)]
    subs = subscriptions_table(
        [{"key_type": kt, "key": k, "tariff_id": "mobile-classic"} for kt, k in known]
    )
    rows = [
        {"subscriber_key_type": kt, "subscriber_key": k, "service": "sms",
         "destination": "4930123", "start_time": T0}
        for kt, k in known + unknown
    ]  # fmt: skip
    res = rate_usage(usage_table(rows), subs, _PLAN)
    sub_of = dict(
        zip(res.rated["record_id"].to_pylist(), res.rated["subscription_id"].to_pylist(),
            strict=True)
    )  # fmt: skip
    assert sub_of == {r + 1: 100 + r for r in range(len(known))}
    assert sorted(res.rejected["record_id"].to_pylist()) == list(
        range(len(known) + 1, len(known) + len(unknown) + 1)
    )
    assert set(res.rejected["reason"].to_pylist()) == {"unknown_subscription"}


def test_every_key_has_its_own_row() -> None:
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 5, 1000, 20_000):
        lengths = rng.integers(1, 25, n)
        k_off = np.zeros(n + 1, np.int64)
        k_off[1:] = np.cumsum(lengths)
        k_data = rng.integers(48, 58, int(k_off[-1])).astype(np.uint8)
        first = np.arange(n, dtype=np.int64)
        bind = np.zeros((n, 4), np.int64)
        bind[:, 1] = first
        types = rng.integers(0, 3, n)
        # keys drawn at random may repeat: keep the first of each (type, bytes)
        seen: dict[tuple[int, bytes], int] = {}
        for k in range(n):
            seen.setdefault((int(types[k]), k_data[k_off[k] : k_off[k + 1]].tobytes()), k)
        keep = np.array(sorted(seen.values()), np.int64)
        k_off2 = np.zeros(len(keep) + 1, np.int64)
        k_off2[1:] = np.cumsum(lengths[keep])
        k_data2 = np.concatenate([k_data[k_off[k] : k_off[k + 1]] for k in keep] or [k_data[:0]])
        first = np.arange(len(keep), dtype=np.int64)
        table, kdisp = build_key_table(types[keep], k_off2, k_data2, first,
                                       np.ones(len(keep), np.int64), first, first + 1,
                                       bind[: len(keep)])  # fmt: skip
        assert len(table) >= len(keep)
        seed = np.uint64(seed_of(kdisp))
        hashes = [
            np.uint64(key_code(int(types[k]), k_data2, int(k_off2[j]), int(k_off2[j + 1]), seed)[2])
            for j, k in enumerate(keep.tolist())
        ]
        rows = [slot_of(h, kdisp) for h in hashes]
        assert len(set(rows)) == len(keep)
        assert all(0 <= r < len(table) for r in rows)
        assert [int(table[r, ROW_FROM]) for r in rows] == list(range(len(keep)))


def _bad_subscriptions(**change: object) -> pa.Table:
    rows = [{"key": "491700000001", "tariff_id": "mobile-classic"},
            {"key": "491700000002", "tariff_id": "mobile-classic"}]  # fmt: skip
    rows[1].update(change)
    return subscriptions_table(rows)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key_type": "email"}, "subscription row 1: key_type email (field key_type)"),
        ({"key_type": "ip", "key": "10.0.0.300"}, "subscription row 1: key '10.0.0.300' is no IP"),
        ({"key": "491700000001", "active_from": T0 - timedelta(days=1)},
         "subscriptions overlap in time for key 491700000001 (field active_to)"),
    ],
)  # fmt: skip
def test_subscription_errors_name_row_and_field(change: dict, message: str) -> None:
    with pytest.raises(RatingError, match=re.escape(message)):
        SubscriptionIndex.build(_bad_subscriptions(**change), _PLAN)


def test_ip_keys_are_matched_in_canonical_form() -> None:
    subs = subscriptions_table(
        [{"key_type": "ip", "key": "2001:DB8::1", "tariff_id": "mobile-classic"},
         {"key_type": "ip", "key": "198.51.100.0/28", "tariff_id": "mobile-classic",
          "subscription_id": 101}]
    )  # fmt: skip
    rows = [
        {"subscriber_key_type": "ip", "subscriber_key": k, "service": "sms",
         "destination": "4930123", "start_time": T0}
        for k in ("2001:db8::1", "198.51.100.0/28", "2001:DB8::1")
    ]  # fmt: skip
    res = rate_usage(usage_table(rows), subs, _PLAN)
    assert res.rated["subscription_id"].to_pylist() == [100, 101]
    assert res.rejected["reason"].to_pylist() == ["unknown_subscription"]

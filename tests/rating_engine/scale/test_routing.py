"""Account buckets: every record of a subscription lands in one bucket, exactly."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from rating_engine.scale.routing import AccountRouter
from rating_engine.schemas import SUBSCRIPTION_SCHEMA

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _subs(rows: list[tuple[int, int, str, str]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"subscription_id": s, "account_id": a, "key_type": t, "key": k, "tariff_id": "x",
          "active_from": T0, "active_to": None} for s, a, t, k in rows],
        schema=SUBSCRIPTION_SCHEMA,
    )  # fmt: skip


def _route(router: AccountRouter, keys: list[str]) -> list[int]:
    ids = np.arange(len(keys), dtype=np.int64)
    return router.route(pa.array(keys, pa.string()), ids).tolist()


rows = st.lists(
    st.tuples(
        st.integers(1, 30),
        st.integers(1, 12),
        st.sampled_from(["msisdn", "imsi"]),
        st.integers(0, 25).map(lambda i: f"49151{i:04d}"),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(rows, st.integers(1, 9))
def test_accounts_sharing_keys_share_a_bucket(table: list, buckets: int) -> None:
    router = AccountRouter.build(_subs(table), buckets)
    bucket_of_key = dict(zip([r[3] for r in table], _route(router, [r[3] for r in table]),
                             strict=True))  # fmt: skip
    # a key's bucket is its account's: an account's keys agree, and so do accounts joined
    # by a shared key
    by_account: dict[int, set[int]] = {}
    for _, account, _, key in table:
        by_account.setdefault(account, set()).add(bucket_of_key[key])
    assert all(len(b) == 1 for b in by_account.values())
    assert all(0 <= b < buckets for b in bucket_of_key.values())


def test_ip_keys_route_as_the_rater_matches_them() -> None:
    router = AccountRouter.build(
        _subs(
            [
                (1, 1, "ip", "192.0.2.1/32"),
                (2, 2, "ip", "198.51.100.0/28"),
                (3, 3, "msisdn", "491511"),
            ]
        ),
        64,
    )
    same = AccountRouter.build(
        _subs(
            [(1, 1, "ip", "192.0.2.1"), (2, 2, "ip", "198.51.100.0/28"), (3, 3, "msisdn", "491511")]
        ),
        64,
    )
    keys = ["192.0.2.1", "198.51.100.0/28", "491511"]
    assert _route(router, keys) == _route(same, keys)


def test_unknown_keys_go_by_record_id_and_one_bucket_is_everything() -> None:
    router = AccountRouter.build(_subs([(1, 1, "msisdn", "491511")]), 5)
    ids = np.array([10, 11, 12, 13, 14], np.int64)
    got = router.route(pa.array(["nobody"] * 5), ids)
    assert got.tolist() == (ids % 5).tolist()
    assert AccountRouter.single().route(pa.array(["a", "b"]), ids[:2]).tolist() == [0, 0]

"""Synthetic flows and IP-block subscriptions for the attribution / aggregation benchmarks.

Subscribers own IPv4 blocks (/24 .. /30, inside 10.0.0.0/8 and 100.64.0.0/10) and a few
IPv6 /56 blocks; each flow has one side in a subscriber block with probability
``p_attr`` (the other side is an "internet" address drawn from a Zipf-like population,
so top-N has real heavy hitters). All FLOW_SCHEMA columns are filled.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from collectors.addresses import ipv4_to_mapped
from collectors.schemas import FLOW_SCHEMA
from rating_engine.schemas import SUBSCRIPTION_SCHEMA

__all__ = ["T0_US", "make_flows", "make_subscriptions"]

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def make_subscriptions(n_subs: int, seed: int = 7) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Subscriptions table plus the IPv4 block starts (uint32) and lengths (prefix bits)."""
    rng = np.random.default_rng(seed)
    plens = rng.choice(np.array([24, 26, 28, 29, 30]), n_subs)
    # one /24-aligned slot per subscription keeps the blocks disjoint
    slots = rng.permutation(1 << 16)[:n_subs].astype(np.uint32)
    starts = np.uint32(0x0A000000) + (slots << np.uint32(8))
    keys = [f"{s >> 24}.{(s >> 16) & 255}.{(s >> 8) & 255}.0/{p}" for s, p in zip(
        starts.tolist(), plens.tolist(), strict=True)]  # fmt: skip
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    table = pa.table(
        {
            "subscription_id": np.arange(1, n_subs + 1, dtype=np.int64),
            "account_id": np.arange(1, n_subs + 1, dtype=np.int64) // 2 + 1000,
            "key_type": ["ip"] * n_subs,
            "key": keys,
            "tariff_id": ["data-1"] * n_subs,
            "active_from": [t0] * n_subs,
            "active_to": [None] * n_subs,
        },
        schema=SUBSCRIPTION_SCHEMA,
    )
    return table, starts, plens


def _addr(v4: np.ndarray) -> pa.Array:
    raw = ipv4_to_mapped(v4.astype(np.uint32))
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), v4.shape[0], [None, pa.py_buffer(raw)]
    )


def make_flows(
    n: int,
    starts: np.ndarray,
    plens: np.ndarray,
    *,
    hours: int = 24,
    p_attr: float = 0.9,
    ordered: bool = True,
    n_internet: int = 200_000,
    seed: int = 11,
) -> pa.Table:
    """``n`` IPv4 flows over ``hours`` hours from T0 (FLOW_SCHEMA), time-ordered by default."""
    rng = np.random.default_rng(seed)
    k = starts.shape[0]
    which = rng.integers(0, k, n)
    host = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    host_mask = (np.uint32(0xFFFFFFFF) >> plens[which].astype(np.uint32)).astype(np.uint32)
    inside = starts[which] | (host & host_mask)
    # internet side: Zipf-ish ranks over a fixed population of addresses
    pop = rng.integers(0x01000000, 0xDF000000, n_internet, dtype=np.uint64).astype(np.uint32)
    rank = np.minimum(rng.zipf(1.3, n) - 1, n_internet - 1)
    outside = pop[rank]
    attr = rng.random(n) < p_attr
    inside = np.where(attr, inside, pop[rng.integers(0, n_internet, n)])
    upload = rng.random(n) < 0.5
    src = np.where(upload, inside, outside)
    dst = np.where(upload, outside, inside)
    start = T0_US + rng.integers(0, hours * 3_600_000_000, n)
    if ordered:
        # collectors write flows roughly in arrival (time) order
        start.sort()
    dur = rng.integers(0, 120_000_000, n)
    packets = rng.integers(1, 2000, n).astype(np.uint64)
    nbytes = packets * rng.integers(40, 1500, n).astype(np.uint64)
    ts = pa.timestamp("us", tz="UTC")
    exporters = np.uint32(0xC0A80001) + rng.integers(0, 4, n).astype(np.uint32)
    cols = {
        "exporter": _addr(exporters),
        "observation_domain": pa.array(np.zeros(n, np.uint32)),
        "flow_start": pa.array(start).cast(ts),
        "flow_end": pa.array(start + dur).cast(ts),
        "src_addr": _addr(src),
        "dst_addr": _addr(dst),
        "src_port": pa.array(rng.integers(1024, 65536, n).astype(np.uint16)),
        "dst_port": pa.array(rng.choice(np.array([443, 80, 53, 22, 8080], np.uint16), n)),
        "protocol": pa.array(rng.choice(np.array([6, 17], np.uint8), n)),
        "tcp_flags": pa.array(np.full(n, 0x1B, np.uint16)),
        "tos": pa.array(np.zeros(n, np.uint8)),
        "bytes": pa.array(nbytes),
        "packets": pa.array(packets),
        "input_if": pa.array(rng.integers(1, 8, n).astype(np.uint32)),
        "output_if": pa.array(rng.integers(1, 8, n).astype(np.uint32)),
        "src_as": pa.array(np.zeros(n, np.uint32)),
        "dst_as": pa.array(np.zeros(n, np.uint32)),
        "next_hop": pa.nulls(n, pa.binary(16)),
        "vlan": pa.array(np.zeros(n, np.uint16)),
        "sampling_interval": pa.array(np.ones(n, np.uint32)),
        "direction": pa.nulls(n, pa.uint8()),
        "source_format": pa.array(["netflow_v5"] * n, pa.string())
        .dictionary_encode()
        .cast(pa.string()),
    }
    # nullable columns not set here (MPLS, enrichment) are null
    return pa.table(
        [cols.get(f.name, pa.nulls(n, f.type)) for f in FLOW_SCHEMA], schema=FLOW_SCHEMA
    )

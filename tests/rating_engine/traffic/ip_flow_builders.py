"""Small builders for flow and IP-subscription tables, and hypothesis strategies, for the
attribution / usage / percentile / aggregation tests."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from hypothesis import strategies as st

from collectors.addresses import address_to_bytes
from collectors.schemas import FLOW_SCHEMA
from rating_engine.schemas import SUBSCRIPTION_SCHEMA

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
T0_US = int(T0.timestamp()) * 1_000_000
HOUR_US = 3_600_000_000

_DEFAULTS: dict[str, Any] = {
    "exporter": address_to_bytes("192.0.2.1"),
    "observation_domain": 0,
    "src_port": 1234,
    "dst_port": 443,
    "protocol": 6,
    "tcp_flags": 0,
    "tos": 0,
    "bytes": 100,
    "packets": 1,
    "input_if": 1,
    "output_if": 2,
    "src_as": 0,
    "dst_as": 0,
    "next_hop": None,
    "vlan": 0,
    "sampling_interval": 1,
    "direction": None,
    "source_format": "netflow_v9",
}


def flows(rows: list[dict[str, Any]]) -> pa.Table:
    """FLOW_SCHEMA table; rows give ``src``/``dst`` as text, ``start``/``end`` in us."""
    out: dict[str, list[Any]] = {f.name: [] for f in FLOW_SCHEMA}
    for r in rows:
        start = r.get("start", T0_US)
        rec = dict(_DEFAULTS)
        rec.update({k: v for k, v in r.items() if k in _DEFAULTS})
        rec["src_addr"] = address_to_bytes(r["src"])
        rec["dst_addr"] = address_to_bytes(r["dst"])
        rec["flow_start"] = start
        rec["flow_end"] = r.get("end", start)
        for name in out:
            out[name].append(rec.get(name))  # a column without a default: null
    arrays = []
    for f in FLOW_SCHEMA:
        if pa.types.is_timestamp(f.type):
            arrays.append(pa.array(out[f.name], pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(out[f.name], f.type))
    return pa.table(arrays, schema=FLOW_SCHEMA)


def subscriptions(rows: list[tuple[int, str, int | None, int | None]]) -> pa.Table:
    """(subscription_id, CIDR, active_from_us or None = T0-1y, active_to_us or None)."""
    start_default = T0_US - 365 * 24 * HOUR_US
    ts = SUBSCRIPTION_SCHEMA.field("active_from").type
    return pa.table(
        [
            pa.array([r[0] for r in rows], pa.int64()),
            pa.array([r[0] * 10 for r in rows], pa.int64()),
            pa.array(["ip"] * len(rows)),
            pa.array([r[1] for r in rows]),
            pa.array(["data"] * len(rows)),
            pa.array([start_default if r[2] is None else r[2] for r in rows]).cast(ts),
            pa.array([r[3] for r in rows], pa.int64()).cast(ts),
        ],
        schema=SUBSCRIPTION_SCHEMA,
    )


# A small universe so random addresses often fall in random blocks (nesting included).
_V4_BASE = int(ipaddress.IPv4Address("10.0.0.0"))
_V6_BASE = int(ipaddress.IPv6Address("2001:db8::"))


@st.composite
def block(draw: st.DrawFn) -> str:
    """A random CIDR block inside 10.0.0.0/20 or 2001:db8::/116 (nesting is likely)."""
    if draw(st.booleans()):
        plen = draw(st.integers(20, 32))
        addr = _V4_BASE + (draw(st.integers(0, (1 << 12) - 1)) >> (32 - plen) << (32 - plen))
        return f"{ipaddress.IPv4Address(addr)}/{plen}"
    plen = draw(st.integers(116, 128))
    addr = _V6_BASE + (draw(st.integers(0, (1 << 12) - 1)) >> (128 - plen) << (128 - plen))
    return f"{ipaddress.IPv6Address(addr)}/{plen}"


@st.composite
def address(draw: st.DrawFn) -> str:
    """An address in the same universe, or occasionally outside it."""
    kind = draw(st.integers(0, 4))
    off = draw(st.integers(0, (1 << 12) - 1))
    if kind <= 1:
        return str(ipaddress.IPv4Address(_V4_BASE + off))
    if kind <= 3:
        return str(ipaddress.IPv6Address(_V6_BASE + off))
    return draw(st.sampled_from(["8.8.8.8", "2001:4860::8888", "::1", "0.0.0.0"]))


def contains(cidr: str, addr: str) -> bool:
    """Reference: is ``addr`` in block ``cidr`` (IPv4 only in IPv4 blocks, v6 in v6)."""
    net = ipaddress.ip_network(cidr)
    ip = ipaddress.ip_address(addr)
    return ip.version == net.version and ip in net

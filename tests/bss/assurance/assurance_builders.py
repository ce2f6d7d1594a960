"""Builders shared by the assurance tests: customers with IP subscriptions, synthetic flows."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa

from bss.catalog import add_offering, add_specification
from bss.customers import create_account, create_customer, set_tax_rate
from bss.orders import OrderItem, create_order, process_order
from collectors.addresses import address_to_bytes
from collectors.schemas import FLOW_SCHEMA

START = datetime(2026, 1, 1, tzinfo=UTC)


def customers_with_ip_blocks(conn: duckdb.DuckDBPyConnection, blocks: list[str]) -> list[int]:
    """One customer, account and product per IP block; returns the product ids in order."""
    set_tax_rate(conn, "DE", "VAT", "0.19")
    add_specification(conn, "access", "Internet access")
    add_offering(conn, "fibre", "access", "Fibre", valid_from=START)
    products = []
    for n, block in enumerate(blocks, 1):
        create_customer(conn, f"C{n}", f"Customer {n}")
        create_account(
            conn, f"A{n}", f"C{n}", f"Account {n}", currency="EUR", tax_jurisdiction="DE"
        )
        order = create_order(
            conn, f"O{n}", f"A{n}", [OrderItem("add", "fibre", service_ids=(f"ip:{block}",))],
            requested_start=START,
        )  # fmt: skip
        process_order(conn, order.id)
        products.append(conn.execute("SELECT max(id) FROM product").fetchone()[0])  # type: ignore[index]
    return products


def flow_table(
    start_us: np.ndarray,
    src: list[str] | str,
    dst: list[str] | str,
    nbytes: np.ndarray,
    exporter: list[str] | str = "192.0.2.1",
    *,
    dst_port: np.ndarray | int = 443,
    tcp_flags: np.ndarray | int = 0x18,
    protocol: int = 6,
    input_if: int = 1,
) -> pa.Table:
    """A FLOW_SCHEMA table built column by column (vectorised: weeks of flows are cheap)."""
    n = int(start_us.shape[0])

    def addr(v: list[str] | str) -> pa.Array:
        vals = [v] * n if isinstance(v, str) else v
        cache = {s: address_to_bytes(s) for s in set(vals)}
        return pa.array([cache[s] for s in vals], pa.binary(16))

    def full(v: np.ndarray | int, t: pa.DataType) -> pa.Array:
        return pa.array(np.broadcast_to(np.asarray(v), (n,)).copy(), t).cast(t)

    ts = pa.array(start_us.astype(np.int64)).cast(pa.timestamp("us", tz="UTC"))
    cols = {
        "exporter": addr(exporter),
        "observation_domain": full(0, pa.uint32()),
        "flow_start": ts,
        "flow_end": ts,
        "src_addr": addr(src),
        "dst_addr": addr(dst),
        "src_port": full(40000, pa.uint16()),
        "dst_port": full(dst_port, pa.uint16()),
        "protocol": full(protocol, pa.uint8()),
        "tcp_flags": full(tcp_flags, pa.uint16()),
        "tos": full(0, pa.uint8()),
        "bytes": full(nbytes, pa.uint64()),
        "packets": full(np.maximum(np.asarray(nbytes) // 1000, 1), pa.uint64()),
        "input_if": full(input_if, pa.uint32()),
        "output_if": full(2, pa.uint32()),
        "src_as": full(0, pa.uint32()),
        "dst_as": full(0, pa.uint32()),
        "next_hop": pa.nulls(n, pa.binary(16)),
        "vlan": full(0, pa.uint16()),
        "sampling_interval": full(1, pa.uint32()),
        "direction": pa.nulls(n, pa.uint8()),
        "source_format": pa.array(["ipfix"] * n, pa.string()),
    }
    # nullable columns not set here (MPLS, enrichment) are null
    return pa.table(
        [cols.get(f.name, pa.nulls(n, f.type)) for f in FLOW_SCHEMA], schema=FLOW_SCHEMA
    )

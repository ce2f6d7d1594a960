"""nfdump filter expressions compiled to predicates over flow columns.

    f = compile_filter("proto tcp and dst port 443 and not src net 10.0.0.0/8")
    flows.filter(f.arrow)                       # an Arrow table or batch
    pads.dataset(...).to_table(filter=f.arrow)  # pushed down: row groups skipped by stats
    polars_frame.filter(f.polars)               # a polars (lazy) frame: pushed down too

One tree (:mod:`rating_engine.traffic.filter_syntax`) is compiled to two equal
predicates: an Arrow compute expression (Arrow tables, ``pyarrow.dataset`` scans, where
the Parquet row-group statistics skip what cannot match) and a polars expression (the
lazy scans behind ``query stats`` and ``query list``, which push it into the Parquet
reader the same way). Addresses compare as their 16 canonical bytes, so a network is a
byte range; a missing address (exporter, next hop) matches no address test. Counters
are compared as stored (``bytes`` as exported, not renormalised by sampling), as nfdump
compares its records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from rating_engine.errors import FilterError
from rating_engine.traffic.filter_syntax import (
    AddressIn,
    And,
    Compare,
    Const,
    FlagsAll,
    InSet,
    Node,
    Not,
    Or,
    parse_filter,
    render,
)

__all__ = [
    "FlowFilter",
    "address_u128",
    "combined_columns",
    "compile_filter",
    "filter_columns",
    "flow_value",
]

_ADDR = pa.binary(16)
_V4_LOW = b"\x00" * 10 + b"\xff\xff" + b"\x00" * 4
_V4_HIGH = b"\x00" * 10 + b"\xff" * 6
_ICMP = (1, 58)
#: Columns read for each derived value.
_DERIVED = {
    "duration": ("flow_start", "flow_end"),
    "pps": ("flow_start", "flow_end", "packets"),
    "bps": ("flow_start", "flow_end", "bytes"),
    "bpp": ("bytes", "packets"),
    "icmp_type": ("protocol", "dst_port"),
    "icmp_code": ("protocol", "dst_port"),
    "ip_version": ("src_addr",),
}


def filter_columns(node: Node) -> tuple[str, ...]:
    """``FLOW_SCHEMA`` columns the expression reads, in first-use order."""
    cols: list[str] = []

    def walk(n: Node) -> None:
        if isinstance(n, Compare | InSet | AddressIn):
            cols.extend(_DERIVED.get(n.column, (n.column,)))
        elif isinstance(n, FlagsAll):
            cols.extend(("protocol", "tcp_flags"))
        elif isinstance(n, Not):
            walk(n.operand)
        elif isinstance(n, And | Or):
            for o in n.operands:
                walk(o)

    walk(node)
    return tuple(dict.fromkeys(cols))


def _simplify(node: Node) -> Node:
    """Fold constants (``any``, ``flows > 1``) so a scan is not asked to test them."""
    if isinstance(node, Not):
        inner = _simplify(node.operand)
        return Const(not inner.value) if isinstance(inner, Const) else Not(inner)
    if isinstance(node, And | Or):
        is_and = isinstance(node, And)
        kept: list[Node] = []
        for part in (_simplify(o) for o in node.operands):
            if isinstance(part, Const):
                if part.value != is_and:  # False in an and, True in an or: decided
                    return Const(part.value)
                continue
            kept.append(part)
        if not kept:
            return Const(is_and)
        return kept[0] if len(kept) == 1 else type(node)(tuple(kept))
    return node


# -- Arrow ------------------------------------------------------------------------------
def _arrow_cmp(left: Any, op: str, value: Any) -> pc.Expression:
    ops: dict[str, Callable[[Any, Any], pc.Expression]] = {
        "==": pc.equal, "<": pc.less, ">": pc.greater, "<=": pc.less_equal,
        ">=": pc.greater_equal,
    }  # fmt: skip
    return ops[op](left, value)


def _arrow_duration_ms() -> pc.Expression:
    us = pc.subtract(pc.field("flow_end").cast(pa.int64()), pc.field("flow_start").cast(pa.int64()))
    return pc.divide(us, 1000)


def _arrow_value(column: str) -> pc.Expression:
    if column == "duration":
        return _arrow_duration_ms()
    if column in ("pps", "bps"):
        dur = _arrow_duration_ms()
        count = pc.field("packets" if column == "pps" else "bytes")
        scaled = pc.multiply(count, pa.scalar(1000 if column == "pps" else 8000, pa.uint64()))
        per = pc.divide(scaled, pc.max_element_wise(dur, 1).cast(pa.uint64()))
        return pc.if_else(pc.greater(dur, 0), per, pa.scalar(0, pa.uint64()))
    if column == "bpp":
        packets = pc.field("packets")
        per = pc.divide(pc.field("bytes"), pc.max_element_wise(packets, pa.scalar(1, pa.uint64())))
        return pc.if_else(pc.greater(packets, 0), per, pa.scalar(0, pa.uint64()))
    if column == "icmp_type":
        return pc.shift_right(pc.field("dst_port"), pa.scalar(8, pa.uint16()))
    if column == "icmp_code":
        return pc.bit_wise_and(pc.field("dst_port"), pa.scalar(255, pa.uint16()))
    return pc.field(column)


def _arrow_v4() -> pc.Expression:
    src = pc.field("src_addr")
    return pc.greater_equal(src, pa.scalar(_V4_LOW, _ADDR)) & pc.less_equal(
        src, pa.scalar(_V4_HIGH, _ADDR)
    )


def _arrow(node: Node) -> pc.Expression:
    if isinstance(node, Const):
        return pc.scalar(node.value)
    if isinstance(node, Compare):
        if node.column == "ip_version":
            v4 = _arrow_v4()
            return v4 if node.value == 4 else ~v4
        test = _arrow_cmp(_arrow_value(node.column), node.op, node.value)
        if node.column in ("icmp_type", "icmp_code"):
            test = pc.field("protocol").isin(list(_ICMP)) & test
        return test
    if isinstance(node, InSet):
        return pc.field(node.column).isin(list(node.values))
    if isinstance(node, FlagsAll):
        flags = pc.bit_wise_and(pc.field("tcp_flags"), pa.scalar(node.mask, pa.uint16()))
        return pc.equal(pc.field("protocol"), 6) & pc.equal(flags, node.mask)
    if isinstance(node, AddressIn):
        col = pc.field(node.column)
        hosts = [lo for lo, hi in node.ranges if lo == hi]
        parts: list[pc.Expression] = []
        if len(hosts) == 1:
            parts.append(pc.equal(col, pa.scalar(hosts[0], _ADDR)))
        elif hosts:
            parts.append(col.isin(pa.array(hosts, _ADDR)))
        for lo, hi in node.ranges:
            if lo != hi:
                parts.append(pc.greater_equal(col, pa.scalar(lo, _ADDR))
                             & pc.less_equal(col, pa.scalar(hi, _ADDR)))  # fmt: skip
        test = parts[0]
        for p in parts[1:]:
            test = test | p
        # a missing address (null) is no address: false, and "not" of it true
        return pc.coalesce(test, pc.scalar(False))
    if isinstance(node, Not):
        return ~_arrow(node.operand)
    out = _arrow(node.operands[0])
    for o in node.operands[1:]:
        out = (out & _arrow(o)) if isinstance(node, And) else (out | _arrow(o))
    return out


# -- polars -----------------------------------------------------------------------------
def address_u128(column: str) -> pl.Expr:
    """A 16-byte address column as one unsigned 128-bit integer (compares like the bytes;
    polars compares and groups these faster than binary)."""
    return pl.col(column).bin.reinterpret(dtype=pl.UInt128, endianness="big")


def _u128(raw: bytes) -> pl.Expr:
    return pl.lit(int.from_bytes(raw, "big"), dtype=pl.UInt128)


def _polars_duration_ms() -> pl.Expr:
    return (pl.col("flow_end") - pl.col("flow_start")).dt.total_microseconds() // 1000


def flow_value(column: str) -> pl.Expr:
    """A flow column or a per-flow derived value (duration ms, pps, bps, bpp, ICMP type
    or code) as a polars expression, in nfdump's integer arithmetic."""
    if column == "duration":
        return _polars_duration_ms()
    if column in ("pps", "bps"):
        dur = _polars_duration_ms()
        count = pl.col("packets" if column == "pps" else "bytes")
        per = count * (1000 if column == "pps" else 8000) // dur.clip(1).cast(pl.UInt64)
        return pl.when(dur > 0).then(per).otherwise(0)
    if column == "bpp":
        packets = pl.col("packets")
        return pl.when(packets > 0).then(pl.col("bytes") // packets.clip(1)).otherwise(0)
    if column == "icmp_type":
        return pl.col("dst_port") // 256
    if column == "icmp_code":
        return pl.col("dst_port") % 256
    return pl.col(column)


def _polars_cmp(left: pl.Expr, op: str, value: int) -> pl.Expr:
    if op == "==":
        return left == value
    if op == "<":
        return left < value
    if op == ">":
        return left > value
    if op == "<=":
        return left <= value
    return left >= value


def _polars(node: Node) -> pl.Expr:
    if isinstance(node, Const):
        return pl.lit(node.value)
    if isinstance(node, Compare):
        if node.column == "ip_version":
            v4 = address_u128("src_addr").is_between(_u128(_V4_LOW), _u128(_V4_HIGH))
            return v4 if node.value == 4 else ~v4
        test = _polars_cmp(flow_value(node.column), node.op, node.value)
        if node.column in ("icmp_type", "icmp_code"):
            test = pl.col("protocol").is_in(list(_ICMP)) & test
        return test
    if isinstance(node, InSet):
        return pl.col(node.column).is_in(list(node.values))
    if isinstance(node, FlagsAll):
        return (pl.col("protocol") == 6) & ((pl.col("tcp_flags") & node.mask) == node.mask)
    if isinstance(node, AddressIn):
        col = address_u128(node.column)
        hosts = [lo for lo, hi in node.ranges if lo == hi]
        parts: list[pl.Expr] = []
        if len(hosts) == 1:
            parts.append(col == _u128(hosts[0]))
        elif hosts:
            values = [int.from_bytes(h, "big") for h in hosts]
            parts.append(col.is_in(pl.Series(values, dtype=pl.UInt128).implode()))
        parts += [col.is_between(_u128(lo), _u128(hi)) for lo, hi in node.ranges if lo != hi]
        test = parts[0]
        for p in parts[1:]:
            test = test | p
        return test.fill_null(False)
    if isinstance(node, Not):
        return ~_polars(node.operand)
    out = _polars(node.operands[0])
    for o in node.operands[1:]:
        out = (out & _polars(o)) if isinstance(node, And) else (out | _polars(o))
    return out


@dataclass(frozen=True)
class FlowFilter:
    """A compiled filter: ``arrow`` and ``polars`` predicates, the ``columns`` they read."""

    text: str
    tree: Node
    columns: tuple[str, ...] = field(init=False)
    arrow: pc.Expression = field(init=False, repr=False, compare=False)
    polars: pl.Expr = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tree = _simplify(self.tree)
        object.__setattr__(self, "tree", tree)
        object.__setattr__(self, "columns", filter_columns(tree))
        object.__setattr__(self, "arrow", _arrow(tree))
        object.__setattr__(self, "polars", _polars(tree))

    @property
    def matches_all(self) -> bool:
        """True for an empty filter or ``any``: nothing to evaluate."""
        return self.tree == Const(True)

    def apply(self, flows: pa.Table | pa.RecordBatch) -> pa.Table:
        """The flows (any table with the columns read) that match, as a table."""
        table = flows if isinstance(flows, pa.Table) else pa.Table.from_batches([flows])
        missing = [c for c in self.columns if c not in table.schema.names]
        if missing:
            raise FilterError(f"filter {self.text!r}: the flows lack {', '.join(missing)}")
        return table if self.matches_all else table.filter(self.arrow)

    def __str__(self) -> str:
        return render(self.tree)


def compile_filter(expression: str | FlowFilter | None) -> FlowFilter | None:
    """Parse and compile an nfdump filter (``None`` or blank: no filter)."""
    if expression is None or isinstance(expression, FlowFilter):
        return expression
    if not isinstance(expression, str):
        raise FilterError(f"filter {expression!r}: expected text")
    if not expression.strip():
        return None
    return FlowFilter(expression, parse_filter(expression))


def combined_columns(*groups: Sequence[str]) -> list[str]:
    """Union of column lists in first-seen order (a scan reads each once)."""
    return list(dict.fromkeys(c for g in groups for c in g))

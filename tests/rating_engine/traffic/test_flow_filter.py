"""nfdump filter expressions: parsing, errors with positions, and the two compiled predicates
(Arrow, polars) against a row-by-row reference of nfdump's semantics."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.schemas import FLOW_SCHEMA
from rating_engine.errors import FilterError
from rating_engine.traffic import flow_query
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
from rating_engine.traffic.flow_filter import compile_filter
from rating_engine.traffic.flow_query import scan_flows

V4 = b"\x00" * 10 + b"\xff\xff"
HOSTS = ["10.0.0.1", "10.0.1.7", "192.0.2.9", "2001:db8::1", "2001:db8:1::5", "fe80::1"]


def addr(text: str) -> bytes:
    ip = ipaddress.ip_address(text)
    return V4 + ip.packed if ip.version == 4 else ip.packed


def net(text: str) -> tuple[bytes, bytes]:
    n = ipaddress.ip_network(text)
    lo, hi = n.network_address.packed, n.broadcast_address.packed
    return (V4 + lo, V4 + hi) if n.version == 4 else (lo, hi)


# -- the reference: one flow (a dict) at a time, nfdump's arithmetic --------------------
def value(row: dict[str, Any], column: str) -> int:
    dur = (row["flow_end"] - row["flow_start"]) // 1000
    if column == "duration":
        return int(dur)
    if column == "pps":
        return row["packets"] * 1000 // dur if dur > 0 else 0
    if column == "bps":
        return row["bytes"] * 8000 // dur if dur > 0 else 0
    if column == "bpp":
        return row["bytes"] // row["packets"] if row["packets"] else 0
    if column == "icmp_type":
        return int(row["dst_port"] >> 8)
    if column == "icmp_code":
        return int(row["dst_port"] & 255)
    if column == "ip_version":
        return 4 if row["src_addr"][:12] == V4 else 6
    return int(row[column])


def holds(a: int, op: str, b: int) -> bool:
    return {"==": a == b, "<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


def reference(node: Node, row: dict[str, Any]) -> bool:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Compare):
        ok = holds(value(row, node.column), node.op, node.value)
        if node.column in ("icmp_type", "icmp_code"):
            ok = ok and row["protocol"] in (1, 58)
        return ok
    if isinstance(node, InSet):
        return row[node.column] in node.values
    if isinstance(node, FlagsAll):
        return row["protocol"] == 6 and row["tcp_flags"] & node.mask == node.mask
    if isinstance(node, AddressIn):
        v = row[node.column]
        return v is not None and any(lo <= v <= hi for lo, hi in node.ranges)
    if isinstance(node, Not):
        return not reference(node.operand, row)
    if isinstance(node, And):
        return all(reference(o, row) for o in node.operands)
    return any(reference(o, row) for o in node.operands)


def flows_table(rows: list[dict[str, Any]]) -> pa.Table:
    cols = {f.name: [r.get(f.name) for r in rows] for f in FLOW_SCHEMA}
    cols["observation_domain"] = [0] * len(rows)
    cols["source_format"] = ["ipfix"] * len(rows)
    for name in ("flow_start", "flow_end"):
        cols[name] = [r[name] for r in rows]
    arrays = []
    for f in FLOW_SCHEMA:
        data = cols[f.name]
        if f.name in ("flow_start", "flow_end"):
            arrays.append(pa.array(data, pa.int64()).cast(f.type))
        elif data and data[0] is None and not f.nullable:
            arrays.append(pa.array([0] * len(rows), f.type))
        else:
            arrays.append(pa.array(data, f.type))
    return pa.table(arrays, schema=FLOW_SCHEMA)


row_strategy = st.fixed_dictionaries(
    {
        "src_addr": st.sampled_from(HOSTS).map(addr),
        "dst_addr": st.sampled_from(HOSTS).map(addr),
        "next_hop": st.one_of(st.none(), st.sampled_from(HOSTS[:2]).map(addr)),
        "exporter": st.one_of(st.none(), st.sampled_from(HOSTS[2:4]).map(addr)),
        "src_port": st.sampled_from([0, 53, 80, 443, 40000]),
        "dst_port": st.sampled_from([0, 53, 443, 2048, 33024]),
        "protocol": st.sampled_from([1, 6, 17, 58]),
        "tcp_flags": st.sampled_from([0, 2, 16, 18, 27, 194]),
        "tos": st.sampled_from([0, 4, 32]),
        "bytes": st.sampled_from([0, 40, 999, 1000, 1001, 10**6]),
        "packets": st.sampled_from([0, 1, 10, 1000]),
        "input_if": st.sampled_from([0, 1, 3]),
        "output_if": st.sampled_from([0, 2, 3]),
        "src_as": st.sampled_from([0, 64500, 64501]),
        "dst_as": st.sampled_from([0, 64500]),
        "vlan": st.sampled_from([0, 20]),
        "flow_start": st.just(1_790_000_000_000_000),
        "flow_end": st.sampled_from([0, 999, 1000, 1500, 5_000_000]).map(
            lambda d: 1_790_000_000_000_000 + d
        ),
    }
)

OPS = st.sampled_from(["==", "<", ">", "<=", ">="])
leaf = st.one_of(
    st.builds(Compare, st.sampled_from(["src_port", "dst_port"]), OPS,
              st.sampled_from([0, 53, 443, 1024])),
    st.builds(Compare, st.sampled_from(["bytes", "packets", "duration", "pps", "bps", "bpp"]),
              OPS, st.sampled_from([0, 1, 10, 999, 1000, 1001, 10**6])),
    st.builds(Compare, st.just("protocol"), st.just("=="), st.sampled_from([1, 6, 17, 58])),
    st.builds(Compare, st.just("tos"), OPS, st.sampled_from([0, 4, 32])),
    st.builds(Compare, st.sampled_from(["src_as", "dst_as"]), OPS, st.sampled_from([0, 64500])),
    st.builds(Compare, st.sampled_from(["input_if", "output_if", "vlan", "icmp_type",
                                        "icmp_code"]), st.just("=="),
              st.sampled_from([0, 3, 8, 20, 129])),
    st.builds(Compare, st.just("ip_version"), st.just("=="), st.sampled_from([4, 6])),
    st.builds(InSet, st.sampled_from(["src_port", "dst_port", "src_as"]),
              st.lists(st.sampled_from([53, 443, 64500]), min_size=1, max_size=3, unique=True)
              .map(lambda v: tuple(sorted(v)))),
    st.builds(FlagsAll, st.sampled_from([1, 2, 16, 18, 63, 192])),
    st.builds(AddressIn, st.sampled_from(["src_addr", "dst_addr", "next_hop", "exporter"]),
              st.lists(st.one_of(st.sampled_from(HOSTS).map(lambda h: (addr(h), addr(h))),
                                 st.sampled_from(["10.0.0.0/8", "10.0.0.0/24", "2001:db8::/32",
                                                  "2001:db8::/64"]).map(net)),
                       min_size=1, max_size=3, unique=True).map(lambda r: tuple(sorted(r)))),
    st.builds(Const, st.booleans()),
)  # fmt: skip
trees = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=8,
)


def masks(node: Node, table: pa.Table) -> tuple[list[bool], list[bool]]:
    from rating_engine.traffic.flow_filter import FlowFilter

    f = FlowFilter(render(node), node)
    arrow = table.filter(f.arrow).column("observation_domain")
    marked = table.set_column(1, "observation_domain", pa.array(range(table.num_rows), pa.uint32()))
    arrow_ids = marked.filter(f.arrow).column("observation_domain").to_pylist()
    frame = pl.from_arrow(marked)
    assert isinstance(frame, pl.DataFrame)
    polars_ids = frame.filter(f.polars)["observation_domain"].to_list()
    n = table.num_rows
    assert len(arrow) == len(arrow_ids)
    return [i in set(arrow_ids) for i in range(n)], [i in set(polars_ids) for i in range(n)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, rows=st.lists(row_strategy, min_size=1, max_size=25))
def test_compiled_filters_equal_the_reference(tree: Node, rows: list[dict[str, Any]]) -> None:
    table = flows_table(rows)
    expected = [reference(tree, r) for r in rows]
    by_arrow, by_polars = masks(tree, table)
    assert by_arrow == expected
    assert by_polars == expected
    # the rendered text parses back to an expression that selects the same flows
    again = parse_filter(render(tree))
    assert [reference(again, r) for r in rows] == expected


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("proto tcp and dst port 443", And((Compare("protocol", "==", 6),
                                            Compare("dst_port", "==", 443)))),
        ("port 53", Or((Compare("src_port", "==", 53), Compare("dst_port", "==", 53)))),
        ("src and dst port > 1023", And((Compare("src_port", ">", 1023),
                                         Compare("dst_port", ">", 1023)))),
        ("dst port in [ 443, 80 80 ]", InSet("dst_port", (80, 443))),
        ("src net 10.0.0.0/8", AddressIn("src_addr", (net("10.0.0.0/8"),))),
        ("dst net 10.1.0.0 255.255.0.0", AddressIn("dst_addr", (net("10.1.0.0/16"),))),
        ("net 2001:db8::/32", Or((AddressIn("src_addr", (net("2001:db8::/32"),)),
                                  AddressIn("dst_addr", (net("2001:db8::/32"),))))),
        ("host 192.0.2.9", Or((AddressIn("src_addr", ((addr("192.0.2.9"),) * 2,)),
                               AddressIn("dst_addr", ((addr("192.0.2.9"),) * 2,))))),
        ("bytes > 1M", Compare("bytes", ">", 10**6)),
        ("packets ge 10k", Compare("packets", ">=", 10_000)),
        ("in bytes < 0x10", Compare("bytes", "<", 16)),
        ("flags SA", FlagsAll(18)),
        ("flags X", FlagsAll(63)),
        ("in if 3", Compare("input_if", "==", 3)),
        ("out if 4", Compare("output_if", "==", 4)),
        ("if 5", Or((Compare("input_if", "==", 5), Compare("output_if", "==", 5)))),
        ("vlan 20", Compare("vlan", "==", 20)),
        ("next ip 192.0.2.1", AddressIn("next_hop", ((addr("192.0.2.1"),) * 2,))),
        ("src as 64500", Compare("src_as", "==", 64500)),
        ("as in [64500 64501]", Or((InSet("src_as", (64500, 64501)),
                                    InSet("dst_as", (64500, 64501))))),
        ("not proto udp || !proto 1", Or((Not(Compare("protocol", "==", 17)),
                                          Not(Compare("protocol", "==", 1))))),
        ("proto tcp or proto udp and port 53", Or((
            Compare("protocol", "==", 6),
            And((Compare("protocol", "==", 17),
                 Or((Compare("src_port", "==", 53), Compare("dst_port", "==", 53))))))),
         ),
        ("(proto tcp or proto udp) && port 53  # comment", And((
            Or((Compare("protocol", "==", 6), Compare("protocol", "==", 17))),
            Or((Compare("src_port", "==", 53), Compare("dst_port", "==", 53)))))),
        ("flows > 1", Const(False)),
        ("", Const(True)),
        ("any", Const(True)),
        ("inet6", Compare("ip_version", "==", 6)),
        ("icmp-type 8", Compare("icmp_type", "==", 8)),
    ],
)  # fmt: skip
def test_parse(text: str, tree: Node) -> None:
    assert parse_filter(text) == tree


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("proto tcp and dst prot 443", 18, "expected ip, net, port"),
        ("port 70000", 5, "out of range"),
        ("src ip example.com", 7, "host names are not looked up"),
        ("net 10.0.0.0", 12, "prefix length"),
        ("net 10.0.0.0/33", 13, "1..32"),
        ("(proto tcp", 10, "expected ')'"),
        ("dst vlan 3", 0, "one vlan"),
        ("out bytes > 3", 0, "unidirectional"),
        ("flags Q", 6, "FSRPAUEC"),
        ("proto tcp port 80", 10, "'and', 'or' or the end"),
        ("proto tcpx", 6, "protocol name"),
        ("ip in []", 7, "IP address"),
        ("bytes > 1Q", 8, "number"),
        ("proto tcp ; x", 10, "unexpected character"),
        ("src or src port 3", 7, "'src and dst'"),
    ],
)
def test_errors_show_the_position(text: str, position: int, words: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(text)
    assert info.value.position == position
    assert words in str(info.value)
    assert str(info.value).endswith("\n  " + " " * position + "^")
    assert info.value.details == {"filter": text, "position": position}


def test_blank_filter_is_none_and_apply_checks_columns() -> None:
    assert compile_filter("  ") is None
    f = compile_filter("dst port 443")
    assert f is not None
    assert f.columns == ("dst_port",)
    with pytest.raises(FilterError, match="lack dst_port"):
        f.apply(pa.table({"src_port": pa.array([1], pa.uint16())}))


def test_scan_pushes_the_filter_down_to_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row groups whose statistics exclude a match are never read."""
    base = {"src_addr": addr("10.0.0.1"), "dst_addr": addr("192.0.2.9"), "protocol": 6,
            "tcp_flags": 0, "tos": 0, "bytes": 100, "packets": 1, "input_if": 0,
            "output_if": 0, "src_as": 0, "dst_as": 0, "vlan": 0, "next_hop": None,
            "exporter": None, "flow_start": 1_790_000_000_000_000,
            "flow_end": 1_790_000_000_000_000, "src_port": 1000}  # fmt: skip
    rows = [{**base, "dst_port": 80}] * 50 + [{**base, "dst_port": 443}] * 50
    pq.write_table(flows_table(rows), tmp_path / "f.parquet", row_group_size=50)
    reads: list[int] = []
    original = pq.ParquetFile.read_row_group

    def counting(self: pq.ParquetFile, i: int, *args: Any, **kwargs: Any) -> pa.Table:
        reads.append(i)
        return original(self, i, *args, **kwargs)

    monkeypatch.setattr(flow_query.pq.ParquetFile, "read_row_group", counting)
    f = compile_filter("dst port 443")
    got = pa.Table.from_batches(list(scan_flows(tmp_path / "f.parquet", ["dst_port"], None, f)))
    assert got.column("dst_port").to_pylist() == [443] * 50
    assert reads == [1]
    reads.clear()
    everything = list(scan_flows(tmp_path / "f.parquet", ["dst_port"]))
    assert sum(b.num_rows for b in everything) == 100
    assert sorted(reads) == [0, 1]  # two row groups are decoded at once

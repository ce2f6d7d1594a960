"""``render_flows`` (bss.analyst.flow_formats) against a row-by-row Python rendering of
nfdump's output formats: random flows with IPv4, IPv6 and missing addresses, ICMP
ports, volumes past a million, zero and negative durations."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from bss.analyst.flow_formats import FORMATS, render_flows
from collectors.schemas import FLOW_SCHEMA
from rating_engine.traffic.filter_syntax import PROTOCOL_NAMES

V4 = b"\x00" * 10 + b"\xff\xff"
addresses = st.one_of(
    st.binary(min_size=4, max_size=4).map(lambda b: V4 + b),
    st.binary(min_size=16, max_size=16),
    st.sampled_from(["2001:db8::1", "::1", "::ffff:0:1", "fe80::1:0:0:2"]).map(
        lambda t: ipaddress.ip_address(t).packed
    ),
)
edges = st.sampled_from([999_999, 1_000_000, 1_050_000, 1_150_000, 1_250_000, 2_250_000,
                         999_950_000])  # fmt: skip
volumes = st.one_of(st.integers(0, 999_999), st.integers(0, 10**14), edges)
flows = st.fixed_dictionaries({
    "flow_start": st.integers(-10**12, 4 * 10**15),
    "duration": st.one_of(st.just(0), st.integers(-5_000, 10**10)),
    "src_addr": addresses, "dst_addr": addresses,
    "next_hop": st.none() | addresses, "exporter": st.none() | addresses,
    "src_port": st.integers(0, 65535), "dst_port": st.integers(0, 65535),
    "protocol": st.sampled_from([0, 1, 6, 17, 47, 58, 200, 255]),
    "tcp_flags": st.integers(0, 65535), "tos": st.integers(0, 255),
    "packets": volumes, "bytes": volumes,
    "input_if": st.integers(0, 2**32 - 1), "output_if": st.integers(0, 70_000),
    "src_as": st.integers(0, 2**32 - 1), "dst_as": st.integers(0, 65535),
    "vlan": st.integers(0, 4095), "sampling_interval": st.none() | st.integers(1, 1000),
})  # fmt: skip


def table_of(rows: list[dict[str, Any]]) -> pa.Table:
    data = {f.name: [r.get(f.name) for r in rows] for f in FLOW_SCHEMA}
    data["flow_end"] = [r["flow_start"] + r["duration"] for r in rows]
    data["source_format"] = ["netflow_v5"] * len(rows)
    arrays = []
    for f in FLOW_SCHEMA:
        values = data[f.name]
        if f.name.startswith("flow_"):
            arrays.append(pa.array(values, pa.int64()).cast(f.type))
        elif all(v is None for v in values) and not f.nullable:
            arrays.append(pa.array([[]] * len(rows), f.type) if pa.types.is_list(f.type)
                          else pa.array([0] * len(rows), f.type))  # fmt: skip
        else:
            arrays.append(pa.array(values, f.type))
    return pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)


# -- the reference: one flow at a time ----------------------------------------------
def r_time(us: int, sep: str = " ") -> str:
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    return t.strftime(f"%Y-%m-%d{sep}%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def r_address(raw: bytes | None) -> str:
    if raw is None:
        return "-"
    return str(ipaddress.IPv4Address(raw[12:]) if raw[:12] == V4 else ipaddress.IPv6Address(raw))


def r_scaled(v: int, plain: bool) -> str:
    if plain or v < 1_000_000:
        return str(v)
    scale, unit = (1e12, "T") if v >= 1e12 else (1e9, "G") if v >= 1e9 else (1e6, "M")
    return f"{float(v) / scale:.1f} {unit}"  # as nfdump's printf("%5.1f") rounds


def r_port(r: dict[str, Any], side: str) -> str:
    port = r[f"{side}_port"]
    if side == "dst" and r["protocol"] in (1, 58):
        return f"{port // 256}.{port % 256}"
    return str(port)


def r_tokens(r: dict[str, Any], plain: bool) -> dict[str, str]:
    ms = max(r["duration"], 0) // 1000
    pk, by = r["packets"], r["bytes"]
    flags = r["tcp_flags"] & 255
    sa, da = r_address(r["src_addr"]), r_address(r["dst_addr"])
    return {
        "ts": r_time(r["flow_start"]), "te": r_time(r["flow_start"] + r["duration"]),
        "td": f"{ms // 1000}.{ms % 1000:03d}",
        "pr": PROTOCOL_NAMES.get(r["protocol"], str(r["protocol"])),
        "sa": sa, "da": da, "sp": r_port(r, "src"), "dp": r_port(r, "dst"),
        "sap": sa + ("." if ":" in sa else ":") + r_port(r, "src"),
        "dap": da + ("." if ":" in da else ":") + r_port(r, "dst"),
        "pkt": r_scaled(pk, plain), "byt": r_scaled(by, plain), "fl": "1",
        "flg": "".join(c if flags & (1 << (7 - k)) else "." for k, c in enumerate("CEUAPRSF")),
        "tos": str(r["tos"]), "stos": str(r["tos"]),
        "pps": r_scaled(pk * 1000 // ms if ms else 0, plain),
        "bps": r_scaled(by * 8000 // ms if ms else 0, plain),
        "bpp": str(by // pk if pk else 0),
        "sas": str(r["src_as"]), "das": str(r["dst_as"]), "in": str(r["input_if"]),
        "out": str(r["output_if"]), "nh": r_address(r["next_hop"]),
        "ra": r_address(r["exporter"]), "svln": str(r["vlan"]),
        "sr": str(r["sampling_interval"] or 0),
    }  # fmt: skip


WIDTHS = {"ts": -23, "td": 9, "pr": -5, "sap": 22, "dap": -22, "flg": -8, "tos": 3,
          "pkt": 8, "byt": 8, "pps": 8, "bps": 8, "bpp": 6, "fl": 5}  # fmt: skip
CSV = ["ts", "te", "td", "sa", "da", "sp", "dp", "pr", "flg", "stos", "pkt", "byt", "in",
       "out", "sas", "das", "nh", "svln", "ra"]  # fmt: skip


def r_line(r: dict[str, Any], fmt: str, plain: bool) -> str:
    text = r_tokens(r, plain)
    out = []
    for word in fmt.split(" "):
        if word.startswith("%"):
            w = WIDTHS[word[1:]]
            value = text[word[1:]]
            out.append(value.rjust(w) if w > 0 else value.ljust(-w))
        else:
            out.append(word)
    return " ".join(out)


def test_volumes_round_as_nfdumps_printf() -> None:
    """nfdump prints (double) bytes / 1e6 with %5.1f: 1.05 is really 1.0500000000000000444
    (up), 1.25 is exact (a tie, to even), 2.05 is really 2.0499999999999998 (down)."""
    base = {"flow_start": 0, "duration": 0, "src_addr": V4 + bytes(4), "dst_addr": V4 + bytes(4),
            "next_hop": None, "exporter": None, "src_port": 0, "dst_port": 0, "protocol": 6,
            "tcp_flags": 0, "tos": 0, "packets": 1, "input_if": 0, "output_if": 0, "src_as": 0,
            "dst_as": 0, "vlan": 0, "sampling_interval": None}  # fmt: skip
    volumes = [1_050_000, 1_250_000, 1_350_000, 2_050_000, 999_950_000, 1_000_050_000_000]
    table = table_of([{**base, "bytes": v} for v in volumes])
    got = [line.split()[-2:] for line in
           render_flows(table, "fmt:%byt", header=False).decode().splitlines()]  # fmt: skip
    assert [" ".join(g) for g in got] == ["1.1 M", "1.2 M", "1.4 M", "2.0 M", "1000.0 M",
                                          "1.0 T"]  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(st.lists(flows, min_size=1, max_size=30), st.booleans())
def test_formats_equal_the_row_by_row_rendering(rows: list[dict[str, Any]], plain: bool) -> None:
    table = table_of(rows)
    for name in ("line", "long", "extended"):
        got = render_flows(table, name, plain=plain, header=False).decode()
        assert got == "".join(r_line(r, FORMATS[name], plain) + "\n" for r in rows)
    got = render_flows(table, "csv", header=False).decode()
    assert got == "".join(",".join(r_tokens(r, True)[c] for c in CSV) + "\n" for r in rows)
    custom = render_flows(table, "fmt:%sr|%nh|%ra|%dp", header=False).decode()
    tokens = [r_tokens(r, True) for r in rows]
    assert custom.splitlines() == [f"{t['sr']:>8}|{t['nh']:>16}|{t['ra']:>16}|{t['dp']:>6}"
                                   for t in tokens]  # fmt: skip
    records = json.loads(render_flows(table, "json"))
    for r, t, rec in zip(rows, tokens, records, strict=True):
        assert rec["first"] == r_time(r["flow_start"], "T")
        assert rec["last"] == r_time(r["flow_start"] + r["duration"], "T")
        assert (rec["proto"], rec["tcp_flags"], rec["in_bytes"]) == (r["protocol"], t["flg"],
                                                                      r["bytes"])  # fmt: skip
        for side, key in (("sa", "src{}_addr"), ("da", "dst{}_addr"), ("ra", "ip{}_router")):
            assert rec[key.format(6 if ":" in t[side] else 4)] == t[side]

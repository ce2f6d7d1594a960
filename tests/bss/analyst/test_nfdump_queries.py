"""``query stats`` / ``query list`` (bss.analyst.nfdump_queries, flow_formats) and nfdump's
time window format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pytest
from test_query import T0, make_flows, write_workspace

from bss.analyst.flow_formats import render_flows
from bss.analyst.nfdump_queries import flow_stats, list_flows
from bss.analyst.query import parse_window, to_us, top_talkers
from bss.cli.main import main
from bss.errors import ValidationError
from collectors.addresses import address_to_bytes
from collectors.schemas import FLOW_SCHEMA
from collectors.workspace import WorkspacePaths


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> tuple[WorkspacePaths, pa.Table]:
    flows = make_flows(3000, seed=5)
    return write_workspace(tmp_path_factory.mktemp("nf") / "w", flows), flows


def test_nfdump_time_window() -> None:
    assert parse_window("2026/10/05.00:00:00-2026/10/05.12:00:00") == (
        to_us("2026-10-05T00:00:00"), to_us("2026-10-05T12:00:00"))  # fmt: skip
    assert parse_window("2026/10/05.06") == (to_us("2026-10-05T06:00"), 2**63 - 1)
    assert to_us("2026/1/5.7:08") == to_us("2026-01-05T07:08:00")
    for bad in ("2026/13/05", "2026/10/05-2026/10/04"):
        with pytest.raises(ValidationError):
            parse_window(bad)
    with pytest.raises(ValidationError, match="nfdump's yyyy/MM/dd"):
        to_us("yesterday")


def test_stats_percentages_and_filter(ws: tuple[WorkspacePaths, pa.Table]) -> None:
    paths, flows = ws
    tables, totals = flow_stats(paths, ["srcip/bytes", "dstport/flows"], flow_filter="proto 17",
                                n=0)  # fmt: skip
    udp = flows.filter(pa.compute.equal(flows.column("protocol"), 17))
    assert totals.flows == udp.num_rows
    by_src, by_port = tables
    assert sum(by_port.column("flows").to_pylist()) == udp.num_rows
    assert abs(sum(by_src.column("bytes_pct").to_pylist()) - 100) < 1e-6
    assert by_src.schema.metadata[b"stat"] == b"srcip/bytes"
    assert isinstance(by_src.column("src_addr")[0].as_py(), str)
    # the same numbers as the streaming top-N with the same filter
    top = top_talkers(paths, "src_ip", "bytes", 3, flow_filter="proto 17")
    assert top.column("bytes").to_pylist() == by_src.column("bytes").to_pylist()[:3]
    aggregated, _ = flow_stats(paths, [], aggregate=["srcip", "dstport"], order=["bytes"], n=2)
    assert aggregated[0].schema.names[:2] == ["src_addr", "dst_port"]


def test_bad_input_is_validation_error(ws: tuple[WorkspacePaths, pa.Table]) -> None:
    paths, _ = ws
    with pytest.raises(ValidationError, match="position 6") as info:
        flow_stats(paths, ["srcip"], flow_filter="proto tcpp")
    assert info.value.details == {"filter": "proto tcpp", "position": 6}
    with pytest.raises(ValidationError, match="unknown element"):
        flow_stats(paths, ["sourceip/bytes"])
    with pytest.raises(ValidationError, match="at least one"):
        flow_stats(paths, [])
    with pytest.raises(ValidationError, match="position"):
        top_talkers(paths, flow_filter="port")
    with pytest.raises(ValidationError, match="flow order"):
        list_flows(paths, order="up")


def test_list_window_order_limit(ws: tuple[WorkspacePaths, pa.Table]) -> None:
    paths, _flows = ws
    got = list_flows(paths, flow_filter="dst port 443", order="tstart", limit=7,
                     window=("2026/10/05.06:00", "2026/10/06.00:00"))  # fmt: skip
    starts = got.column("flow_start").cast(pa.int64()).to_pylist()
    assert starts == sorted(starts)
    assert len(starts) == 7
    assert min(starts) >= T0 + 6 * 3_600_000_000
    assert set(got.column("dst_port").to_pylist()) == {443}


def _one_flow(**over: object) -> pa.Table:
    row = {"exporter": address_to_bytes("192.0.2.254"), "observation_domain": 0,
           "flow_start": 1_791_158_400_123_000, "flow_end": 1_791_158_401_623_000,
           "src_addr": address_to_bytes("10.0.0.1"), "dst_addr": address_to_bytes("192.0.2.9"),
           "src_port": 40000, "dst_port": 443, "protocol": 6, "tcp_flags": 0x1B, "tos": 0,
           "bytes": 2_500_000, "packets": 2000, "input_if": 3, "output_if": 4, "src_as": 0,
           "dst_as": 64500, "next_hop": None, "vlan": 20, "sampling_interval": 1,
           "direction": None, "source_format": "ipfix", "mpls_labels": None}  # fmt: skip
    row.update(over)
    cols = [pa.array([row.get(f.name)], pa.int64() if f.name.startswith("flow_") else f.type)
            for f in FLOW_SCHEMA]  # fmt: skip
    return pa.table([c.cast(f.type) for c, f in zip(cols, FLOW_SCHEMA, strict=True)],
                    schema=FLOW_SCHEMA)  # fmt: skip


def test_formats() -> None:
    flows = pa.concat_tables([
        _one_flow(),
        _one_flow(src_addr=address_to_bytes("2001:db8::1"),
                  dst_addr=address_to_bytes("2001:db8::2"),
                  protocol=58, src_port=0, dst_port=128 * 256, bytes=64, packets=1,
                  flow_end=1_791_158_400_123_000, exporter=None),
    ])  # fmt: skip
    line = render_flows(flows, "line").decode().splitlines()
    assert line[0].startswith("Date first seen          Duration Proto")
    assert line[1].split() == ["2026-10-05", "00:00:00.123", "1.500", "TCP", "10.0.0.1:40000",
                               "->", "192.0.2.9:443", "2000", "2.5", "M", "1"]  # fmt: skip
    assert "2001:db8::1.0" in line[2]
    assert "2001:db8::2.128.0" in line[2]
    ext = render_flows(flows, "extended", plain=True).decode().splitlines()
    # 2000 packets in 1.5 s: 1333 pps; 2.5 MB: 13.33 Mbit/s; 1250 bytes per packet
    assert ext[1].split()[-6:] == ["2000", "2500000", "1333", "13333333", "1250", "1"]
    assert ".AP.SF" in ext[1]
    rows = list(csv.DictReader(io.StringIO(render_flows(flows, "csv").decode())))
    assert rows[0]["sa"] == "10.0.0.1"
    assert rows[0]["ibyt"] == "2500000"
    assert rows[1]["pr"] == "ICMP6"
    assert rows[0]["ra"] == "192.0.2.254"
    assert rows[1]["ra"] == "-"
    records = json.loads(render_flows(flows, "json"))
    assert records[0]["src4_addr"] == "10.0.0.1"
    assert records[1]["src6_addr"] == "2001:db8::1"
    assert records[0]["first"] == "2026-10-05T00:00:00.123"
    assert records[0]["in_bytes"] == 2500000
    custom = render_flows(flows, "fmt:%sa|%dp|%svln", header=False).decode()
    assert custom.splitlines()[0].replace(" ", "") == "10.0.0.1|443|20"
    assert render_flows(flows.slice(0, 0), "json") == b"[]\n"
    with pytest.raises(ValidationError, match="no % token"):
        render_flows(flows, "fmt:hello")
    with pytest.raises(ValidationError, match="output format"):
        render_flows(flows, "xml")


def test_cli_stats_and_list(
    ws: tuple[WorkspacePaths, pa.Table], capsys: pytest.CaptureFixture[str]
) -> None:
    paths, _ = ws
    args = ["--workspace", str(paths.root), "query"]
    with pytest.raises(SystemExit) as done:
        main([*args, "stats", "-s", "srcip/bytes", "-s", "proto/packets/flows", "-n", "2",
              "--json", "dst port 443 or dst port 80"])  # fmt: skip
    assert done.value.code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [s["stat"] for s in out["stats"]] == ["srcip/bytes", "proto/packets/flows",
                                                 "proto/packets/flows"]  # fmt: skip
    assert out["filter"] == "dst port 443 or dst port 80"
    assert len(out["stats"][0]["rows"]) == 2
    with pytest.raises(SystemExit) as done:
        main([*args, "list", "-o", "csv", "-c", "4", "-O", "tstart", "-t",
              "2026/10/05.00:00-2026/10/06.00:00", "proto", "udp"])  # fmt: skip
    assert done.value.code == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4
    assert {r["pr"] for r in rows} == {"UDP"}
    with pytest.raises(SystemExit) as done:
        main([*args, "list", "--json", "proto tcp and dst prot 443"])
    assert done.value.code == 3
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["details"]["position"] == 18
    assert "^" in error["message"]


def test_empty_workspace(tmp_path: Path) -> None:
    paths = WorkspacePaths(tmp_path / "w").ensure()
    tables, totals = flow_stats(paths, ["srcip/bytes"])
    assert tables[0].num_rows == 0
    assert totals.flows == 0
    assert list_flows(paths, flow_filter="any").num_rows == 0

"""nfcapd files written by the real nfcapd from softflowd's exports of a random capture,
read by ``ingest nfcapd`` and by ``nfdump -r``: the same flows (addresses, ports,
protocol, packets, bytes, first and last to the millisecond), for NetFlow v5, v9 and
IPFIX and for each compression nfcapd writes (none, LZO, LZ4, BZ2); ZSTD (which Debian's
nfdump 1.7.1 is built without) by recompressing nfcapd's own file; the filters of
``query`` select the same flows as nfdump's on those files; and nfdump reads the test
writer's files as the reader does.

One softflowd run feeds four nfcapd processes at once (softflowd sends every datagram to
each ``-n`` destination); every process is stopped, pass or fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from nfcapd_files import Flow, recompress, write_nfcapd

from bss.cli.main import main
from collectors.addresses import address_from_bytes
from collectors.dataset import read_dataset
from collectors.nfcapd.reader import read_nfcapd_file
from collectors.schemas import FLOW_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.traffic.flow_filter import compile_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "udp"))
from test_softflowd_nfcapd_peer import (
    free_udp_port,
    random_capture,
    run_softflowd,
    wait_bound,
)

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("softflowd", "softflowctl", "nfcapd", "nfdump")),
        reason="softflowd/nfdump not installed",
    ),
]

COMPRESSIONS = {"none": [], "lzo": ["-z"], "lz4": ["-y"], "bz2": ["-j"]}
Key = tuple[str, str, int, int, int, int, int, int, int]
FILTERS = [
    "proto tcp", "proto udp and dst port 53", "not proto icmp", "src net 10.0.0.0/16",
    "dst net 192.168.1.0/30 or src ip 10.0.1.2", "ipv6", "net 2001:db8::/32",
    "packets > 1", "bytes >= 300 and bytes < 1k", "port in [53 123 443]",
    "flags S and not flags A", "(proto tcp or proto udp) and src port > 40001",
    "dst host 192.168.1.4", "inet and not (dst port 80 or dst port 443)",
]  # fmt: skip


def nfdump_json(path: Path, flt: str = "") -> list[dict[str, object]]:
    out = subprocess.run(
        ["nfdump", "-r", str(path), "-o", "json", *([flt] if flt else [])],
        capture_output=True, check=True, timeout=60, env={**os.environ, "TZ": "UTC"}, text=True,
    ).stdout  # fmt: skip
    if "No matching flows" in out:  # nfdump 1.7.1 prints this inside the JSON array
        return []
    return list(json.loads(out)) if out.strip() else []


def _ms(text: str) -> int:
    whole, frac = text.split(".")
    secs = time.mktime(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) - time.timezone
    return int(secs) * 1000 + int(frac)


def their_keys(records: list[dict[str, object]]) -> list[Key]:
    keys = []
    for r in records:
        proto = int(r["proto"])  # type: ignore[call-overload]
        if "icmp_type" in r:
            sport, dport = 0, int(r["icmp_type"]) * 256 + int(r["icmp_code"])  # type: ignore[call-overload]
        else:
            sport, dport = int(r.get("src_port", 0)), int(r.get("dst_port", 0))  # type: ignore[call-overload]
        keys.append((str(r.get("src4_addr") or r.get("src6_addr")),
                     str(r.get("dst4_addr") or r.get("dst6_addr")), sport, dport, proto,
                     int(r["in_packets"]), int(r["in_bytes"]),  # type: ignore[call-overload]
                     _ms(str(r["first"])), _ms(str(r["last"]))))  # fmt: skip
    return sorted(keys)


def our_keys(table: pa.Table) -> list[Key]:
    keys = []
    for r in table.to_pylist():
        start, end = (round(r[c].timestamp() * 1000) for c in ("flow_start", "flow_end"))
        keys.append((str(address_from_bytes(r["src_addr"])), str(address_from_bytes(r["dst_addr"])),
                     r["src_port"], r["dst_port"], r["protocol"], r["packets"], r["bytes"], start,
                     end))  # fmt: skip
    return sorted(keys)


@pytest.fixture(scope="module", params=[5, 9, 10], ids=["v5", "v9", "ipfix"])
def nfcapd_files(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """{compression: the file nfcapd wrote} for one export version."""
    version = int(request.param)
    tmp = tmp_path_factory.mktemp(f"nfcapd-v{version}")
    pcap = tmp / "random.pcap"
    random_capture(pcap, seed=version + 20, ipv6=version != 5, n=400)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports: dict[str, int] = {}
    try:
        for name, flag in COMPRESSIONS.items():
            (tmp / name).mkdir()
            ports[name] = free_udp_port()
            procs[name] = subprocess.Popen(
                ["nfcapd", "-w", str(tmp / name), "-b", "127.0.0.1", "-p", str(ports[name]),
                 "-t", "3600", *flag],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        for name in COMPRESSIONS:
            wait_bound(ports[name], procs[name])
        run_softflowd(pcap, version, list(ports.values()), tmp, 400)
        time.sleep(0.5)  # loopback delivery
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)  # nfcapd writes its file on SIGTERM
        for proc in procs.values():
            try:
                proc.wait(30)
            finally:
                if proc.poll() is None:
                    proc.kill()
    files = {name: next((tmp / name).glob("nfcapd.2*")) for name in COMPRESSIONS}
    files["zstd"] = recompress(files["none"], tmp / "nfcapd.zstd", "zstd")
    return files


def test_same_flows_as_nfdump(nfcapd_files: dict[str, Path], tmp_path: Path) -> None:
    theirs = their_keys(nfdump_json(nfcapd_files["none"]))
    assert len(theirs) > 50
    assert sum(k[5] for k in theirs) == 400  # every packet of the capture, in some flow
    for name, path in nfcapd_files.items():
        result = read_nfcapd_file(path)
        assert result.compression == name
        assert result.rejected == {}
        assert our_keys(result.table()) == theirs, name
    # the command itself, over a folder, into a workspace
    ws = tmp_path / "w"
    folder = nfcapd_files["lz4"].parent
    with pytest.raises(SystemExit) as done:
        main(["--workspace", str(ws), "--json", "ingest", "nfcapd", str(folder)])
    assert done.value.code == 0
    table = read_dataset(WorkspacePaths(ws).flows, FLOW_SCHEMA)
    assert our_keys(table) == theirs
    assert set(table.column("exporter").to_pylist()) == {address_to_127()}


def address_to_127() -> bytes:
    return b"\x00" * 10 + b"\xff\xff" + bytes([127, 0, 0, 1])


def test_filters_select_what_nfdump_selects(nfcapd_files: dict[str, Path]) -> None:
    path = nfcapd_files["none"]
    table = read_nfcapd_file(path).table()
    for text in FILTERS:
        f = compile_filter(text)
        assert f is not None
        assert our_keys(f.apply(table)) == their_keys(nfdump_json(path, text)), text


def test_nfdump_reads_the_test_writer(tmp_path: Path) -> None:
    written = [
        Flow("10.0.0.1", "192.0.2.7", 1_790_000_000_000, 1_790_000_001_500, 3, 180, 40000, 443,
             6, 0x1B, 4, 2, 3, 64500, 65001, 20, "10.0.0.254", "192.0.2.254"),
        Flow("2001:db8::1", "2001:db8::2", 1_790_000_000_100, 1_790_000_000_100, 1, 80, 0,
             128 * 256, 58),
    ]  # fmt: skip
    for kind in ("none", "lzo", "lz4", "bz2"):
        path = write_nfcapd(tmp_path / f"nfcapd.{kind}", written, compression=kind)
        records = nfdump_json(path)
        assert len(records) == 2, kind
        first = records[0]
        assert (first["src4_addr"], first["dst_port"], first["in_bytes"], first["src_as"],
                first["dst_as"], first["src_vlan"], first["ip4_next_hop"]) == (
            "10.0.0.1", 443, 180, 64500, 65001, 20, "10.0.0.254")  # fmt: skip
        assert their_keys(records) == our_keys(read_nfcapd_file(path).table())  # fmt: skip

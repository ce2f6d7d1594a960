"""The nfcapd reader against the test writer (every compression), and damaged files: the
bad record, block or file is refused with where and why, the flows beside it kept."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nfcapd_files import Flow, write_nfcapd

from collectors.addresses import address_from_bytes
from collectors.dataset import read_dataset
from collectors.errors import IngestError
from collectors.nfcapd.ingest import expand_nfcapd_paths, ingest_nfcapd_files
from collectors.nfcapd.reader import read_nfcapd_file
from collectors.schemas import FLOW_SCHEMA, REJECT_SCHEMA
from collectors.workspace import WorkspacePaths

T0_MS = 1_790_000_000_000
V4 = ["10.0.0.1", "192.0.2.7", "203.0.113.200"]
V6 = ["2001:db8::1", "2001:db8:ffff::2", "fe80::9"]


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else str(address_from_bytes(raw))


def as_flow(row: dict[str, object]) -> Flow:
    """A read row back in the writer's terms (absent elements as the writer leaves them)."""
    ms = {k: int(row[k].timestamp() * 1000 + 0.5) for k in ("flow_start", "flow_end")}  # type: ignore[attr-defined]
    return Flow(
        _text(row["src_addr"]), _text(row["dst_addr"]), ms["flow_start"], ms["flow_end"],  # type: ignore[arg-type]
        row["packets"], row["bytes"], row["src_port"], row["dst_port"], row["protocol"],  # type: ignore[arg-type]
        row["tcp_flags"], row["tos"], row["input_if"], row["output_if"], row["src_as"] or None,  # type: ignore[arg-type]
        row["dst_as"] or None, row["vlan"] or None, _text(row["next_hop"]),  # type: ignore[arg-type]
        _text(row["exporter"]), tuple(row["mpls_labels"] or ()),  # type: ignore[arg-type]
        {"netflow_v5": 5, "netflow_v9": 9, "ipfix": 10}[row["source_format"]],  # type: ignore[index]
    )  # fmt: skip


@st.composite
def flows(draw: st.DrawFn) -> Flow:
    v6 = draw(st.booleans())
    pool = V6 if v6 else V4
    first = T0_MS + draw(st.integers(0, 10**7))
    return Flow(
        draw(st.sampled_from(pool)), draw(st.sampled_from(pool)), first,
        first + draw(st.integers(0, 10**6)), draw(st.integers(1, 2**40)),
        draw(st.integers(1, 2**50)), draw(st.integers(0, 65535)), draw(st.integers(0, 65535)),
        draw(st.sampled_from([1, 6, 17, 58])), draw(st.integers(0, 255)),
        draw(st.integers(0, 255)), draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([None, 64500, 2**32 - 1])),
        draw(st.sampled_from([None, 65001])), draw(st.sampled_from([None, 20, 4094])),
        draw(st.sampled_from([None, *pool])), draw(st.sampled_from([None, "192.0.2.254"])),
        tuple(draw(st.lists(st.integers(1, 2**20 - 1), max_size=4))),
        draw(st.sampled_from([5, 9, 10])),
    )  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    written=st.lists(flows(), min_size=0, max_size=40),
    compression=st.sampled_from(["none", "lzo", "bz2", "lz4", "zstd"]),
    per_block=st.integers(1, 17),
)
def test_reads_what_was_written(
    tmp_path_factory: pytest.TempPathFactory, written: list[Flow], compression: str,
    per_block: int,
) -> None:  # fmt: skip
    path = write_nfcapd(tmp_path_factory.mktemp("nf") / "nfcapd.x", written,
                        compression=compression, per_block=per_block)  # fmt: skip
    result = read_nfcapd_file(path)
    assert (result.compression, result.nfdump_version) == (compression, "1.7.1")
    assert result.rejected == {}
    assert result.other_records == 1  # the exporter-info record
    table = result.table()
    rows = table.to_pylist()
    # a record without a received address takes the exporter of its sysid (192.0.2.254)
    expected = [f if f.received else Flow(**{**f.__dict__, "received": "192.0.2.254"})
                for f in written]  # fmt: skip
    assert [as_flow(r) for r in rows] == expected
    assert all(r["observation_domain"] == 7 for r in rows)
    assert table.column("sampling_interval").null_count == len(rows)


def test_damaged_record_is_refused_and_neighbours_kept(tmp_path: Path) -> None:
    good = [Flow("10.0.0.1", "192.0.2.7", T0_MS + i, T0_MS + i, 1, 60 + i) for i in range(6)]
    no_flow = struct.pack("<HHHBBHBB", 11, 12, 0, 0, 0, 1, 0, 9)  # a V3 record, no elements
    cut = bytearray(write_nfcapd(tmp_path / "a", good[:1], exporter=None).read_bytes()[52:])
    struct.pack_into("<H", cut, 14, 200)  # element 1 claims 200 bytes in a 104-byte record
    path = write_nfcapd(tmp_path / "nfcapd.1", good, per_block=3,
                        raw_records={1: no_flow, 4: bytes(cut)})  # fmt: skip
    result = read_nfcapd_file(path)
    # block 0: exporter, flow 0, (no flow) ; block 1: flow 2, flow 3, (broken) ; block 2: flow 5
    kept = result.table().column("bytes").to_pylist()
    assert kept == [60, 62, 63, 65]
    assert result.rejected == {"no_generic_flow": 1, "bad_element_length": 1}
    fields = {r[2]: r[1] for r in result.rejects}
    assert fields == {"no_generic_flow": "element 1 (EXgenericFlow)",
                      "bad_element_length": "element 1"}  # fmt: skip
    messages = [r[3] for r in result.rejects]
    assert any("block 1" in m and "record 2" in m for m in messages)
    assert all(str(path) in m for m in messages)


def test_bad_block_and_truncation(tmp_path: Path) -> None:
    good = [Flow("2001:db8::1", "2001:db8::2", T0_MS, T0_MS, 2, 100 + i) for i in range(9)]
    path = write_nfcapd(tmp_path / "nfcapd.2", good, compression="lz4", per_block=4)
    data = bytearray(path.read_bytes())
    # corrupt the payload of block 1 (after the header, block 0 and block 1's header)
    size0 = struct.unpack_from("<I", data, 40 + 4)[0]
    b1 = 40 + 12 + size0
    data[b1 + 12 : b1 + 20] = b"\xff" * 8
    path.write_bytes(bytes(data))
    result = read_nfcapd_file(path)
    assert result.rejected["bad_block"] == 1
    assert result.table().column("bytes").to_pylist() == [100, 101, 102,
                                                                          107, 108]  # fmt: skip
    truncated = tmp_path / "nfcapd.3"
    truncated.write_bytes(bytes(data[: b1 + 20]))
    cut = read_nfcapd_file(truncated)
    assert cut.table().column("bytes").to_pylist() == [100, 101, 102]
    assert "truncated" in cut.rejects[-1][3]


def test_not_nfcapd_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "nfcapd.junk").write_bytes(b"hello world" * 10)
    old = tmp_path / "nfcapd.old"
    old.write_bytes(struct.pack("<HH", 0xA50C, 1) + bytes(300))
    good = write_nfcapd(tmp_path / "nfcapd.good", [Flow("10.0.0.1", "10.0.0.2", T0_MS,
                                                         T0_MS + 5, 1, 40)])  # fmt: skip
    (tmp_path / "nfcapd.current.123").write_bytes(b"")
    (tmp_path / "README").write_text("not read")
    assert expand_nfcapd_paths([tmp_path]) == sorted([good, tmp_path / "nfcapd.junk", old])
    ws = WorkspacePaths(tmp_path / "w")
    summary = ingest_nfcapd_files([tmp_path], ws)
    assert summary.flows == 1
    assert "no 0xA50C magic" in summary.refused[str(tmp_path / "nfcapd.junk")]
    assert "nfdump -r OLD -w NEW" in summary.refused[str(old)]
    with pytest.raises(IngestError, match="no nfcapd files"):
        ingest_nfcapd_files([tmp_path / "w" / "state"], ws)


def test_ingest_replaces_on_repeat_and_quarantines(tmp_path: Path) -> None:
    flows_ = [Flow("10.0.0.1", "10.0.0.2", T0_MS + i * 3_600_000, T0_MS + i * 3_600_000, 1,
                   40) for i in range(3)]  # fmt: skip
    bad = struct.pack("<HHHBBHBB", 11, 12, 0, 0, 0, 1, 0, 9)
    path = write_nfcapd(tmp_path / "nfcapd.r", flows_, raw_records={1: bad})
    ws = WorkspacePaths(tmp_path / "w")
    for _ in range(2):
        summary = ingest_nfcapd_files([path], ws)
        assert summary.flows == 2
    table = read_dataset(ws.flows, FLOW_SCHEMA)
    assert table.num_rows == 2  # the second run replaced the first
    assert str(ipaddress.ip_address(table.column("src_addr")[0].as_py()[12:])) == "10.0.0.1"
    rejects = read_dataset(ws.quarantine, REJECT_SCHEMA)
    assert rejects.num_rows == 1
    row = rejects.to_pylist()[0]
    expected = ("no_generic_flow", 2, "element 1 (EXgenericFlow)")
    assert (row["reason"], row["record_no"], row["field"]) == expected

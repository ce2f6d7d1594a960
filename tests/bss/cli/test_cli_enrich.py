"""`ingest flows` and `collect` with --asn-db / --geo-db / --interfaces: enriched columns land;
a bad database or option is one clear error at start (exit 6 / 3), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runs import run
from mmdb_files import write_asn_db, write_geo_db

from collectors.dataset import read_dataset
from collectors.flows.ingest import write_datagram_file
from collectors.netflow.export_synth import synth_v5_datagrams
from collectors.schemas import FLOW_SCHEMA


def test_ingest_flows_enriched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exports = tmp_path / "v5.dgrams"
    write_datagram_file(exports, synth_v5_datagrams(20, 30, seed=5))
    (tmp_path / "if.toml").write_text('[exporter."::"]\n1 = { name = "ge-0/0/1", speed = "1G" }\n')
    plain, rich = tmp_path / "plain", tmp_path / "rich"
    assert run(["-w", str(plain), "--json", "ingest", "flows", str(exports)], capsys)[0] == 0
    code, out, _ = run(
        [
            "-w",
            str(rich),
            "--json",
            "ingest",
            "flows",
            str(exports),
            "--asn-db",
            str(write_asn_db(tmp_path / "asn.mmdb")),
            "--geo-db",
            str(write_geo_db(tmp_path / "geo.mmdb")),
            "--interfaces",
            str(tmp_path / "if.toml"),
        ],
        capsys,
    )
    assert code == 0
    assert json.loads(out)["flows"] == 600
    before = read_dataset(plain / "flows", FLOW_SCHEMA).sort_by("bytes").to_pylist()
    after = read_dataset(rich / "flows", FLOW_SCHEMA).sort_by("bytes").to_pylist()
    assert len(before) == len(after) == 600
    for b, a in zip(before, after, strict=True):
        # synthetic sources are in 10.0.0.0/8: AS 64500 (64501 in 10.1/16), DE or FR
        if b["src_as"] == 0:
            assert a["src_as"] == (64501 if b["src_addr"][12:14] == b"\x0a\x01" else 64500)
        else:
            assert a["src_as"] == b["src_as"]
        assert a["src_country"] == ("DE" if b["src_addr"][13] < 128 else "FR")
        assert a["dst_country"] is None  # 192.168/16 is in neither database
        assert a["input_if_name"] == ("ge-0/0/1" if b["input_if"] == 1 else None)
        assert a["output_if_speed"] == (10**9 if b["output_if"] == 1 else None)
        filled = {
            "src_as",
            "src_country",
            "dst_country",
            "input_if_name",
            "input_if_speed",
            "output_if_name",
            "output_if_speed",
        }
        assert {k: v for k, v in a.items() if k not in filled} == {
            k: v for k, v in b.items() if k not in filled
        }


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--asn-db", "{tmp}/nope.mmdb"], 6, "--asn-db {tmp}/nope.mmdb: no such file"),
        (["--geo-db", "{tmp}/text.mmdb"], 6, "not a MaxMind database"),
        (["--geo-db", "{tmp}/asn.mmdb"], 6, "no record has the field country.iso_code"),
        (["--interfaces", "{tmp}/text.mmdb"], 6, "not valid TOML"),
        (["--metrics", "nowhere"], 3, "--metrics 'nowhere' is not HOST:PORT"),
    ],
)
def test_collect_refuses_bad_enrichment_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    (tmp_path / "text.mmdb").write_text("hello = \n")
    write_asn_db(tmp_path / "asn.mmdb")
    argv = ["-w", str(tmp_path / "ws"), "collect", "--listen", "127.0.0.1:0"]
    got, _, err = run(argv + [a.format(tmp=tmp_path) for a in args], capsys)
    assert got == code
    assert message.format(tmp=tmp_path) in err
    assert "Traceback" not in err


def test_enrichment_options_need_listen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        ["-w", str(tmp_path / "ws"), "collect", "--interface", "lo", "--metrics", "127.0.0.1:0"],
        capsys,
    )
    assert code == 3
    assert "apply to --listen" in err


def test_ingest_pcap_enriched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from package_data import DEMO

    capture = DEMO / "traffic.pcap.gz"
    plain, rich = tmp_path / "plain", tmp_path / "rich"
    assert run(["-w", str(plain), "--json", "ingest", "pcap", str(capture)], capsys)[0] == 0
    code, _, _ = run(
        [
            "-w",
            str(rich),
            "--json",
            "ingest",
            "pcap",
            str(capture),
            "--geo-db",
            str(write_geo_db(tmp_path / "geo.mmdb")),
        ],
        capsys,
    )
    assert code == 0
    before = read_dataset(plain / "flows", FLOW_SCHEMA)
    after = read_dataset(rich / "flows", FLOW_SCHEMA)
    assert after.num_rows == before.num_rows > 0
    # 2001:db8::/33 is NL in the test database; every other address is in none
    nl = b"\x20\x01\x0d\xb8"
    assert "NL" in after.column("dst_country").to_pylist() + after.column("src_country").to_pylist()
    for row in after.select(["src_addr", "dst_addr", "src_country", "dst_country"]).to_pylist():
        for side in ("src", "dst"):
            addr = row[f"{side}_addr"]
            want = "NL" if addr[:4] == nl and addr[4] < 0x80 else None
            assert row[f"{side}_country"] == want
    assert (
        after.drop_columns(["src_country", "dst_country"])
        .sort_by("flow_start")
        .equals(before.drop_columns(["src_country", "dst_country"]).sort_by("flow_start"))
    )

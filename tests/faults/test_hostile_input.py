"""Hostile input: malformed CSV and TOML, and SQL / HTML / formula / path-traversal names.

Bad input gets a clear error naming file, record and field, is counted and kept aside, and
never takes the good records beside it down; names are data, never code, in SQL, HTML, CSV
and file paths.
"""

from __future__ import annotations

import csv
import html
import io
import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pytest
from fault_cli import DEMO, PERIOD, cli, last_json, no_traceback

from collectors.dataset import read_dataset
from collectors.schemas import REJECT_SCHEMA, USAGE_SCHEMA

HEADER = "id,msisdn,service,start,duration,bytes_up,bytes_down,destination,origin,cell"
GOOD = (
    "g-{n},4915110000001,voice,2026-10-0{d}T10:00:00+00:00,60,0,0,+4930123{n:04d},4915110000001,c1"
)


def _good_rows(first: int, count: int) -> list[str]:
    return [GOOD.format(n=first + i, d=1 + i % 9) for i in range(count)]


def test_malformed_csv_rows_are_kept_aside_and_good_rows_kept(tmp_path: Path) -> None:
    rows = _good_rows(0, 5)
    bad = {
        "wrong_columns": "b-1,4915110000001,voice",
        "bad_time": "b-2,4915110000001,voice,yesterday,60,0,0,+4930,4915110000001,c1",
        "negative": "b-3,4915110000001,voice,2026-10-02T10:00:00+00:00,-5,0,0,+4930,491,c1",
        "bad_number": "b-4,4915110000001234567,voice,2026-10-02T10:00:00+00:00,60,0,0,+4930,491,c1",
        "huge_field": "b-5,4915110000001,voice,2026-10-02T10:00:00+00:00,60,0,0,+4930,491,"
        + "x" * (10 << 20),
    }
    formula = '=HYPERLINK("http://x","y")'
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(
        ["f-1", "4915110000001", "voice", "2026-10-03T10:00:00+00:00", "60", "0", "0", "",
         "4915110000001", formula]
    )  # fmt: skip
    rows.append(line.getvalue())
    lines = [HEADER, *rows[:3], *bad.values(), *rows[3:]]
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("\n".join(lines) + "\n")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 64)
    latin = tmp_path / "latin1.csv"
    latin.write_bytes((HEADER + "\n" + _good_rows(100, 1)[0][:-2] + "cé\n").encode("latin-1"))
    ws = tmp_path / "ws"
    run = cli(ws, "--json", "ingest", "cdr", str(mixed), str(binary), str(latin),
              "--mapping", "generic")  # fmt: skip
    no_traceback(run)
    assert run.returncode == 6  # whole files were refused; the others went on
    assert last_json(run)["error"]["code"] == 6
    summary = json.loads(run.stdout.strip().splitlines()[-2])  # the report, then the error
    assert set(summary["refused"]) == {str(binary), str(latin)}
    assert summary["refused"][str(binary)] == "not_csv"
    assert summary["refused"][str(latin)] == "bad_encoding"
    assert summary["ingested"] == 6  # every good row, the formula-named one included
    usage = read_dataset(ws / "usage", USAGE_SCHEMA)
    assert sorted(usage.column("record_key").to_pylist()) == sorted(
        [f"g-{i}" for i in range(5)] + ["f-1"]
    )
    assert formula in usage.column("location").to_pylist()  # data, kept as written
    rejected = read_dataset(ws / "rejected", REJECT_SCHEMA)
    by_reason = {
        r["reason"]: r for r in rejected.select(["reason", "field", "message", "record_no"])
        .to_pylist()
    }  # fmt: skip
    assert set(by_reason) == {
        "malformed_row", "bad_time", "negative_duration", "bad_number", "field_too_long"
    }  # fmt: skip
    assert by_reason["bad_time"]["field"] == "start_time"
    assert by_reason["field_too_long"]["field"] == "cell"
    assert by_reason["field_too_long"]["record_no"] == 9  # header is line 1
    assert len(by_reason["field_too_long"]["message"]) < 400  # the 10 MB value is not echoed
    raw = pc.max(pc.binary_length(rejected.column("raw"))).as_py()
    assert raw > 10 << 20  # ... but the whole raw row is kept aside


def test_malformed_toml_is_refused_with_file_and_place(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    broken = tmp_path / "broken.toml"
    broken.write_text('[[customer]]\nid = "C1"\nname = "unterminated\n')
    run = cli(ws, "load", str(broken))
    no_traceback(run)
    assert run.returncode == 3
    assert str(broken) in run.stderr
    assert "line 3" in run.stderr
    shaped = tmp_path / "shaped.toml"
    shaped.write_text('customer = "not a table"\n')
    run = cli(ws, "--json", "load", str(shaped))
    no_traceback(run)
    assert run.returncode == 3
    assert last_json(run)["error"]["message"].startswith(f"{shaped}: customer[0]")
    mapping = tmp_path / "mapping.toml"
    mapping.write_text("[csv\ncolumns = 3\n")
    run = cli(ws, "ingest", "cdr", str(DEMO / "cdrs.csv"), "--mapping", str(mapping))
    no_traceback(run)
    assert run.returncode == 6
    assert "mapping.toml: not valid TOML" in run.stderr
    assert "line 1" in run.stderr


def test_malformed_tariff_names_its_file(tmp_path: Path, prebill: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(prebill, ws)
    bad = ws / "tariffs" / "zz-broken.toml"
    bad.write_text("[tariff]\nid = 'x'\nversion = [\n")
    run = cli(ws, "bill", "--period", PERIOD)
    no_traceback(run)
    assert run.returncode == 7, run.stderr[-2000:]
    assert str(bad) in run.stderr


# -- hostile names ----------------------------------------------------------------------------

NAMES = {
    "Business Fiber 100 (start-up, 10 % off)": '=HYPERLINK("http://x","y")',
    "Mobile Business M": "@SUM(A1:A9)",
    "Mobile Basic": "-2+3*cmd|' /C calc'!A0",
    "Café Lumen SARL": "<script>alert(1)</script>'); DROP TABLE customer; --",
    "Erika Mustermann": "../../../../etc/passwd",
    "Nordwind Logistik GmbH - main": "+1 \t=2 <img src=x onerror=alert(1)>",
}


def _hostile_seed(path: Path) -> Path:
    text = (DEMO / "bss.toml").read_text()
    for plain, hostile in NAMES.items():
        escaped = hostile.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")
        text = text.replace(f'name = "{plain}"', f'name = "{escaped}"')
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    ws = root / "ws"
    seed = _hostile_seed(root / "bss.toml")
    for step in (
        ("load", str(seed)),
        ("ingest", "cdr", str(DEMO / "cdrs.csv"), "--mapping", "generic"),
        ("ingest", "pcap", str(DEMO / "traffic.pcap.gz")),
    ):
        done = cli(ws, *step)
        assert done.returncode == 0, done.stderr[-2000:]
        if step[0] == "load":
            for tariff in (DEMO / "tariffs").glob("*.toml"):
                shutil.copyfile(tariff, ws / "tariffs" / tariff.name)
    done = cli(ws, "bill", "--period", PERIOD)
    assert done.returncode == 0, done.stderr[-2000:]
    return ws


def test_names_are_stored_verbatim_and_sql_is_parameterised(hostile: Path) -> None:
    accounts = last_json(cli(hostile, "--json", "customers", "list"))["accounts"]
    assert len(accounts) == 3  # no table dropped, no row lost
    names = {a["name"] for a in accounts}
    assert NAMES["Café Lumen SARL"] in names
    assert NAMES["Erika Mustermann"] in names
    bills = last_json(cli(hostile, "--json", "bills", "show", PERIOD))["bills"]
    assert len(bills) == 3


def test_exports_escape_html_defuse_csv_and_stay_in_their_folder(
    hostile: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run = cli(hostile, "--json", "bills", "export", PERIOD, str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    files = sorted(Path(f) for f in last_json(run)["files"])
    assert all(f.parent == out for f in files)  # names never become paths
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        f.name for f in files
    )
    pages = "".join(f.read_text() for f in files if f.suffix == ".html")
    assert "<script>" not in pages
    assert "<img" not in pages
    assert html.escape(NAMES["Café Lumen SARL"]) in pages
    cells = [
        cell
        for f in files
        if f.suffix == ".csv"
        for row in csv.reader(io.StringIO(f.read_text(), newline=""))
        for cell in row
    ]
    dangerous = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    for cell in dangerous:  # only plain numbers (credits such as -5.900000) may start so
        float(cell)
    assert any(c.startswith("-") for c in dangerous)  # the discount credit stays a number
    assert any(c.startswith("'=HYPERLINK(") for c in cells)
    assert any(c.startswith("'@SUM(") for c in cells)
    # the workspace's own exports went through the same writer
    own = (hostile / "reports" / "bills" / PERIOD).glob("*.csv")
    assert not any("\n=HYPERLINK" in f.read_text() or ",=" in f.read_text() for f in own)


def test_cdr_file_names_cannot_escape_the_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    odd = tmp_path / "..;'DROP TABLE x;--<b>.csv"
    odd.write_text("\n".join([HEADER, *_good_rows(0, 3)]) + "\n")
    run = cli(ws, "--json", "ingest", "cdr", str(odd), "--mapping", "generic")
    assert run.returncode == 0, run.stderr[-2000:]
    assert last_json(run)["ingested"] == 3
    written = [p for p in tmp_path.rglob("*") if p.is_file() and ws not in p.parents]
    assert written == [odd]  # everything the ingest wrote is inside the workspace

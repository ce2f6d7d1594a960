"""`rating-engine ingest quantities` (issue #25): summary line, --json, rejects named,
refused files exit 6 after the others are ingested, options after the command words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runs import run
from package_data import DEMO

from bss.db import connect
from bss.seed import apply_seed, load_seed_file
from collectors.dataset import read_dataset
from collectors.schemas import REJECT_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.rating.prorated import QUANTITY_CHANGE_SCHEMA


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Path, int]:
    ws = WorkspacePaths(tmp_path / "ws").ensure()
    conn = connect(ws)
    try:
        apply_seed(conn, load_seed_file(DEMO / "bss.toml"), "demo")
        product = int(conn.execute("SELECT min(id) FROM product").fetchone()[0])  # type: ignore[index]
    finally:
        conn.close()
    return ws.root, product


def test_ingest_quantities_summary_json_and_refusals(
    seeded: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, product = seeded
    good = tmp_path / "lines.csv"
    good.write_text(
        "product,metric,valid_from,change\n"
        f"{product},extra_lines,2026-10-01T08:00:00Z,2\n"
        f"{product},extra_lines,yesterday,1\n"
        f"{product},extra_lines,2026-10-03,-1\n",
        encoding="utf-8",
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("product;metric;when;change\n1;a;2026-10-01;1\n", encoding="utf-8")
    code, out, err = run(["ingest", "quantities", str(good), str(bad), "-w", str(root)], capsys)
    assert code == 6, (out, err)
    assert "1 of 2 files refused" in err
    out = " ".join(out.split())  # rich wraps long lines
    assert f"{good}: ingested, read 3, ingested 2, already ingested 0, rejected: bad_time 1" in out
    assert "REFUSED (bad_header)" in out
    assert "total: read 3, ingested 2, already ingested 0, rejected 1, refused files 1" in out
    ws = WorkspacePaths(root)
    assert sorted(r["change"] for r in read_dataset(ws.quantities, QUANTITY_CHANGE_SCHEMA)
                  .to_pylist()) == [-1, 2]  # fmt: skip
    (reject,) = read_dataset(ws.rejected, REJECT_SCHEMA).to_pylist()
    assert (reject["source_file"], reject["record_no"], reject["field"]) == (
        "lines.csv", 3, "valid_from"
    )  # fmt: skip

    code, out, _ = run(["-w", str(root), "ingest", "quantities", str(good), "--json"], capsys)
    assert code == 0
    data = json.loads(out.strip().splitlines()[-1])
    assert (data["rows_read"], data["ingested"], data["duplicates"], data["rejected"]) == (
        3, 0, 2, 1
    )  # fmt: skip
    assert data["files"][0]["rejected"] == {"bad_time": 1}
    assert read_dataset(ws.quantities, QUANTITY_CHANGE_SCHEMA).num_rows == 2
    assert read_dataset(ws.rejected, REJECT_SCHEMA).num_rows == 1

"""What-if re-rating through the CLI, cross-checked against the billed rated usage."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow.compute as pc
import pytest
from package_data import TARIFFS

from collectors.dataset import read_dataset
from rating_engine.schemas import RATED_SCHEMA

ROOT = Path(__file__).resolve().parents[3]
CLI = [sys.executable, "-c", "from bss.cli.main import main; main()"]


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("whatif") / "ws"
    proc = subprocess.run([*CLI, "--workspace", str(ws), "--quiet", "demo"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return ws


def _what_if(ws: Path, *extra: str) -> dict[str, object]:
    proc = subprocess.run(
        [*CLI, "--workspace", str(ws), "--json", "rate", "--period", "2026-10", "--what-if",
         str(TARIFFS / "mobile_flex.toml"), *extra],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_replace_one_tariff(demo_ws: Path) -> None:
    report = _what_if(demo_ws, "--replace", "mobile-2026")
    rated = read_dataset(demo_ws / "rated", RATED_SCHEMA)
    rows = report["subscriptions"]
    assert isinstance(rows, list)
    assert len(rows) == 6
    for row in rows:
        sub = int(row["product"].split(":")[0])
        billed = pc.sum(rated.filter(pc.equal(rated["subscription_id"], sub))["cost"]).as_py()
        # side A is the tariffs in force: it equals what the billing run rated
        assert Decimal(row["revenue_a"]) * 1_000_000 == (billed or 0)
        if row["tariffs"] == "fiber-2026":
            assert Decimal(row["difference"]) == 0  # not replaced: priced the same
        else:
            assert row["tariffs"] == "mobile-2026 -> mobile-flex"
            assert Decimal(row["difference"]) == Decimal(row["revenue_b"]) - Decimal(
                row["revenue_a"]
            )
    by_tariff = report["by_tariff"]
    assert isinstance(by_tariff, list)
    assert {(r["tariff_a"], r["tariff_b"]) for r in by_tariff} == {
        ("fiber-2026", "fiber-2026"),
        ("mobile-2026", "mobile-flex"),
    }


def test_unknown_replace_is_refused(demo_ws: Path) -> None:
    proc = subprocess.run(
        [*CLI, "--workspace", str(demo_ws), "rate", "--period", "2026-10", "--what-if",
         str(TARIFFS / "mobile_flex.toml"), "--replace", "nope"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 3
    assert "--replace nope: no such tariff" in proc.stderr

"""Billed detail is immutable: ``rate`` of a billed period never deletes or rewrites the rated
records its bills rest on (issue #21: ``rate --period 2026-10`` took a billed period's rated
Parquet from 760 rows to 0 and said "rated 0"). It refuses; with ``--force`` it writes a new
generation beside, and the adjustments it shows are the ones the next bill carries."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
from fault_cli import PERIOD, cli, last_json, no_traceback

from collectors.dataset import dataset_files


def _rated(ws: Path) -> dict[str, str]:
    """Each rated part's content hash, by path."""
    return {
        str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in dataset_files(ws / "rated")
    }


def _rows(ws: Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in dataset_files(ws / "rated"))


def test_rate_of_a_billed_period_keeps_its_detail(
    billed: tuple[Path, str], copy_of: Callable[[Path], Path]
) -> None:
    ws, reference = copy_of(billed[0]), billed[1]
    before, rows = _rated(ws), _rows(ws)
    assert rows > 700  # the demo's October
    refused = cli(ws, "rate", "--period", PERIOD)
    no_traceback(refused)
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "is billed" in refused.stderr
    assert "--force" in refused.stderr  # says how to re-rate it
    assert _rated(ws) == before  # not a byte changed
    again = last_json(cli(ws, "--json", "bill", "--period", PERIOD))
    assert again["bills_sha256"] == reference
    assert again["changed"] is False


def test_forced_rerating_writes_generations_beside_and_matches_the_next_bill(
    billed: tuple[Path, str], copy_of: Callable[[Path], Path]
) -> None:
    ws, reference = copy_of(billed[0]), billed[1]
    before = _rated(ws)
    same = cli(ws, "--json", "rate", "--period", PERIOD, "--force")
    no_traceback(same)
    assert same.returncode == 0, same.stderr[-2000:]
    first = last_json(same)
    assert first["generation"] == 1
    assert first["billed"] == _rows(ws)
    assert first["changed"] == 0  # the same tariffs: the same prices
    assert Path(first["folder"]).is_dir()
    # a tariff corrected after billing: world calls dearer
    tariff = ws / "tariffs" / "mobile-2026.toml"
    tariff.write_text(tariff.read_text().replace('rate = "0.79"', 'rate = "0.99"'))
    dearer = cli(ws, "--json", "rate", "--period", PERIOD, "--force")
    assert dearer.returncode == 0, dearer.stderr[-2000:]
    second = last_json(dearer)
    assert second["generation"] == 2
    assert second["changed"] > 0
    assert Decimal(second["delta"]) > 0
    doc = json.loads((Path(second["folder"]) / "generation.json").read_text())
    assert doc["tariffs_sha256"] != first["tariffs_sha256"]
    assert (
        sum(pq.read_metadata(f).num_rows for f in dataset_files(Path(second["folder"])))
        == (second["changed"])
    )
    # the billed detail and the bills are untouched
    assert _rated(ws) == before
    shown = last_json(cli(ws, "--json", "bill", "--period", PERIOD))
    assert shown["bills_sha256"] == reference
    # the next bill carries exactly the adjustments the generation showed
    november = cli(ws, "--json", "bill", "--period", "2026-11")
    assert november.returncode == 0, november.stderr[-2000:]
    bills = last_json(cli(ws, "--json", "bills", "show", "2026-11"))["bills"]
    adjusted = sum(
        Decimal(line["amount"])
        for bill in bills
        for line in bill["lines"]
        if f"re-rating of {PERIOD}" in line["description"]
    )
    assert adjusted == Decimal(second["delta"])
    assert _rated(ws).items() >= before.items()  # October's parts are still there, as they were


def test_force_on_an_unbilled_period_is_refused(
    prebill: Path, copy_of: Callable[[Path], Path]
) -> None:
    ws = copy_of(prebill)
    run = cli(ws, "rate", "--period", PERIOD, "--force")
    no_traceback(run)
    assert run.returncode == 5
    assert "is not billed" in run.stderr
    assert not (ws / "rerated").exists()

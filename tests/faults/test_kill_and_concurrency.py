"""kill -9 at random moments of ``ingest cdr``, ``rate`` and ``bill``, then a rerun; and two
runs at once. Every rerun must give what a clean run gives: the same usage records exactly
once and bills with the same SHA-256.

The moments are drawn from a seeded generator over the span of a clean run of the same
command (measured here, not asserted). Two moments per command run by default; ``-m slow``
runs fifteen, as in the issue's attack.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fault_cli import CLI, DEMO, PERIOD, cli, last_json, no_traceback
from processes import running

from collectors.dataset import dataset_files, read_dataset
from collectors.schemas import USAGE_SCHEMA

MOMENTS = 2
SLOW_MOMENTS = 15


def _moments(command: str, count: int) -> list[float]:
    rng = random.Random(f"issue-21-{command}")
    return [rng.uniform(0.15, 1.0) for _ in range(count)]


def _timed(workspace: Path, *args: str) -> float:
    started = time.monotonic()
    done = cli(workspace, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    return time.monotonic() - started


def _kill_at(workspace: Path, args: tuple[str, ...], after: float) -> None:
    """Start the command, SIGKILL its process group ``after`` seconds later (if still running)."""
    cmd = [*CLI, "-w", str(workspace), *args]
    with running(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            proc.wait(after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def _usage_ids(workspace: Path) -> list[int]:
    table = read_dataset(workspace / "usage", USAGE_SCHEMA, columns=["record_id"])
    return sorted(table.column("record_id").to_pylist())


def _cdr_file(path: Path, rows: int) -> Path:
    rng = random.Random(rows)
    header = (DEMO / "cdrs.csv").read_text().splitlines()[0]
    lines = [header]
    for i in range(rows):
        when = f"2026-10-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{i % 60:02d}:00+00:00"
        lines.append(f"k-{i:09d},4915110000001,voice,{when},{rng.randrange(3600)},0,0,"
                     f"+4930{rng.randrange(10**8):08d},4915110000001,cell-{i % 50}")  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def cdr_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int], float]:
    """A large CDR file, the record ids a clean ingest stores, and how long it took."""
    root = tmp_path_factory.mktemp("cdr-ref")
    source = _cdr_file(root / "calls.csv", 150_000)
    seconds = _timed(root / "ws", "ingest", "cdr", str(source), "--mapping", "generic")
    return source, _usage_ids(root / "ws"), seconds


def _check_ingest_after_kill(
    cdr_reference: tuple[Path, list[int], float], tmp_path: Path, fraction: float
) -> None:
    source, expected, seconds = cdr_reference
    ws = tmp_path / "ws"
    _kill_at(ws, ("ingest", "cdr", str(source), "--mapping", "generic"), fraction * seconds)
    again = cli(ws, "--json", "ingest", "cdr", str(source), "--mapping", "generic")
    no_traceback(again)
    # either the killed run had committed (the file is then refused as ingested) or not
    assert again.returncode in (0, 6), again.stderr[-2000:]
    if again.returncode == 6:
        assert "already_ingested" in again.stdout
    assert _usage_ids(ws) == expected  # every record exactly once


@pytest.mark.parametrize("fraction", _moments("ingest", MOMENTS))
def test_ingest_killed_then_rerun(
    cdr_reference: tuple[Path, list[int], float], tmp_path: Path, fraction: float
) -> None:
    _check_ingest_after_kill(cdr_reference, tmp_path, fraction)


@pytest.fixture(scope="module")
def bill_seconds(prebill: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """How long clean ``rate`` and ``bill`` runs of the demo take here."""
    root = tmp_path_factory.mktemp("timing")
    out = {}
    for command in ("rate", "bill"):
        ws = root / command
        shutil.copytree(prebill, ws)
        out[command] = _timed(ws, command, "--period", PERIOD)
    return out


def _rated_rows(workspace: Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in dataset_files(workspace / "rated"))


def _check_billing_after_kill(
    command: str,
    fraction: float,
    prebill: Path,
    billed: tuple[Path, str],
    bill_seconds: dict[str, float],
    copy_of: Callable[[Path], Path],
) -> None:
    reference_ws, reference = billed
    ws = copy_of(prebill)
    _kill_at(ws, (command, "--period", PERIOD), fraction * bill_seconds[command])
    if command == "rate":
        rerun = cli(ws, "rate", "--period", PERIOD)
        no_traceback(rerun)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    done = cli(ws, "--json", "bill", "--period", PERIOD)
    no_traceback(done)
    assert done.returncode == 0, done.stderr[-2000:]
    assert last_json(done)["bills_sha256"] == reference
    assert _rated_rows(ws) == _rated_rows(reference_ws)
    assert _usage_ids(ws) == _usage_ids(reference_ws)


@pytest.mark.parametrize("command", ["rate", "bill"])
@pytest.mark.parametrize("moment", range(MOMENTS))
def test_rate_or_bill_killed_then_rerun(
    command: str,
    moment: int,
    prebill: Path,
    billed: tuple[Path, str],
    bill_seconds: dict[str, float],
    copy_of: Callable[[Path], Path],
) -> None:
    fraction = _moments(command, MOMENTS)[moment]
    _check_billing_after_kill(command, fraction, prebill, billed, bill_seconds, copy_of)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["ingest", "rate", "bill"])
def test_fifteen_kills_each(
    command: str,
    cdr_reference: tuple[Path, list[int], float],
    prebill: Path,
    billed: tuple[Path, str],
    bill_seconds: dict[str, float],
    copy_of: Callable[[Path], Path],
    tmp_path: Path,
) -> None:
    for i, fraction in enumerate(_moments(f"{command}-slow", SLOW_MOMENTS)):
        if command == "ingest":
            _check_ingest_after_kill(cdr_reference, tmp_path / str(i), fraction)
        else:
            _check_billing_after_kill(command, fraction, prebill, billed, bill_seconds, copy_of)


# -- two runs at once -----------------------------------------------------------------------


def test_two_bills_at_once(
    prebill: Path, billed: tuple[Path, str], copy_of: Callable[[Path], Path]
) -> None:
    ws = copy_of(prebill)
    cmd = [*CLI, "-w", str(ws), "--json", "bill", "--period", PERIOD]
    with (
        running(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as first,
        running(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as second,
    ):
        outs = [p.communicate(timeout=600) for p in (first, second)]
        codes = [first.returncode, second.returncode]
    results = [
        subprocess.CompletedProcess(cmd, code, out, err)
        for code, (out, err) in zip(codes, outs, strict=True)
    ]
    for result in results:
        no_traceback(result)
    winners = [r for r in results if r.returncode == 0 and last_json(r)["changed"]]
    assert len(winners) == 1  # exactly one run billed the period
    other = next(r for r in results if r is not winners[0])
    if other.returncode == 4:  # refused while the first held the workspace
        error = last_json(other)["error"]
        assert "is locked by process" in error["message"]
    else:  # or it came after the first had finished, and changed nothing
        assert other.returncode == 0
        assert last_json(other)["changed"] is False
    assert last_json(winners[0])["bills_sha256"] == billed[1]
    assert _rated_rows(ws) == _rated_rows(billed[0])


def test_a_held_workspace_refuses_writers_with_a_lock_message(
    billed: tuple[Path, str], copy_of: Callable[[Path], Path]
) -> None:
    ws = copy_of(billed[0])
    hold = (
        "import sys, duckdb\n"
        f"con = duckdb.connect({str(ws / 'bss.duckdb')!r})\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    with running(
        [CLI[0], "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        for args in (("bill", "--period", "2026-11"), ("load", str(DEMO / "bss.toml"))):
            refused = cli(ws, *args)
            no_traceback(refused)
            assert refused.returncode == 4, refused.stderr[-2000:]
            assert f"is locked by process {holder.pid}" in refused.stderr


def test_two_ingests_of_one_file_at_once(
    cdr_reference: tuple[Path, list[int], float], tmp_path: Path
) -> None:
    source, expected, _ = cdr_reference
    ws = tmp_path / "ws"
    cmd = [*CLI, "-w", str(ws), "--json", "ingest", "cdr", str(source), "--mapping", "generic"]
    with (
        running(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as first,
        running(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as second,
    ):
        outs = [p.communicate(timeout=600) for p in (first, second)]
        codes = sorted([first.returncode, second.returncode])
    # the ingest lock serialises them: one ingests, the other finds the file done
    assert codes == [0, 6], [o[1][-1000:] for o in outs]
    assert _usage_ids(ws) == expected

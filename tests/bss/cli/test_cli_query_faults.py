"""A damaged Parquet part met by polars (``query stats``, ``query list``) is reported as a
stored file that cannot be read back (exit 9), as Arrow's reader's errors are - no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from cli_runs import run

from bss.cli.main import EXIT_CORRUPT
from collectors.dataset import dataset_files, write_partitioned
from collectors.schemas import FLOW_SCHEMA
from collectors.workspace import WorkspacePaths


def _flows(n: int) -> pa.Table:
    """``n`` flows 10 minutes apart over 3 ports (other columns 0 or null)."""
    given = {"flow_start": [1_790_000_000_000_000 + i * 600_000_000 for i in range(n)],
             "dst_port": [80 + i % 3 for i in range(n)], "bytes": [100 + i for i in range(n)],
             "packets": [1] * n}  # fmt: skip
    given["flow_end"] = given["flow_start"]
    columns = [
        pa.array(given[f.name]).cast(f.type) if f.name in given
        else pa.nulls(n, f.type) if f.nullable
        else pa.array([bytes(16)] * n, f.type) if pa.types.is_fixed_size_binary(f.type)
        else pa.array([0] * n).cast(f.type)
        for f in FLOW_SCHEMA
    ]  # fmt: skip
    return pa.table(columns, schema=FLOW_SCHEMA)


@pytest.mark.parametrize(
    "verb",
    [["stats", "-s", "dstport/bytes", "--raw"], ["list", "-c", "5", "-O", "bytes"]],
)
def test_truncated_part_read_by_polars_is_corrupt_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], verb: list[str]
) -> None:
    paths = WorkspacePaths(tmp_path / "ws").ensure()
    write_partitioned(_flows(60), paths.flows, time_column="flow_start", part_name="t",
                      hourly=True)  # fmt: skip
    part = dataset_files(paths.flows)[0]
    with open(part, "r+b") as fh:  # the footer is cut off
        fh.truncate(part.stat().st_size // 2)
    code, out, err = run(["-w", str(paths.root), "--json", "query", *verb], capsys)
    assert code == EXIT_CORRUPT, err
    error = json.loads(out.strip().splitlines()[-1])["error"]
    assert error["kind"] == "CorruptStorage"
    assert "rating-engine check" in error["message"]
    assert "Traceback" not in err


@pytest.mark.parametrize("verb", [["top"], ["stats", "-s", "dstport/bytes"], ["list", "-c", "5"]])
def test_damaged_footer_schema_is_corrupt_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], verb: list[str]
) -> None:
    """Zero bytes over the end of the footer (its Arrow schema, stored as base64 text):
    exit 9 telling to run check, not an ArrowInvalid traceback."""
    paths = WorkspacePaths(tmp_path / "ws").ensure()
    write_partitioned(_flows(60), paths.flows, time_column="flow_start", part_name="t",
                      hourly=True)  # fmt: skip
    part = dataset_files(paths.flows)[0]
    size = part.stat().st_size
    with open(part, "r+b") as fh:  # the footer's length and magic stay; its end is zeros
        fh.seek(size - 8 - 192)
        fh.write(bytes(192))
    code, out, err = run(["-w", str(paths.root), "--json", "query", *verb], capsys)
    assert code == EXIT_CORRUPT, err
    error = json.loads(out.strip().splitlines()[-1])["error"]
    assert error["kind"] == "CorruptStorage"
    assert "rating-engine check" in error["message"]

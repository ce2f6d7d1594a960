"""``rating-engine ingest nfcapd FILE|DIR...``: nfcapd history into the flows dataset.

A folder is read recursively: every file named ``nfcapd.*`` (nfcapd's own naming; the
``nfcapd.current.*`` file it is still writing is left out), in name order, which is
time order. A file named on the command line is read whatever its name. Flows go to
``W/flows`` (hive ``date=/hour=`` of the flow start) under the part name
``nfcapd-<content hash>``, so ingesting the same file again replaces its rows instead of
adding them (LZ4-compressed Parquet: faster to query than zstd); refused records and
blocks go to ``W/quarantine`` (``REJECT_SCHEMA``, ``record_no`` = the record's index in
the file, ``field`` = the element or size at fault, ``raw`` = the record's bytes). A
file that is not an nfdump 1.7 file is counted as refused with its reason and the other
files go on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from collectors.dataset import dataset_files, write_partitioned
from collectors.errors import IngestError
from collectors.nfcapd.reader import NfcapdFile, Reject, read_nfcapd_file
from collectors.schemas import REJECT_SCHEMA
from collectors.workspace import WorkspacePaths

__all__ = ["NfcapdIngestSummary", "expand_nfcapd_paths", "ingest_nfcapd_files"]

log = logging.getLogger(__name__)
#: Rows per Parquet row group of ingested history (see ingest_nfcapd_files).
LISTING_ROW_GROUP = 16_384


@dataclass
class NfcapdIngestSummary:
    """Every file's outcome."""

    files: list[NfcapdFile] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def flows(self) -> int:
        return sum(f.flows for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--json`` output."""
        rejected: Counter[str] = Counter()
        for f in self.files:
            rejected.update(f.rejected)
        return {
            "files": [
                {"source": f.source, "compression": f.compression,
                 "nfdump_version": f.nfdump_version, "blocks": f.blocks, "records": f.records,
                 "flows": f.flows, "other_records": f.other_records,
                 "aggregated_records": f.aggregated_records, "rejected": dict(f.rejected)}
                for f in self.files
            ],
            "flows": self.flows,
            "rejected": dict(rejected),
            "refused": dict(self.refused),
            "elapsed_s": round(self.elapsed_s, 3),
        }  # fmt: skip


def expand_nfcapd_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files to read: named files as given, folders as their ``nfcapd.*`` files."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(
                f for f in p.rglob("nfcapd.*")
                if f.is_file() and not f.name.startswith("nfcapd.current")
            ))  # fmt: skip
        else:
            out.append(p)
    return out


def _part_name(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return "nfcapd-" + h.hexdigest()[:20]


def _quarantine(source: str, rejects: list[Reject], now_us: int) -> pa.Table:
    n = len(rejects)
    return pa.table(
        [
            pa.array(["decode"] * n), pa.array([source] * n),
            pa.array([r[0] for r in rejects], pa.int64()), pa.nulls(n, pa.int64()),
            pa.array([r[1] for r in rejects], pa.string()),
            pa.array([r[2] for r in rejects]), pa.array([r[3] for r in rejects]),
            pa.array([r[4] for r in rejects], pa.binary()),
            pa.array([now_us] * n, pa.int64()).cast(REJECT_SCHEMA.field("rejected_at").type),
        ],
        schema=REJECT_SCHEMA,
    )  # fmt: skip


def _replace(root: Path, part: str, written: list[Path]) -> None:
    """Remove older files of this part name that this run did not rewrite."""
    keep = {p.resolve() for p in written}
    for path in dataset_files(root):
        if path.name == f"part-{part}.parquet" and path.resolve() not in keep:
            path.unlink()


def ingest_nfcapd_files(
    paths: Iterable[str | os.PathLike[str]], workspace: WorkspacePaths
) -> NfcapdIngestSummary:
    """Read nfcapd files and folders into ``W/flows`` (see the module doc)."""
    started = time.monotonic()
    workspace.ensure()
    summary = NfcapdIngestSummary()
    files = expand_nfcapd_paths(paths)
    if not files:
        raise IngestError(f"no nfcapd files in {', '.join(map(str, paths))}")
    for path in files:
        try:
            part = _part_name(path)
            result = read_nfcapd_file(path)
        except (OSError, IngestError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            summary.refused[str(path)] = reason
            log.warning("%s: refused: %s", path, reason)
            continue
        now_us = time.time_ns() // 1000
        written: list[Path] = []
        if result.batches:
            table = result.table()
            # LZ4 pages: history is queried more than it is stored; scans decode them about
            # twice as fast as zstd (benchmarks/nfdump_filter_vs_peers.py) for ~30% more bytes.
            # 16Ki-row groups: `query list -c N -O tstart` decodes the row groups holding
            # the first matches only (their time statistics tell which), not a whole hour
            written = write_partitioned(table, workspace.flows, time_column="flow_start",
                                        part_name=part, hourly=True, compression="lz4",
                                        row_group_size=LISTING_ROW_GROUP)  # fmt: skip
        _replace(workspace.flows, part, written)
        quarantined: list[Path] = []
        if result.rejects:
            quarantined = write_partitioned(
                _quarantine(str(path), result.rejects, now_us), workspace.quarantine,
                time_column="rejected_at", part_name=part,
            )  # fmt: skip
        _replace(workspace.quarantine, part, quarantined)
        result.batches = []  # written; the summary keeps the counts only
        summary.files.append(result)
    summary.elapsed_s = time.monotonic() - started
    return summary

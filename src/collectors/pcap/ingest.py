"""``rating-engine ingest pcap``: capture files to metered flows in the workspace.

Each file is read with :class:`collectors.pcap.reader.CaptureReader`, metered on its own
with :class:`collectors.pcap.metering.FlowMeter` (flows never span files) and written
under ``W/flows/`` with the part name ``pcap-<content hash>``: the name depends
on the bytes only, so ingesting the same capture again (under any name) replaces
its files instead of adding rows. Optionally every packet goes to
``W/packets/`` (``PACKET_SCHEMA``, parts ``pcap-<hash>-<batch>``).

Bad input never stops the run: a packet that cannot be decoded goes to
``W/rejected/`` (``REJECT_SCHEMA``: file, byte offset, reason, raw bytes); a
truncated or corrupt file keeps every whole packet before the damage and adds one
rejected row plus a warning; an unreadable file is rejected whole and the other
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from collectors.dataset import dataset_files, write_partitioned
from collectors.enrich.enricher import FlowEnricher
from collectors.errors import IngestError
from collectors.pcap.metering import FlowMeter, MeteringOptions
from collectors.pcap.packet_kernel import REJECT_REASONS, U8_STATUS
from collectors.pcap.reader import CaptureReader, PacketBatch
from collectors.schemas import REJECT_SCHEMA
from collectors.workspace import WorkspacePaths

__all__ = ["PcapFileResult", "PcapIngestSummary", "content_part_name", "ingest_pcap_files"]

log = logging.getLogger(__name__)


@dataclass
class PcapFileResult:
    """What one capture file produced."""

    path: str
    part_name: str
    format: str = ""
    compressed: bool = False
    packets: int = 0
    ip_packets: int = 0
    non_ip_packets: int = 0
    flows: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    truncated_at: int | None = None


@dataclass
class PcapIngestSummary:
    """Totals of one ingest run, per file and per reject reason."""

    files: list[PcapFileResult] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def packets(self) -> int:
        return sum(f.packets for f in self.files)

    @property
    def flows(self) -> int:
        return sum(f.flows for f in self.files)

    @property
    def rejected(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for f in self.files:
            total.update(f.rejected)
        return total

    @property
    def warnings(self) -> list[str]:
        return [w for f in self.files for w in f.warnings]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` output."""
        return {
            "files": [
                {
                    "path": f.path,
                    "part_name": f.part_name,
                    "format": f.format,
                    "compressed": f.compressed,
                    "packets": f.packets,
                    "ip_packets": f.ip_packets,
                    "non_ip_packets": f.non_ip_packets,
                    "flows": f.flows,
                    "rejected": dict(f.rejected),
                    "warnings": f.warnings,
                    "truncated_at": f.truncated_at,
                }
                for f in self.files
            ],
            "packets": self.packets,
            "flows": self.flows,
            "rejected": dict(self.rejected),
            "warnings": self.warnings,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def content_part_name(path: str | os.PathLike[str]) -> str:
    """``pcap-<first 20 hex digits of BLAKE2b>`` of the file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return "pcap-" + h.hexdigest()[:20]


def _reject_rows(
    source: str,
    rows: list[tuple[int | None, str, str, bytes | None]],
    now: datetime,
) -> pa.Table:
    n = len(rows)
    return pa.Table.from_pydict(
        {
            "stage": ["decode"] * n,
            "source_file": [source] * n,
            "record_no": [r[0] for r in rows],
            "record_id": [None] * n,
            "field": [None] * n,
            "reason": [r[1] for r in rows],
            "message": [r[2] for r in rows],
            "raw": [r[3] for r in rows],
            "rejected_at": [now] * n,
        },
        schema=REJECT_SCHEMA,
    )


def _batch_rejects(source: str, batch: PacketBatch) -> list[tuple[int | None, str, str, bytes]]:
    out: list[tuple[int | None, str, str, bytes]] = []
    status = batch.u8c[U8_STATUS]
    for idx, raw in sorted(batch.rejected.items()):
        reason = REJECT_REASONS.get(int(status[idx]), "undecodable_packet")
        off = int(batch.offset[idx])
        out.append((off, reason, f"{reason.replace('_', ' ')} in {source} at offset {off}", raw))
    return out


def _replace_parts(root: Path, part_name: str, written: Iterable[Path], *, prefix: bool) -> None:
    """Delete files of this part name that this run did not (re)write."""
    keep = {p.resolve() for p in written}
    stem = f"part-{part_name}"
    for path in dataset_files(root):
        name = path.name
        match = name.startswith(stem + "-") if prefix else name == stem + ".parquet"
        if match and path.resolve() not in keep:
            path.unlink()


def _ingest_one(
    path: Path,
    workspace: WorkspacePaths,
    options: MeteringOptions,
    write_packets: bool,
    batch_size: int,
    enricher: FlowEnricher | None = None,
) -> PcapFileResult:
    source = str(path)
    now = datetime.now(UTC)
    try:
        part = content_part_name(path)
    except OSError as exc:
        part = "pcap-unreadable-" + hashlib.blake2b(source.encode(), digest_size=8).hexdigest()
        result = PcapFileResult(source, part)
        msg = f"cannot read capture {source}: {exc.strerror}"
        result.warnings.append(msg)
        result.rejected["unreadable_file"] += 1
        rej = _reject_rows(source, [(None, "unreadable_file", msg, None)], now)
        written = write_partitioned(
            rej, workspace.rejected, time_column="rejected_at", part_name=part
        )
        _replace_parts(workspace.rejected, part, written, prefix=False)
        return result
    result = PcapFileResult(source, part)
    rejects: list[tuple[int | None, str, str, bytes | None]] = []
    flows: list[pa.Table] = []
    packet_files: list[Path] = []
    try:
        reader = CaptureReader(path, batch_size=batch_size)
    except IngestError as exc:
        result.warnings.append(str(exc))
        result.rejected["unreadable_file"] += 1
        rejects.append((None, "unreadable_file", str(exc), None))
    else:
        result.format = reader.format
        result.compressed = reader.compressed
        meter = FlowMeter(options)
        for k, batch in enumerate(reader.batches()):
            result.packets += len(batch)
            result.non_ip_packets += batch.non_ip_count()
            result.ip_packets += int(batch.ip_mask.sum())
            rejects.extend(_batch_rejects(source, batch))
            flows.append(meter.add(batch))
            if write_packets:
                packet_files += write_partitioned(
                    batch.to_arrow(source),
                    workspace.packets,
                    time_column="time",
                    part_name=f"{part}-{k:05d}",
                )
        flows.append(meter.flush())
        result.warnings.extend(reader.warnings)
        result.truncated_at = reader.truncated_at
        if reader.truncated_at is not None:
            rejects.append((reader.truncated_at, "truncated_file", reader.warnings[-1], None))
        if reader.corrupt_at is not None:
            rejects.append((reader.corrupt_at, "corrupt_record", reader.warnings[-1], None))
    for r in rejects:
        if r[1] not in ("unreadable_file",):
            result.rejected[r[1]] += 1
    table = pa.concat_tables(flows) if flows else None
    if table is not None and enricher is not None and table.num_rows:
        table = pa.Table.from_batches(
            [enricher.enrich(b) for b in table.to_batches()], schema=table.schema
        )
    result.flows = table.num_rows if table is not None else 0
    if table is not None:
        written = write_partitioned(
            table, workspace.flows, time_column="flow_start", part_name=part
        )
        _replace_parts(workspace.flows, part, written, prefix=False)
    if write_packets:
        _replace_parts(workspace.packets, part, packet_files, prefix=True)
    rej_written = (
        write_partitioned(
            _reject_rows(source, rejects, now),
            workspace.rejected,
            time_column="rejected_at",
            part_name=part,
        )
        if rejects
        else []
    )
    _replace_parts(workspace.rejected, part, rej_written, prefix=False)
    for w in result.warnings:
        log.warning("%s", w)
    return result


def ingest_pcap_files(
    paths: Iterable[str | os.PathLike[str]],
    workspace: WorkspacePaths,
    *,
    options: MeteringOptions | None = None,
    write_packets: bool = False,
    batch_size: int = 1 << 18,
    enricher: FlowEnricher | None = None,
) -> PcapIngestSummary:
    """Meter each capture into ``W/flows`` (and ``W/packets``); see the module doc.

    ``enricher`` fills AS numbers and countries of the metered flows (``collectors.enrich``).
    """
    started = time.perf_counter()
    workspace.ensure()
    summary = PcapIngestSummary()
    opts = options or MeteringOptions()
    for p in paths:
        summary.files.append(
            _ingest_one(Path(p), workspace, opts, write_packets, batch_size, enricher)
        )
    summary.elapsed_s = time.perf_counter() - started
    return summary

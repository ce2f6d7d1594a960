"""``rating-engine ingest flows FILE...``: flow-export files through the collector's decoders.

Accepted inputs (detected by content, then by suffix):

* **pcap / pcapng** of export traffic, plain or gzip-compressed: every UDP payload is a
  datagram, with the sender address as exporter and the capture time as receive time;
* **datagram files** (suffix ``.dgrams``, or any file that frames exactly this way):
  datagrams back to back, each preceded by its length as a 4-byte big-endian
  unsigned integer (1..65535);
* **a single raw datagram** (``.bin``, as in the test captures; any other file).

Datagram and single files carry no sender or time: the exporter is ``::`` and the
receive time is the file's modification time (it only matters for sFlow, whose flows
have no timestamps of their own, and for IPFIX/v9 nothing). Files are decoded in the
order given by one :class:`FlowDecoder`, so templates from one file decode data in
the next. Its state is loaded from and saved to ``W/state/<decoder_state>.json``
(default ``flow_ingest``; ``None`` = a fresh decoder, not saved).

Output: flows to ``W/flows/`` (hive ``date=/hour=`` of ``flow_start``), sFlow counter
records to ``W/counters/``, rejected datagrams to ``W/quarantine/`` (``REJECT_SCHEMA``,
``record_no`` = 0-based datagram index in the file, the raw datagram in ``raw``). Part
names are ``flowexport-<content hash>``, so ingesting the same file again replaces
its files instead of adding rows. An unreadable file is counted and recorded in the
quarantine; the other files go on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from collectors.dataset import dataset_files, write_partitioned
from collectors.enrich.enricher import FlowEnricher
from collectors.errors import IngestError
from collectors.flows.datagram_files import iter_datagrams_from_pcap
from collectors.flows.decoder import FlowDecoder
from collectors.udp.decoder_state import load_decoder_state, save_decoder_state
from collectors.udp.outputs import quarantine_batch
from collectors.workspace import WorkspacePaths

__all__ = [
    "DATAGRAM_FILE_SUFFIX",
    "FlowFileResult",
    "FlowIngestSummary",
    "detect_flow_file",
    "ingest_flow_files",
    "iter_flow_file",
    "write_datagram_file",
]

log = logging.getLogger(__name__)

DATAGRAM_FILE_SUFFIX = ".dgrams"
_PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_LEN = struct.Struct(">I")
_BATCH = 4096


def write_datagram_file(path: Path, datagrams: Iterable[bytes]) -> int:
    """Write datagrams in the length-prefixed format; returns how many."""
    n = 0
    with open(path, "wb") as fh:
        for d in datagrams:
            if not 0 < len(d) <= 65535:
                raise ValueError(f"a datagram is 1..65535 bytes, got {len(d)}")
            fh.write(_LEN.pack(len(d)) + d)
            n += 1
    return n


def _frames_exactly(data: bytes) -> bool:
    pos = 0
    while pos + 4 <= len(data):
        n = _LEN.unpack_from(data, pos)[0]
        if not 0 < n <= 65535:
            return False
        pos += 4 + n
    return pos == len(data) and pos > 0


def detect_flow_file(path: Path) -> str:
    """``pcap``, ``datagrams`` or ``single`` (see the module doc)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        if head[:2] == b"\x1f\x8b":  # gzip: only captures are read compressed
            fh.seek(0)
            try:
                head = zlib.decompressobj(wbits=47).decompress(fh.read(1 << 16), 4)
            except zlib.error as exc:
                raise IngestError(f"{path}: bad gzip data ({exc})") from exc
            if head not in _PCAP_MAGICS and head != _PCAPNG_MAGIC:
                raise IngestError(f"{path}: gzip-compressed, but not a pcap or pcapng capture")
    if head in _PCAP_MAGICS or head == _PCAPNG_MAGIC:
        return "pcap"
    if path.suffix == DATAGRAM_FILE_SUFFIX:
        return "datagrams"
    if path.suffix == ".bin":
        return "single"
    return "datagrams" if _frames_exactly(path.read_bytes()) else "single"


def iter_flow_file(path: Path, kind: str) -> Iterator[tuple[bytes, bytes, int]]:
    """(datagram, exporter, receive time us) for each datagram of the file."""
    if kind == "pcap":
        yield from iter_datagrams_from_pcap(path)
        return
    data = path.read_bytes()
    when = int(path.stat().st_mtime * 1_000_000)
    unknown = bytes(16)
    if kind == "single":
        if data:
            yield data, unknown, when
        return
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise IngestError(f"{path}: truncated length prefix at offset {pos}")
        n = _LEN.unpack_from(data, pos)[0]
        if pos + 4 + n > len(data):
            raise IngestError(f"{path}: datagram at offset {pos} of length {n} runs past the end")
        yield data[pos + 4 : pos + 4 + n], unknown, when
        pos += 4 + n


@dataclass
class FlowFileResult:
    """One file's outcome."""

    source: str
    part_name: str
    kind: str = "unknown"
    datagrams: int = 0
    flows: int = 0
    counters: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)


@dataclass
class FlowIngestSummary:
    """All files' outcomes and the decoder's counts."""

    files: list[FlowFileResult] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def datagrams(self) -> int:
        return sum(f.datagrams for f in self.files)

    @property
    def flows(self) -> int:
        return sum(f.flows for f in self.files)

    @property
    def rejected(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for f in self.files:
            total.update(f.rejected)
        return total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--json`` output."""
        return {
            "files": [
                {
                    "source": f.source,
                    "kind": f.kind,
                    "datagrams": f.datagrams,
                    "flows": f.flows,
                    "counters": f.counters,
                    "rejected": dict(f.rejected),
                    "warnings": f.warnings,
                }
                for f in self.files
            ],
            "datagrams": self.datagrams,
            "flows": self.flows,
            "rejected": dict(self.rejected),
            "stats": dict(self.stats),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def _part_name(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    except OSError:
        h.update(str(path).encode())
        return "flowexport-unreadable-" + h.hexdigest()[:16]
    return "flowexport-" + h.hexdigest()[:20]


def _replace(root: Path, part: str, written: list[Path]) -> None:
    """Remove older files of this part name that this run did not rewrite."""
    keep = {p.resolve() for p in written}
    for path in dataset_files(root):
        if path.name == f"part-{part}.parquet" and path.resolve() not in keep:
            path.unlink()


def _ingest_one(
    path: Path,
    decoder: FlowDecoder,
    workspace: WorkspacePaths,
    stats: Counter[str],
    enricher: FlowEnricher | None = None,
) -> FlowFileResult:
    source = str(path)
    result = FlowFileResult(source, _part_name(path))
    flows: list[pa.RecordBatch] = []
    counters: list[pa.RecordBatch] = []
    rejects: list[tuple[str, int | None, str, str, bytes, int]] = []
    now_us = time.time_ns() // 1000

    def decode(batch: list[tuple[bytes, bytes, int]], first: int) -> None:
        out = decoder.decode_many(
            [b[0] for b in batch], [b[1] for b in batch], [b[2] for b in batch], source=source
        )
        stats.update(out.stats)
        flows.append(out.flows if enricher is None else enricher.enrich(out.flows))
        if out.counters is not None and out.counters.num_rows:
            counters.append(out.counters)
        for idx, reason, message in out.rejected:
            rejects.append((source, first + idx, reason, message, batch[idx][0], now_us))
            result.rejected[reason] += 1

    pending: list[tuple[bytes, bytes, int]] = []
    try:
        result.kind = detect_flow_file(path)
        for item in iter_flow_file(path, result.kind):
            pending.append(item)
            if len(pending) >= _BATCH:
                decode(pending, result.datagrams)
                result.datagrams += len(pending)
                pending = []
    except (OSError, IngestError) as exc:
        reason = "truncated_file" if (result.datagrams or pending) else "unreadable_file"
        message = f"{source}: {exc.strerror if isinstance(exc, OSError) else exc}"
        result.warnings.append(message)
        result.rejected[reason] += 1
        rejects.append((source, None, reason, message, b"", now_us))
        log.warning("%s", message)
    if pending:  # also what was read before a damaged end
        decode(pending, result.datagrams)
        result.datagrams += len(pending)
    part = result.part_name
    if flows:
        table = pa.Table.from_batches(flows)
        result.flows = table.num_rows
        written = write_partitioned(
            table, workspace.flows, time_column="flow_start", part_name=part, hourly=True
        )
        _replace(workspace.flows, part, written)
    if counters:
        table = pa.Table.from_batches(counters)
        result.counters = table.num_rows
        written = write_partitioned(
            table, workspace.counters, time_column="received_at", part_name=part, hourly=True
        )
        _replace(workspace.counters, part, written)
    written = (
        write_partitioned(
            pa.Table.from_batches([quarantine_batch(rejects)]),
            workspace.quarantine,
            time_column="rejected_at",
            part_name=part,
        )
        if rejects
        else []
    )
    _replace(workspace.quarantine, part, written)
    return result


def ingest_flow_files(
    paths: Iterable[str | os.PathLike[str]],
    workspace: WorkspacePaths,
    *,
    decoder_state: str | Path | None = "flow_ingest",
    max_templates_per_exporter: int = 1024,
    max_pending_bytes_per_exporter: int = 1 << 20,
    enricher: FlowEnricher | None = None,
) -> FlowIngestSummary:
    """Decode flow-export files into the workspace; see the module doc.

    ``enricher`` fills AS numbers, countries and interface names (``collectors.enrich``).
    """
    started = time.monotonic()
    workspace.ensure()
    limits = {
        "max_templates_per_exporter": max_templates_per_exporter,
        "max_pending_bytes_per_exporter": max_pending_bytes_per_exporter,
    }
    state_path: Path | None
    if decoder_state is None:
        state_path = None
        decoder = FlowDecoder(**limits)
    else:
        state_path = (
            decoder_state
            if isinstance(decoder_state, Path)
            else workspace.state / f"{decoder_state}.json"
        )
        decoder = load_decoder_state(state_path, **limits)
    summary = FlowIngestSummary()
    stats: Counter[str] = Counter()
    for p in paths:
        summary.files.append(_ingest_one(Path(p), decoder, workspace, stats, enricher))
    if state_path is not None:
        save_decoder_state(decoder, state_path)
    summary.stats = dict(stats)
    summary.elapsed_s = time.monotonic() - started
    return summary

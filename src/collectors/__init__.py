"""Collectors: bytes (packets, flow exports, CDR files) to Arrow record batches and Parquet.

The public API is listed in ``__all__``. Names are imported on first use (PEP 562), so
``import collectors`` stays cheap: decoders and Numba kernels load only when needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collectors.errors import (
    CollectorError,
    CorruptFileError,
    DecodeError,
    IngestError,
    RatingEngineError,
    WorkspaceError,
)
from collectors.lazy import lazy_getattr

if TYPE_CHECKING:
    from collectors.addresses import address_from_bytes, address_to_bytes
    from collectors.cdr.ingest import CdrIngestSummary, ingest_cdr_files, recover_cdr_ingest
    from collectors.cdr.mapping import CdrMapping, load_mapping
    from collectors.dataset import atomic_write_table, read_dataset, write_partitioned
    from collectors.flows.datagram_files import iter_datagram_files, iter_datagrams_from_pcap
    from collectors.flows.decoder import DecodeOutcome, FlowDecoder
    from collectors.flows.ingest import FlowIngestSummary, ingest_flow_files
    from collectors.flows.sequence import SequenceTracker
    from collectors.pcap.ingest import PcapIngestSummary, ingest_pcap_files
    from collectors.pcap.live_capture import LiveCaptureSummary, run_live_capture
    from collectors.pcap.metering import FlowMeter, MeteringOptions
    from collectors.pcap.packet_kernel import PACKET_SCHEMA
    from collectors.pcap.reader import CaptureReader, read_packets
    from collectors.schemas import FLOW_SCHEMA, REJECT_SCHEMA, USAGE_SCHEMA
    from collectors.sflow.datagram import COUNTER_SCHEMA, SflowDecoder
    from collectors.udp.service import CollectorSummary, run_collector
    from collectors.udp.stats import STATS_SCHEMA
    from collectors.usage_records import usage_table
    from collectors.workspace import WorkspacePaths, resolve_workspace

_LAZY = {
    "address_from_bytes": "addresses",
    "address_to_bytes": "addresses",
    "CdrIngestSummary": "cdr.ingest",
    "ingest_cdr_files": "cdr.ingest",
    "recover_cdr_ingest": "cdr.ingest",
    "CdrMapping": "cdr.mapping",
    "load_mapping": "cdr.mapping",
    "STATS_SCHEMA": "udp.stats",
    "atomic_write_table": "dataset",
    "read_dataset": "dataset",
    "write_partitioned": "dataset",
    "iter_datagram_files": "flows.datagram_files",
    "iter_datagrams_from_pcap": "flows.datagram_files",
    "DecodeOutcome": "flows.decoder",
    "FlowDecoder": "flows.decoder",
    "FlowIngestSummary": "flows.ingest",
    "ingest_flow_files": "flows.ingest",
    "LiveCaptureSummary": "pcap.live_capture",
    "run_live_capture": "pcap.live_capture",
    "FlowMeter": "pcap.metering",
    "MeteringOptions": "pcap.metering",
    "PACKET_SCHEMA": "pcap.packet_kernel",
    "CaptureReader": "pcap.reader",
    "read_packets": "pcap.reader",
    "PcapIngestSummary": "pcap.ingest",
    "ingest_pcap_files": "pcap.ingest",
    "FLOW_SCHEMA": "schemas",
    "REJECT_SCHEMA": "schemas",
    "USAGE_SCHEMA": "schemas",
    "SequenceTracker": "flows.sequence",
    "COUNTER_SCHEMA": "sflow.datagram",
    "SflowDecoder": "sflow.datagram",
    "CollectorSummary": "udp.service",
    "run_collector": "udp.service",
    "usage_table": "usage_records",
    "WorkspacePaths": "workspace",
    "resolve_workspace": "workspace",
}

__all__ = [
    "COUNTER_SCHEMA",
    "FLOW_SCHEMA",
    "PACKET_SCHEMA",
    "REJECT_SCHEMA",
    "STATS_SCHEMA",
    "USAGE_SCHEMA",
    "CaptureReader",
    "CdrIngestSummary",
    "CdrMapping",
    "CollectorError",
    "CollectorSummary",
    "CorruptFileError",
    "DecodeError",
    "DecodeOutcome",
    "FlowDecoder",
    "FlowIngestSummary",
    "FlowMeter",
    "IngestError",
    "LiveCaptureSummary",
    "MeteringOptions",
    "PcapIngestSummary",
    "RatingEngineError",
    "SequenceTracker",
    "SflowDecoder",
    "WorkspaceError",
    "WorkspacePaths",
    "address_from_bytes",
    "address_to_bytes",
    "atomic_write_table",
    "ingest_cdr_files",
    "ingest_flow_files",
    "ingest_pcap_files",
    "iter_datagram_files",
    "iter_datagrams_from_pcap",
    "load_mapping",
    "read_dataset",
    "read_packets",
    "recover_cdr_ingest",
    "resolve_workspace",
    "run_collector",
    "run_live_capture",
    "usage_table",
    "write_partitioned",
]


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return __all__

"""Collectors: bytes (packets, flow exports, CDR files) to Arrow record batches and Parquet.

The public API is listed in ``__all__``. Names are imported on first use (PEP 562), so
``import collectors`` stays cheap: decoders and Numba kernels load only when needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import CollectorError, DecodeError, IngestError, RatingEngineError, WorkspaceError
from .lazy import lazy_getattr

if TYPE_CHECKING:
    from .addresses import address_from_bytes, address_to_bytes
    from .cdr_ingest import CdrIngestSummary, ingest_cdr_files, recover_cdr_ingest
    from .cdr_mapping import CdrMapping, load_mapping
    from .collector_stats import STATS_SCHEMA
    from .datagram_files import iter_datagram_files, iter_datagrams_from_pcap
    from .dataset import atomic_write_table, read_dataset, write_partitioned
    from .flow_decoder import DecodeOutcome, FlowDecoder
    from .flow_ingest import FlowIngestSummary, ingest_flow_files
    from .live_capture import LiveCaptureSummary, run_live_capture
    from .metering import FlowMeter, MeteringOptions
    from .packet_kernel import PACKET_SCHEMA
    from .pcap import CaptureReader, read_packets
    from .pcap_ingest import PcapIngestSummary, ingest_pcap_files
    from .schemas import FLOW_SCHEMA, REJECT_SCHEMA, USAGE_SCHEMA
    from .sequence import SequenceTracker
    from .sflow import COUNTER_SCHEMA, SflowDecoder
    from .udp_collector import CollectorSummary, run_collector
    from .workspace import WorkspacePaths, resolve_workspace

_LAZY = {
    "address_from_bytes": "addresses",
    "address_to_bytes": "addresses",
    "CdrIngestSummary": "cdr_ingest",
    "ingest_cdr_files": "cdr_ingest",
    "recover_cdr_ingest": "cdr_ingest",
    "CdrMapping": "cdr_mapping",
    "load_mapping": "cdr_mapping",
    "STATS_SCHEMA": "collector_stats",
    "atomic_write_table": "dataset",
    "read_dataset": "dataset",
    "write_partitioned": "dataset",
    "iter_datagram_files": "datagram_files",
    "iter_datagrams_from_pcap": "datagram_files",
    "DecodeOutcome": "flow_decoder",
    "FlowDecoder": "flow_decoder",
    "FlowIngestSummary": "flow_ingest",
    "ingest_flow_files": "flow_ingest",
    "LiveCaptureSummary": "live_capture",
    "run_live_capture": "live_capture",
    "FlowMeter": "metering",
    "MeteringOptions": "metering",
    "PACKET_SCHEMA": "packet_kernel",
    "CaptureReader": "pcap",
    "read_packets": "pcap",
    "PcapIngestSummary": "pcap_ingest",
    "ingest_pcap_files": "pcap_ingest",
    "FLOW_SCHEMA": "schemas",
    "REJECT_SCHEMA": "schemas",
    "USAGE_SCHEMA": "schemas",
    "SequenceTracker": "sequence",
    "COUNTER_SCHEMA": "sflow",
    "SflowDecoder": "sflow",
    "CollectorSummary": "udp_collector",
    "run_collector": "udp_collector",
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
    "write_partitioned",
]


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return __all__

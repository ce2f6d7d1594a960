"""Collectors: bytes (packets, flow exports, CDR files) to Arrow record batches and Parquet."""

from .addresses import address_from_bytes, address_to_bytes
from .dataset import atomic_write_table, read_dataset, write_partitioned
from .errors import CollectorError, DecodeError, IngestError, RatingEngineError, WorkspaceError
from .schemas import FLOW_SCHEMA, REJECT_SCHEMA, USAGE_SCHEMA
from .workspace import WorkspacePaths, resolve_workspace

__all__ = [
    "FLOW_SCHEMA",
    "REJECT_SCHEMA",
    "USAGE_SCHEMA",
    "CollectorError",
    "DecodeError",
    "IngestError",
    "RatingEngineError",
    "WorkspaceError",
    "WorkspacePaths",
    "address_from_bytes",
    "address_to_bytes",
    "atomic_write_table",
    "read_dataset",
    "resolve_workspace",
    "write_partitioned",
]

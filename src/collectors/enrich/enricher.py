"""Flow enrichment at ingest and collect time: AS numbers, countries, interface names.

:class:`FlowEnricher` fills, on each ``FLOW_SCHEMA`` batch:

* ``src_as`` / ``dst_as`` from the ASN database where the exporter left 0 (an AS the
  exporter reported is kept: it is the router's own view, BGP included);
* ``src_country`` / ``dst_country`` (ISO 3166-1 alpha-2) from the geo database;
* ``input_if_name`` / ``output_if_name`` / ``input_if_speed`` / ``output_if_speed``
  from the interface files, by exporter and ifIndex.

Columns it has no source for stay null. Both databases are merged into one range table
at start, so each address costs one look-up whatever is configured
(:mod:`collectors.enrich.networks`). Everything is read and checked in
:meth:`FlowEnricher.open`, before traffic; :meth:`FlowEnricher.enrich` never raises on
flow data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from collectors.enrich.interfaces import InterfaceTable, load_interface_files
from collectors.enrich.mmdb import GeoDatabase, load_asn_database, load_geo_database
from collectors.enrich.networks import Networks, lookup_ranges, merge_networks

__all__ = ["ENRICHMENT_COLUMNS", "FlowEnricher"]

#: The ``FLOW_SCHEMA`` columns only enrichment fills (null without it).
ENRICHMENT_COLUMNS = (
    "src_country",
    "dst_country",
    "input_if_name",
    "output_if_name",
    "input_if_speed",
    "output_if_speed",
)


def _addresses(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A ``binary(16)`` column as ``(n, 16)`` uint8 (zero copy for one chunk)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    data = column.buffers()[1]
    start = column.offset * 16
    return np.frombuffer(data, np.uint8, len(column) * 16, start).reshape(-1, 16)


def _numbers(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False))


@dataclass
class FlowEnricher:
    """What to fill, read once; :meth:`enrich` applies it to each batch."""

    asn: GeoDatabase | None = None
    geo: GeoDatabase | None = None
    interfaces: InterfaceTable | None = None
    _networks: Networks | None = field(default=None, init=False, repr=False)
    _asn_col: int = field(default=-1, init=False, repr=False)
    _geo_col: int = field(default=-1, init=False, repr=False)
    _countries: pa.Array = field(
        default_factory=lambda: pa.array([], pa.string()), init=False, repr=False
    )
    _code_bytes: np.ndarray = field(
        default_factory=lambda: np.empty(0, np.uint16), init=False, repr=False
    )

    def __post_init__(self) -> None:
        parts: list[Networks] = []
        if self.asn is not None:
            self._asn_col = len(parts)
            parts.append(self.asn.networks)
        if self.geo is not None:
            self._geo_col = len(parts)
            parts.append(self.geo.networks)
            self._countries = pa.array(list(self.geo.codes), pa.string())
        self._networks = merge_networks(parts) if parts else None
        if self._networks is not None:
            _ = self._networks.v4_dense  # built at start, not on the first batch
        # every code is two ASCII letters (mmdb.py keeps no other): a column of them is
        # built from two bytes a row, not by Arrow's string take (~5x slower)
        codes = self.geo.codes if self.geo is not None else ()
        if all(len(c.encode()) == 2 for c in codes):
            self._code_bytes = np.frombuffer("".join(codes).encode(), np.uint16)

    @classmethod
    def open(
        cls,
        *,
        asn_db: Path | None = None,
        geo_db: Path | None = None,
        interfaces: Iterable[Path] = (),
    ) -> FlowEnricher | None:
        """Read the databases and interface files (errors name the file); None if none given."""
        files = list(interfaces)
        if asn_db is None and geo_db is None and not files:
            return None
        return cls(
            asn=load_asn_database(Path(asn_db)) if asn_db is not None else None,
            geo=load_geo_database(Path(geo_db)) if geo_db is not None else None,
            interfaces=load_interface_files(files) if files else None,
        )

    def describe(self) -> dict[str, Any]:
        """What is loaded, for logs and ``--json`` output."""
        out: dict[str, Any] = {}
        for name, db in (("asn_db", self.asn), ("geo_db", self.geo)):
            if db is not None:
                out[name] = {
                    "path": str(db.path),
                    "type": db.database_type,
                    "networks": len(db.networks),
                    "skipped": db.skipped,
                    "load_s": round(db.load_seconds, 3),
                }
        if self.interfaces is not None:
            out["interfaces"] = {
                "exporters": len(self.interfaces.exporters),
                "interfaces": len(self.interfaces),
            }
        return out

    def _country_column(self, code: np.ndarray) -> pa.Array:
        """Country codes (indices into the geo database's codes, -1: none) as a string
        column, null where none: offsets step by 2 over found rows, data their bytes."""
        found = code >= 0
        n = code.shape[0]
        if self._code_bytes.shape[0] != len(self._countries):  # not all 2 letters
            return self._countries.take(pa.array(code, pa.int64(), mask=~found))
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(found.astype(np.int32) * 2, out=offsets[1:])
        data = self._code_bytes[code[found]]
        validity = None if found.all() else pa.py_buffer(np.packbits(found, bitorder="little"))
        return pa.StringArray.from_buffers(
            n, pa.py_buffer(offsets), pa.py_buffer(data), validity, n - int(found.sum())
        )

    def enrich(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with the enrichment columns filled (``FLOW_SCHEMA`` in and out)."""
        n = batch.num_rows
        if n == 0:
            return batch
        schema = batch.schema
        arrays = list(batch.columns)

        def put(name: str, array: pa.Array) -> None:
            arrays[schema.get_field_index(name)] = array

        if self._networks is not None:
            for side in ("src", "dst"):
                values = lookup_ranges(self._networks, _addresses(batch.column(f"{side}_addr")))
                if self._asn_col >= 0:
                    found = values[:, self._asn_col]
                    old = _numbers(batch.column(f"{side}_as"))
                    fill = (old == 0) & (found > 0)
                    if fill.any():
                        put(f"{side}_as", pa.array(np.where(fill, found, old).astype(np.uint32)))
                if self._geo_col >= 0:
                    put(f"{side}_country", self._country_column(values[:, self._geo_col]))
        if self.interfaces is not None and len(self.interfaces):
            exporter = batch.column("exporter")
            for side in ("input", "output"):
                rows = self.interfaces.rows(exporter, _numbers(batch.column(f"{side}_if")))
                take = pa.array(rows, pa.int64(), mask=rows < 0)
                put(f"{side}_if_name", self.interfaces.names.take(take))
                put(f"{side}_if_speed", self.interfaces.speeds.take(take))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

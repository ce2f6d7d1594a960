"""Flow enrichment at ingest and collect time: AS numbers, countries, interface names.

:class:`FlowEnricher` fills, on each ``FLOW_SCHEMA`` batch:

* ``src_as`` / ``dst_as`` from the ASN database where the exporter left 0 (an AS the
  exporter reported is kept: it is the router's own view, BGP included);
* ``src_country`` / ``dst_country`` (ISO 3166-1 alpha-2) from the geo database;
* ``input_if_name`` / ``output_if_name`` / ``input_if_speed`` / ``output_if_speed``
  from the interface files, by exporter and ifIndex.

Columns it has no source for stay null. Both databases are merged into one range table
at start, each range carrying its AS number and country packed in one word, so each
address costs one look-up whatever is configured, and one compiled pass over a batch
writes a side's AS numbers and its country column's Arrow buffers
(:mod:`collectors.enrich.address_index`). Everything is read and checked in
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

from collectors.enrich.address_index import (
    AddressIndex,
    Enriched,
    build_index,
    enrich_side,
    pack_values,
)
from collectors.enrich.interfaces import InterfaceTable, load_interface_files
from collectors.enrich.mmdb import GeoDatabase, load_asn_database, load_geo_database
from collectors.enrich.networks import Networks, merge_networks

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


def _packed(networks: Networks, asn_col: int, geo_col: int, codes: tuple[str, ...]) -> AddressIndex:
    """The merged ranges' index, each range's payload its AS number and country letters."""
    # every code is two ASCII letters (mmdb.py keeps no other): as a native uint16 they are
    # the bytes a string column holds
    letters = np.frombuffer("".join(codes).encode("ascii"), np.uint16)
    if letters.shape[0] != len(codes):
        raise ValueError("country codes must be two ASCII letters")
    letters = np.append(letters, np.uint16(0))  # index -1: none

    def payloads(values: np.ndarray) -> np.ndarray:
        asn = np.maximum(values[:, asn_col], 0) if asn_col >= 0 else np.zeros(len(values), np.int64)
        geo = letters[values[:, geo_col]] if geo_col >= 0 else np.zeros(len(values), np.int64)
        return pack_values(asn, geo)

    n = networks
    return build_index(
        (n.v4_start, n.v4_end, payloads(n.v4_values)),
        (n.v6_start_hi, n.v6_start_lo, n.v6_end_hi, n.v6_end_lo, payloads(n.v6_values)),
    )


def _as_column(values: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(pa.uint32(), values.shape[0], [None, pa.py_buffer(values)])


@dataclass
class FlowEnricher:
    """What to fill, read once; :meth:`enrich` applies it to each batch."""

    asn: GeoDatabase | None = None
    geo: GeoDatabase | None = None
    interfaces: InterfaceTable | None = None
    _index: AddressIndex | None = field(default=None, init=False, repr=False)
    _offsets: np.ndarray = field(
        default_factory=lambda: np.zeros(1, np.int32), init=False, repr=False
    )

    def __post_init__(self) -> None:
        parts: list[Networks] = []
        asn_col = geo_col = -1
        if self.asn is not None:
            asn_col = len(parts)
            parts.append(self.asn.networks)
        if self.geo is not None:
            geo_col = len(parts)
            parts.append(self.geo.networks)
        if parts:
            codes = self.geo.codes if self.geo is not None else ()
            self._index = _packed(merge_networks(parts), asn_col, geo_col, codes)

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

    def _country_column(self, got: Enriched) -> pa.Array:
        """A string column of two letters a row, null where none was found: every row
        takes two bytes, so the offsets are a constant 0, 2, 4... shared by all batches
        (Arrow lets a null slot hold bytes; readers never see them)."""
        n = got.letters.shape[0]
        if self._offsets.shape[0] <= n:
            self._offsets = np.arange(0, 2 * (2 * n + 1), 2, dtype=np.int32)
        found = got.found
        bits = None if got.valid is None else pa.py_buffer(got.valid)
        offsets = pa.py_buffer(self._offsets[: n + 1])
        return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(got.letters), bits, n - found)

    def enrich(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with the enrichment columns filled (``FLOW_SCHEMA`` in and out)."""
        n = batch.num_rows
        if n == 0:
            return batch
        schema = batch.schema
        out = batch

        def put(name: str, array: pa.Array) -> None:
            # one column replaced: rebuilding the batch from all its columns cost ~130 us a
            # batch in Python wrappers (2 ns a flow of a 60,000-flow batch)
            nonlocal out
            i = schema.get_field_index(name)
            out = out.set_column(i, schema.field(i), array)

        if self._index is not None:
            for side in ("src", "dst"):
                got = enrich_side(
                    self._index,
                    _addresses(batch.column(f"{side}_addr")),
                    _numbers(batch.column(f"{side}_as")).astype(np.uint32, copy=False),
                )
                if got.filled:
                    put(f"{side}_as", _as_column(got.as_numbers))
                if self.geo is not None:
                    put(f"{side}_country", self._country_column(got))
        if self.interfaces is not None and len(self.interfaces):
            exporter = batch.column("exporter")
            for side in ("input", "output"):
                rows = self.interfaces.rows(exporter, _numbers(batch.column(f"{side}_if")))
                take = pa.array(rows, pa.int64(), mask=rows < 0)
                put(f"{side}_if_name", self.interfaces.names.take(take))
                put(f"{side}_if_speed", self.interfaces.speeds.take(take))
        return out

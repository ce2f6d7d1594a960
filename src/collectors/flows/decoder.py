"""The flow decoder dispatcher: datagrams of any export format in, ``FLOW_SCHEMA`` out.

:class:`FlowDecoder` looks at each datagram's version - a big-endian uint16 of 1, 5 or
7 (NetFlow legacy, decoded in bulk by one Numba kernel), 9 or 10 (NetFlow v9 / IPFIX,
through the template session), or a uint32 of 5 (sFlow v5, handed to
``collectors.sflow.datagram.SflowDecoder``) - and returns one :class:`DecodeOutcome` per call.
Bad datagrams become ``rejected`` entries and ``malformed:<reason>`` counts; no
exception escapes a decode. A record that yields no address and no volume
(:mod:`collectors.flows.empty_records`) is rejected the same way, one entry per record
under the index of its datagram, and the good records beside it are kept. Template,
sampler and sequence state persist through :meth:`FlowDecoder.save_state` /
:meth:`FlowDecoder.load_state`.

Flows of one call come grouped by decoder (legacy NetFlow, then v9/IPFIX, then sFlow),
each group in datagram order.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import pyarrow as pa

from collectors.addresses import address_from_bytes
from collectors.errors import DecodeError
from collectors.flows.batch import concat_flow_batches, empty_flow_batch, to_record_batch
from collectors.flows.empty_records import EMPTY_RECORD, empty_records
from collectors.flows.exporter_table import ExporterLimits, ExporterTable
from collectors.flows.sequence import SequenceTracker
from collectors.netflow.template_session import TemplateSession
from collectors.netflow.v5 import STATUS_REASONS, decode_legacy_many, pack_datagrams

__all__ = ["DecodeOutcome", "FlowDecoder", "PackedDatagrams"]

log = logging.getLogger(__name__)
_STATE_VERSION = 1
_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"


@dataclass
class DecodeOutcome:
    """What one decode call produced."""

    flows: pa.RecordBatch
    counters: pa.RecordBatch | None
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)


class PackedDatagrams(Sequence[bytes]):
    """Datagrams already back to back in one uint8 array: datagram ``i`` is
    ``buf[offsets[i]:offsets[i + 1]]`` (``offsets``: int64, one more than datagrams).

    :meth:`FlowDecoder.decode_many` decodes them in place (no per-datagram ``bytes``,
    no second packing); indexing gives a datagram as bytes (a copy), for the rare paths
    that keep one (quarantine, sFlow, held v9/IPFIX data)."""

    def __init__(self, buf: np.ndarray, offsets: np.ndarray) -> None:
        if buf.dtype != np.uint8 or buf.ndim != 1 or offsets.dtype != np.int64:
            raise ValueError("PackedDatagrams takes a uint8 buffer and int64 offsets")
        self.buf, self.offsets = buf, offsets

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...
    def __getitem__(self, i: int | slice) -> bytes | list[bytes]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        i %= n
        return self.buf[self.offsets[i] : self.offsets[i + 1]].tobytes()


def _exporter_bytes(e: bytes) -> bytes:
    if len(e) == 16:
        return bytes(e)
    if len(e) == 4:
        return _V4_PREFIX + bytes(e)
    raise ValueError(f"an exporter address is 16 (or 4) bytes, got {len(e)}")


class FlowDecoder:
    """Decode NetFlow v1/v5/v7/v9, IPFIX and sFlow v5 datagrams, keeping per-exporter state.

    Set :attr:`decapsulate_vxlan` to key VXLAN traffic in sampled headers by its inner
    packet (data-centre fabrics).
    """

    def __init__(
        self,
        *,
        max_templates_per_exporter: int = 1024,
        max_pending_bytes_per_exporter: int = 1 << 20,
        max_exporters: int = ExporterLimits.max_exporters,
        exporter_idle_seconds: float = ExporterLimits.idle_seconds,
        max_template_bytes: int = ExporterLimits.max_template_bytes,
        max_pending_bytes: int = ExporterLimits.max_pending_bytes,
    ) -> None:
        self._limits = {
            "max_templates_per_exporter": max_templates_per_exporter,
            "max_pending_bytes_per_exporter": max_pending_bytes_per_exporter,
            "max_template_bytes": max_template_bytes,
            "max_pending_bytes": max_pending_bytes,
        }
        self._decap = False
        self._session = TemplateSession(**self._limits)
        self._sequence = SequenceTracker()
        self._sflow: Any = None
        # All exporters together are bounded too (collectors.flows.exporter_table).
        self._exporters = ExporterTable(
            ExporterLimits(max_exporters, exporter_idle_seconds, max_template_bytes,
                           max_pending_bytes)
        )  # fmt: skip

    @property
    def decapsulate_vxlan(self) -> bool:
        """Flows in sampled headers (sFlow raw headers, IPFIX packet sections) that are
        VXLAN (UDP 4789) are keyed by their inner packet; their volume stays the outer
        packet's (:mod:`collectors.sampled_headers`). Off by default."""
        return self._decap

    @decapsulate_vxlan.setter
    def decapsulate_vxlan(self, on: bool) -> None:
        self._decap = bool(on)
        self._session.decapsulate_vxlan = self._decap
        if self._sflow is not None:
            self._sflow.decapsulate_vxlan = self._decap

    @property
    def sequence(self) -> SequenceTracker:
        """Loss accounting per (exporter, domain, format)."""
        return self._sequence

    @property
    def exporters(self) -> ExporterTable:
        """The exporters admitted to hold state (bounded, least recently used out)."""
        return self._exporters

    @property
    def session(self) -> TemplateSession:
        """The v9/IPFIX template, sampler and pending-data state."""
        return self._session

    def decode(
        self, datagram: bytes, exporter: bytes, received_at_us: int, *, source: str = "udp"
    ) -> DecodeOutcome:
        """Decode one datagram (see :meth:`decode_many`)."""
        return self.decode_many([datagram], [exporter], [received_at_us], source=source)

    def decode_many(
        self,
        datagrams: Sequence[bytes],
        exporters: Sequence[bytes],
        received_at_us: Sequence[int] | np.ndarray,
        *,
        source: str = "udp",
    ) -> DecodeOutcome:
        """Decode datagrams in arrival order; ``exporters`` are 16-byte addresses.

        ``source`` names the input (``udp`` or a file name) in rejection messages.
        """
        n = len(datagrams)
        if len(exporters) != n or len(received_at_us) != n:
            raise ValueError("datagrams, exporters and received_at_us differ in length")
        stats: Counter[str] = Counter(datagrams=n)
        rejected: list[tuple[int, str, str]] = []
        if n == 0:
            return DecodeOutcome(empty_flow_batch(), None, rejected, dict(stats))
        if set(map(type, exporters)) == {bytes} and set(map(len, exporters)) == {16}:
            exp_list = exporters if isinstance(exporters, list) else list(exporters)
        else:
            exp_list = [_exporter_bytes(e) for e in exporters]
        exp_arr = np.frombuffer(b"".join(exp_list), np.uint8).reshape(n, 16)
        received = np.asarray(received_at_us, dtype=np.int64)
        refused = self._admit(exp_arr, exp_list, received, stats)
        data: Sequence[bytes]
        if isinstance(datagrams, PackedDatagrams):
            data, buf, offsets = datagrams, datagrams.buf, datagrams.offsets
        else:
            data = datagrams if isinstance(datagrams, list) else list(datagrams)
            buf, offsets = pack_datagrams(data)
        starts, sizes = offsets[:-1], np.diff(offsets)
        head = np.zeros((n, 4), np.uint32)  # first 4 bytes of each datagram, 0 past its end
        for k in range(4):
            ok = sizes > k
            head[ok, k] = buf[starts[ok] + k]
        v16 = (head[:, 0] << 8) | head[:, 1]
        v32 = (v16 << 16) | (head[:, 2] << 8) | head[:, 3]
        is_sflow = (sizes >= 4) & (v32 == 5)
        is_legacy = ~is_sflow & (sizes >= 2) & np.isin(v16, (1, 5, 7))
        is_tmpl = ~is_sflow & (sizes >= 2) & np.isin(v16, (9, 10))
        for i in np.nonzero(~(is_sflow | is_legacy | is_tmpl | refused))[0].tolist():
            reason = "truncated" if sizes[i] < 2 else "unsupported_version"
            msg = f"{source}: datagram {i}: " + (
                f"{sizes[i]} bytes" if sizes[i] < 2 else f"unknown version {int(v16[i])}"
            )
            rejected.append((i, reason, msg))
            stats[f"malformed:{reason}"] += 1
        if refused.any():  # kept aside, and no state of theirs is made
            for i in np.nonzero(refused)[0].tolist():
                rejected.append(
                    (
                        i,
                        "exporter_limit",
                        f"{source}: datagram {i}: exporter "
                        f"{address_from_bytes(exp_list[i])} refused: "
                        f"{len(self._exporters)} exporters are active (the limit)",
                    )
                )
            stats["malformed:exporter_limit"] += int(refused.sum())
            is_sflow &= ~refused
            is_legacy &= ~refused
            is_tmpl &= ~refused

        batches: list[pa.RecordBatch] = []
        counters: list[pa.RecordBatch] = []
        legacy = np.nonzero(is_legacy)[0]
        if legacy.size:
            batches.append(self._legacy(buf, offsets, legacy, exp_arr, stats, rejected, source))
        tmpl = np.nonzero(is_tmpl)[0]
        if tmpl.size:
            try:
                cols = self._session.decode(
                    tmpl,
                    data,
                    exp_list,
                    received,
                    buf,
                    offsets,
                    stats,
                    rejected,
                    self._sequence,
                    source,
                )
                batches.append(to_record_batch(cols))
            except Exception as exc:  # a bug must not take the collector down
                log.exception("%s: v9/IPFIX decode failed", source)
                for i in tmpl.tolist():
                    rejected.append((i, "internal_error", f"{source}: {exc!r}"))
                    stats["malformed:internal_error"] += 1
        for i in np.nonzero(is_sflow)[0].tolist():
            self._sflow_one(
                i,
                bytes(data[i]),
                exp_list[i],
                int(received[i]),
                batches,
                counters,
                stats,
                rejected,
                source,
            )

        flows = concat_flow_batches(batches)
        stats["flows"] = flows.num_rows
        stats["rejected"] = len(rejected)
        rejected.sort(key=lambda r: r[0])
        counter_batch = None
        if counters:
            counter_batch = counters[0] if len(counters) == 1 else pa.concat_batches(counters)
        return DecodeOutcome(flows, counter_batch, rejected, dict(stats))

    def _admit(
        self,
        exp_arr: np.ndarray,
        exp_list: list[bytes],
        received: np.ndarray,
        stats: Counter[str],
    ) -> np.ndarray:
        """Note the call's exporters in the table; drop the state of those evicted; the
        mask of datagrams whose exporter was refused."""
        keys = exp_arr.view("V16").ravel()
        inverse: np.ndarray | None = None
        if bool((keys == keys[0]).all()):  # the usual call: one exporter
            unique, latest = [exp_list[0]], [int(received.max())]
        else:
            values, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            last = np.full(values.shape[0], np.iinfo(np.int64).min, np.int64)
            np.maximum.at(last, inverse, received)
            unique, latest = [exp_list[i] for i in first.tolist()], last.tolist()
        refused, evicted = self._exporters.admit(unique, latest)
        for exporter in evicted:
            self._session.forget_exporter(exporter)
            self._sequence.forget_exporter(exporter)
        if evicted:
            stats["exporter_evicted"] += len(evicted)
        mask = np.zeros(len(exp_list), np.bool_)
        if refused:
            gone = np.array([u in refused for u in unique], np.bool_)
            mask = gone[inverse] if inverse is not None else np.full(len(exp_list), gone[0])
        return mask

    def _legacy(
        self,
        buf: np.ndarray,
        offsets: np.ndarray,
        idx: np.ndarray,
        exp_arr: np.ndarray,
        stats: Counter[str],
        rejected: list[tuple[int, str, str]],
        source: str,
    ) -> pa.RecordBatch:
        exporters = np.take(exp_arr, idx, axis=0)
        res = decode_legacy_many(buf, offsets[idx], offsets[idx + 1], exporters)
        bad = np.nonzero(res.status)[0]
        for j in bad.tolist():
            reason = STATUS_REASONS[int(res.status[j])]
            i = int(idx[j])
            rejected.append(
                (i, reason, f"{source}: datagram {i}: NetFlow v{int(res.version[j])} {reason}")
            )
            stats[f"malformed:{reason}"] += 1
        for ver, kind in ((5, "netflow_v5"), (7, "netflow_v7")):
            sel = (res.status == 0) & (res.version == ver)
            if sel.any():
                self._sequence.observe_many(
                    exporters[sel], res.domain[sel], kind, res.sequence[sel], res.count[sel]
                )
        cols = res.columns
        empty = empty_records(cols)
        if empty.size:
            # Record k of datagram j sits at row first_row[j] + k (rows in datagram order).
            pos = np.searchsorted(res.first_row, empty, side="right") - 1
            for r, j in zip(empty.tolist(), pos.tolist(), strict=True):
                i = int(idx[j])
                rejected.append(
                    (
                        i,
                        EMPTY_RECORD,
                        f"{source}: datagram {i}: NetFlow v{int(res.version[j])} record "
                        f"{r - int(res.first_row[j])}: no address and no volume (source and "
                        "destination 0.0.0.0, 0 bytes, 0 packets)",
                    )
                )
            stats[f"malformed:{EMPTY_RECORD}"] += int(empty.size)
            keep = np.ones(len(cols), np.bool_)
            keep[empty] = False
            cols = cols.take(keep)
        return to_record_batch(cols)

    def _sflow_one(
        self,
        i: int,
        datagram: bytes,
        exporter: bytes,
        received: int,
        batches: list[pa.RecordBatch],
        counters: list[pa.RecordBatch],
        stats: Counter[str],
        rejected: list[tuple[int, str, str]],
        source: str,
    ) -> None:
        if self._sflow is None:
            try:
                from collectors.sflow.datagram import SflowDecoder
            except ImportError:
                rejected.append((i, "unsupported_version", f"{source}: no sFlow decoder"))
                stats["malformed:unsupported_version"] += 1
                return
            self._sflow = SflowDecoder(decapsulate_vxlan=self.decapsulate_vxlan)
        try:
            flows, ctrs, st = self._sflow.decode(datagram, exporter, received)
        except DecodeError as exc:
            rejected.append((i, exc.reason, f"{source}: datagram {i}: {exc}"))
            stats[f"malformed:{exc.reason}"] += 1
            return
        except Exception as exc:  # a bug must not take the collector down
            log.exception("%s: sFlow decode failed", source)
            rejected.append((i, "internal_error", f"{source}: datagram {i}: {exc!r}"))
            stats["malformed:internal_error"] += 1
            return
        batches.append(flows)
        if ctrs is not None and ctrs.num_rows:
            counters.append(ctrs)
        for k, v in st.items():
            stats[f"sflow:{k}" if k in ("datagrams", "flows") else k] += int(v)
        # Header: version, address type (1 IPv4, 2 IPv6), agent, sub-agent id, sequence.
        alen = 16 if int.from_bytes(datagram[4:8], "big") == 2 else 4
        tail = datagram[8 + alen : 16 + alen]
        if len(tail) == 8:
            sub_agent, seq = int.from_bytes(tail[:4], "big"), int.from_bytes(tail[4:], "big")
            self._sequence.observe(exporter, sub_agent, "sflow", seq, 1)

    # -- persistence -------------------------------------------------------------------------
    def save_state(self) -> bytes:
        """Templates, sampler options, held data and sequence state as UTF-8 JSON."""
        doc = {
            "version": _STATE_VERSION,
            "session": self._session.to_json(),
            "sequence": self._sequence.to_json(),
        }
        return json.dumps(doc).encode()

    @classmethod
    def load_state(cls, blob: bytes, **kwargs: Any) -> FlowDecoder:
        """A decoder restored from :meth:`save_state`; ``kwargs`` as for the constructor.
        Restored exporters count as long idle; those beyond ``max_exporters`` are dropped."""
        doc = json.loads(blob.decode())
        if doc.get("version") != _STATE_VERSION:
            raise DecodeError("bad_state", f"decoder state version {doc.get('version')!r}")
        dec = cls(**kwargs)
        dec._session = TemplateSession.from_json(doc["session"], **dec._limits)
        dec._sequence = SequenceTracker.from_json(doc["sequence"])
        for exporter in dec._exporters.restore(
            dec._session.exporters() | dec._sequence.exporters()
        ):
            dec._session.forget_exporter(exporter)
            dec._sequence.forget_exporter(exporter)
        return dec

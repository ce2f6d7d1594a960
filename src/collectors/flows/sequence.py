"""Loss accounting from export sequence numbers, per exporter, observation domain and format.

What a sequence number counts differs by format: NetFlow v5/v7 count flows, v9 counts
export packets, IPFIX counts data records and sFlow counts datagrams. Arithmetic is
modulo 2**32 (RFC 1982 serial numbers), so the counters wrap safely. A forward jump is
counted as missing units and remembered as a gap; a later datagram that falls into a
remembered gap is *out of order* (and no longer missing); a backward step outside any
gap is a *duplicate*; a jump larger than ``reset_threshold`` either way is an exporter
restart (*reset*) and starts counting afresh. Accounting never drops data.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["SEQUENCE_KINDS", "SequenceState", "SequenceTracker"]

#: Formats and the unit their sequence number counts.
SEQUENCE_KINDS: dict[str, str] = {
    "netflow_v5": "flows",
    "netflow_v7": "flows",
    "netflow_v9": "packets",
    "ipfix": "records",
    "sflow": "datagrams",
}
_MOD = 1 << 32


def _signed(d: int) -> int:
    d &= 0xFFFFFFFF
    return d - _MOD if d >= 1 << 31 else d


@dataclass
class SequenceState:
    """Counters for one (exporter, domain, kind); ``missing`` is in the kind's units."""

    expected: int | None = None
    received: int = 0
    missing: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    resets: int = 0
    gaps: list[list[int]] = field(default_factory=list)  # [start, length] pairs, mod 2**32


class SequenceTracker:
    """Per-key sequence state; ``observe`` for single datagrams, ``observe_many`` for bulk."""

    def __init__(self, *, reset_threshold: int = 1 << 24, max_gaps: int = 64) -> None:
        self.reset_threshold = reset_threshold
        self.max_gaps = max_gaps
        self._states: dict[tuple[bytes, int, str], SequenceState] = {}

    def state(self, exporter: bytes, domain: int, kind: str) -> SequenceState | None:
        """The counters of one key, or None if it was never seen."""
        return self._states.get((exporter, domain, kind))

    def observe(
        self, exporter: bytes, domain: int, kind: str, sequence: int, count: int | None
    ) -> str:
        """Account one datagram; ``count`` units it carries (None: unknown, resync next time).

        Returns the outcome: first, in_order, gap, out_of_order, duplicate or reset.
        """
        key = (exporter, domain, kind)
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = SequenceState()
        units = count or 0
        st.received += units
        if st.expected is None:
            outcome = "first"
        else:
            d = _signed(sequence - st.expected)
            if d == 0:
                outcome = "in_order"
            elif abs(d) > self.reset_threshold:
                st.resets += 1
                st.gaps.clear()
                outcome = "reset"
            elif d > 0:
                st.missing += d
                st.gaps.append([st.expected, d])
                if len(st.gaps) > self.max_gaps:
                    del st.gaps[0]  # the oldest gap stays counted as missing for good
                outcome = "gap"
            else:
                if self._fill_gap(st, sequence, max(units, 1)):
                    st.out_of_order += 1
                    return "out_of_order"  # late data does not move ``expected`` back
                st.duplicated += 1
                return "duplicate"
        st.expected = None if count is None else (sequence + count) % _MOD
        return outcome

    @staticmethod
    def _fill_gap(st: SequenceState, sequence: int, units: int) -> bool:
        for i, (start, length) in enumerate(st.gaps):
            off = (sequence - start) % _MOD
            if off < length:
                covered = min(units, length - off)
                st.missing -= covered
                pieces = []
                if off > 0:
                    pieces.append([start, off])
                tail = length - off - covered
                if tail > 0:
                    pieces.append([(start + off + covered) % _MOD, tail])
                st.gaps[i : i + 1] = pieces
                return True
        return False

    def observe_many(
        self,
        exporters: np.ndarray,
        domains: np.ndarray,
        kind: str,
        sequences: np.ndarray,
        counts: np.ndarray,
    ) -> None:
        """Account many datagrams of one kind in arrival order.

        ``exporters`` is ``(n, 16)`` uint8; a negative count means unknown (as None in
        :meth:`observe`). Keys are grouped with numpy and a key whose
        datagrams all follow on from each other is settled without a per-datagram loop.
        """
        n = int(domains.shape[0])
        if n == 0:
            return
        raw = np.empty((n, 20), np.uint8)
        raw[:, :16] = exporters
        raw[:, 16:] = domains.astype(">u4").view(np.uint8).reshape(n, 4)
        if bool((raw == raw[0]).all()):  # the usual batch: one exporter and domain
            uniq = raw[:1].view("V20").ravel()
            order = np.arange(n)
            bounds = np.array([0, n])
        else:
            uniq, inverse = np.unique(raw.view("V20").ravel(), return_inverse=True)
            order = np.argsort(inverse, kind="stable")
            bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
        seq_all = sequences.astype(np.int64)
        cnt_all = counts.astype(np.int64)
        for u in range(len(uniq)):
            idx = order[bounds[u] : bounds[u + 1]]
            key_raw = uniq[u].tobytes()
            key = (key_raw[:16], int.from_bytes(key_raw[16:], "big"), kind)
            s, c = seq_all[idx], cnt_all[idx]
            st = self._states.get(key)
            if st is None or st.expected is None:
                # The first datagram (re)starts the count; the rest may still be in order.
                self.observe(key[0], key[1], kind, int(s[0]), int(c[0]) if c[0] >= 0 else None)
                s, c = s[1:], c[1:]
                st = self._states[key]
            if not len(s):
                continue
            if st.expected is not None and bool((c >= 0).all()):
                prev = np.empty_like(s)
                prev[0] = st.expected
                prev[1:] = (s[:-1] + c[:-1]) % _MOD
                if bool(np.all(s == prev)):
                    st.received += int(c.sum())
                    st.expected = int((s[-1] + c[-1]) % _MOD)
                    continue
            for sv, cv in zip(s.tolist(), c.tolist(), strict=True):
                self.observe(key[0], key[1], kind, sv, cv if cv >= 0 else None)

    def forget_exporter(self, exporter: bytes) -> None:
        """Drop the counters of ``exporter`` (evicted to make room for another)."""
        for key in [k for k in self._states if k[0] == exporter]:
            del self._states[key]

    def exporters(self) -> set[bytes]:
        """Every exporter with counters here."""
        return {key[0] for key in self._states}

    def snapshot(self) -> list[dict[str, int | str | None]]:
        """One row per key: exporter (hex), domain, kind, unit and the counters."""
        rows: list[dict[str, int | str | None]] = []
        for (exp, dom, kind), st in self._states.items():
            rows.append(
                {
                    "exporter": exp.hex(),
                    "domain": dom,
                    "kind": kind,
                    "unit": SEQUENCE_KINDS.get(kind, "units"),
                    "received": st.received,
                    "missing": st.missing,
                    "duplicated": st.duplicated,
                    "out_of_order": st.out_of_order,
                    "resets": st.resets,
                    "expected": st.expected,
                }
            )
        return rows

    def totals(self) -> dict[str, int]:
        """Sums of missing, duplicated, out_of_order and resets over all keys."""
        out = {"missing": 0, "duplicated": 0, "out_of_order": 0, "resets": 0}
        for st in self._states.values():
            out["missing"] += st.missing
            out["duplicated"] += st.duplicated
            out["out_of_order"] += st.out_of_order
            out["resets"] += st.resets
        return out

    def to_json(self) -> str:
        """The whole state as JSON (exporters base64)."""
        return json.dumps(
            {
                "reset_threshold": self.reset_threshold,
                "max_gaps": self.max_gaps,
                "states": [
                    [base64.b64encode(e).decode(), d, k, asdict(st)]
                    for (e, d, k), st in self._states.items()
                ],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SequenceTracker:
        """Inverse of :meth:`to_json`."""
        doc = json.loads(text)
        tracker = cls(reset_threshold=doc["reset_threshold"], max_gaps=doc["max_gaps"])
        for e, d, k, st in doc["states"]:
            tracker._states[(base64.b64decode(e), int(d), str(k))] = SequenceState(**st)
        return tracker

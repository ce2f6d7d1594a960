"""Which exporters may hold decoder state: a bounded table, least recently used first out.

Templates and held data are capped per exporter, but a UDP source address costs an attacker
nothing: 200 spoofed sources each filling their own caps grew a collector by ~120 MB. The
decoder admits at most ``max_exporters`` sources. When the table is full, the least
recently seen exporter makes room if it has been idle for ``idle_seconds`` (its templates,
held data, sampler options and sequence counters are dropped: an exporter that comes back
re-sends its templates, as after a restart); otherwise the newcomer is refused and its
datagrams are rejected with reason ``exporter_limit`` (counted and kept aside, never
decoded into state). Times are the datagrams' receive times, so a replayed file behaves as
the live traffic did.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ExporterLimits", "ExporterTable"]


@dataclass(frozen=True)
class ExporterLimits:
    """Bounds on the decoder state of all exporters together."""

    max_exporters: int = 4096
    idle_seconds: float = 900.0
    max_template_bytes: int = 128 << 20  # templates of all exporters (estimated bytes)
    max_pending_bytes: int = 32 << 20  # data sets held for a template, all exporters


class ExporterTable:
    """Admitted exporters by last receive time (microseconds), least recent first."""

    def __init__(self, limits: ExporterLimits | None = None) -> None:
        self.limits = limits or ExporterLimits()
        self._seen: OrderedDict[bytes, int] = OrderedDict()
        self.refused = 0  # exporters turned away (each time one is)
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, exporter: object) -> bool:
        return exporter in self._seen

    def restore(self, exporters: Iterable[bytes]) -> list[bytes]:
        """Admit exporters found in saved state (as long idle); returns those beyond the
        limit, whose state the caller drops."""
        over = []
        for exporter in sorted(exporters):
            if exporter in self._seen:
                continue
            if len(self._seen) < self.limits.max_exporters:
                self._seen[exporter] = 0
                self._seen.move_to_end(exporter, last=False)  # oldest: the first to go
            else:
                over.append(exporter)
        return over

    def admit(
        self, exporters: Sequence[bytes], last_seen_us: Sequence[int]
    ) -> tuple[set[bytes], list[bytes]]:
        """Note that ``exporters`` sent at ``last_seen_us``; returns (the exporters refused,
        the exporters evicted to make room)."""
        refused: set[bytes] = set()
        evicted: list[bytes] = []
        idle_us = int(self.limits.idle_seconds * 1_000_000)
        for exporter, now in zip(exporters, last_seen_us, strict=True):
            if exporter in self._seen:
                self._seen[exporter] = max(self._seen[exporter], int(now))
                self._seen.move_to_end(exporter)
                continue
            if len(self._seen) >= self.limits.max_exporters:
                oldest, seen = next(iter(self._seen.items()))
                if int(now) - seen < idle_us:
                    refused.add(exporter)
                    self.refused += 1
                    continue
                del self._seen[oldest]
                evicted.append(oldest)
                self.evicted += 1
            self._seen[exporter] = int(now)
        return refused, evicted

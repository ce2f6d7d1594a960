"""Export datagrams from files: pcap / pcapng captures of export traffic and raw ``.bin`` files.

:func:`iter_datagrams_from_pcap` yields every UDP payload (any port) with the sender as a
16-byte address and the capture time in microseconds. It reads with the project's own
capture reader (:class:`collectors.pcap.reader.CaptureReader`): classic pcap and pcapng,
plain or gzip-compressed, every link type that reader decodes (Ethernet with 802.1Q tags,
Linux cooked SLL and SLL2, raw IP, BSD loopback). Later IP fragments, non-UDP packets and
UDP headers cut by snaplen are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from collectors.errors import IngestError
from collectors.pcap.reader import CaptureReader

__all__ = ["iter_datagram_files", "iter_datagrams_from_pcap"]


def iter_datagrams_from_pcap(path: str | Path) -> Iterator[tuple[bytes, bytes, int]]:
    """Yield (UDP payload, exporter as 16 bytes, capture time in microseconds) per packet.

    Raises :class:`IngestError` if the file is not a capture, and after the last whole
    packet if the capture is cut short or damaged (the datagrams before it are yielded).
    """
    reader = CaptureReader(path)
    yield from reader.udp_datagrams()
    if reader.truncated_at is not None or reader.corrupt_at is not None:
        raise IngestError("; ".join(reader.warnings))


def iter_datagram_files(
    paths: list[str | Path],
) -> Iterator[tuple[bytes, bytes, int]]:
    """Datagrams from several files: pcap/pcapng captures, or one raw datagram per ``.bin``.

    A ``.bin`` file has no sender or time: exporter ``::`` and time 0 are reported.
    """
    for p in map(Path, paths):
        if p.suffix == ".bin":
            yield p.read_bytes(), bytes(16), 0
        else:
            yield from iter_datagrams_from_pcap(p)

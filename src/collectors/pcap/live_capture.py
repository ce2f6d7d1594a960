"""``rating-engine collect --interface IFACE``: meter live traffic into ``W/flows``.

Frames come from an ``AF_PACKET`` raw socket (Linux, needs root or
``CAP_NET_RAW``). We read the socket directly rather than through scapy's
sniffer: scapy builds a Python object per packet (tens of thousands of packets
per second at best), while here frames are only copied into a buffer and
decoded in batches by the same Numba kernel as capture files, then metered by
:class:`collectors.pcap.metering.FlowMeter`.

Every ``rotate_seconds`` the flows that ended since the last rotation are written
as one part (``part-live-<iface>-<start>-<pid>-<n>.parquet``); on ``stop_event``
or SIGTERM/SIGINT (when running in the main thread) the capture stops, every
open flow is flushed and written, and the function returns. Time stamps are the
receive time taken in user space. On the loopback interface every packet passes
twice (outgoing and incoming); only the incoming copy is counted.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pyarrow as pa

from collectors.dataset import write_partitioned
from collectors.errors import CollectorError
from collectors.pcap.metering import FlowMeter, MeteringOptions
from collectors.pcap.packet_kernel import (
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    N_U8,
    N_U16,
    N_U32,
    decode_frames,
)
from collectors.pcap.reader import PacketBatch
from collectors.workspace import WorkspacePaths

__all__ = ["LiveCaptureSummary", "run_live_capture"]

log = logging.getLogger(__name__)

_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4
_ARPHRD_ETHER = 1
_ARPHRD_LOOPBACK = 772
_ARPHRD_NONE = 65534
_SNAPLEN = 262144  # above any MTU (loopback is 64 KiB)


@dataclass
class LiveCaptureSummary:
    """What a live capture run saw and wrote."""

    interface: str
    packets: int = 0
    ip_packets: int = 0
    flows: int = 0
    rotations: int = 0
    files: list[Path] = field(default_factory=list)
    elapsed_s: float = 0.0


def _linktype(hatype: int, interface: str) -> int:
    if hatype in (_ARPHRD_ETHER, _ARPHRD_LOOPBACK):
        return LINKTYPE_ETHERNET
    if hatype == _ARPHRD_NONE:
        return LINKTYPE_RAW
    raise CollectorError(f"interface {interface}: unsupported hardware type {hatype}")


def _decode(frames: list[bytes], wire: list[int], stamps: list[int], linktype: int) -> PacketBatch:
    n = len(frames)
    lens = np.fromiter((len(f) for f in frames), np.int64, n)
    wirelens = np.array(wire, np.int64)
    offsets = np.zeros(n, np.int64)
    if n:
        offsets[1:] = np.cumsum(lens)[:-1]
    buf = np.frombuffer(b"".join(frames), np.uint8)
    batch = PacketBatch(
        np.array(stamps, np.int64),
        offsets,
        np.empty((n, 16), np.uint8),
        np.empty((n, 16), np.uint8),
        np.empty((N_U32, n), np.uint32),
        np.empty((N_U16, n), np.uint16),
        np.empty((N_U8, n), np.uint8),
    )
    decode_frames(
        buf,
        offsets,
        lens,
        wirelens,
        linktype,
        batch.src,
        batch.dst,
        batch.u32c,
        batch.u16c,
        batch.u8c,
    )
    return batch


def run_live_capture(
    interface: str,
    workspace: WorkspacePaths,
    *,
    options: MeteringOptions | None = None,
    rotate_seconds: float = 60.0,
    stop_event: threading.Event | None = None,
    batch_packets: int = 4096,
    ready: threading.Event | None = None,
) -> LiveCaptureSummary:
    """Capture on ``interface`` until ``stop_event`` is set (or SIGTERM/SIGINT).

    ``ready`` (optional) is set once the socket is bound and the kernels loaded.
    """
    stop = stop_event or threading.Event()
    workspace.ensure()
    meter = FlowMeter(options or MeteringOptions())
    summary = LiveCaptureSummary(interface)
    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    safe_if = "".join(c if c.isalnum() else "_" for c in interface)
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    except OSError as exc:
        raise CollectorError(f"cannot capture on {interface}: {exc.strerror}") from exc
    # Load the compiled kernels before capturing, so no packet waits on the compiler.
    meter.add(_decode([b""], [0], [0], LINKTYPE_ETHERNET))
    meter.flush()
    try:
        # A large buffer rides out bursts while a batch is metered (FORCE needs root).
        for opt in (33, socket.SO_RCVBUF):  # 33 = SO_RCVBUFFORCE
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, 64 << 20)
                break
            except OSError:
                continue
        sock.bind((interface, 0))
    except OSError as exc:
        sock.close()
        raise CollectorError(f"cannot capture on {interface}: {exc.strerror}") from exc
    sock.settimeout(0.1)
    if ready is not None:
        ready.set()
    old_handlers: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            old_handlers[sig] = signal.signal(sig, on_signal)

    pending: list[pa.Table] = []
    frames: list[bytes] = []
    wire: list[int] = []
    stamps: list[int] = []
    rx = bytearray(_SNAPLEN)
    view = memoryview(rx)
    linktype = -1
    next_rotate = time.monotonic() + rotate_seconds

    def write(tables: list[pa.Table]) -> None:
        table = pa.concat_tables(tables) if tables else None
        if table is None or table.num_rows == 0:
            return
        part = f"live-{safe_if}-{stamp}-{os.getpid()}-{summary.rotations:05d}"
        summary.files += write_partitioned(
            table, workspace.flows, time_column="flow_start", part_name=part
        )
        summary.flows += table.num_rows
        summary.rotations += 1

    def drain() -> None:
        if frames:
            batch = _decode(frames, wire, stamps, linktype)
            summary.packets += len(batch)
            summary.ip_packets += int(batch.ip_mask.sum())
            pending.append(meter.add(batch))
            frames.clear()
            wire.clear()
            stamps.clear()

    try:
        while not stop.is_set():
            try:
                # MSG_TRUNC: the return value is the frame's real length even when cut
                size, addr = sock.recvfrom_into(rx, 0, socket.MSG_TRUNC)
            except TimeoutError:
                size, addr = -1, None
            if addr is not None:
                if linktype < 0:
                    linktype = _linktype(addr[3], interface)
                if not (addr[2] == _PACKET_OUTGOING and addr[3] == _ARPHRD_LOOPBACK):
                    frames.append(bytes(view[: min(size, _SNAPLEN)]))
                    wire.append(size)
                    stamps.append(time.time_ns() // 1000)
            if len(frames) >= batch_packets or (addr is None and frames):
                drain()
            if time.monotonic() >= next_rotate:
                drain()
                pending.append(meter.expire(time.time_ns() // 1000))
                write(pending)
                pending.clear()
                next_rotate = time.monotonic() + rotate_seconds
        drain()
        pending.append(meter.flush())
        write(pending)
    finally:
        sock.close()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        summary.elapsed_s = time.perf_counter() - started
    log.info(
        "live capture on %s: %d packets, %d flows in %d files",
        interface,
        summary.packets,
        summary.flows,
        len(summary.files),
    )
    return summary

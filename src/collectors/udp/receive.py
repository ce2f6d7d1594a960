"""Receiving UDP datagrams in bulk into preallocated chunks, for the collector's receiver thread.

Two receivers fill the same :class:`ReceiveChunk`:

* :class:`MmsgReceiver` (Linux): ``recvmmsg(2)`` through ctypes reads up to a chunk's
  worth of datagrams per system call into fixed slots of ``slot_size`` bytes; lengths
  and sender addresses are read back with numpy. A datagram larger than its slot comes
  back truncated (``MSG_TRUNC``): it is counted as ``oversize`` and dropped, so the slot
  size bounds the datagrams this receiver takes (default 9216: jumbo frames).
* :class:`RecvFromReceiver` (anywhere): one ``recvfrom_into`` per datagram, packed back
  to back, any size up to 65535.

:func:`make_receiver` picks ``recvmmsg`` where libc has it and the slot size covers
``max_datagram``. Datagrams from senders outside the allowlist are dropped here and
counted per sender (``refused``). All datagrams of one ``recvmmsg`` call share one
receive time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import os
import socket
import sys
import time
from collections import Counter
from typing import Protocol

import numpy as np

from collectors.flows.decoder import PackedDatagrams

__all__ = [
    "MAX_DATAGRAM",
    "MmsgReceiver",
    "PeerTable",
    "ReceiveChunk",
    "Receiver",
    "RecvFromReceiver",
    "make_receiver",
]

MAX_DATAGRAM = 65535
_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"
_MSG_DONTWAIT = 0x40
_MSG_TRUNC = 0x20
_NAME = 128  # sizeof(struct sockaddr_storage)
_EAGAIN = {11, 35}  # EAGAIN/EWOULDBLOCK on Linux and BSD


class PeerTable:
    """Sender address -> (16-byte address, text, allowed?), cached; the allowlist lives here."""

    def __init__(
        self, allowlist: list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None
    ) -> None:
        self.allowlist = allowlist
        self._by_address: dict[bytes, tuple[str, bool]] = {}

    def lookup(self, address16: bytes) -> tuple[str, bool]:
        """(text, allowed?) of a 16-byte address."""
        hit = self._by_address.get(address16)
        if hit is None:
            v6 = ipaddress.IPv6Address(address16)
            ip = v6.ipv4_mapped or v6
            allowed = self.allowlist is None or any(ip in net for net in self.allowlist)
            hit = (str(ip), allowed)
            if len(self._by_address) > 65536:  # spoofed floods must not grow it forever
                self._by_address.clear()
            self._by_address[address16] = hit
        return hit

    @staticmethod
    def from_host(host: str) -> bytes:
        """16-byte form of a socket-module host string (IPv4-mapped IPv6 folded to IPv4)."""
        ip = ipaddress.ip_address(host.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return _V4_PREFIX + ip.ipv4_mapped.packed
            return ip.packed
        return _V4_PREFIX + ip.packed


class ReceiveChunk:
    """Datagrams handed from the receiver to the worker, and what was dropped on the way."""

    def __init__(self, size: int) -> None:
        self.buf: bytearray | memoryview = bytearray(size)
        self.starts: list[int] = []
        self.lengths: list[int] = []
        self.exporters: list[bytes] = []
        self.hosts: list[str] = []
        self.ports: list[int] = []
        self.times: list[int] = []
        self.refused: Counter[str] = Counter()
        self.oversize: Counter[str] = Counter()
        self.used = 0  # bytes (recvfrom) or slots (recvmmsg) taken
        self.native: object = None  # the recvmmsg structures bound to ``buf``
        self.release: int | None = None  # ring position freed when done (receiver process)

    def __len__(self) -> int:
        return len(self.starts)

    def has_news(self) -> bool:
        """Anything for the worker: datagrams or drop counts."""
        return bool(self.starts or self.refused or self.oversize)

    def datagrams(self) -> list[bytes]:
        """The datagrams as bytes, in arrival order."""
        view = memoryview(self.buf)
        try:
            return [bytes(view[s : s + n]) for s, n in zip(self.starts, self.lengths, strict=True)]
        finally:
            view.release()

    def packed(self) -> PackedDatagrams:
        """The datagrams back to back in one array, for decoding in place: one copy per
        run of datagrams that already follow each other in ``buf`` (a ring record's are
        one run), no ``bytes`` object per datagram."""
        n = len(self.starts)
        lengths = np.array(self.lengths, np.int64)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if n == 0:
            return PackedDatagrams(np.zeros(0, np.uint8), offsets)
        starts = np.array(self.starts, np.int64)
        ends = starts + lengths
        cuts = (np.flatnonzero(starts[1:] != ends[:-1]) + 1).tolist()
        src = np.frombuffer(self.buf, np.uint8)
        runs = [src[starts[a] : ends[b - 1]] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
        buf = runs[0].copy() if len(runs) == 1 else np.concatenate(runs)
        del src, runs  # no view of the ring outlives the call
        return PackedDatagrams(buf, offsets)

    def reset(self) -> None:
        for part in (self.starts, self.lengths, self.exporters, self.hosts, self.ports, self.times):
            part.clear()
        self.refused.clear()
        self.oversize.clear()
        self.used = 0


class Receiver(Protocol):
    """Fills chunks from non-blocking sockets."""

    def new_chunk(self) -> ReceiveChunk: ...

    def fill(self, chunk: ReceiveChunk, sock: socket.socket) -> bool:
        """Read until ``sock`` is empty (True) or ``chunk`` is full (False)."""
        ...


class RecvFromReceiver:
    """One ``recvfrom_into`` per datagram; datagrams packed back to back."""

    def __init__(self, peers: PeerTable, chunk_bytes: int) -> None:
        self.peers = peers
        self.chunk_bytes = max(chunk_bytes, 2 * MAX_DATAGRAM)
        self._hosts: dict[str, bytes] = {}

    def new_chunk(self) -> ReceiveChunk:
        return ReceiveChunk(self.chunk_bytes)

    def fill(self, chunk: ReceiveChunk, sock: socket.socket) -> bool:
        view = memoryview(chunk.buf)
        limit = len(chunk.buf) - MAX_DATAGRAM
        try:
            while chunk.used <= limit:
                try:
                    n, peer = sock.recvfrom_into(view[chunk.used :], MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    return True
                except ConnectionRefusedError:  # ICMP errors from earlier sends; ignore
                    continue
                address = self._hosts.get(peer[0])
                if address is None:
                    address = self._hosts[peer[0]] = PeerTable.from_host(peer[0])
                    if len(self._hosts) > 65536:
                        self._hosts.clear()
                text, allowed = self.peers.lookup(address)
                if not allowed:
                    chunk.refused[text] += 1
                    continue
                chunk.starts.append(chunk.used)
                chunk.lengths.append(n)
                chunk.exporters.append(address)
                chunk.hosts.append(text)
                chunk.ports.append(peer[1])
                chunk.times.append(time.time_ns() // 1000)
                chunk.used += n
            return False
        finally:
            view.release()


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_IoVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_MM = ctypes.sizeof(_MMsgHdr)
_NAMELEN_AT = _MsgHdr.msg_namelen.offset
_FLAGS_AT = _MsgHdr.msg_flags.offset
_LEN_AT = _MMsgHdr.msg_len.offset


class _Native:
    """The recvmmsg structures of one chunk, and numpy views of what the kernel writes."""

    def __init__(self, chunk: ReceiveChunk, slots: int, slot_size: int) -> None:
        self.slots = slots
        self.slot_size = slot_size
        self.data = (ctypes.c_char * len(chunk.buf)).from_buffer(chunk.buf)
        self.names = (ctypes.c_char * (slots * _NAME))()
        self.iov = (_IoVec * slots)()
        self.msgs = (_MMsgHdr * slots)()
        base = ctypes.addressof(self.data)
        names = ctypes.addressof(self.names)
        for i in range(slots):
            self.iov[i].iov_base = base + i * slot_size
            self.iov[i].iov_len = slot_size
            hdr = self.msgs[i].msg_hdr
            hdr.msg_name = names + i * _NAME
            hdr.msg_namelen = _NAME
            hdr.msg_iov = ctypes.pointer(self.iov[i])
            hdr.msg_iovlen = 1
        self.base = ctypes.addressof(self.msgs)
        raw = np.frombuffer(memoryview(self.msgs).cast("B"), dtype=np.uint8).reshape(slots, _MM)
        self.namelen = raw[:, _NAMELEN_AT : _NAMELEN_AT + 4].view(np.uint32).reshape(slots)
        self.flags = raw[:, _FLAGS_AT : _FLAGS_AT + 4].view(np.int32).reshape(slots)
        self.length = raw[:, _LEN_AT : _LEN_AT + 4].view(np.uint32).reshape(slots)
        self.sockaddr = np.frombuffer(memoryview(self.names).cast("B"), dtype=np.uint8).reshape(
            slots, _NAME
        )


class MmsgReceiver:
    """``recvmmsg(2)`` via ctypes: many datagrams per system call (Linux)."""

    def __init__(self, peers: PeerTable, slots: int = 256, slot_size: int = 9216) -> None:
        libc_name = ctypes.util.find_library("c")
        if libc_name is None:
            raise OSError("no libc")
        libc = ctypes.CDLL(libc_name, use_errno=True)
        self._recvmmsg = libc.recvmmsg
        self._recvmmsg.argtypes = [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_void_p,
        ]
        self._recvmmsg.restype = ctypes.c_int
        self.peers = peers
        self.slots = slots
        self.slot_size = slot_size

    def new_chunk(self) -> ReceiveChunk:
        chunk = ReceiveChunk(self.slots * self.slot_size)
        chunk.native = _Native(chunk, self.slots, self.slot_size)
        return chunk

    def fill(self, chunk: ReceiveChunk, sock: socket.socket) -> bool:
        native = chunk.native
        assert isinstance(native, _Native)
        fd = sock.fileno()
        while chunk.used < native.slots:
            first = chunk.used
            room = native.slots - first
            got = self.receive_round(fd, native, first, room)
            if got < 0:
                continue
            if got == 0:
                return True
            self._take(chunk, native, first, got, time.time_ns() // 1000)
            chunk.used = first + got
            if got < room:  # the socket had no more: asking again would only say so
                return True
        return False

    def receive_round(self, fd: int, native: _Native, first: int, room: int) -> int:
        """One ``recvmmsg`` into slots ``first:first + room``: how many datagrams came, 0
        when the socket is empty (or the call was interrupted), -1 to ask again (an
        ECONNREFUSED left by earlier ICMP)."""
        native.namelen[first:] = _NAME  # value-result: the kernel shrinks it
        got = int(self._recvmmsg(fd, native.base + first * _MM, room, _MSG_DONTWAIT, None))
        if got >= 0:
            return got
        err = ctypes.get_errno()
        if err in _EAGAIN or err == 4:  # empty, or EINTR
            return 0
        if err == 111:  # ECONNREFUSED from earlier ICMP; ignore
            return -1
        raise OSError(err, os.strerror(err))

    def _take(self, chunk: ReceiveChunk, native: _Native, first: int, got: int, now: int) -> None:
        end = first + got
        names = native.sockaddr[first:end]
        # The usual batch: one sender (the same address bytes), nothing cut short. Per-batch
        # numpy calls cost more than the datagrams of a small batch, so it takes a few.
        if bool((names == names[0]).all()) and not (native.flags[first:end] & _MSG_TRUNC).any():
            self._take_one_sender(chunk, native, first, got, now)
            return
        family = np.ascontiguousarray(names[:, :2]).view(np.uint16).reshape(got)  # native order
        addr = np.empty((got, 16), np.uint8)
        v4 = family == socket.AF_INET
        addr[v4, :10] = 0
        addr[v4, 10:12] = 0xFF
        addr[v4, 12:16] = names[v4, 4:8]
        addr[~v4] = names[~v4, 8:24]
        ports = (names[:, 2].astype(np.int64) << 8) | names[:, 3]
        truncated = (native.flags[first:end] & _MSG_TRUNC) != 0
        # the allowlist is asked once per distinct sender of the batch (usually one or two)
        if (addr == addr[0]).all():  # one sender: no sorting
            distinct, which = (
                addr[:1].view(np.dtype((np.void, 16))).reshape(1),
                np.zeros(got, dtype=np.intp),
            )
        else:
            distinct, which = np.unique(
                addr.view(np.dtype((np.void, 16))).reshape(got), return_inverse=True
            )
        senders = [bytes(d) for d in distinct.tolist()]
        looked = [self.peers.lookup(a) for a in senders]
        allowed = np.array([ok for _, ok in looked], dtype=np.bool_)[which]
        take = allowed & ~truncated
        if not take.all():
            for k in np.unique(which[~take]).tolist():
                refused = int(np.count_nonzero((which == k) & ~allowed))
                oversize = int(np.count_nonzero((which == k) & allowed & truncated))
                if refused:
                    chunk.refused[looked[k][0]] += refused
                if oversize:
                    chunk.oversize[looked[k][0]] += oversize
        rows = np.flatnonzero(take)
        kept = which[rows].tolist()
        chunk.starts.extend(((rows + first) * native.slot_size).tolist())
        chunk.lengths.extend(native.length[first:end][rows].tolist())
        chunk.exporters.extend([senders[k] for k in kept])
        chunk.hosts.extend([looked[k][0] for k in kept])
        chunk.ports.extend(ports[rows].tolist())
        chunk.times.extend([now] * len(kept))

    def _take_one_sender(
        self, chunk: ReceiveChunk, native: _Native, first: int, got: int, now: int
    ) -> None:
        address, port = _sender(native.sockaddr[first])
        text, allowed = self.peers.lookup(address)
        if not allowed:
            chunk.refused[text] += got
            return
        slot = native.slot_size
        chunk.starts.extend(range(first * slot, (first + got) * slot, slot))
        chunk.lengths.extend(native.length[first : first + got].tolist())
        chunk.exporters.extend([address] * got)
        chunk.hosts.extend([text] * got)
        chunk.ports.extend([port] * got)
        chunk.times.extend([now] * got)


def _sender(name: np.ndarray) -> tuple[bytes, int]:
    """(16-byte address, port) of one ``sockaddr_in``/``sockaddr_in6`` as the kernel wrote it."""
    raw = name.tobytes()
    port = (raw[2] << 8) | raw[3]
    if int.from_bytes(raw[:2], sys.byteorder) == socket.AF_INET:
        return _V4_PREFIX + raw[4:8], port
    return raw[8:24], port


def make_receiver(
    peers: PeerTable, *, chunk_bytes: int, max_datagram: int = 9216
) -> RecvFromReceiver | MmsgReceiver:
    """recvmmsg where available and ``max_datagram`` fits a slot, else recvfrom_into."""
    if max_datagram <= 16384 and hasattr(socket, "AF_PACKET"):  # Linux
        try:
            slots = max(chunk_bytes // max_datagram, 16)
            return MmsgReceiver(peers, slots=slots, slot_size=max_datagram)
        except (OSError, AttributeError):
            pass
    return RecvFromReceiver(peers, chunk_bytes)

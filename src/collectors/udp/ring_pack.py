"""The receiver process's landing slots, packed into its ring by one compiled call a record.

The receiver process (:mod:`collectors.udp.receiver_process`) spends its time on two
things: the kernel's ``recvmmsg`` and moving what it returned into the shared ring. Done
in Python per datagram (a list entry each for start, length, port, time and sender, a
``memoryview`` slice each to join the payloads, then a second copy into the ring) that
second part cost as much as the system call. Here :class:`SlotLanding` receives into the
fixed slots of one :class:`collectors.udp.receive.MmsgReceiver` chunk and notes, per
``recvmmsg`` batch, the sender, port and receive time in numpy arrays (one sender for the
whole batch is the usual case: four slice assignments); :func:`pack_record` then writes
the ring record - header, metadata, drop entries and the payloads copied once, straight
from the slots - in one Numba call. A batch from several senders, or with datagrams cut
short or refused by the allowlist, takes the receiver's own per-datagram path for that
batch only.

The record layout is the ring's (see :mod:`collectors.udp.receiver_process`): four int64
(datagrams, payload bytes, drop entries, record bytes), per datagram its length, port
and receive time (int64 each) and its 16-byte sender, per drop entry a 16-byte sender,
then the counts and kinds (int64 each), then the payloads back to back.
"""

from __future__ import annotations

import socket
import sys
import time
from collections import Counter
from typing import Any

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from collectors.udp.receive import MmsgReceiver, PeerTable, ReceiveChunk, _Native

__all__ = ["SlotLanding", "pack_record", "record_bytes"]

_MSG_TRUNC = 0x20
_SENDER_BYTES = 28  # family, port, flow info / IPv4 address, IPv6 address: what tells senders
_REFUSED, _OVERSIZE = 0, 1


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def record_bytes(datagrams: int, payload: int, drops: int) -> int:
    """Ring bytes of a record (eight-byte aligned)."""
    return 32 + 40 * datagrams + 32 * drops + _pad8(payload)


@njit(cache=True, nogil=True)
def _one_sender(names: np.ndarray, flags: np.ndarray, first: int, end: int) -> bool:
    """Every datagram of slots ``first:end`` from the sender of the first, none cut short."""
    for i in range(first, end):
        if flags[i] & _MSG_TRUNC:
            return False
        if i > first:
            for j in range(_SENDER_BYTES):
                if names[i, j] != names[first, j]:
                    return False
    return True


@njit(cache=True, nogil=True)
def _measure(lengths: np.ndarray, keep: np.ndarray, used: int) -> tuple[int, int]:
    n = 0
    payload = 0
    for i in range(used):
        if keep[i]:
            n += 1
            payload += int(lengths[i])
    return n, payload


@intrinsic
def _copy(typingctx: Any, dst: Any, at: Any, src: Any, start: Any, size: Any) -> Any:
    """``dst[at:at + size] = src[start:start + size]`` as one ``memcpy`` (LLVM's). The
    slice assignment copied a 1.5 kB datagram into the ring in ~500 ns, a plain loop
    (vectorised) in ~2,000 ns once the ring is larger than the caches; memcpy ~10x less."""
    sig = types.void(dst, at, src, start, size)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        dty, _, sty, _, _ = signature.args
        dary = context.make_array(dty)(context, builder, args[0])
        sary = context.make_array(sty)(context, builder, args[2])
        dptr = cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
            context, builder, dty, dary, [args[1]], wraparound=False
        )
        sptr = cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
            context, builder, sty, sary, [args[3]], wraparound=False
        )
        cgutils.raw_memcpy(builder, dptr, sptr, args[4], 1)  # type: ignore[no-untyped-call]
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def pack_record(
    ring: np.ndarray,
    ring64: np.ndarray,
    at: int,
    landing: np.ndarray,
    slot_size: int,
    lengths: np.ndarray,
    keep: np.ndarray,
    ports: np.ndarray,
    times: np.ndarray,
    addrs: np.ndarray,
    used: int,
    drop_addrs: np.ndarray,
    drop_counts: np.ndarray,
    drop_kinds: np.ndarray,
) -> int:
    """Write the kept slots of ``landing`` (and the drop entries) as one record at ``at``
    (eight-byte aligned) of ``ring`` (``ring64`` the same memory as int64); its bytes."""
    n, payload = _measure(lengths, keep, used)
    d = drop_counts.shape[0]
    record = 32 + 40 * n + 32 * d + ((payload + 7) & ~7)
    h = at // 8
    ring64[h] = n
    ring64[h + 1] = payload
    ring64[h + 2] = d
    ring64[h + 3] = record
    meta = h + 4
    addr_at = at + 32 + 24 * n
    pos = at + 32 + 40 * n + 32 * d
    k = 0
    for i in range(used):
        if not keep[i]:
            continue
        size = int(lengths[i])
        ring64[meta + k] = size
        ring64[meta + n + k] = ports[i]
        ring64[meta + 2 * n + k] = times[i]
        for j in range(16):
            ring[addr_at + 16 * k + j] = addrs[i, j]
        src = i * slot_size
        _copy(ring, pos, landing, src, size)  # type: ignore[call-arg]
        pos += size
        k += 1
    drop_at = at + 32 + 40 * n
    for e in range(d):
        for j in range(16):
            ring[drop_at + 16 * e + j] = drop_addrs[e, j]
    counts = (drop_at + 16 * d) // 8
    for e in range(d):
        ring64[counts + e] = drop_counts[e]
        ring64[counts + d + e] = drop_kinds[e]
    return int(record)


class SlotLanding:
    """One chunk of ``recvmmsg`` slots filled batch by batch, handed to the ring as a record.

    ``keep``, ``ports``, ``times`` and ``addrs`` hold, per slot, whether the datagram
    goes to the ring and its sender; ``refused`` and ``oversize`` count what does not.
    """

    def __init__(self, receiver: MmsgReceiver) -> None:
        self.receiver = receiver
        self.chunk = receiver.new_chunk()
        native = self.chunk.native
        assert isinstance(native, _Native)
        self.native = native
        slots = receiver.slots
        self.slots = slots
        self.slot_size = receiver.slot_size
        self.landing = np.frombuffer(self.chunk.buf, np.uint8)
        self.keep = np.zeros(slots, np.bool_)
        self.ports = np.zeros(slots, np.int64)
        self.times = np.zeros(slots, np.int64)
        self.addrs = np.zeros((slots, 16), np.uint8)
        self.used = 0
        self.kept = 0
        self.refused: Counter[str] = Counter()
        self.oversize: Counter[str] = Counter()
        self._scratch = ReceiveChunk(0)
        self._sender: tuple[bytes, np.ndarray, int, str, bool] | None = None

    def __len__(self) -> int:
        return self.kept

    def has_news(self) -> bool:
        """Datagrams or drop counts for the ring."""
        return bool(self.kept or self.refused or self.oversize)

    def fill(self, sock: socket.socket) -> bool:
        """Receive until ``sock`` is empty (True) or the slots are full (False)."""
        native = self.native
        fd = sock.fileno()
        while self.used < self.slots:
            first = self.used
            room = self.slots - first
            got = self.receiver.receive_round(fd, native, first, room)
            if got < 0:
                continue
            if got == 0:
                return True
            self._take(first, got, time.time_ns() // 1000)
            self.used = first + got
            if got < room:  # the socket had no more: asking again would only say so
                return True
        return False

    def _take(self, first: int, got: int, now: int) -> None:
        end = first + got
        native = self.native
        if _one_sender(native.sockaddr, native.flags, first, end):
            name = native.sockaddr[first, :_SENDER_BYTES].tobytes()
            sender = self._sender
            if sender is None or sender[0] != name:
                address, port = _sender_of(name)
                text, allowed = self.receiver.peers.lookup(address)
                sender = (name, np.frombuffer(address, np.uint8), port, text, allowed)
                self._sender = sender
            if not sender[4]:
                self.keep[first:end] = False
                self.refused[sender[3]] += got
                return
            self.keep[first:end] = True
            self.ports[first:end] = sender[2]
            self.times[first:end] = now
            self.addrs[first:end] = sender[1]
            self.kept += got
            return
        # several senders, or some cut short: the receiver's per-datagram path
        scratch = self._scratch
        scratch.reset()
        self.receiver._take(scratch, native, first, got, now)
        self.keep[first:end] = False
        slots = [start // self.slot_size for start in scratch.starts]
        if slots:
            self.keep[slots] = True
            self.ports[slots] = scratch.ports
            self.times[slots] = now
            self.addrs[slots] = np.frombuffer(b"".join(scratch.exporters), np.uint8).reshape(
                len(slots), 16
            )
            self.kept += len(slots)
        self.refused.update(scratch.refused)
        self.oversize.update(scratch.oversize)

    def drops(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The drop entries: senders ``(k, 16)``, counts and kinds."""
        entries = [(h, c, _REFUSED) for h, c in self.refused.items()]
        entries += [(h, c, _OVERSIZE) for h, c in self.oversize.items()]
        k = len(entries)
        addrs = np.frombuffer(
            b"".join(PeerTable.from_host(h) for h, _, _ in entries), np.uint8
        ).reshape(k, 16)
        counts = np.array([c for _, c, _ in entries], np.int64)
        kinds = np.array([kind for _, _, kind in entries], np.int64)
        return addrs, counts, kinds

    def payload_bytes(self) -> int:
        """Payload bytes of the kept datagrams."""
        return int(_measure(self.native.length, self.keep, self.used)[1])

    def reset(self) -> None:
        self.used = 0
        self.kept = 0
        self.refused.clear()
        self.oversize.clear()


def _sender_of(name: bytes) -> tuple[bytes, int]:
    """(16-byte address, port) of a ``sockaddr_in``/``sockaddr_in6`` prefix."""
    port = (name[2] << 8) | name[3]
    if int.from_bytes(name[:2], sys.byteorder) == socket.AF_INET:
        return b"\x00" * 10 + b"\xff\xff" + name[4:8], port
    return name[8:24], port


def warm_up(receiver: MmsgReceiver) -> None:
    """Load the compiled kernels for ``receiver``'s arrays (the receiver process calls this
    before it forks, so the child has them: compiling there would stall receiving)."""
    landing = SlotLanding(MmsgReceiver(receiver.peers, slots=2, slot_size=receiver.slot_size))
    native = landing.native
    _one_sender(native.sockaddr, native.flags, 0, 2)
    ring = np.zeros(4 * receiver.slot_size, np.uint8)
    addrs, counts, kinds = landing.drops()
    pack_record(
        ring, ring.view(np.int64), 0, landing.landing, landing.slot_size, native.length,
        landing.keep, landing.ports, landing.times, landing.addrs, 2, addrs, counts, kinds,
    )  # fmt: skip

"""The collector's receiver as a process of its own, handing datagrams over in shared memory.

In one process the receiver thread shares the interpreter lock with decoding and Parquet
encoding; on a busy machine it waits for the lock while the kernel's socket buffer fills,
and the kernel drops datagrams although the collector keeps up on average. Here a forked
child does nothing but drain the sockets (``recvmmsg`` through :mod:`collectors.udp.receive`)
and copy each batch of datagrams back to back into a ring of ``buffer_bytes`` of anonymous
shared memory (with ``recvmmsg``, one compiled call a record: :mod:`collectors.udp.ring_pack`;
pages ahead of the writer faulted in while the child is idle); the parent decodes and writes
the batches in arrival order and tells the child how far it has read. A burst faster than
decoding is taken into the ring rather than dropped; only when the ring is full does the
child stop reading, and then the kernel drops (counted from ``/proc/net/udp`` as before).
Memory stays bounded by ``buffer_bytes``.

The ring: a header page (``consumed``, bytes the parent is done with; ``stop``, set by the
parent; an error text) and the data. A batch record is eight-byte aligned: four int64
(datagrams, payload bytes, drop entries, record bytes), then per datagram its length, port,
receive time (int64) and 16-byte exporter address, then per drop entry an address, a count
and a kind (refused by the allowlist, or oversize), then the payloads. A record that does
not fit before the end of the ring is preceded by a skip mark and written at the start.
After each record the child writes its new ``produced`` position (an 8-byte number) to a
pipe; a full pipe is skipped (a later position covers earlier records), the final ``-1``
(done) or ``-2`` (error, text in the header) is always written.
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import os
import selectors
import signal
import socket
import sys
import threading
import time

import numpy as np

from collectors.udp.receive import MmsgReceiver, PeerTable, ReceiveChunk, RecvFromReceiver
from collectors.udp.ring_pack import SlotLanding, pack_record, record_bytes
from collectors.udp.ring_pack import warm_up as warm_up_packing

__all__ = ["DecodePriority", "ReceiverProcess", "available"]

_PAGE = 4096  # the header page
# its int64 words (the error text starts at byte 64); _PEAK: the most bytes the ring held
_CONSUMED, _STOP, _ERROR_LEN, _PEAK = 0, 1, 2, 3
_DONE, _FAILED = -1, -2
_ABORT = 2  # the stop word's value when the parent reads no more
_SKIP = -1  # a record's datagram count that means "continue at the start of the ring"
_REFUSED, _OVERSIZE = 0, 1
_HAND_OVER_S = 0.005  # a partly filled chunk goes to the parent after this long
# Fewer datagrams than _FEW in a round: pause _GATHER_S. Longer pauses (up to 2 ms, until
# ~64 datagrams were expected) halved this process's CPU at 500k flows/s but lost datagrams
# at 1M flows/s on a machine at load 13-17 where this never did (4 runs of 10 s each).
_FEW, _GATHER_S = 32, 0.0005
_PAGE_STEP, _PREFAULT = 4096, 1 << 20  # memory page; ring bytes faulted in per idle round
_PREFAULT_AHEAD = 64 << 20  # ring bytes kept faulted in ahead of the highest offset written
# the most the parent takes into one decoding call: past ~1,000 datagrams the per-call cost
# is paid off, and bigger batches leave the CPU caches (measured: 4,000 was slower)
MERGE_DATAGRAMS, MERGE_BYTES = 1024, 4 << 20


def available() -> bool:
    """Receiving in a child process needs ``fork`` (Linux here)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class DecodePriority:
    """The decoding threads' niceness beside the receiver process: ``by`` steps nicer while
    the ring has room, their own again when it fills.

    Nicer, decoding and writing yield the CPU to the receiver (and so to the kernel's
    socket buffer) when they compete for it: what they fall behind waits in the ring. But
    on a machine busy with other work, threads that nice would barely run and the ring
    would fill; so past ``high`` bytes waiting they are restored, and made nicer again
    below ``low``. Only where the system lets a thread take its niceness back (tried first
    on a throwaway thread); elsewhere nothing changes. :meth:`close` restores them for good.
    """

    def __init__(self, by: int, *, high: int, low: int) -> None:
        self.by, self.high, self.low = by, high, low
        self.enabled = hasattr(os, "setpriority") and _can_raise_back(by)
        self._threads: dict[int, int] = {}  # native thread id -> its niceness before
        self.lowered = False

    def add_current(self) -> None:
        """Take the calling thread in (threads it starts later inherit its niceness)."""
        if not self.enabled:
            return
        tid = threading.get_native_id()
        try:
            self._threads[tid] = os.getpriority(os.PRIO_PROCESS, tid)
        except OSError:
            return
        if self.lowered:
            self._set(tid, self._threads[tid] + self.by)

    def add(self, tid: int | None, like: int) -> None:
        """Take thread ``tid`` in, started by ``like`` (its niceness before is like's)."""
        if tid is not None and like in self._threads:
            self._threads[tid] = self._threads[like]

    def update(self, waiting: int) -> None:
        """Nicer or not, by the bytes ``waiting`` in the ring."""
        if not self._threads:
            return
        if self.lowered and waiting > self.high:
            self._apply(lower=False)
        elif not self.lowered and waiting < self.low:
            self._apply(lower=True)

    def close(self) -> None:
        """Every thread back to its niceness before; none is managed after."""
        if self.lowered:
            self._apply(lower=False)
        self._threads.clear()

    def _apply(self, *, lower: bool) -> None:
        for tid, before in self._threads.items():
            self._set(tid, before + self.by if lower else before)
        self.lowered = lower

    @staticmethod
    def _set(tid: int, nice: int) -> None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, max(-20, min(nice, 19)))


def _can_raise_back(by: int) -> bool:
    ok: list[bool] = []

    def probe() -> None:
        tid = threading.get_native_id()
        try:
            before = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(before + by, 19))
            os.setpriority(os.PRIO_PROCESS, tid, before)
            ok.append(True)
        except OSError:
            ok.append(False)

    thread = threading.Thread(target=probe, name="nice-probe")
    thread.start()
    thread.join()
    return bool(ok and ok[0])


def _pad8(n: int) -> int:
    return (n + 7) & ~7


class ReceiverProcess:
    """The parent's side: starts the child, turns ring records into :class:`ReceiveChunk`."""

    def __init__(
        self,
        sockets: list[socket.socket],
        receiver: MmsgReceiver | RecvFromReceiver,
        peers: PeerTable,
        buffer_bytes: int,
    ) -> None:
        landing = len(receiver.new_chunk().buf)
        # room for several of the largest records: a chunk's payload and its metadata
        self.size = _pad8(max(buffer_bytes, 8 * landing))
        self._map = mmap.mmap(-1, _PAGE + self.size, flags=mmap.MAP_SHARED)
        self._header = np.frombuffer(self._map, dtype=np.int64, count=4)
        self._data = memoryview(self._map)[_PAGE:]
        self._sockets = sockets
        self._receiver = receiver
        self._peers = peers
        self._pid = 0
        self._bell = -1
        self._read = 0  # records up to here are parsed
        self._produced = 0  # the child's last reported position
        self._tail = b""
        self.finished = False
        self.error: str | None = None

    @property
    def started(self) -> bool:
        return self._pid != 0

    def start(self) -> None:
        """Fork the child. Call before the collector starts threads of its own."""
        if isinstance(self._receiver, MmsgReceiver):
            warm_up_packing(self._receiver)  # compiled here once: the child inherits it
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_end)
            _child_main(self, write_end, parent)
        os.close(write_end)
        self._pid = pid
        self._bell = read_end

    @property
    def peak_bytes(self) -> int:
        """The most bytes the ring held at once (received, not yet decoded)."""
        return int(self._header[_PEAK])

    @property
    def bell(self) -> int:
        """File descriptor that becomes readable when records (or the end) arrive."""
        return self._bell

    def stop(self) -> None:
        """Ask the child to drain its sockets and finish."""
        if self._header[_STOP] != _ABORT:
            self._header[_STOP] = 1

    def abort(self) -> None:
        """Tell the child to end now: the parent reads no more."""
        self._header[_STOP] = _ABORT

    def poll(self) -> None:
        """Read the child's positions from the pipe (non-blocking)."""
        try:
            raw = os.read(self._bell, 1 << 16)
        except BlockingIOError:
            return
        if not raw:  # the child is gone without saying done
            if not self.finished:
                self.finished = True
                self.error = self.error or "the receiver process ended unexpectedly"
            return
        raw = self._tail + raw
        whole = len(raw) // 8 * 8
        self._tail = raw[whole:]
        for value in np.frombuffer(raw[:whole], dtype=np.int64).tolist():
            if value == _DONE:
                self.finished = True
            elif value == _FAILED:
                self.finished = True
                n = int(self._header[_ERROR_LEN])
                self.error = bytes(self._map[64 : 64 + n]).decode(errors="replace")
            else:
                self._produced = max(self._produced, value)

    @property
    def held_bytes(self) -> int:
        """Ring bytes reported by the child and not yet released by the parent."""
        return self._produced - int(self._header[_CONSUMED])

    @property
    def pending_bytes(self) -> int:
        """Ring bytes reported by the child and not yet taken by :meth:`next_chunk`."""
        return self._produced - self._read

    def next_chunk(
        self, max_datagrams: int = MERGE_DATAGRAMS, max_bytes: int = MERGE_BYTES
    ) -> ReceiveChunk | None:
        """The records waiting, as one chunk of up to ``max_datagrams`` datagrams and
        ``max_bytes`` of ring (at least one record), or None when none is waiting.

        Decoding costs a fixed amount per call besides its cost per flow: one call over
        many of the child's small hand-overs costs about half as much per flow as one
        call each (decode_many on 80 v9 datagrams vs 1,000)."""
        chunk: ReceiveChunk | None = None
        taken = 0
        bound = min(max_bytes, self.size // 4)
        while self._read < self._produced:
            at = self._read % self.size
            head = np.frombuffer(self._data, dtype=np.int64, count=4, offset=at)
            n, payload, drops, record = (int(x) for x in head)
            if n == _SKIP:
                self._read += self.size - at
                continue
            if chunk is not None and (len(chunk) + n > max_datagrams or taken + record > bound):
                break
            part = self._chunk(at, n, payload, drops)
            chunk = part if chunk is None else _merge(chunk, part)
            self._read += record
            taken += record
            chunk.release = self._read
        return chunk

    def _chunk(self, at: int, n: int, payload: int, drops: int) -> ReceiveChunk:
        pos = at + 32
        meta = np.frombuffer(self._data, dtype=np.int64, count=3 * n, offset=pos).reshape(3, n)
        pos += 24 * n
        addresses = bytes(self._data[pos : pos + 16 * n])
        pos += 16 * n
        chunk = ReceiveChunk(0)
        if drops:
            drop_addr = bytes(self._data[pos : pos + 16 * drops])
            pos += 16 * drops
            counts = np.frombuffer(self._data, dtype=np.int64, count=2 * drops, offset=pos)
            pos += 16 * drops
            for k in range(drops):
                text = self._peers.lookup(drop_addr[16 * k : 16 * k + 16])[0]
                target = chunk.refused if counts[drops + k] == _REFUSED else chunk.oversize
                target[text] += int(counts[k])
        lengths = meta[0]
        starts = np.empty(n, dtype=np.int64)
        if n:
            starts[0] = pos
            np.cumsum(lengths[:-1], out=starts[1:])
            starts[1:] += pos
        chunk.buf = self._data
        chunk.starts = starts.tolist()
        chunk.lengths = lengths.tolist()
        chunk.ports = meta[1].tolist()
        chunk.times = meta[2].tolist()
        lookup = self._peers.lookup
        if n and addresses == addresses[:16] * n:  # the usual record: one sender
            first = addresses[:16]
            chunk.exporters = [first] * n
            chunk.hosts = [lookup(first)[0]] * n
        else:
            chunk.exporters = [addresses[16 * j : 16 * j + 16] for j in range(n)]
            chunk.hosts = [lookup(a)[0] for a in chunk.exporters]
        return chunk

    def release(self, chunk: ReceiveChunk) -> None:
        """The worker is done with ``chunk`` (released in arrival order): its room is free."""
        if chunk.release is not None:
            self._header[_CONSUMED] = chunk.release

    def join(self, timeout: float) -> None:
        """Reap the child; kill it if it has not ended within ``timeout`` seconds."""
        if not self._pid:
            return
        deadline = time.monotonic() + timeout
        while True:
            pid, _ = os.waitpid(self._pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
                break
            time.sleep(0.01)
        self._pid = 0

    def close(self) -> None:
        """Close the pipe and the ring (the chunks over it must be gone)."""
        if self._bell >= 0:
            os.close(self._bell)
            self._bell = -1
        self._header = np.zeros(4, dtype=np.int64)
        # a chunk may still hold a view: the memory then goes with the last of them
        with contextlib.suppress(BufferError):
            self._data.release()
            self._map.close()


def _merge(into: ReceiveChunk, part: ReceiveChunk) -> ReceiveChunk:
    """``part``'s datagrams and drop counts after ``into``'s (both over the ring)."""
    into.starts += part.starts
    into.lengths += part.lengths
    into.ports += part.ports
    into.times += part.times
    into.exporters += part.exporters
    into.hosts += part.hosts
    into.refused.update(part.refused)
    into.oversize.update(part.oversize)
    return into


def _child_main(proc: ReceiverProcess, bell: int, parent: int) -> None:
    """The child process: receive until stopped, then exit without running parent cleanup."""
    code = 0
    try:
        # the parent's handlers decide when to stop: the child drains first, whatever signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # The collector's objects came along with the fork: a full collection walking them
        # stalls the receiver for tens of milliseconds (and copies their pages), long enough
        # for the socket buffer to overflow. Only what the child makes is collected.
        gc.freeze()
        child = _Child(proc, bell, parent)
        child.run()
        _ring_bell(bell, child.produced)  # the last position may have met a full pipe
        _ring_bell(bell, _DONE)
    except BaseException as exc:  # the parent raises it as the receiver's failure
        code = 1
        try:
            text = repr(exc).encode()[: _PAGE - 64]
            proc._map[64 : 64 + len(text)] = text
            proc._header[_ERROR_LEN] = len(text)
            _ring_bell(bell, _FAILED)
        except BaseException:  # nothing left to tell with: the parent sees the pipe close
            pass
    finally:
        os._exit(code)


def _ring_bell(bell: int, value: int, *, wait: bool = True) -> None:
    data = np.array([value], dtype=np.int64).tobytes()
    while True:
        try:
            os.write(bell, data)
            return
        except BlockingIOError:
            if not wait:
                return
            time.sleep(0.001)
        except InterruptedError:
            continue


class _Child:
    def __init__(self, proc: ReceiverProcess, bell: int, parent: int) -> None:
        self.sockets = proc._sockets
        self.receiver = proc._receiver
        self.header = proc._header
        self.data = proc._data
        self.size = proc.size
        self.bell = bell
        self.parent = parent
        self.produced = 0  # bytes ever placed (monotonic), skipped tails included
        self.high = 0  # the highest ring offset written so far
        self.touched = 0  # the ring's pages below this have been faulted in
        self.ring = np.frombuffer(self.data, dtype=np.uint8)
        self.ring64 = np.frombuffer(self.data, dtype=np.int64)
        self.pages = self.ring[::_PAGE_STEP]

    def parent_gone(self) -> bool:
        return os.getppid() != self.parent

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        by_fd = {}
        for sock in self.sockets:
            sel.register(sock, selectors.EVENT_READ)
            by_fd[sock.fileno()] = sock
        chunk: ReceiveChunk | SlotLanding
        if isinstance(self.receiver, MmsgReceiver):  # packed by one compiled call a record
            chunk = landing = SlotLanding(self.receiver)
            fill = landing.fill
        else:
            chunk = plain = self.receiver.new_chunk()

            def fill(sock: socket.socket) -> bool:
                return self.receiver.fill(plain, sock)

        handed = time.monotonic()
        while True:
            stopping = bool(self.header[_STOP])
            if self.parent_gone() or self.header[_STOP] == _ABORT:
                return
            idle_wait = 0.0 if self.prefault_due() else 0.05
            ready = (
                self.sockets
                if stopping
                else [by_fd[key.fd] for key, _ in sel.select(timeout=idle_wait)]
            )
            drained = True
            got = -len(chunk)
            for sock in ready:
                while not fill(sock):
                    got += len(chunk)
                    self.hand_over(chunk)
                    handed = time.monotonic()
                    drained = False
            got += len(chunk)
            now = time.monotonic()
            if chunk.has_news() and (stopping or now - handed >= _HAND_OVER_S):
                self.hand_over(chunk)
                handed = now
            if stopping and drained:
                return
            # Idle or a trickle: fault in the next pages of the ring (not on the receive path
            # later), or let datagrams gather for a moment, so each system call and each
            # hand-over moves many (the socket buffer holds tens of milliseconds).
            if drained and got < _FEW and not self.prefault() and ready:
                time.sleep(_GATHER_S)

    def prefault_due(self) -> bool:
        """Pages ahead of the highest written offset are still to be faulted in."""
        return self.touched < min(self.size, self.high + _PREFAULT_AHEAD)

    def prefault(self) -> bool:
        """Touch the next pages of the ring not written yet, up to ``_PREFAULT_AHEAD``
        bytes ahead of the highest offset written; False when there are none to touch
        now. A page's first touch costs a fault and zeroing (~2.7 us for 4 KiB of shared
        memory here; in a burst past the window a third of this process's CPU, v5: 0.9 of
        2.7 us a datagram), 1 MiB a round, under a millisecond. Only a window ahead, not
        the whole ring at start: a ring a run never fills is never paid for (0.3-0.4 s of
        CPU for 512 MiB). Faulting the whole ring in while idle was tried: every start
        then paid it (the benchmark's CPU for 1M v5 flows at its low steps +25-30%) while
        a burst right after start still met unfaulted pages."""
        if not self.prefault_due():
            return False
        # only pages beyond every record written so far: zeros there overwrite nothing
        start = max(self.touched, self.high)
        end = min(self.size, start + _PREFAULT)
        self.pages[-(-start // _PAGE_STEP) : end // _PAGE_STEP] = 0
        self.touched = end
        return True

    def place(self, record: int) -> int:
        """Where a record of ``record`` bytes goes (waiting while the ring is full)."""
        at = self.produced % self.size
        skip = self.size - at if at + record > self.size else 0
        while self.size - (self.produced - int(self.header[_CONSUMED])) < skip + record:
            if self.parent_gone() or self.header[_STOP] == _ABORT:
                raise RuntimeError("the collector stopped reading")
            time.sleep(0.0005)  # the ring is full: the socket buffer takes the wait
        if skip:
            self.ring64[at // 8] = _SKIP
            # every byte of the ring is written (or skipped) now: the prefault, which
            # zeroes pages beyond ``high``, must not reach the mark the parent has still
            # to read
            self.high = self.size
            self.produced += skip
            at = 0
        return at

    def placed(self, at: int, record: int) -> None:
        """The record at ``at`` is written: count it, note the peak, ring the bell."""
        self.produced += record
        self.high = max(self.high, at + record)
        held = self.produced - int(self.header[_CONSUMED])
        if held > self.header[_PEAK]:
            self.header[_PEAK] = held
        _ring_bell(self.bell, self.produced, wait=False)

    def hand_over(self, chunk: ReceiveChunk | SlotLanding) -> None:
        """Copy the chunk into the ring as one record, ring the bell, reset the chunk."""
        if isinstance(chunk, SlotLanding):
            self.hand_over_slots(chunk)
            return
        n = len(chunk)
        drops = [(a, c, _REFUSED) for a, c in chunk.refused.items()]
        drops += [(a, c, _OVERSIZE) for a, c in chunk.oversize.items()]
        payload = sum(chunk.lengths)
        record = record_bytes(n, payload, len(drops))
        at = self.place(record)
        head = np.frombuffer(self.data, dtype=np.int64, count=4 + 3 * n, offset=at)
        head[:4] = (n, payload, len(drops), record)
        head[4 : 4 + n] = chunk.lengths
        head[4 + n : 4 + 2 * n] = chunk.ports
        head[4 + 2 * n :] = chunk.times
        pos = at + 32 + 24 * n
        self.data[pos : pos + 16 * n] = b"".join(chunk.exporters)
        pos += 16 * n
        if drops:
            self.data[pos : pos + 16 * len(drops)] = b"".join(
                PeerTable.from_host(host) for host, _, _ in drops
            )
            pos += 16 * len(drops)
            counts = np.frombuffer(self.data, dtype=np.int64, count=2 * len(drops), offset=pos)
            counts[: len(drops)] = [c for _, c, _ in drops]
            counts[len(drops) :] = [k for _, _, k in drops]
            pos += 16 * len(drops)
        src = memoryview(chunk.buf)
        try:
            packed = b"".join(
                [
                    src[start : start + n]
                    for start, n in zip(chunk.starts, chunk.lengths, strict=True)
                ]
            )
        finally:
            src.release()
        self.data[pos : pos + payload] = packed
        self.placed(at, record)
        chunk.reset()

    def hand_over_slots(self, landing: SlotLanding) -> None:
        """The landing slots as one record: written by one compiled call."""
        addrs, counts, kinds = landing.drops()
        record = record_bytes(landing.kept, landing.payload_bytes(), len(counts))
        at = self.place(record)
        written = pack_record(
            self.ring, self.ring64, at, landing.landing, landing.slot_size,
            landing.native.length, landing.keep, landing.ports, landing.times, landing.addrs,
            landing.used, addrs, counts, kinds,
        )  # fmt: skip
        if written != record:  # never: the parent would misread the ring from here on
            raise RuntimeError(f"ring record of {written} bytes, {record} were placed")
        self.placed(at, record)
        landing.reset()

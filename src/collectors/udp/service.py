"""The UDP flow collector service behind ``rating-engine collect --listen HOST:PORT``.

The *receiver* runs a tight loop over non-blocking sockets and a selector and fills
preallocated chunks (``recvmmsg`` many datagrams per system call, or ``recvfrom_into``;
see :mod:`collectors.udp.receive`) and drops datagrams from exporters outside the
allowlist. On Linux it is a forked process of its own (``receive_process``, see
:mod:`collectors.udp.receiver_process`) that packs the datagrams into a shared-memory
ring of ``buffer_bytes`` (512 MiB by default): it never waits for the interpreter lock
held by decoding and encoding, and a burst faster than decoding waits in the ring.
Elsewhere it is a thread handing ``chunks`` x ``chunk_bytes`` of chunks (64 MiB) over a
queue. The *worker* (the caller's thread) decodes a chunk with one
:meth:`FlowDecoder.decode_many` call (from the ring: the records waiting, up to 1,024
datagrams, a trickle gathered for up to 20 ms) and passes the batches to the *writer*
thread.
Memory is bounded: the ring or the chunks, at most 8 decoded batches waiting for the
writer, the rotation buffer (``rotate_bytes``), and the decoder's own per-exporter
limits (templates, held bytes). When the ring is full the kernel socket buffer
(``rcvbuf``) absorbs the rest; beyond that the kernel drops (counted as
``socket_drops``), which the exporters' sequence numbers then report too. Beside a
receiver process the worker and the writer run 15 steps nicer while the ring is less than
three quarters full (where the system lets the run take that back after), so on a busy
machine the receiver gets the CPU first, and past that decoding gets its share back. Outputs
(flows, sFlow counters, quarantined datagrams, statistics) are in
:mod:`collectors.udp.outputs`; each
rejected (exporter, reason) is logged at most once per stats interval, and statistics
are logged every ``stats_interval`` seconds (see :mod:`collectors.udp.stats`).

With an ``enricher`` (:mod:`collectors.enrich`) the writer thread fills AS numbers,
countries and interface names before buffering the flows (its look-up kernel drops the
GIL, so enrichment runs beside decoding); an enrichment failure stores the flows
unenriched (counted, logged once), never stops collection. With ``metrics`` set to
``(host, port)`` a fourth thread serves Prometheus text at ``/metrics`` and a health
check at ``/healthz`` (:mod:`collectors.udp.metrics`).

The decoder state (templates, options/sampling, held data, sequence numbers) is
saved atomically to ``W/state/<state_name>.json`` every ``state_interval`` seconds and
at shutdown, and loaded at start (:mod:`collectors.udp.decoder_state`), so data whose
template arrived before a restart still decodes. One collector per state name: two
collectors sharing a workspace need different ``state_name`` values. On stop
(SIGTERM/SIGINT or the ``stop_event``) the receiver drains its sockets, the worker
decodes everything queued, writes every buffer and the state, and :func:`run_collector`
returns.
"""

from __future__ import annotations

import gc
import logging
import queue
import select
import selectors
import signal
import socket
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from collectors.enrich.enricher import FlowEnricher
from collectors.errors import CollectorError
from collectors.flows.decoder import FlowDecoder
from collectors.flows.writer import default_prefix
from collectors.udp.decoder_state import load_decoder_state, save_decoder_state
from collectors.udp.metrics import CollectorMetrics, datagram_formats
from collectors.udp.metrics_http import MetricsServer
from collectors.udp.outputs import CollectorOutputs, quarantine_batch
from collectors.udp.receive import PeerTable, ReceiveChunk, make_receiver
from collectors.udp.receiver_process import DecodePriority, ReceiverProcess
from collectors.udp.receiver_process import available as receiver_process_available
from collectors.udp.sockets import bind_socket, parse_allowlist, socket_drops
from collectors.udp.stats import CollectorStats, CollectorSummary
from collectors.workspace import WorkspacePaths

__all__ = ["CollectorSummary", "UdpCollector", "run_collector"]

log = logging.getLogger(__name__)

# niceness added to the decoding threads beside a receiver process while its ring is less
# than three quarters full (measured at 3M v9 flows/s, load ~5: 12k-48k datagrams dropped at 5,
# 0-2k at 10, 15 or 19)
DECODE_NICENESS = 15
# a trickle from the receiver process waits this long (or until this much is waiting)
# before it is decoded: per-call costs spread over more datagrams
GATHER_S, GATHER_BYTES = 0.02, 1 << 20


def _bell_rings(bell: int, timeout: float) -> bool:
    """True when the receiver process's pipe has news within ``timeout`` seconds."""
    readable, _, _ = select.select([bell], [], [], timeout)
    return bool(readable)


class UdpCollector:
    """Receive export datagrams on one or more UDP sockets and land them in a workspace."""

    def __init__(
        self,
        listen: list[tuple[str, int]],
        workspace: WorkspacePaths,
        *,
        allowlist: Iterable[str] | None = None,
        rotate_seconds: float = 60.0,
        rotate_bytes: int = 64 << 20,
        stats_interval: float = 10.0,
        state_interval: float = 30.0,
        state_name: str = "flow_decoder",
        max_templates_per_exporter: int = 1024,
        max_pending_bytes_per_exporter: int = 1 << 20,
        chunk_bytes: int = 2 << 20,
        chunks: int = 32,
        rcvbuf: int = 32 << 20,
        max_datagram: int = 9216,
        compression: str = "lz4",
        enricher: FlowEnricher | None = None,
        metrics: tuple[str, int] | None = None,
        receive_process: bool = True,
        buffer_bytes: int = 512 << 20,
    ) -> None:
        if not listen:
            raise CollectorError("collect needs at least one --listen HOST:PORT")
        self.workspace = workspace.ensure()
        self.allowlist = parse_allowlist(allowlist)
        self.stats_interval = stats_interval
        self.state_interval = state_interval
        self.state_path = workspace.state / f"{state_name}.json"
        limits = {
            "max_templates_per_exporter": max_templates_per_exporter,
            "max_pending_bytes_per_exporter": max_pending_bytes_per_exporter,
        }
        self.decoder = load_decoder_state(self.state_path, **limits)
        self.prefix = default_prefix("udp")
        self.enricher = enricher
        self.metrics: CollectorMetrics | None = None
        self._metrics_server: MetricsServer | None = None
        if metrics is not None:
            self.metrics = CollectorMetrics()
        self.outputs = CollectorOutputs(
            workspace,
            self.prefix,
            rotate_seconds=rotate_seconds,
            rotate_bytes=rotate_bytes,
            stats_interval=stats_interval,
            compression=compression,
            on_write=None if self.metrics is None else self.metrics.observe_write,
            prepare_flows=None if enricher is None else self._enrich,
        )
        self.stats = CollectorStats(self.prefix, time.time_ns() // 1000)
        self.peers = PeerTable(self.allowlist)
        self.receiver = make_receiver(
            self.peers, chunk_bytes=chunk_bytes, max_datagram=max_datagram
        )
        self._free: queue.Queue[ReceiveChunk] = queue.Queue()
        self._full: queue.Queue[ReceiveChunk | None] = queue.Queue()
        self._sockets: list[socket.socket] = []
        self._proc: ReceiverProcess | None = None
        try:
            for host, port in listen:
                self._sockets.append(bind_socket(host, port, rcvbuf))
            if receive_process and receiver_process_available():
                self._proc = ReceiverProcess(self._sockets, self.receiver, self.peers, buffer_bytes)
            else:
                for _ in range(max(chunks, 2)):
                    self._free.put(self.receiver.new_chunk())
            if metrics is not None and self.metrics is not None:
                self.metrics.listen = ",".join(f"{h}:{p}" for h, p in self.addresses)
                self._metrics_server = MetricsServer(*metrics, self.metrics.registry, self._health)
        except BaseException:
            self.close()
            raise
        self._drops_seen = socket_drops(self._sockets) or 0
        self._by_fd = {s.fileno(): s for s in self._sockets}
        self._receiver_error: BaseException | None = None
        self._receiver: threading.Thread | None = None
        self._beat = time.monotonic()  # the worker loop's last turn, for /healthz
        self._enrich_failed = False
        self._enrich_errors = 0
        self._enrich_lock = threading.Lock()
        self.buffer_peak_bytes = 0  # most bytes waiting in the receiver process's ring
        self._gather_since: float | None = None  # a trickle in the ring waits from then

    def warm_up(self) -> None:
        """Load the decoders' and the enricher's compiled kernels before traffic arrives.

        The first decode of each kind loads Numba code (and pyarrow's compute kernels), the
        first enrichment its look-up kernel (compiled, without a cache yet); doing it on
        live traffic would stall the worker for a moment and overflow the socket buffers.
        A throwaway decoder keeps the real state untouched.
        """
        from collectors.netflow.export_synth import synth_template_stream, synth_v5_datagrams

        sample = synth_v5_datagrams(2, 2)
        sample += synth_template_stream("netflow_v9", 1, 2)
        sample += synth_template_stream("ipfix", 1, 2)
        out = FlowDecoder().decode_many(sample, [bytes(16)] * len(sample), [0] * len(sample))
        pc.sum(out.flows.column("bytes"))
        if self.enricher is not None:
            try:
                self.enricher.enrich(out.flows)
            except Exception:  # shown (logged, counted) on the first real batch
                log.debug("enrichment warm-up failed", exc_info=True)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) pairs; useful with port 0."""
        return [s.getsockname()[:2] for s in self._sockets]

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where ``/metrics`` is served (the bound port), or None."""
        return None if self._metrics_server is None else self._metrics_server.address

    def start_receiving(self) -> None:
        """Fork the receiver process now (if it receives in one), before any thread starts;
        :meth:`run` does it otherwise. Datagrams arriving before this wait in the socket."""
        if self._proc is not None and not self._proc.started:
            self._proc.start()

    def close(self) -> None:
        """Release the sockets and the metrics port (after :meth:`run`, or instead of it)."""
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None
        if self._proc is not None:
            self._proc.abort()
            self._proc.join(10)
            self._proc.close()
            self._proc = None
        for sock in self._sockets:
            sock.close()

    def _health(self) -> tuple[bool, dict[str, object]]:
        problems = []
        if self.outputs.error is not None:
            problems.append(f"writer failed: {self.outputs.error!r}")
        if self._receiver_error is not None:
            problems.append(f"receiver failed: {self._receiver_error!r}")
        elif self._receiver is not None and not self._receiver.is_alive():
            problems.append("receiver stopped")
        elif self._proc is not None and self._proc.error is not None:
            problems.append(f"receiver failed: {self._proc.error}")
        stalled = time.monotonic() - self._beat
        if stalled > 10:
            problems.append(f"worker loop stalled for {stalled:.0f} s")
        details: dict[str, object] = {
            "listen": [f"{h}:{p}" for h, p in self.addresses],
            "worker_beat_age_s": round(stalled, 3),
        }
        if problems:
            details["problems"] = problems
        return not problems, details

    # -- receiver thread ---------------------------------------------------------------------
    def _receive(self, stop: threading.Event) -> None:
        try:
            self._receive_loop(stop)
        except BaseException as exc:  # surfaced by the worker; never a silent death
            self._receiver_error = exc
        finally:
            self._full.put(None)

    def _receive_loop(self, stop: threading.Event) -> None:
        sel = selectors.DefaultSelector()
        for sock in self._sockets:
            sel.register(sock, selectors.EVENT_READ)
        chunk = self._free.get()
        last_push = time.monotonic()
        while True:
            stopping = stop.is_set()
            ready: list[socket.socket] = (
                [self._by_fd[key.fd] for key, _ in sel.select(timeout=0.05)]
                if not stopping
                else self._sockets
            )
            drained = True
            for sock in ready:
                while not self.receiver.fill(chunk, sock):
                    self._full.put(chunk)
                    chunk = self._free.get()
                    last_push = time.monotonic()
                    drained = False
            # Hand over partial chunks often enough that idle periods still flush.
            now = time.monotonic()
            if chunk.has_news() and (now - last_push > 0.05 or stopping):
                self._full.put(chunk)
                chunk = self._free.get()
                last_push = now
            if stopping and drained:
                break
        sel.close()
        self._free.put(chunk)

    # -- worker ------------------------------------------------------------------------------
    def _process(self, chunk: ReceiveChunk) -> None:
        for host, count in chunk.refused.items():
            self.stats.add({"not_allowed": count}, exporter=host)
            if self.stats.should_log(host, "not_allowed"):
                log.warning("datagrams from %s refused: not in the allowlist", host)
        for host, count in chunk.oversize.items():
            self.stats.add({"malformed:oversize": count, "rejected": count}, exporter=host)
            if self.stats.should_log(host, "oversize"):
                log.warning("datagrams from %s dropped: larger than max_datagram", host)
        if not len(chunk):
            return
        datagrams = chunk.packed()  # decoded in place: no bytes object per datagram
        outcome = self.decoder.decode_many(datagrams, chunk.exporters, chunk.times, source="udp")
        flows = outcome.flows
        self.outputs.write_flows(flows)  # enriched on the writer thread (outputs.prepare_flows)
        formats: list[str] = []
        if self.metrics is not None:
            formats = datagram_formats(chunk.buf, chunk.starts, chunk.lengths)
            self.metrics.add_datagrams(chunk.hosts, formats, chunk.lengths)
            self.metrics.add_flows(flows)
            if outcome.rejected:
                self.metrics.add_rejected(
                    (chunk.hosts[i], formats[i], reason) for i, reason, _ in outcome.rejected
                )
        if outcome.counters is not None and outcome.counters.num_rows:
            self.outputs.write_counters(outcome.counters)
        flow_bytes = pc.sum(outcome.flows.column("bytes")).as_py() or 0
        self.stats.add(outcome.stats)
        self.stats.add({"received_bytes": sum(chunk.lengths), "flow_bytes": flow_bytes})
        for host, count in Counter(chunk.hosts).items():
            self.stats.add_exporter(host, {"datagrams": count})
        if outcome.rejected:
            rows: list[tuple[str, int | None, str, str, bytes, int]] = []
            for idx, reason, message in outcome.rejected:
                host, port = chunk.hosts[idx], chunk.ports[idx]
                where = f"[{host}]" if ":" in host else host
                rows.append(
                    (
                        f"udp://{where}:{port}",
                        None,
                        reason,
                        message,
                        datagrams[idx],
                        chunk.times[idx],
                    )
                )
                self.stats.add_exporter(host, {f"malformed:{reason}": 1})
                if self.stats.should_log(host, reason):
                    log.warning("exporter %s: datagram rejected (%s): %s", host, reason, message)
            self.outputs.quarantine.add(quarantine_batch(rows))
            self.stats.add({"quarantined": len(rows)})

    def _enrich(self, flows: pa.RecordBatch) -> pa.RecordBatch:
        if self.enricher is None:
            return flows
        try:
            return self.enricher.enrich(flows)
        except Exception:  # a bug must not stop collection: store the flows as decoded
            if not self._enrich_failed:
                log.exception("enrichment failed; flows are stored without it")
                self._enrich_failed = True
            with self._enrich_lock:  # the writer thread's count, read by the worker
                self._enrich_errors += 1
            if self.metrics is not None:
                self.metrics.add_enrich_error()
            return flows

    def _refresh_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.set_state(
                self.decoder.sequence.snapshot(), self.decoder.session.cache.templates()
            )

    def _close_interval(self, seconds: float, drops: int | None) -> None:
        self.stats.sequence_update(self.decoder.sequence.snapshot())
        with self._enrich_lock:
            failed, self._enrich_errors = self._enrich_errors, 0
        self.stats.add({"enrich_errors": failed})
        if drops is not None and drops > self._drops_seen:
            lost = drops - self._drops_seen
            self.stats.add({"socket_drops": lost})
            if self.metrics is not None:
                self.metrics.add_socket_drops(lost)
            log.warning("the kernel dropped %d datagrams: receive buffer full", lost)
            self._drops_seen = drops
        log.info("collector stats (%.1fs): %s", seconds, self.stats.log_line(seconds))
        self.outputs.collector_stats.add(self.stats.close_interval(time.time_ns() // 1000))
        self.outputs.quarantine.flush()  # one quarantine file per interval

    def run(self, stop: threading.Event) -> CollectorSummary:
        """Collect until ``stop`` is set; then drain, write everything and return."""
        started = time.monotonic()
        summary = CollectorSummary(listen=self.addresses)
        receiver: threading.Thread | None = None
        priority: DecodePriority | None = None
        if self._proc is not None:
            self.start_receiving()
            # Decoding and writing (this thread and the writer it starts) yield the CPU to the
            # receiver process when they compete for it: what they fall behind waits in the
            # ring, while a receiver kept waiting loses datagrams in the kernel. Past three
            # quarters of the ring they get their share back (a busy machine must not starve
            # them); not at half, where a burst the ring would hold had the receiver compete
            # with two decoding threads, losing datagrams, while half the ring was free.
            size = self._proc.size
            priority = DecodePriority(DECODE_NICENESS, high=size * 3 // 4, low=size // 8)
            priority.add_current()
            priority.update(0)
        else:
            receiver = threading.Thread(
                target=self._receive, args=(stop,), name="udp-receiver", daemon=True
            )
            self._receiver = receiver
            receiver.start()
        self.outputs.start()
        if priority is not None:
            priority.add(self.outputs.thread_id, like=threading.get_native_id())
        if self._metrics_server is not None:
            self._metrics_server.start()
            log.info("metrics on http://%s:%d/metrics", *self._metrics_server.address)
        log.info("collecting on %s into %s", self.addresses, self.workspace.root)
        last_stats = last_state = last_metrics = time.monotonic()
        failed = True
        try:
            while True:
                chunk, ended = (
                    self._next_from_process(stop)
                    if self._proc is not None
                    else self._next_from_thread(receiver)
                )
                if ended:
                    break
                if chunk is not None:
                    try:
                        self._process(chunk)
                    finally:
                        self._release(chunk)
                if priority is not None and self._proc is not None:
                    priority.update(self._proc.held_bytes)
                now = self._beat = time.monotonic()
                if now - last_metrics >= 1.0:
                    self._refresh_metrics()
                    last_metrics = now
                self.outputs.collector_stats.maybe_rotate(now)
                if now - last_stats >= self.stats_interval:
                    self._close_interval(now - last_stats, socket_drops(self._sockets))
                    last_stats = now
                if now - last_state >= self.state_interval:
                    save_decoder_state(self.decoder, self.state_path)
                    last_state = now
            failed = False
        finally:
            stop.set()
            if priority is not None:  # while the writer thread is still there
                priority.close()
            if receiver is not None:
                receiver.join(timeout=10)
            if self._proc is not None:
                if failed:
                    self._proc.abort()
                self._proc.join(10)
                self.buffer_peak_bytes = self._proc.peak_bytes
            final_drops = socket_drops(self._sockets)
            for sock in self._sockets:
                sock.close()
            self.outputs.finish()
            save_decoder_state(self.decoder, self.state_path)
            self._close_interval(time.monotonic() - last_stats, final_drops)
            self._refresh_metrics()
            self.outputs.collector_stats.flush()
            self.close()
        if self._receiver_error is not None:
            raise CollectorError(f"receiver failed: {self._receiver_error!r}")
        if self.outputs.error is not None:
            raise CollectorError(f"writer failed: {self.outputs.error!r}")
        totals = self.stats.totals
        summary.datagrams = totals.get("datagrams", 0)
        summary.flows = totals.get("flows", 0)
        summary.received_bytes = totals.get("received_bytes", 0)
        summary.rejected = totals.get("rejected", 0)
        summary.not_allowed = totals.get("not_allowed", 0)
        summary.socket_drops = totals.get("socket_drops", 0)
        summary.flow_files = list(self.outputs.flows.written)
        summary.counter_files = list(self.outputs.counters.written)
        summary.quarantine_files = list(self.outputs.quarantine.written)
        summary.stats = dict(totals)
        summary.elapsed_s = time.monotonic() - started
        summary.buffer_peak_bytes = self.buffer_peak_bytes
        return summary

    def _next_from_thread(
        self, receiver: threading.Thread | None
    ) -> tuple[ReceiveChunk | None, bool]:
        """(chunk or None, ended?) from the receiver thread's queue."""
        try:
            chunk = self._full.get(timeout=0.2)
        except queue.Empty:
            # the thread always ends with a None sentinel; a dead one ends the run too
            return None, receiver is None or not receiver.is_alive()
        return chunk, chunk is None

    def _next_from_process(self, stop: threading.Event) -> tuple[ReceiveChunk | None, bool]:
        """(chunk or None, ended?) from the receiver process's ring.

        A trickle (less than ``GATHER_BYTES`` waiting) is left to gather for up to
        ``GATHER_S`` first: the child hands over every 5 ms, and one decoding call over
        many of its records costs about half as much per flow as one call each, which
        leaves the CPU to the receiver when the machine is busy. Behind (more waiting)
        or stopping, there is no wait."""
        proc = self._proc
        assert proc is not None
        stopping = stop.is_set()
        if stopping:
            proc.stop()
        if _bell_rings(proc.bell, 0):
            proc.poll()
        pending = proc.pending_bytes
        if 0 < pending < GATHER_BYTES and not stopping and not proc.finished:
            now = time.monotonic()
            if self._gather_since is None:
                self._gather_since = now
            left = self._gather_since + GATHER_S - now
            if left > 0:
                if _bell_rings(proc.bell, left):
                    proc.poll()
                return None, False
        self._gather_since = None
        chunk = proc.next_chunk()
        if chunk is not None:
            return chunk, False
        if proc.finished:
            if proc.error is not None:
                self._receiver_error = RuntimeError(proc.error)
            return None, True
        if _bell_rings(proc.bell, 0.2):
            proc.poll()
        return None, False

    def _release(self, chunk: ReceiveChunk) -> None:
        if self._proc is not None:
            self._proc.release(chunk)
        else:
            chunk.reset()
            self._free.put(chunk)


def run_collector(
    listen: list[tuple[str, int]],
    workspace: WorkspacePaths,
    *,
    allowlist: Iterable[str] | None = None,
    rotate_seconds: float = 60.0,
    rotate_bytes: int = 64 << 20,
    stats_interval: float = 10.0,
    state_interval: float = 30.0,
    stop_event: threading.Event | None = None,
    on_ready: Callable[[list[tuple[str, int]]], None] | None = None,
    **options: Any,
) -> CollectorSummary:
    """Run a :class:`UdpCollector` in the foreground until SIGTERM/SIGINT or ``stop_event``.

    Without ``stop_event`` (the CLI) SIGTERM and SIGINT handlers are installed for the
    run and restored after it. ``on_ready`` receives the bound addresses once the
    sockets listen (tests bind port 0). ``options`` go to :class:`UdpCollector`.
    """
    collector = UdpCollector(
        listen,
        workspace,
        allowlist=allowlist,
        rotate_seconds=rotate_seconds,
        rotate_bytes=rotate_bytes,
        stats_interval=stats_interval,
        state_interval=state_interval,
        **options,
    )
    stop = stop_event if stop_event is not None else threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if stop_event is None and threading.current_thread() is threading.main_thread():

        def _handler(signum: int, _frame: types.FrameType | None) -> None:
            log.info("signal %d: stopping the collector", signum)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _handler)
    frozen = False
    try:
        collector.start_receiving()  # forked first: a small process, no threads yet
        collector.warm_up()
        # what is loaded (modules, kernels) lives as long as the run: full collections
        # walking it were ~8% of the decoding thread (profiled, 4M v5 flows/s)
        gc.freeze()
        frozen = True
        if on_ready is not None:
            on_ready(collector.addresses)
        return collector.run(stop)
    finally:
        if frozen:
            gc.unfreeze()
        collector.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

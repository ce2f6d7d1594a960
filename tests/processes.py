"""Processes started by tests: always stopped, pass or fail, and never waited on forever.

``running(cmd)`` starts a process in its own session and, on leaving the block for any
reason, asks it to stop (SIGTERM), waits a bounded time and then kills its whole process
group. :class:`LineReader` reads a process's output with deadlines (a process that hangs
before printing must not hang the test, which would keep the ``finally`` that stops it from
ever running).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

__all__ = ["LineReader", "running", "stop"]


def stop(proc: subprocess.Popen[Any], *, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Send ``sig``, wait up to ``timeout`` s, then SIGKILL the process group; the exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:
                _kill_group(proc)
                proc.wait(30)
    return int(proc.returncode)


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # started with start_new_session: its children too
    except (ProcessLookupError, PermissionError):
        proc.kill()


@contextmanager
def running(cmd: Sequence[str], **popen: Any) -> Iterator[subprocess.Popen[Any]]:
    """``subprocess.Popen(cmd)`` in a new session, stopped (then killed) when the block ends."""
    proc = subprocess.Popen(list(cmd), start_new_session=True, **popen)
    try:
        yield proc
    finally:
        try:
            stop(proc)
        finally:
            if proc.poll() is None:  # pragma: no cover - stop() already killed it
                _kill_group(proc)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


class LineReader:
    """Lines of a process's text stream, read by a thread so a wait can have a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._lines.put(line)
        except (OSError, ValueError):  # the stream was closed under us: the test has ended
            pass
        self._lines.put("")  # end of file

    def read_line(self, timeout: float) -> str:
        """The next line ('' at end of file); fails after ``timeout`` s without one."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout} s") from None

    def wait_for(self, prefix: str, timeout: float) -> tuple[str, list[str]]:
        """Read until a line starts with ``prefix``: (that line, the lines before it)."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            line = self.read_line(max(0.01, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line, seen
            if not line:
                raise AssertionError(f"ended before {prefix!r}: {''.join(seen)[-2000:]}")
            seen.append(line)

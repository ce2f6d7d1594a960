"""Compile the rating kernel on the second core while a first run does its other work.

On a cold Numba cache the rating kernel takes most of a first bill's compile time (17 s of
CPU on the demo, measured), and Numba compiles under one lock per process: threads cannot
share the work, another process can. :func:`start` launches ``python -m
rating_engine.rating.warm_up TARIFF_DIR``, which rates a few records against the tariffs
(a call, an SMS and data for every tariff, allowances included) and so compiles and caches
the very specialisations a billing run calls - the kernel's inputs have one type each
whatever their source (:mod:`collectors.kernel_arrays`). The caller goes on with ingest
(whose kernels compile meanwhile) and calls :meth:`WarmUp.wait` before it rates: then it
loads the kernel from the cache instead of compiling it. With a warm cache nothing starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["WarmUp", "kernel_cached", "start"]


def kernel_cached() -> bool:
    """Whether the rating kernel's Numba cache index exists (False when it cannot tell)."""
    try:
        from rating_engine.rating.kernel import rate_records

        # Numba internals, hence the guard: the dispatcher's cache index file
        dispatcher: Any = rate_records
        index = dispatcher._cache._cache_file._index_path
    except Exception:
        return False
    return bool(os.path.exists(index))


class WarmUp:
    """A running warm-up process (see the module doc)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def wait(self, timeout: float = 600.0) -> bool:
        """Wait for the compile to be cached; False if it failed or took too long (the
        caller then compiles as it would have: a warm-up never changes a result)."""
        try:
            return self.proc.wait(timeout) == 0
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False

    def stop(self) -> None:
        """End the process if it still runs (the caller is giving up)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start(tariff_dir: Path) -> WarmUp | None:
    """Start compiling the rating kernel for the tariffs in ``tariff_dir`` in another
    process, unless it is cached already or fewer than two CPUs are there to share."""
    if (os.cpu_count() or 1) < 2 or kernel_cached():
        return None
    proc = subprocess.Popen(  # the same interpreter, environment and Numba cache
        [sys.executable, "-m", "rating_engine.rating.warm_up", str(tariff_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return WarmUp(proc)


def rate_sample(tariff_dir: Path) -> int:
    """Rate a voice call, an SMS and a data session for a subscriber of every tariff in
    ``tariff_dir`` (what compiles the kernel); returns the records rated."""
    import pyarrow as pa

    from collectors.usage_records import usage_table
    from rating_engine.rating.rate import compile_plan, load_tariffs, rate_usage
    from rating_engine.schemas import SUBSCRIPTION_SCHEMA

    tariffs = load_tariffs(tariff_dir)
    if not tariffs:
        return 0
    subs, usage = [], []
    for n, tariff_id in enumerate(sorted(tariffs), 1):
        key = f"4915550{n:05d}"
        subs.append({"subscription_id": n, "account_id": n, "key_type": "msisdn", "key": key,
                     "tariff_id": tariff_id, "active_from": datetime(2000, 1, 1, tzinfo=UTC),
                     "active_to": None})  # fmt: skip
        start_at = datetime(2026, 1, 5, 10, tzinfo=UTC)
        usage += [
            {"subscriber": key, "service": "voice", "start": start_at, "duration": 61,
             "destination": "4930123456"},
            {"subscriber": key, "service": "sms", "start": start_at, "destination": "4930123456"},
            {"subscriber": key, "service": "data", "start": start_at, "volume": 1000},
        ]  # fmt: skip
    plan = compile_plan(tariffs)
    subscriptions = pa.Table.from_pylist(subs, schema=SUBSCRIPTION_SCHEMA)
    result = rate_usage(usage_table(usage, source="warm-up"), subscriptions, plan)
    return int(result.rated.num_rows)


if __name__ == "__main__":
    rate_sample(Path(sys.argv[1]))

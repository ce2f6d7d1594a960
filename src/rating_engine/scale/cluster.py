"""Connecting to a Dask cluster, and checking it can do the work before anything is written.

``--scheduler`` (or ``$RATING_ENGINE_SCHEDULER``) takes ``tcp://HOST:PORT`` (a running
``dask scheduler``; ``HOST:PORT`` alone means tcp), ``local:N`` (a ``LocalCluster`` of N
worker processes started for the command and stopped after it) or ``none`` (in process,
the default). Before any task runs, every worker is asked to import the package and to
list the workspace folder: a worker that cannot, or sees another folder at that path, is
named in a :class:`~rating_engine.errors.ScaleOutError` and nothing is written.

Dask is imported here lazily, only when a scheduler is asked for.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rating_engine.errors import ScaleOutError

__all__ = ["SCHEDULER_ENV", "SchedulerSpec", "check_workers", "open_client", "parse_scheduler"]

SCHEDULER_ENV = "RATING_ENGINE_SCHEDULER"
_SCHEMES = ("tcp://", "tls://", "ucx://", "ws://", "wss://")
_CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class SchedulerSpec:
    """A scheduler address, or the size of a local cluster to start."""

    address: str | None = None
    local_workers: int = 0

    def __str__(self) -> str:
        return self.address or f"local:{self.local_workers}"


def parse_scheduler(text: str | None) -> SchedulerSpec | None:
    """``tcp://h:p`` / ``h:p`` / ``local:N`` / ``none``; None or empty means in process."""
    value = (text or "").strip()
    if value.lower() in ("", "none", "in-process"):
        return None
    if value.lower().startswith("local"):
        rest = value[5:]
        count = rest[1:] if rest.startswith(":") else rest
        if not count:
            return SchedulerSpec(local_workers=os.cpu_count() or 1)
        if not count.isdigit() or int(count) < 1:
            raise ScaleOutError(f"scheduler {value!r}: local:N needs a number of workers >= 1")
        return SchedulerSpec(local_workers=int(count))
    if not value.startswith(_SCHEMES):
        if "://" in value:
            raise ScaleOutError(
                f"scheduler {value!r}: use tcp://HOST:PORT, HOST:PORT, local:N or none"
            )
        value = f"tcp://{value}"
    host_port = value.split("://", 1)[1]
    if ":" not in host_port or not host_port.rsplit(":", 1)[1].isdigit():
        raise ScaleOutError(f"scheduler {value!r}: give the port too (tcp://HOST:8786)")
    return SchedulerSpec(address=value)


def _probe(root: str) -> tuple[str, ...]:
    """Run on each worker: imports the package and lists the workspace (names only)."""
    import rating_engine.scale  # noqa: F401  (the import is the check)

    path = Path(root)
    if not path.is_dir():
        return ("<missing>",)
    return tuple(sorted(p.name for p in path.iterdir() if not p.name.startswith(".")))


def check_workers(client: Any, root: Path) -> int:
    """Every worker imports the package and sees ``root`` as this process does; returns
    the number of workers."""
    expected = _probe(str(root))
    answers = client.run(_probe, str(root), on_error="return")
    if not answers:
        raise ScaleOutError(f"the Dask cluster at {client.scheduler.address} has no workers")
    for worker, answer in sorted(answers.items()):
        # an import failure while the worker unpickles the check arrives wrapped in a plain
        # Exception that only names it
        if isinstance(answer, ImportError) or (
            isinstance(answer, BaseException) and "No module named" in str(answer)
        ):
            raise ScaleOutError(
                f"worker {worker} cannot import the package ({answer}); install rating-engine "
                "in every worker's environment"
            )
        if isinstance(answer, BaseException):
            raise ScaleOutError(f"worker {worker} failed the start-up check: {answer!r}")
        if answer != expected:
            seen = "nothing" if answer == ("<missing>",) else "another folder"
            raise ScaleOutError(
                f"worker {worker} sees {seen} at workspace {root}; put the workspace on "
                "storage every worker mounts at the same path"
            )
    return len(answers)


@contextmanager
def open_client(spec: SchedulerSpec, workspace_root: Path) -> Iterator[Any]:
    """A ``dask.distributed.Client`` for ``spec``, checked against ``workspace_root``;
    a local cluster is started for the block and stopped after it."""
    try:
        distributed: Any = importlib.import_module("dask.distributed")
    except ImportError as exc:  # dask is a declared dependency: a broken environment
        raise ScaleOutError(f"--scheduler needs dask[distributed] installed ({exc})") from exc
    Client, LocalCluster = distributed.Client, distributed.LocalCluster
    cluster = None
    try:
        if spec.address is None:
            cluster = LocalCluster(
                n_workers=spec.local_workers, threads_per_worker=1, processes=True,
                dashboard_address=":0", silence_logs=logging.ERROR,
            )  # fmt: skip
            client = Client(cluster, set_as_default=False)
        else:
            client = Client(spec.address, timeout=_CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise ScaleOutError(f"cannot reach the Dask scheduler at {spec}: {exc}") from exc
    try:
        check_workers(client, workspace_root)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

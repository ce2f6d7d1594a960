"""Faults for Dask workers in tests: a worker killed in the middle of a task, a worker that
cannot import the package, a worker that cannot see the workspace.

Each is a ``WorkerPlugin`` the test registers on a cluster; workers import this module by
name (test helpers are on every worker's path: a local cluster's processes are started
with the test's ``sys.path``).
"""

from __future__ import annotations

import builtins
import os
import pathlib
import signal
import sys
from importlib.abc import MetaPathFinder
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["BlindWorker", "KillAfterFirstPart", "NoPackage"]


class KillAfterFirstPart(WorkerPlugin):
    """SIGKILL this worker right after it publishes its first rated part (once per cluster:
    ``marker`` is created first), leaving the task half done for the scheduler to rerun."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def setup(self, worker: Any) -> None:
        from rating_engine.scale import parts

        original = parts.DayPartWriter.close
        marker = self.marker

        def close(writer: parts.DayPartWriter) -> list[pathlib.Path]:
            done = original(writer)
            if done and "rated" in str(writer.root) and not os.path.exists(marker):
                with open(marker, "w") as fh:
                    fh.write(f"killed {os.getpid()} after {done[0]}\n")
                os.kill(os.getpid(), signal.SIGKILL)
            return done

        parts.DayPartWriter.close = close  # type: ignore[method-assign]


class _Refuse(MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name.split(".")[0] in ("rating_engine", "bss", "collectors"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


class NoPackage(WorkerPlugin):
    """The worker behaves as one without the package installed."""

    def setup(self, worker: Any) -> None:
        for name in [m for m in sys.modules if m.split(".")[0] in ("rating_engine", "bss")]:
            del sys.modules[name]
        sys.meta_path.insert(0, _Refuse())


class BlindWorker(WorkerPlugin):
    """The worker sees nothing at ``root`` (as a host without the shared mount would)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def setup(self, worker: Any) -> None:
        root = self.root
        is_dir = pathlib.Path.is_dir
        real_open = builtins.open

        def blind_is_dir(path: pathlib.Path) -> bool:
            return False if str(path).startswith(root) else is_dir(path)

        def blind_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            if str(file).startswith(root):
                raise FileNotFoundError(2, "No such file or directory", str(file))
            return real_open(file, *args, **kwargs)

        pathlib.Path.is_dir = blind_is_dir  # type: ignore[method-assign]
        builtins.open = blind_open

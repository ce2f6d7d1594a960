"""The maintenance lock of a dataset: writers share it, expiry and compaction take it alone.

A writer holds the shared lock while it creates a partition folder, writes a part under
a temporary name and renames it; :mod:`~collectors.retention.expire` and
:mod:`~collectors.retention.compact` hold the exclusive lock only for their short
visible steps (removing files and empty folders, swapping a partition folder). So a
collector never finds its partition folder removed between its ``mkdir`` and its
rename, and maintenance never swaps a folder under a half-written part. Readers take no
lock: every change they can see is one rename or one unlink.

The lock is ``flock(2)`` on ``<dataset>/.lock`` (hidden: never read as data), released
by the kernel when its holder dies, so a killed process never leaves a dataset locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK_NAME", "dataset_lock"]

LOCK_NAME = ".lock"


@contextlib.contextmanager
def dataset_lock(root: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold the maintenance lock of the dataset at ``root`` (created if missing)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock

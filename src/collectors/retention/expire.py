"""Expiry of a dataset's oldest partitions by age and total size, like nfdump's nfexpire.

:func:`plan_expiry` picks whole partitions, oldest first: every partition that ended
more than ``older_than`` ago, then more old ones while the dataset is larger than
``max_bytes``. It never picks a partition that has not ended yet (a collector may be
writing it), one whose folder names no time, or one the caller's ``protect`` refuses
(the BSS protects flows that issued bills rest on, see ``bss.billed_data``); those are
listed with the reason. :func:`apply_expiry` removes the planned parts, one partition at
a time under the dataset's exclusive maintenance lock (:mod:`collectors.retention.lock`),
then the folders left empty, so a collector writing beside it never loses a part or
finds its folder gone between ``mkdir`` and rename. Parts that arrived in a partition
after the plan are left for the next run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.retention.lock import dataset_lock
from collectors.retention.partitions import Partition, list_partitions

__all__ = ["ExpiryPlan", "apply_expiry", "plan_expiry"]

#: (partition) -> None to allow its removal, or the reason it must be kept.
Protect = Callable[[Partition], str | None]


@dataclass
class ExpiryPlan:
    """What expiry removes and keeps, and the sizes before and after."""

    root: Path
    remove: list[Partition] = field(default_factory=list)
    protected: list[tuple[Partition, str]] = field(default_factory=list)
    total_bytes: int = 0
    max_bytes: int | None = None
    cutoff_us: int | None = None
    removed_files: int = 0

    @property
    def removed_bytes(self) -> int:
        return sum(p.size for p in self.remove)

    @property
    def bytes_after(self) -> int:
        return self.total_bytes - self.removed_bytes

    @property
    def size_limit_met(self) -> bool:
        return self.max_bytes is None or self.bytes_after <= self.max_bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--json`` output."""
        return {
            "dataset": str(self.root),
            "removed_partitions": [p.name for p in self.remove],
            "removed_bytes": self.removed_bytes,
            "removed_files": self.removed_files,
            "bytes_before": self.total_bytes,
            "bytes_after": self.bytes_after,
            "max_bytes": self.max_bytes,
            "size_limit_met": self.size_limit_met,
            "protected": [
                {"partition": p.name, "bytes": p.size, "reason": why} for p, why in self.protected
            ],
        }


def plan_expiry(
    root: Path,
    *,
    older_than_s: int | None = None,
    max_bytes: int | None = None,
    protect: Protect | None = None,
    now_us: int | None = None,
) -> ExpiryPlan:
    """The partitions to remove (see the module doc); nothing is touched."""
    if older_than_s is None and max_bytes is None:
        raise ValueError("give older_than_s, max_bytes or both")
    now = time.time_ns() // 1000 if now_us is None else now_us
    parts = list_partitions(root)
    plan = ExpiryPlan(root, total_bytes=sum(p.size for p in parts), max_bytes=max_bytes)
    if older_than_s is not None:
        plan.cutoff_us = now - older_than_s * 1_000_000
    left = plan.total_bytes
    for part in parts:
        if part.end_us is None or part.end_us > now:
            continue  # undated, or still being written
        too_old = plan.cutoff_us is not None and part.end_us <= plan.cutoff_us
        too_big = max_bytes is not None and left > max_bytes
        if not (too_old or too_big):
            continue
        why = protect(part) if protect is not None else None
        if why is not None:
            plan.protected.append((part, why))
            continue
        plan.remove.append(part)
        left -= part.size
    return plan


def _remove_empty(folder: Path, root: Path) -> None:
    """Remove ``folder`` and its parents up to ``root`` while they hold nothing."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): stop climbing
            return
        folder = folder.parent


def apply_expiry(plan: ExpiryPlan) -> ExpiryPlan:
    """Remove what ``plan`` picked; returns it with ``removed_files`` counted."""
    for part in plan.remove:
        with dataset_lock(plan.root, exclusive=True):
            for path in part.files:
                try:
                    os.unlink(path)
                    plan.removed_files += 1
                except FileNotFoundError:
                    continue  # removed meanwhile (another expire): the goal is met
            _remove_empty(part.folder, plan.root)
    return plan

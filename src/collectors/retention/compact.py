"""Compaction: a partition's many small collector parts merged into few large ones, atomically.

A collector writes a part per rotation (a minute by default) per partition, so an hour
holds sixty small files; readers pay per file. :func:`compact_dataset` merges, in each
partition that ended at least ``min_age_s`` ago, the small parts whose names carry no
meaning (collector rotations ``udp-*``, live captures ``live-*``, earlier compactions
``compact-*``; never the content-named parts of ``ingest``, which a re-ingest replaces
by name) into parts of about ``target_bytes``.

Readers must never see both the old and the new parts, nor neither. So the new
partition folder is built beside the dataset (``<dataset>/../.<dataset>.compact/``):
the merged parts plus hard links of the parts left alone; its row count is checked
against the inputs; then, under the dataset's exclusive maintenance lock, and only if
the partition still holds exactly the parts that were read, the two folders are
swapped with one ``renameat2(RENAME_EXCHANGE)``: a reader listing the partition gets
the old folder or the new one, whole. The old folder is then deleted. A part that
appeared after all (a writer that does not take the lock) is moved back into the
partition, never lost. Rows are written exactly once: the merge is a concatenation,
columns missing from older parts (added to the schema since) become nulls.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from math import ceil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from collectors.dataset import atomic_write_table
from collectors.errors import WorkspaceError
from collectors.retention.lock import dataset_lock
from collectors.retention.partitions import Partition, list_partitions

__all__ = ["MERGEABLE_PREFIXES", "CompactionResult", "compact_dataset", "exchange_folders"]

#: Part names (after ``part-``) that say nothing but who wrote them and when.
MERGEABLE_PREFIXES = ("udp-", "live-", "compact-")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange_folders(a: Path, b: Path) -> None:
    """Swap two folders atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    call = getattr(libc, "renameat2", None)
    if call is None:
        raise WorkspaceError("compaction needs renameat2 (Linux 3.15+, glibc 2.28+)")
    if call(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOSYS, errno.EXDEV):
            raise WorkspaceError(
                f"cannot swap {b} atomically ({os.strerror(code)}): compaction needs both "
                "folders on one file system that supports RENAME_EXCHANGE (ext4, xfs, "
                "btrfs, tmpfs)"
            )
        raise OSError(code, os.strerror(code), str(b))


@dataclass
class CompactionResult:
    """What one compaction pass did."""

    root: Path
    partitions: list[str] = field(default_factory=list)
    parts_before: int = 0
    parts_after: int = 0
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--json`` output."""
        return {
            "dataset": str(self.root),
            "partitions": self.partitions,
            "parts_before": self.parts_before,
            "parts_after": self.parts_after,
            "rows": self.rows,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "skipped": [{"partition": p, "reason": why} for p, why in self.skipped],
        }


def _mergeable(path: Path) -> bool:
    name = path.name
    return name.startswith("part-") and name[5:].startswith(MERGEABLE_PREFIXES)


def _candidates(part: Partition, target_bytes: int) -> list[Path]:
    small = [f for f in part.files if _mergeable(f) and f.stat().st_size < target_bytes // 2]
    return small if len(small) >= 2 else []


def _merged_name(inputs: list[Path], k: int) -> str:
    digest = hashlib.blake2b("\0".join(p.name for p in inputs).encode(), digest_size=6)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"part-compact-{stamp}-{digest.hexdigest()}-{k:03d}.parquet"


def _build(part: Partition, inputs: list[Path], staging: Path, target_bytes: int) -> int:
    """Fill ``staging`` with the partition's new content; returns the rows merged."""
    tables = []
    for path in inputs:  # each file alone: no partition columns inferred from the folders
        with pq.ParquetFile(path, page_checksum_verification=True) as f:
            tables.append(f.read())
    merged = pa.concat_tables(tables, promote_options="default")
    rows = int(merged.num_rows)
    size = sum(p.stat().st_size for p in inputs)
    pieces = max(1, ceil(size / target_bytes))
    step = ceil(rows / pieces) if rows else 0
    staging.mkdir(parents=True)
    written = 0
    for k in range(pieces):
        piece = merged.slice(k * step, step)
        path = atomic_write_table(piece, staging / _merged_name(inputs, k))
        written += pq.read_metadata(path).num_rows
    if written != rows:  # never swap in a partition that lost or gained a row
        raise WorkspaceError(f"compaction of {part.folder}: wrote {written} rows of {rows}")
    keep = set(inputs)
    for other in part.files:
        if other not in keep:
            os.link(other, staging / other.name)
    return rows


def _swap(part: Partition, staging: Path, root: Path) -> bool:
    """Exchange the folders if the partition is as it was read; False if it changed."""
    with dataset_lock(root, exclusive=True):
        now = {p for p in part.folder.glob("*.parquet") if not p.name.startswith((".", "_"))}
        if now != set(part.files):
            return False
        exchange_folders(staging, part.folder)
    # ``staging`` now holds the old folder; a part a lock-less writer added meanwhile
    # goes back into the partition rather than away with the old folder
    for stray in staging.glob("*.parquet"):
        if not stray.name.startswith((".", "_")) and stray not in {
            staging / f.name for f in part.files
        }:
            os.replace(stray, part.folder / stray.name)
    return True


def compact_dataset(
    root: Path,
    *,
    target_bytes: int = 256 << 20,
    min_age_s: int = 3600,
    dry_run: bool = False,
    now_us: int | None = None,
) -> CompactionResult:
    """Merge the small collector parts of every settled partition (see the module doc)."""
    now = time.time_ns() // 1000 if now_us is None else now_us
    result = CompactionResult(root)
    stage_root = root.parent / f".{root.name}.compact"
    for part in list_partitions(root):
        if part.end_us is None or part.end_us > now - min_age_s * 1_000_000:
            continue
        if any(p.is_dir() for p in part.folder.iterdir()):
            continue  # a day folder that also holds hour folders: only leaf folders swap
        try:
            inputs = _candidates(part, target_bytes)
            size_before = sum(p.stat().st_size for p in inputs)
        except FileNotFoundError:  # removed since the listing: leave it to the next run
            continue
        if not inputs:
            continue
        if dry_run:
            result.partitions.append(part.name)
            result.parts_before += len(inputs)
            result.bytes_before += size_before
            continue
        staging = stage_root / uuid.uuid4().hex
        try:
            rows = _build(part, inputs, staging, target_bytes)
            new_parts = [
                p
                for p in staging.glob("part-compact-*.parquet")
                if p.name not in {i.name for i in part.files}
            ]
            size_after = sum(p.stat().st_size for p in new_parts)
            if not _swap(part, staging, root):
                result.skipped.append((part.name, "written to while compacting; next run"))
                continue
        except FileNotFoundError:  # a part removed meanwhile (an expire): the next run
            result.skipped.append((part.name, "changed while compacting; next run"))
            continue
        except (pa.ArrowException, OSError) as exc:
            if (
                isinstance(exc, OSError)
                and exc.errno is not None
                and not isinstance(exc, pa.ArrowException)
            ):
                raise  # the machine's fault (disk full, permissions): not the data's
            # a damaged part (Arrow's checksum errors are OSErrors without an errno), or
            # parts of clashing types
            why = " ".join(str(exc).split())
            result.skipped.append(
                (part.name, f"parts cannot be merged ({why}); see `rating-engine check`")
            )
            continue
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        result.partitions.append(part.name)
        result.parts_before += len(inputs)
        result.parts_after += len(new_parts)
        result.rows += rows
        result.bytes_before += size_before
        result.bytes_after += size_after
    if stage_root.exists() and not any(stage_root.iterdir()):
        stage_root.rmdir()
    return result

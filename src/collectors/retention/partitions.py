"""The partitions of a hive-partitioned dataset: folder, time span, parts and size.

A partition is a folder holding parts: ``date=YYYY-MM-DD`` (a UTC day) or
``date=YYYY-MM-DD/hour=HH`` (a UTC hour). Its time span is what the folder names;
a folder whose name is no date (``date=out_of_range``: an exporter's clock beyond year
9999) has none, and retention never removes it by age. Durations (``90d``) and sizes
(``50G``) are parsed here for the ``expire`` and ``compact`` commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from collectors.dataset import dataset_files

__all__ = ["Partition", "list_partitions", "parse_duration", "parse_size"]

_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}


def parse_duration(text: str) -> int:
    """Seconds in ``90d``, ``12h``, ``2w``, ``30m``, ``45s``; ValueError otherwise."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration such as 90d, 12h, 2w")
    return int(match.group(1)) * _SECONDS[match.group(2).lower()]


def parse_size(text: str) -> int:
    """Bytes in ``50G``, ``500M``, ``1.5T``, ``1024`` (powers of 1024, as nfexpire)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size such as 50G, 500M, 1T")
    size = int(float(match.group(1)) * 1024 ** _POWERS[match.group(2).upper()])
    if size <= 0:
        raise ValueError(f"{text!r}: a size must be positive")
    return size


@dataclass(frozen=True)
class Partition:
    """One partition folder and its visible parts."""

    folder: Path
    name: str  # relative to the dataset: "date=2025-01-31/hour=13"
    start_us: int | None  # None: the folder names no time
    end_us: int | None
    files: tuple[Path, ...]
    size: int

    @property
    def day(self) -> int | None:
        """Days since 1970-01-01 of the partition's start (UTC)."""
        return None if self.start_us is None else self.start_us // _DAY_US


def _span(relative: tuple[str, ...]) -> tuple[int, int] | None:
    if not relative or not relative[0].startswith("date="):
        return None
    try:
        day = datetime.strptime(relative[0][5:], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    start = int(day.timestamp()) * 1_000_000
    if len(relative) == 1:
        return start, start + _DAY_US
    if len(relative) == 2 and relative[1].startswith("hour="):
        hour = relative[1][5:]
        if hour.isdigit() and 0 <= int(hour) < 24:
            start += int(hour) * _HOUR_US
            return start, start + _HOUR_US
    return None


def list_partitions(root: Path) -> list[Partition]:
    """Every folder of ``root`` holding visible parts, oldest first (undated ones last)."""
    by_folder: dict[Path, list[Path]] = {}
    for path in dataset_files(root):
        by_folder.setdefault(path.parent, []).append(path)
    out = []
    for folder, files in by_folder.items():
        relative = folder.relative_to(root).parts
        span = _span(relative)
        sizes = 0
        for f in files:
            try:
                sizes += f.stat().st_size
            except FileNotFoundError:  # removed since the listing (another expire, a compact)
                continue
        out.append(
            Partition(
                folder,
                "/".join(relative) or ".",
                span[0] if span else None,
                span[1] if span else None,
                tuple(files),
                sizes,
            )
        )
    return sorted(out, key=lambda p: (p.start_us is None, p.end_us or 0, p.name))

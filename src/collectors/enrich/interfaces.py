"""Interface names and speeds per exporter, from small TOML files the operator keeps.

One file may describe one exporter or several; ``--interfaces`` can be given once per
file. An exporter is a table keyed by its address (as the collector sees the sender),
each interface a key by its SNMP ifIndex::

    [exporter."192.0.2.1"]
    1 = { name = "xe-0/0/1", speed = "10G" }      # speed: bits/s, or K/M/G/T (powers of 1000)
    2 = { name = "xe-0/0/2", speed = 1_000_000_000, description = "transit A" }

    [exporter."2001:db8::1"]
    7 = { name = "et-0/0/7" }

``name`` is required; ``speed`` and ``description`` (kept for people, not stored) are
optional. A mistake is an error naming the file, the exporter, the ifIndex and the field.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from collectors.addresses import address_to_bytes
from collectors.errors import CollectorError

__all__ = ["InterfaceTable", "load_interface_files", "parse_speed"]

_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_SPEED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:bit/s|bps|b/s)?\s*$", re.IGNORECASE)
_FIELDS = {"name", "speed", "description"}


def parse_speed(value: object) -> int:
    """Bits per second from an integer or a text such as ``"10G"``, ``"2.5G"``, ``"100M"``."""
    if isinstance(value, bool):
        raise ValueError(f"speed {value!r}: give bits per second or a text like '10G'")
    if isinstance(value, int):
        if not 0 <= value < 1 << 64:
            raise ValueError(f"speed {value} out of range")
        return value
    if isinstance(value, str):
        match = _SPEED.match(value)
        if match:
            bits = float(match.group(1)) * _UNITS[match.group(2).upper()]
            if bits < 1 << 64:
                return round(bits)
    raise ValueError(f"speed {value!r}: give bits per second or a text like '10G'")


@dataclass(frozen=True, repr=False)
class InterfaceTable:
    """(exporter, ifIndex) -> name and speed, in arrays for vectorised look-ups."""

    exporters: pa.Array  # binary(16), one per exporter
    keys: np.ndarray  # uint64 sorted: exporter position << 32 | ifIndex
    names: pa.Array  # string, aligned with keys
    speeds: pa.Array  # uint64 (null when not given), aligned with keys

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def __repr__(self) -> str:
        return f"InterfaceTable({len(self.exporters)} exporters, {len(self)} interfaces)"

    def rows(self, exporter: pa.Array, if_index: np.ndarray) -> np.ndarray:
        """Row of each (exporter, ifIndex) pair in :attr:`keys`, or -1."""
        import pyarrow.compute as pc

        pos = pc.index_in(exporter, value_set=self.exporters)
        known = pos.is_valid()
        if not pc.any(known).as_py():
            return np.full(len(exporter), -1, np.int64)
        p = pos.fill_null(0).to_numpy(zero_copy_only=False).astype(np.uint64)
        want = (p << np.uint64(32)) | if_index.astype(np.uint64)
        k = np.searchsorted(self.keys, want)
        k = np.minimum(k, max(len(self.keys) - 1, 0))
        hit = (self.keys[k] == want) & known.to_numpy(zero_copy_only=False)
        return np.where(hit, k, -1).astype(np.int64)


def _entry(where: str, value: object) -> tuple[str, int | None]:
    if not isinstance(value, dict):
        raise CollectorError(f'{where}: expected a table like {{ name = "xe-0/0/1" }}')
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise CollectorError(
            f"{where}: unknown field {unknown[0]!r} (known: name, speed, description)"
        )
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CollectorError(f"{where}, field name: a non-empty text is required")
    speed = None
    if "speed" in value:
        try:
            speed = parse_speed(value["speed"])
        except ValueError as exc:
            raise CollectorError(f"{where}, field speed: {exc}") from exc
    return name, speed


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CollectorError(f"--interfaces {path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CollectorError(f"--interfaces {path}: cannot be read ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CollectorError(f"--interfaces {path}: not valid TOML ({exc})") from exc
    unknown = sorted(set(doc) - {"exporter"})
    if unknown:
        raise CollectorError(
            f"--interfaces {path}: unknown table {unknown[0]!r} (expected "
            '[exporter."ADDRESS"] tables)'
        )
    exporters = doc.get("exporter", {})
    if not isinstance(exporters, dict):
        raise CollectorError(f"--interfaces {path}: 'exporter' must be a table of tables")
    return exporters


def load_interface_files(paths: Iterable[Path]) -> InterfaceTable:
    """Read and check the files; one exporter may appear in one file only."""
    owner: dict[bytes, Path] = {}
    entries: list[tuple[int, int, str, int | None]] = []
    for path in map(Path, paths):
        for address, interfaces in _read(path).items():
            where = f"--interfaces {path}, exporter {address!r}"
            try:
                key = address_to_bytes(ipaddress.ip_address(address.strip()))
            except ValueError as exc:
                raise CollectorError(f"{where}: not an IP address") from exc
            if key in owner:
                raise CollectorError(f"{where}: already described in {owner[key]}")
            position = len(owner)
            owner[key] = path
            if not isinstance(interfaces, dict):
                raise CollectorError(f"{where}: expected a table of ifIndex = {{ ... }}")
            for index_text, value in interfaces.items():
                try:
                    if_index = int(index_text)
                except ValueError:
                    if_index = -1
                if not 0 <= if_index <= 0xFFFF_FFFF:
                    raise CollectorError(
                        f"{where}: {index_text!r} is not an ifIndex (0..4294967295)"
                    )
                name, speed = _entry(f"{where}, ifIndex {if_index}", value)
                entries.append((position, if_index, name, speed))
    entries.sort()
    return InterfaceTable(
        exporters=pa.array(list(owner), pa.binary(16)),
        keys=np.array([(p << 32) | i for p, i, _, _ in entries], np.uint64),
        names=pa.array([e[2] for e in entries], pa.string()),
        speeds=pa.array([e[3] for e in entries], pa.uint64()),
    )

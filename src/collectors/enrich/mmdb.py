"""MaxMind-format databases (``.mmdb``) read once into address ranges.

Two kinds are used, whatever their vendor (MaxMind GeoLite2/GeoIP2, DB-IP, IPinfo's
mmdb exports share the record layout):

* **ASN**: records with ``autonomous_system_number`` (GeoLite2-ASN, GeoIP2-ISP,
  DBIP-ASN-Lite);
* **geo**: records with ``country.iso_code``, else ``registered_country.iso_code``
  (GeoLite2-Country or -City, DBIP-Country-Lite...).

Every network is read at start through the ``maxminddb`` reader and kept as ranges
(:class:`~collectors.enrich.networks.Networks`), so a file that cannot be opened, is
no MaxMind database, or holds the other kind of records is an error before any
traffic is touched, never a failure mid-stream. Networks whose record lacks the
field are skipped and counted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb

from collectors.enrich.networks import Networks, networks_from_lists
from collectors.errors import CollectorError

__all__ = ["GeoDatabase", "load_asn_database", "load_geo_database"]

log = logging.getLogger(__name__)

#: Records read before a database without a single usable one is declared the wrong kind.
_PROBE = 10_000


@dataclass(frozen=True)
class GeoDatabase:
    """A database's ranges, the codes its values point into, and what was read."""

    path: Path
    kind: str  # "asn" or "geo"
    database_type: str
    networks: Networks
    codes: tuple[str, ...]  # geo: ISO 3166-1 alpha-2 codes; values index them
    skipped: int  # networks whose record lacked the field
    load_seconds: float


def _asn(record: Any) -> int | None:
    if not isinstance(record, dict):
        return None
    value = record.get("autonomous_system_number")
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 0xFFFF_FFFF:
        return value
    return None


def _country(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    for key in ("country", "registered_country"):
        part = record.get(key)
        code = part.get("iso_code") if isinstance(part, dict) else None
        if isinstance(code, str) and len(code) == 2 and code.isascii() and code.isalpha():
            return code.upper()
    return None


def _open(path: Path, what: str) -> Any:
    if path.is_dir():
        raise CollectorError(f"{what} {path}: a folder, not a .mmdb file")
    try:
        return maxminddb.open_database(str(path))
    except FileNotFoundError as exc:
        raise CollectorError(f"{what} {path}: no such file") from exc
    except PermissionError as exc:
        raise CollectorError(f"{what} {path}: not readable (permission denied)") from exc
    except (maxminddb.InvalidDatabaseError, ValueError, OSError) as exc:
        raise CollectorError(f"{what} {path}: not a MaxMind database (.mmdb file)") from exc


def _load(path: Path, kind: str) -> GeoDatabase:
    what = "--asn-db" if kind == "asn" else "--geo-db"
    field = "autonomous_system_number" if kind == "asn" else "country.iso_code"
    started = time.perf_counter()
    reader = _open(Path(path), what)
    try:
        meta = reader.metadata()
        db_type = str(getattr(meta, "database_type", "") or "unknown")
        codes: dict[str, int] = {}
        v4: list[tuple[int, int, int]] = []
        v6: list[tuple[int, int, int]] = []
        seen = skipped = 0
        try:
            for network, record in reader:
                seen += 1
                if kind == "asn":
                    value = _asn(record)
                else:
                    code = _country(record)
                    value = None if code is None else codes.setdefault(code, len(codes))
                if value is None:
                    skipped += 1
                    if seen == _PROBE and not (v4 or v6):
                        break
                    continue
                # integer arithmetic: ipaddress's computed properties cost microseconds each
                first = int(network.network_address)
                if network.version == 4:
                    v4.append((first, first | ((1 << (32 - network.prefixlen)) - 1), value))
                    continue
                last = first | ((1 << (128 - network.prefixlen)) - 1)
                if first >> 32 == 0xFFFF and last >> 32 == 0xFFFF:  # ::ffff:0:0/96 inside
                    v4.append((first & 0xFFFF_FFFF, last & 0xFFFF_FFFF, value))
                else:
                    v6.append((first, last, value))
        except (maxminddb.InvalidDatabaseError, ValueError, OSError) as exc:
            raise CollectorError(f"{what} {path}: damaged database ({exc})") from exc
    finally:
        reader.close()
    if not (v4 or v6):
        raise CollectorError(
            f"{what} {path}: no record has the field {field} (database type {db_type!r}, "
            f"{seen} networks read): give "
            + (
                "an ASN database such as GeoLite2-ASN"
                if kind == "asn"
                else "a country or city database such as GeoLite2-Country"
            )
        )
    networks = networks_from_lists(v4, v6)
    ordered = tuple(sorted(codes, key=codes.__getitem__))
    seconds = time.perf_counter() - started
    log.info(
        "%s %s (%s): %d networks, %d without %s, read in %.2f s",
        what,
        path,
        db_type,
        len(networks),
        skipped,
        field,
        seconds,
    )
    return GeoDatabase(Path(path), kind, db_type, networks, ordered, skipped, seconds)


def load_asn_database(path: Path) -> GeoDatabase:
    """Read an ASN database; raises :class:`CollectorError` naming the file if unusable."""
    return _load(path, "asn")


def load_geo_database(path: Path) -> GeoDatabase:
    """Read a country (or city) database; raises :class:`CollectorError` if unusable."""
    return _load(path, "geo")

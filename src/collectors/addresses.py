"""IP addresses as 16-byte values (IPv4 mapped as ``::ffff:a.b.c.d``) and back."""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa

__all__ = [
    "ADDRESS_TYPE",
    "address_from_bytes",
    "address_to_bytes",
    "addresses_to_strings",
    "ipv4_to_mapped",
]

ADDRESS_TYPE = pa.binary(16)
_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"


def address_to_bytes(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """Return the canonical 16-byte form of an IPv4 or IPv6 address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if ip.version == 4:
        return _V4_PREFIX + ip.packed
    return ip.packed


def address_from_bytes(value: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Inverse of :func:`address_to_bytes`: mapped IPv4 comes back as IPv4."""
    if len(value) != 16:
        raise ValueError(f"an address is 16 bytes, got {len(value)}")
    if value[:12] == _V4_PREFIX:
        return ipaddress.IPv4Address(value[12:])
    return ipaddress.IPv6Address(value)


def ipv4_to_mapped(v4: np.ndarray) -> np.ndarray:
    """uint32 IPv4 addresses (host order) to an (n, 16) uint8 array of mapped addresses."""
    n = v4.shape[0]
    out = np.zeros((n, 16), dtype=np.uint8)
    out[:, 10] = 0xFF
    out[:, 11] = 0xFF
    be = v4.astype(">u4").view(np.uint8).reshape(n, 4)
    out[:, 12:16] = be
    return out


def addresses_to_strings(column: pa.Array | pa.ChunkedArray) -> list[str | None]:
    """Human-readable text for a column of 16-byte addresses."""
    return [None if v is None else str(address_from_bytes(v)) for v in column.to_pylist()]

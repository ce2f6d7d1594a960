"""The collector's UDP sockets: ``--listen`` and allowlist parsing, binding, kernel drop counts."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable

from collectors.errors import CollectorError

__all__ = ["bind_socket", "parse_allowlist", "parse_listen", "socket_drops"]


def parse_allowlist(
    entries: Iterable[str] | None,
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
    """Addresses or CIDR networks -> networks (IPv4 also matched in mapped form); None = all."""
    if entries is None:
        return None
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in entries:
        try:
            nets.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise CollectorError(f"allowlist entry {entry!r} is not an address: {exc}") from exc
    return nets


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all IPv4 addresses) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CollectorError(f"--listen {text!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def bind_socket(host: str, port: int, rcvbuf: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port`` with a receive buffer of ``rcvbuf``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        # A big receive buffer absorbs bursts while the worker writes a file.
        for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if opt is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                break
            except OSError:
                continue
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CollectorError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock


def socket_drops(sockets: list[socket.socket]) -> int | None:
    """Datagrams the kernel dropped on these sockets (Linux ``/proc/net/udp*``), else None.

    These are the losses no exporter sequence number can attribute to the network: the
    receive buffer was full because the collector fell behind.
    """
    inodes = set()
    for sock in sockets:
        try:
            inodes.add(str(os.fstat(sock.fileno()).st_ino))
        except OSError:
            continue
    total, found = 0, False
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                for line in fh:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] in inodes:
                        total += int(fields[-1])
                        found = True
        except OSError:
            continue
    return total if found else None

"""Pure-Python reference twin of :func:`collectors.sampled_headers.parse_headers`.

Written from the protocol layouts (Ethernet/802.1Q, MPLS RFC 3032 with the RFC 4385
control word, IPv4, IPv6 and its extension headers, TCP/UDP/SCTP/ICMP, VXLAN RFC 7348),
not from the kernel; used only by the tests.
"""

from __future__ import annotations

import struct

from collectors.sampled_headers import (
    HEADER_ETHERNET,
    HEADER_IP,
    HEADER_IPV4,
    HEADER_IPV6,
    HEADER_MPLS,
    MAX_LABELS,
    VXLAN_PORT,
)

__all__ = ["reference_parse"]

_V4 = b"\x00" * 10 + b"\xff\xff"


def _u16(b: bytes, p: int) -> int:
    return int(struct.unpack_from(">H", b, p)[0])


def reference_parse(kind: int, b: bytes, decap: bool = False) -> dict[str, object]:
    """Fields of one header, as a dict (the kernel's ``info`` columns, addresses, labels)."""
    r: dict[str, object] = dict(
        parsed=0, ip_version=0, protocol=0, tos=0, src_port=0, dst_port=0, tcp_flags=0,
        ip_length=0, vlan=0, depth=0, decapsulated=0, src=bytes(16), dst=bytes(16), labels=[],
    )  # fmt: skip
    labels: list[int] = []
    start = {
        HEADER_ETHERNET: "eth",
        HEADER_IPV4: "v4",
        HEADER_IPV6: "v6",
        HEADER_MPLS: "mpls",
        HEADER_IP: "ip",
    }.get(kind)
    p, n, state = 0, len(b), start
    while state is not None:
        if state == "eth":
            if p + 14 > n:
                break
            et, p = _u16(b, p + 12), p + 14
            while et in (0x8100, 0x88A8, 0x9100) and p + 4 <= n:
                if r["vlan"] == 0:
                    r["vlan"] = _u16(b, p) & 0xFFF
                et, p = _u16(b, p + 2), p + 4
            state = {0x0800: "v4", 0x86DD: "v6", 0x8847: "mpls", 0x8848: "mpls"}.get(et)
        elif state == "mpls":
            bottom = False
            while p + 4 <= n:
                entry = int.from_bytes(b[p : p + 3], "big")
                labels.append(entry >> 4)
                p += 4
                if entry & 1:
                    bottom = True
                    break
            if not bottom or p >= n:
                break
            nib = b[p] >> 4
            if nib == 0:
                p += 4
            state = {4: "v4", 6: "v6", 0: "eth"}.get(nib)
        elif state == "ip":
            state = {4: "v4", 6: "v6"}.get(b[p] >> 4) if p < n else None
        elif state in ("v4", "v6"):
            v4 = state == "v4"
            if p + (20 if v4 else 40) > n or b[p] >> 4 != (4 if v4 else 6):
                break
            r.update(parsed=1, ip_version=4 if v4 else 6, src_port=0, dst_port=0, tcp_flags=0)
            if v4:
                ihl, proto = (b[p] & 15) * 4, b[p + 9]
                r.update(tos=b[p + 1], protocol=proto, src=_V4 + b[p + 12 : p + 16])
                r["dst"] = _V4 + b[p + 16 : p + 20]
                if not r["decapsulated"]:
                    r["ip_length"] = _u16(b, p + 2)
                if _u16(b, p + 6) & 0x1FFF or ihl < 20:
                    break
                p += ihl
            else:
                r.update(tos=((b[p] & 15) << 4) | (b[p + 1] >> 4))
                r.update(src=b[p + 8 : p + 24], dst=b[p + 24 : p + 40])
                if not r["decapsulated"]:
                    r["ip_length"] = _u16(b, p + 4) + 40
                proto, p, cut = b[p + 6], p + 40, False
                for _ in range(8):
                    if proto in (0, 43, 60, 51):
                        if p + 2 > n:
                            cut = True
                            break
                        step = (b[p + 1] + 2) * 4 if proto == 51 else (b[p + 1] + 1) * 8
                        proto, p = b[p], p + step
                    elif proto == 44:
                        if p + 8 > n:
                            cut = True
                            break
                        later = _u16(b, p + 2) >> 3
                        proto, p = b[p], p + 8
                        if later:
                            cut = True
                            break
                    else:
                        break
                r["protocol"] = proto
                if cut:
                    break
            if proto in (6, 17, 132) and p + 4 <= n:
                r["src_port"], r["dst_port"] = _u16(b, p), _u16(b, p + 2)
                if proto == 6 and p + 14 <= n:
                    r["tcp_flags"] = ((b[p + 12] & 1) << 8) | b[p + 13]
            elif proto in (1, 58) and p + 2 <= n:
                r["dst_port"] = b[p] * 256 + b[p + 1]
            vxlan = proto == 17 and r["dst_port"] == VXLAN_PORT and p + 30 <= n
            if decap and vxlan and not r["decapsulated"] and b[p + 8] & 0x08:
                r["decapsulated"] = 1
                p, state = p + 16, "eth"
                continue
            break
    r["depth"] = len(labels)
    r["labels"] = labels[:MAX_LABELS]
    return r

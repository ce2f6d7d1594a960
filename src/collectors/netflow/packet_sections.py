"""IPFIX / PSAMP packet sections and MPLS label elements as flow fields.

Juniper (inline J-Flow), SRv6 and EVPN/MPLS exporters report *sampled packets*: a record
carries a raw header section - ``dataLinkFrameSection`` (315, from layer 2) or
``ipHeaderPacketSection`` (313, from the IP header) - plus its size elements instead of
flow fields. Each section is parsed by :mod:`collectors.sampled_headers` (Ethernet,
802.1Q, MPLS with or without a control word, IPv4/IPv6, SRv6, optionally VXLAN) and what
it yields fills the fields the record's template does not carry - a template's own field
always wins: addresses, ports, protocol, ToS, TCP flags, VLAN, MPLS labels, and the
packet size ``header_ip_length`` - the IP length of a parsed header, else the bytes of
the section itself - which ranks after the length elements when the volume is chosen
(:mod:`collectors.netflow.template_flows`).

MPLS label elements 70-79 (3 octets: 20-bit label, traffic class, bottom-of-stack bit)
become a label stack that ends at the bottom-of-stack bit or at the first all-zero element
(exporters zero the elements a shorter stack does not use).
"""

from __future__ import annotations

import numpy as np

from collectors.flows.batch import MAX_LABELS
from collectors.netflow.information_elements import SLOT
from collectors.netflow.templates import ADDRESS_BIT
from collectors.sampled_headers import (
    HEADER_ETHERNET,
    HEADER_IP,
    INFO_DEPTH,
    INFO_DST_PORT,
    INFO_IP_LENGTH,
    INFO_PARSED,
    INFO_PROTOCOL,
    INFO_SRC_PORT,
    INFO_TCP_FLAGS,
    INFO_TOS,
    INFO_VLAN,
    HeaderFields,
)

__all__ = ["fill_from_sections", "label_stack"]

# Section kind + 1 as the record kernel stores it -> what the section starts with.
_START = np.array([-1, HEADER_ETHERNET, HEADER_IP], np.int64)
# Flow value slots a parsed IP header fills, and the info column each comes from.
_IP_FIELDS = (
    ("src_port", INFO_SRC_PORT),
    ("dst_port", INFO_DST_PORT),
    ("protocol", INFO_PROTOCOL),
    ("tos", INFO_TOS),
    ("tcp_flags", INFO_TCP_FLAGS),
)


def label_stack(entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """24-bit label stack entries ``(n, k)`` -> (20-bit label values, depth per row)."""
    n, k = entries.shape
    depth = np.zeros(n, np.uint8)
    active = np.ones(n, np.bool_)
    for j in range(k):
        active &= entries[:, j] != 0
        depth += active
        active &= (entries[:, j] & 1) == 0  # the bottom of the stack ends it
    return (entries >> np.uint32(4)).astype(np.uint32), depth


def _bit(present: np.ndarray, bit: int) -> np.ndarray:
    return ((present >> np.uint64(bit)) & np.uint64(1)).astype(np.bool_)


def fill_from_sections(
    buf: np.ndarray,
    sec: np.ndarray,
    vals: np.ndarray,
    slot_row: np.ndarray,
    present: np.ndarray,
    addrs: np.ndarray,
    decapsulate_vxlan: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Fill fields the records lack from their packet sections ``sec`` (kind+1, offset, length).

    ``addrs`` is filled in place; returns (vals, slot_row, present - with rows and bits
    added for the filled fields -, section label values ``(n, MAX_LABELS)`` and depths, or
    None twice when no section had labels).
    """
    rows = np.nonzero(sec[:, 0] > 0)[0]
    if rows.size == 0:
        return vals, slot_row, present, None, None
    got = HeaderFields.parse(
        buf, sec[rows, 1], sec[rows, 2], _START[sec[rows, 0]], decapsulate_vxlan
    )
    names = [name for name, _ in _IP_FIELDS] + ["vlan", "header_ip_length"]
    need = [SLOT[name] for name in names if slot_row[SLOT[name]] < 0]
    if need:
        slot_row = slot_row.copy()
        slot_row[need] = np.arange(vals.shape[0], vals.shape[0] + len(need), dtype=slot_row.dtype)
        vals = np.vstack([vals, np.zeros((len(need), vals.shape[1]), vals.dtype)])
    present = present.copy()
    bits = present[rows]
    parsed = got.info[:, INFO_PARSED] == 1
    # Every section is one packet of at least the bytes seen; a parsed IP header knows more.
    size = np.where(parsed, got.info[:, INFO_IP_LENGTH], sec[rows, 2])
    fills = [(name, got.info[:, col], parsed) for name, col in _IP_FIELDS]
    fills.append(("vlan", got.info[:, INFO_VLAN], got.info[:, INFO_VLAN] != 0))
    fills.append(("header_ip_length", size, np.ones(rows.size, np.bool_)))
    for name, values, ok in fills:
        slot = SLOT[name]
        take = ok & ~_bit(bits, slot)
        vals[slot_row[slot], rows[take]] = values[take].astype(np.uint64)
        bits |= take.astype(np.uint64) << np.uint64(slot)
    for a in (0, 1):  # source, destination
        take = parsed & ~_bit(bits, ADDRESS_BIT + a)
        addrs[rows[take], a] = got.addr[take, a]
        bits |= take.astype(np.uint64) << np.uint64(ADDRESS_BIT + a)
    present[rows] = bits
    depth = np.minimum(got.info[:, INFO_DEPTH], MAX_LABELS).astype(np.uint8)
    if not depth.any():
        return vals, slot_row, present, None, None
    n = present.shape[0]
    values = np.zeros((n, MAX_LABELS), np.uint32)
    depths = np.zeros(n, np.uint8)
    values[rows] = got.labels
    depths[rows] = depth
    return vals, slot_row, present, values, depths

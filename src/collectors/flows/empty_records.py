"""The rule that a record yielding no address and no volume is not a flow.

A record whose source and destination are both unspecified (``::`` or ``0.0.0.0``) and
which counts 0 bytes and 0 packets tells nothing a bill or a report could use; writing it
as a row would hide that the decoder understood nothing of it. Decoders reject such
records (reason :data:`EMPTY_RECORD`), naming where they came from, and keep the rest.
"""

from __future__ import annotations

import numpy as np

from collectors.flows.batch import FlowColumns

__all__ = ["EMPTY_RECORD", "empty_records", "unspecified"]

#: Reason code of such a rejection.
EMPTY_RECORD = "empty_record"
_MAPPED_ZERO = np.array([0] * 10 + [0xFF, 0xFF, 0, 0, 0, 0], np.uint8)


def unspecified(addrs: np.ndarray) -> np.ndarray:
    """Rows of ``(n, 16)`` addresses that are ``::`` or ``::ffff:0.0.0.0``."""
    out: np.ndarray = ~addrs.any(axis=1) | (addrs == _MAPPED_ZERO).all(axis=1)
    return out


def empty_records(cols: FlowColumns) -> np.ndarray:
    """Indices of the rows with no address and no volume."""
    idx = np.flatnonzero(cols.bytes == 0)  # one pass: zero-byte records are rare
    if idx.size:
        idx = idx[cols.packets[idx] == 0]
        idx = idx[unspecified(cols.src_addr[idx]) & unspecified(cols.dst_addr[idx])]
    return idx

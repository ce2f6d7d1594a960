"""A usage record's service or key type code, decoded from its text column."""

from __future__ import annotations

import numpy as np
from numba import njit

from rating_engine.tariff.key_table import (
    key_type_code,
    leaf,
    service_code,
    short_text,
    uniform_text,
)

__all__ = ["MIXED", "record_code", "text_code"]

#: "Service / key type differ within the range: decode each record's text."
MIXED = -2


@leaf
def record_code(
    words: np.ndarray, data: np.ndarray, off: np.ndarray, u: np.uint64, u1: np.uint64, svc: bool
) -> int:
    """Record ``u``'s service (``svc``) or key type code from its text ``off[u]:off[u1]``."""
    w = short_text(words, data, off[u], off[u1])
    if svc:
        return service_code(w, off[u1] - off[u])
    return key_type_code(w, off[u1] - off[u])


@njit(cache=True, nogil=True)
def text_code(
    off: np.ndarray, data: np.ndarray, words: np.ndarray, lo: int, hi: int, svc: bool
) -> int:
    """The service (``svc``) or key type code shared by records ``lo..hi-1``, or MIXED."""
    if hi <= lo or not uniform_text(off, data, lo, hi):
        return MIXED
    return int(record_code(words, data, off, np.uint64(lo), np.uint64(lo + 1), svc))

"""The destination look-up of the numbers the jump table does not take: shorter than its
digits, or with a non-digit among them - and text destinations (``voicemail``, ``+49...``),
matched against the version's text prefixes byte by byte."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["ASCII_0", "BYTE", "DIGIT_CARRY", "TOP6", "walk_destination"]

#: SWAR digit tests on a little-endian word of text (the rating kernel's first digits): a
#: byte is a digit when neither it minus ASCII_0 nor that plus DIGIT_CARRY has its top bit
#: set (TOP6: the top bits of six bytes); BYTE masks one byte
ASCII_0 = np.uint64(0x3030303030303030)
DIGIT_CARRY = np.uint64(0x7676767676767676)
TOP6 = np.uint64(0x808080808080)
BYTE = np.uint64(0xFF)


@njit(cache=True, nogil=True)
def walk_destination(
    data: np.ndarray,
    j0: int,
    j1: int,
    root: int,
    trie_child: np.ndarray,
    txt_first: int,
    txt_n: int,
    txt_off: np.ndarray,
    txt_data: np.ndarray,
    txt_prefix: np.ndarray,
    prefix_col: np.ndarray,
) -> tuple[int, int]:
    """(set column, prefix) of the longest prefix of ``data[j0:j1]``, (-1, -1) if none.

    A destination starting with a digit can only match digit prefixes (the trie, walked to
    the first non-digit), one starting otherwise only text prefixes (they start with a
    non-digit): the version's few text prefixes are compared in turn.
    """
    col = -1
    pre = -1
    if j1 > j0 and not 48 <= data[j0] <= 57:
        best = 0
        for e in range(txt_first, txt_first + txt_n):
            a = txt_off[e]
            n = txt_off[e + 1] - a
            if n <= best or n > j1 - j0:
                continue
            same = True
            for k in range(n):
                if txt_data[a + k] != data[j0 + k]:
                    same = False
                    break
            if same:
                best = n
                pre = txt_prefix[e]
                col = prefix_col[pre, 0]
        return col, pre
    dead = len(trie_child) - 1
    node = root
    for j in range(j0, j1):
        digit = np.int64(data[j]) - 48
        if digit < 0 or digit > 9:
            break
        node = trie_child[node, digit]
        if node == dead:
            break
        if trie_child[node, 10] >= 0:
            col = trie_child[node, 10]
            pre = trie_child[node, 11]
    return col, pre

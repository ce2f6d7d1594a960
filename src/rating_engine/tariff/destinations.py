"""Destination look-up tables: the digit trie, its four-digit jump table and two-digit blocks.

A node of the trie carries the destination set and the prefix it ends, so the last such
node on the walk is the longest prefix; a missing child is the last row, a dead end, so
walks take a fixed number of steps (``ver_depth``, the longest prefix) without branching.
The first four digits resolve in one look-up (``jump``), the next two in one more
(``step2``: blocks of 100 per node the jump reaches, the prefix matched; ``step2_node``,
the node reached, is read only by versions with longer prefixes), single steps after that.
"""

from __future__ import annotations

import numpy as np

__all__ = ["JUMP_DIGITS", "DigitTrie", "destination_tables"]

#: Digits resolved by the per-version jump table (the rating kernel reads this too).
JUMP_DIGITS = 4


class DigitTrie:
    """The digit tries of every version of a plan, one root per version, in one node list."""

    def __init__(self) -> None:
        self.child: list[list[int]] = []
        self.set_of: list[int] = []
        self.prefix_of: list[int] = []

    def node(self) -> int:
        """A new node without children, set or prefix; returns its index."""
        self.child.append([-1] * 10)
        self.set_of.append(-1)
        self.prefix_of.append(-1)
        return len(self.child) - 1

    def add(self, root: int, prefix: str, set_index: int, prefix_index: int) -> None:
        """Insert ``prefix`` (ASCII digits) under ``root``, ending set and prefix there."""
        n = root
        for ch in prefix:
            d = ord(ch) - 48
            if self.child[n][d] < 0:
                self.child[n][d] = self.node()
            n = self.child[n][d]
        self.set_of[n] = set_index
        self.prefix_of[n] = prefix_index


def destination_tables(
    trie: DigitTrie, roots: np.ndarray, prefix_labels: np.ndarray
) -> dict[str, np.ndarray]:
    """The plan's look-up arrays: ``trie_child``, ``prefix_col``, ``jump``, ``step2`` and
    ``step2_node``, for versions whose trie roots are ``roots``; ``prefix_labels`` is each
    prefix's output label."""
    arrays: dict[str, np.ndarray] = {}
    trie_set = np.asarray(trie.set_of, dtype=np.int32)
    trie_prefix = np.asarray(trie.prefix_of, dtype=np.int32)
    # one row per node: 10 children, then the node's set and prefix, so a step of the
    # walk touches one cache line. A missing child is the last row, a dead end whose
    # children are itself: the kernel walks a fixed number of steps without branching
    # on falling off the trie.
    dead = len(trie.child)
    child = np.asarray(trie.child, dtype=np.int32).reshape(-1, 10)
    child = np.concatenate([np.where(child < 0, dead, child), np.full((1, 10), dead)])
    arrays["trie_child"] = np.concatenate(
        [
            child,
            np.append(trie_set, -1)[:, None],
            np.append(trie_prefix, -1)[:, None],
        ],
        axis=1,
    ).astype(np.int32)
    # per prefix: its destination-set column in its version (the walk tracks the prefix
    # only) and its output label, side by side
    prefix_col = np.full((len(prefix_labels), 2), -1, np.int32)
    ends = trie_prefix >= 0
    prefix_col[trie_prefix[ends], 0] = trie_set[ends]
    prefix_col[:, 1] = prefix_labels
    arrays["prefix_col"] = prefix_col
    jumps = [_jump_table(arrays["trie_child"], int(root)) for root in roots]
    # (node, prefix, two-digit block, 0) per entry: one look-up reads one 16-byte row,
    # never split across cache lines (the prefix gives the set: prefix_col)
    jump = (
        np.concatenate(
            [np.stack([*j, np.zeros_like(j[0]), np.zeros_like(j[0])], axis=1) for j in jumps]
        )
        if jumps
        else np.zeros((0, 4), np.int32)
    )
    arrays["jump"], arrays["step2"], arrays["step2_node"] = _two_digit_blocks(
        arrays["trie_child"], jump
    )
    return arrays


def _jump_table(child: np.ndarray, root: int) -> tuple[np.ndarray, ...]:
    """For every JUMP_DIGITS-digit start: trie node reached (the dead-end row if it fell
    off) and longest prefix matched on the way (-1 = none)."""
    starts = np.arange(10**JUMP_DIGITS)
    node = np.full(len(starts), root, np.int32)
    best_prefix = np.full(len(starts), -1, np.int32)
    for depth in range(JUMP_DIGITS):
        digit = starts // 10 ** (JUMP_DIGITS - 1 - depth) % 10
        node = child[node, digit]
        best_prefix = np.where(child[node, 10] >= 0, child[node, 11], best_prefix)
    return node, best_prefix.astype(np.int32)


def _two_digit_blocks(
    child: np.ndarray, jump: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two digits after the jump table's in one look-up: for each trie node a jump
    entry reaches, a block of 100 entries: longest prefix over those two digits or -1, and
    (a second array) the node reached. Block 0 is the dead end's; a jump entry names its
    block in column 2. Returns the jump table with its blocks, prefixes, nodes."""
    dead = len(child) - 1
    nodes = np.unique(jump[:, 0]) if len(jump) else np.zeros(0, np.int32)
    nodes = nodes[nodes != dead]
    block_of = np.zeros(len(child), np.int32)
    block_of[nodes] = np.arange(1, len(nodes) + 1, dtype=np.int32)
    jump = jump.copy()
    if len(jump):
        jump[:, 2] = block_of[jump[:, 0]]
    starts = np.concatenate([[dead], nodes]).astype(np.int64)
    dd = np.arange(100)
    n1 = child[starts[:, None], dd[None, :] // 10]
    n2 = child[n1, dd[None, :] % 10]
    pre = np.where(child[n2, 11] >= 0, child[n2, 11], child[n1, 11])
    return jump, pre.reshape(-1).astype(np.int32), n2.reshape(-1).astype(np.int32)

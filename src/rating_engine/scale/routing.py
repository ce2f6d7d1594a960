"""Usage records to account buckets, so a bucket holds every record of its subscriptions.

Allowances are consumed per subscription in time order, so all records of a subscription
must be rated in one partition. A record only names its subscriber key; the router maps
keys to buckets through the subscriptions: accounts that share a key (a number moved
from one account to another) are joined into one group, and a group's keys all go to the
group's bucket. Keys are compared by a 64-bit hash of their text (IP keys in the
canonical form the rater matches): two keys with the same hash are treated as one key,
which can only join groups, never split one, so the routing stays exact. A key no
subscription knows is rejected by rating wherever it lands; it goes by its record id.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

__all__ = ["AccountRouter", "bucket_of_accounts", "mix64"]

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def mix64(values: I64 | U64) -> U64:
    """SplitMix64's finaliser: spreads ids (1, 2, 3, ...) evenly over buckets."""
    x = values.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def bucket_of_accounts(group: I64, buckets: int) -> I32:
    """Bucket of each account group id (its smallest account id)."""
    return (mix64(group) % np.uint64(buckets)).astype(np.int32)


@njit(cache=True, nogil=True)
def _fnv_texts(off: npt.NDArray[np.int32], data: npt.NDArray[np.uint8]) -> U64:
    n = off.shape[0] - 1
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        h = _FNV_OFFSET
        for j in range(off[i], off[i + 1]):
            h = (h ^ np.uint64(data[j])) * _FNV_PRIME
        out[i] = h
    return out


@njit(cache=True, nogil=True)
def _lookup(hashes: U64, table_hash: U64, table_bucket: I32, fallback: I64, buckets: int) -> I32:
    mask = np.int64(table_hash.shape[0] - 1)
    umask = np.uint64(table_hash.shape[0] - 1)
    out = np.empty(hashes.shape[0], dtype=np.int32)
    for i in range(hashes.shape[0]):
        h = hashes[i]
        slot = np.int64(h & umask)
        found = -1
        while table_bucket[slot] >= 0:
            if table_hash[slot] == h:
                found = table_bucket[slot]
                break
            slot = (slot + 1) & mask
        out[i] = found if found >= 0 else np.int32(fallback[i] % buckets)
    return out


@njit(cache=True, nogil=True)
def _fill(hashes: U64, buckets_of: I32, size: int) -> tuple[U64, I32]:
    table_hash = np.zeros(size, dtype=np.uint64)
    table_bucket = np.full(size, -1, dtype=np.int32)
    mask = np.int64(size - 1)
    umask = np.uint64(size - 1)
    for i in range(hashes.shape[0]):
        slot = np.int64(hashes[i] & umask)
        while table_bucket[slot] >= 0:
            slot = (slot + 1) & mask
        table_hash[slot] = hashes[i]
        table_bucket[slot] = buckets_of[i]
    return table_hash, table_bucket


def _text_hashes(texts: pa.Array | pa.ChunkedArray) -> U64:
    arr = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    arr = arr.cast(pa.string())
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    bufs = arr.buffers()
    off = np.frombuffer(bufs[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
    return _fnv_texts(off, data)


def _canonical(key_type: str, key: str) -> str:
    """The text the rater matches for a subscription key (IP keys canonical)."""
    if key_type != "ip":
        return key
    try:
        net = ipaddress.ip_network(key.strip(), strict=True)
    except ValueError:
        return key
    if net.num_addresses == 1:
        addr = net.network_address
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(addr)
    return str(net)


def _groups(node: I64, account: I64) -> tuple[I64, I64]:
    """Connected groups of accounts joined by shared nodes: (account ids, group id each)."""
    accounts, acc_code = np.unique(account, return_inverse=True)
    _, node_code = np.unique(node, return_inverse=True)
    label = np.arange(accounts.shape[0], dtype=np.int64)
    while True:  # min-label propagation; converges in a few rounds (usually one)
        per_node = np.full(int(node_code.max()) + 1, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(per_node, node_code, label[acc_code])
        new = label.copy()
        np.minimum.at(new, acc_code, per_node[node_code])
        new = new[new]  # jump to the label's label
        if np.array_equal(new, label):
            break
        label = new
    return accounts, accounts[label]


@dataclass(frozen=True)
class AccountRouter:
    """Key hash -> bucket, as an open-addressing table (picklable numpy arrays)."""

    buckets: int
    table_hash: U64
    table_bucket: I32

    @classmethod
    def single(cls) -> AccountRouter:
        """Everything in one bucket (nothing to look up)."""
        return cls(1, np.zeros(1, np.uint64), np.full(1, -1, np.int32))

    @classmethod
    def build(cls, subscriptions: pa.Table, buckets: int) -> AccountRouter:
        """From a ``SUBSCRIPTION_SCHEMA`` table (every binding, any time)."""
        if buckets < 1:
            raise ValueError("buckets must be >= 1")
        types = subscriptions.column("key_type").to_pylist()
        keys = subscriptions.column("key").to_pylist()
        texts = pa.array([_canonical(t, k) for t, k in zip(types, keys, strict=True)], pa.string())
        hashes = _text_hashes(texts)
        account = np.asarray(subscriptions.column("account_id").to_numpy(), dtype=np.int64)
        if account.shape[0] == 0:
            return cls(buckets, np.zeros(1, np.uint64), np.full(1, -1, np.int32))
        accounts, group = _groups(hashes.view(np.int64), account)
        account_bucket = bucket_of_accounts(group, buckets)
        uniq, first = np.unique(hashes, return_index=True)
        key_bucket = account_bucket[np.searchsorted(accounts, account[first])]
        size = 1 << max(4, int(2 * uniq.shape[0] - 1).bit_length())
        table_hash, table_bucket = _fill(uniq, key_bucket, size)
        return cls(buckets, table_hash, table_bucket)

    def route(self, keys: pa.Array | pa.ChunkedArray, record_ids: I64) -> I32:
        """Bucket of each usage record (by subscriber key; unknown keys by record id)."""
        if self.buckets == 1:
            return np.zeros(len(keys), np.int32)
        fallback = record_ids.astype(np.int64) % self.buckets  # numpy: never negative
        return _lookup(_text_hashes(keys), self.table_hash, self.table_bucket, fallback,
                       self.buckets)  # fmt: skip

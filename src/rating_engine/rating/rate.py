"""Public rating API: load and compile tariffs, rate usage batches, stream.

Every input record ends up exactly once in ``RatingResult.rated`` or
``RatingResult.rejected`` (stage ``rating``, reason codes in
:data:`rating_engine.rating.reasons.REASONS`); nothing is silently priced zero.

Subscriber keys: ``msisdn`` and ``imsi`` usage keys match subscription keys exactly. For
``ip`` usage the key must equal, as text, a subscription key that is a single address
(``a.b.c.d``, ``a.b.c.d/32``, an IPv6 address or ``/128``; canonical form), or the
canonical text of a block (``198.51.100.0/28``): flow attribution emits usage keyed by
the subscription's block text, which is matched here as text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collectors.kernel_arrays import readonly_all
from collectors.schemas import REJECT_SCHEMA, TIMESTAMP, USAGE_SCHEMA
from rating_engine.errors import RatingError, TariffError
from rating_engine.rating.batch_kernel import rate_batch
from rating_engine.rating.pass_through import (
    check_prices,
    pass_through_rates,
    price_pass_through,
    record_prices,
)
from rating_engine.rating.reasons import REASONS
from rating_engine.schemas import RATED_SCHEMA, SUBSCRIPTION_SCHEMA
from rating_engine.tariff.allowances import LEDGER_SCHEMA, AllowanceState, consume_allowances
from rating_engine.tariff.compile import compile_tariffs
from rating_engine.tariff.key_table import build_key_table
from rating_engine.tariff.load import load_tariff_file
from rating_engine.tariff.model import Tariff
from rating_engine.tariff.plan import RatingPlan, labels

__all__ = [
    "RATING_COLUMNS",
    "AllowanceState",
    "RatingPlan",
    "RatingResult",
    "SubscriptionIndex",
    "compile_plan",
    "load_tariff",
    "load_tariffs",
    "rate_stream",
    "rate_usage",
]

_I64MAX = np.iinfo(np.int64).max
#: The usage columns rating reads: all but the record key, origin and location (a reader
#: may leave those out: the record key alone is a fifth of a usage file's bytes)
RATING_COLUMNS = tuple(n for n in USAGE_SCHEMA.names if n not in ("record_key", "origin",
                                                                   "location"))  # fmt: skip
_KEY_TYPES = ("msisdn", "imsi", "ip")
_SERVICES = ("voice", "sms", "data")
_FIELD = {
    "unknown_subscription": "subscriber_key",
    "unknown_tariff": "subscriber_key",
    "no_tariff_version": "start_time",
    "negative_duration": "duration_ms",
    "time_out_of_range": "start_time",
    "no_destination": "destination",
    "no_rate": "destination",
    "no_band": "start_time",
    "unknown_service": "service",
    "cost_overflow": "duration_ms",
    "volume_out_of_range": "volume_up",
    "unknown_key_type": "subscriber_key_type",
    "no_price": "price",
    "negative_price": "price",
}
_TEXT = {
    "unknown_subscription": "no subscription binds this subscriber key at start_time",
    "unknown_tariff": "the subscription's tariff is not in the rating plan",
    "no_tariff_version": "no version of the tariff is in force at start_time",
    "negative_duration": "duration is negative",
    "time_out_of_range": "usage lies outside the plan's compiled years",
    "no_destination": "no destination prefix matches and no catch-all rate applies",
    "no_rate": "the tariff has no rate for this service, destination set and band",
    "no_band": "no time band covers this instant",
    "unknown_service": "service is not voice, sms or data",
    "cost_overflow": "the cost exceeds the exact arithmetic range",
    "volume_out_of_range": "volume exceeds 2^62 bytes",
    "unknown_key_type": "subscriber_key_type is not msisdn, imsi or ip",
    "no_price": "a pass-through rate prices this record but it carries no price",
    "negative_price": "a pass-through rate prices this record but its price is negative",
}


@dataclass
class RatingResult:
    """Output of rating one input: rated rows, rejected rows and the allowance ledger."""

    rated: pa.Table
    rejected: pa.Table
    allowance_ledger: pa.Table


def load_tariff(path: Path) -> Tariff:
    """Load and validate one TOML tariff file."""
    return load_tariff_file(Path(path))


def load_tariffs(paths_or_dir: Path | str | Iterable[Path | str]) -> dict[str, Tariff]:
    """Load tariffs from a folder (``*.toml``) or a list of files, keyed by tariff id."""
    if isinstance(paths_or_dir, str | Path) and Path(paths_or_dir).is_dir():
        paths = sorted(Path(paths_or_dir).glob("*.toml"))
    elif isinstance(paths_or_dir, str | Path):
        paths = [Path(paths_or_dir)]
    else:
        paths = [Path(p) for p in paths_or_dir]
    out: dict[str, Tariff] = {}
    for p in paths:
        t = load_tariff(p)
        if t.id in out:
            raise TariffError(f"tariff id {t.id} defined twice (file {p}, file {out[t.id].source})")
        out[t.id] = t
    return out


def compile_plan(
    tariffs: Mapping[str, Tariff],
    *,
    cache_dir: Path | None = None,
    years: tuple[int, int] = (2015, 2040),
) -> RatingPlan:
    """Compile tariffs into a plan (cached in ``cache_dir`` by content hash)."""
    return compile_tariffs(tariffs, cache_dir=cache_dir, years=years)


def _int64s(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.cast(col, pa.int64()).to_numpy(), dtype=np.int64)


def _canonical_ip(key: str) -> str | None:
    try:
        net = ipaddress.ip_network(key.strip(), strict=True)
    except ValueError:
        return None
    if net.num_addresses != 1:
        return None
    addr = net.network_address
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def _canonical_block(key: str) -> str | None:
    """A prefix wider than one address, as ``ipaddress`` writes it.

    Flow attribution emits usage keyed by the subscription's block text, and rates it
    here: the block is matched as that text.
    """
    try:
        return str(ipaddress.ip_network(key.strip(), strict=True))
    except ValueError:
        return None


@dataclass
class SubscriptionIndex:
    """Subscriptions as a perfect-hash table over (key type, key) plus time-sorted bindings."""

    #: (key table, its pilots, key offsets, key bytes, binding from, binding to, binding
    #: rows of tariff / subscription / account / key): the kernel's ``subs`` argument
    arrays: tuple[np.ndarray, ...]

    @classmethod
    def build(cls, subscriptions: pa.Table, plan: RatingPlan) -> SubscriptionIndex:
        """Index ``subscriptions`` (SUBSCRIPTION_SCHEMA) against ``plan``'s tariffs."""
        missing = set(SUBSCRIPTION_SCHEMA.names) - set(subscriptions.column_names)
        if missing:
            raise RatingError(
                f"subscriptions lack columns {sorted(missing)} (field {min(missing)})"
            )
        f_us = pc.cast(subscriptions["active_from"], TIMESTAMP).cast(pa.int64()).to_numpy()
        to_col = pc.cast(subscriptions["active_to"], TIMESTAMP).cast(pa.int64())
        t_us = to_col.fill_null(_I64MAX).to_numpy()
        kt_col = pc.cast(subscriptions["key_type"], pa.string()).combine_chunks()
        key_col = pc.cast(subscriptions["key"], pa.string()).combine_chunks()
        kt_code = pc.index_in(kt_col, value_set=pa.array(_KEY_TYPES))
        if kt_code.null_count:
            r = int(np.flatnonzero(kt_code.is_null().to_numpy(zero_copy_only=False))[0])
            raise RatingError(f"subscription row {r}: key_type {kt_col[r]} (field key_type)")
        if key_col.null_count:
            r = int(np.flatnonzero(key_col.is_null().to_numpy(zero_copy_only=False))[0])
            raise RatingError(f"subscription row {r}: key is null (field key)")
        code = kt_code.to_numpy(zero_copy_only=False)
        ip_rows = np.flatnonzero(code == _KEY_TYPES.index("ip"))
        if len(ip_rows):  # IP keys in canonical form (Python, for those rows only)
            texts = key_col.to_pylist()
            for r in ip_rows.tolist():
                canon = _canonical_ip(texts[r]) or _canonical_block(texts[r])
                if canon is None:
                    raise RatingError(
                        f"subscription row {r}: key {texts[r]!r} is no IP address or prefix"
                        " (field key)"
                    )
                texts[r] = canon
            key_col = pa.array(texts, pa.string())
        # the distinct (key type, key) pairs, numbered in order of first appearance
        typed = pc.binary_join_element_wise(pc.cast(kt_code, pa.string()), key_col, "|")
        enc = pc.dictionary_encode(typed)
        rows = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        distinct = enc.dictionary
        n_keys = len(distinct)
        order = np.lexsort((f_us, rows))
        sorted_keys = rows[order]
        key_first = np.searchsorted(sorted_keys, np.arange(n_keys)).astype(np.int64)
        key_n = np.bincount(sorted_keys, minlength=n_keys).astype(np.int64)
        b_from, b_to = f_us[order], t_us[order]
        same_key = sorted_keys[1:] == sorted_keys[:-1]
        clash = np.flatnonzero(same_key & (b_to[:-1] > b_from[1:]))
        if len(clash):
            key = distinct[int(sorted_keys[clash[0]])].as_py()[2:]
            raise RatingError(f"subscriptions overlap in time for key {key} (field active_to)")
        tariff_of_row = pc.index_in(subscriptions["tariff_id"], value_set=pa.array(plan.tariff_ids))
        b_tariff = tariff_of_row.fill_null(-1).to_numpy().astype(np.int64)[order]
        k_type = pc.cast(pc.utf8_slice_codeunits(distinct, 0, 1), pa.int64()).to_numpy()
        k_text = pc.utf8_slice_codeunits(distinct, 2)  # after "<type>|"
        t_off, t_data, _, _ = _strings(k_text)
        k_off = (t_off - t_off[0]).astype(np.int64)
        k_data = t_data[t_off[0] : t_off[-1]].copy()
        sub_id = _int64s(subscriptions["subscription_id"])[order]
        acc_id = _int64s(subscriptions["account_id"])[order]
        # a binding's tariff, subscription, account and key side by side: one cache line
        bind = np.zeros((len(order), 4), np.int64)
        bind[:, 0], bind[:, 1], bind[:, 2], bind[:, 3] = b_tariff, sub_id, acc_id, sorted_keys
        try:
            ktab, kdisp = build_key_table(k_type, k_off, k_data, key_first, key_n, b_from, b_to,
                                          bind)  # fmt: skip
        except ValueError as exc:
            raise RatingError(f"subscriptions: {exc} (field key)") from None
        return cls((ktab, kdisp, k_off, k_data, b_from, b_to, bind))


def _num(arr: pa.Array, dtype: type) -> np.ndarray:
    buf = arr.buffers()[1]
    return np.frombuffer(buf, dtype=dtype)[arr.offset : arr.offset + len(arr)]


def _strings(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Zero-copy (offsets, data, validity bitmap or empty, bit offset) of a string array."""
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    bufs = arr.buffers()
    off = np.frombuffer(bufs[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
    valid = np.zeros(0, np.uint8)
    if arr.null_count and bufs[0] is not None:
        valid = np.frombuffer(bufs[0], dtype=np.uint8)
    return off, data, valid, arr.offset


def _legs(batch: pa.RecordBatch) -> np.ndarray:
    """The optional ``leg`` column (CGRateS's LoopIndex: > 0 for a continuation leg of a
    call, which pays no connect fee) as int64, null = 0; empty when the usage has none."""
    if "leg" not in batch.schema.names:
        return np.zeros(0, np.int64)
    legs = pc.fill_null(pc.cast(batch.column("leg"), pa.int64()), 0)
    return np.ascontiguousarray(legs.to_numpy(zero_copy_only=False), dtype=np.int64)


def _words(data: np.ndarray) -> np.ndarray:
    """``data`` viewed as aligned little-endian uint64 words (empty if not 8-aligned: the
    kernel then reads the text bytes one by one)."""
    if data.ctypes.data % 8 or len(data) < 8:
        return np.zeros(0, np.uint64)
    return data[: len(data) // 8 * 8].view(np.uint64)


def _dictionaries(plan: RatingPlan) -> dict[str, pa.Array]:
    """The output string columns' dictionaries as Arrow arrays (memoised on the plan)."""
    memo = plan.memo.get("dictionaries")
    if memo is None:
        memo = plan.memo["dictionaries"] = {
            "service": pa.array(list(_SERVICES), pa.string()),
            # tariff ids are distinct; the other names repeat across tariffs and versions
            "tariff": pa.array(plan.tariff_ids, pa.string()),
            "currency": pa.array(labels(plan.currencies), pa.string()),
            "version": pa.array(labels(plan.version_names), pa.string()),
            "set": pa.array(labels(plan.set_names), pa.string()),
            "prefix": pa.array(labels(plan.prefixes), pa.string()),
            "band": pa.array(labels(plan.band_names), pa.string()),
        }
    assert isinstance(memo, dict)
    return memo


def _label_column(
    dictionary: pa.Array, codes: np.ndarray, nulls: np.ndarray | None = None
) -> pa.DictionaryArray:
    """A dictionary column from the kernel's int32 codes (no copy); ``nulls``, if any
    is set, marks the null rows (code -1)."""
    indices = pa.array(codes) if nulls is None else pa.array(codes, mask=nulls)
    return pa.DictionaryArray.from_arrays(indices, dictionary, safe=False)  # codes are valid


_ZEROS = [pa.array(np.zeros(0, np.int64))]


def _zero_column(n: int) -> pa.Array:
    """``n`` int64 zeros, a slice of one shared (immutable) array."""
    if len(_ZEROS[0]) < n:
        _ZEROS[0] = pa.array(np.zeros(n, np.int64))  # calloc: pages stay the zero page
    return _ZEROS[0].slice(0, n)


def _rate_batch(batch: pa.RecordBatch, subs: SubscriptionIndex, plan: RatingPlan,
                state: AllowanceState, ledger_table: bool = True) -> RatingResult:  # fmt: skip
    missing = set(RATING_COLUMNS) - set(batch.schema.names)
    if missing:
        raise RatingError(f"usage lacks columns {sorted(missing)} (field {min(missing)})")
    col = batch.column
    start_arr = col("start_time")
    if start_arr.type != TIMESTAMP:
        start_arr = start_arr.cast(TIMESTAMP)
    start_us = _num(start_arr, np.int64)
    dur = _num(col("duration_ms"), np.int64)
    vol_up = _num(col("volume_up"), np.uint64)
    vol_down = _num(col("volume_down"), np.uint64)
    s_off, s_data, _, _ = _strings(col("service"))
    kt_off, kt_data, _, _ = _strings(col("subscriber_key_type"))
    k_off, k_data, _, _ = _strings(col("subscriber_key"))
    d_off, d_data, d_valid, d_bit0 = _strings(col("destination"))
    a = plan.arrays
    # read-only, one Numba type per input whatever its source: the kernel compiles once
    rec = readonly_all(start_us, dur, vol_up, vol_down, s_off, s_data, kt_off, kt_data, k_off,
                       k_data, d_off, d_data, d_valid, d_bit0, _words(k_data), _words(s_data),
                       _words(kt_data), _words(d_data), _legs(batch))  # fmt: skip
    out, n_rejected, n_no_prefix = rate_batch(rec, subs.arrays, plan.kernel_args())
    status = out[0]
    record_id = _num(col("record_id"), np.int64)
    ledger = LEDGER_SCHEMA.empty_table()
    # without allowances in the plan the kernel leaves eligibility and allowance units
    # unwritten: the units are all zero
    allowances = a["elig"].size > 0
    passing = pass_through_rates(plan)
    if passing is not None:  # before allowances: those records draw on none
        prices = record_prices(batch)
        pt_rows = check_prices(passing, out, prices)
        n_rejected = int(np.count_nonzero(status != 0))
    if allowances and out[10].any():
        ledger = consume_allowances(plan, state, rec, subs.arrays, out, out[11], record_id,
                                    ledger_table=ledger_table)  # fmt: skip
    if passing is not None and prices is not None:
        price_pass_through(passing, out, *pt_rows, prices[0])
    n = len(status) - n_rejected
    if n_rejected == 0:
        # every record rated: the kernel's arrays and the input's id and time columns are
        # the rated columns as they are (no copy)
        def pick(x: np.ndarray) -> np.ndarray:
            return x

        rid_col: pa.Array = col("record_id")
        start_col: pa.Array = start_arr
    else:
        sel = np.flatnonzero(status == 0)

        def pick(x: np.ndarray) -> np.ndarray:
            return x[sel]

        rid_col = pa.array(record_id[sel], pa.int64())
        start_col = pa.Array.from_buffers(
            TIMESTAMP, n, [None, pa.py_buffer(np.ascontiguousarray(start_us[sel]))]
        )
    d = _dictionaries(plan)
    ti = pick(out[13])
    s_svc = _label_column(d["service"], pick(out[1]))
    s_tariff = _label_column(d["tariff"], ti)
    s_version = _label_column(d["version"], pick(out[2]))
    # no prefix matched (data; a catch-all rate) <=> no destination set: one null mask
    prefix_codes = pick(out[5])
    nulls = prefix_codes < 0 if n_no_prefix else None
    s_set = _label_column(d["set"], pick(out[4]), nulls)
    s_prefix = _label_column(d["prefix"], prefix_codes, nulls)
    s_band = _label_column(d["band"], pick(out[6]))
    s_currency = _label_column(d["currency"], pick(out[3]))
    rated = pa.Table.from_arrays(
        [
            rid_col,
            pa.array(pick(out[11]), pa.int64()),
            pa.array(pick(out[12]), pa.int64()),
            s_svc,
            start_col,
            s_tariff,
            s_version,
            s_set,
            s_prefix,
            s_band,
            pa.array(pick(out[7]), pa.int64()),
            pa.array(pick(out[9]), pa.int64()) if allowances else _zero_column(n),
            pa.array(pick(out[8]), pa.int64()),
            s_currency,
        ],
        schema=RATED_SCHEMA,
    )
    rejected = REJECT_SCHEMA.empty_table()
    if n_rejected:
        rejected = _rejected(batch, np.flatnonzero(status != 0), status, plan.years)
    return RatingResult(rated, rejected, ledger)


def _rejected(
    batch: pa.RecordBatch, idx: np.ndarray, status: np.ndarray, years: tuple[int, int]
) -> pa.Table:
    take = pa.array(idx)
    files = batch.column("source_file").take(take).to_pylist()
    lines = batch.column("source_line").take(take).to_pylist()
    ids = batch.column("record_id").take(take).to_pylist()
    keys = batch.column("subscriber_key").take(take).to_pylist()
    reasons = [REASONS[int(s)] for s in status[idx].tolist()]
    fields = [_FIELD[r] for r in reasons]
    # the compiled years are the plan's, not a property of the record: say which, and how
    # to widen them, where the reason alone would leave a user guessing
    text = {
        **_TEXT,
        "time_out_of_range": f"{_TEXT['time_out_of_range']} {years[0]}..{years[1]}; compile "
        "the plan with compile_plan(..., years=(first, last)) covering the usage",
    }
    messages = [
        f"{text[r]} (file {f}, record {rid}, field {fl}, subscriber {k})"
        for r, f, rid, fl, k in zip(reasons, files, ids, fields, keys, strict=True)
    ]
    now = datetime.now(UTC)
    return pa.table(
        {
            "stage": ["rating"] * len(idx),
            "source_file": files,
            "record_no": lines,
            "record_id": ids,
            "field": fields,
            "reason": reasons,
            "message": messages,
            "raw": pa.nulls(len(idx), pa.binary()),
            "rejected_at": pa.array([now] * len(idx), TIMESTAMP),
        },
        schema=REJECT_SCHEMA,
    )


def _concat(results: list[RatingResult]) -> RatingResult:
    if len(results) == 1:
        return results[0]
    return RatingResult(
        pa.concat_tables([r.rated for r in results]) if results else RATED_SCHEMA.empty_table(),
        pa.concat_tables([r.rejected for r in results]) if results else REJECT_SCHEMA.empty_table(),
        pa.concat_tables([r.allowance_ledger for r in results])
        if results
        else LEDGER_SCHEMA.empty_table(),
    )


def rate_usage(
    usage: pa.Table | pa.RecordBatch,
    subscriptions: pa.Table,
    plan: RatingPlan,
    *,
    allowances: AllowanceState | None = None,
) -> RatingResult:
    """Rate a usage table (USAGE_SCHEMA) against ``subscriptions`` with ``plan``.

    ``allowances`` is the billing period's state; if None, a fresh state is used, i.e.
    this call is the whole period. Allowances are consumed in (start_time, record_id)
    order per subscription across the whole input.

    >>> from datetime import datetime, timezone
    >>> from collectors import usage_table
    >>> from rating_engine import SUBSCRIPTION_SCHEMA, compile_plan, load_tariff, rate_usage
    >>> plan = compile_plan({"mobile-2026": load_tariff("tariffs/mobile-2026.toml")})
    >>> subscriptions = pa.Table.from_pylist([{
    ...     "subscription_id": 1, "account_id": 1, "key_type": "msisdn", "key": "4915110000001",
    ...     "tariff_id": "mobile-2026", "active_from": datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...     "active_to": None}], schema=SUBSCRIPTION_SCHEMA)
    >>> usage = usage_table([  # 61 s to New York, by the started minute; an unknown SIM
    ...     {"subscriber": "4915110000001", "service": "voice", "duration": 61,
    ...      "start": "2026-10-05T09:00:00+02:00", "destination": "12125550123"},
    ...     {"subscriber": "4915199999999", "service": "sms", "start": "2026-10-05T09:06:00Z"}])
    >>> result = rate_usage(usage, subscriptions, plan)
    >>> result.rated.select(["destination_set", "billed_units", "cost", "currency"]).to_pylist()
    [{'destination_set': 'world', 'billed_units': 120, 'cost': 1580000, 'currency': 'EUR'}]
    >>> result.rejected.select(["record_no", "reason"]).to_pylist()
    [{'record_no': 2, 'reason': 'unknown_subscription'}]
    """
    state = allowances if allowances is not None else AllowanceState()
    subs = SubscriptionIndex.build(subscriptions, plan)
    if isinstance(usage, pa.Table):
        usage = usage.combine_chunks()
        batches = usage.to_batches() or [pa.RecordBatch.from_pylist([], schema=usage.schema)]
    else:
        batches = [usage]
    return _concat([_rate_batch(b, subs, plan, state) for b in batches])


def rate_stream(
    batches: Iterable[pa.RecordBatch],
    subscriptions: pa.Table | SubscriptionIndex,
    plan: RatingPlan,
    *,
    allowances: AllowanceState | None = None,
    allowance_ledger: bool = True,
) -> Iterator[RatingResult]:
    """Rate batch by batch with flat memory; one :class:`RatingResult` per input batch.

    Feed batches in start_time order so allowances are consumed in time order.
    ``subscriptions`` may be an index already built for ``plan`` (partition tasks share
    one instead of building it per task). ``allowance_ledger=False``: the results' ledgers
    are left empty (the units drawn are in the rated rows all the same).
    """
    state = allowances if allowances is not None else AllowanceState()
    if isinstance(subscriptions, SubscriptionIndex):
        subs = subscriptions
    else:
        subs = SubscriptionIndex.build(subscriptions, plan)
    for batch in batches:
        yield _rate_batch(batch, subs, plan, state, allowance_ledger)

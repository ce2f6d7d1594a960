"""Numba kernels: one usage batch -> per-record status, band, units and exact cost.

The kernels read Arrow buffers directly (timestamps, durations, volumes as numpy views;
strings as offsets + data bytes) and the compiled plan's arrays (see
:mod:`rating_engine.tariff_compile`). ``rate_batch`` runs in parallel over records;
``apply_allowances`` re-prices, sequentially in time order, the records an allowance
may cover. Both price through ``_price`` so the arithmetic is one code path.

Exactness: a group's price is the reduced fraction p/q nano-units per base unit (ms,
event, byte). A record's exact cost is ``W + R/Q`` nano-units, W and R integers and Q the
version's common denominator for the service; it is rounded once, to the rate's
decimals with its method, then min charge and max cost apply. Any intermediate that
would pass 2^62 makes the record a ``cost_overflow`` rejection instead of a wrong price.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = [
    "REASONS",
    "apply_allowances",
    "gather_strings",
    "key_hash",
    "rate_batch",
]

#: Status codes written by the kernels (index = code); 0 is "rated".
REASONS = (
    "rated",
    "unknown_subscription",
    "unknown_tariff",
    "no_tariff_version",
    "negative_duration",
    "time_out_of_range",
    "no_destination",
    "no_rate",
    "no_band",
    "unknown_service",
    "cost_overflow",
    "volume_out_of_range",
    "unknown_key_type",
)
OK, UNKNOWN_SUB, UNKNOWN_TARIFF, NO_VERSION, NEG_DURATION, TIME_RANGE = 0, 1, 2, 3, 4, 5
NO_DEST, NO_RATE, NO_BAND, UNKNOWN_SERVICE, OVERFLOW, VOLUME_RANGE, UNKNOWN_KEY = (
    6,
    7,
    8,
    9,
    10,
    11,
    12,
)

DAY_US = 86_400_000_000
I64MAX = 9_223_372_036_854_775_807
#: Exact sums stay below this so that adding fees and carries can never wrap.
LIMIT = 1 << 62
FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True, nogil=True)
def key_hash(type_code: int, data: np.ndarray, lo: int, hi: int) -> np.uint64:
    """FNV-1a over the key type and the key's bytes ``data[lo:hi]``."""
    h = FNV_OFFSET
    h = (h ^ np.uint64(type_code)) * FNV_PRIME
    for j in range(lo, hi):
        h = (h ^ np.uint64(data[j])) * FNV_PRIME
    return h


@njit(cache=True, nogil=True)
def _is(data: np.ndarray, lo: int, hi: int, word: bytes) -> bool:
    if hi - lo != len(word):
        return False
    for j in range(hi - lo):  # noqa: SIM110 - a plain loop compiles to tight code in Numba
        if data[lo + j] != word[j]:
            return False
    return True


@njit(cache=True, nogil=True)
def _service(data: np.ndarray, lo: int, hi: int) -> int:
    if _is(data, lo, hi, b"voice"):
        return 0
    if _is(data, lo, hi, b"sms"):
        return 1
    if _is(data, lo, hi, b"data"):
        return 2
    return -1


@njit(cache=True, nogil=True)
def _key_type(data: np.ndarray, lo: int, hi: int) -> int:
    if _is(data, lo, hi, b"msisdn"):
        return 0
    if _is(data, lo, hi, b"imsi"):
        return 1
    if _is(data, lo, hi, b"ip"):
        return 2
    return -1


@njit(cache=True, nogil=True)
def _find_key(
    kt: int,
    data: np.ndarray,
    lo: int,
    hi: int,
    slots: np.ndarray,
    k_type: np.ndarray,
    k_off: np.ndarray,
    k_data: np.ndarray,
) -> int:
    mask = len(slots) - 1
    s = np.int64(key_hash(kt, data, lo, hi) & np.uint64(mask))
    while True:
        k = slots[s]
        if k < 0:
            return -1
        if k_type[k] == kt and k_off[k + 1] - k_off[k] == hi - lo:
            same = True
            base = k_off[k]
            for j in range(hi - lo):
                if k_data[base + j] != data[lo + j]:
                    same = False
                    break
            if same:
                return int(k)
        s = (s + 1) & mask


@njit(cache=True, nogil=True)
def _band_at(vi: int, t: int, plan: tuple) -> int:
    """Index into the version's band timeline of the interval holding ``t``; -1 if outside."""
    ver_bt_first, ver_dix_first, bt_start, day_ix, day_range = (
        plan[7],
        plan[9],
        plan[11],
        plan[13],
        plan[14],
    )
    d = t // DAY_US - day_range[0]
    if d < 0 or d >= day_range[1]:
        return -1
    k = day_ix[ver_dix_first[vi] + d]
    if k < 0:
        return -1
    base = ver_bt_first[vi]
    while bt_start[base + k + 1] <= t:
        k += 1
        if plan[12][base + k] == -2:
            return -1
    return int(k)


@njit(cache=True, nogil=True)
def _price(
    svc: int, t0: int, qty: int, vi: int, col: int, free: int, plan: tuple
) -> tuple[int, int, int, int, int, int]:
    """Price one record: (status, cost µ, billed base units, allowance units, band, rate)."""
    ver_bt_first = plan[7]
    bt_start, bt_band = plan[11], plan[12]
    ver_n_sets, ver_band_n, ver_price_first, price, ver_Q = (
        plan[4],
        plan[6],
        plan[15],
        plan[16],
        plan[17],
    )
    rate_g0, rate_ng, rate_conn, rate_rm, rate_rd, rate_compat, rate_min, rate_max = (
        plan[18],
        plan[19],
        plan[20],
        plan[21],
        plan[22],
        plan[23],
        plan[24],
        plan[25],
    )
    grp_start, grp_inc, grp_p, grp_q, grp_qmul, grp_inc_cost = (
        plan[26],
        plan[27],
        plan[28],
        plan[29],
        plan[30],
        plan[31],
    )
    k = _band_at(vi, t0, plan)
    if k < 0:
        return TIME_RANGE, 0, 0, 0, -1, -1
    base = ver_bt_first[vi]
    b0 = bt_band[base + k]
    if b0 < 0:
        return NO_BAND, 0, 0, 0, -1, -1
    n_bands = ver_band_n[vi]
    pf = ver_price_first[vi] + (svc * (ver_n_sets[vi] + 1) + col) * n_bands
    r0 = price[pf + b0]
    if r0 < 0:
        return NO_RATE, 0, 0, 0, b0, -1
    Q = ver_Q[vi * 3 + svc]
    band_end = bt_start[base + k + 1]
    W = 0
    R = 0
    p = 0
    free_left = free
    used = 0
    priced = False
    stop = free <= 0
    r = r0
    while p < qty:
        lim_band = I64MAX
        if svc == 0:
            # voice: each increment is rated in the band in force at its first instant
            t = t0 + p * 1000
            while t >= band_end:
                k += 1
                if bt_band[base + k] == -2:
                    return TIME_RANGE, 0, 0, 0, b0, r0
                band_end = bt_start[base + k + 1]
            b = bt_band[base + k]
            if b < 0:
                return NO_BAND, 0, 0, 0, b0, r0
            r = price[pf + b]
            if r < 0:
                return NO_RATE, 0, 0, 0, b0, r0
            lim_band = (band_end - t0 + 999) // 1000
        g0 = rate_g0[r]
        g_end = g0 + rate_ng[r]
        g = g0
        while g + 1 < g_end and grp_start[g + 1] <= p:
            g += 1
        lim = qty
        if lim_band < lim:
            lim = lim_band
        if g + 1 < g_end and grp_start[g + 1] < lim:
            lim = grp_start[g + 1]
        inc = grp_inc[g]
        n = (lim - p + inc - 1) // inc
        m = 0
        if not stop:
            m = free_left // inc
            if m >= n:
                m = n
            else:
                stop = True  # the next increment does not fit: the rest of the record is priced
            free_left -= m * inc
            used += m * inc
        kp = n - m
        if kp > 0:
            priced = True
            if rate_compat[r] != 0:
                c = grp_inc_cost[g]
                if c > 0 and kp > (LIMIT - W) // c:
                    return OVERFLOW, 0, 0, 0, b0, r0
                W += kp * c
            else:
                A = kp * inc
                pp = grp_p[g]
                qq = grp_q[g]
                whole = A // qq
                if pp > 0 and whole > (LIMIT - W) // pp:
                    return OVERFLOW, 0, 0, 0, b0, r0
                W += whole * pp
                x = (A % qq) * pp
                W += x // qq
                R += (x % qq) * grp_qmul[g]
                if R >= Q:
                    W += R // Q
                    R = R % Q
                if W >= LIMIT:
                    return OVERFLOW, 0, 0, 0, b0, r0
        p += n * inc
    if used > 0 and not priced:
        return OK, 0, p, used, b0, r0  # wholly covered by an allowance: no fee, no minimum
    W += rate_conn[r0]
    dec = rate_rd[r0]
    s = 1
    for _ in range(9 - dec):
        s *= 10
    qt = W // s
    numer = (W % s) * Q + R
    den = s * Q
    method = rate_rm[r0]
    if numer > 0:
        if method == 0:  # up
            qt += 1
        elif method == 2:  # half-up
            if 2 * numer >= den:
                qt += 1
        elif method == 3 and (2 * numer > den or (2 * numer == den and qt % 2 == 1)):
            qt += 1  # half-even
    cost = qt
    for _ in range(6 - dec):
        cost *= 10
    if rate_min[r0] >= 0 and cost < rate_min[r0]:
        cost = rate_min[r0]
    if rate_max[r0] >= 0 and cost > rate_max[r0]:
        cost = rate_max[r0]
    return OK, cost, p, used, b0, r0


@njit(cache=True, nogil=True, parallel=True)
def rate_batch(
    start_us: np.ndarray,
    dur_ms: np.ndarray,
    vol_up: np.ndarray,
    vol_down: np.ndarray,
    svc_off: np.ndarray,
    svc_data: np.ndarray,
    kt_off: np.ndarray,
    kt_data: np.ndarray,
    key_off: np.ndarray,
    key_data: np.ndarray,
    dst_off: np.ndarray,
    dst_data: np.ndarray,
    dst_valid: np.ndarray,
    dst_bit0: int,
    subs: tuple,
    plan: tuple,
) -> tuple:
    """Rate every record of a batch in parallel (allowances applied later, see module doc).

    Returns arrays: status, binding, service, version, destination column, set, prefix,
    band (local), quantity, billed, cost, allowance-eligible.
    """
    slots, k_type, k_off, k_data, key_first, key_n, b_from, b_to, b_tariff = subs
    tariff_first_ver, tariff_n_ver, ver_active_from = plan[0], plan[1], plan[2]
    ver_trie_root, ver_n_sets, ver_set_first = plan[3], plan[4], plan[5]
    trie_child, trie_set, trie_prefix = plan[8], plan[10], plan[32]
    ver_elig_first, elig_ptr = plan[33], plan[34]
    n = len(start_us)
    status = np.zeros(n, np.int8)
    bind = np.full(n, -1, np.int64)
    svc_o = np.full(n, -1, np.int8)
    ver = np.full(n, -1, np.int32)
    col_o = np.zeros(n, np.int32)
    set_o = np.full(n, -1, np.int32)
    prefix_o = np.full(n, -1, np.int32)
    band_o = np.full(n, -1, np.int32)
    qty_o = np.zeros(n, np.int64)
    billed = np.zeros(n, np.int64)
    cost = np.zeros(n, np.int64)
    elig = np.zeros(n, np.int8)
    has_valid = len(dst_valid) > 0
    for i in prange(n):
        svc = _service(svc_data, svc_off[i], svc_off[i + 1])
        if svc < 0:
            status[i] = UNKNOWN_SERVICE
            continue
        svc_o[i] = svc
        kt = _key_type(kt_data, kt_off[i], kt_off[i + 1])
        if kt < 0:
            status[i] = UNKNOWN_KEY
            continue
        t0 = start_us[i]
        key = -1
        if len(slots) > 0:
            key = _find_key(kt, key_data, key_off[i], key_off[i + 1], slots, k_type, k_off, k_data)
        b = -1
        if key >= 0:
            for j in range(key_first[key], key_first[key] + key_n[key]):
                if b_from[j] <= t0 and t0 < b_to[j]:
                    b = j
                    break
        if b < 0:
            status[i] = UNKNOWN_SUB
            continue
        bind[i] = b
        ti = b_tariff[b]
        if ti < 0:
            status[i] = UNKNOWN_TARIFF
            continue
        vi = -1
        for v in range(tariff_first_ver[ti], tariff_first_ver[ti] + tariff_n_ver[ti]):
            if ver_active_from[v] <= t0:
                vi = v
        if vi < 0:
            status[i] = NO_VERSION
            continue
        ver[i] = vi
        d = dur_ms[i]
        if d < 0:
            status[i] = NEG_DURATION
            continue
        if svc == 0:
            qty = d
        elif svc == 1:
            qty = 1
        else:
            up = vol_up[i]
            down = vol_down[i]
            if up >= np.uint64(LIMIT) or down >= np.uint64(LIMIT):
                status[i] = VOLUME_RANGE
                continue
            qty = np.int64(up) + np.int64(down)
        qty_o[i] = qty
        n_sets = ver_n_sets[vi]
        col = n_sets
        if svc != 2:
            valid = True
            if has_valid:
                bit = dst_bit0 + i
                valid = (dst_valid[bit >> 3] >> (bit & 7)) & 1 == 1
            if valid:
                node = ver_trie_root[vi]
                for j in range(dst_off[i], dst_off[i + 1]):
                    digit = np.int64(dst_data[j]) - 48
                    if digit < 0 or digit > 9:
                        break
                    node = trie_child[node, digit]
                    if node < 0:
                        break
                    if trie_set[node] >= 0:
                        col = trie_set[node]
                        prefix_o[i] = trie_prefix[node]
            if col < n_sets:
                set_o[i] = ver_set_first[vi] + col
        col_o[i] = col
        st, c, bu, _, band, _ = _price(svc, t0, qty, vi, col, 0, plan)
        band_o[i] = band
        if st == NO_RATE and col == n_sets and svc != 2:
            st = NO_DEST
        status[i] = st
        if st == OK:
            cost[i] = c
            billed[i] = bu
            e = ver_elig_first[vi] + svc * (n_sets + 1) + col
            if elig_ptr[e + 1] > elig_ptr[e]:
                elig[i] = 1
    return status, bind, svc_o, ver, col_o, set_o, prefix_o, band_o, qty_o, billed, cost, elig


@njit(cache=True, nogil=True)
def apply_allowances(
    order: np.ndarray,
    start_us: np.ndarray,
    svc: np.ndarray,
    ver: np.ndarray,
    col: np.ndarray,
    qty: np.ndarray,
    slot_ptr: np.ndarray,
    slot_ix: np.ndarray,
    remaining: np.ndarray,
    cost: np.ndarray,
    used_o: np.ndarray,
    plan: tuple,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-price ``order``'s records in that order, drawing free units from ``remaining``.

    ``slot_ptr``/``slot_ix`` (CSR, parallel to ``order``) list each record's allowance slots
    in consumption order. Updates ``remaining``, ``cost`` and ``used_o`` in place and returns
    the ledger as (record index, slot, units).
    """
    led_rec = np.empty(len(slot_ix), np.int64)
    led_slot = np.empty(len(slot_ix), np.int64)
    led_units = np.empty(len(slot_ix), np.int64)
    n_led = 0
    for o in range(len(order)):
        i = order[o]
        free = 0
        for s in range(slot_ptr[o], slot_ptr[o + 1]):
            free += remaining[slot_ix[s]]
        if free <= 0:
            continue
        st, c, _, used, _, _ = _price(svc[i], start_us[i], qty[i], ver[i], col[i], free, plan)
        if st != OK or used == 0:
            continue
        cost[i] = c
        used_o[i] = used
        left = used
        for s in range(slot_ptr[o], slot_ptr[o + 1]):
            if left == 0:
                break
            take = min(left, remaining[slot_ix[s]])
            if take > 0:
                remaining[slot_ix[s]] -= take
                left -= take
                led_rec[n_led] = i
                led_slot[n_led] = slot_ix[s]
                led_units[n_led] = take
                n_led += 1
    return led_rec[:n_led], led_slot[:n_led], led_units[:n_led]


@njit(cache=True, nogil=True, parallel=True)
def gather_strings(
    codes: np.ndarray, d_off: np.ndarray, d_data: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Arrow string buffers (int32 offsets, bytes) of ``dictionary[codes]``; code < 0 -> ""."""
    n = len(codes)
    lens = np.zeros(n + 1, np.int64)
    for i in prange(n):
        c = codes[i]
        if c >= 0:
            lens[i + 1] = d_off[c + 1] - d_off[c]
    off = np.cumsum(lens)
    out = np.empty(off[n], np.uint8)
    for i in prange(n):
        c = codes[i]
        if c >= 0:
            base = off[i]
            src = d_off[c]
            for j in range(d_off[c + 1] - src):
                out[base + j] = d_data[src + j]
    return off.astype(np.int32), out

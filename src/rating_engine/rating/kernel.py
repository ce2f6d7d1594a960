"""The per-record rating path: one Numba function rates a range of a usage batch.

The kernel reads Arrow buffers directly (timestamps, durations, volumes as numpy views;
strings as offsets + data bytes) and the compiled plan's arrays (see
:mod:`rating_engine.tariff.plan`). :mod:`rating_engine.rating.batch_kernel` runs it in
parallel over a batch; :mod:`rating_engine.rating.allowance_kernel` re-runs it,
sequentially in time order, over the records an allowance may cover: the arithmetic is one
code path. Subscriber keys are found through :mod:`rating_engine.tariff.key_table`.

Exactness: a group's price is the reduced fraction p/q nano-units per base unit (ms,
event, byte). A record's exact cost is ``W + R/Q`` nano-units, W and R integers and Q the
version's common denominator for the service; it is rounded once, to the rate's
decimals with its method, then min charge and max cost apply. Any intermediate that
would pass 2^62 makes the record a ``cost_overflow`` rejection instead of a wrong price.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rating_engine.rating.allowance_draw import draw_allowances
from rating_engine.rating.destination_walk import ASCII_0, BYTE, DIGIT_CARRY, TOP6, walk_destination
from rating_engine.rating.exact_arithmetic import (
    I64MAX,
    LIMIT,
    POW10,
    div_inv,
    round_total,
    timespan_increment,
)
from rating_engine.rating.reasons import (
    NEG_DURATION,
    NO_BAND,
    NO_DEST,
    NO_RATE,
    NO_VERSION,
    OK,
    OVERFLOW,
    TIME_RANGE,
    UNKNOWN_KEY,
    UNKNOWN_SERVICE,
    UNKNOWN_SUB,
    UNKNOWN_TARIFF,
    VOLUME_RANGE,
)
from rating_engine.rating.record_text import MIXED, record_code
from rating_engine.tariff.destinations import JUMP_DIGITS
from rating_engine.tariff.key_table import (
    ROW_ACC,
    ROW_BIND,
    ROW_FROM,
    ROW_SUB,
    ROW_TAG,
    ROW_TO,
    key_code,
    key_code_words,
    key_tag,
    seed_of,
    short_text,
    slot_of,
)

__all__ = ["rate_records"]

DAY_US = 86_400_000_000
#: Destinations' first digits are resolved by one table look-up (see tariff.destinations).
JUMP_SIZE = 10**JUMP_DIGITS
#: Quantities below this may take the one-step path: its band check
#: ``t0 + (n - 1) * increment * 1000`` (µs) then stays far below 2^63.
_FAST_QTY = 1 << 40
#: Records per block whose look-ups run in their own loops (see rate_records).
_BLOCK = 512
#: "The destination look-up finished in phase B1" (see rate_records)
_DONE = -2


@njit(cache=True, nogil=True)
def rate_records(
    idx: np.ndarray,
    lo: int,
    hi: int,
    allow: bool,
    slot_ptr: np.ndarray,
    slot_ix: np.ndarray,
    remaining: np.ndarray,
    ledger: np.ndarray,
    rec: tuple,
    subs: tuple,
    plan: tuple,
    out: tuple,
    svc_c: int,
    kt_c: int,
) -> None:
    """Rate records ``idx[lo:hi]`` (or ``lo:hi`` when ``idx`` is empty) into ``out``.

    ``svc_c``/``kt_c``: the service / key type code of every record in the range when the
    caller found it uniform (see :func:`~rating_engine.rating.record_text.text_code`),
    else ``MIXED``: decode per record.

    One function holds the whole per-record path and is called once per chunk: handing the
    plan's arrays to a helper per record would cost a reference-count round trip per array
    per record. With ``allow`` (re-pricing after the batch pass, whose service, allowance
    entry and tariff ``out`` holds), each record (o-th of ``idx``) draws free units from its
    allowance slots ``slot_ix[slot_ptr[o]:slot_ptr[o + 1]]`` and the ledger
    (record, slot, units; row 0 column 0 counts rows) is appended to.
    """
    (start_us, dur_ms, vol_up, vol_down, svc_off, svc_data, kt_off, kt_data, key_off,
     key_data, dst_off, dst_data, dst_valid, dst_bit0, key_words, svc_words,
     kt_words, dst_words, leg) = rec  # fmt: skip
    (ktab, kdisp, k_off, k_data, b_from, b_to, bind) = subs  # fmt: skip
    (tariff_first_ver, tariff_n_ver, ver_active_from, ver_trie_root, ver_n_sets, ver_set_first,
     ver_class_n, ver_bt_first, trie_child, ver_dix_first, bt_start, bt_band, day_ix,
     day_range, ver_price_first, price, ver_Q, rate_g0, rate_ng, rate_conn, rate_rm, rate_rd,
     rate_compat, rate_min, rate_max, grp_start, grp_inc, grp_p, grp_q, grp_qmul, grp_inc_cost,
     ver_elig_first, elig_ptr, jump, rate_conn_q,
     grp_mulinc, grp_safe, grp_inc_inv, rate_den_inv, ver_depth,
     prefix_col, step2, step2_node, ver_label, set_label, cur_label, rate_fast,
     rate_fast_inv, grp_inc_den, rate_inc_step, rate_inc_rm, bt_newday, ver_txt_first, ver_txt_n,
     txt_off, txt_data, txt_prefix, rate_zero_free) = plan  # fmt: skip
    (status, svc_o, ver_o, cur_o, set_o, prefix_o, band_o, billed_o, cost_o, used_o, elig_o,
     sub_o, acc_o, ti_o) = out  # fmt: skip
    if lo < 0 or hi > len(start_us):
        return
    # Arrays are indexed by unsigned copies of the record index (u, u1 = u + 1) and the
    # position in the block (ob): Numba adds a negative-index fix-up to every access with
    # a signed index, ~5 ns a record in all (measured).
    has_valid = len(dst_valid) > 0
    has_elig = len(elig_ptr) > 0 and elig_ptr[len(elig_ptr) - 1] > 0  # any allowance at all
    seed = seed_of(kdisp)
    dead = len(trie_child) - 1  # the trie's dead-end row (see tariff.destinations)
    day0 = day_range[0]
    ndays = day_range[1]
    bk = np.empty(_BLOCK, np.int64)
    dcol = np.empty(_BLOCK, np.int64)
    dpre = np.empty(_BLOCK, np.int64)
    vv = np.empty(_BLOCK, np.int64)
    dk = np.empty(_BLOCK, np.int64)
    kts = np.empty(_BLOCK, np.int64)
    bti = np.empty(_BLOCK, np.int64)  # the binding's tariff, subscription, account
    bsub = np.empty(_BLOCK, np.int64)
    bacc = np.empty(_BLOCK, np.int64)
    dnode = np.empty(_BLOCK, np.int64)  # the jump's node, and step2 entry (or -1, _DONE)
    dje = np.empty(_BLOCK, np.int64)
    ksl = np.empty(_BLOCK, np.int64)  # the key's row (-1: no key type), words and tag
    kw0 = np.empty(_BLOCK, np.int64)
    kw1 = np.empty(_BLOCK, np.int64)
    ktg = np.empty(_BLOCK, np.int64)
    for blo in range(lo, hi, _BLOCK):
        bhi = min(blo + _BLOCK, hi)
        # Phases A (subscriber: A1, A2) and B (version, band entry, destination: B1, B2) run
        # the look-ups of a block of records in tight loops of their own, so the CPU overlaps
        # the cache misses of many records instead of waiting on each in turn; phase C
        # checks, prices and writes each record. B1 also writes the subscription and account
        # of every record with a binding.
        # A1: each key's words and its one row in the table (perfect hash: no probe loop)
        for o in range(blo, blo if allow else bhi):  # (none when re-pricing: see A2)
            i = idx[o] if len(idx) > 0 else o
            u, u1, ob = np.uint64(i), np.uint64(i + 1), np.uint64(o - blo)
            kt = kt_c
            if kt_c == MIXED:
                kt = record_code(kt_words, kt_data, kt_off, u, u1, False)
            kts[ob] = kt
            ksl[ob] = -1
            if kt >= 0:
                klo = key_off[u]
                khi = key_off[u1]
                wi = klo >> 3
                if 0 < khi - klo <= 16 and wi + 2 < len(key_words):
                    w0, w1, h = key_code_words(
                        key_words[wi], key_words[wi + 1], key_words[wi + 2], klo, khi - klo, kt,
                        seed,
                    )  # fmt: skip
                else:  # long keys; keys in the buffer's last words; unaligned buffers
                    w0, w1, h = key_code(kt, key_data, klo, khi, seed)
                ksl[ob] = slot_of(h, kdisp)
                kw0[ob] = np.int64(w0)
                kw1[ob] = np.int64(w1)
                ktg[ob] = key_tag(khi - klo, kt)
        # A2: the rows, in a loop of few instructions: many records' cache misses in flight
        for o in range(blo, bhi):
            i = idx[o] if len(idx) > 0 else o
            u, u1, ob = np.uint64(i), np.uint64(i + 1), np.uint64(o - blo)
            b = -1
            if allow:  # re-pricing: the batch pass's outputs say the tariff, service and
                kts[ob], bk[ob], bti[ob] = 0, 0, ti_o[u]  # (B1) destination column
                continue
            sl = ksl[ob]
            if sl >= 0:
                hit = (
                    (ktab[sl, ROW_TAG] & 0xFFFFFFFF) == ktg[ob]
                    and ktab[sl, 0] == kw0[ob]
                    and ktab[sl, 1] == kw1[ob]
                )
                if hit and (ktg[ob] & 0xFFFFFF) > 16:  # a long key (the tag's length):
                    klo = key_off[u]  # its words are 0, compare bytes
                    base = k_off[bind[ktab[sl, ROW_BIND] & 0xFFFFFFFF, 3]]
                    for j in range(ktg[ob] & 0xFFFFFF):
                        if k_data[base + j] != key_data[klo + j]:
                            hit = False
                            break
                if hit:
                    t0 = start_us[u]
                    if ktab[sl, ROW_FROM] <= t0 and t0 < ktab[sl, ROW_TO]:
                        b = ktab[sl, ROW_BIND] & 0xFFFFFFFF
                        bti[ob] = ktab[sl, ROW_BIND] >> 32
                        bsub[ob] = ktab[sl, ROW_SUB]
                        bacc[ob] = ktab[sl, ROW_ACC]
                    else:  # a later binding of the key
                        j0 = ktab[sl, ROW_BIND] & 0xFFFFFFFF
                        for j in range(j0 + 1, j0 + (ktab[sl, ROW_TAG] >> 32)):
                            if b_from[j] <= t0 and t0 < b_to[j]:
                                b = j
                                bti[ob] = bind[j, 0]
                                bsub[ob] = bind[j, 1]
                                bacc[ob] = bind[j, 2]
                                break
            bk[ob] = b
        # B1: version, band timeline entry, the destination's first digits and jump entry
        for o in range(blo, bhi):
            i = idx[o] if len(idx) > 0 else o
            u, u1, ob = np.uint64(i), np.uint64(i + 1), np.uint64(o - blo)
            dcol[ob] = -1
            dje[ob] = _DONE
            vv[ob] = -1
            b = bk[ob]
            sub_o[u] = bsub[ob] if b >= 0 else -1
            acc_o[u] = bacc[ob] if b >= 0 else -1
            if has_elig and not allow:  # allowances look at every record's: the rejected too
                elig_o[u] = 0
            if b < 0 or bti[ob] < 0:
                continue
            ti = bti[ob]
            t0 = start_us[u]
            vi = -1
            for v in range(tariff_first_ver[ti], tariff_first_ver[ti] + tariff_n_ver[ti]):
                if ver_active_from[v] <= t0:
                    vi = v
            if vi < 0:
                continue
            vv[ob] = vi
            # the band timeline entry in force at t0: the day's first entry, then usually
            # zero to two steps (taken without branches), rarely more
            kb = -1
            d = t0 // DAY_US - day0
            if 0 <= d < ndays:
                kb = day_ix[ver_dix_first[vi] + d]
            if kb >= 0:
                base = ver_bt_first[vi]
                kb += int(bt_start[base + kb + 1] <= t0)
                kb += int(bt_start[base + kb + 1] <= t0)
                while bt_start[base + kb + 1] <= t0:
                    kb += 1
            dk[ob] = kb
            if allow:  # the set column is in the record's allowance entry (no prefix)
                dpre[ob], ent = -1, elig_o[u] - 1 - ver_elig_first[vi]
                dcol[ob] = ent - svc_o[u] * (ver_n_sets[vi] + 1)
                continue
            valid = True
            if has_valid:
                bit = dst_bit0 + i
                valid = (dst_valid[bit >> 3] >> (bit & 7)) & 1 == 1
            if not valid:
                continue
            j0 = dst_off[u]
            j1 = dst_off[u1]
            bad = j1 - j0 < JUMP_DIGITS
            d4 = np.int64(0)
            d56 = np.int64(-1)  # the two digits after the jump's, if both are digits
            if j1 - j0 >= JUMP_DIGITS + 2:
                # six digits from one word (SWAR): a byte is a digit when neither it minus
                # '0' nor that plus 0x76 has its top bit set; then pairs of digits
                x = short_text(dst_words, dst_data, j0, j1) - ASCII_0
                if ((x + DIGIT_CARRY) | x) & TOP6 == 0:
                    y = x * np.uint64(10) + (x >> np.uint64(8))  # bytes 0, 2, 4: the pairs
                    d4 = np.int64(y & BYTE) * 100 + np.int64((y >> np.uint64(16)) & BYTE)
                    d56 = np.int64((y >> np.uint64(32)) & BYTE)
            if not bad and d56 < 0:
                # the first digits in one look-up instead of a walk of dependent loads
                for j in range(j0, j0 + JUMP_DIGITS):
                    dg = int(dst_data[j]) - 48
                    bad |= (dg < 0) | (dg > 9)
                    d4 = d4 * 10 + dg
                if not bad and j0 + JUMP_DIGITS + 2 <= j1:
                    d5 = int(dst_data[j0 + JUMP_DIGITS]) - 48
                    d6 = int(dst_data[j0 + JUMP_DIGITS + 1]) - 48
                    if (d5 >= 0) & (d5 <= 9) & (d6 >= 0) & (d6 <= 9):
                        d56 = np.int64(d5 * 10 + d6)
            if not bad:
                # the first digits in one look-up; the rest in B2
                jx = vi * JUMP_SIZE + d4
                dpre[ob] = jump[jx, 1]
                dnode[ob] = jump[jx, 0]
                dje[ob] = jump[jx, 2] * 100 + d56 if d56 >= 0 else -1
                continue
            col, pre = walk_destination(
                dst_data, j0, j1, ver_trie_root[vi], trie_child, ver_txt_first[vi],
                ver_txt_n[vi], txt_off, txt_data, txt_prefix, prefix_col,
            )  # fmt: skip
            dcol[ob] = col
            dpre[ob] = pre
        # B2: the two digits after the jump's in one more look-up (a dead-end block when
        # the jump entry has no deeper prefixes), then single digits up to the version's
        # longest prefix, a fixed number of steps without branches: a non-digit or the end
        # of the number leads to the dead-end row, which stays there. A loop of its own,
        # like A2, so that many records' look-ups are in flight.
        for o in range(blo, bhi):
            i = idx[o] if len(idx) > 0 else o
            u, u1, ob = np.uint64(i), np.uint64(i + 1), np.uint64(o - blo)
            e = dje[ob]
            if e == _DONE:
                continue
            vi = vv[ob]
            j0 = dst_off[u]
            j1 = dst_off[u1]
            pre = dpre[ob]
            node = dnode[ob]
            walk = j0 + JUMP_DIGITS
            if e >= 0:
                pr = step2[e]
                pre = pr if pr >= 0 else pre
                if ver_depth[vi] > JUMP_DIGITS + 2:  # longer prefixes: walk on
                    node = step2_node[e]
                walk += 2
            for j in range(walk, j0 + ver_depth[vi]):
                dg = int(dst_data[min(j, j1 - 1)]) - 48
                ok = (j < j1) & (dg >= 0) & (dg <= 9)
                nx = trie_child[node, dg if ok else 0]
                node = nx if ok else dead
                # one select only: two on one condition become an unpredictable branch
                pr = trie_child[node, 11]
                pre = pr if pr >= 0 else pre
            dcol[ob] = prefix_col[pre, 0] if pre >= 0 else -1
            dpre[ob] = pre
        # C: per record, the checks in reason order, pricing and the outputs
        for o in range(blo, bhi):
            i = idx[o] if len(idx) > 0 else o
            u, u1, ob = np.uint64(i), np.uint64(i + 1), np.uint64(o - blo)
            # outputs start uninitialised (one pass less over memory): a rated record's
            # fields are all set below; a rejected record's are left undefined (only its
            # status, subscription and account are read)
            # --- service, subscriber, binding, version --------------------------------------
            svc = svc_o[u] if allow else svc_c
            if svc == MIXED:
                svc = record_code(svc_words, svc_data, svc_off, u, u1, True)
            if svc < 0:
                status[u] = UNKNOWN_SERVICE
                continue
            svc_o[u] = svc
            kt = kts[ob]
            if kt < 0:
                status[u] = UNKNOWN_KEY
                continue
            t0 = start_us[u]
            b = bk[ob]
            if b < 0:
                status[u] = UNKNOWN_SUB
                continue
            ti = bti[ob]
            if ti < 0:
                status[u] = UNKNOWN_TARIFF
                continue
            vi = vv[ob]
            if vi < 0:
                status[u] = NO_VERSION
                continue
            ver_o[u] = ver_label[vi]
            ti_o[u] = ti
            cur_o[u] = cur_label[ti]
            if dur_ms[u] < 0:
                status[u] = NEG_DURATION
                continue
            if svc == 0:
                qty = dur_ms[u]
            elif svc == 1:
                qty = 1
            else:
                up = vol_up[u]
                down = vol_down[u]
                if up >= np.uint64(LIMIT) or down >= np.uint64(LIMIT):
                    status[u] = VOLUME_RANGE
                    continue
                qty = np.int64(up) + np.int64(down)
            # a continuation leg of a call (CGRateS's LoopIndex > 0) pays no connect fee
            first = 1 if len(leg) == 0 or leg[u] <= 0 else 0
            # --- destination: walk the digit trie, the last set seen is the longest prefix ----
            n_sets = ver_n_sets[vi]
            col = n_sets
            pre = -1
            if svc != 2 and dcol[ob] >= 0:  # B1 left -1 for a null destination
                col = dcol[ob]
                pre = dpre[ob]
            # output labels: codes among the distinct texts (see tariff.plan)
            prefix_o[u] = prefix_col[pre, 1] if pre >= 0 else -1
            set_o[u] = set_label[ver_set_first[vi] + col] if col < n_sets else -1
            # --- allowance slots -------------------------------------------------------------
            free = 0
            if allow:
                for s in range(slot_ptr[o], slot_ptr[o + 1]):
                    free += remaining[slot_ix[s]]
                if free <= 0:
                    continue
            # --- band at the start -----------------------------------------------------------
            base = ver_bt_first[vi]
            k = dk[ob]
            if k >= 0 and bt_band[base + k] == -2:
                k = -1
            if k < 0:
                status[u] = TIME_RANGE
                continue
            b0 = bt_band[base + k]
            if b0 < 0:
                status[u] = NO_BAND
                continue
            # a timeline entry is a class of instants; its price pair: rate, band reported
            n_classes = ver_class_n[vi]
            pf = ver_price_first[vi] + (svc * (n_sets + 1) + col) * n_classes
            pe = np.uint64(2 * (pf + b0))
            r0 = price[pe]
            if r0 < 0:
                status[u] = NO_DEST if (col == n_sets and svc != 2) else NO_RATE
                continue
            band_o[u] = price[pe + np.uint64(1)]
            # --- walk increments segment by segment (band, group constant in a segment) ------
            band_end = bt_start[base + k + 1]
            # exact cost so far: N/Q nano-units while ``fast``, else W + R/Q
            N = 0
            fast = True
            W = 0
            R = 0
            p = 0
            free_left = free
            used = 0
            priced = False
            stop = free <= 0
            st = OK
            r = r0
            if not allow and rate_fast[r0, 0] >= 0 and qty < _FAST_QTY:
                # the common case in one step: one group, no allowance, and (voice) no
                # increment starting in a later band - the loop below gives the same. What
                # it reads of the rate is one row (see tariff.compile._one_step_rows).
                inc = rate_fast[r0, 1]
                n = div_inv(qty + inc - 1, inc, rate_fast_inv[r0, 0])
                one_band = svc != 0 or n == 0 or t0 + (n - 1) * inc * 1000 < band_end
                if one_band and n <= rate_fast[r0, 2]:
                    N = n * rate_fast[r0, 3] + rate_fast[r0, 4] * first  # + connect fee
                    if N < LIMIT:
                        den = rate_fast[r0, 5]
                        qt = div_inv(N, den, rate_fast_inv[r0, 1])
                        qt = round_total(qt, N - qt * den, den, rate_fast[r0, 6])
                        # minimum charge, then maximum cost
                        cost_o[u] = min(max(qt * rate_fast[r0, 7], rate_fast[r0, 8]),
                                        rate_fast[r0, 9])  # fmt: skip
                        if qty == 0 and rate_zero_free[r0] != 0:
                            cost_o[u] = 0  # no usage, no charge (CGRateS)
                        status[u] = OK
                        p = n * inc
                        billed_o[u] = p // 1000 if svc == 0 else p
                        if has_elig:
                            used_o[u] = 0
                            e = ver_elig_first[vi] + svc * (n_sets + 1) + col
                            if elig_ptr[e + 1] > elig_ptr[e]:
                                elig_o[u] = e + 1
                        continue
            Q = ver_Q[vi * 3 + svc]  # the segment loop's common denominator
            dec, rmeth, cq = rate_rd[r0], rate_rm[r0], rate_conn_q[r0]  # the total's rounding
            while p < qty:
                lim_band = I64MAX
                if svc == 0:
                    # voice: each increment is rated in the band in force at its first instant
                    t = t0 + p * 1000
                    while t >= band_end:
                        k += 1
                        if bt_band[base + k] == -2:
                            st = TIME_RANGE
                            break
                        band_end = bt_start[base + k + 1]
                    if st != OK:
                        break
                    bb = bt_band[base + k]
                    if bb < 0:
                        st = NO_BAND
                        break
                    pe = np.uint64(2 * (pf + bb))
                    r = price[pe]
                    if r < 0:
                        st = NO_RATE
                        break
                    if rate_compat[r] != 0 and rate_rd[r] > dec:  # CGRateS: the most decimals
                        dec, rmeth, cq = rate_rd[r], rate_rm[r], -1  # (GetLongestRounding)
                    # run on over the stretches priced alike (CGRateS splits a call where its
                    # rate interval changes; at midnight, bt_newday, with increment rounding)
                    lbl = price[pe + np.uint64(1)]
                    while bt_band[base + k + 1] >= 0 and bt_newday[base + k + 1] == 0:
                        pn = np.uint64(2 * (pf + bt_band[base + k + 1]))
                        if price[pn] != r or price[pn + np.uint64(1)] != lbl:
                            break
                        k += 1
                        band_end = bt_start[base + k + 1]
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
                n = div_inv(lim - p + inc - 1, inc, grp_inc_inv[g])
                m = 0
                if not stop:
                    m = free_left // inc
                    if m >= n:
                        m = n
                    else:
                        stop = True  # the next increment does not fit: the rest is priced
                    free_left -= m * inc
                    used += m * inc
                kp = n - m
                if kp > 0:
                    priced = True
                    if fast:
                        # the common case: N += kp x (one increment's cost in nano/Q), no division
                        if kp <= grp_safe[g]:
                            add = kp * grp_mulinc[g]  # <= 2^62 and N < 2^62: cannot wrap
                            if N + add < LIMIT:
                                N += add
                                p += n * inc
                                continue
                        fast = False  # too big for the fast form: continue as W + R/Q exactly
                        W = N // Q
                        R = N % Q
                        N = 0
                    if rate_compat[r] != 0:
                        # CGRateS: each of a timespan's n increments costs round(round(n A/B)/n)
                        c = timespan_increment(n, grp_inc_cost[g], grp_inc_den[g], rate_inc_rm[r])
                        c *= rate_inc_step[r]
                        if c < 0 or (c > 0 and kp > (LIMIT - W) // c):
                            st = OVERFLOW
                            break
                        W += kp * c
                    else:
                        A = kp * inc
                        pp = grp_p[g]
                        qq = grp_q[g]
                        whole = A // qq
                        if pp > 0 and whole > (LIMIT - W) // pp:
                            st = OVERFLOW
                            break
                        W += whole * pp
                        x = (A % qq) * pp
                        W += x // qq
                        R += (x % qq) * grp_qmul[g]
                        if R >= Q:
                            W += R // Q
                            R = R % Q
                        if W >= LIMIT:
                            st = OVERFLOW
                            break
                p += n * inc
            if st != OK:
                status[u] = st
                continue
            # --- total: one rounding, then minimum charge and maximum cost --------------------
            if (used > 0 and not priced) or (qty == 0 and rate_zero_free[r0] != 0):
                cost = 0  # wholly covered by an allowance, or no usage: no fee, no minimum
            else:
                sc = POW10[9 - dec]
                den = sc * Q
                if fast and cq >= 0 and N + cq < LIMIT:
                    N += cq * first
                    qt = div_inv(N, den, rate_den_inv[r0])
                    numer = N - qt * den
                else:
                    if fast:
                        W = N // Q
                        R = N % Q
                    W += rate_conn[r0] * first
                    qt = W // sc
                    numer = (W % sc) * Q + R
                cost = round_total(qt, numer, den, rmeth) * POW10[6 - dec]
                # minimum charge, then maximum cost (no bound: -1 and the largest int64)
                cost = min(max(cost, rate_min[r0]), rate_max[r0])
            status[u] = OK
            billed_o[u] = p // 1000 if svc == 0 else p  # voice positions are ms: bill seconds
            if not allow:
                cost_o[u] = cost
                if has_elig:
                    used_o[u] = 0
                    e = ver_elig_first[vi] + svc * (n_sets + 1) + col
                    if elig_ptr[e + 1] > elig_ptr[e]:
                        elig_o[u] = e + 1
            elif used > 0:
                cost_o[u] = cost
                used_o[u] = used // 1000 if svc == 0 else used
                draw_allowances(i, used, slot_ix[slot_ptr[o] : slot_ptr[o + 1]], remaining, ledger)

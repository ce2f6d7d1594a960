"""Compile tariffs once into flat numpy arrays the rating kernels read.

Layout (every index is global across the plan):

* versions ``v``: tariff, activation time, trie root, band-timeline slice, pricing slice,
  and one common denominator ``Q`` per (version, service) for exact rational costs;
* a digit trie (``trie_child[node, digit]``) per version; a node carries the destination
  set and the prefix it ends, so the last such node on the walk is the longest prefix; a
  missing child is the last row, a dead end, so walks take a fixed number of steps
  (``ver_depth``, the longest prefix) without branching. The first four digits resolve in
  one look-up (``jump``), the next two in one more (``step2``: blocks of 100 per node the
  jump reaches, the prefix matched; ``step2_node``, the node reached, is read only by
  versions with longer prefixes), single steps after that;
* a band timeline per version: UTC instants where the winning band changes, precomputed
  from the tariff's IANA zone for a range of years (DST-correct), plus a per-day index so
  finding the band of an instant is O(1);
* rates (per version, service, name) and their groups, with each group's price as the
  reduced fraction ``p/q`` nano-units per base unit (ms for voice, events, bytes), and
  per rate one packed row (``rate_fast``) of all the kernel's one-step path reads;
* allowances eligible per (version, service, destination set) as a CSR list;
* output labels: version names, set names, band names, prefixes and currencies repeat
  across tariffs and versions; ``*_label`` (and ``prefix_col[:, 1]``) give each its code
  among the distinct texts, so the rated columns' dictionaries hold every text once.

Plans are cached on disk by a hash of the tariffs' content (``np.savez``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from rating_engine.errors import TariffError
from rating_engine.tariff.model import ROUNDING_METHODS, SERVICES, Band, Rate, Tariff, TariffVersion

__all__ = [
    "DAY_US",
    "KERNEL_FIELDS",
    "NANO",
    "SVC_DATA",
    "SVC_SMS",
    "SVC_VOICE",
    "RatingPlan",
    "band_timeline",
    "compile_tariffs",
    "label_codes",
    "labels",
]

SVC_VOICE, SVC_SMS, SVC_DATA = 0, 1, 2
DAY_US = 86_400_000_000
NANO = 1_000_000_000
#: Bumped whenever the array layout changes, so stale caches are never read.
_LAYOUT = "plan-v13"
_DEFAULT_YEARS = (2015, 2040)
_MAX_Q = 2**31
_I64MAX = 2**63 - 1
_MAX_PQ = 2**62
_EPOCH = date(1970, 1, 1)


#: The plan arrays in the order the kernels index them (``plan[i]`` in rate_kernel).
KERNEL_FIELDS = (
    "tariff_first_ver",
    "tariff_n_ver",
    "ver_active_from",
    "ver_trie_root",
    "ver_n_sets",
    "ver_set_first",
    "ver_band_n",
    "ver_bt_first",
    "trie_child",
    "ver_dix_first",
    "bt_start",
    "bt_band",
    "day_ix",
    "day_range",
    "ver_price_first",
    "price",
    "ver_Q",
    "rate_g0",
    "rate_ng",
    "rate_conn",
    "rate_round_method",
    "rate_round_dec",
    "rate_compat",
    "rate_min",
    "rate_max",
    "grp_start",
    "grp_inc",
    "grp_p",
    "grp_q",
    "grp_qmul",
    "grp_inc_cost",
    "ver_elig_first",
    "elig_ptr",
    "jump",
    "rate_conn_q",
    "grp_mulinc",
    "grp_safe",
    "ver_band_first",
    "grp_inc_inv",
    "rate_den_inv",
    "ver_depth",
    "prefix_col",
    "step2",
    "step2_node",
    "ver_label",
    "set_label",
    "band_label",
    "cur_label",
    "rate_fast",
    "rate_fast_inv",
)
#: Digits resolved by the per-version jump table (must equal rate_kernel.JUMP_DIGITS).
JUMP_DIGITS = 4


@dataclass
class RatingPlan:
    """Compiled tariffs: integer arrays for the kernels and the names they index."""

    arrays: dict[str, np.ndarray]
    tariff_ids: list[str]
    currencies: list[str]
    version_names: list[str]
    set_names: list[str]
    prefixes: list[str]
    band_names: list[str]
    rate_names: list[str]
    allowance_ids: list[str]
    allowance_units: list[int]
    years: tuple[int, int]
    content_hash: str
    tariffs: dict[str, Tariff] = field(default_factory=dict, repr=False)
    #: Derived lookups (string dictionaries for output columns), filled lazily by callers.
    memo: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    def kernel_args(self) -> tuple[np.ndarray, ...]:
        """The arrays in :data:`KERNEL_FIELDS` order, as the kernels take them."""
        return tuple(self.arrays[f] for f in KERNEL_FIELDS)

    def tariff_index(self, tariff_id: str) -> int:
        """Index of ``tariff_id`` in the plan, -1 if absent."""
        try:
            return self.tariff_ids.index(tariff_id)
        except ValueError:
            return -1


def _utc_us(dt: datetime) -> int:
    delta = dt - datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _offset_pieces(zone: ZoneInfo, start_s: int, end_s: int) -> list[tuple[int, int, int]]:
    """[(from_s, to_s, utc_offset_s)] covering [start_s, end_s) in UTC seconds."""

    def off(t: int) -> int:
        dt = datetime.fromtimestamp(t, tz=zone)
        u = dt.utcoffset()
        assert u is not None
        return int(u.total_seconds())

    pieces: list[tuple[int, int, int]] = []
    a, o = start_s, off(start_s)
    t = start_s
    while t < end_s:
        nxt = min(t + 86400, end_s)
        if off(nxt) != o:
            lo, hi = t, nxt  # offset at lo == o, at hi differs: find first second that differs
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if off(mid) == o:
                    lo = mid
                else:
                    hi = mid
            pieces.append((a, hi, o))
            a, o = hi, off(hi)
            t = hi
            continue
        t = nxt
    pieces.append((a, end_s, o))
    return pieces


def _bands_on(bands: tuple[Band, ...], day: date) -> list[Band]:
    """Bands that apply on a local date, highest weight first."""
    out = []
    for b in bands:  # already sorted by descending weight
        if day.isoweekday() in b.weekdays or any(
            (y is None or y == day.year) and m == day.month and d == day.day for y, m, d in b.dates
        ):
            out.append(b)
    return out


def band_timeline(
    bands: tuple[Band, ...], timezone: str, years: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """UTC instants (µs) where the winning band changes, and its index in ``bands`` (-1 = none).

    The last entry is the end of the range (index -2, "out of range"). Local wall-clock
    change points are mapped to UTC piece by piece between the zone's offset transitions,
    so a repeated autumn hour is evaluated twice and a skipped spring hour never starts.
    """
    zone = ZoneInfo(timezone)
    index = {b.name: i for i, b in enumerate(bands)}
    start_s = _utc_us(datetime(years[0], 1, 1, tzinfo=zone)) // 1_000_000
    end_s = _utc_us(datetime(years[1] + 1, 1, 1, tzinfo=zone)) // 1_000_000
    starts: list[int] = []
    ids: list[int] = []
    cache: dict[int, list[Band]] = {}

    def winner(local_s: int) -> int:
        day, tod = divmod(local_s, 86400)
        on = cache.get(day)
        if on is None:
            on = cache[day] = _bands_on(bands, _EPOCH + timedelta(days=day))
        for b in on:
            if b.start <= tod < b.end:
                return index[b.name]
        return -1

    for a, b_, o in _offset_pieces(zone, start_s, end_s):
        la, lb = a + o, b_ + o
        points = {la}
        for day in range(la // 86400, (lb - 1) // 86400 + 1):
            base = day * 86400
            points.add(base)
            on = cache.get(day)
            if on is None:
                on = cache[day] = _bands_on(bands, _EPOCH + timedelta(days=day))
            for band in on:
                points.add(base + band.start)
                points.add(base + band.end)
        for lp in sorted(p for p in points if la <= p < lb):
            w = winner(lp)
            if not ids or ids[-1] != w:
                starts.append((lp - o) * 1_000_000)
                ids.append(w)
    starts.append(end_s * 1_000_000)
    ids.append(-2)
    return np.array(starts, dtype=np.int64), np.array(ids, dtype=np.int32)


def _frac(rate_nano: int, unit_base: int) -> tuple[int, int]:
    g = math.gcd(rate_nano, unit_base)
    return rate_nano // g, unit_base // g


def _round_int(num: int, den: int, method: str) -> int:
    """Round num/den (>= 0) to an integer with ``method``."""
    q, r = divmod(num, den)
    if r == 0 or method == "down":
        return q
    if method == "up":
        return q + 1
    if 2 * r > den or (2 * r == den and (method == "half-up" or q % 2 == 1)):
        return q + 1
    return q


def _nano(amount: object) -> int:
    from decimal import Decimal

    assert isinstance(amount, Decimal)
    return int(amount * NANO)


class _Builder:
    """Accumulates the plan's arrays while walking tariffs and versions."""

    def __init__(self, years: tuple[int, int]) -> None:
        self.years = years
        self.a: dict[str, list[int]] = {}
        #: float arrays: reciprocals the kernels multiply by (then correct exactly)
        self.f: dict[str, list[float]] = {}
        self.trie: list[list[int]] = []
        self.trie_set: list[int] = []
        self.trie_prefix: list[int] = []
        self.timelines: dict[tuple[object, ...], tuple[np.ndarray, np.ndarray]] = {}
        self.bt_start: list[np.ndarray] = []
        self.bt_band: list[np.ndarray] = []
        self.day_ix: list[np.ndarray] = []
        self.bt_len = 0
        self.dix_len = 0
        self.names: dict[str, list[str]] = {
            k: []
            for k in ("tariff", "currency", "version", "set", "prefix", "band", "rate", "allow")
        }
        self.allow_units: list[int] = []
        self.day0 = (date(years[0] - 1, 12, 30) - _EPOCH).days
        self.ndays = (date(years[1] + 1, 1, 3) - _EPOCH).days - self.day0

    def push(self, key: str, *values: int) -> None:
        self.a.setdefault(key, []).extend(values)

    def node(self) -> int:
        self.trie.append([-1] * 10)
        self.trie_set.append(-1)
        self.trie_prefix.append(-1)
        return len(self.trie) - 1

    def tariff(self, t: Tariff) -> None:
        ti = len(self.names["tariff"])
        self.names["tariff"].append(t.id)
        self.names["currency"].append(t.currency)
        self.push("tariff_first_ver", len(self.names["version"]))
        self.push("tariff_n_ver", len(t.versions))
        allow_first = len(self.names["allow"])
        for al in t.allowances:
            self.names["allow"].append(f"{t.id}:{al.name}")
            self.allow_units.append(al.units)
            self.push("allow_svc", SERVICES.index(al.service))
        for v in t.versions:
            self.version(ti, t, v, allow_first)

    def version(self, ti: int, t: Tariff, v: TariffVersion, allow_first: int) -> None:
        where = f"tariff {t.id}, version {v.version}"
        self.names["version"].append(v.version)
        self.push("ver_tariff", ti)
        self.push("ver_active_from", v.active_from)
        # destination sets and their trie
        set_first = len(self.names["set"])
        n_sets = len(v.destinations)
        root = self.node()
        self.push("ver_trie_root", root)
        self.push("ver_set_first", set_first)
        self.push("ver_n_sets", n_sets)
        depth = 0  # the longest prefix: the kernel walks at most this deep
        for si, ds in enumerate(v.destinations):
            self.names["set"].append(ds.name)
            for prefix in ds.prefixes:
                n = root
                for ch in prefix:
                    d = ord(ch) - 48
                    if self.trie[n][d] < 0:
                        self.trie[n][d] = self.node()
                    n = self.trie[n][d]
                self.trie_set[n] = si
                self.trie_prefix[n] = len(self.names["prefix"])
                self.names["prefix"].append(prefix)
                depth = max(depth, len(prefix))
        self.push("ver_depth", depth)
        # bands: timeline shared between versions with identical bands and zone
        band_first = len(self.names["band"])
        self.names["band"].extend(b.name for b in v.bands)
        self.push("ver_band_first", band_first)
        n_bands = len(v.bands)
        self.push("ver_band_n", n_bands)
        key = (v.bands, t.timezone)
        if key not in self.timelines:
            self.timelines[key] = band_timeline(v.bands, t.timezone, self.years)
        starts, ids = self.timelines[key]
        days = np.arange(self.day0, self.day0 + self.ndays, dtype=np.int64) * DAY_US
        dix = np.searchsorted(starts, days, side="right").astype(np.int32) - 1
        self.push("ver_bt_first", self.bt_len)
        self.push("ver_bt_len", len(starts))
        self.push("ver_dix_first", self.dix_len)
        self.bt_start.append(starts)
        self.bt_band.append(ids)
        self.day_ix.append(dix)
        self.bt_len += len(starts)
        self.dix_len += len(dix)
        # rates per service, compiled only where a rule uses them
        rate_ix: dict[tuple[int, str], int] = {}
        rates = {r.name: r for r in v.rates}
        n_cols = n_sets + 1  # the last column is "any / no destination"
        self.push("ver_price_first", len(self.a.get("price", [])))
        price = np.full((3, n_cols, n_bands), -1, dtype=np.int64)
        for svc_i, svc in enumerate(SERVICES):
            rules = [r for r in v.pricing if r.service == svc]
            for col in range(n_cols):
                sname = v.destinations[col].name if col < n_sets else None
                for bi, band in enumerate(v.bands):
                    best = None
                    for r in rules:
                        if r.destinations not in (None, sname) or r.band not in (None, band.name):
                            continue
                        spec = (r.destinations is not None) * 2 + (r.band is not None)
                        if best is None or spec > best[0]:
                            best = (spec, r)
                    if best is None:
                        continue
                    rk = (svc_i, best[1].rate)
                    if rk not in rate_ix:
                        rate_ix[rk] = self.rate(rates[best[1].rate], svc_i, where)
                    price[svc_i, col, bi] = rate_ix[rk]
            # one common denominator per (version, service) for exact sums across groups
            q_all = 1
            for (s_i, _), ri in rate_ix.items():
                if s_i == svc_i:
                    g0, ng = self.a["rate_g0"][ri], self.a["rate_ng"][ri]
                    for g in range(g0, g0 + ng):
                        q_all = math.lcm(q_all, self.a["grp_q"][g])
            if q_all > _MAX_Q:
                raise TariffError(
                    f"rates of service {svc} need a common denominator {q_all} > 2^31; use "
                    f"units that share factors or fewer rate decimals ({where}, field rates)"
                )
            self.push("ver_Q", q_all)
            for (s_i, _), ri in rate_ix.items():
                if s_i == svc_i:
                    conn_q = self.a["rate_conn"][ri] * q_all
                    # the rounding divisor of a total (scale to the decimals x Q), inverted
                    # once so the kernel multiplies instead of dividing
                    den = 10 ** (9 - self.a["rate_round_dec"][ri]) * q_all
                    self.f["rate_den_inv"][ri] = 1.0 / den
                    self.a["rate_den"][ri] = den
                    self.a["rate_conn_q"][ri] = conn_q if conn_q < _MAX_PQ else -1
                    g0, ng = self.a["rate_g0"][ri], self.a["rate_ng"][ri]
                    for g in range(g0, g0 + ng):
                        qmul = q_all // self.a["grp_q"][g]
                        self.a["grp_qmul"][g] = qmul
                        # fast path: the exact cost of one increment in nano/Q units
                        if self.a["rate_compat"][ri]:
                            mul = self.a["grp_inc_cost"][g] * q_all
                        else:
                            mul = self.a["grp_p"][g] * qmul * self.a["grp_inc"][g]
                        ok = mul < _MAX_PQ
                        self.a["grp_mulinc"][g] = mul if ok else -1
                        self.a["grp_safe"][g] = (_MAX_PQ // mul if mul else _MAX_PQ) if ok else 0
        self.push("price", *price.ravel().tolist())
        # allowances eligible per (service, destination column), as CSR
        self.push("ver_elig_first", len(self.a.get("elig_ptr", [])))
        for svc in SERVICES:
            for col in range(n_cols):
                sname = v.destinations[col].name if col < n_sets else None
                self.push("elig_ptr", len(self.a.get("elig", [])))
                for ai, al in enumerate(t.allowances):
                    if al.service == svc and (not al.destinations or sname in al.destinations):
                        self.push("elig", allow_first + ai)
        self.push("elig_ptr", len(self.a.get("elig", [])))

    def rate(self, r: Rate, svc: int, where: str) -> int:
        ri = len(self.names["rate"])
        self.names["rate"].append(r.name)
        scale = 1000 if svc == SVC_VOICE else 1  # voice positions are milliseconds
        self.push("rate_g0", len(self.a.get("grp_start", [])))
        self.push("rate_ng", len(r.groups))
        self.push("rate_conn", _nano(r.connect_fee))
        self.push("rate_conn_q", -1)
        self.push("rate_den", 0)
        self.f.setdefault("rate_den_inv", []).append(0.0)
        self.push("rate_round_method", ROUNDING_METHODS.index(r.rounding.method))
        self.push("rate_round_dec", r.rounding.decimals)
        self.push("rate_compat", 0 if r.increment_rounding is None else 1)
        # as bounds the kernel clamps to without a test: none is -1 (costs are >= 0) and
        # the largest int64
        self.push("rate_min", -1 if r.min_charge is None else int(r.min_charge * 1_000_000))
        self.push("rate_max", _I64MAX if r.max_cost is None else int(r.max_cost * 1_000_000))
        for gi, g in enumerate(r.groups):
            p, q = _frac(_nano(g.rate), g.unit * scale)
            if p * q >= _MAX_PQ:
                raise TariffError(
                    f"rate {g.rate} per {g.unit} is too fine to compute exactly "
                    f"({where}, field rates.{r.name}.groups[{gi}])"
                )
            inc_cost = 0
            if r.increment_rounding is not None:
                # CGRateS compat: one increment's exact cost rounded to N decimals, in nano.
                step = 10 ** (9 - r.increment_rounding.decimals)
                exact_num = _nano(g.rate) * g.increment
                inc_cost = _round_int(exact_num, g.unit * step, r.increment_rounding.method) * step
            self.push("grp_start", g.start * scale)
            self.push("grp_inc", g.increment * scale)
            self.f.setdefault("grp_inc_inv", []).append(1.0 / (g.increment * scale))
            self.push("grp_p", p)
            self.push("grp_q", q)
            self.push("grp_qmul", 1)
            self.push("grp_inc_cost", inc_cost)
            self.push("grp_mulinc", -1)
            self.push("grp_safe", 0)
        return ri

    def finish(self, content_hash: str, tariffs: dict[str, Tariff]) -> RatingPlan:
        arrays: dict[str, np.ndarray] = {
            k: np.asarray(v, dtype=np.int64) for k, v in self.a.items()
        }
        for k in (
            "allow_svc",
            "elig",
            "price",
            "elig_ptr",
            "grp_start",
            "grp_inc",
            "grp_p",
            "grp_q",
            "grp_qmul",
            "grp_inc_cost",
            "grp_mulinc",
            "grp_safe",
            "rate_conn_q",
            "rate_g0",
            "rate_ng",
            "rate_conn",
            "rate_round_method",
            "rate_round_dec",
            "rate_compat",
            "rate_min",
            "rate_max",
            "rate_den",
        ):
            arrays.setdefault(k, np.zeros(0, dtype=np.int64))
        for k in ("grp_inc_inv", "rate_den_inv"):
            arrays[k] = np.asarray(self.f.get(k, []), dtype=np.float64)
        arrays["rate_fast"], arrays["rate_fast_inv"] = _one_step_rows(arrays)
        del arrays["rate_den"]  # kept in the one-step rows only
        trie_set = np.asarray(self.trie_set, dtype=np.int32)
        trie_prefix = np.asarray(self.trie_prefix, dtype=np.int32)
        # one row per node: 10 children, then the node's set and prefix, so a step of the
        # walk touches one cache line. A missing child is the last row, a dead end whose
        # children are itself: the kernel walks a fixed number of steps without branching
        # on falling off the trie.
        dead = len(self.trie)
        child = np.asarray(self.trie, dtype=np.int32).reshape(-1, 10)
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
        n = self.names
        prefix_col = np.full((len(n["prefix"]), 2), -1, np.int32)
        ends = trie_prefix >= 0
        prefix_col[trie_prefix[ends], 0] = trie_set[ends]
        prefix_col[:, 1] = label_codes(n["prefix"])
        arrays["prefix_col"] = prefix_col
        # output labels: versions, sets, bands (per version) and currencies (per tariff)
        # repeat across the plan, the rated columns' dictionaries hold each text once
        arrays["ver_label"] = label_codes(n["version"])
        arrays["set_label"] = label_codes(n["set"])
        arrays["band_label"] = label_codes(n["band"])
        arrays["cur_label"] = label_codes(n["currency"])
        jumps = [_jump_table(arrays, int(root)) for root in arrays["ver_trie_root"]]
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
        arrays["bt_start"] = (
            np.concatenate(self.bt_start) if self.bt_start else np.zeros(0, np.int64)
        )
        arrays["bt_band"] = np.concatenate(self.bt_band) if self.bt_band else np.zeros(0, np.int32)
        arrays["day_ix"] = np.concatenate(self.day_ix) if self.day_ix else np.zeros(0, np.int32)
        arrays["day_range"] = np.array([self.day0, self.ndays], dtype=np.int64)
        arrays["allow_units"] = np.asarray(self.allow_units, dtype=np.int64)
        return RatingPlan(
            arrays=arrays,
            tariff_ids=n["tariff"],
            currencies=n["currency"],
            version_names=n["version"],
            set_names=n["set"],
            prefixes=n["prefix"],
            band_names=n["band"],
            rate_names=n["rate"],
            allowance_ids=n["allow"],
            allowance_units=self.allow_units,
            years=self.years,
            content_hash=content_hash,
            tariffs=tariffs,
        )


def _one_step_rows(a: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per rate, what the kernel's one-step path reads, side by side in one row: the group
    (-1 if the rate needs the segment loop: several groups, a group or connect fee too
    large for the fast sums), increment, largest safe increment count, one increment's
    cost and the connect fee in nano/Q, the rounding divisor, method and scale, minimum
    charge, maximum cost; and the increment's and divisor's inverses (floats)."""
    g = np.asarray(a.get("rate_g0", np.zeros(0)), dtype=np.int64)
    rows = np.zeros((len(g), 10), np.int64)
    inv = np.zeros((len(g), 2), np.float64)
    if len(g) == 0:
        return rows, inv
    one = (a["rate_ng"] == 1) & (a["grp_mulinc"][g] >= 0) & (a["rate_conn_q"] >= 0)
    rows[:, 0] = np.where(one, g, -1)
    rows[:, 1] = a["grp_inc"][g]
    rows[:, 2] = a["grp_safe"][g]
    rows[:, 3] = a["grp_mulinc"][g]
    rows[:, 4] = a["rate_conn_q"]
    rows[:, 5] = a["rate_den"]
    rows[:, 6] = a["rate_round_method"]
    rows[:, 7] = 10 ** (6 - a["rate_round_dec"].astype(np.int64))
    rows[:, 8] = a["rate_min"]
    rows[:, 9] = a["rate_max"]
    inv[:, 0] = a["grp_inc_inv"][g]
    inv[:, 1] = a["rate_den_inv"]
    return rows, inv


def label_codes(names: list[str]) -> np.ndarray:
    """Each name's index among the distinct names in first-seen order (see :func:`labels`)."""
    first: dict[str, int] = {}
    return np.array([first.setdefault(x, len(first)) for x in names], dtype=np.int32)


def labels(names: list[str]) -> list[str]:
    """The distinct names in first-seen order: the dictionary :func:`label_codes` index."""
    return list(dict.fromkeys(names))


def _jump_table(arrays: dict[str, np.ndarray], root: int) -> tuple[np.ndarray, ...]:
    """For every JUMP_DIGITS-digit start: trie node reached (the dead-end row if it fell
    off) and longest prefix matched on the way (-1 = none)."""
    child = arrays["trie_child"]
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


def _content_hash(tariffs: Mapping[str, Tariff], years: tuple[int, int]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{_LAYOUT}|{years}|".encode())
    for tid in sorted(tariffs):
        # repr of frozen dataclasses is deterministic and covers every field
        h.update(repr(tariffs[tid]).replace(tariffs[tid].source, "").encode())
    return h.hexdigest()


_NAME_FIELDS = (
    "tariff_ids",
    "currencies",
    "version_names",
    "set_names",
    "prefixes",
    "band_names",
    "rate_names",
    "allowance_ids",
)


def _save(plan: RatingPlan, path: Path) -> None:
    names = {f: getattr(plan, f) for f in _NAME_FIELDS}
    names["allowance_units"] = plan.allowance_units
    names["years"] = list(plan.years)
    tmp = path.with_name(path.name + ".tmp.npz")
    blob = np.frombuffer(json.dumps(names).encode(), dtype=np.uint8)
    np.savez(tmp, __names__=blob, **plan.arrays)  # type: ignore[arg-type]
    tmp.replace(path)  # atomic: a reader never sees half a cache file


def _load(path: Path, content_hash: str, tariffs: dict[str, Tariff]) -> RatingPlan | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None
    names = json.loads(arrays.pop("__names__").tobytes())
    return RatingPlan(
        arrays=arrays,
        **{f: names[f] for f in _NAME_FIELDS},
        allowance_units=names["allowance_units"],
        years=(names["years"][0], names["years"][1]),
        content_hash=content_hash,
        tariffs=tariffs,
    )


def compile_tariffs(
    tariffs: Mapping[str, Tariff],
    *,
    cache_dir: Path | None = None,
    years: tuple[int, int] = _DEFAULT_YEARS,
) -> RatingPlan:
    """Compile ``tariffs`` (keyed by id) into a :class:`RatingPlan`, using the disk cache.

    ``years`` bounds the precomputed band timelines; usage outside is rejected as
    ``time_out_of_range``.
    """
    if not tariffs:
        raise TariffError("no tariffs to compile")
    for tid, t in tariffs.items():
        if tid != t.id:
            raise TariffError(f"tariff keyed {tid!r} has id {t.id!r} (file {t.source})")
    content_hash = _content_hash(tariffs, years)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"plan-{content_hash}.npz"
        if path.exists():
            plan = _load(path, content_hash, dict(tariffs))
            if plan is not None:
                return plan
    builder = _Builder(years)
    for tid in sorted(tariffs):
        builder.tariff(tariffs[tid])
    plan = builder.finish(content_hash, dict(tariffs))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(plan, path)
    return plan

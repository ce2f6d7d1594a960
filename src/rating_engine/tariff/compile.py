"""Compile tariffs once into the flat arrays of a RatingPlan, which the kernels read.

The layout of the arrays is described in :mod:`rating_engine.tariff.plan`; the destination
look-up tables are built by :mod:`rating_engine.tariff.destinations` and the band timelines
by :mod:`rating_engine.tariff.band_timeline`. This module walks tariffs and versions, and
turns rates into exact integer prices: each group's price as a reduced fraction, a common
denominator per (version, service), and the packed one-step rows the kernel reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rating_engine.errors import TariffError
from rating_engine.tariff.band_timeline import band_timeline, day_index, day_range
from rating_engine.tariff.destinations import DigitTrie, destination_tables
from rating_engine.tariff.model import (
    ROUNDING_METHODS,
    SERVICES,
    Band,
    PricingRule,
    Rate,
    Tariff,
    TariffVersion,
)
from rating_engine.tariff.plan import (
    SVC_VOICE,
    RatingPlan,
    label_codes,
    load_plan,
    plan_hash,
    save_plan,
)

__all__ = ["NANO", "choose_rule", "compile_tariffs", "prefix_owners"]

NANO = 1_000_000_000
_DEFAULT_YEARS = (2015, 2040)
_MAX_Q = 2**31
_I64MAX = 2**63 - 1
_MAX_PQ = 2**62


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
        self.trie = DigitTrie()
        self.timelines: dict[
            tuple[object, ...], tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, ...]]]
        ] = {}
        self.bt_start: list[np.ndarray] = []
        self.bt_band: list[np.ndarray] = []
        self.bt_newday: list[np.ndarray] = []
        self.day_ix: list[np.ndarray] = []
        self.bt_len = 0
        self.dix_len = 0
        self.names: dict[str, list[str]] = {
            k: []
            for k in ("tariff", "currency", "version", "set", "prefix", "band", "rate", "allow")
        }
        self.allow_units: list[int] = []
        self.txt = bytearray()  # the text prefixes' bytes
        self.day0, self.ndays = day_range(years)

    def push(self, key: str, *values: int) -> None:
        self.a.setdefault(key, []).extend(values)

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
        root = self.trie.node()
        self.push("ver_trie_root", root)
        self.push("ver_set_first", set_first)
        self.push("ver_n_sets", n_sets)
        depth = 0  # the longest prefix: the kernel walks at most this deep
        self.push("ver_txt_first", len(self.a.get("txt_prefix", [])))
        owner = prefix_owners(v) if t.band_selection == "per-destination" else None
        for si, ds in enumerate(v.destinations):
            self.names["set"].append(ds.name)
            for prefix in ds.prefixes:
                if owner is not None and owner.get(prefix) != ds.name:
                    continue  # invisible here (see prefix_owners)
                pi = len(self.names["prefix"])
                self.names["prefix"].append(prefix)
                if prefix[0].isdigit():
                    self.trie.add(root, prefix, si, pi)
                    depth = max(depth, len(prefix))
                else:  # text prefixes: a short list, matched byte by byte
                    self.push("txt_prefix", pi)
                    self.push("txt_set", si)
                    self.push("txt_off", len(self.txt))
                    self.txt.extend(prefix.encode("ascii"))
        self.push("ver_depth", depth)
        self.push("ver_txt_n", len(self.a.get("txt_prefix", [])) - self.a["ver_txt_first"][-1])
        # bands: the timeline maps each instant to a class - the winning band ("global"),
        # or the set of bands in force ("per-destination": each destination set then picks
        # among its own rules' bands); shared between versions with identical bands, zone
        # and selection
        band_first = len(self.names["band"])
        self.names["band"].extend(b.name for b in v.bands)
        # with CGRateS increment rounding a call's timespans also end at local midnight
        split_days = any(r.increment_rounding is not None for r in v.rates)
        key = (v.bands, t.timezone, t.band_selection, split_days)
        if key not in self.timelines:
            self.timelines[key] = _timeline(
                v.bands, t.timezone, self.years, t.band_selection, split_days
            )
        starts, ids, newday, classes = self.timelines[key]
        n_classes = len(classes)
        self.push("ver_class_n", n_classes)
        dix = day_index(starts, self.day0, self.ndays)
        self.push("ver_bt_first", self.bt_len)
        self.push("ver_bt_len", len(starts))
        self.push("ver_dix_first", self.dix_len)
        self.bt_start.append(starts)
        self.bt_band.append(ids)
        self.bt_newday.append(newday)
        self.day_ix.append(dix)
        self.bt_len += len(starts)
        self.dix_len += len(dix)
        # rates per service, compiled only where a rule uses them
        rate_ix: dict[tuple[int, str], int] = {}
        rates = {r.name: r for r in v.rates}
        n_cols = n_sets + 1  # the last column is "any / no destination"
        self.push("ver_price_first", len(self.a.get("price", [])) // 2)
        # per (service, column, class): the rate and the output label of the band it prices
        price = np.full((3, n_cols, n_classes, 2), -1, dtype=np.int64)
        band_codes = label_codes(self.names["band"])
        for svc_i, svc in enumerate(SERVICES):
            rules = [r for r in v.pricing if r.service == svc]
            for col in range(n_cols):
                sname = v.destinations[col].name if col < n_sets else None
                for ci, active in enumerate(classes):
                    chosen = choose_rule(rules, sname, active, v.bands, t.band_selection)
                    if chosen is None:
                        continue
                    rule, bi = chosen
                    rk = (svc_i, rule.rate)
                    if rk not in rate_ix:
                        rate_ix[rk] = self.rate(rates[rule.rate], svc_i, where)
                    price[svc_i, col, ci] = (rate_ix[rk], band_codes[band_first + bi])
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
                        # fast path: the exact cost of one increment in nano/Q units; none
                        # with increment rounding, whose increment cost depends on how many
                        # increments its timespan has
                        mul = self.a["grp_p"][g] * qmul * self.a["grp_inc"][g]
                        ok = mul < _MAX_PQ and not self.a["rate_compat"][ri]
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
        inc = r.increment_rounding
        # CGRateS compat: costs on a grid of `step` nano-units (N decimals); the connect
        # fee is on it too (CGRateS sums it with the increments and rounds that)
        step = 10 ** (9 - inc.decimals) if inc is not None else 0
        conn = _nano(r.connect_fee)
        if inc is not None:
            conn = _round_int(conn, step, inc.method) * step
        self.push("rate_conn", conn)
        self.push("rate_inc_step", step)
        self.push("rate_inc_rm", ROUNDING_METHODS.index(inc.method) if inc is not None else 0)
        self.push("rate_conn_q", -1)
        self.push("rate_den", 0)
        self.f.setdefault("rate_den_inv", []).append(0.0)
        self.push("rate_round_method", ROUNDING_METHODS.index(r.rounding.method))
        self.push("rate_round_dec", r.rounding.decimals)
        self.push("rate_compat", 0 if r.increment_rounding is None else 1)
        self.push("rate_zero_free", 0 if r.charge_zero_usage else 1)
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
            # CGRateS compat: one increment's exact cost as the reduced fraction A/B of grid
            # steps; the kernel rounds a timespan of n increments' n*A/B to the grid, and
            # that over n again
            inc_a, inc_b = 0, 1
            if inc is not None:
                inc_a, inc_b = _frac(_nano(g.rate) * g.increment, g.unit * step)
                if inc_a >= _MAX_PQ or inc_b >= _MAX_PQ or inc_a * step // inc_b >= _MAX_PQ:
                    raise TariffError(
                        f"rate {g.rate} per {g.unit} in increments of {g.increment} is too "
                        f"fine to round per increment ({where}, field rates.{r.name}.groups[{gi}])"
                    )
            self.push("grp_start", g.start * scale)
            self.push("grp_inc", g.increment * scale)
            self.f.setdefault("grp_inc_inv", []).append(1.0 / (g.increment * scale))
            self.push("grp_p", p)
            self.push("grp_q", q)
            self.push("grp_qmul", 1)
            self.push("grp_inc_cost", inc_a)
            self.push("grp_inc_den", inc_b)
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
            "elig_ptr",
            "grp_start",
            "grp_inc",
            "grp_p",
            "grp_q",
            "grp_qmul",
            "grp_inc_cost",
            "grp_inc_den",
            "grp_mulinc",
            "grp_safe",
            "rate_conn_q",
            "rate_g0",
            "rate_ng",
            "rate_conn",
            "rate_round_method",
            "rate_round_dec",
            "rate_compat",
            "rate_zero_free",
            "rate_inc_step",
            "rate_inc_rm",
            "rate_min",
            "rate_max",
            "rate_den",
        ):
            arrays.setdefault(k, np.zeros(0, dtype=np.int64))
        arrays["price"] = np.asarray(self.a.get("price", []), dtype=np.int64)
        for k in ("grp_inc_inv", "rate_den_inv"):
            arrays[k] = np.asarray(self.f.get(k, []), dtype=np.float64)
        arrays["rate_fast"], arrays["rate_fast_inv"] = _one_step_rows(arrays)
        del arrays["rate_den"]  # kept in the one-step rows only
        n = self.names
        arrays.update(
            destination_tables(self.trie, arrays["ver_trie_root"], label_codes(n["prefix"]))
        )
        # text prefixes: where each starts (and the end of the last), their set and prefix
        for k in ("txt_prefix", "txt_set", "txt_off"):
            arrays.setdefault(k, np.zeros(0, dtype=np.int64))
        arrays["txt_off"] = np.append(arrays["txt_off"], len(self.txt))
        arrays["txt_data"] = np.frombuffer(bytes(self.txt) or b"\0", dtype=np.uint8).copy()
        arrays["prefix_col"][arrays["txt_prefix"], 0] = arrays.pop("txt_set")
        # output labels: versions, sets, bands (per version) and currencies (per tariff)
        # repeat across the plan, the rated columns' dictionaries hold each text once
        arrays["ver_label"] = label_codes(n["version"])
        arrays["set_label"] = label_codes(n["set"])
        arrays["cur_label"] = label_codes(n["currency"])
        arrays["bt_start"] = (
            np.concatenate(self.bt_start) if self.bt_start else np.zeros(0, np.int64)
        )
        arrays["bt_band"] = np.concatenate(self.bt_band) if self.bt_band else np.zeros(0, np.int32)
        arrays["bt_newday"] = (
            np.concatenate(self.bt_newday) if self.bt_newday else np.zeros(0, np.uint8)
        )
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


def _timeline(
    bands: tuple[Band, ...],
    timezone: str,
    years: tuple[int, int],
    selection: str,
    split_days: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, ...]]]:
    """The version's band timeline and its classes: each class is the tuple of bands in
    force (indices in priority order) that the timeline's ids stand for."""
    if selection == "global":  # the class is the winning band
        starts, ids, newday = band_timeline(bands, timezone, years, split_days=split_days)
        return starts, ids, newday, [(i,) for i in range(len(bands))]
    classes: dict[tuple[int, ...], int] = {}

    def classify(active: tuple[int, ...]) -> int:
        return classes.setdefault(active, len(classes)) if active else -1

    starts, ids, newday = band_timeline(bands, timezone, years, classify, split_days)
    return starts, ids, newday, list(classes)


def prefix_owners(v: TariffVersion) -> dict[str, str]:
    """With per-destination band selection, the set each prefix matches, as CGRateS's
    destinations do: a set without pricing rules is invisible (shorter prefixes match its
    numbers), and a prefix in several sets goes to the heaviest - the highest weight of a
    band its rules name (a rule for any band weighs least), then the name first in order."""
    weights = {b.name: b.weight for b in v.bands}
    heaviest: dict[str, float] = {}
    for r in v.pricing:
        if r.destinations is not None:
            w = float(weights[r.band]) if r.band is not None else float("-inf")
            heaviest[r.destinations] = max(heaviest.get(r.destinations, w), w)
    owner: dict[str, str] = {}
    for ds in sorted(v.destinations, key=lambda d: d.name):
        if ds.name not in heaviest:
            continue
        for prefix in ds.prefixes:
            other = owner.get(prefix)
            if other is None or heaviest[ds.name] > heaviest[other]:
                owner[prefix] = ds.name
    return owner


def choose_rule(
    rules: list[PricingRule],
    set_name: str | None,
    active: tuple[int, ...],
    bands: tuple[Band, ...],
    selection: str,
) -> tuple[PricingRule, int] | None:
    """The rule that prices a record of destination set ``set_name`` (None: no set
    matched) while the bands ``active`` (indices in priority order, non-empty) are in
    force, and the band it is reported under; None if no rule applies.

    "global": the winning band is ``active[0]``; the most specific rule for (set, band)
    wins: set + band, set + any band, any set + band, any + any. "per-destination": the
    set's own rules if it has any for the service, else the any-set rules; among them the
    rule of the highest-priority band in force, else the rule for any band.
    """
    if selection == "global":
        best: tuple[int, PricingRule] | None = None
        name = bands[active[0]].name
        for r in rules:
            if r.destinations not in (None, set_name) or r.band not in (None, name):
                continue
            spec = (r.destinations is not None) * 2 + (r.band is not None)
            if best is None or spec > best[0]:
                best = (spec, r)
        return None if best is None else (best[1], active[0])
    own = [r for r in rules if set_name is not None and r.destinations == set_name]
    pool = own or [r for r in rules if r.destinations is None]
    by_band = {r.band: r for r in pool}
    for bi in active:
        if bands[bi].name in by_band:
            return by_band[bands[bi].name], bi
    return (by_band[None], active[0]) if None in by_band else None


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
    content_hash = plan_hash(tariffs, years)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"plan-{content_hash}.npz"
        if path.exists():
            plan = load_plan(path, content_hash, dict(tariffs))
            if plan is not None:
                return plan
    builder = _Builder(years)
    for tid in sorted(tariffs):
        builder.tariff(tariffs[tid])
    plan = builder.finish(content_hash, dict(tariffs))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_plan(plan, path)
    return plan

"""A CGRateS subject's rating, all of it, as one tariff: its categories, fallbacks and
activations.

CGRateS rates a call of ``tenant:category:subject`` by the RatingProfile of that key (the
``*any`` subject's when the subject has none), with the RatingPlan activated last before
each instant of the call: a later activation inside the call splits it there. Where that
plan has no rate for the destination (no prefix of it, no ``*any``), the activation's
FallbackSubjects are tried in order, each a RatingProfile of the same tenant and category,
to a depth of three (``CallDescriptor.getRatingPlansForPrefix``).

Our subscriptions bind a subscriber to one tariff, so :func:`subscriber_document` folds all
of that into one tariff per subject, computed when importing: the time is cut at every
activation the subject can reach; in each period every prefix of the plans involved is
resolved as CGRateS resolves it, prefixes resolved alike (in every period and service) form
one destination set, and each set is priced in each period by the rules of the plan it
resolved to, whose bands are copies in force only during that period (band
``active_from``/``active_until``). The kernels already walk band timelines within a call, so
a call crossing an activation is split there, as CGRateS splits it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rating_engine.cgrates.convert import NotExpressible
from rating_engine.cgrates.tariff_plan import RatingProfile, TariffPlan
from rating_engine.cgrates.tp_values import ANY

__all__ = ["MAX_DEPTH", "Resolved", "profile_index", "resolve_plan", "subscriber_document"]

#: CGRateS's RECURSION_MAX_DEPTH: a subject, its fallbacks and theirs.
MAX_DEPTH = 3

Index = Mapping[tuple[str, str, str], list[RatingProfile]]


@dataclass(frozen=True)
class Resolved:
    """The RatingProfile activation that prices a destination at an instant."""

    subject: str
    activation: datetime
    plan: str


def profile_index(tp: TariffPlan) -> dict[tuple[str, str, str], list[RatingProfile]]:
    """RatingProfile rows by (tenant, category, subject), in activation order."""
    out: dict[tuple[str, str, str], list[RatingProfile]] = {}
    for p in tp.profiles:
        out.setdefault((p.tenant, p.category, p.subject), []).append(p)
    for rows in out.values():
        rows.sort(key=lambda p: p.activation)
    return out


def _lookup(
    index: Index, key: tuple[str, str, str], t: datetime, matches: Callable[[str], bool],
    depth: int,
) -> tuple[Resolved | None, bool, bool]:  # fmt: skip
    """(what prices the destination at ``t``, the profile is missing, a rating info without
    rates was left behind) for one RatingProfile key, as CGRateS looks it up."""
    rows = index.get(key)
    if depth > MAX_DEPTH or not rows:
        return None, True, False
    active = [r for r in rows if r.activation <= t]
    if not active:
        return None, False, False  # no activation yet: nothing found, no error
    row = active[-1]
    if matches(row.rating_plan):
        return Resolved(key[2], row.activation, row.rating_plan), False, True
    if not row.fallback_subjects:
        return None, False, False
    # one temporary descriptor serves every fallback key: once a key leaves a rating
    # info without rates in it, later keys cannot add theirs (CGRateS's addRatingInfos)
    for subject in row.fallback_subjects:
        found, missing, left = _lookup(index, (key[0], key[1], subject), t, matches, depth + 1)
        if found is not None:
            return found, False, True
        if not missing and left:
            break
    return None, False, True


def resolve_plan(
    index: Index, tenant: str, category: str, subject: str, t: datetime,
    matches: Callable[[str], bool],
) -> Resolved | None:  # fmt: skip
    """The profile activation whose RatingPlan prices a destination at instant ``t`` for
    ``tenant:category:subject`` (``matches(plan)``: the plan has a rate for it), or None."""
    found, missing, _ = _lookup(index, (tenant, category, subject), t, matches, 1)
    if missing:  # the subject has no RatingProfile: the *any subject's (LoadRatingPlans)
        found, _, _ = _lookup(index, (tenant, category, ANY), t, matches, 1)
    return found


def _reachable(index: Index, tenant: str, category: str, subject: str) -> set[str]:
    seen: set[str] = set()
    todo = [subject, ANY]
    while todo:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        for row in index.get((tenant, category, s), []):
            todo.extend(row.fallback_subjects)
    return seen


class _PlanView:
    """One RatingPlan's tariff document for one service, with its prefix look-up."""

    def __init__(self, plan: str, doc: Mapping[str, Any]) -> None:
        self.plan = plan
        self.doc = doc
        self.owner: dict[str, str] = {p: s for s, ps in doc["destinations"].items() for p in ps}
        self.has_any = any(r["destinations"] == "*" for r in doc["pricing"])

    def match(self, prefix: str | None) -> str | None:
        """The plan's set for a number starting with ``prefix`` (None: no prefix of any
        plan), ``*`` for its any-destination rates, None for no rate."""
        if prefix is not None:
            for n in range(len(prefix), 0, -1):
                if prefix[:n] in self.owner:
                    return self.owner[prefix[:n]]
        return "*" if self.has_any else None


def _matcher(
    view: Callable[[str, str], _PlanView], service: str, prefix: str | None
) -> Callable[[str], bool]:
    return lambda plan: view(plan, service).match(prefix) is not None


def subscriber_document(
    tp: TariffPlan,
    tenant: str,
    subject: str,
    categories: Mapping[str, str],
    plan_doc: Callable[[str, str], Mapping[str, Any]],
    head: Mapping[str, Any],
    index: Index | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The tariff of ``tenant:subject``: for each category (category -> service, one
    category a service) its RatingPlans as CGRateS resolves them. ``plan_doc(plan,
    service)`` is a RatingPlan's tariff document for one service; ``head`` the tariff
    table to start from; ``index``: :func:`profile_index` of ``tp``, made once for many
    subjects. Returns the document and warnings."""
    index = profile_index(tp) if index is None else index
    warnings: list[str] = []
    boundaries: set[datetime] = set()
    for category in categories:
        for s in _reachable(index, tenant, category, subject):
            boundaries.update(r.activation for r in index.get((tenant, category, s), []))
    if not boundaries:
        raise NotExpressible(f"subject {subject} of tenant {tenant} has no RatingProfile")
    cuts = sorted(boundaries)
    # the periods between activations; each is resolved at its first instant
    starts = [cuts[0] - timedelta(seconds=1), *cuts]
    views: dict[tuple[str, str], _PlanView] = {}

    def view(plan: str, service: str) -> _PlanView:
        if (plan, service) not in views:
            views[plan, service] = _PlanView(plan, plan_doc(plan, service))
        return views[plan, service]

    # every prefix of every plan the subject can reach, then each resolved per period
    plans = {
        (r.rating_plan, service)
        for category, service in categories.items()
        for s in _reachable(index, tenant, category, subject)
        for r in index.get((tenant, category, s), [])
    }
    prefixes: set[str | None] = {None}  # None: a number no prefix matches
    for plan, service in sorted(plans):
        prefixes.update(view(plan, service).owner)
    # prefix -> per (service, period): (resolved activation, the plan's set) or None
    keys: dict[str | None, tuple[tuple[Resolved, str] | None, ...]] = {}
    for prefix in prefixes:
        key: list[tuple[Resolved, str] | None] = []
        for category, service in categories.items():
            for t in starts:
                got = resolve_plan(
                    index, tenant, category, subject, t, _matcher(view, service, prefix)
                )
                match = None if got is None else view(got.plan, service).match(prefix)
                key.append(None if got is None or match is None else (got, match))
        keys[prefix] = tuple(key)
    return _document(keys, list(categories.items()), starts, cuts, view, head, warnings)


def _document(
    keys: Mapping[str | None, tuple[tuple[Resolved, str] | None, ...]],
    services: list[tuple[str, str]],
    starts: list[datetime],
    cuts: list[datetime],
    view: Callable[[str, str], _PlanView],
    head: Mapping[str, Any],
    warnings: list[str],
) -> tuple[dict[str, Any], list[str]]:
    n_periods = len(starts)
    ends: list[datetime | None] = [*cuts, None]
    destinations: dict[str, list[str]] = {}
    set_of: dict[tuple[tuple[Resolved, str] | None, ...], str] = {}
    for prefix in sorted(p for p in keys if p is not None):
        key = keys[prefix]
        if all(k is None for k in key):
            continue  # no rate in any period: left out, a shorter prefix may match
        if key not in set_of:
            parts = list(dict.fromkeys(f"{k[0].plan}.{k[1]}" for k in key if k is not None))
            name = "__".join(p.replace("*", "any") for p in parts)
            if len(name) > 60 or name in destinations:
                name = f"set{len(set_of) + 1}"
            set_of[key] = name
            destinations[name] = []
        destinations[set_of[key]].append(prefix)
    bands: dict[str, dict[str, Any]] = {}
    rates: dict[str, dict[str, Any]] = {}
    pricing: list[dict[str, Any]] = []
    multi = len(services) > 1
    columns = [(name, key) for key, name in set_of.items()] + [("*", keys[None])]
    for si, (_category, service) in enumerate(services):
        for dest, key in columns:
            row = key[si * n_periods : (si + 1) * n_periods]
            k = 0
            while k < n_periods:
                if row[k] is None:
                    k += 1
                    continue
                # a run of periods priced by the same activation: one band window
                first = row[k]
                assert first is not None
                end = k + 1
                while end < n_periods and row[end] is not None and row[end] == first:
                    end += 1
                got, match = first
                pv = view(got.plan, service)
                window: dict[str, datetime] = {}
                if k > 0:
                    window["active_from"] = starts[k]
                until = ends[end - 1]
                if until is not None:
                    window["active_until"] = until
                suffix = f"@{k}-{end}" if window else ""
                for rule in pv.doc["pricing"]:
                    if rule["destinations"] != match:
                        continue
                    band = f"{got.plan}.{rule['band']}{suffix}"
                    bands.setdefault(band, {**pv.doc["bands"][rule["band"]], **window})
                    rate = f"{got.plan}.{rule['rate']}" + (f".{service}" if multi else "")
                    rates.setdefault(rate, pv.doc["rates"][rule["rate"]])
                    pricing.append(
                        {"service": service, "destinations": dest, "band": band, "rate": rate}
                    )
                k = end
    if not pricing:
        raise NotExpressible("no RatingPlan prices anything for it")
    tariff = {**head, "active_from": cuts[0]}
    doc = {"tariff": tariff, "destinations": destinations, "bands": bands, "rates": rates,
           "pricing": pricing}  # fmt: skip
    return doc, warnings

"""``import_cgrates``: a CGRateS TariffPlan folder as tariff files and bindings.

One tariff per RatingPlan (tariff id = the RatingPlan's id), written as TOML; one per
tenant and subject with all its RatingProfiles (``<tenant>:<subject>``, see
:mod:`.subscribers`); the RatingProfiles (tenant, category, subject, activation,
RatingPlan, fallback subjects, subscriber tariff) as ``bindings.csv``; and a report of
everything that was not imported and why: files of other CGRateS subsystems (Actions,
Thresholds, ...), RatingPlans the tariff model cannot express yet, profiles of those
plans, unused definitions. Each tariff is checked by loading and compiling it before it
is written.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from collectors.safe_csv import csv_bytes
from rating_engine.cgrates.convert import (
    DEFAULT_CATEGORY_SERVICES,
    ID_PATTERN,
    ConvertOptions,
    NotExpressible,
    plan_document,
    tariff_head,
)
from rating_engine.cgrates.subscribers import profile_index, subscriber_document
from rating_engine.cgrates.tariff_plan import TariffPlan, read_tariff_plan
from rating_engine.cgrates.toml_text import tariff_toml
from rating_engine.cgrates.tp_values import ANY
from rating_engine.errors import TariffError
from rating_engine.tariff.compile import compile_tariffs
from rating_engine.tariff.load import parse_tariff
from rating_engine.tariff.model import SERVICES

__all__ = ["BINDINGS_FILE", "ImportReport", "ImportedTariff", "Skipped", "import_cgrates"]

#: The RatingProfiles, written beside the tariffs.
BINDINGS_FILE = "bindings.csv"
REPORT_FILE = "import_report.json"
#: a tariff is checked by compiling it: nothing but the band timelines' extent depends on
#: the years, so one year is checked (26, the default, took most of an import's time)
_CHECK_YEARS = (2026, 2026)
_BINDING_COLUMNS = ("tenant", "category", "subject", "activation_time", "tariff_id",
                    "services", "fallback_subjects", "direction",
                    "subscriber_tariff_id")  # fmt: skip


@dataclass(frozen=True)
class ImportedTariff:
    """A RatingPlan written as a tariff: its file, the services it prices, its warnings."""

    id: str
    file: str
    services: tuple[str, ...]
    rules: int
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Skipped:
    """Something of the TariffPlan that was not imported, and why."""

    what: str
    reason: str


@dataclass
class ImportReport:
    """What ``import_cgrates`` wrote and what it left out."""

    source: str
    output: str
    tariffs: list[ImportedTariff] = field(default_factory=list)
    #: one tariff per (tenant, subject): every category, fallback and activation of it
    subscriber_tariffs: list[ImportedTariff] = field(default_factory=list)
    bindings_file: str = ""
    bindings: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """Plain data (for JSON)."""
        return asdict(self)


def _services(tp: TariffPlan, plan_id: str, categories: Mapping[str, str]) -> list[str]:
    found = {categories.get(p.category, "voice") for p in tp.profiles if p.rating_plan == plan_id}
    return [s for s in SERVICES if s in found] or ["voice"]


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a file


def import_cgrates(
    tp_dir: Path | str,
    output_dir: Path | str,
    *,
    currency: str = "EUR",
    timezone: str = "UTC",
    rounding_decimals: int | None = 5,
    category_services: Mapping[str, str] | None = None,
    separator: str = ",",
    debit: bool = False,
) -> ImportReport:
    """Import the CGRateS TariffPlan CSV folder ``tp_dir`` into ``output_dir``.

    ``rounding_decimals`` is CGRateS's ``general.rounding_decimals`` (each timespan's
    increments are rounded to it, as CGRateS does); None computes exactly instead.
    ``currency`` and ``timezone`` (of Timings, and of activation times without an offset)
    are CGRateS configuration, not part of a TariffPlan. ``category_services`` maps a
    RatingProfile's category to the service its plan prices (default: call -> voice,
    sms -> sms, data -> data; others -> voice). ``debit`` prices what CGRateS debits an
    account (the increments' sum) instead of the cost its ``GetCost`` reports (that sum
    rounded with the rate's method and decimals). Raises :class:`TariffError` for a
    TariffPlan CGRateS itself would refuse (naming file, line and field).
    """
    source, out = Path(tp_dir), Path(output_dir)
    categories = dict(DEFAULT_CATEGORY_SERVICES if category_services is None else category_services)
    options = ConvertOptions(currency, timezone, rounding_decimals, categories, debit)
    tp = read_tariff_plan(source, timezone, separator)
    out.mkdir(parents=True, exist_ok=True)
    report = ImportReport(str(source), str(out))
    report.skipped += [Skipped(name, why) for name, why in sorted(tp.skipped_files.items())]
    report.notes += tp.notes
    report.notes.append(
        f"currency {currency} and time zone {timezone} are assumed (a CGRateS TariffPlan "
        "carries neither)"
    )
    if debit:
        report.notes.append(
            "costs are what CGRateS debits an account: the increments' sum, the total not "
            "rounded with the rate's method"
        )
    report.notes.append(
        "costs round each timespan's increments to "
        + (
            f"{rounding_decimals} decimals as CGRateS does"
            if rounding_decimals is not None
            else "nothing: exact arithmetic"
        )
    )
    imported: set[str] = set()
    for plan_id in sorted(tp.rating_plans):
        services = _services(tp, plan_id, categories)
        try:
            doc, warnings = plan_document(tp, plan_id, services, options)
            path = out / f"{plan_id}.toml"
            comments = [
                f"CGRateS RatingPlan {plan_id}, imported from {source} by "
                "`rating-engine tariffs import-cgrates`.",
                f"Currency {currency} and time zone {timezone} as given to the importer.",
                *(f"warning: {w}" for w in warnings),
            ]
            text = tariff_toml(doc, comments)
            tariff = parse_tariff(tomllib.loads(text), str(path))
            compile_tariffs({tariff.id: tariff}, years=_CHECK_YEARS)
        except (NotExpressible, TariffError) as exc:
            report.skipped.append(Skipped(f"RatingPlan {plan_id}", f"not imported: {exc}"))
            continue
        _write(path, text)
        imported.add(plan_id)
        report.tariffs.append(
            ImportedTariff(
                plan_id, str(path), tuple(services), len(doc["pricing"]), tuple(warnings)
            )
        )
    subscriber_ids = _subscriber_tariffs(tp, imported, categories, options, out, report)
    _bindings(tp, imported, categories, out, report, subscriber_ids)
    _unused(tp, report)
    _write(out / REPORT_FILE, json.dumps(report.as_dict(), indent=2) + "\n")
    return report


def _subscriber_tariffs(
    tp: TariffPlan, imported: set[str], categories: Mapping[str, str],
    options: ConvertOptions, out: Path, report: ImportReport,
) -> dict[tuple[str, str], str]:  # fmt: skip
    """One tariff per (tenant, subject) (see :mod:`.subscribers`); their ids."""

    docs: dict[tuple[str, str], dict[str, Any]] = {}  # shared by every subject

    def plan_doc(plan: str, service: str) -> dict[str, Any]:
        if plan not in imported:
            raise NotExpressible(f"it reaches RatingPlan {plan}, which was not imported")
        if (plan, service) not in docs:
            docs[plan, service] = plan_document(tp, plan, [service], options)[0]
        return docs[plan, service]

    ids: dict[tuple[str, str], str] = {}
    taken = set(tp.rating_plans)
    index = profile_index(tp)
    for tenant in sorted({p.tenant for p in tp.profiles}):
        # a tariff prices a service once: the first category (in name order) of each
        by_service: dict[str, str] = {}
        for category in sorted({p.category for p in tp.profiles if p.tenant == tenant}):
            service = categories.get(category, "voice")
            if service in by_service:
                report.notes.append(
                    f"tenant {tenant}: categories {by_service[service]} and {category} both "
                    f"rate {service}; subscriber tariffs follow {by_service[service]}, bind "
                    f"{category} by its RatingPlans' tariffs"
                )
                continue
            by_service[service] = category
        cats = {c: s for s, c in by_service.items()}
        for subject in sorted({p.subject for p in tp.profiles if p.tenant == tenant}):
            tid = f"{tenant}:{'ANY' if subject == ANY else subject}"
            what = f"subscriber tariff {tid} (tenant {tenant}, subject {subject})"
            try:
                if not ID_PATTERN.match(tid) or tid in taken:
                    raise NotExpressible(f"{tid!r} is no free tariff id")
                head = tariff_head(tid, f"CGRateS subject {subject} of tenant {tenant}", options)
                doc, warnings = subscriber_document(
                    tp, tenant, subject, cats, plan_doc, head, index
                )
                path = out / f"{tid}.toml"
                text = tariff_toml(doc, [
                    f"CGRateS subject {subject} of tenant {tenant}: its RatingProfiles "
                    "(categories, fallback subjects, activations) in one tariff, imported by "
                    "`rating-engine tariffs import-cgrates`.",
                    *(f"warning: {w}" for w in warnings),
                ])  # fmt: skip
                tariff = parse_tariff(tomllib.loads(text), str(path))
                compile_tariffs({tariff.id: tariff}, years=_CHECK_YEARS)
            except (NotExpressible, TariffError) as exc:
                report.skipped.append(Skipped(what, f"not written: {exc}"))
                continue
            _write(path, text)
            taken.add(tid)
            ids[tenant, subject] = tid
            services = tuple(s for s in SERVICES if s in {r["service"] for r in doc["pricing"]})
            report.subscriber_tariffs.append(
                ImportedTariff(tid, str(path), services, len(doc["pricing"]), tuple(warnings))
            )
    return ids


def _bindings(
    tp: TariffPlan, imported: set[str], categories: Mapping[str, str], out: Path,
    report: ImportReport, subscriber_ids: Mapping[tuple[str, str], str],
) -> None:  # fmt: skip
    rows: list[list[str]] = [list(_BINDING_COLUMNS)]
    unknown: set[str] = set()
    fallbacks = 0
    for p in tp.profiles:
        if p.rating_plan not in imported:
            report.skipped.append(
                Skipped(
                    f"RatingProfile {p.tenant}:{p.category}:{p.subject} ({p.where})",
                    f"its RatingPlan {p.rating_plan} was not imported",
                )
            )
            continue
        if p.category not in categories:
            unknown.add(p.category)
        fallbacks += bool(p.fallback_subjects)
        rows.append([p.tenant, p.category, p.subject,
                         p.activation.isoformat().replace("+00:00", "Z"), p.rating_plan,
                         categories.get(p.category, "voice"), ";".join(p.fallback_subjects),
                         p.direction,
                         subscriber_ids.get((p.tenant, p.subject), "")])  # fmt: skip
        report.bindings += 1
    path = out / BINDINGS_FILE
    _write(path, csv_bytes(rows).decode())  # names from the plan: formula cells defused
    report.bindings_file = str(path)
    if unknown:
        report.notes.append(
            f"categories {', '.join(sorted(unknown))} are rated as voice (map them with "
            "--category NAME=SERVICE)"
        )
    if fallbacks:
        report.notes.append(
            f"{fallbacks} RatingProfiles name fallback subjects: followed by the subscriber "
            f"tariffs ({BINDINGS_FILE}, column subscriber_tariff_id)"
        )


def _unused(tp: TariffPlan, report: ImportReport) -> None:
    """Definitions no RatingPlan reaches (CGRateS loads them; they price nothing)."""
    used_drs = {b.destination_rates for plan in tp.rating_plans.values() for b in plan}
    used_timings = {b.timing for plan in tp.rating_plans.values() for b in plan} | {ANY}
    used_rates = {dr.rates for d in used_drs for dr in tp.destination_rates[d]}
    used_dests = {dr.destination for d in used_drs for dr in tp.destination_rates[d]}
    for kind, defined, used in (
        ("Destination", tp.destinations, used_dests),
        ("Timing", tp.timings, used_timings),
        ("Rates", tp.rates, used_rates),
        ("DestinationRates", tp.destination_rates, used_drs),
    ):
        for name in sorted(set(defined) - used):
            report.skipped.append(Skipped(f"{kind} {name}", "used by no RatingPlan"))

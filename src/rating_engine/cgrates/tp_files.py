"""Find and read the CSV files of a CGRateS TariffPlan folder, as CGRateS reads them.

CGRateS reads each file by column position: lines starting with ``#`` are comments (the
first one usually names the columns), empty lines are skipped, every record must have the
file's number of fields. The columns changed between versions (RatingProfiles lost
``Direction``, DestinationRates gained ``MaxCost``), and so did header names (``Tag`` /
``Id`` / ``ID``, ``RatingPlanTag`` / ``RatingPlanId``); the layout of a file is recognised
from its header names, else from its number of columns.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from rating_engine.cgrates.tp_values import TpField
from rating_engine.errors import TariffError

__all__ = ["RATING_FILES", "SKIPPED_FILES", "TpRow", "find_rating_files", "read_rows"]

#: The files that make tariffs: kind -> names CGRateS has used for it.
RATING_FILES = {
    "destinations": ("Destinations.csv",),
    "timings": ("Timings.csv",),
    "rates": ("Rates.csv",),
    "destination_rates": ("DestinationRates.csv",),
    "rating_plans": ("RatingPlans.csv", "DestinationRateTimings.csv"),
    "rating_profiles": ("RatingProfiles.csv",),
}

#: Other TariffPlan files: read by other CGRateS subsystems, not by rating; reported.
SKIPPED_FILES = {
    "AccountActions.csv": "accounts and their action plans (balances are not tariffs)",
    "Accounts.csv": "accounts (balances are not tariffs)",
    "AccountProfiles.csv": "accounts (balances are not tariffs)",
    "ActionPlans.csv": "scheduled actions (top-ups, resets)",
    "ActionProfiles.csv": "scheduled actions (top-ups, resets)",
    "ActionTriggers.csv": "balance thresholds and their actions",
    "Actions.csv": "actions on accounts and balances (top-ups, debits)",
    "Aliases.csv": "field aliases of events",
    "Attributes.csv": "event attribute rewriting",
    "CdrStats.csv": "CDR statistics queues",
    "Chargers.csv": "charging runs of an event (derived charging)",
    "DerivedChargers.csv": "charging runs of an event (derived charging)",
    "DispatcherHosts.csv": "request dispatching",
    "DispatcherProfiles.csv": "request dispatching",
    "Filters.csv": "event filters",
    "IPs.csv": "IP address allocation",
    "Lcr.csv": "least-cost routing",
    "LcrRules.csv": "least-cost routing",
    "Rankings.csv": "statistics rankings",
    "RateProfiles.csv": "CGRateS 1.0 RateS profiles (another rating model; not read here)",
    "ResourceLimits.csv": "resource limits",
    "Resources.csv": "resource limits",
    "Routes.csv": "least-cost routing",
    "SharedGroups.csv": "balances shared between accounts",
    "Stats.csv": "statistics queues",
    "Suppliers.csv": "least-cost routing",
    "Thresholds.csv": "thresholds and their actions",
    "Trends.csv": "statistics trends",
    "User.csv": "user profiles",
    "Users.csv": "user profiles",
}

# The column layouts of each kind, by number of columns (CGRateS versions).
_LAYOUTS: dict[str, dict[int, tuple[str, ...]]] = {
    "destinations": {2: ("id", "prefix")},
    "timings": {6: ("id", "years", "months", "month_days", "week_days", "time")},
    "rates": {
        6: ("id", "connect_fee", "rate", "rate_unit", "rate_increment", "group_interval_start"),
        8: ("id", "connect_fee", "rate", "rate_unit", "rate_increment", "group_interval_start",
            "rounding_method", "rounding_decimals"),
        9: ("id", "connect_fee", "rate", "rate_unit", "rate_increment", "group_interval_start",
            "rounding_method", "rounding_decimals", "weight"),
    },
    "destination_rates": {
        3: ("id", "destination_id", "rates_id"),
        5: ("id", "destination_id", "rates_id", "rounding_method", "rounding_decimals"),
        7: ("id", "destination_id", "rates_id", "rounding_method", "rounding_decimals",
            "max_cost", "max_cost_strategy"),
    },
    "rating_plans": {4: ("id", "destination_rates_id", "timing_id", "weight")},
    "rating_profiles": {
        6: ("tenant", "category", "subject", "activation_time", "rating_plan_id",
            "fallback_subjects"),
        7: ("direction", "tenant", "category", "subject", "activation_time", "rating_plan_id",
            "fallback_subjects"),
        8: ("direction", "tenant", "category", "subject", "activation_time", "rating_plan_id",
            "fallback_subjects", "cdr_stat_queue_ids"),
    },
}  # fmt: skip

# Header names CGRateS versions have used, normalised (lower case, letters and digits only).
_SYNONYMS = {
    "id": ("id", "tag"),
    "prefix": ("prefix", "prefixes"),
    "connect_fee": ("connectfee",),
    "rate": ("rate", "value"),
    "rate_unit": ("rateunit",),
    "rate_increment": ("rateincrement",),
    "group_interval_start": ("groupintervalstart",),
    "rounding_method": ("roundingmethod",),
    "rounding_decimals": ("roundingdecimals",),
    "max_cost": ("maxcost",),
    "max_cost_strategy": ("maxcoststrategy",),
    "weight": ("weight",),
    "destination_id": ("destinationid", "destinationsid", "destinationtag",
                       "destinationstag", "destinationids"),
    "rates_id": ("ratesid", "ratestag", "rateid", "ratetag"),
    "years": ("years",),
    "months": ("months",),
    "month_days": ("monthdays",),
    "week_days": ("weekdays",),
    "time": ("time", "starttime"),
    "destination_rates_id": ("destinationratesid", "destinationratestag", "destratesid",
                             "destratestag", "destinationrateid", "destinationratetag"),
    "timing_id": ("timingid", "timingtag", "timingsid", "timingstag"),
    "tenant": ("tenant",),
    "category": ("category", "tor"),
    "subject": ("subject",),
    "direction": ("direction",),
    "activation_time": ("activationtime",),
    "rating_plan_id": ("ratingplanid", "ratingplantag", "ratingplan", "ratingplanids"),
    "fallback_subjects": ("ratesfallbacksubject", "fallbacksubjects", "fallbacksubject",
                          "fallbackkeys"),
    "cdr_stat_queue_ids": ("cdrstatqueueids", "cdrstatqueueid"),
}  # fmt: skip
_CANONICAL = {alias: name for name, aliases in _SYNONYMS.items() for alias in aliases}


@dataclass(frozen=True)
class TpRow:
    """One record of a TariffPlan file: its fields by canonical column name."""

    file: str
    line: int
    values: dict[str, str]

    def get(self, column: str) -> str:
        """The field (empty when this version's layout has no such column)."""
        return self.values.get(column, "")

    def at(self, column: str) -> TpField:
        """Where the field is, for error messages."""
        return TpField(self.file, self.line, column)


def find_rating_files(folder: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """The rating files of ``folder`` by kind, and every other file with why it is not read."""
    if not folder.is_dir():
        raise TariffError(f"not a CGRateS TariffPlan folder: {folder}")
    by_lower = {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_file()}
    found: dict[str, Path] = {}
    for kind, names in RATING_FILES.items():
        for name in names:
            if name.lower() in by_lower:
                found[kind] = by_lower.pop(name.lower())
                break
    skipped = {}
    for path in by_lower.values():
        known = {k.lower(): v for k, v in SKIPPED_FILES.items()}
        why = known.get(path.name.lower())
        if why is None:
            why = "not a CGRateS TariffPlan file" if path.suffix != ".csv" else "unknown file"
        skipped[path.name] = why
    return found, skipped


def _header_layout(header: str, kind: str) -> tuple[str, ...] | None:
    """The layout a ``#`` header line names, or None if it names no known layout."""
    names = [re.sub(r"[^a-z0-9]", "", h.lower()) for h in next(csv.reader([header.lstrip("#")]))]
    mapped = tuple(_CANONICAL.get(n, "") for n in names)
    return mapped if mapped in _LAYOUTS[kind].values() else None


def read_rows(path: Path, kind: str, separator: str = ",") -> list[TpRow]:
    """The records of a TariffPlan file of ``kind`` with their columns named."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise TariffError(f"cannot read CGRateS file: {exc} (file {path})") from exc
    layout: tuple[str, ...] | None = None
    rows: list[TpRow] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            if layout is None and not rows:
                layout = _header_layout(line, kind)
            continue
        if not line.strip():
            continue
        fields = [f.strip() for f in next(csv.reader([line], delimiter=separator))]
        if layout is None:
            layout = _LAYOUTS[kind].get(len(fields))
            if layout is None:
                known = " or ".join(str(n) for n in _LAYOUTS[kind])
                raise TariffError(
                    f"{len(fields)} columns, expected {known} for {path.name} "
                    f"(file {path}, line {line_no})"
                )
        if len(fields) != len(layout):
            raise TariffError(
                f"{len(fields)} columns where the file has {len(layout)} "
                f"({', '.join(layout)}) (file {path}, line {line_no})"
            )
        rows.append(TpRow(str(path), line_no, dict(zip(layout, fields, strict=True))))
    return rows

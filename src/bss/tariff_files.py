"""The workspace's tariffs in force: TOML files in ``W/tariffs``, validated before they land.

A tariff is installed only after it loads and compiles together with the tariffs already
in force (so an id clash or an invalid rate is refused before anything is written). A
file is written to a temporary name and renamed, so a reader never sees half a tariff.
Replacing a tariff that is already in force needs ``replace=True``: bills already issued
stay as they are, and the next billing run re-rates final periods under the corrected
tariff and bills the difference as adjustments (``bss.billing.rerating``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bss.errors import NotFoundError, ValidationError
from collectors.workspace import WorkspacePaths
from rating_engine.errors import TariffError
from rating_engine.rating.rate import compile_plan, load_tariff, load_tariffs
from rating_engine.tariff.model import Band, Rate, Tariff

__all__ = [
    "CheckedTariffFile",
    "InstalledTariff",
    "describe_tariff",
    "install_tariffs",
    "show_tariff",
    "tariffs_in_force",
    "validate_tariff_files",
]


@dataclass(frozen=True)
class InstalledTariff:
    id: str
    name: str
    currency: str
    versions: tuple[str, ...]
    file: str
    action: str  # "installed", "replaced", "unchanged" (or "in force" when listing)


def _summary(tariff: Tariff, file: Path, action: str) -> InstalledTariff:
    return InstalledTariff(
        id=tariff.id,
        name=tariff.name,
        currency=tariff.currency,
        versions=tuple(v.version for v in tariff.versions),
        file=str(file),
        action=action,
    )


def tariffs_in_force(workspace: WorkspacePaths) -> list[InstalledTariff]:
    """The tariffs in ``W/tariffs``, by id."""
    if not workspace.tariffs.is_dir():
        return []
    tariffs = load_tariffs(workspace.tariffs)
    return [_summary(t, Path(t.source), "in force") for _, t in sorted(tariffs.items())]


def install_tariffs(
    workspace: WorkspacePaths, files: list[Path], *, replace: bool = False
) -> list[InstalledTariff]:
    """Validate ``files`` with the tariffs in force and copy them into ``W/tariffs``.

    Raises :class:`ValidationError` (nothing written) when a file does not load, two files
    carry one id, the set does not compile, or an id in force would change without
    ``replace``.
    """
    if not files:
        raise ValidationError("name at least one tariff file")
    folder = workspace.ensure().tariffs
    try:
        current = load_tariffs(folder) if folder.is_dir() else {}
        new: dict[str, tuple[Tariff, Path, bytes]] = {}
        for path in files:
            tariff = load_tariff(path)
            if tariff.id in new:
                first = new[tariff.id][1]
                raise ValidationError(
                    f"tariff id {tariff.id} is defined twice (file {first}, file {path})"
                )
            new[tariff.id] = (tariff, path, Path(path).read_bytes())
        plan_input = {**current, **{k: v[0] for k, v in new.items()}}
        compile_plan(plan_input)
    except TariffError as exc:
        raise ValidationError(f"tariff refused, nothing installed: {exc}") from exc
    except OSError as exc:
        raise ValidationError(
            f"cannot read tariff file {exc.filename}: {exc.strerror}; nothing installed"
        ) from exc

    actions: dict[str, tuple[str, Path]] = {}
    for tid, (_, path, raw) in new.items():
        old = current.get(tid)
        target = Path(old.source) if old is not None else folder / f"{tid}.toml"
        if old is None:
            if target.exists():  # a file of that name that holds another id
                target = folder / f"{tid}.{Path(path).stem}.toml"
            actions[tid] = ("installed", target)
        elif Path(old.source).read_bytes() == raw:
            actions[tid] = ("unchanged", target)
        elif not replace:
            raise ValidationError(
                f"tariff {tid} is already in force ({old.source}) with other content; "
                "use --replace to correct it (issued bills stay; the next billing run "
                "bills the difference as adjustments); nothing installed"
            )
        else:
            actions[tid] = ("replaced", target)

    out = []
    for tid, (action, target) in actions.items():
        tariff, _, raw = new[tid]
        if action != "unchanged":
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(raw)
            os.replace(tmp, target)
        out.append(_summary(tariff, target, action))
    return out


@dataclass(frozen=True)
class CheckedTariffFile:
    """The verdict on one file of ``tariffs validate``: its tariff id (if it loads), and the
    error that refuses it, or None."""

    file: str
    id: str | None
    versions: tuple[str, ...]
    error: str | None


def validate_tariff_files(workspace: WorkspacePaths, files: list[Path]) -> list[CheckedTariffFile]:
    """Check ``files`` as ``tariffs add --replace`` would, writing nothing: each must load,
    ids must be distinct, and the files must compile together with the tariffs in force
    (a file's id replaces the tariff of that id in force). Every file gets a verdict."""
    if not files:
        raise ValidationError("name at least one tariff file")
    try:
        current = load_tariffs(workspace.tariffs) if workspace.tariffs.is_dir() else {}
    except TariffError as exc:
        raise ValidationError(f"the tariffs in force do not load: {exc}") from exc
    loaded: dict[str, tuple[Tariff, Path]] = {}
    verdicts: dict[Path, tuple[Tariff | None, str | None]] = {}
    for path in files:
        try:
            tariff = load_tariff(path)
        except TariffError as exc:
            verdicts[path] = (None, str(exc))
            continue
        if tariff.id in loaded:
            first = loaded[tariff.id][1]
            verdicts[path] = (tariff, f"tariff id {tariff.id} is also defined in {first}")
            continue
        loaded[tariff.id] = (tariff, path)
        verdicts[path] = (tariff, None)
    if loaded:
        try:
            compile_plan({**current, **{k: v[0] for k, v in loaded.items()}})
        except TariffError as exc:
            # a compile error names its tariff; blame that file (or all when it names none)
            blamed = [p for tid, (_, p) in loaded.items() if f"tariff {tid}," in str(exc)]
            for path in blamed or [p for _, p in loaded.values()]:
                verdicts[path] = (verdicts[path][0], str(exc))
    return [
        CheckedTariffFile(
            file=str(path),
            id=None if tariff is None else tariff.id,
            versions=() if tariff is None else tuple(v.version for v in tariff.versions),
            error=error,
        )
        for path, (tariff, error) in verdicts.items()
    ]


def show_tariff(workspace: WorkspacePaths, tariff_id: str) -> dict[str, Any]:
    """The tariff ``tariff_id`` in force, described by :func:`describe_tariff`."""
    tariffs = load_tariffs(workspace.tariffs) if workspace.tariffs.is_dir() else {}
    if tariff_id not in tariffs:
        known = ", ".join(sorted(tariffs)) or "none"
        raise NotFoundError(f"no tariff {tariff_id!r} in force (tariffs in force: {known})")
    return describe_tariff(tariffs[tariff_id])


def _instant(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC).isoformat()


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}" + (
        f":{seconds % 60:02d}" if seconds % 60 else ""
    )


def _band(b: Band) -> dict[str, Any]:
    return {
        "name": b.name,
        "weekdays": sorted(b.weekdays),
        "dates": [f"{'*' if y is None else y}-{m:02d}-{d:02d}" for y, m, d in b.dates],
        "years": sorted(b.years),
        "months": sorted(b.months),
        "month_days": sorted(b.month_days),
        "start": _clock(b.start),
        "end": _clock(b.end),
        "weight": b.weight,
        # the band's window, where it has one (CGRateS subscriber tariffs)
        **({"active_from": _instant(b.active_from)} if b.active_from is not None else {}),
        **({"active_until": _instant(b.active_until)} if b.active_until is not None else {}),
    }


def _rate(r: Rate) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": r.name,
        "connect_fee": str(r.connect_fee),
        "groups": [
            {"start": g.start, "rate": str(g.rate), "unit": g.unit, "increment": g.increment}
            for g in r.groups
        ],
        "rounding": f"{r.rounding.method} to {r.rounding.decimals} decimals",
    }
    if r.increment_rounding is not None:
        inc = r.increment_rounding
        out["increment_rounding"] = f"{inc.method} to {inc.decimals} decimals"
    if r.min_charge is not None:
        out["min_charge"] = str(r.min_charge)
    if r.max_cost is not None:
        out["max_cost"] = str(r.max_cost)
    if not r.charge_zero_usage:
        out["charge_zero_usage"] = False
    return out


def describe_tariff(tariff: Tariff) -> dict[str, Any]:
    """Plain data (money as decimal strings, instants in ISO 8601 UTC) of everything that
    prices a record: versions with their sets, bands, rates and rules, allowances."""
    return {
        "id": tariff.id,
        "name": tariff.name,
        "currency": tariff.currency,
        "timezone": tariff.timezone,
        "band_selection": tariff.band_selection,
        "file": tariff.source,
        "versions": [
            {
                "version": v.version,
                "active_from": _instant(v.active_from),
                "destinations": {d.name: list(d.prefixes) for d in v.destinations},
                "bands": [_band(b) for b in v.bands],
                "rates": [_rate(r) for r in v.rates],
                "pricing": [
                    {
                        "service": p.service,
                        "destinations": p.destinations or "*",
                        "band": p.band or "*",
                        "rate": p.rate,
                    }
                    for p in v.pricing
                ],
            }
            for v in tariff.versions
        ],
        "allowances": [
            {
                "name": a.name,
                "service": a.service,
                "destinations": list(a.destinations) or ["*"],
                "units": a.units,
            }
            for a in tariff.allowances
        ],
        "period_pricing": [p.name for p in tariff.period_pricing],
    }

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
from pathlib import Path

from bss.errors import ValidationError
from collectors.workspace import WorkspacePaths
from rating_engine.errors import TariffError
from rating_engine.rating.rate import compile_plan, load_tariff, load_tariffs
from rating_engine.tariff.model import Tariff

__all__ = ["InstalledTariff", "install_tariffs", "tariffs_in_force"]


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

"""CLI commands that set a workspace up: ``init``, ``examples`` and ``tariffs``."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from bss.cli.support import database, emit, get_state, table

__all__ = ["register_workspace"]

tariffs_app = typer.Typer(
    help="The tariffs in force in the workspace: list, show, add and validate; import from CGRateS."
)

# What `examples` writes: shipped sample files under names a README walkthrough uses.
_EXAMPLES = {
    "bss.toml": ("demo", "bss.toml"),
    "cdrs.csv": ("demo", "cdrs.csv"),
    "traffic.pcap.gz": ("demo", "traffic.pcap.gz"),
    "asterisk_Master.csv": ("samples", "asterisk_Master.csv"),
    "cdr_generic_sample.csv": ("samples", "cdr_generic_sample.csv"),
    "netflow_exports.pcap": ("samples", "netflow_exports.pcap"),
    "tariffs/mobile-2026.toml": ("demo/tariffs", "mobile-2026.toml"),
    "tariffs/fiber-2026.toml": ("demo/tariffs", "fiber-2026.toml"),
    "alternatives/mobile_classic.toml": ("tariffs", "mobile_classic.toml"),
    "alternatives/mobile_flex.toml": ("tariffs", "mobile_flex.toml"),
}


def init(ctx: typer.Context) -> None:
    """Create the workspace, complete: folders, tariffs/, and the database with its schema."""
    state = get_state(ctx)
    ws = state.workspace
    existed = ws.database.exists()
    with database(state):
        pass
    ws.tariffs.mkdir(parents=True, exist_ok=True)
    emit(
        state,
        {"workspace": str(ws.root), "created": not existed, "tariffs": str(ws.tariffs)},
        f"workspace {ws.root} {'ready' if existed else 'created'}: add tariffs with "
        f"`rating-engine tariffs add FILE`, business data with `rating-engine load FILE`",
    )


def examples(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="where to write the example files")],
) -> None:
    """Write the shipped example files (tariffs, business TOML, CDRs, captures) into a folder."""
    from bss.cli.demo import data_dir

    state = get_state(ctx)
    source = data_dir()
    written = []
    for name, (sub, file) in _EXAMPLES.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / sub / file, target)
        written.append(str(target))
    from collectors.cdr.mapping import find_mapping

    for mapping in ("generic", "asterisk"):
        target = folder / "mappings" / f"{mapping}.toml"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(find_mapping(mapping), target)
        written.append(str(target))
    emit(state, {"files": written}, f"{len(written)} example files in {folder}")


@tariffs_app.command("add")
def tariffs_add(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="TOML tariff files")],
    replace: Annotated[
        bool, typer.Option("--replace", help="correct a tariff already in force (same id)")
    ] = False,
) -> None:
    """Validate tariff files with the tariffs in force, then install them (all or none)."""
    from bss.tariff_files import install_tariffs

    state = get_state(ctx)
    with database(state):  # the workspace's writer lock: no billing run sees half a change
        done = install_tariffs(state.workspace, files, replace=replace)
    if not state.json:
        rows = [(t.id, ", ".join(t.versions), t.currency, t.file, t.action) for t in done]
        table(state, "tariffs", ["tariff", "versions", "currency", "file", "action"], rows)
    emit(state, {"tariffs": [asdict(t) for t in done]})


@tariffs_app.command("list")
def tariffs_list(ctx: typer.Context) -> None:
    """The tariffs in force, with their versions."""
    from bss.tariff_files import tariffs_in_force

    state = get_state(ctx)
    found = tariffs_in_force(state.workspace)
    if not state.json:
        rows = [(t.id, t.name, ", ".join(t.versions), t.currency, t.file) for t in found]
        table(state, "tariffs in force", ["tariff", "name", "versions", "currency", "file"], rows)
    emit(state, {"tariffs": [asdict(t) for t in found]})


@tariffs_app.command("show")
def tariffs_show(
    ctx: typer.Context,
    tariff_id: Annotated[str, typer.Argument(help="id of a tariff in force")],
) -> None:
    """One tariff in force: its versions, destination sets, bands, rates and pricing rules."""
    from bss.tariff_files import show_tariff

    state = get_state(ctx)
    info = show_tariff(state.workspace, tariff_id)
    if not state.json:
        state.console.print(
            f"tariff {info['id']} ({info['name']}), {info['currency']}, zone {info['timezone']}, "
            f"file {info['file']}"
        )
        for v in info["versions"]:
            sets = ", ".join(f"{k} ({len(p)} prefixes)" for k, p in v["destinations"].items())
            state.console.print(
                f"version {v['version']} from {v['active_from']}: sets {sets or 'none'}"
            )
            bands = [
                (b["name"], ",".join(map(str, b["weekdays"])), " ".join(b["dates"]),
                 f"{b['start']}-{b['end']}", b["weight"])
                for b in v["bands"]
            ]  # fmt: skip
            table(state, "bands", ["band", "weekdays", "dates", "time", "weight"], bands)
            rates = [
                (r["name"], r["connect_fee"],
                 "; ".join(f"from {g['start']}: {g['rate']}/{g['unit']} per {g['increment']}"
                           for g in r["groups"]),
                 r["rounding"], r.get("max_cost", ""))
                for r in v["rates"]
            ]  # fmt: skip
            table(state, "rates", ["rate", "connect fee", "groups", "rounding", "max cost"], rates)
            rules = [(p["service"], p["destinations"], p["band"], p["rate"]) for p in v["pricing"]]
            table(state, "pricing", ["service", "destinations", "band", "rate"], rules)
    emit(state, {"tariff": info})


@tariffs_app.command("validate")
def tariffs_validate(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="TOML tariff files")],
) -> None:
    """Check tariff files as `tariffs add --replace` would (together with the tariffs in
    force), without installing anything; exit code 3 if any is refused."""
    from bss.errors import ValidationError
    from bss.tariff_files import validate_tariff_files

    state = get_state(ctx)
    checked = validate_tariff_files(state.workspace, files)
    bad = [c for c in checked if c.error is not None]
    if not state.json:
        rows = [(c.file, c.id or "", "ok" if c.error is None else c.error) for c in checked]
        table(state, "tariff files", ["file", "tariff", "verdict"], rows)
    if bad:
        error = ValidationError(
            f"{len(bad)} of {len(checked)} tariff files refused; first: {bad[0].error}"
        )
        error.details = {"files": [asdict(c) for c in checked]}
        raise error
    emit(state, {"files": [asdict(c) for c in checked]}, f"{len(checked)} tariff files valid")


@tariffs_app.command("import-cgrates")
def tariffs_import_cgrates(
    ctx: typer.Context,
    tp_dir: Annotated[Path, typer.Argument(help="a CGRateS TariffPlan folder of CSV files")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="folder for the tariffs, bindings and report")
    ],
    currency: Annotated[
        str, typer.Option(help="ISO 4217 currency of the amounts (CGRateS has none)")
    ] = "EUR",
    timezone: Annotated[
        str, typer.Option(help="IANA zone of Timings and of activation times without offset")
    ] = "UTC",
    rounding_decimals: Annotated[
        int, typer.Option(help="CGRateS's general.rounding_decimals, for each increment")
    ] = 5,
    exact: Annotated[
        bool, typer.Option("--exact", help="exact arithmetic instead of CGRateS's rounding")
    ] = False,
    category: Annotated[
        list[str] | None,
        typer.Option(help="NAME=SERVICE: the service a RatingProfile category rates (repeat)"),
    ] = None,
    separator: Annotated[str, typer.Option(help="the CSV field separator")] = ",",
    debit: Annotated[
        bool,
        typer.Option("--debit", help="price what CGRateS debits (increments, total unrounded)"),
    ] = False,
) -> None:
    """Import a CGRateS TariffPlan: one tariff per RatingPlan, the RatingProfiles as
    bindings.csv, and a report of what was not imported (add the tariffs with `tariffs add`)."""
    from bss.errors import ValidationError
    from rating_engine.cgrates.convert import DEFAULT_CATEGORY_SERVICES
    from rating_engine.cgrates.importer import import_cgrates

    state = get_state(ctx)
    categories = dict(DEFAULT_CATEGORY_SERVICES)
    for item in category or []:
        name, _, service = item.partition("=")
        if not name or service not in ("voice", "sms", "data"):
            raise ValidationError(f"--category {item!r}: expected NAME=voice|sms|data")
        categories[name] = service
    report = import_cgrates(
        tp_dir,
        output,
        currency=currency,
        timezone=timezone,
        rounding_decimals=None if exact else rounding_decimals,
        category_services=categories,
        separator=separator,
        debit=debit,
    )
    if not state.json:
        written = [*report.tariffs, *report.subscriber_tariffs]  # per RatingPlan, per subject
        rows = [(t.id, ", ".join(t.services), t.rules, t.file) for t in written]
        table(state, "tariffs written", ["tariff", "services", "rules", "file"], rows)
        skipped = [(s.what, s.reason) for s in report.skipped]
        table(state, "not imported", ["what", "why"], skipped)
        for note in report.notes:
            state.console.print(f"note: {note}")
    emit(
        state,
        {"import": report.as_dict()},
        f"{len(report.tariffs)} tariffs, {len(report.subscriber_tariffs)} subscriber tariffs "
        f"and {report.bindings} bindings in {output}; "
        f"{len(report.skipped)} items not imported (listed above)",
    )


def register_workspace(app: typer.Typer) -> None:
    """Attach the set-up commands to the root app."""
    app.command("init")(init)
    app.command("examples")(examples)
    app.add_typer(tariffs_app, name="tariffs")

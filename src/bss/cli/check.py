"""``rating-engine check``: verify the database and every Parquet part; quarantine broken parts."""

from __future__ import annotations

from typing import Annotated

import typer

from bss.cli.support import emit, get_state, progress

__all__ = ["register_check"]


def check(
    ctx: typer.Context,
    quarantine: Annotated[
        bool,
        typer.Option(
            "--quarantine",
            help="move broken Parquet parts to W/broken and report the records they held",
        ),
    ] = False,
) -> None:
    """Read back every stored file; exit 9 when one is broken (even after quarantining it).

    The database is read block by block (checksums), every Parquet part page by page.
    With --quarantine, broken parts move to W/broken/<time>/ with a manifest listing
    the records they held; usage records no bill covers yet are reported as no longer
    billable, with the CDR files to ingest again to restore them.
    """
    from bss.check import check_workspace, failure

    state = get_state(ctx)
    with progress(state, "checking stored files"):
        report = check_workspace(state.workspace, quarantine=quarantine)
    if not state.json:
        for p in report.broken:
            held = "unknown rows" if p.rows is None else f"{p.rows} rows"
            source = f" from {', '.join(p.source_files)}" if p.source_files else ""
            state.console.print(
                f"BROKEN {p.path}: {held} ({len(p.record_ids)} record ids readable){source}: "
                f"{p.problem}" + (f"\n  moved to {p.moved_to}" if p.moved_to else ""),
                highlight=False,
            )
        unknown = report.unidentified_usage_rows
        state.console.print(
            f"database: {report.database} ({report.tables_checked} tables); parts: "
            f"{report.parts_checked} checked, {len(report.broken)} broken"
            + (
                f"; usage no longer billable: {len(report.unbilled_ids)} records"
                f" (+ {'an unknown number of' if unknown is None else unknown} unidentified), "
                f"already billed: {len(report.billed_ids)}"
                if any(p.dataset == "usage" for p in report.broken)
                else ""
            )
            + (f"\nmanifest: {report.manifest}" if report.manifest else "")
        )
    if not report.ok:
        raise failure(report)
    emit(state, report.to_dict())


def register_check(app: typer.Typer) -> None:
    """Attach ``check`` to the root app."""
    app.command("check")(check)

"""CLI commands of the data path: demo, ingest, collect, rate, query.

Heavy modules (Numba kernels, decoders) are imported inside the commands, so
``rating-engine --help`` and the business commands start fast.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from bss.cli.support import (
    CliState,
    SchedulerOption,
    database,
    emit,
    get_state,
    progress,
    scheduler_client,
    table,
)
from bss.errors import ValidationError

__all__ = ["register_data"]

ingest_app = typer.Typer(
    help="Files into the workspace: CDR CSVs, packet captures, flow exports, quantity changes."
)


def demo(ctx: typer.Context, scheduler: SchedulerOption = None) -> None:
    """Run the whole path on the embedded data: packets and CDRs to bills and a chart."""
    from bss.billing.export import bills_for_period
    from bss.cli.bills import money_text
    from bss.cli.demo import DEMO_PERIOD, run_demo

    state = get_state(ctx)
    with (
        scheduler_client(scheduler, state.workspace) as client,
        database(state) as conn,
        progress(state, "demo"),
    ):
        result = run_demo(conn, state.workspace, step=lambda s: state.console.log(s),
                          client=client)  # fmt: skip
        bills = bills_for_period(conn, DEMO_PERIOD)
    b = result.billing
    if not state.json:
        columns = ["bill", "account", "name", "lines", "total", "currency"]
        rows = [(x["bill_no"], x["account"], x["account_name"], len(x["lines"]),
                 money_text(x["amount_incl_tax"], x["currency"]), x["currency"])
                for x in bills]  # fmt: skip
        table(state, f"bills {DEMO_PERIOD}", columns, rows)
        table(state, "outputs", ["what", "where"], sorted(result.outputs.items()))
        suspense = ", ".join(f"{k} {v}" for k, v in b.suspense_by_reason.items()) or "none"
        state.console.print(
            f"period {b.period}: {b.accounts} bills, total "
            f"{', '.join(f'{money_text(v, k)} {k}' for k, v in b.currency_totals.items())}, "
            f"rated {b.rated}, suspense {b.suspense} ({suspense}), changed={b.changed}\n"
            f"bills_sha256 {b.bills_sha256}"
        )
    emit(state, {
        "workspace": str(state.workspace.root), "period": b.period, "accounts": b.accounts,
        "total": str(b.total), "currency_totals": b.currency_totals, "changed": b.changed,
        "bills_sha256": b.bills_sha256, "rated": b.rated, "suspense": b.suspense,
        "suspense_by_reason": b.suspense_by_reason, "steps": result.steps,
        "outputs": result.outputs,
    })  # fmt: skip


@ingest_app.command("cdr")
def ingest_cdr(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="CSV CDR files")],
    mapping: Annotated[
        str, typer.Option(help="column mapping: a TOML file or a shipped name (generic, asterisk)")
    ],
    country_code: Annotated[
        str | None, typer.Option(help="override the mapping's country code for E.164")
    ] = None,
) -> None:
    """CDR CSV files to usage records (duplicates and bad rows kept aside, counted).

    A file whose content was ingested before (under any name) is refused and adds
    nothing; the command then exits 6 after reporting the other files.
    """
    from collectors.cdr.ingest import ingest_cdr_files
    from collectors.cdr.mapping import load_mapping
    from collectors.errors import IngestError

    state = get_state(ctx)
    rules = load_mapping(mapping, country_code=country_code)
    with progress(state, "ingesting CDRs"):
        summary = ingest_cdr_files(files, rules, state.workspace.ensure())
    emit(state, summary.to_dict(), summary.format_text())
    if summary.refused:
        raise IngestError(f"{len(summary.refused)} of {len(files)} files refused (see above)")


@ingest_app.command("quantities")
def ingest_quantities(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="CSV: product,metric,valid_from,change")],
) -> None:
    """Quantity changes of prorated metered quantities (lines, seats) into W/quantities.

    Bad rows are kept aside in W/rejected, counted; ingesting a file again adds nothing.
    A file that is not UTF-8 CSV with those columns is refused (exit 6 after the others).
    """
    from bss.quantities import ingest_quantity_files
    from collectors.errors import IngestError

    state = get_state(ctx)
    with database(state) as conn, progress(state, "ingesting quantities"):
        summary = ingest_quantity_files(conn, files, state.workspace.ensure())
    emit(state, summary.to_dict(), summary.format_text())
    if summary.refused:
        raise IngestError(f"{len(summary.refused)} of {len(files)} files refused (see above)")


AsnDb = Annotated[
    Path | None,
    typer.Option(help="MaxMind-format ASN database (.mmdb): fills src/dst AS left 0"),
]
GeoDb = Annotated[
    Path | None,
    typer.Option(help="MaxMind-format country or city database (.mmdb): src/dst country"),
]
InterfaceFiles = Annotated[
    list[Path] | None,
    typer.Option("--interfaces", help="TOML of exporters' interface names/speeds (repeatable)"),
]


def _enricher(asn_db: Path | None, geo_db: Path | None, interfaces: list[Path] | None) -> Any:
    """The flow enricher of the options (databases read and checked now), or None."""
    if asn_db is None and geo_db is None and not interfaces:
        return None
    from collectors.enrich.enricher import FlowEnricher

    return FlowEnricher.open(asn_db=asn_db, geo_db=geo_db, interfaces=interfaces or ())


@ingest_app.command("pcap")
def ingest_pcap(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="pcap / pcapng files (gzip allowed)")],
    packets: Annotated[bool, typer.Option(help="also write W/packets")] = False,
    asn_db: AsnDb = None,
    geo_db: GeoDb = None,
) -> None:
    """Packet captures to metered flows (softflowd semantics)."""
    from collectors.pcap.ingest import ingest_pcap_files

    state = get_state(ctx)
    enricher = _enricher(asn_db, geo_db, None)
    with progress(state, "metering packets"):
        summary = ingest_pcap_files(
            files, state.workspace.ensure(), write_packets=packets, enricher=enricher
        )
    _report(state, "pcap ingest", summary.to_dict())


@ingest_app.command("flows")
def ingest_flows(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="pcaps of export traffic or datagram files")],
    asn_db: AsnDb = None,
    geo_db: GeoDb = None,
    interfaces: InterfaceFiles = None,
) -> None:
    """NetFlow v5/v9, IPFIX and sFlow exports from files to flows."""
    from collectors.flows.ingest import ingest_flow_files

    state = get_state(ctx)
    enricher = _enricher(asn_db, geo_db, interfaces)
    with progress(state, "decoding flow exports"):
        summary = ingest_flow_files(files, state.workspace.ensure(), enricher=enricher)
    _report(state, "flow ingest", summary.to_dict())


@ingest_app.command("nfcapd")
def ingest_nfcapd(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="nfcapd files or folders of them")],
) -> None:
    """nfdump 1.7 files (nfcapd.*; uncompressed, LZO, BZ2, LZ4, ZSTD) to flows.

    Files that are not nfdump 1.7 files are reported and refused (exit 6); the others
    are ingested. Ingesting a file again replaces its flows.
    """
    from collectors.errors import IngestError
    from collectors.nfcapd.ingest import ingest_nfcapd_files

    state = get_state(ctx)
    with progress(state, "reading nfcapd files"):
        summary = ingest_nfcapd_files(paths, state.workspace.ensure())
    _report(state, "nfcapd ingest", summary.to_dict())
    if summary.refused:
        raise IngestError(f"{len(summary.refused)} file(s) refused: " + "; ".join(
            f"{k}: {v}" for k, v in summary.refused.items()))  # fmt: skip


def _report(state: CliState, what: str, payload: dict[str, Any]) -> None:
    scalars = [(k, v) for k, v in payload.items() if not isinstance(v, list | dict)]
    nested = [(k, v) for k, v in payload.items() if isinstance(v, dict) and v]
    if not state.json:
        table(state, what, ["", "value"], scalars + nested)
    emit(state, payload)


def collect(
    ctx: typer.Context,
    listen: Annotated[
        list[str] | None, typer.Option(help="HOST:PORT for NetFlow/IPFIX/sFlow over UDP")
    ] = None,
    interface: Annotated[str | None, typer.Option(help="live capture on an interface")] = None,
    allow: Annotated[
        list[str] | None, typer.Option(help="exporter allowlist (addresses or CIDR)")
    ] = None,
    rotate_seconds: Annotated[int, typer.Option(help="Parquet file rotation, seconds")] = 60,
    rotate_bytes: Annotated[int, typer.Option(help="Parquet file rotation, bytes")] = 64 << 20,
    stats_interval: Annotated[int, typer.Option(help="stats log/dataset interval, s")] = 10,
    buffer_mib: Annotated[
        int,
        typer.Option(
            "--buffer-mib",
            help="MiB of memory between the receiving process and decoding: a burst faster "
            "than decoding waits there instead of being dropped by the kernel",
        ),
    ] = 512,
    metrics: Annotated[
        str | None, typer.Option(help="HOST:PORT to serve Prometheus /metrics and /healthz")
    ] = None,
    asn_db: AsnDb = None,
    geo_db: GeoDb = None,
    interfaces: InterfaceFiles = None,
) -> None:
    """Run a collector in the foreground until SIGTERM/SIGINT, then flush and exit 0."""
    state = get_state(ctx)
    if bool(listen) == bool(interface):
        raise ValidationError("give either --listen HOST:PORT (repeatable) or --interface IFACE")
    if not 1 <= buffer_mib <= 1 << 20:
        raise ValidationError(f"--buffer-mib {buffer_mib}: expected 1 to 1048576 (MiB)")
    if interface and (metrics or asn_db or geo_db or interfaces):
        raise ValidationError(
            "--metrics, --asn-db, --geo-db and --interfaces apply to --listen, not --interface"
        )
    # Both collectors install their own SIGTERM/SIGINT handlers, flush and return.
    if interface:
        from collectors.pcap.live_capture import run_live_capture

        live = run_live_capture(interface, state.workspace.ensure(),
                                rotate_seconds=rotate_seconds)  # fmt: skip
        payload = {k: [str(p) for p in v] if k == "files" else v for k, v in asdict(live).items()}
        emit(state, payload, f"capture on {interface} stopped: {live.packets} packets, "
             f"{live.flows} flows, {len(live.files)} files")  # fmt: skip
        return
    from collectors.errors import CollectorError
    from collectors.udp.service import run_collector
    from collectors.udp.sockets import parse_listen

    try:
        metrics_at = parse_listen(metrics) if metrics else None
    except CollectorError as exc:
        raise ValidationError(f"--metrics {metrics!r} is not HOST:PORT") from exc
    enricher = _enricher(asn_db, geo_db, interfaces)  # bad databases fail here, before traffic
    summary = run_collector(
        [parse_listen(x) for x in listen or []], state.workspace.ensure(),
        allowlist=allow or None, rotate_seconds=rotate_seconds, rotate_bytes=rotate_bytes,
        stats_interval=stats_interval, enricher=enricher, metrics=metrics_at,
        buffer_bytes=buffer_mib << 20,
        on_ready=lambda bound: print(
            "listening on " + " ".join(f"{h}:{p}" for h, p in bound), file=sys.stderr, flush=True
        ),
    )  # fmt: skip
    emit(state, summary.to_dict(), f"collector stopped: {summary.to_dict()}")


def rate(
    ctx: typer.Context,
    period: Annotated[str, typer.Option(help="period YYYY-MM")],
    what_if: Annotated[
        Path | None, typer.Option("--what-if", help="another tariff folder or file to compare")
    ] = None,
    replace: Annotated[
        str | None, typer.Option(help="with --what-if: the tariff id the alternative replaces")
    ] = None,
    scheduler: SchedulerOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="a billed period: re-rate it into a new generation beside its billed detail "
            "(W/rerated); nothing billed changes",
        ),
    ] = False,
) -> None:
    """Rate the period's unbilled usage (rated + suspense datasets); or compare tariffs.

    A billed period is refused (its rated records are what its bills rest on); with --force
    it is re-rated with the tariffs in force into W/rerated/PERIOD/generation-N, the
    per-record adjustments the next bill would carry, and its billed detail stays as it is.
    """
    from bss.billing.period import parse_period

    state = get_state(ctx)
    bounds = parse_period(period)
    if what_if is not None:
        from bss.billing.what_if import compare_tariffs
        from bss.subscriptions import subscription_table

        with database(state) as conn:
            subs = subscription_table(conn, bounds.end)
            report = compare_tariffs(conn, state.workspace, bounds, subs, what_if, replace=replace)
        if not state.json:
            table(state, f"what-if {period}: {what_if}", list(report.columns),
                  report.rows)  # fmt: skip
        emit(state, report.to_dict())
        return
    if force:
        from bss.billing.generations import rerate_generation

        with (
            scheduler_client(scheduler, state.workspace) as client,
            database(state) as conn,
            progress(state, f"re-rating {period}"),
        ):
            generation = rerate_generation(conn, state.workspace, period, client=client)
        emit(state, asdict(generation),
             f"{period}: generation {generation.generation} in {generation.folder}: "
             f"{generation.changed} of {generation.billed} billed records change price, "
             f"by {generation.delta} in total; the bills stay as issued")  # fmt: skip
        return
    from bss.billing.run import rate_unbilled

    with (
        scheduler_client(scheduler, state.workspace) as client,
        database(state) as conn,
        progress(state, f"rating {period}"),
    ):
        outcome = rate_unbilled(conn, state.workspace, period, client=client)
    reasons = outcome.suspense_by_reason()
    emit(state, {"period": period, "rated": outcome.rated, "suspense": outcome.suspense,
                 "suspense_by_reason": reasons},
         f"{period}: rated {outcome.rated}, suspense {outcome.suspense} {reasons}")  # fmt: skip


def register_data(app: typer.Typer) -> None:
    """Attach the data-path commands to the root app."""
    app.command("demo")(demo)
    app.add_typer(ingest_app, name="ingest")
    app.command("collect")(collect)
    app.command("rate")(rate)

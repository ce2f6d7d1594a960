"""``rating-engine query``: nfdump-style statistics, listings, top-N and time buckets.

    rating-engine query stats -s srcip/bytes -s dstport/flows 'proto tcp and dst port 443'
    rating-engine query stats -A srcip,dstport -O bps -n 20 -t 2026/10/05.00:00-2026/10/05.12:00
    rating-engine query list -o long -c 20 -O tstart 'src net 10.0.0.0/8'
    rating-engine query top --by src_ip --metric bytes -n 10 \\
        --window 2026-10-05T00:00/2026-10-06T00:00 [--filter 'proto udp'] [--json]
    rating-engine query buckets --by subscription --bucket hour [--window ...] [--json]
    rating-engine query p95 --period 2026-10 [--json]

``top``, ``buckets`` and ``p95`` take ``--scheduler`` (a Dask cluster: a task per day of
flows, the same result).

Every verb takes an nfdump filter (``--filter`` or, for stats and list, trailing words as
nfdump takes them) and a window in ISO 8601 or nfdump's ``yyyy/MM/dd.hh:mm:ss`` form.

Read-only: only Parquet files and (for ``--by subscription``) the bss database opened
read-only are read. Heavy modules are imported inside the commands so ``--help`` is fast.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bss.cli.support import CliState, SchedulerOption, emit, get_state, scheduler_client, table

__all__ = ["query_app", "register_query"]

query_app = typer.Typer(help="Traffic statistics over the flows dataset (like nfdump -s).")

_BY_HELP = (
    "src_ip, dst_ip, src_port, dst_port, proto, conversation, pair, exporter, input_if, "
    "output_if, src_as, dst_as, src_prefix, dst_prefix, subscription"
)
_WINDOW_HELP = (
    "START/END in ISO 8601 (UTC unless an offset is given; either side may be empty) or "
    "nfdump's yyyy/MM/dd.hh:mm:ss[-yyyy/MM/dd.hh:mm:ss] (UTC)"
)
_FILTER_HELP = "nfdump filter, e.g. 'proto tcp and dst port 443' (see docs/for-nfdump-users.md)"


def _json_rows(result: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = result.to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float):
                row[key] = round(value, 4)
    return rows


def _human(value: int) -> str:
    """nfdump's scaling: 1.2 M, 34.5 G (decimal units)."""
    for unit, scale in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return str(value)


def _state(ctx: typer.Context, json_out: bool) -> CliState:
    state = get_state(ctx)
    state.json = state.json or json_out
    return state


@query_app.command("top")
def top(
    ctx: typer.Context,
    by: Annotated[str, typer.Option("--by", "-s", help=_BY_HELP)] = "src_ip",
    metric: Annotated[str, typer.Option("--metric", "-m", help="bytes, packets or flows")] = (
        "bytes"
    ),
    n: Annotated[int, typer.Option("-n", "--top", help="how many rows", min=1)] = 10,
    window: Annotated[str | None, typer.Option("--window", "-t", help=_WINDOW_HELP)] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="volumes as exported (no sampling renormalisation)")
    ] = False,
    flow_filter: Annotated[str | None, typer.Option("--filter", help=_FILTER_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
    scheduler: SchedulerOption = None,
) -> None:
    """Top-N talkers by bytes, packets or flows with their share of the total, like nfdump -s."""
    from bss.analyst.query import parse_window, top_talkers

    state = _state(ctx, json_out)
    win = parse_window(window)
    with scheduler_client(scheduler, state.workspace) as client:
        result = top_talkers(state.workspace, by, metric, n, win, renormalise=not raw,
                             flow_filter=flow_filter, client=client)  # fmt: skip
    meta = {k.decode(): v.decode() for k, v in (result.schema.metadata or {}).items()}
    totals = {k: int(meta[f"total_{k}"]) for k in ("flows", "packets", "bytes")}
    if not state.json:
        keys = [c for c in result.schema.names if c not in _NUMERIC]
        columns = ["rank", *keys[1:], "flows", "packets", "bytes", "bpp"]
        rows = []
        for row in result.to_pylist():
            shown = [row[k] for k in keys]
            for m in ("flows", "packets", "bytes"):
                shown.append(f"{_human(row[m])} ({row[f'{m}_pct']:.1f}%)")
            shown.append(row["bpp"])
            rows.append(shown)
        title = f"top {n} {by} ordered by {metric}" + (f", {window}" if window else "")
        table(state, title, columns, rows)
        state.console.print(
            f"summary: total flows {totals['flows']}, total packets {totals['packets']}, "
            f"total bytes {totals['bytes']}"
        )
    emit(
        state,
        {
            "by": by,
            "metric": metric,
            "n": n,
            "window": window,
            "filter": flow_filter,
            "renormalised": not raw,
            "totals": totals,
            "rows": _json_rows(result),
        },
    )


_NUMERIC = {"flows", "flows_pct", "packets", "packets_pct", "bytes", "bytes_pct", "bpp"}


@query_app.command("buckets")
def buckets(
    ctx: typer.Context,
    by: Annotated[str, typer.Option("--by", "-s", help=_BY_HELP)] = "subscription",
    bucket: Annotated[str, typer.Option("--bucket", "-b", help="1min, 5min, hour or day")] = (
        "hour"
    ),
    window: Annotated[str | None, typer.Option("--window", "-t", help=_WINDOW_HELP)] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="rows shown in the table (JSON has all)", min=1)
    ] = 50,
    raw: Annotated[
        bool, typer.Option("--raw", help="volumes as exported (no sampling renormalisation)")
    ] = False,
    flow_filter: Annotated[str | None, typer.Option("--filter", help=_FILTER_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
    scheduler: SchedulerOption = None,
) -> None:
    """Bytes, packets and flows per key and time bucket (epoch-aligned, UTC)."""
    from bss.analyst.query import flow_buckets, parse_window

    state = _state(ctx, json_out)
    with scheduler_client(scheduler, state.workspace) as client:
        result = flow_buckets(
            state.workspace, by, bucket, parse_window(window), renormalise=not raw,
            flow_filter=flow_filter, client=client,
        )  # fmt: skip
    rows = result.to_pylist()
    if not state.json:
        names = result.schema.names
        table(
            state,
            f"{by} per {bucket}" + (f", {window}" if window else ""),
            names,
            [[r[c] for c in names] for r in rows[:limit]],
        )
        if len(rows) > limit:
            state.console.print(f"... {len(rows) - limit} more rows (use --json for all)")
    emit(state, {"by": by, "bucket": bucket, "window": window, "filter": flow_filter,
                 "rows": rows})  # fmt: skip


@query_app.command("p95")
def p95(
    ctx: typer.Context,
    period: Annotated[str, typer.Option(help="period YYYY-MM")],
    limit: Annotated[
        int, typer.Option("--limit", help="rows shown in the table (JSON has all)", min=1)
    ] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
    scheduler: SchedulerOption = None,
) -> None:
    """95th percentile of 5-minute rates per subscription over a period (burstable billing).

    Every 5-minute interval of the period is a sample, idle ones included; a flow's bytes
    are spread over the intervals it overlaps; the greater of in and out, in bits/s.
    """
    from bss.analyst.query import prefix_index
    from bss.billing.period import parse_period
    from rating_engine.scale.traffic import percentile_95_tasks

    state = _state(ctx, json_out)
    bounds = parse_period(period)
    index = prefix_index(state.workspace)
    with scheduler_client(scheduler, state.workspace) as client:
        result = percentile_95_tasks(state.workspace.flows, index, bounds.start_us(),
                                     bounds.end_us(), client=client)  # fmt: skip
    rows = result.to_pylist()
    if not state.json:
        names = result.schema.names
        table(state, f"95th percentile {period}", names,
              [[r[c] for c in names] for r in rows[:limit]])  # fmt: skip
        if len(rows) > limit:
            state.console.print(f"... {len(rows) - limit} more rows (use --json for all)")
    emit(state, {"period": period, "rows": rows})


def register_query(app: typer.Typer) -> None:
    """Attach ``query stats``, ``list``, ``top`` and ``buckets`` to the root app."""
    from bss.cli.query_nfdump import register_nfdump_verbs

    register_nfdump_verbs(query_app)
    app.add_typer(query_app, name="query")

"""``rating-engine query stats`` and ``query list``: nfdump's ``-s``/``-A`` and flow listing.

    rating-engine query stats -s srcip/bytes -s dstport/flows/packets 'proto tcp'
    rating-engine query stats -A srcip,dstport -O bps -n 20 --filter 'dst port 443'
    rating-engine query list -o extended -c 20 -O tstart -t 2026/10/05.00:00-2026/10/05.12:00 \\
        'src net 10.0.0.0/8 and not dst port in [53 123]'

The filter is nfdump's: trailing words (quote it as one word, as with nfdump) or
``--filter``. Read-only: only Parquet files are read. ``--json`` prints one JSON object
(rows with addresses as text); ``list -o csv|json|fmt:...`` prints nfdump's formats
on stdout for pipes.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from bss.cli.support import emit, get_state, table

__all__ = ["register_nfdump_verbs"]

_WINDOW_HELP = "window: nfdump's yyyy/MM/dd.hh:mm:ss[-yyyy/MM/dd.hh:mm:ss] or ISO START/END (UTC)"
_FILTER_ARG_HELP = "nfdump filter words, e.g. 'proto tcp and dst port 443'"
_STAT_HELP = (  # "\\[" keeps rich from reading "[/ORDER...]" as a closing markup tag
    "ELEMENT[,ELEMENT]\\[/ORDER...]: srcip dstip ip srcport dstport port proto srcas dstas as "
    "inif outif if nhip router vlan tos flags srcip4/N dstip6/N record; orders flows "
    "packets bytes pps bps bpp (repeat -s for more statistics, all in one pass)"
)


def _filter_text(words: list[str] | None, option: str | None) -> str | None:
    if words and option:
        raise typer.BadParameter("give the filter once: as trailing words or --filter")
    return " ".join(words) if words else option


def _human(value: int) -> str:
    for unit, scale in (("T", 10**12), ("G", 10**9), ("M", 10**6)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return str(value)


def _rows(result: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = result.to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float):
                row[key] = round(value, 4)
    return rows


def stats(
    ctx: typer.Context,
    words: Annotated[list[str] | None, typer.Argument(help=_FILTER_ARG_HELP)] = None,
    stat: Annotated[list[str] | None, typer.Option("--stat", "-s", help=_STAT_HELP)] = None,
    aggregate: Annotated[
        str | None, typer.Option("--aggregate", "-A", help="KEY,KEY: group by these (nfdump -A)")
    ] = None,
    order: Annotated[
        list[str] | None, typer.Option("--order", "-O", help="order of -A groups (default flows)")
    ] = None,
    n: Annotated[int, typer.Option("-n", "--top", help="rows per statistic (0: all)", min=0)] = 10,
    window: Annotated[str | None, typer.Option("--window", "-t", help=_WINDOW_HELP)] = None,
    flow_filter: Annotated[str | None, typer.Option("--filter", help="nfdump filter")] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="volumes as exported (no sampling renormalisation)")
    ] = False,
) -> None:
    """Top-N statistics over any group of keys, several in one pass (nfdump -s, -A)."""
    from bss.analyst.nfdump_queries import flow_stats
    from bss.analyst.query import parse_window

    state = get_state(ctx)
    text = _filter_text(words, flow_filter)
    win = parse_window(window)
    keys = [k for k in (aggregate or "").split(",") if k.strip()]
    tables, totals = flow_stats(
        state.workspace, list(stat or []), aggregate=keys, order=list(order or []),
        flow_filter=text, window=win, n=n, renormalise=not raw,
    )  # fmt: skip
    payload: dict[str, Any] = {
        "filter": text, "window": window, "renormalised": not raw,
        "totals": {"flows": totals.flows, "packets": totals.packets, "bytes": totals.bytes},
        "stats": [],
    }  # fmt: skip
    for result in tables:
        meta = {k.decode(): v.decode() for k, v in (result.schema.metadata or {}).items()}
        rows = _rows(result)
        payload["stats"].append({"stat": meta["stat"], "order": meta["order"], "rows": rows})
        if state.json:
            continue
        keys_shown = result.schema.names[: result.schema.get_field_index("flows")]
        shown = []
        for row in rows:
            dur = (row["last"] - row["first"]).total_seconds()
            cells = [row["first"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], f"{dur:.3f}"]
            cells += [row[k] for k in keys_shown]
            for m in ("flows", "packets", "bytes"):
                cells.append(f"{_human(row[m])} ({row[f'{m}_pct']:.1f}%)")
            cells += [_human(row["pps"]), _human(row["bps"]), row["bpp"]]
            shown.append(cells)
        columns = ["first seen", "duration", *keys_shown, "flows", "packets", "bytes", "pps",
                   "bps", "bpp"]  # fmt: skip
        label = meta["stat"].split("/")[0]
        table(state, f"top {n or 'all'} {label} ordered by {meta['order']}", columns, shown)
    if not state.json:
        state.console.print(
            f"summary: total flows {totals.flows}, total packets {totals.packets}, total bytes "
            f"{totals.bytes}" + (f", filter: {text}" if text else "")
        )
    emit(state, payload)


def list_(
    ctx: typer.Context,
    words: Annotated[list[str] | None, typer.Argument(help=_FILTER_ARG_HELP)] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="line, long, extended, csv, json or fmt:%ts ...")
    ] = "line",
    count: Annotated[
        int | None, typer.Option("--count", "-c", help="at most this many flows", min=1)
    ] = None,
    order: Annotated[
        str | None,
        typer.Option(
            "--order",
            "-O",
            help="tstart or tend (ascending); bytes, packets, pps, "
            "bps, bpp (descending); default: as stored",
        ),
    ] = None,
    window: Annotated[str | None, typer.Option("--window", "-t", help=_WINDOW_HELP)] = None,
    flow_filter: Annotated[str | None, typer.Option("--filter", help="nfdump filter")] = None,
    plain: Annotated[bool, typer.Option("--plain-numbers", "-N", help="no 1.2 M scaling")] = False,
) -> None:
    """The flows that match, in nfdump's output formats (nfdump -o, -c, -O)."""
    from bss.analyst.flow_formats import format_columns, render_flows
    from bss.analyst.nfdump_queries import list_flows
    from bss.analyst.query import addresses_as_text, parse_window

    state = get_state(ctx)
    text = _filter_text(words, flow_filter)
    columns = None if state.json else format_columns(output)  # read only what is printed
    flows = list_flows(
        state.workspace, flow_filter=text, window=parse_window(window), order=order,
        limit=count, columns=columns,
    )  # fmt: skip
    if state.json:
        emit(state, {"filter": text, "window": window, "count": flows.num_rows,
                     "flows": addresses_as_text(flows).to_pylist()})  # fmt: skip
        return
    body = render_flows(flows, output, plain=plain, header=not state.quiet)
    sys.stdout.flush()
    sys.stdout.buffer.write(body)
    if not state.quiet and (output in ("line", "long", "extended") or output.startswith("fmt:")):
        import pyarrow.compute as pc

        packets = int(pc.sum(flows.column("packets")).as_py() or 0)
        octets = int(pc.sum(flows.column("bytes")).as_py() or 0)
        sys.stdout.buffer.write(
            f"Summary: total flows: {flows.num_rows}, total bytes: {_human(octets)}, "
            f"total packets: {_human(packets)}\n".encode()
        )
    sys.stdout.buffer.flush()


def register_nfdump_verbs(app: typer.Typer) -> None:
    """Attach ``stats`` and ``list`` to the ``query`` group."""
    app.command("stats")(stats)
    app.command("list")(list_)

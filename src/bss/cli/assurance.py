"""CLI commands of assurance: ``alarms`` (TMF642) and ``tickets`` (TMF621)."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bss.cli.support import CliState, database, emit, get_state, table
from bss.errors import BssError, ValidationError

if TYPE_CHECKING:  # assurance (DuckDB, pyarrow, Numba) loads in the commands that use it:
    # --help and the other commands start without it
    import duckdb
    import pyarrow as pa

    from bss.assurance.alarms import Alarm
    from bss.assurance.tickets import Ticket

__all__ = ["alarms_app", "register_assurance", "tickets_app"]

alarms_app = typer.Typer(help="Alarms (TMF642 / X.733): list, acknowledge, comment, clear, detect.")
tickets_app = typer.Typer(help="Trouble tickets (TMF621): open, move along, comment.")


@contextmanager
def _reading(state: CliState) -> Iterator[duckdb.DuckDBPyConnection]:
    """Read-only database that has the assurance tables (read-only opens never migrate)."""
    from bss.db import schema_version

    with database(state, read_only=True) as conn:
        if schema_version(conn) < 2:
            raise BssError(
                f"workspace {state.workspace.root}: database predates alarms and tickets; "
                "run a writing command (e.g. `alarms detect`) to upgrade it"
            )
        yield conn


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "operator"


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValidationError(f"{text!r} is not an ISO 8601 date or time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _speeds(path: Path) -> pa.Table:
    """A CSV with header ``exporter,if_index,speed_bps``."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from rating_engine.traffic.anomaly import INTERFACE_SPEED_SCHEMA

    try:
        opts = pacsv.ConvertOptions(column_types=INTERFACE_SPEED_SCHEMA)
        return pacsv.read_csv(path, convert_options=opts).select(INTERFACE_SPEED_SCHEMA.names)
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise ValidationError(f"interface speeds {path}: {exc}") from exc


def _alarm_row(a: Alarm) -> tuple[object, ...]:
    return (a.id, a.alarmed_object, a.alarm_type, a.probable_cause, a.specific_problem,
            a.perceived_severity, a.state, a.ack_state, a.occurrences,
            f"{a.changed_time:%Y-%m-%d %H:%M}")  # fmt: skip


_ALARM_COLUMNS = ["id", "object", "type", "cause", "problem", "severity", "state", "ack", "n",
                  "changed"]  # fmt: skip


@alarms_app.command("list")
def alarms_list(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="cleared alarms too")] = False,
    alarmed_object: Annotated[str | None, typer.Option("--object", help="one object")] = None,
    severity: Annotated[str | None, typer.Option(help="one perceived severity")] = None,
) -> None:
    """Open alarms (or all), most recently changed first."""
    from bss.assurance import alarms

    state = get_state(ctx)
    with _reading(state) as conn:
        found = alarms.list_alarms(
            conn, open_only=not all_, alarmed_object=alarmed_object, severity=severity
        )
    if state.json:
        emit(state, {"alarms": [asdict(a) for a in found]})
        return
    table(state, "alarms", _ALARM_COLUMNS, [_alarm_row(a) for a in found])


@alarms_app.command("show")
def alarms_show(ctx: typer.Context, alarm_id: int) -> None:
    """One alarm with its measurements, comments and history."""
    from bss.assurance import alarms

    state = get_state(ctx)
    with _reading(state) as conn:
        alarm = alarms.get_alarm(conn, alarm_id)
        comments = alarms.alarm_comments(conn, alarm_id)
        history = conn.execute(
            "SELECT entity, from_state, to_state, changed_at, reason FROM state_history "
            "WHERE entity IN ('alarm', 'alarm_ack') AND entity_id = ? ORDER BY id",
            [str(alarm_id)],
        ).fetchall()
    if state.json:
        emit(state, {"alarm": asdict(alarm), "comments": [asdict(c) for c in comments],
                     "history": [list(h) for h in history]})  # fmt: skip
        return
    table(state, f"alarm {alarm.id}", ["field", "value"], list(asdict(alarm).items()))
    if comments:
        rows = [(c.comment_no, c.author, f"{c.at:%Y-%m-%d %H:%M}", c.text) for c in comments]
        table(state, "comments", ["#", "author", "at", "text"], rows)
    table(state, "history", ["entity", "from", "to", "at", "reason"],
          [(e, f, t, f"{at:%Y-%m-%d %H:%M:%S}", r) for e, f, t, at, r in history])  # fmt: skip


@alarms_app.command("ack")
def alarms_ack(
    ctx: typer.Context,
    alarm_id: int,
    user: Annotated[str | None, typer.Option(help="who acknowledges (default: login)")] = None,
    undo: Annotated[bool, typer.Option(help="withdraw the acknowledgement")] = False,
) -> None:
    """Acknowledge an alarm (or withdraw the acknowledgement)."""
    from bss.assurance import alarms

    state = get_state(ctx)
    who = user or _user()
    with database(state) as conn:
        alarm = (alarms.unacknowledge_alarm if undo else alarms.acknowledge_alarm)(
            conn, alarm_id, who
        )
    emit(state, asdict(alarm), f"alarm {alarm.id}: {alarm.ack_state} by {who}")


@alarms_app.command("comment")
def alarms_comment(
    ctx: typer.Context,
    alarm_id: int,
    text: str,
    author: Annotated[str | None, typer.Option(help="default: login")] = None,
) -> None:
    """Add a comment to an alarm."""
    from bss.assurance import alarms

    state = get_state(ctx)
    with database(state) as conn:
        comment = alarms.comment_alarm(conn, alarm_id, author or _user(), text)
    emit(state, asdict(comment), f"alarm {alarm_id}: comment {comment.comment_no} added")


@alarms_app.command("clear")
def alarms_clear(ctx: typer.Context, alarm_id: int, reason: str = "cleared by operator") -> None:
    """Clear an open alarm by hand."""
    from bss.assurance import alarms

    state = get_state(ctx)
    with database(state) as conn:
        alarm = alarms.clear_alarm(conn, alarm_id, reason=reason)
    emit(state, asdict(alarm), f"alarm {alarm.id}: cleared")


@alarms_app.command("detect")
def alarms_detect(
    ctx: typer.Context,
    window_end: Annotated[str, typer.Option(help="end of the judged window (ISO 8601, UTC)")],
    window_minutes: Annotated[int, typer.Option(help="length of the judged window")] = 5,
    lookback_days: Annotated[int, typer.Option(help="history for the baselines")] = 28,
    bucket: Annotated[str, typer.Option(help="series bucket: 1min, 5min or hour")] = "5min",
    silence_minutes: Annotated[float, typer.Option(help="exporter silence threshold")] = 10.0,
    speeds: Annotated[
        Path | None, typer.Option(help="CSV exporter,if_index,speed_bps for utilisation")
    ] = None,
) -> None:
    """Run detection over the workspace's flows; raise, update and clear alarms; sync tickets."""
    from bss.assurance.run import AssurancePolicy, run_assurance

    state = get_state(ctx)
    policy = AssurancePolicy(
        bucket=bucket, window=timedelta(minutes=window_minutes), silence_minutes=silence_minutes,
        interface_speeds=_speeds(speeds) if speeds is not None else None,
    )  # fmt: skip
    with database(state) as conn:
        summary = run_assurance(
            conn, state.workspace, window_end=_when(window_end),
            lookback=timedelta(days=lookback_days), policy=policy,
        )  # fmt: skip
    a, t = summary.alarms, summary.tickets
    emit(state, asdict(summary),
         f"{summary.flows_read} flows, detections {summary.detections or 'none'}; alarms "
         f"raised {len(a.raised)}, updated {len(a.updated)}, cleared {len(a.cleared)}; "
         f"tickets opened {len(t.opened)}, resolved {len(t.resolved)}")  # fmt: skip


def _ticket_out(conn: duckdb.DuckDBPyConnection, ticket: Ticket) -> dict[str, Any]:
    """A ticket for --json and tables: its fields and its customers' business ids."""
    from bss import customers

    names = [customers.get_customer(conn, c).external_id for c in ticket.customer_ids]
    return {**asdict(ticket), "customers": names}


def _ticket_row(t: dict[str, Any]) -> tuple[object, ...]:
    return (t["id"], t["name"], t["severity"], t["priority"], t["status"],
            "yes" if t["resolvable"] else "", " ".join(map(str, t["alarm_ids"])),
            " ".join(t["customers"]), f"{t['updated_at']:%Y-%m-%d %H:%M}")  # fmt: skip


@tickets_app.command("list")
def tickets_list(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="resolved, closed, cancelled too")] = False,
) -> None:
    """Open tickets (or all), newest first."""
    from bss.assurance import tickets

    state = get_state(ctx)
    with _reading(state) as conn:
        found = [_ticket_out(conn, t) for t in tickets.list_tickets(conn, open_only=not all_)]
    if state.json:
        emit(state, {"tickets": found})
        return
    table(state, "trouble tickets", ["id", "name", "severity", "prio", "status", "resolvable",
          "alarms", "customers", "updated"], [_ticket_row(t) for t in found])  # fmt: skip


@tickets_app.command("show")
def tickets_show(ctx: typer.Context, ticket_id: int) -> None:
    """One ticket with its notes and history."""
    from bss.assurance import tickets

    state = get_state(ctx)
    with _reading(state) as conn:
        ticket = _ticket_out(conn, tickets.get_ticket(conn, ticket_id))
        notes = tickets.ticket_notes(conn, ticket_id)
        history = conn.execute(
            "SELECT from_state, to_state, changed_at, reason FROM state_history "
            "WHERE entity = 'trouble_ticket' AND entity_id = ? ORDER BY id",
            [str(ticket_id)],
        ).fetchall()
    if state.json:
        emit(state, {"ticket": ticket, "notes": [asdict(n) for n in notes],
                     "history": [list(h) for h in history]})  # fmt: skip
        return
    shown = {k: v for k, v in ticket.items() if k != "customer_ids"}
    table(state, f"ticket {ticket['id']}", ["field", "value"], list(shown.items()))
    if notes:
        table(state, "notes", ["#", "author", "at", "text"],
              [(n.note_no, n.author, f"{n.at:%Y-%m-%d %H:%M}", n.text) for n in notes])  # fmt: skip
    table(state, "history", ["from", "to", "at", "reason"],
          [(f, t, f"{at:%Y-%m-%d %H:%M:%S}", r) for f, t, at, r in history])  # fmt: skip


@tickets_app.command("open")
def tickets_open(
    ctx: typer.Context,
    name: str,
    severity: Annotated[str, typer.Option(help="critical, major, minor or warning")],
    description: str = "",
    ticket_type: Annotated[str, typer.Option("--type", help="networkFault, ...")] = (
        "networkFault"
    ),
    alarm: Annotated[list[int] | None, typer.Option("--alarm", help="alarm id to link")] = None,
    customer: Annotated[
        list[str] | None, typer.Option("--customer", help="customer to link (its id, e.g. C001)")
    ] = None,
) -> None:
    """Open a ticket by hand."""
    from bss import customers
    from bss.assurance import tickets

    state = get_state(ctx)
    with database(state) as conn:
        ticket = tickets.open_ticket(
            conn, name, severity=severity, description=description, ticket_type=ticket_type,
            alarm_ids=alarm or [],
            customer_ids=[customers.get_customer(conn, c).id for c in customer or []],
        )  # fmt: skip
        out = _ticket_out(conn, ticket)
    emit(state, out, f"ticket {ticket.id} opened ({ticket.status})")


@tickets_app.command("transition")
def tickets_transition(ctx: typer.Context, ticket_id: int, to_state: str, reason: str = "") -> None:
    """Move a ticket to another TMF621 state (illegal moves are refused)."""
    from bss.assurance import tickets

    state = get_state(ctx)
    with database(state) as conn:
        ticket = tickets.transition_ticket(conn, ticket_id, to_state, reason)
        out = _ticket_out(conn, ticket)
    emit(state, out, f"ticket {ticket.id}: {ticket.status}")


@tickets_app.command("comment")
def tickets_comment(
    ctx: typer.Context,
    ticket_id: int,
    text: str,
    author: Annotated[str | None, typer.Option(help="default: login")] = None,
) -> None:
    """Add a note to a ticket."""
    from bss.assurance import tickets

    state = get_state(ctx)
    with database(state) as conn:
        note = tickets.note_ticket(conn, ticket_id, author or _user(), text)
    emit(state, asdict(note), f"ticket {ticket_id}: note {note.note_no} added")


def register_assurance(app: typer.Typer) -> None:
    """Attach ``alarms`` and ``tickets`` to the root app."""
    app.add_typer(alarms_app, name="alarms")
    app.add_typer(tickets_app, name="tickets")

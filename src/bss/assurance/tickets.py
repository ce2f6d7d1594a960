"""Trouble tickets (TMF621): opened by hand or from alarms, linked to alarms and customers.

Lifecycle (:data:`TICKET_TRANSITIONS`): ``acknowledged -> inProgress <-> pending / held``,
``inProgress -> resolved -> closed`` (a resolved ticket may be reopened to
``inProgress``), ``cancelled`` from any open state (acknowledged, inProgress, pending,
held). Anything else raises :class:`IllegalTransitionError`; every change is written to
``state_history`` (entity ``trouble_ticket``).

:func:`sync_tickets` applies a :class:`TicketPolicy` after an alarm run: an open alarm that
is service-affecting and critical or major (by default) and not yet on a ticket either
joins an open alarm-ticket it correlates with - one with an alarm on the same object, or
on an exporter / interface that carried the alarmed subscription's traffic - or opens a
new one. An open alarm-ticket takes the severity of its worst open alarm when that is
higher (never lowered). When every alarm linked to an open ticket has cleared, the
ticket is marked *resolvable* (column ``resolvable`` and a ``state_history`` note); with
``auto_resolve`` an alarm-opened ticket then moves on to ``resolved``.

Affected customers: ``subscription:N`` -> product N -> billing account -> customer. For
exporter and interface objects the caller may pass ``served`` (object -> subscription ids
whose traffic went through it, which ``bss.assurance.run`` derives from the flows it reads);
without it those alarms affect no customer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from bss.assurance.alarms import Alarm, get_alarm, list_alarms
from bss.db import record_transition, transaction, utc_now
from bss.errors import IllegalTransitionError, NotFoundError, ValidationError

__all__ = [
    "OPEN_TICKET_STATES",
    "TICKET_TRANSITIONS",
    "Ticket",
    "TicketNote",
    "TicketPolicy",
    "TicketSyncSummary",
    "customers_for_object",
    "get_ticket",
    "link_alarm",
    "list_tickets",
    "note_ticket",
    "open_ticket",
    "sync_tickets",
    "ticket_notes",
    "transition_ticket",
]

TICKET_TRANSITIONS: dict[str, frozenset[str]] = {
    "acknowledged": frozenset({"inProgress", "cancelled"}),
    "inProgress": frozenset({"pending", "held", "resolved", "cancelled"}),
    "pending": frozenset({"inProgress", "cancelled"}),
    "held": frozenset({"inProgress", "cancelled"}),
    "resolved": frozenset({"closed", "inProgress"}),
}
OPEN_TICKET_STATES = ("acknowledged", "inProgress", "pending", "held")
_SEVERITIES = ("critical", "major", "minor", "warning")
_PRIORITY = {"critical": 1, "major": 2, "minor": 3, "warning": 4}
_TICKET_TYPES = ("networkFault", "serviceProblem", "customerComplaint", "securityIncident", "other")


@dataclass(frozen=True)
class Ticket:
    id: int
    name: str
    description: str
    severity: str
    priority: int
    ticket_type: str
    status: str
    status_reason: str
    origin: str
    resolvable: bool
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    alarm_ids: tuple[int, ...]
    customer_ids: tuple[int, ...]


@dataclass(frozen=True)
class TicketNote:
    ticket_id: int
    note_no: int
    author: str
    text: str
    at: datetime


@dataclass(frozen=True)
class TicketPolicy:
    """Which alarms open tickets, and what happens when their alarms clear."""

    severities: frozenset[str] = frozenset({"critical", "major"})
    service_affecting_only: bool = True
    correlate: bool = True
    auto_resolve: bool = True


@dataclass(frozen=True)
class TicketSyncSummary:
    opened: tuple[int, ...] = ()
    linked: tuple[tuple[int, int], ...] = ()  # (ticket, alarm) joined to an existing ticket
    resolvable: tuple[int, ...] = ()
    resolved: tuple[int, ...] = ()
    escalated: tuple[int, ...] = ()  # severity raised to a linked alarm's


_COLUMNS = (
    "id, name, description, severity, priority, ticket_type, status, status_reason, origin, "
    "resolvable, created_at, updated_at, resolved_at, closed_at"
)


def get_ticket(conn: duckdb.DuckDBPyConnection, ticket_id: int) -> Ticket:
    """A ticket with its linked alarm and customer ids."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM trouble_ticket WHERE id = ?", [ticket_id]
    ).fetchone()
    if row is None:
        raise NotFoundError(f"unknown trouble ticket {ticket_id}")
    alarms = conn.execute(
        "SELECT alarm_id FROM ticket_alarm WHERE ticket_id = ? ORDER BY alarm_id", [ticket_id]
    ).fetchall()
    customers = conn.execute(
        "SELECT customer_id FROM ticket_customer WHERE ticket_id = ? ORDER BY customer_id",
        [ticket_id],
    ).fetchall()
    values: list[Any] = [*row, tuple(a[0] for a in alarms), tuple(c[0] for c in customers)]
    return Ticket(*values)


def list_tickets(conn: duckdb.DuckDBPyConnection, *, open_only: bool = False) -> list[Ticket]:
    """Tickets, newest first (``open_only``: acknowledged, inProgress, pending, held)."""
    where = "status IN ('acknowledged', 'inProgress', 'pending', 'held')" if open_only else "true"
    rows = conn.execute(f"SELECT id FROM trouble_ticket WHERE {where} ORDER BY id DESC").fetchall()
    return [get_ticket(conn, r[0]) for r in rows]


def customers_for_object(
    conn: duckdb.DuckDBPyConnection,
    alarmed_object: str,
    served: Mapping[str, Iterable[int]] | None = None,
) -> list[int]:
    """Customer ids affected by an alarmed object (see the module doc)."""
    kind, _, value = alarmed_object.partition(":")
    if kind == "subscription":
        products = [int(value)] if value.isdigit() else []
    else:
        products = sorted(set((served or {}).get(alarmed_object, ())))
    if not products:
        return []
    marks = ", ".join("?" for _ in products)
    rows = conn.execute(
        "SELECT DISTINCT a.customer_id FROM product p JOIN billing_account a "
        f"ON a.id = p.account_id WHERE p.id IN ({marks}) ORDER BY 1",
        products,
    ).fetchall()
    return [r[0] for r in rows]


def _link_customers(
    conn: duckdb.DuckDBPyConnection, ticket_id: int, customer_ids: Iterable[int]
) -> None:
    have = set(get_ticket(conn, ticket_id).customer_ids)
    for cid in sorted(set(customer_ids) - have):
        conn.execute("INSERT INTO ticket_customer VALUES (?, ?)", [ticket_id, cid])


def open_ticket(
    conn: duckdb.DuckDBPyConnection,
    name: str,
    *,
    severity: str,
    description: str = "",
    ticket_type: str = "networkFault",
    alarm_ids: Iterable[int] = (),
    customer_ids: Iterable[int] = (),
    origin: str = "manual",
    at: datetime | None = None,
) -> Ticket:
    """Open a ticket in state ``acknowledged``, linked to alarms and customers."""
    if not name.strip():
        raise ValidationError("trouble ticket: a name is required")
    if severity not in _SEVERITIES:
        raise ValidationError(f"trouble ticket {name!r}: severity {severity!r} not one of "
                              f"{', '.join(_SEVERITIES)}")  # fmt: skip
    if ticket_type not in _TICKET_TYPES:
        raise ValidationError(f"trouble ticket {name!r}: type {ticket_type!r} not known")
    alarms = [get_alarm(conn, a) for a in alarm_ids]
    when = at or utc_now()
    with transaction(conn):
        row = conn.execute(
            "INSERT INTO trouble_ticket (name, description, severity, priority, ticket_type, "
            "status, origin, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'acknowledged', ?, "
            "?, ?) RETURNING id",
            [name, description, severity, _PRIORITY[severity], ticket_type, origin, when, when],
        ).fetchone()
        assert row is not None
        record_transition(conn, "trouble_ticket", row[0], None, "acknowledged",
                          f"opened ({origin})", at=when)  # fmt: skip
        for alarm in alarms:
            conn.execute("INSERT INTO ticket_alarm VALUES (?, ?, ?)", [row[0], alarm.id, when])
        _link_customers(conn, row[0], customer_ids)
    return get_ticket(conn, row[0])


def link_alarm(
    conn: duckdb.DuckDBPyConnection,
    ticket_id: int,
    alarm_id: int,
    *,
    customer_ids: Iterable[int] = (),
    at: datetime | None = None,
) -> Ticket:
    """Attach an alarm (and its customers) to a ticket; an open alarm makes it unresolvable."""
    ticket = get_ticket(conn, ticket_id)
    alarm = get_alarm(conn, alarm_id)
    when = at or utc_now()
    with transaction(conn):
        if alarm_id not in ticket.alarm_ids:
            conn.execute("INSERT INTO ticket_alarm VALUES (?, ?, ?)", [ticket_id, alarm_id, when])
        _link_customers(conn, ticket_id, customer_ids)
        if ticket.resolvable and alarm.is_open:
            conn.execute(
                "UPDATE trouble_ticket SET resolvable = false, updated_at = ? WHERE id = ?",
                [max(when, ticket.updated_at), ticket_id],
            )
            record_transition(conn, "trouble_ticket", ticket_id, ticket.status, ticket.status,
                              f"not resolvable: alarm {alarm_id} open", at=when)  # fmt: skip
    return get_ticket(conn, ticket_id)


def transition_ticket(
    conn: duckdb.DuckDBPyConnection,
    ticket_id: int,
    to_state: str,
    reason: str = "",
    *,
    at: datetime | None = None,
) -> Ticket:
    """Move a ticket along the TMF621 lifecycle; illegal moves raise."""
    ticket = get_ticket(conn, ticket_id)
    if to_state not in TICKET_TRANSITIONS.get(ticket.status, frozenset()):
        raise IllegalTransitionError(
            f"trouble ticket {ticket_id}: cannot go from {ticket.status} to {to_state}"
        )
    when = max(at or utc_now(), ticket.updated_at)
    resolved_at = ticket.resolved_at
    if to_state == "resolved":
        resolved_at = when
    elif to_state == "inProgress":
        resolved_at = None  # reopened
    closed_at = when if to_state in ("closed", "cancelled") else None
    with transaction(conn):
        conn.execute(
            "UPDATE trouble_ticket SET status = ?, status_reason = ?, updated_at = ?, "
            "resolved_at = ?, closed_at = ? WHERE id = ?",
            [to_state, reason, when, resolved_at, closed_at, ticket_id],
        )
        record_transition(conn, "trouble_ticket", ticket_id, ticket.status, to_state, reason,
                          at=when)  # fmt: skip
    return get_ticket(conn, ticket_id)


def note_ticket(
    conn: duckdb.DuckDBPyConnection,
    ticket_id: int,
    author: str,
    text: str,
    *,
    at: datetime | None = None,
) -> TicketNote:
    """Append a note (comment) to a ticket."""
    get_ticket(conn, ticket_id)
    if not author or not text.strip():
        raise ValidationError(f"trouble ticket {ticket_id}: a note needs an author and text")
    when = at or utc_now()
    with transaction(conn):
        row = conn.execute(
            "SELECT coalesce(max(note_no), 0) + 1 FROM ticket_note WHERE ticket_id = ?",
            [ticket_id],
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO ticket_note VALUES (?, ?, ?, ?, ?)",
            [ticket_id, row[0], author, text, when],
        )
    return TicketNote(ticket_id, int(row[0]), author, text, when)


def ticket_notes(conn: duckdb.DuckDBPyConnection, ticket_id: int) -> list[TicketNote]:
    """A ticket's notes in order."""
    rows = conn.execute(
        "SELECT ticket_id, note_no, author, text, created_at FROM ticket_note "
        "WHERE ticket_id = ? ORDER BY note_no",
        [ticket_id],
    ).fetchall()
    return [TicketNote(*r) for r in rows]


def _qualifies(alarm: Alarm, policy: TicketPolicy) -> bool:
    return alarm.perceived_severity in policy.severities and (
        alarm.service_affecting or not policy.service_affecting_only
    )


def _correlated_ticket(
    conn: duckdb.DuckDBPyConnection, alarm: Alarm, carriers: set[str]
) -> int | None:
    """An open alarm-ticket holding an alarm on this object or on one that carried it."""
    objects = sorted({alarm.alarmed_object, *carriers})
    marks = ", ".join("?" for _ in objects)
    row = conn.execute(
        "SELECT t.id FROM trouble_ticket t JOIN ticket_alarm l ON l.ticket_id = t.id "
        "JOIN alarm a ON a.id = l.alarm_id WHERE t.origin = 'alarm' AND t.status IN "
        f"('acknowledged', 'inProgress', 'pending', 'held') AND a.alarmed_object IN ({marks}) "
        "ORDER BY t.id LIMIT 1",
        objects,
    ).fetchone()
    return None if row is None else int(row[0])


def _ticket_for(alarm: Alarm) -> tuple[str, str]:
    security = alarm.alarm_type == "securityServiceOrMechanismViolation"
    name = f"{alarm.probable_cause} on {alarm.alarmed_object}"
    return name, "securityIncident" if security else "networkFault"


def sync_tickets(
    conn: duckdb.DuckDBPyConnection,
    *,
    at: datetime,
    policy: TicketPolicy | None = None,
    served: Mapping[str, Iterable[int]] | None = None,
) -> TicketSyncSummary:
    """Open/link tickets for qualifying alarms, then mark (and auto-resolve) tickets whose
    alarms have all cleared. Atomic."""
    p = policy or TicketPolicy()
    served_sets = {k: set(v) for k, v in (served or {}).items()}
    carriers: dict[str, set[str]] = {}
    for carrier, subs in served_sets.items():
        for sub in subs:
            carriers.setdefault(f"subscription:{sub}", set()).add(carrier)
    opened: list[int] = []
    linked: list[tuple[int, int]] = []
    resolvable: list[int] = []
    resolved: list[int] = []
    with transaction(conn):
        on_ticket = {r[0] for r in conn.execute("SELECT alarm_id FROM ticket_alarm").fetchall()}
        fresh = [a for a in list_alarms(conn, open_only=True)
                 if a.id not in on_ticket and _qualifies(a, p)]  # fmt: skip
        # network elements first, so alarms on the subscriptions they carry can join them
        fresh.sort(key=lambda a: (a.alarmed_object.startswith("subscription:"), a.id))
        for alarm in fresh:
            customers = customers_for_object(conn, alarm.alarmed_object, served_sets)
            target = (
                _correlated_ticket(conn, alarm, carriers.get(alarm.alarmed_object, set()))
                if p.correlate
                else None
            )
            if target is not None:
                link_alarm(conn, target, alarm.id, customer_ids=customers, at=at)
                linked.append((target, alarm.id))
                continue
            name, kind = _ticket_for(alarm)
            ticket = open_ticket(
                conn, name, severity=alarm.perceived_severity, ticket_type=kind,
                description=alarm.details, alarm_ids=[alarm.id], customer_ids=customers,
                origin="alarm", at=at,
            )  # fmt: skip
            opened.append(ticket.id)
        escalated = _escalate(conn, at)
        resolvable, resolved = _mark_resolvable(conn, at, p)
    return TicketSyncSummary(
        tuple(opened), tuple(linked), tuple(resolvable), tuple(resolved), tuple(escalated)
    )


def _escalate(conn: duckdb.DuckDBPyConnection, at: datetime) -> list[int]:
    """Raise an open alarm-ticket's severity (and priority) to its worst open alarm's."""
    rows = conn.execute(
        "SELECT t.id, t.status, t.severity, min(CASE a.perceived_severity WHEN 'critical' "
        "THEN 1 WHEN 'major' THEN 2 WHEN 'minor' THEN 3 WHEN 'warning' THEN 4 END) "
        "FROM trouble_ticket t JOIN ticket_alarm l ON l.ticket_id = t.id JOIN alarm a "
        "ON a.id = l.alarm_id WHERE t.origin = 'alarm' AND t.status IN ('acknowledged', "
        "'inProgress', 'pending', 'held') AND a.state <> 'cleared' GROUP BY ALL ORDER BY 1"
    ).fetchall()
    out: list[int] = []
    for ticket_id, status, severity, worst in rows:
        if worst is None or worst >= _PRIORITY[severity]:
            continue
        to = _SEVERITIES[worst - 1]
        conn.execute(
            "UPDATE trouble_ticket SET severity = ?, priority = ?, updated_at = "
            "greatest(updated_at, ?) WHERE id = ?",
            [to, worst, at, ticket_id],
        )
        reason = f"severity {severity} -> {to}: a linked alarm is {to}"
        record_transition(conn, "trouble_ticket", ticket_id, status, status, reason, at=at)
        out.append(ticket_id)
    return out


def _mark_resolvable(
    conn: duckdb.DuckDBPyConnection, at: datetime, policy: TicketPolicy
) -> tuple[list[int], list[int]]:
    rows = conn.execute(
        "SELECT t.id FROM trouble_ticket t JOIN ticket_alarm l ON l.ticket_id = t.id "
        "JOIN alarm a ON a.id = l.alarm_id WHERE t.status IN "
        "('acknowledged', 'inProgress', 'pending', 'held') AND NOT t.resolvable "
        "GROUP BY t.id HAVING bool_and(a.state = 'cleared') ORDER BY t.id"
    ).fetchall()
    marked: list[int] = []
    resolved: list[int] = []
    for (ticket_id,) in rows:
        ticket = get_ticket(conn, ticket_id)
        when = max(at, ticket.updated_at)
        conn.execute(
            "UPDATE trouble_ticket SET resolvable = true, updated_at = ? WHERE id = ?",
            [when, ticket_id],
        )
        record_transition(conn, "trouble_ticket", ticket_id, ticket.status, ticket.status,
                          "resolvable: all linked alarms cleared", at=when)  # fmt: skip
        marked.append(ticket_id)
        if policy.auto_resolve and ticket.origin == "alarm":
            if ticket.status != "inProgress":
                transition_ticket(conn, ticket_id, "inProgress", "auto: alarms cleared", at=when)
            transition_ticket(conn, ticket_id, "resolved", "auto: all linked alarms cleared",
                              at=when)  # fmt: skip
            resolved.append(ticket_id)
    return marked, resolved

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from assurance_builders import customers_with_ip_blocks

from bss.assurance.alarms import clear_alarm, raise_alarm
from bss.assurance.tickets import (
    OPEN_TICKET_STATES,
    TICKET_TRANSITIONS,
    TicketPolicy,
    customers_for_object,
    get_ticket,
    link_alarm,
    list_tickets,
    note_ticket,
    open_ticket,
    sync_tickets,
    ticket_notes,
    transition_ticket,
)
from bss.errors import IllegalTransitionError, NotFoundError, ValidationError

T = datetime(2026, 3, 23, 12, 0, tzinfo=UTC)
STATES = ("acknowledged", "inProgress", "pending", "held", "resolved", "closed", "cancelled")
SILENT = ("communicationsAlarm", "lossOfSignal", "exporter_silent/silent_minutes")


def _history(conn: duckdb.DuckDBPyConnection, tid: int) -> list[tuple[str, str, str]]:
    return conn.execute(
        "SELECT coalesce(from_state, ''), to_state, reason FROM state_history "
        "WHERE entity = 'trouble_ticket' AND entity_id = ? ORDER BY id",
        [str(tid)],
    ).fetchall()


def _ticket_in(conn: duckdb.DuckDBPyConnection, path: list[str]) -> int:
    t = open_ticket(conn, "t", severity="major", at=T)
    for s in path:
        transition_ticket(conn, t.id, s, at=T)
    return t.id


# how to reach each state from acknowledged
_PATHS = {
    "acknowledged": [],
    "inProgress": ["inProgress"],
    "pending": ["inProgress", "pending"],
    "held": ["inProgress", "held"],
    "resolved": ["inProgress", "resolved"],
    "closed": ["inProgress", "resolved", "closed"],
    "cancelled": ["cancelled"],
}


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(STATES, STATES)))
def test_lifecycle_matrix(conn: duckdb.DuckDBPyConnection, src: str, dst: str) -> None:
    tid = _ticket_in(conn, _PATHS[src])
    if dst in TICKET_TRANSITIONS.get(src, frozenset()):
        t = transition_ticket(conn, tid, dst, "why", at=T + timedelta(1))
        assert t.status == dst
        assert _history(conn, tid)[-1] == (src, dst, "why")
        assert (t.closed_at is not None) == (dst in ("closed", "cancelled"))
    else:
        with pytest.raises(IllegalTransitionError):
            transition_ticket(conn, tid, dst)
        assert get_ticket(conn, tid).status == src


def test_cancel_from_every_open_state_only() -> None:
    for state in STATES:
        allowed = "cancelled" in TICKET_TRANSITIONS.get(state, frozenset())
        assert allowed == (state in OPEN_TICKET_STATES)


def test_open_by_hand_notes_and_customers(conn: duckdb.DuckDBPyConnection) -> None:
    products = customers_with_ip_blocks(conn, ["198.51.100.0/28", "198.51.100.16/28"])
    assert customers_for_object(conn, f"subscription:{products[1]}") == [2]
    assert customers_for_object(conn, "exporter:192.0.2.1") == []
    assert customers_for_object(conn, "exporter:192.0.2.1", {"exporter:192.0.2.1": products}) == [
        1,
        2,
    ]
    a = raise_alarm(conn, "subscription:1", "qualityOfServiceAlarm", "congestion", "", "major")
    t = open_ticket(
        conn, "slow line", severity="major", ticket_type="customerComplaint",
        alarm_ids=[a.id], customer_ids=[1], at=T,
    )  # fmt: skip
    assert (t.status, t.origin, t.priority, t.alarm_ids, t.customer_ids) == (
        "acknowledged",
        "manual",
        2,
        (a.id,),
        (1,),
    )
    note_ticket(conn, t.id, "agent", "customer called", at=T)
    note_ticket(conn, t.id, "noc", "fixed", at=T)
    assert [n.text for n in ticket_notes(conn, t.id)] == ["customer called", "fixed"]
    with pytest.raises(ValidationError):
        open_ticket(conn, "x", severity="apocalyptic")
    with pytest.raises(ValidationError):
        open_ticket(conn, " ", severity="major")
    with pytest.raises(NotFoundError):
        open_ticket(conn, "x", severity="major", alarm_ids=[999])
    with pytest.raises(NotFoundError):
        get_ticket(conn, 999)
    assert [x.id for x in list_tickets(conn, open_only=True)] == [t.id]


def test_sync_opens_correlates_and_resolves(conn: duckdb.DuckDBPyConnection) -> None:
    products = customers_with_ip_blocks(conn, ["198.51.100.0/28", "198.51.100.16/28"])
    served = {"exporter:192.0.2.2": [products[1]]}
    silent = raise_alarm(conn, "exporter:192.0.2.2", *SILENT, "major", at=T,
                         service_affecting=True)  # fmt: skip
    low = raise_alarm(conn, f"subscription:{products[1]}", "qualityOfServiceAlarm",
                      "bandwidthReduced", "traffic_low/bytes", "critical", at=T,
                      service_affecting=True)  # fmt: skip
    # not service affecting, or too mild: no ticket
    raise_alarm(conn, f"subscription:{products[0]}", "qualityOfServiceAlarm",
                "thresholdCrossed", "traffic_high/bytes", "critical", at=T)  # fmt: skip
    raise_alarm(conn, "exporter:192.0.2.3", *SILENT, "minor", at=T, service_affecting=True)
    s = sync_tickets(conn, at=T, served=served)
    assert len(s.opened) == 1
    tid = s.opened[0]
    assert s.linked == ((tid, low.id),)
    assert s.escalated == (tid,)  # opened major, joined by a critical alarm
    t = get_ticket(conn, tid)
    assert (t.alarm_ids, t.customer_ids, t.severity, t.priority, t.origin) == (
        (silent.id, low.id),
        (2,),
        "critical",
        1,
        "alarm",
    )
    assert sync_tickets(conn, at=T, served=served).opened == ()  # idempotent
    clear_alarm(conn, silent.id, at=T + timedelta(minutes=5))
    assert sync_tickets(conn, at=T + timedelta(minutes=5)).resolvable == ()
    clear_alarm(conn, low.id, at=T + timedelta(minutes=10))
    s2 = sync_tickets(conn, at=T + timedelta(minutes=10))
    assert (s2.resolvable, s2.resolved) == ((tid,), (tid,))
    t = get_ticket(conn, tid)
    assert (t.status, t.resolvable) == ("resolved", True)
    assert [h[1] for h in _history(conn, tid)] == [
        "acknowledged",
        "acknowledged",  # the escalation note
        "acknowledged",  # the resolvable note
        "inProgress",
        "resolved",
    ]
    assert "major -> critical" in _history(conn, tid)[1][2]
    assert "resolvable" in _history(conn, tid)[2][2]
    assert transition_ticket(conn, tid, "closed").status == "closed"


def test_resolvable_without_auto_resolve_and_relink(conn: duckdb.DuckDBPyConnection) -> None:
    a = raise_alarm(conn, "exporter:192.0.2.2", *SILENT, "critical", at=T, service_affecting=True)
    policy = TicketPolicy(auto_resolve=False)
    tid = sync_tickets(conn, at=T, policy=policy).opened[0]
    clear_alarm(conn, a.id, at=T + timedelta(minutes=1))
    assert sync_tickets(conn, at=T + timedelta(minutes=1), policy=policy).resolvable == (tid,)
    t = get_ticket(conn, tid)
    assert (t.status, t.resolvable) == ("acknowledged", True)
    # a recurrence is a new alarm; linking it makes the ticket unresolvable again
    b = raise_alarm(conn, "exporter:192.0.2.2", *SILENT, "major", at=T + timedelta(minutes=2))
    assert b.id != a.id
    assert not link_alarm(conn, tid, b.id).resolvable
    # policy: minor alarms too, service-affecting or not
    raise_alarm(conn, "source:203.0.113.9", "securityServiceOrMechanismViolation",
                "intrusionDetection", "port_scan/distinct_dst_ports", "minor", at=T)  # fmt: skip
    wide = TicketPolicy(severities=frozenset({"minor"}), service_affecting_only=False)
    opened = sync_tickets(conn, at=T, policy=wide).opened
    assert len(opened) == 1
    assert get_ticket(conn, opened[0]).ticket_type == "securityIncident"

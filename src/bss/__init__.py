"""BSS on DuckDB: customers, catalog, orders, subscriptions, billing runs, bills, assurance.

Also the analyst entry point: ``from bss import Workspace``. Names are imported on first
use (PEP 562), so the CLI starts without loading polars, DuckDB or Numba.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collectors.lazy import lazy_getattr

from .errors import (
    BillingError,
    BssError,
    IllegalTransitionError,
    NotFoundError,
    ValidationError,
    WorkspaceLockedError,
)

if TYPE_CHECKING:
    from .alarms import apply_detections, list_alarms, raise_alarm
    from .analyst import Workspace
    from .assurance import run_assurance
    from .bill_export import bills_for_period, export_bills
    from .billing_run import BillingRunResult, run_billing
    from .catalog import add_offering, add_price, add_specification
    from .customers import create_account, create_customer, set_tax_rate
    from .db import connect
    from .demo import run_demo
    from .orders import OrderItem, create_order, process_order, transition_order
    from .query import top_talkers
    from .seed import apply_seed, load_seed_file
    from .tickets import open_ticket, transition_ticket
    from .what_if import compare_tariffs

_LAZY = {
    "apply_detections": "alarms",
    "list_alarms": "alarms",
    "raise_alarm": "alarms",
    "Workspace": "analyst",
    "run_assurance": "assurance",
    "bills_for_period": "bill_export",
    "export_bills": "bill_export",
    "BillingRunResult": "billing_run",
    "run_billing": "billing_run",
    "add_offering": "catalog",
    "add_price": "catalog",
    "add_specification": "catalog",
    "create_account": "customers",
    "create_customer": "customers",
    "set_tax_rate": "customers",
    "connect": "db",
    "run_demo": "demo",
    "OrderItem": "orders",
    "create_order": "orders",
    "process_order": "orders",
    "transition_order": "orders",
    "top_talkers": "query",
    "apply_seed": "seed",
    "load_seed_file": "seed",
    "open_ticket": "tickets",
    "transition_ticket": "tickets",
    "compare_tariffs": "what_if",
}

__all__ = [
    "BillingError",
    "BillingRunResult",
    "BssError",
    "IllegalTransitionError",
    "NotFoundError",
    "OrderItem",
    "ValidationError",
    "Workspace",
    "WorkspaceLockedError",
    "add_offering",
    "add_price",
    "add_specification",
    "apply_detections",
    "apply_seed",
    "bills_for_period",
    "compare_tariffs",
    "connect",
    "create_account",
    "create_customer",
    "create_order",
    "export_bills",
    "list_alarms",
    "load_seed_file",
    "open_ticket",
    "process_order",
    "raise_alarm",
    "run_assurance",
    "run_billing",
    "run_demo",
    "set_tax_rate",
    "top_talkers",
    "transition_order",
    "transition_ticket",
]


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return __all__

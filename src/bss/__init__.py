"""BSS on DuckDB: customers, catalog, orders, subscriptions, billing runs, bills, assurance.

Also the analyst entry point: ``from bss import Workspace``. Names are imported on first
use (PEP 562), so the CLI starts without loading polars, DuckDB or Numba.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bss.errors import (
    BillingError,
    BssError,
    IllegalTransitionError,
    NotFoundError,
    ValidationError,
    WorkspaceLockedError,
)
from collectors.lazy import lazy_getattr

if TYPE_CHECKING:
    from bss.analyst.api import Workspace
    from bss.analyst.query import top_talkers
    from bss.assurance.alarms import apply_detections, list_alarms, raise_alarm
    from bss.assurance.run import run_assurance
    from bss.assurance.tickets import open_ticket, transition_ticket
    from bss.billing.export import bills_for_period, export_bills
    from bss.billing.run import BillingRunResult, run_billing
    from bss.billing.what_if import compare_tariffs
    from bss.catalog import add_offering, add_price, add_specification
    from bss.cli.demo import run_demo
    from bss.customers import create_account, create_customer, set_tax_rate
    from bss.db import connect
    from bss.orders import OrderItem, create_order, process_order, transition_order
    from bss.seed import apply_seed, load_seed_file

_LAZY = {
    "apply_detections": "assurance.alarms",
    "list_alarms": "assurance.alarms",
    "raise_alarm": "assurance.alarms",
    "Workspace": "analyst.api",
    "run_assurance": "assurance.run",
    "bills_for_period": "billing.export",
    "export_bills": "billing.export",
    "BillingRunResult": "billing.run",
    "run_billing": "billing.run",
    "add_offering": "catalog",
    "add_price": "catalog",
    "add_specification": "catalog",
    "create_account": "customers",
    "create_customer": "customers",
    "set_tax_rate": "customers",
    "connect": "db",
    "run_demo": "cli.demo",
    "OrderItem": "orders",
    "create_order": "orders",
    "process_order": "orders",
    "transition_order": "orders",
    "top_talkers": "analyst.query",
    "apply_seed": "seed",
    "load_seed_file": "seed",
    "open_ticket": "assurance.tickets",
    "transition_ticket": "assurance.tickets",
    "compare_tariffs": "billing.what_if",
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

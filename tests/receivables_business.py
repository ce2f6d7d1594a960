"""A small business for the receivables tests (tests/bss/receivables, tests/bss/cli): two
accounts (EUR, JPY), monthly fees, an offering with an SLA; billed without usage."""

from __future__ import annotations

import shutil
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from package_data import DEMO

from bss.billing.run import run_billing
from bss.db import connect
from bss.seed import apply_seed
from collectors.workspace import WorkspacePaths

NOW = datetime(2027, 3, 1, tzinfo=UTC)

BUSINESS = """
[[tax_rate]]
jurisdiction = "FR"
name = "TVA 20 %"
rate = "0.20"

[[tax_rate]]
jurisdiction = "JP"
name = "JCT 10 %"
rate = "0.10"

[[specification]]
id = "link"
name = "Business link"

[[offering]]
id = "link-100"
specification = "link"
name = "Link 100"
valid_from = "2026-01-01T00:00:00Z"
sla = { availability = "99.9", credits = [ { below = "99.9", credit = "10" },
                                           { below = "99", credit = "25" } ] }

[[offering.price]]
id = "link-100-monthly"
name = "monthly fee"
type = "recurring"
amount = "310.00"
currency = "EUR"

[[offering]]
id = "link-jp"
specification = "link"
name = "Link JP"
valid_from = "2026-01-01T00:00:00Z"

[[offering.price]]
id = "link-jp-monthly"
name = "monthly fee"
type = "recurring"
amount = "12345"
currency = "JPY"

[[customer]]
id = "C1"
name = "Acme SARL"

[[customer.account]]
id = "A1"
name = "Acme"
currency = "EUR"
tax_jurisdiction = "FR"
payment_terms_days = 14

[[customer]]
id = "C2"
name = "Nippon KK"

[[customer.account]]
id = "A2"
name = "Nippon"
currency = "JPY"
tax_jurisdiction = "JP"

[[order]]
id = "O1"
account = "A1"
requested_start = "2026-10-01T00:00:00Z"
item = [ { offering = "link-100", service_ids = ["ip:192.0.2.0/28"] } ]

[[order]]
id = "O2"
account = "A2"
requested_start = "2026-10-01T00:00:00Z"
item = [ { offering = "link-jp", service_ids = ["ip:198.51.100.0/28"] } ]
"""


def billed_workspace(folder: Path, periods: tuple[str, ...] = ("2026-10",)) -> WorkspacePaths:
    """A workspace in ``folder`` with the business loaded and ``periods`` billed."""
    workspace = WorkspacePaths(folder).ensure()
    shutil.copytree(DEMO / "tariffs", workspace.tariffs, dirs_exist_ok=True)
    conn = connect(workspace)
    try:
        apply_seed(conn, tomllib.loads(BUSINESS), "business.toml")
        for period in periods:
            run_billing(conn, workspace, period, now=NOW, export=False)
    finally:
        conn.close()
    return workspace


def copy_workspace(database: Path, folder: Path) -> WorkspacePaths:
    """A workspace in ``folder`` holding a copy of ``database`` (and the demo's tariffs)."""
    workspace = WorkspacePaths(folder).ensure()
    shutil.copytree(DEMO / "tariffs", workspace.tariffs, dirs_exist_ok=True)
    shutil.copyfile(database, workspace.database)
    return workspace

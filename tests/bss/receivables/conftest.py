"""Fixtures of the receivables tests: the small business of tests/receivables_business.py."""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from package_data import DEMO
from receivables_business import BUSINESS, billed_workspace, copy_workspace

from bss.db import connect
from bss.seed import apply_seed
from collectors.workspace import WorkspacePaths


@pytest.fixture
def business(conn: duckdb.DuckDBPyConnection, workspace: WorkspacePaths) -> WorkspacePaths:
    """The business loaded, the demo's tariffs installed, nothing billed."""
    shutil.copytree(DEMO / "tariffs", workspace.tariffs, dirs_exist_ok=True)
    apply_seed(conn, tomllib.loads(BUSINESS), "business.toml")
    return workspace


@pytest.fixture(scope="session")
def billed_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file with the business billed for 2026-10 (copy it: never written)."""
    return billed_workspace(tmp_path_factory.mktemp("ar") / "ws").database


@pytest.fixture
def billed_ws(billed_db: Path, tmp_path: Path) -> WorkspacePaths:
    """A workspace with a fresh copy of ``billed_db``."""
    return copy_workspace(billed_db, tmp_path / "billed")


@pytest.fixture
def billed(billed_ws: WorkspacePaths) -> Iterator[duckdb.DuckDBPyConnection]:
    """``billed_ws``'s database, open."""
    conn = connect(billed_ws)
    yield conn
    conn.close()

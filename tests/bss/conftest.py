from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from bss.db import connect
from collectors.workspace import WorkspacePaths


@pytest.fixture
def workspace(tmp_path: Path) -> WorkspacePaths:
    return WorkspacePaths(tmp_path / "ws").ensure()


@pytest.fixture
def conn(workspace: WorkspacePaths) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect(workspace)
    yield connection
    connection.close()

"""Where a deployment keeps its state: one folder, laid out the same everywhere.

``W/flows``, ``W/usage``, ``W/rated``, ``W/suspense``, ``W/rejected`` and
``W/counters`` are hive-partitioned Parquet datasets (``W/quarantine`` holds rejected
datagrams; ``W/broken`` the unreadable parts ``check --quarantine`` moved aside);
``W/bss.duckdb`` holds the business state; ``W/tariffs`` the tariff files in force;
``W/state`` the collectors' state (templates, sequence numbers, ingest ledger);
``W/reports`` charts and exports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from collectors.errors import WorkspaceError

__all__ = [
    "DEFAULT_WORKSPACE",
    "WORKSPACE_ENV",
    "WorkspacePaths",
    "resolve_workspace",
    "visible_parts",
]

WORKSPACE_ENV = "RATING_ENGINE_WORKSPACE"
DEFAULT_WORKSPACE = "workspace"


@dataclass(frozen=True)
class WorkspacePaths:
    """The fixed layout below a workspace root."""

    root: Path

    @property
    def flows(self) -> Path:
        return self.root / "flows"

    @property
    def packets(self) -> Path:
        return self.root / "packets"

    @property
    def counters(self) -> Path:
        return self.root / "counters"

    @property
    def usage(self) -> Path:
        return self.root / "usage"

    @property
    def quantities(self) -> Path:
        """Quantity-change records of prorated metered quantities (lines, seats, IP blocks):
        ``rating_engine.rating.prorated.QUANTITY_CHANGE_SCHEMA``, by day of valid_from."""
        return self.root / "quantities"

    @property
    def rated(self) -> Path:
        return self.root / "rated"

    @property
    def suspense(self) -> Path:
        return self.root / "suspense"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def broken(self) -> Path:
        """Parquet parts ``rating-engine check --quarantine`` moved aside, per check run."""
        return self.root / "broken"

    @property
    def collector_stats(self) -> Path:
        return self.root / "collector_stats"

    @property
    def tariffs(self) -> Path:
        return self.root / "tariffs"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def database(self) -> Path:
        return self.root / "bss.duckdb"

    def ensure(self) -> WorkspacePaths:
        """Create the root and the state, report and tariff folders; datasets appear when
        written."""
        try:
            for path in (self.root, self.state, self.reports, self.tariffs):
                path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(f"cannot create workspace {self.root}: {exc.strerror}") from exc
        return self


def resolve_workspace(path: str | os.PathLike[str] | None = None) -> WorkspacePaths:
    """``path``, else ``$RATING_ENGINE_WORKSPACE``, else ``./workspace``."""
    chosen = path if path is not None else os.environ.get(WORKSPACE_ENV, DEFAULT_WORKSPACE)
    root = Path(chosen).expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"workspace {root} exists and is not a folder")
    return WorkspacePaths(root)


#: Names of files being written or set aside in a dataset folder (temporary, quarantined).
HIDDEN_PREFIXES = (".", "_")


def visible_parts(root: Path) -> Iterator[Path]:
    """The Parquet files of a dataset folder, unsorted and lazily (a caller that needs one
    stops at the first); temporary and hidden files are skipped. Here, not in
    :mod:`collectors.dataset`: a query listing parts must not load the Arrow dataset
    scanner that module imports."""
    if root.exists():
        yield from (p for p in root.rglob("*.parquet") if not p.name.startswith(HIDDEN_PREFIXES))

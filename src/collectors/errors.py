"""The error tree shared by every layer.

``RatingEngineError`` is the common root; each package has one base below it
(``CollectorError`` here, ``RatingError`` in rating_engine, ``BssError`` in bss).
Messages name the file, the record and the field wherever they are known.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CollectorError",
    "CorruptFileError",
    "DecodeError",
    "IngestError",
    "RatingEngineError",
    "WorkspaceError",
]


class RatingEngineError(Exception):
    """Root of every error this project raises on purpose.

    ``details``, when set, is plain data the CLI adds to its ``--json`` error object.
    """

    details: dict[str, Any] | None = None


class CollectorError(RatingEngineError):
    """Base for the collectors package."""


class WorkspaceError(CollectorError):
    """A workspace folder or dataset cannot be used."""


class CorruptFileError(WorkspaceError):
    """A stored file of the workspace (a Parquet part, the DuckDB file) cannot be read back.

    ``path`` names the file; the message says what to do (``rating-engine check``, a backup).
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class DecodeError(CollectorError):
    """Bytes that cannot be decoded; carries where and why.

    ``reason`` is a short machine-readable code (counted per reason in stats),
    the message is for people.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        source: str | None = None,
        offset: int | None = None,
        field: str | None = None,
    ) -> None:
        where = ", ".join(
            part
            for part in (
                f"file {source}" if source else "",
                f"offset {offset}" if offset is not None else "",
                f"field {field}" if field else "",
            )
            if part
        )
        super().__init__(f"{message} ({where})" if where else message)
        self.reason = reason
        self.source = source
        self.offset = offset
        self.field = field


class IngestError(CollectorError):
    """A whole input file is refused (unreadable, already ingested, bad mapping)."""

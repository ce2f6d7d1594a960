"""Where the tests' data files are: ``tests/data`` in the repository, so a fresh clone has them.

``CAPTURES`` holds exporter captures (see ``tests/data/captures/MANIFEST.md`` for origins,
licenses and expected values). No fallback anywhere else: a missing file fails the test.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CAPTURES", "DATA"]

DATA = Path(__file__).resolve().parent / "data"
CAPTURES = DATA / "captures"

"""The worked examples in docs/tariffs.md run as written (doctest)."""

from __future__ import annotations

import doctest
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "tariffs.md"


def test_tariffs_doc_examples_run() -> None:
    result = doctest.testfile(str(DOC), module_relative=False, verbose=False, report=True)
    assert result.attempted > 10  # the rate_usage example is there
    assert result.failed == 0

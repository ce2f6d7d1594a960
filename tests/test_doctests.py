"""The examples in the public functions' docstrings run as written (doctest).

They read the files ``rating-engine examples .`` writes (``traffic.pcap.gz``,
``tariffs/mobile-2026.toml``), so each module's examples run in a folder made that way.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

from bss.cli.main import main

MODULES = [
    "collectors.pcap.reader",  # read_packets
    "collectors.pcap.metering",  # FlowMeter.add(read_packets(...))
    "collectors.usage_records",  # usage_table
    "rating_engine.rating.rate",  # usage_table -> rate_usage
    "rating_engine.traffic.aggregate",  # packets -> flows -> top_n
]


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("examples")
    with pytest.raises(SystemExit) as done:
        main(["--quiet", "examples", str(folder)])
    assert done.value.code in (0, None)
    return folder


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, examples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(examples)
    module = importlib.import_module(name)
    result = doctest.testmod(module, report=True)
    assert result.attempted >= 3, f"{name} has lost its examples"
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed (output above)"

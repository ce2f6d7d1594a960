"""Running the CLI in the test process: exit code and captured output of one command."""

from __future__ import annotations

import pytest

from bss.cli.main import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``rating-engine argv...`` run in this process."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    code = done.value.code
    return (0 if code is None else int(code)), out, err

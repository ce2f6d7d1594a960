"""The CLI's quick option converters give what typer's pydantic converters give: the same
value, or the same error (then typer's own converter words it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer._click import Context
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param

from bss.cli.coercion import QuickParam, _converter, quick_converters

_app = typer.Typer()


@_app.command()
def _every_kind(
    text: Annotated[str, typer.Option()] = "x",
    count: Annotated[int, typer.Option()] = 3,
    top: Annotated[int, typer.Option(min=1)] = 10,
    share: Annotated[float, typer.Option()] = 0.5,
    path: Annotated[Path | None, typer.Option()] = None,
    flag: Annotated[bool, typer.Option()] = False,
    texts: Annotated[list[str] | None, typer.Option()] = None,
    counts: Annotated[list[int] | None, typer.Option()] = None,
    paths: Annotated[list[Path] | None, typer.Argument()] = None,
) -> None:
    """Every kind of option the CLI declares."""


_COMMAND: Any = typer.main.get_command(_app)
_PARAMS = {p.name: p for p in _COMMAND.params}

_NUMBERISH = st.one_of(
    st.integers(-(10**19), 10**19).map(str),  # the quick forms, up to the length they take
    st.from_regex(r"-?0[0-9]{0,3}(\.[0-9]{1,3})?", fullmatch=True),
    st.from_regex(r"[-+ ]?[0-9_]{0,22}(\.[0-9]{0,4})?(e[0-9])? ?", fullmatch=True),
)
_VALUES = st.one_of(
    _NUMBERISH, st.text(max_size=6), st.integers(-(10**20), 10**20), st.floats(), st.booleans()
)


def _outcome(convert: Any, name: str, value: Any) -> tuple[str, str]:
    param = _PARAMS[name]
    try:
        result = convert.coerce(value, param=param, ctx=Context(_COMMAND))
    except BadParameter as exc:
        return "error", exc.format_message()
    except ValueError as exc:  # a NUL byte in a path: not the CLI's error, but the same
        return type(exc).__name__, str(exc)
    return type(result).__name__, repr(result)


def _both(name: str, value: Any) -> tuple[tuple[str, str], tuple[str, str]]:
    descriptor = _PARAMS[name].type_descriptor
    convert = _converter(descriptor.annotation, descriptor.parameter_info)
    assert convert is not None, f"{name}: no quick converter"
    quick = _outcome(QuickParam(descriptor, convert), name, value)
    return quick, _outcome(build_runtime_param(descriptor), name, value)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["count", "top", "share"]), _VALUES)
def test_numbers_as_typer(name: str, value: Any) -> None:
    quick, typers = _both(name, value)
    assert quick == typers


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["text", "flag"]), _VALUES)
def test_single_values_as_typer(name: str, value: Any) -> None:
    quick, typers = _both(name, value)
    assert quick == typers


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["texts", "counts"]), st.lists(_NUMBERISH | st.text(max_size=4), max_size=4))
def test_lists_as_typer(name: str, values: list[str]) -> None:
    for given_as in (values, tuple(values)):
        quick, typers = _both(name, given_as)
        assert quick == typers


@pytest.mark.parametrize("value", ["", "a/b", "./x.csv", "no such dir/f", "a\0b", "-"])
def test_paths_as_typer(value: str, tmp_path: Path) -> None:
    for name, given_as in (("path", value), ("paths", (value, str(tmp_path)))):
        quick, typers = _both(name, given_as)
        assert quick == typers


def test_none_and_help_build_no_pydantic_converter() -> None:
    quick_converters()
    for name in ("path", "texts", "paths", "flag"):
        _PARAMS[name]._runtime_param = None
        assert isinstance(_PARAMS[name].get_runtime_param(), QuickParam)
    assert _outcome(_PARAMS["texts"].get_runtime_param(), "texts", None) == ("tuple", "()")
    assert _outcome(_PARAMS["path"].get_runtime_param(), "path", None) == ("NoneType", "None")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [("text", "src_ip", "src_ip"), ("count", "-12", -12), ("top", "0010", 10),
     ("share", "2.50", 2.5), ("path", "w s", Path("w s")), ("flag", True, True),
     ("texts", ("a", "b"), ["a", "b"]), ("counts", ["7"], [7]),
     ("paths", ("x", "y"), [Path("x"), Path("y")])],
)  # fmt: skip
def test_well_formed_values_never_reach_typers_converter(
    name: str, value: Any, expected: Any
) -> None:
    descriptor = _PARAMS[name].type_descriptor
    convert = _converter(descriptor.annotation, descriptor.parameter_info)
    quick = QuickParam(descriptor, convert)  # type: ignore[arg-type]
    result = quick.coerce(value, param=_PARAMS[name], ctx=Context(_COMMAND))
    assert (result, type(result)) == (expected, type(expected))
    assert quick._typer is None


_OTHER_TYPER_RUN = """
import json, sys
import bss.cli.coercion as coercion
coercion._KNOWN_TYPER = False  # as with a typer other than the pinned series
from bss.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    print(json.dumps([done.code, "pydantic" in sys.modules]))
"""


def test_another_typer_converts_every_value_itself(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    def run(*argv: str) -> tuple[list[Any], str]:
        done = subprocess.run([sys.executable, "-c", _OTHER_TYPER_RUN, *argv],
                              capture_output=True, text=True)  # fmt: skip
        return json.loads(done.stdout.splitlines()[-1]), done.stdout + done.stderr

    ws = str(tmp_path / "ws")
    (code, slow), out = run("-w", ws, "query", "top", "-n", "0", "--json")
    assert (code, slow) == (2, True), out  # typer's own converter (pydantic) refused it
    assert "UsageError" in out
    (code, slow), out = run("-w", ws, "--json", "query", "top", "-n", "3")
    assert (code, slow) == (0, True), out

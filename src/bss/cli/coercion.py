"""Option values converted without pydantic, as typer would convert them.

typer 0.29 converts each option's value through a pydantic ``TypeAdapter`` built the first
time the option is processed, every option of the command, given or not: importing
pydantic and building the validators took ~0.3 s of a ``query top`` process, more than a
small query. The CLI's options are ``str``, ``int`` (with ``min``), ``float``, ``Path``,
``bool`` and lists of them; their well-formed values are converted here exactly as
typer's adapters convert them. Any other type, and any value the quick conversion does
not take (``+5``, ``1_000``, a path that is not readable: an error message or an unusual
form), goes to typer's own converter, so results and error messages stay typer's.
tests/bss/cli/test_cli_coercion.py checks the quick results against typer's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args, get_origin

import typer

# typer 0.29 (pinned in constraints.txt): the converter a parameter uses, and the path checks
# it makes. Private names: with any other typer (pyproject allows a range) nothing is
# replaced and typer converts every value itself - slower to start, the same results.
try:
    from typer._click.exceptions import BadParameter
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer._param_types import coerce_cli_path
    from typer.core import _TyperParameter

    _KNOWN_TYPER = typer.__version__.startswith("0.29.")
except ImportError:  # pragma: no cover - another typer than the pinned one
    _KNOWN_TYPER = False

__all__ = ["QuickParam", "quick_converters"]

_SLOW: Any = object()  # "not converted here: ask typer"
Convert = Callable[[Any, Any, Any], Any]  # (value, param, ctx) -> value or _SLOW


def _str(value: Any, param: Any, ctx: Any) -> Any:
    return value if type(value) is str else _SLOW


def _bool(value: Any, param: Any, ctx: Any) -> Any:
    return value if type(value) is bool else _SLOW  # "yes", "0" ...: typer's


def _digits(value: str) -> bool:
    """An optional minus and ASCII digits: what int() and pydantic read alike."""
    body = value[1:] if value.startswith("-") else value
    return 0 < len(body) <= 18 and body.isascii() and body.isdigit()


def _int(low: float | None, high: float | None) -> Convert:
    def convert(value: Any, param: Any, ctx: Any) -> Any:
        if type(value) is str and _digits(value):
            value = int(value)
        elif type(value) is not int:
            return _SLOW
        if (low is not None and value < low) or (high is not None and value > high):
            return _SLOW  # typer words the error
        return value

    return convert


def _float(value: Any, param: Any, ctx: Any) -> Any:
    if type(value) is float:
        return value
    if type(value) is str:
        whole, dot, fraction = value.partition(".")
        if _digits(whole) and (not dot or (fraction.isascii() and fraction.isdigit())):
            return float(value)
    return _SLOW


def _path(info: Any) -> Convert:
    def convert(value: Any, param: Any, ctx: Any) -> Any:
        if type(value) is str and value and "\0" not in value:
            value = Path(value)  # what pydantic makes of a str for a Path
        elif not isinstance(value, Path):
            return _SLOW
        try:  # typer's own checks (readable, exists, ...) on the Path
            return coerce_cli_path(value, info, path_type=Path, param=param, ctx=ctx)
        except BadParameter:
            return _SLOW  # typer words the error from the text given

    return convert


def _list(item: Convert) -> Convert:
    def convert(value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, list | tuple):
            return _SLOW
        out = [item(v, param, ctx) for v in value]
        return _SLOW if any(v is _SLOW for v in out) else out

    return convert


def _converter(annotation: Any, info: Any) -> Convert | None:
    """The quick conversion for ``annotation`` with typer's ``info``, or None."""
    if info.parser is not None:
        return None
    if get_origin(annotation) is list:
        (inner,) = get_args(annotation)
        item = _converter(inner, info)
        return None if item is None else _list(item)
    if annotation is str:
        return _str
    if annotation is bool:
        return _bool
    if annotation is int and not info.clamp:
        return _int(info.min, info.max)
    if annotation is float and info.min is None and info.max is None:
        return _float
    if annotation is Path and info.path_type is None and not info.allow_dash:
        return _path(info)
    return None


class QuickParam:
    """A parameter's converter (typer calls its ``coerce``): quick where
    :func:`_converter` has one, else typer's own, built on first need."""

    __slots__ = ("_convert", "_descriptor", "_typer")

    def __init__(self, descriptor: Any, convert: Convert) -> None:
        self._convert = convert
        self._descriptor = descriptor
        self._typer: RuntimeParam | None = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:  # as typer: an option not given
            return () if multi else None
        if not (multi and isinstance(value, str)):  # typer refuses that one
            quick = self._convert(value, param, ctx)
            if quick is not _SLOW:
                return quick
        if self._typer is None:
            self._typer = build_runtime_param(self._descriptor)
        return self._typer.coerce(value, param=param, ctx=ctx)


def quick_converters() -> None:
    """Make every typer parameter of this process (the help options too) convert its
    values with a :class:`QuickParam` where one applies (typer builds its converter on a
    parameter's first value, as this does)."""
    if not _KNOWN_TYPER:
        return
    cls: Any = _TyperParameter
    if getattr(cls.get_runtime_param, "_rating_engine", False):
        return

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            descriptor = self.type_descriptor
            convert = _converter(descriptor.annotation, descriptor.parameter_info)
            self._runtime_param = (
                build_runtime_param(descriptor)
                if convert is None
                else QuickParam(descriptor, convert)
            )
        return self._runtime_param

    get_runtime_param._rating_engine = True  # type: ignore[attr-defined]
    cls.get_runtime_param = get_runtime_param

"""Tariff documents (plain dicts, as ``tomllib`` returns them) written as TOML text.

Only the shapes a tariff uses: tables of scalars and lists, tables of tables, arrays of
tables, inline tables in lists. The output is deterministic: same document, same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["tariff_toml"]

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _scalars(table: Mapping[str, Any]) -> list[str]:
    out = []
    for k, v in table.items():
        if isinstance(v, list) and v and isinstance(v[0], Mapping) and len(v) > 1:
            out.append(f"{_key(k)} = [")
            out.extend(f"  {_value(item)}," for item in v)
            out.append("]")
        else:
            out.append(f"{_key(k)} = {_value(v)}")
    return out


def tariff_toml(doc: Mapping[str, Any], comments: list[str]) -> str:
    """``doc`` as TOML: ``comments`` first, then each top-level table in order. A value
    that is a dict of dicts becomes ``[name.key]`` tables; a list of dicts ``[[name]]``."""
    lines = [f"# {c}" if c else "#" for c in comments]
    for name, value in doc.items():
        if isinstance(value, list):  # array of tables
            for item in value:
                lines += ["", f"[[{_key(name)}]]", *_scalars(item)]
        elif value and all(isinstance(v, Mapping) for v in value.values()):
            for key, sub in value.items():
                lines += ["", f"[{_key(name)}.{_key(key)}]", *_scalars(sub)]
        else:
            lines += ["", f"[{_key(name)}]", *_scalars(value)]
    return "\n".join(lines) + "\n"

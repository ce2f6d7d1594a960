"""One Numba type per kernel input: arrays handed to a compiled kernel as read-only views.

Numba types a read-only array apart from a writable one and compiles a kernel once per
combination of its arguments' types. Arrow buffers read from files are read-only, buffers
built in memory writable, and the empty stand-ins for absent columns writable, so the same
call compiled up to seven times (seen in the test suite's Numba cache; each compile of a
big kernel costs half a minute of CPU on a cold cache, paid by a user's first runs too).
Inputs made read-only at the kernel's entry point compile once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["readonly", "readonly_all"]


def readonly(x: Any) -> Any:
    """``x`` as a read-only view if it is a writable array (no copy); anything else as is."""
    if isinstance(x, np.ndarray) and x.flags.writeable:
        x = x.view()
        x.flags.writeable = False
    return x


def readonly_all(*xs: Any) -> tuple[Any, ...]:
    """:func:`readonly` of each argument."""
    return tuple(readonly(x) for x in xs)

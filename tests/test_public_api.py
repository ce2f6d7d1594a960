"""Every name a package's ``__all__`` promises can be imported."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["collectors", "rating_engine", "bss"])
def test_all_names_resolve(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, f"{package} exports nothing"
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"

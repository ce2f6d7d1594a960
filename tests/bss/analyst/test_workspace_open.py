"""Workspace.open() finds the workspace: the path, $RATING_ENGINE_WORKSPACE, ./workspace,
../workspace (a notebook in examples/ with the demo made in the folder above)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bss import Workspace
from bss.errors import ValidationError


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("RATING_ENGINE_WORKSPACE", raising=False)
    (tmp_path / "workspace").mkdir()
    (tmp_path / "examples").mkdir()
    (tmp_path / "other" / "workspace").mkdir(parents=True)
    return tmp_path


def _root(ws: Workspace) -> Path:
    with ws:
        return ws.paths.root


def test_from_the_root_and_from_a_folder_below(
    layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(layout)
    assert _root(Workspace.open()) == layout / "workspace"
    monkeypatch.chdir(layout / "examples")
    assert _root(Workspace.open()) == layout / "workspace"
    monkeypatch.chdir(layout / "other")  # its own ./workspace comes before ../workspace
    assert _root(Workspace.open()) == layout / "other" / "workspace"


def test_the_variable_and_the_path_come_first(
    layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(layout / "examples")
    monkeypatch.setenv("RATING_ENGINE_WORKSPACE", str(layout / "other" / "workspace"))
    assert _root(Workspace.open()) == layout / "other" / "workspace"
    assert _root(Workspace.open(layout / "workspace")) == layout / "workspace"
    monkeypatch.setenv("RATING_ENGINE_WORKSPACE", str(layout / "missing"))
    with pytest.raises(ValidationError, match=r"workspace .*missing does not exist"):
        Workspace.open()  # a variable that is set is not second-guessed


def test_nowhere_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RATING_ENGINE_WORKSPACE", raising=False)
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    with pytest.raises(ValidationError) as err:
        Workspace.open()
    message = str(err.value)
    assert str(tmp_path / "a" / "b" / "workspace") in message
    assert str(tmp_path / "a" / "workspace") in message
    assert "rating-engine demo" in message

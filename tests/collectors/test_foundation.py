"""Schemas, addresses and workspace resolution."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.addresses import address_from_bytes, address_to_bytes, ipv4_to_mapped
from collectors.errors import WorkspaceError
from collectors.schemas import FLOW_SCHEMA, REJECT_SCHEMA, USAGE_SCHEMA, describe
from collectors.workspace import WORKSPACE_ENV, resolve_workspace
from rating_engine.schemas import RATED_SCHEMA, SUBSCRIPTION_SCHEMA


@pytest.mark.parametrize(
    "schema", [FLOW_SCHEMA, USAGE_SCHEMA, REJECT_SCHEMA, RATED_SCHEMA, SUBSCRIPTION_SCHEMA]
)
def test_every_field_is_documented(schema: pa.Schema) -> None:
    for name, _, _, doc in describe(schema):
        assert len(doc) > 10, f"{name} has no documentation"


def test_design_representations() -> None:
    assert FLOW_SCHEMA.field("flow_start").type == pa.timestamp("us", tz="UTC")
    assert FLOW_SCHEMA.field("src_addr").type == pa.binary(16)
    assert FLOW_SCHEMA.field("bytes").type == pa.uint64()
    assert RATED_SCHEMA.field("cost").type == pa.int64()
    money_like = [f for s in (USAGE_SCHEMA, RATED_SCHEMA) for f in s if "float" in str(f.type)]
    assert money_like == []


@given(st.ip_addresses())
def test_address_round_trip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    packed = address_to_bytes(ip)
    assert len(packed) == 16
    if ip.version == 4 or ip.ipv4_mapped is None:
        assert address_from_bytes(packed) == ip


@given(st.lists(st.integers(0, 2**32 - 1), max_size=50))
def test_vectorised_mapping_matches_scalar(values: list[int]) -> None:
    out = ipv4_to_mapped(np.array(values, dtype=np.uint32))
    assert [bytes(row) for row in out] == [
        address_to_bytes(ipaddress.IPv4Address(v)) for v in values
    ]


def test_workspace_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "from-env"))
    assert resolve_workspace().root == tmp_path / "from-env"
    assert resolve_workspace(tmp_path / "arg").root == tmp_path / "arg"
    monkeypatch.delenv(WORKSPACE_ENV)
    monkeypatch.chdir(tmp_path)
    assert resolve_workspace().root == tmp_path / "workspace"
    (tmp_path / "file").write_text("x")
    with pytest.raises(WorkspaceError, match="not a folder"):
        resolve_workspace(tmp_path / "file")

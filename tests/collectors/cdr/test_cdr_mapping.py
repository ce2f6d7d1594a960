"""CDR mapping files: the shipped ones load; every mistake names the file and the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from package_data import MAPPINGS

from collectors.cdr.mapping import (
    CdrMapping,
    NumberRules,
    find_mapping,
    load_mapping,
    parse_mapping,
)
from collectors.errors import IngestError

MAPPINGS = MAPPINGS

MINIMAL = """
[csv]
header = true
[numbers]
country_code = "44"
[fields]
record_key = { columns = ["id"] }
subscriber = "msisdn"
service = { constant = "sms" }
start_time = { column = "start" }
"""


def _parse(text: str) -> CdrMapping:
    return parse_mapping(tomllib.loads(text), source="m.toml")


def test_generic_mapping_loads() -> None:
    m = load_mapping(MAPPINGS / "generic.toml")
    assert m.name == "generic"
    assert m.subscriber.column == "msisdn"
    assert m.subscriber.key_type == "msisdn"
    assert m.subscriber.normalise == "e164"
    assert m.numbers == NumberRules("49", "0", "00")
    assert m.start_time.zone == "Europe/Berlin"
    assert m.service.values["gprs"] == "data"
    assert m.service.values["voice"] == "voice"
    assert m.used_columns() == (
        "id",
        "msisdn",
        "service",
        "start",
        "duration",
        "bytes_up",
        "bytes_down",
        "destination",
        "origin",
        "cell",
    )


def test_asterisk_mapping_loads() -> None:
    m = load_mapping(MAPPINGS / "asterisk.toml")
    assert m.csv.header is False
    assert m.csv.columns is not None
    assert len(m.csv.columns) == 18
    assert m.csv.columns[:3] == ("accountcode", "src", "dst")
    assert m.csv.columns[-2:] == ("uniqueid", "userfield")
    assert m.service.constant == "voice"
    assert m.duration.column == "billsec"
    assert m.start_time.column == "answer"
    assert [(f.column, f.accept, f.reason, f.action) for f in m.filters] == [
        ("disposition", ("ANSWERED",), "not_answered", "reject")
    ]


def test_shipped_mappings_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # found in the project's data/mappings from anywhere
    assert find_mapping("generic") == MAPPINGS / "generic.toml"
    assert load_mapping("asterisk").name == "asterisk"
    local = tmp_path / "data" / "mappings"
    local.mkdir(parents=True)
    (local / "generic.toml").write_text(MINIMAL)
    assert find_mapping("generic") == Path("data/mappings/generic.toml")  # ./data first
    with pytest.raises(IngestError, match="nosuch"):
        load_mapping("nosuch")


def test_country_code_override() -> None:
    m = load_mapping(MAPPINGS / "generic.toml", country_code="44")
    assert m.numbers is not None
    assert m.numbers.country_code == "44"
    assert m.numbers.trunk_prefix == "0"
    with pytest.raises(IngestError, match="country_code"):
        m.with_country_code("4x")


def test_minimal_mapping_defaults() -> None:
    m = _parse(MINIMAL)
    assert m.subscriber.column == "msisdn"  # a bare string is a column name
    assert m.duration.column is None
    assert m.volume_up.column is None
    assert m.start_time.format == "iso8601"
    assert m.start_time.zone == "UTC"
    assert m.name == "m"


def _error(text: str) -> str:
    with pytest.raises(IngestError) as info:
        _parse(text)
    message = str(info.value)
    assert "m.toml" in message
    return message


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("[fields]", "[fields]\ncolour = 'x'"), "fields.colour"),
        (
            (
                'start_time = { column = "start" }',
                'start_time = { column = "start", zone = "Mars/Base" }',
            ),
            "fields.start_time.zone",
        ),
        (
            (
                'start_time = { column = "start" }',
                'start_time = { column = "start", format = "yyyy" }',
            ),
            "fields.start_time.format",
        ),
        (
            (
                'start_time = { column = "start" }',
                'start_time = { column = "start", ambiguous = "x" }',
            ),
            "fields.start_time.ambiguous",
        ),
        (
            ('service = { constant = "sms" }', 'service = { constant = "fax" }'),
            "fields.service.constant",
        ),
        (
            ('service = { constant = "sms" }', 'service = { column = "s", constant = "sms" }'),
            "fields.service",
        ),
        (
            (
                'service = { constant = "sms" }',
                'service = { column = "s", values = { fax = ["f"] } }',
            ),
            "fields.service.values.fax",
        ),
        (
            ('subscriber = "msisdn"', 'subscriber = { column = "m", type = "email" }'),
            "fields.subscriber.type",
        ),
        (
            ('record_key = { columns = ["id"] }', "record_key = { columns = [] }"),
            "fields.record_key.columns",
        ),
        (('record_key = { columns = ["id"] }', ""), "fields.record_key"),
        (('country_code = "44"', 'country_code = "4444"'), "numbers.country_code"),
        (('country_code = "44"', "country_code = 44"), "numbers.country_code"),
        (("header = true", "header = false"), "csv.columns"),
        (("header = true", "header = true\ndelimiter = ';;'"), "csv.delimiter"),
        (("header = true", "header = true\nencoding = 'klingon'"), "csv.encoding"),
    ],
)
def test_errors_name_file_and_key(change: tuple[str, str], key: str) -> None:
    old, new = change
    assert old in MINIMAL
    message = _error(MINIMAL.replace(old, new, 1))
    assert key in message


def test_e164_needs_number_rules() -> None:
    text = MINIMAL.replace('[numbers]\ncountry_code = "44"\n', "")
    assert "numbers" in _error(text)


def test_headerless_columns_must_cover_fields() -> None:
    text = MINIMAL.replace("header = true", 'header = false\ncolumns = ["id", "msisdn"]')
    assert "start" in _error(text)


def test_filters_are_validated() -> None:
    good = _parse(MINIMAL + '\n[[filters]]\ncolumn = "d"\naccept = ["OK"]\naction = "skip"\n')
    assert good.filters[0].action == "skip"
    assert good.filters[0].reason == "filtered"
    assert "filters[0].action" in _error(
        MINIMAL + '\n[[filters]]\ncolumn = "d"\naccept = ["OK"]\naction = "drop"\n'
    )
    assert "filters[0].accept" in _error(MINIMAL + '\n[[filters]]\ncolumn = "d"\n')


def test_load_mapping_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(IngestError, match=r"nope\.toml"):
        load_mapping(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("[fields\n")
    with pytest.raises(IngestError, match=r"broken\.toml.*TOML"):
        load_mapping(broken)


def test_values_mapped_twice_is_an_error() -> None:
    text = MINIMAL.replace(
        'service = { constant = "sms" }',
        'service = { column = "s", values = { sms = ["x"], voice = ["X"] } }',
    )
    assert "two services" in _error(text)


def test_parse_mapping_accepts_plain_dicts() -> None:
    data: dict[str, Any] = tomllib.loads(MINIMAL)
    m = parse_mapping(data, source="inline")
    assert m.source == "inline"

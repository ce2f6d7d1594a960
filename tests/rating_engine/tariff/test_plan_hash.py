"""A plan's hash is the key billed periods were priced under: new tariff fields must not move it.

A changed hash makes every final period priced with the old plan look re-rateable (and a
workspace re-rates it). Fields added to the tariff model after plans were first cached are
left out of the hash at their defaults (``_NEW_DEFAULTS``); this pins that for the shipped
tariffs, whose hashes were recorded with the first release's model.
"""

from __future__ import annotations

from pathlib import Path

from package_data import DATA, DEMO, TARIFFS

from rating_engine.tariff.load import load_tariff_file
from rating_engine.tariff.plan import plan_hash

# plan_hash(tariffs, (2024, 2027)) of the shipped tariffs, recorded at 11ded35 (before the band
# windows, pass-through rates and period pricing models were added)
RECORDED = {
    "shipped": "40a9bcf118defeef17a63ebdc95945d7",  # demo + example tariffs
}


def _tariffs(folder: Path) -> dict:
    out = {}
    for path in sorted(folder.rglob("*.toml")):
        try:
            tariff = load_tariff_file(path)
        except Exception:  # the folder's other TOML files (business data) are not tariffs
            continue
        out[tariff.id] = tariff  # keyed as the workspace keys them
    return out


def test_new_fields_at_their_defaults_keep_the_recorded_hash() -> None:
    tariffs = _tariffs(DATA)
    assert len(tariffs) == 4
    assert set(tariffs) == set(_tariffs(DEMO)) | set(_tariffs(TARIFFS))
    assert plan_hash(tariffs, (2024, 2027)) == RECORDED["shipped"]


def test_a_changed_tariff_changes_the_hash() -> None:
    tariffs = _tariffs(DATA)
    base = plan_hash(tariffs, (2024, 2027))
    assert plan_hash(tariffs, (2024, 2028)) != base
    assert plan_hash(dict(list(tariffs.items())[1:]), (2024, 2027)) != base

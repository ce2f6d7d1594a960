"""The rating kernel compiled by the warm-up process is the one a later run loads.

A first demo starts ``python -m rating_engine.rating.warm_up`` on the other core; it pays
off only if the specialisation it caches is the very one rating then asks for, whatever
the usage's source (here: read back from Parquet, as billing reads it, where the warm-up
built its usage in memory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from package_data import DEMO

CHECK = """
import json, sys
from pathlib import Path
import pyarrow.parquet as pq
from rating_engine.rating import warm_up
from rating_engine.rating.kernel import rate_records
cached = warm_up.kernel_cached()
from collectors.usage_records import usage_table
from rating_engine.rating.rate import compile_plan, load_tariffs, rate_usage
import pyarrow as pa
from datetime import UTC, datetime
from rating_engine.schemas import SUBSCRIPTION_SCHEMA
tariffs = load_tariffs(Path(sys.argv[1]))
tid = "mobile-2026"  # a tariff with voice
subs = pa.Table.from_pylist([{"subscription_id": 1, "account_id": 1, "key_type": "msisdn",
    "key": "4917000000001", "tariff_id": tid, "active_from": datetime(2000, 1, 1, tzinfo=UTC),
    "active_to": None}], schema=SUBSCRIPTION_SCHEMA)
usage = usage_table([{"subscriber": "4917000000001", "service": "voice", "duration": 30,
    "start": datetime(2026, 2, 2, 9, tzinfo=UTC), "destination": "4989123"}])
pq.write_table(usage, sys.argv[2])
result = rate_usage(pq.read_table(sys.argv[2]), subs, compile_plan(tariffs))
print(json.dumps({"cached": cached, "rated": result.rated.num_rows,
                  "compiled": len(rate_records.stats.cache_misses)}))
"""


def test_the_warm_up_caches_what_rating_then_loads(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    tariffs = DEMO / "tariffs"
    before = subprocess.run(
        [sys.executable, "-c", "from rating_engine.rating.warm_up import kernel_cached as k; "
         "print(k())"], env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert before.stdout.strip() == "False"  # an empty cache
    warm = subprocess.run(
        [sys.executable, "-m", "rating_engine.rating.warm_up", str(tariffs)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert warm.returncode == 0, warm.stderr
    after = subprocess.run(
        [sys.executable, "-c", CHECK, str(tariffs), str(tmp_path / "usage.parquet")],
        env=env, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    out = json.loads(after.stdout.strip().splitlines()[-1])
    assert out == {"cached": True, "rated": 1, "compiled": 0}


def test_nothing_starts_when_the_kernel_is_cached(tmp_path: Path) -> None:
    from rating_engine.rating import warm_up

    assert warm_up.rate_sample(DEMO / "tariffs") > 0  # compiles (or loads) in this process
    assert warm_up.kernel_cached()
    assert warm_up.start(DEMO / "tariffs") is None
    assert warm_up.rate_sample(tmp_path) == 0  # no tariffs: nothing to compile for

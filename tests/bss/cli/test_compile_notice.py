"""A cold kernel cache shows as "compiling kernels, once", then a warm run says nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from collectors.netflow.export_synth import synth_v5_datagrams


def _ingest(tmp_path: Path, cache: Path, name: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-c", "from bss.cli.main import main; main()",
         "-w", str(tmp_path / "ws"), "ingest", "flows", str(tmp_path / name)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


def test_first_run_says_it_compiles_and_where_it_caches(tmp_path: Path) -> None:
    for i, datagram in enumerate(synth_v5_datagrams(2, 5, seed=3)):
        (tmp_path / f"v5-{i}.bin").write_bytes(datagram)
    cache = tmp_path / "numba-cache"
    cold = _ingest(tmp_path, cache, "v5-0.bin")
    assert cold.returncode == 0, cold.stderr
    assert "kernels in" in cold.stdout
    assert f"once: cached in {cache}" in cold.stdout
    assert any(cache.rglob("*.nbi")), "nothing was cached"
    warm = _ingest(tmp_path, cache, "v5-1.bin")
    assert warm.returncode == 0, warm.stderr
    assert "kernels in" not in warm.stdout

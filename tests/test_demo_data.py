"""The embedded demo data is what scripts/make_demo_data.py makes (nothing edited by hand)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from package_data import DEMO
from scapy.utils import PcapReader

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_demo_data", ROOT / "scripts/make_demo_data.py")
assert spec is not None
assert spec.loader is not None
generator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generator)


def test_cdrs_regenerate_identically(tmp_path: Path) -> None:
    generator.make_cdrs(tmp_path / "cdrs.csv")
    assert (tmp_path / "cdrs.csv").read_bytes() == (DEMO / "cdrs.csv").read_bytes()


def test_capture_regenerates_identically(tmp_path: Path) -> None:
    generator.make_pcap(tmp_path / "traffic.pcap.gz")
    with (
        PcapReader(str(tmp_path / "traffic.pcap.gz")) as new,
        PcapReader(str(DEMO / "traffic.pcap.gz")) as shipped,
    ):
        pairs = list(zip(new, shipped, strict=True))
    assert len(pairs) > 10_000
    assert all(bytes(a) == bytes(b) and a.time == b.time for a, b in pairs)

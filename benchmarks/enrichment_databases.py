"""Synthetic MaxMind-format databases the size of the real ones, for the enrichment benchmark.

GeoLite2-ASN and GeoLite2-Country hold some 500,000 networks each (IPv4 and IPv6). These
have 10.0.0.0/8 and 192.168.0.0/16 (where the synthetic exports' addresses are) cut into
/24s, plus random /20-/24 networks elsewhere and /32-/48 IPv6 networks, so every look-up
of the benchmark finds a network, as most of a real network's traffic would. Built with
mmdb-writer (a test extra) once per folder: about a minute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mmdb_writer import MMDBWriter
from netaddr import IPNetwork, IPSet

__all__ = ["build_databases"]


def _networks(seed: int, n_random: int) -> list[tuple[int, int, int]]:
    """(version, first address as int, prefix length), disjoint."""
    rng = np.random.default_rng(seed)
    nets = [(4, (10 << 24) | (i << 8), 24) for i in range(1 << 16)]
    nets += [(4, (192 << 24) | (168 << 16) | (i << 8), 24) for i in range(256)]
    # random /24s outside 10/8 and 192.168/16 (some merged into /20s by the same value)
    blocks = rng.choice(1 << 24, n_random, replace=False)
    keep = (blocks >> 16 != 10) & (blocks >> 8 != 0xC0A8)
    nets += [(4, int(b) << 8, 24) for b in blocks[keep].tolist()]
    v6 = rng.choice(1 << 30, n_random // 4, replace=False)
    nets += [(6, (0x2A00 << 112) | (int(b) << 80), 48) for b in v6.tolist()]
    return nets


def build_databases(folder: Path, n_random: int = 400_000) -> tuple[Path, Path]:
    """``(asn.mmdb, country.mmdb)`` in ``folder``, built if not there yet."""
    folder.mkdir(parents=True, exist_ok=True)
    asn_path, geo_path = folder / f"asn-{n_random}.mmdb", folder / f"country-{n_random}.mmdb"
    if asn_path.exists() and geo_path.exists():
        return asn_path, geo_path
    countries = ["DE", "FR", "US", "NL", "GB", "SE", "JP", "BR", "IN", "AU"]
    for path, db_type, seed in ((asn_path, "GeoLite2-ASN", 1), (geo_path, "GeoLite2-Country", 2)):
        writer = MMDBWriter(
            ip_version=6, database_type=db_type, ipv4_compatible=True, int_type="u32"
        )
        for k, (version, first, plen) in enumerate(_networks(seed, n_random)):
            cidr = IPNetwork((first, plen), version=version)
            if db_type == "GeoLite2-ASN":
                record = {"autonomous_system_number": 1 + k % 400_000}
            else:
                record = {"country": {"iso_code": countries[k % len(countries)]}}
            writer.insert_network(IPSet([cidr]), record)
        writer.to_db_file(str(path))
    return asn_path, geo_path

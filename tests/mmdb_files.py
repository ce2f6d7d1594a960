"""Tiny MaxMind-format databases the enrichment tests build for themselves (mmdb-writer)."""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPNetwork, IPSet

__all__ = ["ASN_NETWORKS", "GEO_NETWORKS", "write_asn_db", "write_geo_db"]

#: Nested on purpose: a more specific network inside a larger one of another AS.
ASN_NETWORKS = {
    "10.0.0.0/8": 64500,
    "10.1.0.0/16": 64501,
    "192.0.2.0/24": 64502,
    "1.0.0.0/24": 13335,
    "2001:db8::/32": 64510,
    "2001:db8:1::/48": 64511,
}
#: Country records as GeoLite2 writes them; 192.0.2.128/25 has only a registered country.
GEO_NETWORKS = {
    "10.0.0.0/9": {"country": {"iso_code": "DE"}},
    "10.128.0.0/9": {"country": {"iso_code": "FR"}},
    "192.0.2.128/25": {"registered_country": {"iso_code": "US"}},
    "1.0.0.0/16": {"country": {"iso_code": "AU"}, "city": {"names": {"en": "Sydney"}}},
    "2001:db8::/33": {"country": {"iso_code": "NL"}},
}


def _write(path: Path, database_type: str, records: dict[str, dict]) -> Path:
    writer = MMDBWriter(
        ip_version=6, database_type=database_type, ipv4_compatible=True, int_type="u32"
    )
    # larger networks first: a later, more specific one splits the earlier
    for cidr, record in sorted(records.items(), key=lambda kv: IPNetwork(kv[0]).prefixlen):
        writer.insert_network(IPSet([IPNetwork(cidr)]), record)
    writer.to_db_file(str(path))
    return path


def write_asn_db(path: Path, networks: dict[str, int] | None = None) -> Path:
    """An ASN database: ``autonomous_system_number`` (and an organisation) per network."""
    nets = ASN_NETWORKS if networks is None else networks
    return _write(
        path,
        "GeoLite2-ASN",
        {
            cidr: {"autonomous_system_number": asn, "autonomous_system_organization": f"AS{asn}"}
            for cidr, asn in nets.items()
        },
    )


def write_geo_db(path: Path, networks: dict[str, dict] | None = None) -> Path:
    """A country database in GeoLite2's record layout."""
    return _write(path, "GeoLite2-Country", GEO_NETWORKS if networks is None else networks)

"""Flow enrichment: look-ups equal the maxminddb reader's, AS only where the exporter left 0,
countries, interface names and speeds; bad databases and files are clear errors at start."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import maxminddb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mmdb_files import ASN_NETWORKS, GEO_NETWORKS, write_asn_db, write_geo_db

from collectors.addresses import address_to_bytes
from collectors.enrich.enricher import ENRICHMENT_COLUMNS, FlowEnricher
from collectors.enrich.interfaces import load_interface_files, parse_speed
from collectors.enrich.mmdb import load_asn_database, load_geo_database
from collectors.enrich.networks import lookup_ranges, merge_networks
from collectors.errors import CollectorError
from collectors.schemas import FLOW_SCHEMA


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("mmdb")
    rng = np.random.default_rng(7)
    asn = dict(ASN_NETWORKS)
    geo = dict(GEO_NETWORKS)
    # plus random networks of every size, IPv4 and IPv6, nested where they fall so
    for i in range(300):
        plen = int(rng.integers(8, 33))
        addr = int(rng.integers(0, 1 << 32)) >> (32 - plen) << (32 - plen)
        cidr = f"{ipaddress.IPv4Address(addr)}/{plen}"
        if cidr.startswith("10.") or cidr.startswith("192.0.2."):
            continue
        asn.setdefault(cidr, 1000 + i)
        if i % 2:
            geo.setdefault(cidr, {"country": {"iso_code": "ABCDEFGHIJ"[i % 10] + "Z"}})
    # a /16 cut into many networks (the per-/24 index): whole /24s, halves, a /26 alone,
    # gaps, runs of one AS (adjacent ranges with one value), countries cut otherwise
    for i in range(256):
        net = f"100.64.{i}"
        if i % 4 == 0:
            asn[f"{net}.0/24"] = 79999 if 100 <= i < 140 else 70000 + i
        elif i % 4 == 1:
            asn[f"{net}.0/25"], asn[f"{net}.128/25"] = 70000 + i, 71000 + i
        elif i % 4 == 3:
            asn[f"{net}.64/26"] = 72000 + i
        if i % 7 == 0:
            geo[f"{net}.0/24"] = {"country": {"iso_code": "FI"}}
    geo["100.64.0.0/17"] = {"country": {"iso_code": "SE"}}
    geo["100.64.128.0/18"] = {"country": {"iso_code": "NO"}}
    for i in range(100):
        plen = int(rng.integers(16, 129))
        addr = (0x2A00 << 112 | int(rng.integers(0, 1 << 62)) << 50) >> (128 - plen) << (128 - plen)
        cidr = f"{ipaddress.IPv6Address(addr)}/{plen}"
        asn.setdefault(cidr, 5000 + i)
        geo.setdefault(cidr, {"country": {"iso_code": "SE"}})
    return write_asn_db(folder / "asn.mmdb", asn), write_geo_db(folder / "geo.mmdb", geo)


def _expected(reader: maxminddb.Reader, address: str, kind: str) -> int | str | None:
    record = reader.get(address)
    if not record:
        return None
    if kind == "asn":
        return record.get("autonomous_system_number")
    for key in ("country", "registered_country"):
        if key in record:
            return record[key]["iso_code"]
    return None


def _interesting(dbs: tuple[Path, Path]) -> list[int]:
    """Every network's first and last address and their neighbours (as 128-bit, mapped)."""
    points: set[int] = set()
    for path in dbs:
        with maxminddb.open_database(str(path)) as reader:
            for network, _ in reader:
                for a in (int(network.network_address), int(network.broadcast_address)):
                    base = 0xFFFF_0000_0000 if network.version == 4 else 0
                    points.update(base + a + d for d in (-1, 0, 1))
    return sorted(p for p in points if 0 <= p < 1 << 128)


def _text(value: int) -> str:
    ip = ipaddress.IPv6Address(value)
    return str(ip.ipv4_mapped or ip)


def test_lookup_equals_the_reader_at_every_network_edge(dbs: tuple[Path, Path]) -> None:
    asn, geo = load_asn_database(dbs[0]), load_geo_database(dbs[1])
    merged = merge_networks([asn.networks, geo.networks])
    points = _interesting(dbs)
    addresses = np.frombuffer(b"".join(p.to_bytes(16, "big") for p in points), np.uint8)
    for nets, col, db, path, kind in ((asn.networks, 0, asn, dbs[0], "asn"),
                                      (geo.networks, 0, geo, dbs[1], "geo"),
                                      (merged, 0, asn, dbs[0], "asn"),
                                      (merged, 1, geo, dbs[1], "geo")):  # fmt: skip
        values = lookup_ranges(nets, addresses.reshape(-1, 16))[:, col]
        with maxminddb.open_database(str(path)) as reader:
            for point, value in zip(points, values.tolist(), strict=True):
                want = _expected(reader, _text(point), kind)
                got = None if value < 0 else value if kind == "asn" else db.codes[value]
                assert got == want, (_text(point), kind)
    # the enricher's own index (AS and country packed per range), in one batch
    enricher = FlowEnricher(asn=asn, geo=geo)
    src = [p.to_bytes(16, "big") for p in points]
    out = enricher.enrich(_flows(src, src_as=[0] * len(src), dst=src[::-1]))
    with maxminddb.open_database(str(dbs[0])) as a, maxminddb.open_database(str(dbs[1])) as g:
        for side, order in (("src", points), ("dst", points[::-1])):
            want_as = [_expected(a, _text(p), "asn") or 0 for p in order]
            want_geo = [_expected(g, _text(p), "geo") for p in order]
            assert out.column(f"{side}_as").to_pylist() == want_as
            assert out.column(f"{side}_country").to_pylist() == want_geo


@pytest.fixture(scope="module")
def opened(
    dbs: tuple[Path, Path],
) -> Iterator[tuple[FlowEnricher, maxminddb.Reader, maxminddb.Reader]]:
    enricher = FlowEnricher.open(asn_db=dbs[0], geo_db=dbs[1])
    assert enricher is not None
    with maxminddb.open_database(str(dbs[0])) as a, maxminddb.open_database(str(dbs[1])) as g:
        yield enricher, a, g


_ADDRESSES = st.one_of(
    st.integers(0, (1 << 32) - 1).map(lambda a: 0xFFFF_0000_0000 + a),
    st.integers(0, (1 << 128) - 1),
    st.integers(0, (1 << 80) - 1).map(lambda a: (0x2A00 << 112) + (a << 32)),
    st.integers(0, (1 << 96) - 1).map(lambda a: (0x20010DB8 << 96) + a),
    st.integers(0, (1 << 16) - 1).map(lambda a: 0xFFFF_6440_0000 + a),  # 100.64/16
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_ADDRESSES, st.sampled_from([0, 0, 65001])), min_size=1, max_size=40))
def test_any_addresses_like_the_reader(
    opened: tuple[FlowEnricher, maxminddb.Reader, maxminddb.Reader], rows: list[tuple[int, int]]
) -> None:
    """A batch of random addresses (src, and dst in reverse order) gets the reader's own
    ``get`` answers: AS numbers where the exporter left 0, countries, nulls where none."""
    enricher, asn, geo = opened
    src = [value.to_bytes(16, "big") for value, _ in rows]
    exported = [as_number for _, as_number in rows]
    batch = _flows(src, src_as=exported, dst=src[::-1])
    out = enricher.enrich(batch)
    # a slice (columns at an offset into their buffers) gets the same rows
    assert enricher.enrich(batch.slice(1)).equals(out.slice(1))
    texts = [_text(value) for value, _ in rows]
    want_as = [_expected(asn, t, "asn") or 0 for t in texts]
    assert out.column("src_as").to_pylist() == [
        e or w for e, w in zip(exported, want_as, strict=True)
    ]
    assert out.column("dst_as").to_pylist() == want_as[::-1]  # _flows' dst_as are 0
    want_geo = [_expected(geo, t, "geo") for t in texts]
    assert out.column("src_country").to_pylist() == want_geo
    assert out.column("dst_country").to_pylist() == want_geo[::-1]
    out.validate(full=True)


def _flows(
    src: list[bytes],
    *,
    src_as: list[int],
    dst: list[bytes] | None = None,
    exporter: bytes | None = None,
    input_if: list[int] | None = None,
) -> pa.RecordBatch:
    n = len(src)
    cols = {
        "exporter": pa.array([exporter or address_to_bytes("192.0.2.1")] * n, pa.binary(16)),
        "src_addr": pa.array(src, pa.binary(16)),
        "dst_addr": pa.array(dst or [address_to_bytes("1.0.0.1")] * n, pa.binary(16)),
        "src_as": pa.array(src_as, pa.uint32()),
        "input_if": pa.array(input_if or [1] * n, pa.uint32()),
        "flow_start": pa.array([0] * n, pa.int64()).cast(FLOW_SCHEMA.field("flow_start").type),
        "source_format": pa.array(["ipfix"] * n),
    }
    arrays = []
    for f in FLOW_SCHEMA:
        if f.name in cols:
            arrays.append(cols[f.name])
        elif f.name == "flow_end":
            arrays.append(cols["flow_start"])
        elif f.nullable:
            arrays.append(pa.nulls(n, f.type))
        else:
            arrays.append(pa.array(np.zeros(n), f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=FLOW_SCHEMA)


def test_as_is_filled_only_where_the_exporter_left_zero(dbs: tuple[Path, Path]) -> None:
    enricher = FlowEnricher.open(asn_db=dbs[0], geo_db=dbs[1])
    assert enricher is not None
    src = [address_to_bytes(a) for a in ("10.1.2.3", "10.1.2.3", "10.200.0.1", "192.0.2.200",
                                         "8.8.8.8", "2001:db8:1::5")]  # fmt: skip
    out = enricher.enrich(_flows(src, src_as=[0, 65001, 0, 0, 0, 0]))
    assert out.schema == FLOW_SCHEMA
    assert out.column("src_as").to_pylist() == [64501, 65001, 64500, 64502, 0, 64511]
    assert out.column("src_country").to_pylist() == ["DE", "DE", "FR", "US", None, "NL"]
    # the destination too (1.0.0.1: AS13335, AU), and untouched columns stay as they were
    assert set(out.column("dst_as").to_pylist()) == {13335}
    assert set(out.column("dst_country").to_pylist()) == {"AU"}
    assert out.column("input_if_name").null_count == len(src)


def test_ipv4_mapped_compatible_and_near_misses_like_the_reader(
    opened: tuple[FlowEnricher, maxminddb.Reader, maxminddb.Reader],
) -> None:
    """Only ``::ffff:a.b.c.d`` and ``::a.b.c.d`` are read as IPv4 (the kernel's one-add
    test of bytes 0..11): a bit set anywhere else in the first 12 bytes makes an IPv6
    address, answered as the reader answers it."""
    enricher, asn, geo = opened
    ipv4 = [(100 << 24) | (64 << 16) | (i << 8) | 70 for i in (0, 1, 3, 200)]
    ipv4 += [(10 << 24) | (1 << 16) | 5, (192 << 24) | (2 << 8) | 200, (1 << 24) | 1]
    prefixes = [0xFFFF, 0, 0xFFFE, 0x7FFF, 0x1, 0x1_FFFF, 0x1_0000, 0xFFFF_0000]
    prefixes += [1 << 79, 1 << 64, 0xFFFF | (1 << 95)]
    points = [(p << 32) | a for p in prefixes for a in ipv4]
    src = [p.to_bytes(16, "big") for p in points]
    out = enricher.enrich(_flows(src, src_as=[0] * len(src)))
    texts = [_text(p) for p in points]
    assert out.column("src_as").to_pylist() == [_expected(asn, t, "asn") or 0 for t in texts]
    assert out.column("src_country").to_pylist() == [_expected(geo, t, "geo") for t in texts]
    # the two IPv4 forms found something: the test is not vacuous
    assert all(out.column("src_as").to_pylist()[: 2 * len(ipv4)])


def test_no_database_leaves_the_columns_null(tmp_path: Path) -> None:
    assert FlowEnricher.open() is None
    enricher = FlowEnricher.open(asn_db=write_asn_db(tmp_path / "a.mmdb"))
    assert enricher is not None
    out = enricher.enrich(_flows([address_to_bytes("10.1.0.1")], src_as=[0]))
    assert out.column("src_as").to_pylist() == [64501]
    assert out.column("src_country").to_pylist() == [None]
    for name in ENRICHMENT_COLUMNS:
        assert FLOW_SCHEMA.field(name).nullable
        assert FLOW_SCHEMA.field(name).metadata[b"doc"]


def test_a_database_without_ipv4_networks_still_enriches(tmp_path: Path) -> None:
    # an IPv6-only ASN database beside a normal country one: the IPv4 index is empty
    asn = write_asn_db(tmp_path / "asn6.mmdb", {"2001:db8::/32": 64510})
    enricher = FlowEnricher.open(asn_db=asn, geo_db=write_geo_db(tmp_path / "geo.mmdb"))
    assert enricher is not None
    src = [address_to_bytes(a) for a in ("2001:db8:1::5", "10.1.2.3", "2001:db9::1")]
    out = enricher.enrich(_flows(src, src_as=[0, 0, 0]))
    assert out.column("src_as").to_pylist() == [64510, 0, 0]
    assert out.column("src_country").to_pylist() == ["NL", "DE", None]
    alone = FlowEnricher.open(asn_db=asn)
    assert alone is not None
    assert alone.enrich(_flows(src, src_as=[0, 0, 0])).column("src_as").to_pylist() == [
        64510, 0, 0,
    ]  # fmt: skip


INTERFACES = """
[exporter."192.0.2.1"]
1 = { name = "xe-0/0/1", speed = "10G" }
2 = { name = "xe-0/0/2", speed = 2_500_000_000, description = "transit A" }

[exporter."2001:db8::1"]
1 = { name = "et-0/0/1" }
"""


def test_interface_names_and_speeds_by_exporter_and_ifindex(tmp_path: Path) -> None:
    (tmp_path / "r1.toml").write_text(INTERFACES)
    enricher = FlowEnricher.open(interfaces=[tmp_path / "r1.toml"])
    assert enricher is not None
    r1, r2 = address_to_bytes("192.0.2.1"), address_to_bytes("2001:db8::1")
    src = [address_to_bytes("10.0.0.1")] * 3
    got = []
    for exporter in (r1, r2, address_to_bytes("192.0.2.99")):
        out = enricher.enrich(_flows(src, src_as=[0] * 3, exporter=exporter, input_if=[1, 2, 3]))
        got.append(list(zip(out.column("input_if_name").to_pylist(),
                            out.column("input_if_speed").to_pylist(), strict=True)))  # fmt: skip
        assert out.column("output_if_name").to_pylist() == [None] * 3  # output_if 0: unknown
    assert got[0] == [("xe-0/0/1", 10_000_000_000), ("xe-0/0/2", 2_500_000_000), (None, None)]
    assert got[1] == [("et-0/0/1", None), (None, None), (None, None)]
    assert got[2] == [(None, None)] * 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[exporter."192.0.2.1"]\n1 = { name = "a", speed = "fast" }', "ifIndex 1, field speed"),
        ('[exporter."192.0.2.1"]\n1 = { name = "a", mtu = 9000 }', "unknown field 'mtu'"),
        ('[exporter."192.0.2.1"]\n1 = { speed = "1G" }', "ifIndex 1, field name"),
        ('[exporter."router-1"]\n1 = { name = "a" }', "'router-1': not an IP address"),
        ('[exporter."192.0.2.1"]\neth0 = { name = "a" }', "'eth0' is not an ifIndex"),
        ('[routers."192.0.2.1"]\n1 = { name = "a" }', "unknown table 'routers'"),
        ("[exporter\n", "not valid TOML"),
    ],
)
def test_interface_file_mistakes_name_file_exporter_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(CollectorError, match=r"bad\.toml") as info:
        load_interface_files([path])
    assert message in str(info.value)


def test_one_exporter_in_two_files_is_refused(tmp_path: Path) -> None:
    for name in ("a.toml", "b.toml"):
        (tmp_path / name).write_text('[exporter."192.0.2.1"]\n1 = { name = "x" }\n')
    with pytest.raises(CollectorError, match=r"b.toml.*already described in .*a.toml"):
        load_interface_files([tmp_path / "a.toml", tmp_path / "b.toml"])


def test_speeds() -> None:
    assert parse_speed("10G") == 10**10
    assert parse_speed("2.5 Gbps") == 2_500_000_000
    assert parse_speed("100M") == 10**8
    assert parse_speed(1000) == 1000
    for bad in ("10X", "-1", True, 1.5, 1 << 64):
        with pytest.raises(ValueError, match="speed"):
            parse_speed(bad)


def test_unreadable_or_wrong_databases_are_clear_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.mmdb"
    text.write_text("not a database\n")
    geo = write_geo_db(tmp_path / "country.mmdb")
    asn = write_asn_db(tmp_path / "asn.mmdb")
    cases = [
        ({"asn_db": tmp_path / "missing.mmdb"}, "missing.mmdb: no such file"),
        ({"asn_db": text}, "notes.mmdb: not a MaxMind database"),
        ({"geo_db": tmp_path}, "a folder, not a .mmdb file"),
        ({"asn_db": geo}, "no record has the field autonomous_system_number"),
        ({"geo_db": asn}, "no record has the field country.iso_code"),
    ]
    for kwargs, message in cases:
        with pytest.raises(CollectorError) as info:
            FlowEnricher.open(**kwargs)  # type: ignore[arg-type]
        assert message in str(info.value)
        assert str(next(iter(kwargs.values()))) in str(info.value)


def test_dense_slash16_lookups_equal_a_plain_search() -> None:
    """A /16 cut into many ranges gets a per-/24 index (whole /24s answered from one
    entry, others searched): every edge and random addresses give what a plain sorted
    search gives, with ranges covering a /24, halves of one, gaps, and ranges running
    across /24 boundaries."""
    from bisect import bisect_right

    from collectors.enrich.networks import networks_from_lists

    base = 10 << 24
    v4: list[tuple[int, int, int]] = []
    for i in range(256):
        start = base + (i << 8)
        kind = i % 5
        if kind == 0:
            v4.append((start, start + 255, i))
        elif kind == 1:
            v4 += [(start, start + 127, i), (start + 128, start + 255, 1000 + i)]
        elif kind == 3 and i < 255:  # from the middle of this /24 into the next one
            v4.append((start + 100, start + 256 + 50, i))
    v4.append((200 << 24, (200 << 24) + 4095, 7))  # a sparse /16 elsewhere
    nets = networks_from_lists(list(v4), [])
    starts = [s for s, _, _ in sorted(v4)]
    ordered = sorted(v4)

    def plain(a: int) -> int:
        k = bisect_right(starts, a) - 1
        return ordered[k][2] if k >= 0 and a <= ordered[k][1] else -1

    rng = np.random.default_rng(3)
    probes = {a + d for s, e, _ in v4 for a in (s, e) for d in (-1, 0, 1)}
    probes |= set((base + rng.integers(0, 1 << 16, 3000)).tolist())
    probes |= {(200 << 24) + 5000, (11 << 24) + 1}
    probes = {p for p in probes if 0 <= p < (1 << 32)}
    addresses = np.array(
        [np.frombuffer(address_to_bytes(str(ipaddress.IPv4Address(p))), np.uint8)
         for p in sorted(probes)]
    )  # fmt: skip
    got = lookup_ranges(nets, addresses)[:, 0].tolist()
    assert got == [plain(p) for p in sorted(probes)]
    # 10.0/16 has a per-/24 table holding answers (none, a range) and searches; 200.0/16 not
    index = nets.index
    assert index.top[10] >> 62 == 2  # a.b at a + 256 b
    assert index.top[200] >> 62 == 1
    entries = index.sub[int(index.top[10]) & 0xFFFF_FFFF :][:256]
    assert {0, 1} == set((entries >> 62).tolist())
    assert (entries == 0).any()
    assert ((entries > 0) & (entries >> 62 == 0)).any()

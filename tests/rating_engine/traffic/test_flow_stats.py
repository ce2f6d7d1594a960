"""``flow_statistics`` and ``select_flows`` against plain-Python group-bys over the same rows."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_flow_filter import HOSTS, addr, flows_table, reference, row_strategy

from collectors.dataset import write_partitioned
from rating_engine.errors import RatingError
from rating_engine.traffic.flow_filter import compile_filter
from rating_engine.traffic.flow_stats import (
    EITHER,
    flow_statistics,
    parse_stat,
    select_flows,
)

HOUR = 3_600_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = 1_790_000_000_000_000
starts = st.integers(0, 50 * HOUR).map(lambda d: T0 + d)
timed_rows = st.tuples(row_strategy, starts, st.integers(0, 90_000_000), st.sampled_from(
    [None, 1, 10])).map(lambda t: {**t[0], "flow_start": t[1], "flow_end": t[1] + t[2],
                                   "sampling_interval": t[3]})  # fmt: skip


def mask_prefix(raw: bytes, v4bits: int | None, v6bits: int | None) -> bytes:
    v4 = raw[:12] == b"\x00" * 10 + b"\xff\xff"
    bits = (96 + v4bits if v4bits is not None else None) if v4 else v6bits
    if bits is None:
        return raw
    value = int.from_bytes(raw, "big") & ~((1 << (128 - bits)) - 1) % (1 << 128)
    return value.to_bytes(16, "big")


def ref_stats(rows: list[dict[str, Any]], keys: tuple[str, ...], order: str, n: int,
              renormalise: bool) -> list[tuple[Any, ...]]:  # fmt: skip
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 2**63, -(2**63)])
    for r in rows:
        mult = max(r["sampling_interval"] or 1, 1) if renormalise else 1
        if keys[0] in EITHER:
            key_values = [(r[c],) for c in EITHER[keys[0]]]
        else:
            kv = []
            for k in keys:
                if "/v" in k:
                    col, v4_spec, v6_spec = k.split("/")
                    kv.append(mask_prefix(r[col], int(v4_spec[3:]), int(v6_spec[3:])))
                else:
                    kv.append(r[k])
            key_values = [tuple(kv)]
        for key in key_values:
            g = groups[key]
            g[0] += 1
            g[1] += r["packets"] * mult
            g[2] += r["bytes"] * mult
            g[3] = min(g[3], r["flow_start"])
            g[4] = max(g[4], r["flow_end"])
    out = []
    for key, (f, p, b, first, last) in groups.items():
        dur = (last - first) // 1000
        rates = {"pps": p * 1000 // dur if dur > 0 else 0, "bps": b * 8000 // dur if dur > 0
                 else 0, "bpp": b // p if p else 0}  # fmt: skip
        values = {"flows": f, "packets": p, "bytes": b, **rates}
        out.append((key, values[order], f, p, b, first, last, rates["pps"], rates["bps"],
                    rates["bpp"]))  # fmt: skip

    def sort_key(item: tuple[Any, ...]) -> tuple[Any, ...]:
        return (-item[1], *[(v is None, v) for v in item[0]])

    out.sort(key=sort_key)
    return out[:n] if n else out


def as_rows(table: pa.Table, nkeys: int) -> list[tuple[Any, ...]]:
    names = table.schema.names
    got = []
    for r in table.to_pylist():
        key = tuple(r[c] for c in names[:nkeys])
        first, last = ((r[c] - EPOCH) // timedelta(microseconds=1) for c in ("first", "last"))
        got.append((key, r["flows"], r["packets"], r["bytes"], first, last, r["pps"],
                    r["bps"], r["bpp"]))  # fmt: skip
    return got


STATS = ["srcip/bytes", "dstport/flows/packets", "proto,srcport/bps", "ip/bytes", "port/flows",
         "srcip4/8,srcip6/64,dstip6/32/bpp", "record/pps",
         "srcas,dstas,inif,outif,vlan,tos,flags/bytes",
         "router/flows", "nhip/bytes", "dstip/packets/flows"]  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    rows=st.lists(timed_rows, min_size=1, max_size=60),
    filter_text=st.sampled_from(["", "proto tcp", "not dst port 443", "src net 10.0.0.0/8",
                                 "bytes > 999 or ipv6"]),
    n=st.sampled_from([0, 1, 3]),
    renormalise=st.booleans(),
)  # fmt: skip
def test_statistics_equal_the_reference(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]], filter_text: str,
    n: int, renormalise: bool,
) -> None:  # fmt: skip
    root = tmp_path_factory.mktemp("flows")
    write_partitioned(flows_table(rows), root, time_column="flow_start", part_name="t",
                      hourly=True)  # fmt: skip
    specs = [parse_stat(s) for s in STATS]
    f = compile_filter(filter_text)
    kept = [r for r in rows if f is None or reference(f.tree, r)]
    tables, totals = flow_statistics(root, specs, flow_filter=f, n=n, renormalise=renormalise)
    mult = [max(r["sampling_interval"] or 1, 1) if renormalise else 1 for r in kept]
    assert (totals.flows, totals.packets, totals.bytes) == (
        len(kept), sum(r["packets"] * m for r, m in zip(kept, mult, strict=True)),
        sum(r["bytes"] * m for r, m in zip(kept, mult, strict=True)),
    )  # fmt: skip
    pairs = [(s, o) for s in specs for o in s.orders]
    assert len(tables) == len(pairs)
    for table, (spec, order) in zip(tables, pairs, strict=True):
        expected = ref_stats(kept, spec.keys, order, n, renormalise) if kept else []
        nkeys = len(spec.keys)
        assert as_rows(table, nkeys) == [(e[0], *e[2:]) for e in expected], (spec, order)


def test_select_flows_orders_limits_and_windows(tmp_path: Path) -> None:
    rows = []
    for i in range(40):
        r = {"src_addr": addr(HOSTS[i % 6]), "dst_addr": addr(HOSTS[(i + 1) % 6]),
             "next_hop": None, "exporter": None, "src_port": 1000 + i, "dst_port": 443 if i % 2
             else 80, "protocol": 6, "tcp_flags": 2, "tos": 0, "bytes": 100 * (i % 7) + 1,
             "packets": 1 + i % 3, "input_if": 0, "output_if": 0, "src_as": 0, "dst_as": 0,
             "vlan": 0, "flow_start": T0 + (40 - i) * HOUR, "flow_end": T0 + (40 - i) * HOUR
             + i * 1000}  # fmt: skip
        rows.append(r)
    write_partitioned(flows_table(rows), tmp_path, time_column="flow_start", part_name="t",
                      hourly=True)  # fmt: skip
    f = compile_filter("dst port 443")
    got = select_flows(tmp_path, flow_filter=f, order="tstart", limit=5)
    want = sorted((r for r in rows if r["dst_port"] == 443), key=lambda r: r["flow_start"])[:5]
    assert got.column("src_port").to_pylist() == [r["src_port"] for r in want]
    # -c in stored order stops after the first partitions; the same rows as a full read
    assert select_flows(tmp_path, limit=3).equals(select_flows(tmp_path).slice(0, 3))
    by_bytes = select_flows(tmp_path, order="bytes", limit=3, columns=["bytes"])
    assert by_bytes.column("bytes").to_pylist() == sorted((r["bytes"] for r in rows),
                                                          reverse=True)[:3]  # fmt: skip
    window = (T0 + 10 * HOUR, T0 + 20 * HOUR)
    inside = select_flows(tmp_path, window=window, order="tend")
    assert inside.num_rows == 10
    assert inside.schema.field("src_addr").type == pa.binary(16)
    assert select_flows(tmp_path / "nothing-here", flow_filter=f).num_rows == 0
    with pytest.raises(RatingError, match="flow order"):
        select_flows(tmp_path, order="sideways")


@pytest.mark.parametrize(
    ("text", "keys", "orders"),
    [
        ("srcip/bytes", ("src_addr",), ("bytes",)),
        ("dstport", ("dst_port",), ("flows",)),
        ("srcip,dstport/bps/pps", ("src_addr", "dst_port"), ("bps", "pps")),
        ("srcip4/24/bytes", ("src_addr/v4:24/v6:128",), ("bytes",)),
        ("srcip4/24,srcip6/64,dstip6/48", ("src_addr/v4:24/v6:64", "dst_addr/v4:32/v6:48"),
         ("flows",)),
        ("record/packets", ("protocol", "src_addr", "src_port", "dst_addr", "dst_port"),
         ("packets",)),
        ("ip", ("ip",), ("flows",)),
    ],
)  # fmt: skip
def test_parse_stat(text: str, keys: tuple[str, ...], orders: tuple[str, ...]) -> None:
    spec = parse_stat(text)
    assert (spec.keys, spec.orders) == (keys, orders)
    assert parse_stat("record/bytes", ["srcip", "dstport"]).keys == ("src_addr", "dst_port")


@pytest.mark.parametrize(
    ("text", "words"),
    [("srcipp/bytes", "unknown element"), ("srcip/fast", "order 'fast'"),
     ("srcip4/bytes", "needs /BITS"), ("srcip4/40", "/1..32"), ("ip,port", "combined"),
     ("", "ELEMENT"), ("srcip/24", "take /BITS"), ("srcip//bytes", "ELEMENT")],
)  # fmt: skip
def test_parse_stat_errors(text: str, words: str) -> None:
    with pytest.raises(RatingError, match=words):
        parse_stat(text)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    rows=st.lists(timed_rows, min_size=1, max_size=60),
    order=st.sampled_from(["tstart", "tend"]),
    limit=st.integers(1, 25),
    text=st.sampled_from(["", "proto tcp", "dst port 443 or src port 53"]),
    window=st.one_of(st.none(), st.tuples(st.integers(0, 30), st.integers(1, 40))),
)
def test_first_flows_by_time_from_row_group_statistics(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[dict[str, Any]],
    order: str,
    limit: int,
    text: str,
    window: tuple[int, int] | None,
) -> None:
    """``-c N -O tstart|tend`` read through row-group statistics (small row groups, hour
    partitions, equal times) gives exactly the rows of a stable sort of every match."""
    for i, row in enumerate(rows):  # coarse times: many ties within and across row groups
        row["flow_start"] = (
            T0
            + (row["flow_start"] - T0) // (8 * HOUR) * HOUR
            + (row["flow_end"] // 1000 % 3) * 1000
        )
        row["flow_end"] = row["flow_start"] + (i % 4) * HOUR
    root = tmp_path_factory.mktemp("first")
    write_partitioned(flows_table(rows), root, time_column="flow_start", part_name="t",
                      hourly=True, row_group_size=2)  # fmt: skip
    win = None if window is None else (T0 + window[0] * HOUR, T0 + window[1] * HOUR)
    flt = compile_filter(text)
    got = select_flows(root, flow_filter=flt, order=order, limit=limit, window=win)
    stored = select_flows(root)  # partition order, then arrival: the stable sort's input
    keep = flt.apply(stored) if text else stored
    if win is not None:
        starts_us = keep.column("flow_start").cast(pa.int64()).to_pylist()
        keep = keep.filter(pa.array([win[0] <= s < win[1] for s in starts_us], pa.bool_()))
    column = "flow_start" if order == "tstart" else "flow_end"
    times = keep.column(column).cast(pa.int64()).to_pylist()
    want = keep.take(
        pa.array(sorted(range(len(times)), key=lambda i: times[i])[:limit], pa.int64())
    )
    assert got.equals(want)


def test_first_flows_tie_in_an_earlier_stored_row_group(tmp_path: Path) -> None:
    """A row group stored earlier whose smallest time equals the N-th match found so far
    still holds the N-th flow (a stable sort puts it first)."""
    base = {"src_addr": addr(HOSTS[0]), "dst_addr": addr(HOSTS[1]), "next_hop": None,
            "exporter": None, "dst_port": 80, "protocol": 6, "tcp_flags": 0, "tos": 0,
            "bytes": 1, "packets": 1, "input_if": 0, "output_if": 0, "src_as": 0,
            "dst_as": 0, "vlan": 0}  # fmt: skip
    times = [T0 + 1000, T0 + 2000, T0, T0 + 1000]  # row groups [1000, 2000], [0, 1000]
    rows = [{**base, "src_port": i, "flow_start": t, "flow_end": t} for i, t in enumerate(times)]
    write_partitioned(flows_table(rows), tmp_path, time_column="flow_start", part_name="t",
                      hourly=True, row_group_size=2)  # fmt: skip
    got = select_flows(tmp_path, order="tstart", limit=2)
    assert got.column("src_port").to_pylist() == [2, 0]


@pytest.mark.parametrize("stray", ["x.parquet", "date=2026-01-01/x.parquet",
                                   "date=2026-01-01/hour=5/x.parquet",
                                   "other/x.parquet"])  # fmt: skip
def test_first_flows_read_a_part_outside_the_hour_folders(tmp_path: Path, stray: str) -> None:
    """-c N -O tstart lists hour folders as it reaches them; a part anywhere else (here
    holding the earliest flow) makes it list every part first, as before."""
    import shutil

    from rating_engine.traffic.flow_parts import IrregularLayoutError, hour_partitions

    base = {"src_addr": addr(HOSTS[0]), "dst_addr": addr(HOSTS[1]), "next_hop": None,
            "exporter": None, "dst_port": 80, "protocol": 6, "tcp_flags": 0, "tos": 0,
            "bytes": 1, "packets": 1, "input_if": 0, "output_if": 0, "src_as": 0,
            "dst_as": 0, "vlan": 0}  # fmt: skip
    rows = [{**base, "src_port": i, "flow_start": T0 + i * HOUR, "flow_end": T0 + i * HOUR}
            for i in range(1, 4)]  # fmt: skip
    write_partitioned(flows_table(rows), tmp_path / "ds", time_column="flow_start",
                      part_name="t", hourly=True)  # fmt: skip
    assert len(list(hour_partitions(tmp_path / "ds", None))) == 3
    assert select_flows(tmp_path / "ds", order="tstart", limit=1).column(
        "src_port").to_pylist() == [1]  # fmt: skip
    write_partitioned(flows_table([{**base, "src_port": 0, "flow_start": T0, "flow_end": T0}]),
                      tmp_path / "early", time_column="flow_start", part_name="e")  # fmt: skip
    (tmp_path / "ds" / stray).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(next((tmp_path / "early").rglob("*.parquet")), tmp_path / "ds" / stray)
    with pytest.raises(IrregularLayoutError):
        list(hour_partitions(tmp_path / "ds", None))
    got = select_flows(tmp_path / "ds", order="tstart", limit=2)
    assert got.column("src_port").to_pylist() == [0, 1]


def test_window_files_leaves_out_days_outside_the_window(tmp_path: Path) -> None:
    from rating_engine.traffic.flow_stats import window_files

    for rel in ["date=2026-01-01/hour=00/a.parquet", "date=2026-01-02/b.parquet",
                "date=bad/c.parquet", "x.parquet", "_tmp/y.parquet", ".h/z.parquet",
                "date=2026-01-03/.h.parquet", "date=2026-01-04/date=2026-01-01/n.parquet",
                "date=2026-01-01/date=2026-01-04/m.parquet"]:  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    day = 86_400_000_000
    jan1 = int((datetime(2026, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) * 1_000_000

    def names(window: tuple[int, int] | None) -> list[str]:
        return [p.relative_to(tmp_path).as_posix() for p in window_files(tmp_path, window)]

    assert names(None) == ["date=2026-01-01/date=2026-01-04/m.parquet",
                           "date=2026-01-01/hour=00/a.parquet", "date=2026-01-02/b.parquet",
                           "date=2026-01-04/date=2026-01-01/n.parquet", "date=bad/c.parquet",
                           "x.parquet"]  # fmt: skip
    # the outermost date= folder decides; folders without a readable date always stay
    assert names((jan1 + day, jan1 + 2 * day)) == ["date=2026-01-02/b.parquet",
                                                   "date=bad/c.parquet", "x.parquet"]  # fmt: skip
    assert names((jan1 + 3 * day, jan1 + 9 * day)) == [
        "date=2026-01-04/date=2026-01-01/n.parquet", "date=bad/c.parquet", "x.parquet"]  # fmt: skip


def test_a_folder_that_cannot_be_listed_is_an_error_not_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.walk skipped a folder it could not list: a query silently missed its flows.
    (The tests run as root, where permissions do not stop opendir: scandir is patched.)"""
    import os

    from rating_engine.traffic.flow_stats import window_files

    rows = [{"src_addr": addr(HOSTS[0]), "dst_addr": addr(HOSTS[1]), "next_hop": None,
             "exporter": None, "src_port": 1, "dst_port": 80, "protocol": 6, "tcp_flags": 0,
             "tos": 0, "bytes": 1, "packets": 1, "input_if": 0, "output_if": 0, "src_as": 0,
             "dst_as": 0, "vlan": 0, "flow_start": T0, "flow_end": T0}]  # fmt: skip
    write_partitioned(flows_table(rows), tmp_path / "ds", time_column="flow_start",
                      part_name="t", hourly=True)  # fmt: skip
    locked = next((tmp_path / "ds").glob("date=*"))
    real = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(PermissionError) as error:
        window_files(tmp_path / "ds", None)
    assert error.value.filename == str(locked)
    with pytest.raises(PermissionError):
        select_flows(tmp_path / "ds", order="tstart", limit=1)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(timed_rows, min_size=1, max_size=60), n=st.sampled_from([1, 3]),
       renormalise=st.booleans())  # fmt: skip
def test_address_statistics_by_the_kernel_equal_the_reference(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]], n: int,
    renormalise: bool,
) -> None:  # fmt: skip
    """Several statistics with a top-N of one address: the hash group-by kernel's path
    (taken from 500k matching flows; here from the first) ranks as the reference."""
    from unittest import mock

    root = tmp_path_factory.mktemp("flows")
    write_partitioned(flows_table(rows), root, time_column="flow_start", part_name="t",
                      hourly=True)  # fmt: skip
    specs = [parse_stat(s) for s in ("srcip/bytes/flows", "dstip/packets", "dstport/flows")]
    with mock.patch("rating_engine.traffic.flow_stats._KERNEL_ROWS", 1):
        tables, _ = flow_statistics(root, specs, n=n, renormalise=renormalise)
    pairs = [(s, o) for s in specs for o in s.orders]
    for table, (spec, order) in zip(tables, pairs, strict=True):
        expected = ref_stats(rows, spec.keys, order, n, renormalise)
        assert as_rows(table, 1) == [(e[0], *e[2:]) for e in expected], (spec, order)


@pytest.mark.parametrize(
    "key_pairs",
    [(("src_addr",), False), (("exporter",), False), (("dst_port",), False),
     (("input_if",), False), (("src_addr", "dst_addr"), False), (("protocol", "tos"), False),
     (("src_addr", "dst_addr"), True)],
)  # fmt: skip
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    rows=st.lists(timed_rows, min_size=1, max_size=60),
    bucket=st.sampled_from([0, HOUR, 7_000_000]),
    filter_text=st.sampled_from(["", "proto tcp", "src net 10.0.0.0/8"]),
    window=st.one_of(st.none(), st.tuples(st.integers(0, 30), st.integers(1, 30))),
    renormalise=st.booleans(),
)  # fmt: skip
def test_polars_sums_equal_arrow_sums(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]],
    key_pairs: tuple[tuple[str, ...], bool], bucket: int, filter_text: str,
    window: tuple[int, int] | None, renormalise: bool,
) -> None:  # fmt: skip
    """polars_sums is the partial of arrow_sums (same columns, types and sums): null
    exporters group as ``::``, null or 0 sampling as 1, pairs in byte order, buckets
    floored, the window and the filter applied."""
    import pyarrow.compute as pc

    from rating_engine.traffic.flow_query import arrow_sums, plain_columns, sortable
    from rating_engine.traffic.flow_stats import polars_sums, window_files

    key, pairs = key_pairs
    root = tmp_path_factory.mktemp("flows")
    table = flows_table(rows)
    write_partitioned(table, root, time_column="flow_start", part_name="t", hourly=True)
    flt = compile_filter(filter_text) if filter_text else None
    win = None if window is None else (T0 + window[0] * HOUR, T0 + sum(window) * HOUR)
    columns = plain_columns(key) or []  # input_if: with its exporter
    got = polars_sums(window_files(root, win), columns, bucket, window=win, flow_filter=flt,
                      renormalise=renormalise, pairs=pairs)  # fmt: skip
    rows_kept = table if flt is None else flt.apply(table)
    if win is not None:
        ts = rows_kept.column("flow_start").cast(pa.int64())
        rows_kept = rows_kept.filter(pc.and_(pc.greater_equal(ts, win[0]), pc.less(ts, win[1])))
    if pairs:
        src, dst = (
            rows_kept.column("src_addr").to_pylist(),
            rows_kept.column("dst_addr").to_pylist(),
        )
        lo = pa.array([min(a, b) for a, b in zip(src, dst, strict=True)], pa.binary(16))
        hi = pa.array([max(a, b) for a, b in zip(src, dst, strict=True)], pa.binary(16))
        rows_kept = rows_kept.set_column(
            rows_kept.schema.get_field_index("src_addr"), "src_addr", lo
        )
        rows_kept = rows_kept.set_column(
            rows_kept.schema.get_field_index("dst_addr"), "dst_addr", hi
        )
    if rows_kept.num_rows == 0:
        assert got is None
        return
    want = arrow_sums(rows_kept, list(key), bucket or None, renormalise)
    assert got is not None
    assert got.schema == want.schema

    def ordered(t: pa.Table) -> list[dict[str, Any]]:
        keys = [c for c in t.schema.names if c not in ("bytes", "packets", "flows")]
        return t.take(pc.sort_indices(sortable(t), [(k, "ascending") for k in keys])).to_pylist()

    assert ordered(got) == ordered(want)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(rows=st.lists(timed_rows, min_size=1, max_size=40))
def test_polars_ranks_past_the_groups_keep_every_group(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]]
) -> None:
    """A top-N larger than the groups (even past 64 bits: polars' top_k refuses it) leaves
    every group a candidate, as the other engines do."""
    from rating_engine.traffic.flow_stats import polars_sums, window_files

    root = tmp_path_factory.mktemp("flows")
    write_partitioned(flows_table(rows), root, time_column="flow_start", part_name="t")
    files = window_files(root, None)
    every = polars_sums(files, ["dst_port"], 0, renormalise=True)
    huge = polars_sums(files, ["dst_port"], 0, renormalise=True, ranks=("bytes", 2**70))
    assert every is not None
    assert huge is not None
    assert huge.sort_by("dst_port").to_pylist() == every.sort_by("dst_port").to_pylist()

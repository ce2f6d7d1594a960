"""Template compilation, the record kernel against its reference twin, and the cache."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.netflow.export_synth import encode_record
from collectors.netflow.information_elements import (
    ADDRESS_SLOTS,
    IPV6_ADDRESS_IES,
    LABEL_SLOTS,
    N_ADDRESS_SLOTS,
    N_VALUE_SLOTS,
    SECTION_SLOTS,
    VALUE_SLOTS,
)
from collectors.netflow.templates import (
    ADDRESS_BIT,
    FieldSpec,
    Template,
    TemplateCache,
    decode_records,
    empty_outputs,
)

EXP = b"\x00" * 10 + b"\xff\xff" + bytes([192, 0, 2, 9])
MAPPED_INTS = sorted(ie for pen, ie in VALUE_SLOTS if pen == 0)


def run_kernel(tpl: Template, body: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Decode one set with the Numba kernel; vals come back uncompacted (slot, record)."""
    vals, present, addrs, n, status, _, _ = run_kernel_all(tpl, body)
    return vals, present, addrs, n, status


def run_kernel_all(
    tpl: Template, body: bytes
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int, np.ndarray, np.ndarray]:
    """:func:`run_kernel` plus the packet-section and label blocks."""
    cap = len(body) // max(tpl.min_length, 1)
    vals, present, addrs, rec_set, sec, labels = empty_outputs(
        cap,
        N_VALUE_SLOTS,
        dual_family=tpl.dual_family,
        sections=tpl.has_sections,
        labels=tpl.has_labels,
    )
    count = np.zeros(1, np.int64)
    status = np.zeros(1, np.int8)
    f_row = np.where(tpl.kinds == 1, tpl.slots, 0).astype(np.int32)
    n = decode_records(
        np.frombuffer(body, np.uint8),
        np.zeros(1, np.int64),
        np.array([len(body)], np.int64),
        np.zeros(1, np.int32),
        np.zeros(1, np.int32),
        np.array([len(tpl.fields)], np.int32),
        np.array([max(tpl.min_length, 1)], np.int32),
        np.array([tpl.fixed_length is not None]),
        tpl.kinds,
        tpl.slots.astype(np.int32),
        f_row,
        tpl.lengths,
        vals,
        present,
        addrs,
        rec_set,
        count,
        status,
        sec,
        labels,
    )
    return vals[:, :n], present[:n], addrs[:n], n, int(status[0]), sec[:n], labels[:n]


field_st = st.one_of(
    st.tuples(st.sampled_from(MAPPED_INTS), st.sampled_from([1, 2, 3, 4, 5, 8])),
    st.tuples(st.sampled_from([8, 12, 27, 28, 15, 62]), st.sampled_from([4, 16])),
    st.tuples(st.sampled_from([56, 60, 136, 82, 400]), st.integers(1, 12)),
    st.tuples(st.sampled_from([82, 1, 8, 315, 313]), st.just(65535)),
    st.tuples(st.sampled_from([315, 313]), st.integers(1, 64)),
    st.tuples(st.sampled_from([70, 71, 79]), st.just(3)),
)


@settings(max_examples=200, deadline=None)
@given(fields=st.lists(field_st, min_size=1, max_size=12, unique_by=lambda f: f[0]), data=st.data())
def test_kernel_matches_python_reference(fields, data):  # type: ignore[no-untyped-def]
    specs = tuple(FieldSpec(ie, ln) for ie, ln in fields)
    tpl = Template(EXP, 1, 300, specs, "ipfix")
    n_rec = data.draw(st.integers(0, 5))
    records = []
    for _ in range(n_rec):
        values: list[int | bytes] = []
        for f in specs:
            if f.length == 65535:
                values.append(data.draw(st.binary(max_size=300)))
            else:
                values.append(data.draw(st.binary(min_size=f.length, max_size=f.length)))
        records.append(encode_record([f.length for f in specs], values))
    body = b"".join(records) + b"\x00" * data.draw(st.integers(0, 3))
    vals, present, addrs, n, status, sec, labels = run_kernel_all(tpl, body)
    ref = tpl.decode_python(body)
    assert n == len(ref) >= n_rec
    families = {}
    for f in specs:
        if (f.pen, f.ie) in ADDRESS_SLOTS:
            families.setdefault(ADDRESS_SLOTS[(f.pen, f.ie)], set()).add(
                (f.pen, f.ie) in IPV6_ADDRESS_IES
            )
    dual = any(len(v) == 2 for v in families.values())
    assert tpl.dual_family == dual
    for i, rec in enumerate(ref[:n_rec]):
        # Several elements may share a slot (32/139 ICMP): the last wins. A template with
        # both address families (8 and 27, say) keeps its IPv6 fields in slots 4-7.
        want_vals: dict[int, int] = {}
        want_addrs: dict[int, bytes] = {}
        want_sec: tuple[int, bytes] | None = None
        want_labels = [0] * len(LABEL_SLOTS)
        for k, f in enumerate(specs):
            value = rec[f.name]
            assert not isinstance(value, float)
            raw_v = value if isinstance(value, bytes) else value.to_bytes(f.length, "big")
            key = (f.pen, f.ie)
            if tpl.kinds[k] == 1 and 1 <= len(raw_v) <= 8:
                want_vals[VALUE_SLOTS[key]] = int.from_bytes(raw_v, "big")
            elif tpl.kinds[k] == 2 and len(raw_v) in (4, 16):
                mapped = b"\0" * 10 + b"\xff\xff" + raw_v if len(raw_v) == 4 else raw_v
                shift = N_ADDRESS_SLOTS if dual and key in IPV6_ADDRESS_IES else 0
                want_addrs[ADDRESS_SLOTS[key] + shift] = mapped
            elif key in SECTION_SLOTS:
                if want_sec is None or SECTION_SLOTS[key] + 1 < want_sec[0]:
                    want_sec = (SECTION_SLOTS[key] + 1, raw_v)
            elif key in LABEL_SLOTS and len(raw_v) >= 3:
                want_labels[LABEL_SLOTS[key]] = int.from_bytes(raw_v[:3], "big")
        for slot, v in want_vals.items():
            assert int(vals[slot, i]) == v
            assert present[i] >> np.uint64(slot) & np.uint64(1)
        for a, v in want_addrs.items():
            assert addrs[i, a].tobytes() == v
            assert present[i] >> np.uint64(ADDRESS_BIT + a) & np.uint64(1)
        if tpl.has_sections:
            if want_sec is None:
                assert sec[i, 0] == 0
            else:
                kind, off, length = sec[i].tolist()
                assert (kind, body[off : off + length]) == want_sec
        if tpl.has_labels:
            assert labels[i].tolist() == want_labels
    assert status in (0, 1)


@settings(max_examples=100, deadline=None)
@given(
    lengths=st.lists(st.sampled_from([1, 2, 4, 8, 3, 6]), min_size=1, max_size=10),
    data=st.data(),
)
def test_fixed_templates_match_numpy_dtype(lengths, data):  # type: ignore[no-untyped-def]
    ies = MAPPED_INTS[: len(lengths)]
    specs = tuple(FieldSpec(ie, ln) for ie, ln in zip(ies, lengths, strict=False))
    tpl = Template(EXP, 0, 256, specs, "netflow_v9")
    dtype = tpl.dtype
    assert dtype is not None
    assert dtype.itemsize == tpl.fixed_length == sum(lengths)
    n = data.draw(st.integers(0, 6))
    body = data.draw(st.binary(min_size=n * dtype.itemsize, max_size=n * dtype.itemsize))
    arr = np.frombuffer(body, dtype)
    vals, _, _, got_n, _ = run_kernel(tpl, body)
    assert got_n == n
    for k, f in enumerate(specs):
        slot = VALUE_SLOTS[(0, f.ie)]
        col = arr[f"f{k}"]
        if f.length in (1, 2, 4, 8):
            assert vals[slot].tolist() == col.astype(np.uint64).tolist()
        else:
            want = [int.from_bytes(bytes(v), "big") for v in col]
            assert vals[slot].tolist() == want


def test_variable_length_prefixes_one_and_three_bytes() -> None:
    specs = (FieldSpec(82, 65535), FieldSpec(1, 4), FieldSpec(8, 65535))
    tpl = Template(EXP, 0, 400, specs, "ipfix")
    assert tpl.fixed_length is None
    assert tpl.min_length == 6
    assert tpl.dtype is None
    long_name = b"x" * 300  # needs 255 + 2-byte length
    body = encode_record([65535, 4, 65535], [long_name, 1234, bytes([10, 1, 2, 3])])
    assert body[0] == 255
    assert body[1:3] == (300).to_bytes(2, "big")
    body += encode_record([65535, 4, 65535], [b"eth0", 99, bytes(16)])
    vals, present, addrs, n, status = run_kernel(tpl, body)
    assert (n, status) == (2, 0)
    assert vals[VALUE_SLOTS[(0, 1)]].tolist() == [1234, 99]
    assert addrs[0, 0].tobytes()[-4:] == bytes([10, 1, 2, 3])
    assert addrs[1, 0].tobytes() == bytes(16)
    assert present[0] >> np.uint64(ADDRESS_BIT) & np.uint64(1)
    ref = tpl.decode_python(body)
    assert ref[0]["interfaceName"] == long_name
    assert ref[1]["octetDeltaCount"] == 99


def test_record_overrunning_its_set_stops_that_set() -> None:
    tpl = Template(EXP, 0, 401, (FieldSpec(1, 4), FieldSpec(82, 65535)), "ipfix")
    body = encode_record([4, 65535], [1, b"abc"]) + b"\x00\x00\x00\x02\x09ab"  # 9 > 2 left
    _, _, _, n, status = run_kernel(tpl, body)
    assert (n, status) == (1, 1)


def test_enterprise_and_reverse_fields_are_named_and_mapped() -> None:
    specs = (FieldSpec(1, 8, 29305), FieldSpec(1, 8), FieldSpec(12, 4, 9), FieldSpec(1, 4, 9))
    tpl = Template(EXP, 0, 402, specs, "ipfix")
    assert [f.name for f in specs] == [
        "reverseOctetDeltaCount",
        "octetDeltaCount",
        "e9id12",
        "e9id1",
    ]
    assert tpl.kinds.tolist() == [1, 1, 0, 0]  # other enterprises are kept but not mapped


def test_cache_replace_unchanged_limit_and_json() -> None:
    cache = TemplateCache(max_per_exporter=2)
    a = Template(EXP, 0, 256, (FieldSpec(1, 4),), "netflow_v9")
    assert cache.put(a) == "new"
    assert cache.put(Template(EXP, 0, 256, (FieldSpec(1, 4),), "netflow_v9")) == "unchanged"
    assert cache.get(EXP, 0, 256) is a
    b = Template(EXP, 0, 256, (FieldSpec(2, 4),), "netflow_v9")
    assert cache.put(b) == "replaced"
    assert cache.get(EXP, 0, 256) is b
    assert cache.put(Template(EXP, 1, 256, (FieldSpec(1, 4),), "netflow_v9")) == "new"
    assert cache.put(Template(EXP, 2, 256, (FieldSpec(1, 4),), "netflow_v9")) == "limit"
    other = b"\x00" * 15 + b"\x01"
    assert cache.put(Template(other, 2, 256, (FieldSpec(1, 4),), "netflow_v9")) == "new"
    restored = TemplateCache.from_json(cache.to_json())
    assert len(restored) == 3
    got = restored.get(EXP, 0, 256)
    assert got is not None
    assert got.fields == b.fields
    assert got.kinds.tolist() == b.kinds.tolist()
    assert cache.remove(EXP, 0, 256)
    assert not cache.remove(EXP, 0, 256)
    assert cache.put(Template(EXP, 3, 256, (FieldSpec(1, 4),), "netflow_v9")) == "new"


@pytest.mark.parametrize("length", [0, 9, 3])
def test_unmappable_lengths_are_not_mapped(length: int) -> None:
    tpl = Template(EXP, 0, 256, (FieldSpec(8, length), FieldSpec(2, 4)), "ipfix")
    assert tpl.kinds.tolist()[0] == 0

"""The detection table every traffic rule returns: its schema, severities, grading and object names.

A detection is one row of :data:`DETECTION_SCHEMA`: what object, which kind, the measure
observed against the threshold of its suggested severity, and the judged window. Severity
tiers are ``(warning, minor, major, critical)`` lower bounds on the measure (``math.inf``
disables a level). Times are int64 microseconds since the epoch (UTC).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from collectors.addresses import address_from_bytes
from collectors.schemas import TIMESTAMP
from rating_engine.errors import RatingError

__all__ = [
    "DETECTION_KINDS",
    "DETECTION_SCHEMA",
    "SEVERITIES",
    "Tiers",
    "concat_detections",
    "detection_table",
    "empty_detections",
    "encode_objects",
    "grade",
    "object_names",
    "times_us",
]

#: Suggested severities, ascending.
SEVERITIES = ("warning", "minor", "major", "critical")

#: What a detection is about (also the key of the alarm mapping in ``bss.assurance.alarms``).
DETECTION_KINDS = (
    "traffic_high",
    "traffic_low",
    "exporter_silent",
    "sequence_loss",
    "interface_utilisation",
    "syn_flood",
    "port_scan",
)


def _f(name: str, type_: pa.DataType, nullable: bool, doc: str) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


DETECTION_SCHEMA = pa.schema(
    [
        _f(
            "object",
            pa.string(),
            False,
            "what is affected: exporter:<addr>, subscription:<id>, interface:<addr>/<ifIndex>, "
            "source:<addr>",
        ),
        _f("kind", pa.string(), False, "one of " + ", ".join(DETECTION_KINDS)),
        _f(
            "metric",
            pa.string(),
            False,
            "what was measured (bytes, silent_minutes, loss_rate, in_utilisation, ...)",
        ),
        _f("observed", pa.float64(), False, "the measured value in the window"),
        _f("threshold", pa.float64(), False, "the value at which the suggested severity starts"),
        _f("baseline", pa.float64(), True, "expected value (hour-of-week median); null for rules"),
        _f("direction", pa.string(), False, "above or below: which side of threshold it is"),
        _f("window_start", TIMESTAMP, False, "start of the judged window, UTC"),
        _f("window_end", TIMESTAMP, False, "end of the judged window (exclusive), UTC"),
        _f("severity", pa.string(), False, "suggested severity: warning, minor, major, critical"),
        _f("detail", pa.string(), False, "one line for people"),
    ]
)

#: Lower bounds (warning, minor, major, critical) of a measure.
Tiers = tuple[float, float, float, float]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def empty_detections() -> pa.Table:
    """A zero-row detection table."""
    return DETECTION_SCHEMA.empty_table()


def concat_detections(tables: Sequence[pa.Table]) -> pa.Table:
    """Detection tables stacked, sorted by object, kind, metric and window."""
    parts = [t for t in tables if t.num_rows]
    if not parts:
        return empty_detections()
    out = pa.concat_tables(parts)
    keys = [(c, "ascending") for c in ("object", "kind", "metric", "window_start")]
    return out.take(pc.sort_indices(out, sort_keys=keys))


def detection_table(
    objects: Sequence[str],
    kind: str | Sequence[str],
    metric: str | Sequence[str],
    observed: Sequence[float] | F64,
    threshold: Sequence[float] | F64,
    baseline: Sequence[float | None] | F64 | None,
    direction: str | Sequence[str],
    window_start: Sequence[int] | I64,
    window_end: Sequence[int] | I64,
    severity: Sequence[str],
    detail: Sequence[str],
) -> pa.Table:
    """Detections from one column per field; a text given once applies to every row."""
    n = len(objects)

    def col(v: str | Sequence[str]) -> list[str]:
        return [v] * n if isinstance(v, str) else list(v)

    base = pa.nulls(n, pa.float64()) if baseline is None else pa.array(baseline, pa.float64())
    return pa.table(
        [
            pa.array(list(objects), pa.string()),
            pa.array(col(kind), pa.string()),
            pa.array(col(metric), pa.string()),
            pa.array(observed, pa.float64()),
            pa.array(threshold, pa.float64()),
            base,
            pa.array(col(direction), pa.string()),
            pa.array(window_start, pa.int64()).cast(TIMESTAMP),
            pa.array(window_end, pa.int64()).cast(TIMESTAMP),
            pa.array(list(severity), pa.string()),
            pa.array(list(detail), pa.string()),
        ],
        schema=DETECTION_SCHEMA,
    )


def grade(values: F64, tiers: Tiers) -> tuple[I64, F64]:
    """Severity index (-1 none, 0 warning .. 3 critical) and the bound reached, per value."""
    _check_tiers(tiers)
    level = np.full(values.shape[0], -1, dtype=np.int64)
    bound = np.full(values.shape[0], np.nan)
    for i, lim in enumerate(tiers):
        hit = values >= lim
        level[hit] = i
        bound[hit] = lim
    return level, bound


def _check_tiers(tiers: Tiers) -> None:
    if any(math.isnan(x) for x in tiers) or any(b < a for a, b in itertools.pairwise(tiers)):
        raise RatingError(f"severity tiers {tiers} must be ascending")


def _addr_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Address column -> text, converting each distinct value once."""
    enc = pc.dictionary_encode(pc.fill_null(column, pa.scalar(b"\x00" * 16, pa.binary(16))))
    arr = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
    words = [str(address_from_bytes(v)) for v in arr.dictionary.to_pylist()]
    return pa.array(words, pa.string()).take(arr.indices)


def object_names(table: pa.Table, kind: str) -> pa.Array:
    """Alarmed-object names for the key columns of a kernel result.

    ``kind``: ``subscription`` (``subscription_id``), ``exporter``, ``source``
    (``src_addr``), ``interface_in`` / ``interface_out`` (``exporter`` + ``input_if`` /
    ``output_if`` -> ``interface:<exporter>/<ifIndex>``).
    """
    if kind == "subscription":
        ids = pc.cast(table.column("subscription_id"), pa.string())
        return pc.binary_join_element_wise("subscription:", ids, "").combine_chunks()
    if kind in ("exporter", "source"):
        text = _addr_text(table.column("exporter" if kind == "exporter" else "src_addr"))
        return pc.binary_join_element_wise(f"{kind}:", text, "")
    if kind in ("interface_in", "interface_out"):
        ifc = table.column("input_if" if kind == "interface_in" else "output_if")
        exp = _addr_text(table.column("exporter"))
        return pc.binary_join_element_wise(
            "interface:", exp, "/", pc.cast(ifc, pa.string()).combine_chunks(), ""
        )
    raise RatingError(f"object_names: unknown object kind {kind!r}")


def times_us(table: pa.Table, name: str) -> I64:
    """A timestamp column as int64 microseconds since the epoch."""
    return np.asarray(pc.cast(table.column(name), pa.int64()).to_numpy(), dtype=np.int64)


def encode_objects(objects: pa.Array) -> tuple[I64, list[str]]:
    """Object names -> (a code per row, the distinct names the codes index)."""
    enc = pc.dictionary_encode(objects)
    arr = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
    return arr.indices.to_numpy().astype(np.int64), arr.dictionary.to_pylist()

"""The compiled plan: its arrays in kernel order, the names they index, and its disk cache.

Layout (every index is global across the plan):

* versions ``v``: tariff, activation time, trie root, band-timeline slice, pricing slice,
  and one common denominator ``Q`` per (version, service) for exact rational costs;
* a digit trie (``trie_child[node, digit]``) per version, with its jump table and
  two-digit blocks (see :mod:`rating_engine.tariff.destinations`), and a short list of the
  version's text prefixes (``voicemail``, ``+49``: ``txt_*``), matched byte by byte;
* a band timeline per version: UTC instants where the band class changes (the winning
  band, or with per-destination band selection the set of bands in force), precomputed
  from the tariff's IANA zone for a range of years (DST-correct), plus a per-day index so
  finding the class of an instant is O(1) (see :mod:`rating_engine.tariff.band_timeline`);
* pricing per (version, service, destination column, class): the rate and the output
  label of the band it is reported under, side by side (``price``, flat pairs; -1 = no
  rate);
* rates (per version, service, name) and their groups, with each group's price as the
  reduced fraction ``p/q`` nano-units per base unit (ms for voice, events, bytes), and
  per rate one packed row (``rate_fast``) of all the kernel's one-step path reads;
* allowances eligible per (version, service, destination set) as a CSR list;
* output labels: version names, set names, band names, prefixes and currencies repeat
  across tariffs and versions; ``*_label`` (``prefix_col[:, 1]``, ``price[1::2]``) give
  each its code among the distinct texts, so the rated columns' dictionaries hold every
  text once.

Plans are cached on disk by a hash of the tariffs' content (``np.savez``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rating_engine.tariff.model import Tariff

__all__ = [
    "KERNEL_FIELDS",
    "SVC_DATA",
    "SVC_SMS",
    "SVC_VOICE",
    "RatingPlan",
    "label_codes",
    "labels",
    "load_plan",
    "plan_hash",
    "save_plan",
]

#: Service codes: indexes in :data:`rating_engine.tariff.model.SERVICES`.
SVC_VOICE, SVC_SMS, SVC_DATA = 0, 1, 2
#: Bumped whenever the array layout changes, so stale caches are never read.
_LAYOUT = "plan-v17"


#: The plan arrays in the order the kernels index them (``plan[i]`` in rating.kernel).
KERNEL_FIELDS = (
    "tariff_first_ver",
    "tariff_n_ver",
    "ver_active_from",
    "ver_trie_root",
    "ver_n_sets",
    "ver_set_first",
    "ver_class_n",
    "ver_bt_first",
    "trie_child",
    "ver_dix_first",
    "bt_start",
    "bt_band",
    "day_ix",
    "day_range",
    "ver_price_first",
    "price",
    "ver_Q",
    "rate_g0",
    "rate_ng",
    "rate_conn",
    "rate_round_method",
    "rate_round_dec",
    "rate_compat",
    "rate_min",
    "rate_max",
    "grp_start",
    "grp_inc",
    "grp_p",
    "grp_q",
    "grp_qmul",
    "grp_inc_cost",
    "ver_elig_first",
    "elig_ptr",
    "jump",
    "rate_conn_q",
    "grp_mulinc",
    "grp_safe",
    "grp_inc_inv",
    "rate_den_inv",
    "ver_depth",
    "prefix_col",
    "step2",
    "step2_node",
    "ver_label",
    "set_label",
    "cur_label",
    "rate_fast",
    "rate_fast_inv",
    "grp_inc_den",
    "rate_inc_step",
    "rate_inc_rm",
    "bt_newday",
    "ver_txt_first",
    "ver_txt_n",
    "txt_off",
    "txt_data",
    "txt_prefix",
    "rate_zero_free",
)


@dataclass
class RatingPlan:
    """Compiled tariffs: integer arrays for the kernels and the names they index."""

    arrays: dict[str, np.ndarray]
    tariff_ids: list[str]
    currencies: list[str]
    version_names: list[str]
    set_names: list[str]
    prefixes: list[str]
    band_names: list[str]
    rate_names: list[str]
    allowance_ids: list[str]
    allowance_units: list[int]
    years: tuple[int, int]
    content_hash: str
    tariffs: dict[str, Tariff] = field(default_factory=dict, repr=False)
    #: Derived lookups (string dictionaries for output columns), filled lazily by callers.
    memo: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    def kernel_args(self) -> tuple[np.ndarray, ...]:
        """The arrays in :data:`KERNEL_FIELDS` order, as the kernels take them."""
        return tuple(self.arrays[f] for f in KERNEL_FIELDS)

    def tariff_index(self, tariff_id: str) -> int:
        """Index of ``tariff_id`` in the plan, -1 if absent."""
        try:
            return self.tariff_ids.index(tariff_id)
        except ValueError:
            return -1


def label_codes(names: list[str]) -> np.ndarray:
    """Each name's index among the distinct names in first-seen order (see :func:`labels`)."""
    first: dict[str, int] = {}
    return np.array([first.setdefault(x, len(first)) for x in names], dtype=np.int32)


def labels(names: list[str]) -> list[str]:
    """The distinct names in first-seen order: the dictionary :func:`label_codes` index."""
    return list(dict.fromkeys(names))


def plan_hash(tariffs: Mapping[str, Tariff], years: tuple[int, int]) -> str:
    """The cache key of a plan: the layout version, ``years`` and the tariffs' content."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{_LAYOUT}|{years}|".encode())
    for tid in sorted(tariffs):
        # repr of frozen dataclasses is deterministic and covers every field; fields added
        # later are left out at their defaults, so a tariff that does not use them keeps its
        # hash (a changed hash re-rates every final period priced with the old one)
        text = repr(tariffs[tid]).replace(tariffs[tid].source, "")
        for default in _NEW_DEFAULTS:
            text = text.replace(default, "")
        h.update(text.encode())
    return h.hexdigest()


#: reprs of fields at their defaults that were added after plans were first cached
_NEW_DEFAULTS = (
    ", pass_through=None",
    ", flat=Decimal('0')",
    ", measure='units', free_units=0, free_events=0, package_size=0, package_price=Decimal('0')",
    ", metric=''",
    ", active_from=None, active_until=None",
)


_NAME_FIELDS = (
    "tariff_ids",
    "currencies",
    "version_names",
    "set_names",
    "prefixes",
    "band_names",
    "rate_names",
    "allowance_ids",
)


def save_plan(plan: RatingPlan, path: Path) -> None:
    """Write ``plan`` to ``path`` (``.npz``: its arrays, and its names as JSON)."""
    names = {f: getattr(plan, f) for f in _NAME_FIELDS}
    names["allowance_units"] = plan.allowance_units
    names["years"] = list(plan.years)
    tmp = path.with_name(path.name + ".tmp.npz")
    blob = np.frombuffer(json.dumps(names).encode(), dtype=np.uint8)
    np.savez(tmp, __names__=blob, **plan.arrays)  # type: ignore[arg-type]
    tmp.replace(path)  # atomic: a reader never sees half a cache file


def load_plan(path: Path, content_hash: str, tariffs: dict[str, Tariff]) -> RatingPlan | None:
    """The plan cached at ``path``, or None if it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None
    names = json.loads(arrays.pop("__names__").tobytes())
    return RatingPlan(
        arrays=arrays,
        **{f: names[f] for f in _NAME_FIELDS},
        allowance_units=names["allowance_units"],
        years=(names["years"][0], names["years"][1]),
        content_hash=content_hash,
        tariffs=tariffs,
    )

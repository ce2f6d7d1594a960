"""Which address family a record means, for templates that carry both IPv4 and IPv6 fields.

Routers (Cisco IOS-XR / XE, Juniper, Huawei) often export one template for all traffic with
both families' address elements (8/12/15/18 and 27/28/62/63) and fill the family a packet
does not have with zeros. The template compiler puts such a template's IPv6 fields in
address slots 4-7; here each record picks one family for its source and destination,
never a fixed preference for either:

1. the family whose source or destination field carries a value (is not all zeros) wins;
2. both carry one: the family ``ipVersion`` (IE 60) names, when the record has it;
3. still tied: the family carrying both a source and a destination over one carrying one;
4. still tied, or neither carries a value: ``ipVersion`` if the record has it, else the
   family of the template's first address field. A tie where both families carry values
   is counted as ``address_family_ambiguous``.

Next hops (15/62, BGP 18/63) are chosen per field: a non-zero one over a zero one, an
exported one over a missing one, else the record's family.
"""

from __future__ import annotations

import numpy as np

from collectors.netflow.information_elements import N_ADDRESS_SLOTS
from collectors.netflow.templates import ADDRESS_BIT

__all__ = ["choose_families"]

_SLOTS = N_ADDRESS_SLOTS


def _bits(present: np.ndarray, bit: int) -> np.ndarray:
    return ((present >> np.uint64(bit)) & np.uint64(1)).astype(np.bool_)


def choose_families(
    addrs: np.ndarray,
    present: np.ndarray,
    dual: np.ndarray,
    ip_version: np.ndarray,
    first_family: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Fold 8-slot addresses ``(n, 8, 16)`` to 4 slots, choosing a family per record.

    ``dual[i]``: record ``i`` comes from a template with both families (the others keep
    slots 0-3 as they are); ``ip_version`` is IE 60 per record (0 if absent);
    ``first_family`` the template's first address family (4 or 6). Returns the
    ``(n, 4, 16)`` addresses, the presence words with address bits of the chosen fields,
    and how many records were ambiguous.
    """
    out = np.ascontiguousarray(addrs[:, :_SLOTS])
    idx = np.nonzero(dual)[0]
    if idx.size == 0:
        return out, present, 0
    sub = addrs[idx]
    bits = present[idx]
    has4 = [_bits(bits, ADDRESS_BIT + a) for a in range(_SLOTS)]
    has6 = [_bits(bits, ADDRESS_BIT + _SLOTS + a) for a in range(_SLOTS)]
    # An IPv4 field is stored mapped (::ffff:a.b.c.d): its value is the last 4 bytes.
    nz4 = [has4[a] & sub[:, a, 12:].any(axis=1) for a in range(_SLOTS)]
    nz6 = [has6[a] & sub[:, _SLOTS + a].any(axis=1) for a in range(_SLOTS)]
    c4, c6 = nz4[0] | nz4[1], nz6[0] | nz6[1]
    full4, full6 = nz4[0] & nz4[1], nz6[0] & nz6[1]
    ipv = ip_version[idx]
    both = c4 & c6
    use6 = c6 & ~c4
    use6 |= both & (ipv == 6)
    tie = both & (ipv != 4) & (ipv != 6)
    use6 |= tie & full6 & ~full4
    ambiguous = tie & (full6 == full4)
    fallback6 = np.where(ipv == 6, True, np.where(ipv == 4, False, first_family[idx] == 6))
    use6 |= (ambiguous | (~c4 & ~c6)) & fallback6
    chosen = bits & ~np.uint64(((1 << (2 * _SLOTS)) - 1) << ADDRESS_BIT)
    for a in range(_SLOTS):
        if a < 2:
            pick6 = use6
        else:  # next hops: a value over a zero, an exported field over a missing one
            pick6 = np.where(nz6[a] != nz4[a], nz6[a], np.where(has6[a] != has4[a], has6[a], use6))
        out[idx[pick6], a] = sub[pick6, _SLOTS + a]
        got = np.where(pick6, has6[a], has4[a])
        chosen |= got.astype(np.uint64) << np.uint64(ADDRESS_BIT + a)
    new_present = present.copy()
    new_present[idx] = chosen
    return out, new_present, int(ambiguous.sum())

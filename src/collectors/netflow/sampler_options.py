"""Sampling announced in options data: NetFlow v9 samplers and IPFIX / PSAMP selectors.

An options record describes one sampler (v9 ``samplerId`` 48, Cisco's flowSamplerID) or
one PSAMP selector (``selectorId`` 302, RFC 5476/5477) of an observation domain; data
records name it by the same element. The 1-in-N interval is read, in this order, from

* ``samplingInterval`` (34) and ``samplerRandomInterval`` (50): N itself;
* ``samplingSize`` n / ``samplingPopulation`` N (309/310; ``selectorAlgorithm`` 3,
  random n-out-of-N): N / n;
* ``samplingPacketInterval`` / ``samplingPacketSpace`` (305/306; the older spelling,
  systematic count-based): (interval + space) / interval;
* ``samplingProbability`` (311; uniform probabilistic): 1 / p;

rounded to the nearest integer and kept within 1 .. 2**32-1. Time-based selection
(307/308) has no packet interval and announces nothing. A record without a sampler or
selector id sets the domain's default for data records that name none.
"""

from __future__ import annotations

__all__ = ["sampler_of", "sampling_interval"]

_MAX = 0xFFFFFFFF


def _clamp(value: float) -> int:
    return int(min(max(round(value), 1), _MAX))


def _positive(rec: dict[str, int | float | bytes], name: str) -> int | float | None:
    v = rec.get(name)
    return v if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else None


def sampling_interval(rec: dict[str, int | float | bytes]) -> int | None:
    """1-in-N from an options record's sampling elements, or None if it announces none."""
    for name in ("samplingInterval", "samplerRandomInterval"):
        v = _positive(rec, name)
        if v is not None:
            return _clamp(v)
    size, population = _positive(rec, "samplingSize"), _positive(rec, "samplingPopulation")
    if size is not None and population is not None:
        return _clamp(population / size)
    interval, space = _positive(rec, "samplingPacketInterval"), rec.get("samplingPacketSpace")
    if interval is not None and isinstance(space, int):
        return _clamp((interval + space) / interval)
    p = _positive(rec, "samplingProbability")
    if p is not None and p <= 1:
        return _clamp(1 / p)
    return None


def sampler_of(rec: dict[str, int | float | bytes]) -> int | None:
    """The sampler / selector id an options record describes, or None."""
    for name in ("samplerId", "selectorId"):
        v = rec.get(name)
        if isinstance(v, int):
            return v
    return None

"""Invoices a person reads, from the bills of a billing run (issue #23).

- :mod:`~bss.invoice.rounding`: the rounding policy, bill lines -> minor units;
- :mod:`~bss.invoice.settings`: the workspace's invoice settings (seller, policy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collectors.lazy import lazy_getattr

if TYPE_CHECKING:
    from bss.invoice.rounding import DEFAULT_POLICY, RoundingPolicy
    from bss.invoice.settings import InvoiceSettings, policy_on, put_settings, settings_on

_LAZY = {
    "DEFAULT_POLICY": "rounding",
    "RoundingPolicy": "rounding",
    "InvoiceSettings": "settings",
    "policy_on": "settings",
    "put_settings": "settings",
    "settings_on": "settings",
}
__all__ = sorted(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)

"""Invoices a person reads, from the bills of a billing run (issue #23).

- :mod:`~bss.invoice.rounding`: the rounding policy, bill lines -> minor units;
- :mod:`~bss.invoice.settings`: the workspace's invoice settings (seller, policy);
- :mod:`~bss.invoice.units`: quantities for people (MiB as the tariff counts, h:mm:ss);
- :mod:`~bss.invoice.document`: a bill with its parties, taxes, usage summary, statement;
- :mod:`~bss.invoice.html`, :mod:`~bss.invoice.pdf`, :mod:`~bss.invoice.tmf678`: renderers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collectors.lazy import lazy_getattr

if TYPE_CHECKING:
    from bss.invoice.document import Invoice, invoices_for
    from bss.invoice.html import render_html
    from bss.invoice.pdf import render_pdf
    from bss.invoice.rounding import DEFAULT_POLICY, RoundingPolicy
    from bss.invoice.settings import InvoiceSettings, policy_on, put_settings, settings_on
    from bss.invoice.tmf678 import applied_rates, customer_bill, tmf678_json

_LAZY = {
    "DEFAULT_POLICY": "rounding",
    "Invoice": "document",
    "InvoiceSettings": "settings",
    "RoundingPolicy": "rounding",
    "applied_rates": "tmf678",
    "customer_bill": "tmf678",
    "invoices_for": "document",
    "policy_on": "settings",
    "put_settings": "settings",
    "render_html": "html",
    "render_pdf": "pdf",
    "settings_on": "settings",
    "tmf678_json": "tmf678",
}
__all__ = [
    "DEFAULT_POLICY",
    "Invoice",
    "InvoiceSettings",
    "RoundingPolicy",
    "applied_rates",
    "customer_bill",
    "invoices_for",
    "policy_on",
    "put_settings",
    "render_html",
    "render_pdf",
    "settings_on",
    "tmf678_json",
]
__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return __all__

"""Bills as TM Forum TMF678 (Customer Bill Management) resources: ``CustomerBill`` and its
``AppliedCustomerBillingRate`` lines.

Money is TMF's ``{"unit": "EUR", "value": 130.66}`` with ``value`` a JSON number written
exactly from the Decimal (never through a float). A final bill is ``state: "validated"``
(issued, not yet known to be sent or paid); a supplementary bill is ``runType:
"offCycle"``. When the receivables ledger has a statement for the bill, the CustomerBill
also carries ``previousBalance``, ``paymentsReceived``, ``otherCredits`` and
``balanceDue`` (extension attributes, Money) and ``remainingAmount`` is the balance due.
"""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from typing import Any

from bss.currencies import minor_units
from bss.invoice.document import Invoice

__all__ = ["applied_rates", "customer_bill", "tmf678_json"]

# a Decimal is dumped as a marked string, then unquoted; the token makes user text that
# looks like the mark impossible to forge
_TOKEN = uuid.uuid4().hex
_MARK = f"\x00{_TOKEN}:"
_MARKED = re.compile(r'"\\u0000' + _TOKEN + r':(-?[0-9]+(?:\.[0-9]+)?)"')


def _money(value: Decimal | str, unit: str) -> dict[str, Any]:
    amount = Decimal(value).quantize(Decimal(1).scaleb(-minor_units(unit)))
    return {"unit": unit, "value": amount}


def _instant(text: str) -> str:
    """``2026-11-01T00:00:00+00:00`` -> ``2026-11-01T00:00:00Z``; a date -> its midnight."""
    if len(text) == 10:
        return f"{text}T00:00:00Z"
    return text.replace("+00:00", "Z")


def customer_bill(invoice: Invoice) -> dict[str, Any]:
    """The TMF678 CustomerBill of an invoice."""
    bill = invoice.bill
    cur = invoice.currency
    no = bill["bill_no"]
    parties = [
        {
            "role": "customer",
            "id": bill["account"],
            "name": invoice.buyer.name,
            "@referredType": "Organization",
        }
    ]
    if invoice.seller is not None:
        parties.insert(
            0, {"role": "seller", "name": invoice.seller.name, "@referredType": "Organization"}
        )
    out: dict[str, Any] = {
        "id": no,
        "href": f"/customerBill/{no}",
        "billNo": no,
        "@type": "CustomerBill",
        "category": "normal",
        "runType": "offCycle" if bill.get("kind") == "supplementary" else "onCycle",
        "state": "validated",
        "billDate": _instant(str(bill["bill_date"])),
        "paymentDueDate": _instant(str(bill["due_date"])),
        "billingPeriod": {
            "startDateTime": _instant(bill["period_start"]),
            "endDateTime": _instant(bill["period_end"]),
        },
        "amountDue": _money(bill["amount_due"], cur),
        "remainingAmount": _money(bill["amount_due"], cur),
        "taxExcludedAmount": _money(bill["amount_excl_tax"], cur),
        "taxIncludedAmount": _money(bill["amount_incl_tax"], cur),
        "taxItem": [
            {"taxCategory": t.name, "taxRate": t.rate.normalize(), "taxAmount": _money(t.tax, cur)}
            for t in invoice.taxes
        ],
        "billingAccount": {
            "id": bill["account"],
            "name": invoice.buyer.name,
            "href": f"/billingAccount/{bill['account']}",
            "@referredType": "BillingAccount",
        },
        "relatedParty": parties,
    }
    st = invoice.statement
    if st is not None:
        out["previousBalance"] = _money(st.previous_balance, cur)
        out["paymentsReceived"] = _money(st.payments_received, cur)
        out["otherCredits"] = _money(st.other_credits, cur)
        out["balanceDue"] = _money(st.balance_due, cur)
        out["remainingAmount"] = _money(st.balance_due, cur)
    return out


def applied_rates(invoice: Invoice) -> list[dict[str, Any]]:
    """The bill's lines as TMF678 AppliedCustomerBillingRate resources."""
    bill = invoice.bill
    cur = invoice.currency
    tax = invoice.taxes[0] if len(invoice.taxes) == 1 else None
    rates = []
    for ln in invoice.lines:
        rate: dict[str, Any] = {
            "id": f"{bill['bill_no']}-{ln.line_no}",
            "@type": "AppliedCustomerBillingRate",
            "type": ln.line_type,
            "name": ln.description,
            "date": _instant(str(bill["bill_date"])),
            "isBilled": True,
            "bill": {"id": bill["bill_no"], "href": f"/customerBill/{bill['bill_no']}"},
            "billingAccount": {"id": bill["account"]},
            "periodCoverage": {
                "startDateTime": _instant(bill["period_start"]),
                "endDateTime": _instant(bill["period_end"]),
            },
            "taxExcludedAmount": _money(ln.amount, cur),
            "characteristic": [
                {"name": "quantity", "value": ln.quantity, "valueType": "integer"},
                {"name": "unit", "value": ln.unit, "valueType": "string"},
                {"name": "exactAmount", "value": ln.amount_exact, "valueType": "number"},
            ],
        }
        if ln.product_id is not None:
            rate["product"] = {"id": str(ln.product_id), "@referredType": "Product"}
        if tax is not None:
            rate["appliedTax"] = [{"taxCategory": tax.name, "taxRate": tax.rate.normalize()}]
        rates.append(rate)
    return rates


def tmf678_json(document: Any, indent: int | None = 2) -> str:
    """JSON text of TMF678 resources, Decimals written as exact JSON numbers."""
    text = json.dumps(
        document,
        indent=indent,
        ensure_ascii=False,
        default=lambda v: f"{_MARK}{v:f}" if isinstance(v, Decimal) else str(v),
    )
    return _MARKED.sub(lambda m: m.group(1), text)

"""Accounts receivable: the double-entry journal, payments, credit notes, adjustments,
ageing, dunning, and SLA credits from assurance (issue #23).

One module per operation: :mod:`journal` (balanced entries, balances), :mod:`payments`,
:mod:`credit_notes`, :mod:`adjustments` (adjustments, write-offs), :mod:`bill_entries`
(bills posted by the billing pass, with the statement a new bill carries),
:mod:`ageing`, :mod:`dunning`, :mod:`sla_terms` (an offering's SLA) and
:mod:`sla_credits` (outages -> credit lines). Money is integer minor units of the
account's currency (:mod:`amounts`). Names load on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collectors.lazy import lazy_getattr

if TYPE_CHECKING:
    from bss.receivables.adjustments import Movement, adjust_balance, write_off
    from bss.receivables.ageing import BUCKETS, Ageing, age_accounts
    from bss.receivables.amounts import format_minor, parse_amount
    from bss.receivables.bill_entries import post_pass_bills, post_unposted_bills
    from bss.receivables.credit_notes import CreditNote, credit_bill
    from bss.receivables.dunning import DunningPolicy, DunningStep, run_dunning
    from bss.receivables.journal import (
        Entry,
        account_balance,
        entries_of,
        ledger_balances,
        post_entry,
        unbalanced_entries,
    )
    from bss.receivables.payments import Payment, add_payment
    from bss.receivables.sla_credits import product_outages, sla_credit_lines
    from bss.receivables.sla_terms import Sla, get_sla, set_sla

_LAZY = {
    "Movement": "adjustments",
    "adjust_balance": "adjustments",
    "write_off": "adjustments",
    "BUCKETS": "ageing",
    "Ageing": "ageing",
    "age_accounts": "ageing",
    "format_minor": "amounts",
    "parse_amount": "amounts",
    "post_pass_bills": "bill_entries",
    "post_unposted_bills": "bill_entries",
    "CreditNote": "credit_notes",
    "credit_bill": "credit_notes",
    "DunningPolicy": "dunning",
    "DunningStep": "dunning",
    "run_dunning": "dunning",
    "Entry": "journal",
    "account_balance": "journal",
    "entries_of": "journal",
    "ledger_balances": "journal",
    "post_entry": "journal",
    "unbalanced_entries": "journal",
    "Payment": "payments",
    "add_payment": "payments",
    "product_outages": "sla_credits",
    "sla_credit_lines": "sla_credits",
    "Sla": "sla_terms",
    "get_sla": "sla_terms",
    "set_sla": "sla_terms",
}

__all__ = [
    "BUCKETS",
    "Ageing",
    "CreditNote",
    "DunningPolicy",
    "DunningStep",
    "Entry",
    "Movement",
    "Payment",
    "Sla",
    "account_balance",
    "add_payment",
    "adjust_balance",
    "age_accounts",
    "credit_bill",
    "entries_of",
    "format_minor",
    "get_sla",
    "ledger_balances",
    "parse_amount",
    "post_entry",
    "post_pass_bills",
    "post_unposted_bills",
    "product_outages",
    "run_dunning",
    "set_sla",
    "sla_credit_lines",
    "unbalanced_entries",
    "write_off",
]

__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return __all__

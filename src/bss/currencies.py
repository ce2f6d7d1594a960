"""Which currency codes and amounts the business data accepts (ISO 4217, DECIMAL(18,6)),
and the decimals of each currency's minor unit (what an invoice rounds to)."""

from __future__ import annotations

from decimal import Decimal

__all__ = ["ISO_4217", "MAX_AMOUNT", "is_currency", "minor_units"]

#: Amounts are stored as DECIMAL(18, 6): at most 12 digits before the decimal point.
MAX_AMOUNT = Decimal(10) ** 12 - Decimal("0.000001")

# ISO 4217 alphabetic codes in use (funds and precious metals included; XXX and XTS mean
# "no currency" and "testing", never money).
_CODES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB
EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR
MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB
RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD
TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG
XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG ZWL
"""
ISO_4217 = frozenset(_CODES.split())


def is_currency(code: object) -> bool:
    """True for an ISO 4217 alphabetic code in use (``EUR``; not ``eur``, ``EURO``, ``XXX``)."""
    return isinstance(code, str) and code in ISO_4217


# ISO 4217 minor units that are not 2 decimals (list one, 2025). Funds and units without a
# minor unit ("N.A.": gold, SDR, ...) are invoiced at the micro-unit, the precision money
# is kept in.
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_NONE = "XAG XAU XBA XBB XBC XBD XDR XPD XPT XSU XUA"
_MINOR_UNITS = {
    **dict.fromkeys(_ZERO.split(), 0),
    **dict.fromkeys(_THREE.split(), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
    **dict.fromkeys(_NONE.split(), 6),
}


def minor_units(code: str) -> int:
    """Decimals of the currency's minor unit (EUR 2, JPY 0, BHD 3, CLF 4; 2 if unknown)."""
    return _MINOR_UNITS.get(code, 2)

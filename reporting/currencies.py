"""Minor units of each currency, by Stripe's exponents: the one source of truth for how
many decimal places an amount in a Stripe payload has. Pure.

Stripe's supported-currencies page lists the zero-decimal currencies (an amount of 500
`jpy` is ¥500) and the three-decimal ones (an amount of 5124 `kwd` is 5.124 KWD); every
other currency takes two. Stripe's special cases keep two decimals in the API: `isk`
(zero-decimal in fact, sent with two for backward compatibility), `huf` and `twd`
(two-decimal charges, whole-unit payouts).
"""

from __future__ import annotations

#: Stripe's zero-decimal currencies: their minor unit is the major unit.
ZERO_DECIMAL = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)

#: Stripe's three-decimal currencies: a thousandth of the major unit.
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def exponent(currency: str) -> int:
    """Decimal places of `currency`'s minor unit in Stripe amounts (0, 2 or 3).

    `currency` is a lowercase ISO code, as Stripe sends it.
    """
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2

"""Report figures as people read them: minor units as money, rates as percentages.

Display only: report JSON keeps integer minor units and decimal rates. Shared by the
terminal tables (`mrr report`) and the dashboard, so both print a figure the same way.
"""

from __future__ import annotations

from reporting.currencies import exponent


def major_units(amount: int, currency: str) -> float:
    """Minor units in the currency's major unit (cents → dollars; yen stay yen)."""
    return amount / 10.0 ** exponent(currency)


def money(amount: int | None, currency: str = "usd") -> str:
    """Minor units as an exact major-unit figure by the currency's exponent: `123456` →
    `1,234.56`; `123456` yen → `123,456`; `123456` kwd → `123.456`; None → `—`."""
    if amount is None:
        return "—"
    places = exponent(currency)
    if places == 0:
        return f"{amount:,}"
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**places)
    return f"{sign}{whole:,}.{fraction:0{places}d}"


def compact_money(amount: float, currency: str = "usd") -> str:
    """A short figure for chart axes and labels: `1234567` cents → `12.3k`."""
    value = major_units(round(amount), currency)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            scaled = value / limit
            return f"{sign}{scaled:.{0 if scaled >= 100 else 1}f}{suffix}"
    return f"{sign}{value:.0f}" if value >= 10 or value == 0 else f"{sign}{value:.2g}"


def pct(rate: float | None) -> str:
    """A decimal rate as a percentage with two places: `0.0312` → `3.12 %`."""
    return "—" if rate is None else f"{rate * 100:.2f} %"


def decimal(value: float | None) -> str:
    """A ratio that is not a percentage (the quick ratio), with two places: `1.5` → `1.50`."""
    return "—" if value is None else f"{value:.2f}"

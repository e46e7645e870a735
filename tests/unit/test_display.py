"""Money and rates as people read them (terminal and dashboard)."""

from __future__ import annotations

import pytest

from reporting.display import major_units, money


@pytest.mark.parametrize(
    ("amount", "currency", "text", "major"),
    [
        (123456, "usd", "1,234.56", 1234.56),
        (-5, "eur", "-0.05", -0.05),
        (5000, "jpy", "5,000", 5000.0),  # zero-decimal: the minor unit is the yen
        (-1234, "krw", "-1,234", -1234.0),
        (123456, "kwd", "123.456", 123.456),  # three-decimal: fils
        (-5, "bhd", "-0.005", -0.005),
        (500, "isk", "5.00", 5.0),  # Stripe still takes ISK with two decimals
    ],
)
def test_money_follows_stripe_exponents(
    amount: int, currency: str, text: str, major: float
) -> None:
    assert money(amount, currency) == text
    assert major_units(amount, currency) == major


def test_no_amount_is_a_dash() -> None:
    assert money(None) == "—"

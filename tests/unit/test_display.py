"""Money and rates as people read them (terminal and dashboard)."""

from __future__ import annotations


def test_terminal_money_respects_zero_decimal_currencies() -> None:
    from reporting.display import money

    assert money(123456) == "1,234.56"
    assert money(-5, "eur") == "-0.05"
    assert money(5000, "jpy") == "5,000"
    assert money(None) == "—"

"""What a newcomer meets first: `/` leads to the dashboard, and the headline's verdict
says plainly whether there is net negative churn, or that nothing moved."""

from __future__ import annotations

import re


def test_the_root_redirects_to_the_dashboard(client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/dashboard")


def test_the_empty_ledger_page_names_commands_that_exist_in_the_users_shell(client) -> None:
    from tests.service.test_dashboard import sign_in

    sign_in(client)
    html = client.get("/dashboard").get_data(as_text=True)
    assert ".venv/bin/mrr replay pipeline/samples/stripe --shift-to-now" in html
    assert "$STRIPE_WEBHOOK_SECRET" not in html


def test_a_deleted_subscription_is_canceled_not_also_cancelling(db, settings, client) -> None:
    from tests.service.test_dashboard import sign_in
    from tests.service.test_ops_reports import apply_fixtures

    apply_fixtures(db, settings)
    sign_in(client)
    doc = client.get("/reports/customers/cus_acme").json
    assert any(s["status"] == "canceled" for s in doc["subscriptions"])
    html = client.get("/dashboard/customers/cus_acme").get_data(as_text=True)
    assert "canceled" in html and "· cancels" not in html


def test_churn_reasons_and_voluntary_or_delinquent_have_distinct_colours() -> None:
    """One chart's legend lists the reasons beside "Voluntary" and "Delinquent": no two
    of its colours are near each other (RGB distance)."""
    import re
    from itertools import combinations
    from pathlib import Path

    import service

    css = (Path(service.__file__).parent / "static" / "dashboard.css").read_text()
    colours = dict(re.findall(r"\.(r\d|k-voluntary|k-delinquent) \{ --c: #([0-9a-f]{6}); \}", css))
    assert len(colours) == 10

    def rgb(hex_: str) -> tuple[int, ...]:
        return tuple(int(hex_[i : i + 2], 16) for i in (0, 2, 4))

    for (a, x), (b, y) in combinations(colours.items(), 2):
        distance = sum((p - q) ** 2 for p, q in zip(rgb(x), rgb(y), strict=True)) ** 0.5
        assert distance > 70, (a, b)  # the old orange pair was 34 apart


def test_the_waterfall_defaults_to_the_latest_period_where_mrr_moved(db, settings, client) -> None:
    from tests.service.test_dashboard import sign_in
    from tests.service.test_ops_reports import apply_fixtures

    apply_fixtures(db, settings)
    sign_in(client)
    html = client.get("/dashboard?currency=usd&start=2024-01-01&end=2025-01-01").get_data(
        as_text=True
    )
    # Not a quiet December: June, when the fixtures' last churn happened.
    assert "Waterfall: June 2024" in html, re.findall(r"Waterfall: [^<]*", html)

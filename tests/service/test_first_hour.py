"""What a newcomer meets first: `/` leads to the dashboard, and the headline's verdict
says plainly whether there is net negative churn, or that nothing moved."""

from __future__ import annotations

import pytest

from service.figures import _verdict


def test_the_root_redirects_to_the_dashboard(client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/dashboard")


@pytest.mark.parametrize(
    ("net", "gross", "says"),
    [
        (None, None, "no MRR 30 days ago"),
        (-0.02, 0.01, "net negative churn"),
        (0.03, 0.03, "not net negative"),
        (0.0, 0.0, "no churn or expansion"),
        (0.0, 0.02, "expansion exactly offsets churn"),
    ],
)
def test_the_verdict_never_claims_an_offset_when_nothing_moved(
    net: float | None, gross: float | None, says: str
) -> None:
    assert says in _verdict(net, gross)
    if not gross:
        assert "offsets" not in _verdict(net, gross)

"""`/dashboard` over HTTP: sign-in, CSRF, cookie flags, redirects, the figures' numbers,
the customer page and search, and the first screen of an empty ledger."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

import pytest
from flask import request

from service.app import create_app
from service.session import SESSION_COOKIE
from tests.conftest import OPS_TOKEN
from tests.service.test_ops_reports import apply_fixtures

RANGE = "currency=usd&start=2024-01-01&end=2025-01-01"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the form"
    return found.group(1)


def sign_in(client, token: str = OPS_TOKEN, **kw):
    form = client.get("/dashboard/login")
    return client.post(
        "/dashboard/login",
        data={"csrf_token": csrf_of(form.get_data(as_text=True)), "token": token, **kw},
    )


def set_cookie(response) -> str:
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(SESSION_COOKIE)]
    assert headers, "no session cookie set"
    return headers[-1]


def marks(html: str, figure: str) -> list[float]:
    """The data values drawn in one figure of the page."""
    start = html.index(f'data-figure="{figure}"')
    end = html.find("</figure>", start)
    return [
        float(v)
        for v in re.findall(r'class="mark[^"]*"[^>]*data-value="([-0-9.e]+)"', html[start:end])
    ]


# --- sign-in ----------------------------------------------------------------------------


def test_the_dashboard_without_a_session_redirects_to_the_form(client) -> None:
    response = client.get("/dashboard?currency=usd")
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard/login?next=/dashboard?currency%3Dusd"
    form = client.get(response.headers["Location"])
    html = form.get_data(as_text=True)
    assert form.status_code == 200
    assert '<form method="post"' in html
    assert 'type="password"' in html
    assert OPS_TOKEN not in html


def test_signing_in_sets_a_signed_httponly_samesite_strict_cookie(client) -> None:
    response = sign_in(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"
    header = set_cookie(response)
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    assert "Path=/" in header
    assert "Expires=" in header  # twelve hours, not for ever
    assert "Secure" not in header  # plain HTTP here: a Secure cookie would never come back
    assert OPS_TOKEN not in header
    assert client.get("/dashboard").status_code == 200


@pytest.mark.parametrize(
    ("base_url", "headers"),
    [("https://localhost", {}), ("http://localhost", {"X-Forwarded-Proto": "https"})],
)
def test_the_cookie_is_secure_over_https(client, base_url, headers) -> None:
    form = client.get("/dashboard/login", base_url=base_url, headers=headers)
    response = client.post(
        "/dashboard/login",
        base_url=base_url,
        headers=headers,
        data={"csrf_token": csrf_of(form.get_data(as_text=True)), "token": OPS_TOKEN},
    )
    assert response.status_code == 302
    assert "Secure" in set_cookie(response)


def test_a_wrong_token_is_refused(client) -> None:
    response = sign_in(client, token="not-the-token")
    assert response.status_code == 401
    assert "That is not the token" in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302


def test_failed_sign_ins_are_throttled_even_for_the_right_token(client) -> None:
    for _ in range(10):
        assert sign_in(client, token="guess").status_code == 401
    blocked = sign_in(client)
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert client.get("/dashboard").status_code == 302


def test_sign_in_without_the_forms_csrf_token_is_refused(client, app) -> None:
    missing = client.post("/dashboard/login", data={"token": OPS_TOKEN})
    assert missing.status_code == 400
    # A token from another browser's form (a login CSRF) does not match this session.
    other = app.test_client()
    stolen = csrf_of(other.get("/dashboard/login").get_data(as_text=True))
    client.get("/dashboard/login")
    forged = client.post("/dashboard/login", data={"token": OPS_TOKEN, "csrf_token": stolen})
    assert forged.status_code == 400
    assert client.get("/dashboard").status_code == 302


def test_the_token_is_never_taken_from_a_url(client) -> None:
    response = client.get(f"/dashboard/login?token={OPS_TOKEN}")
    assert response.status_code == 200  # just the form
    assert client.get("/dashboard").status_code == 302
    redirect = client.get("/dashboard")
    assert OPS_TOKEN not in redirect.headers["Location"]
    assert OPS_TOKEN not in sign_in(client).headers["Location"]


@pytest.mark.parametrize(
    ("next_page", "lands"),
    [
        ("/dashboard?currency=eur", "/dashboard?currency=eur"),
        ("/dashboard/customers/cus_acme", "/dashboard/customers/cus_acme"),
        ("https://evil.example/dashboard", "/dashboard"),
        ("//evil.example/dashboard", "/dashboard"),
        ("/status", "/dashboard"),
        ("/\\evil.example", "/dashboard"),
    ],
)
def test_sign_in_leads_only_to_a_dashboard_page(client, next_page, lands) -> None:
    assert sign_in(client, next=next_page).headers["Location"] == lands


def test_sign_out_needs_the_csrf_token_and_ends_the_session(client) -> None:
    sign_in(client)
    page = client.get("/dashboard").get_data(as_text=True)
    refused = client.post("/dashboard/logout")
    assert refused.status_code == 400
    assert refused.content_type.startswith("text/html")
    assert client.get("/dashboard").status_code == 200
    out = client.post("/dashboard/logout", data={"csrf_token": csrf_of(page)})
    assert out.status_code == 302
    assert out.headers["Location"] == "/dashboard/login"
    assert client.get("/dashboard").status_code == 302


def test_a_session_opens_the_json_endpoints_and_the_bearer_header_still_does(
    client, app, auth
) -> None:
    assert client.get("/reports/summary").status_code == 401
    sign_in(client)
    for path in ("/reports/summary", "/reports/movements", "/reports/cohorts", "/status"):
        assert client.get(path).status_code == 200, path
    assert app.test_client().get("/reports/summary", headers=auth).status_code == 200


def test_a_webhook_delivery_opens_no_session_even_beside_a_signed_in_one(
    client, app, post_event
) -> None:
    sign_in(client)
    with app.test_request_context("/webhooks/stripe", method="POST"):
        assert app.session_interface.open_session(app, request) is None
    response = post_event({"id": "evt_s", "object": "event", "type": "ping", "created": 1})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert client.get("/dashboard").status_code == 200  # the session itself is untouched


def test_a_cookie_signed_for_another_token_or_tampered_with_is_refused(client, settings) -> None:
    value = SimpleCookie(set_cookie(sign_in(client)))[SESSION_COOKIE].value
    rotated = create_app(settings.with_overrides(ops_token="a-new-token")).test_client()
    rotated.set_cookie(SESSION_COOKIE, value)
    assert rotated.get("/dashboard").status_code == 302
    assert rotated.get("/reports/summary").status_code == 401
    tampered = client.application.test_client()
    tampered.set_cookie(SESSION_COOKIE, value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert tampered.get("/dashboard").status_code == 302


def test_the_bearer_header_opens_the_dashboard_but_signs_nobody_in(client, auth) -> None:
    assert client.get("/dashboard", headers=auth).status_code == 200
    assert client.get("/dashboard").status_code == 302  # whatever cookie it got


def test_without_ops_token_the_dashboard_is_closed(settings) -> None:
    client = create_app(settings.with_overrides(ops_token=None)).test_client()
    for path in ("/dashboard", "/dashboard/login"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.content_type.startswith("text/html")
        assert "OPS_TOKEN" in response.get_data(as_text=True)


def test_pages_forbid_scripts_framing_and_caching(client) -> None:
    response = client.get("/dashboard/login")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp  # none at all: default-src 'none'
    assert "frame-ancestors 'none'" in csp
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"


# --- content ----------------------------------------------------------------------------


def test_an_empty_ledger_says_how_to_fill_it(client) -> None:
    sign_in(client)
    html = client.get("/dashboard").get_data(as_text=True)
    assert "http://localhost/webhooks/stripe" in html
    assert "mrr backfill" in html
    assert "customer.subscription.created" in html
    assert 'class="chart"' not in html  # no empty axes
    assert 'data-figure="status"' in html


def test_every_figure_draws_the_numbers_of_its_json(db, settings, client) -> None:
    apply_fixtures(db, settings)
    sign_in(client)
    response = client.get(f"/dashboard?{RANGE}&focus=2024-03-01")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    doc = client.get(
        "/reports/movements?period=month&start=2024-01-01&end=2025-01-01&currency=usd"
    ).json
    rows = doc["periods"]
    assert (
        'href="/reports/movements?period=month&amp;start=2024-01-01&amp;end=2025-01-01&amp;currency=usd"'
        in html
    )
    assert 'href="/reports/cohorts?start=2024-01-01&amp;end=2025-01-01&amp;currency=usd"' in html
    assert 'href="/reports/summary?currency=usd"' in html
    assert 'href="/status"' in html

    mrr = marks(html, "mrr")
    assert mrr[: len(rows)] == [r["ending_mrr"] for r in rows]  # the line, then the bars
    moved = sorted(mrr[len(rows) :])
    expected = sorted(
        sign * r[key]
        for r in rows
        for key, sign in (
            ("new", 1),
            ("expansion", 1),
            ("reactivation", 1),
            ("contraction", -1),
            ("churn", -1),
        )
        if r[key]
    )
    assert moved == expected

    march = next(r for r in rows if r["period_start"] == "2024-03-01")
    assert marks(html, "waterfall") == [
        march["starting_mrr"],
        march["new"],
        march["expansion"],
        march["reactivation"],
        -march["contraction"],
        -march["churn"],
        march["ending_mrr"],
    ]
    rates = [r["net_mrr_churn_rate"] for r in rows if r["net_mrr_churn_rate"] is not None]
    assert marks(html, "net-churn") == rates
    assert any(rate < 0 for rate in rates) and 'class="band"' in html  # net negative, marked

    shares = [r["expansion_share"] for r in rows if r["expansion_share"] is not None]
    assert marks(html, "expansion-share") == shares
    assert "32.30 % in 2023" in html  # ChartMogul's benchmark beside it

    levers = marks(html, "levers")
    assert sum(v for v in levers if v > 0) == sum(r["expansion"] for r in rows)
    assert -sum(v for v in levers if v < 0) == sum(r["contraction"] for r in rows)
    churn = marks(html, "churn")
    assert sum(churn) == 2 * sum(r["churn"] for r in rows)  # by reason, and split in two
    assert "Delinquent" in html and "Too expensive" in html

    cohorts = client.get("/reports/cohorts?start=2024-01-01&end=2025-01-01&currency=usd").json
    cells = marks(html, "cohorts")
    assert cells[: len(cohorts["cohorts"][0]["months"])] == [
        m["customer_retention"] for m in cohorts["cohorts"][0]["months"]
    ]


def test_the_headline_says_whether_churn_is_net_negative(db, settings, client) -> None:
    apply_fixtures(db, settings)
    sign_in(client)
    html = client.get(f"/dashboard?{RANGE}&focus=2024-02-01").get_data(as_text=True)
    assert "Net MRR churn, February 2024" in html
    assert "top expansion lever: Seats" in html


@pytest.mark.parametrize("query", ["period=year", "start=2024-13-01", "currency=dollars", "x=1"])
def test_a_bad_picker_is_an_html_400(client, query) -> None:
    sign_in(client)
    response = client.get(f"/dashboard?{query}")
    assert response.status_code == 400
    assert response.content_type.startswith("text/html")


def test_blank_fields_of_the_form_mean_the_defaults(db, settings, client) -> None:
    apply_fixtures(db, settings)
    sign_in(client)
    response = client.get("/dashboard?currency=usd&period=week&start=&end=&focus=")
    assert response.status_code == 200
    assert 'data-figure="mrr"' in response.get_data(as_text=True)


def test_the_customer_page_shows_its_timeline_and_movements(db, settings, client) -> None:
    apply_fixtures(db, settings)
    sign_in(client)
    response = client.get("/dashboard/customers/cus_acme")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    doc = client.get("/reports/customers/cus_acme").json
    assert 'href="/reports/customers/cus_acme"' in html
    assert marks(html, "timeline") == [t["mrr"] for t in doc["timeline"]]
    assert html.count('<tr class="mv-') == len(doc["movements"])


def test_an_unknown_customer_is_an_html_404(client) -> None:
    sign_in(client)
    response = client.get("/dashboard/customers/cus_nobody")
    assert response.status_code == 404
    assert response.content_type.startswith("text/html")


def test_the_search_box_finds_customers(db, settings, client) -> None:
    apply_fixtures(db, settings)
    sign_in(client)
    exact = client.get("/dashboard/customers?q=cus_acme")
    assert exact.headers["Location"] == "/dashboard/customers/cus_acme"
    partial = client.get("/dashboard/customers?q=GLOB")  # one match, any case
    assert partial.headers["Location"] == "/dashboard/customers/cus_globex"
    several = client.get("/dashboard/customers?q=cus_")
    assert several.status_code == 200
    assert 'href="/dashboard/customers/cus_initech"' in several.get_data(as_text=True)
    literal = client.get("/dashboard/customers?q=%25")  # `%` is not a wildcard
    assert "No customer id contains" in literal.get_data(as_text=True)
    assert client.get("/dashboard/customers?q=").headers["Location"] == "/dashboard"


def test_the_status_panel_shows_the_last_reconcile(db, settings, client) -> None:
    from models.clock import utcnow
    from models.db import transaction
    from models.runs import record_reconcile

    apply_fixtures(db, settings)
    with transaction(db) as session:
        record_reconcile(session, utcnow(), checked=12, drifted=2, fixed=1, drift={"usd": 700})
    sign_in(client)
    html = client.get(f"/dashboard?{RANGE}").get_data(as_text=True)
    assert "Last reconcile" in html
    assert "12 checked · 2 drifted · 1 fixed" in html


@pytest.mark.parametrize("currency", ["currency=usd&", ""])  # one currency; converted
def test_every_figure_of_the_focused_period_links_to_its_movements(
    currency, db, settings, client
) -> None:
    apply_fixtures(db, settings)
    sign_in(client)
    url = f"/dashboard?{currency}period=month&start=2024-01-01&end=2024-07-01&focus=2024-06-01"
    html = client.get(url).get_data(as_text=True)
    report = url.replace("/dashboard", "/reports/movements").replace("&focus=2024-06-01", "")
    row = client.get(report).json["periods"][-1]
    links = re.findall(r'<td><a href="(/dashboard/movements/detail\?[^"]+)">', html)
    assert len(links) >= 6 + len(row["churn_by_reason"])
    followed = 0
    for link in links:
        link = link.replace("&amp;", "&")
        page = client.get(link)
        assert page.status_code == 200, link
        doc = client.get(link.replace("/dashboard/", "/reports/")).json
        assert ("currency=" in link) == bool(currency) and doc["currency"] == "usd"
        text = page.get_data(as_text=True)
        assert text.count('<tr class="mv-') == len(doc["movements"])
        for m in doc["movements"]:  # every customer leads to its page
            assert f'href="/dashboard/customers/{m["customer_id"]}"' in text
            followed += 1
    assert followed > 0
    # The activity panel: the latest movements, customers linked.
    activity = client.get("/reports/activity?limit=20").json["movements"]
    panel = html.split('id="activity"')[1]
    assert panel.count('<tr class="mv-') == len(activity) > 0
    assert f'href="/dashboard/customers/{activity[0]["customer_id"]}"' in panel


def test_a_segment_detail_page_lists_the_segments_movements(db, settings, client) -> None:
    apply_fixtures(db, settings)
    sign_in(client)
    query = "start=2024-01-01&end=2024-07-01&currency=usd&type=new&filter=interval:month"
    page = client.get(f"/dashboard/movements/detail?{query}").get_data(as_text=True)
    doc = client.get(f"/reports/movements/detail?{query}").json
    assert doc["filter"] == ["interval:month"] and doc["movements"]
    assert page.count('<tr class="mv-') == len(doc["movements"])
    assert "of interval:month" in page
    # Its JSON link keeps the filter.
    source = re.search(r'<a class="json" href="([^"]+)"', page)
    assert source and client.get(source[1].replace("&amp;", "&")).json == doc


def test_a_bad_detail_page_is_an_html_400(client) -> None:
    sign_in(client)
    response = client.get("/dashboard/movements/detail?start=2024-01-01&end=2024-02-01&type=x")
    assert response.status_code == 400 and response.content_type.startswith("text/html")


@pytest.mark.parametrize("figure", ["mrr", "levers", "churn", "waterfall"])
def test_every_bar_leads_to_the_movements_it_sums(figure, db, settings, client) -> None:
    apply_fixtures(db, settings)
    sign_in(client)
    html = client.get("/dashboard?currency=usd&start=2024-01-01&end=2024-07-01").get_data(
        as_text=True
    )
    section = html.split(f'data-figure="{figure}"')[1].split("</figure>")[0]
    bars = re.findall(
        r'<a href="([^"]+)"><rect class="mark [^"]*"[^>]*data-value="([^"]+)"', section
    )
    totals = 2 if figure == "waterfall" else 0  # starting and ending MRR: not movements
    assert bars and len(bars) == section.count('<rect class="mark') - totals
    for href, value in bars:
        doc = client.get(href.replace("&amp;", "&").replace("/dashboard/", "/reports/")).json
        assert doc["amount"] == abs(float(value)), href
        assert bool(doc["movements"]) == (float(value) != 0)  # a waterfall draws zeros too


def test_the_trial_funnel_panel_draws_the_rows_trial_keys(db, settings, client) -> None:
    apply_fixtures(db, settings)
    sign_in(client)
    html = client.get(f"/dashboard?{RANGE}").get_data(as_text=True)
    panel = html.split('data-figure="trials"')[1].split("</figure>")[0]
    report = client.get(f"/reports/movements?{RANGE}").json["periods"]
    started = [r["trials_started"] for r in report]
    assert sum(started) > 0  # Acme's trial
    assert panel.count("trial") >= 1 and "Trial conversion rate" in panel
    # One bar per period with a trial started, its tooltip naming the count.
    assert panel.count(" trial</title>") + panel.count(" trials</title>") >= sum(
        1 for n in started if n
    )
    assert "would add" in panel  # the pipeline at the range's end


def test_the_segment_picker_groups_and_filters_the_period_charts(db, settings, client) -> None:
    apply_fixtures(db, settings)
    sign_in(client)
    query = "currency=usd&period=month&start=2024-01-01&end=2024-07-01"
    html = client.get(f"/dashboard?{query}&filter=interval:month&group_by=plan").get_data(
        as_text=True
    )
    grouped = client.get(f"/reports/movements?{query}&filter=interval:month&group_by=plan").json
    assert grouped["groups"]
    figure = html.split('data-figure="groups"')[1].split("</figure>")[0]
    assert "MRR by plan" in figure
    for group in grouped["groups"][:7]:  # each of the largest has its swatch
        assert f"</span>{group['value']}</li>" in figure
    assert "price_globex_annual" not in figure  # a yearly plan, filtered out
    # Every bar of the movements leads to the segment's detail, which sums to it.
    links = re.findall(r'href="(/dashboard/movements/detail\?[^"]+)"', html)
    assert links and all("filter=interval" in link for link in links)
    link = links[0].replace("&amp;", "&")
    assert client.get(link).status_code == 200
    # The picker shows what was picked.
    assert 'name="filter" value="interval:month"' in html
    assert '<option value="plan" selected>' in html
    # Two filters in one field, as the picker sends them: the same as two parameters.
    both = client.get(f"/dashboard?{query}&filter=interval:month,plan:price_team_monthly")
    assert both.status_code == 200
    assert 'value="interval:month plan:price_team_monthly"' in both.get_data(as_text=True)


def test_a_bad_segment_is_an_html_400(client, db, settings) -> None:
    apply_fixtures(db, settings)
    sign_in(client)
    response = client.get("/dashboard?currency=usd&filter=planet:mars")
    assert response.status_code == 400 and response.content_type.startswith("text/html")


@pytest.mark.parametrize("currency", ["currency=usd&", ""])  # one currency; converted
def test_mrr_by_plan_and_by_country_open_from_the_dashboard(currency, db, settings, client):
    apply_fixtures(db, settings)
    sign_in(client)
    html = client.get(f"/dashboard?{currency}start=2024-01-01&end=2024-07-01").get_data(
        as_text=True
    )
    for key in ("plan", "country"):
        link = re.search(rf'href="([^"]*group_by={key}[^"]*)">MRR by {key}<', html)
        assert link, key
        page = client.get(link[1].replace("&amp;", "&"))
        assert page.status_code == 200, link[1]
        assert f"MRR by {key}" in page.get_data(as_text=True).split('data-figure="groups"')[1]

"""`mrr backfill` and `mrr reconcile` end to end: the console script as a real process,
talking HTTP to a local server that speaks Stripe's list and retrieve shapes
(`STRIPE_API_BASE`), not to an in-process mock."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select

from cli.main import cli
from models.db import transaction
from models.tables import AlertOutbox, CustomerBalance, InboxEvent
from pipeline.apply import rebuild
from pipeline.runtime import bootstrap
from tests.integration.existing_account import Account, existing_account
from tests.integration.fake_stripe import FakeStripe, serve
from tests.integration.processes import cli_json


@pytest.fixture
def account() -> Account:
    return existing_account(int(time.time()))


@pytest.fixture
def fake(account) -> FakeStripe:
    return FakeStripe(account.events, account.subscriptions, page_size=3)


@pytest.fixture
def stripe_env(settings, fake) -> Iterator[dict[str, str]]:
    with serve(fake) as base:
        yield {
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "STRIPE_API_KEY": "sk_test_cli",
            "STRIPE_API_BASE": base,
        }


@pytest.fixture
def keyed_env(stripe_env, monkeypatch) -> dict[str, str]:
    """The same environment for in-process `CliRunner` runs."""
    for key, value in stripe_env.items():
        monkeypatch.setenv(key, value)
    return stripe_env


def balances(db) -> dict[tuple[str, str], int]:
    with db() as s:
        return {(b.customer_id, b.currency): b.mrr for b in s.scalars(select(CustomerBalance))}


def test_mrr_backfill_then_reconcile_as_processes(db, stripe_env, account) -> None:
    counts = cli_json(stripe_env, "backfill", "--days", "30")
    window = len(account.in_window())
    assert counts == {
        "days": 30,
        "events": window,
        "events_stored": window,
        "subscriptions": 8,
        "invoices": 0,
        "customers": 0,
        "opened": 7,
        "synthetic_stored": 9,
        "assumed": 7,
        "applied": window + 9,
        "failed": 0,
        "quarantined": 0,
        "api_calls": counts["api_calls"],
    }
    assert counts["api_calls"] >= 5  # a page of events, customers, subscriptions, invoices…
    assert balances(db) == account.stripe_mrr()

    again = cli_json(stripe_env, "backfill")
    assert (again["events_stored"], again["synthetic_stored"], again["applied"]) == (0, 0, 0)

    drift = cli_json(stripe_env, "reconcile")
    assert (drift["checked"], drift["drifted"], drift["drift"], drift["fixed"]) == (8, 0, {}, 0)


def test_mrr_reconcile_says_when_nothing_drifts(db, keyed_env) -> None:
    cli_json(keyed_env, "backfill")
    result = CliRunner().invoke(cli, ["reconcile"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "no drift: the ledger agrees with Stripe on 8 subscriptions" in result.stdout


def test_mrr_reconcile_prints_the_drift_and_fix_heals_it(
    db, keyed_env, stripe_env, fake, settings
) -> None:
    cli_json(stripe_env, "backfill")
    # The event that ended sub_churn is lost: not in the inbox, not in the Events API.
    lost = "evt_churn_3"
    fake.events = [e for e in fake.events if e["id"] != lost]
    with transaction(db) as s:
        s.execute(delete(InboxEvent).where(InboxEvent.id == lost))
    rebuild(bootstrap(settings))

    table = CliRunner().invoke(cli, ["reconcile"], catch_exceptions=False)
    assert table.exit_code == 0
    assert "1 of 8 subscriptions drift" in table.stdout
    assert "sub_churn" in table.stdout and "30.00 usd" in table.stdout

    fixed = CliRunner().invoke(cli, ["reconcile", "--fix", "--json"], catch_exceptions=False)
    doc = json.loads(fixed.stdout)
    assert (doc["drifted"], doc["fixed"], doc["drift"]) == (1, 1, {"usd": 3000})
    assert cli_json(stripe_env, "reconcile")["drifted"] == 0


def test_backfill_without_an_api_key_is_a_usage_error(settings, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    for verb in ("backfill", "reconcile"):
        result = CliRunner().invoke(cli, [verb])
        assert result.exit_code == 2
        assert "STRIPE_API_KEY is required" in result.stderr


def test_days_beyond_the_events_api_window_are_refused(settings, monkeypatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_cli")
    result = CliRunner().invoke(cli, ["backfill", "--days", "31"])
    assert result.exit_code == 2
    assert "31 is not in the range 1<=x<=30" in result.stderr


def test_mrr_backfill_and_rebuild_alert_nothing(db, settings) -> None:
    from pipeline.alerts import send_round
    from tests.alert_receiver import alert_receiver

    # The account's latest events an hour old: fresh enough to alert if a worker applied them.
    account = existing_account(int(time.time()) + 47 * 3600)
    fake = FakeStripe(account.events, account.subscriptions, page_size=3)
    with alert_receiver() as receiver, serve(fake) as base:
        env = {
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "STRIPE_API_KEY": "sk_test_cli",
            "STRIPE_API_BASE": base,
            "ALERT_WEBHOOK_URL": receiver.url,
            "ALERT_MIN_MRR": "1",
        }
        cli_json(env, "backfill", "--days", "30")
        cli_json(env, "rebuild")
        with db() as s:
            recent = s.scalar(
                select(InboxEvent.id).where(InboxEvent.created >= int(time.time()) - 86400)
            )
            outbox = s.scalars(select(AlertOutbox)).all()
        assert recent is not None  # events of the last 24 hours were applied
        assert outbox == []
        runtime = bootstrap(settings.with_overrides(alert_webhook_url=receiver.url))
        send_round(runtime)
        assert [b for b in receiver.bodies if not b["text"].startswith("MRR digest")] == []

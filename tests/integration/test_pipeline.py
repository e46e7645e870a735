"""Webhook → inbox → real RQ workers on real Redis → ledger, against a real database."""

from __future__ import annotations

import json
import random

import pytest
from redis import Redis
from sqlalchemy import select

from adapters import queue as queue_module
from models.tables import EventStatus, InboxEvent
from pipeline.runtime import bootstrap
from pipeline.sweep import sweep
from service.app import create_app
from tests import factories as f
from tests.conftest import NEEDS_API, OPS_TOKEN, empty_tables, load_fixture_events, sign
from tests.integration.expected import EXPECTED_MOVEMENTS, WARNED_WITHOUT_API
from tests.integration.helpers import ledger_snapshot, movement_rows


def status(client) -> dict:
    response = client.get("/status", headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert response.status_code == 200
    return response.json


def test_ordered_delivery_gives_the_hand_computed_ledger(post_event, run_worker, db, client):
    for event in load_fixture_events():
        assert post_event(event).status_code == 200
        assert run_worker() == 0
    assert movement_rows(db) == sorted(EXPECTED_MOVEMENTS)
    doc = status(client)
    assert doc["inbox"] == {
        "received": 20,
        "processed": 20,
        "ignored": 1,
        "failed": 0,
        "quarantined": 0,
        "pending": 0,
        "synthetic": 0,
        "oldest_pending_age_s": 0,
    }
    assert doc["mrr"] == {"usd": 8000, "eur": 21100}
    with db() as s:
        warned = set(s.scalars(select(InboxEvent.id).where(InboxEvent.warnings.is_not(None))))
    assert warned == set()  # the demo carries everything it needs: no warning
    assert (doc["events_priced_without_api_details"], doc["warnings"]) == (0, [])

    # A basil event naming its discount by id needs the API (STRIPE_API_KEY is unset).
    for path in sorted(NEEDS_API.glob("*/*.json")):
        assert post_event(path.read_text()).status_code == 200
    assert run_worker() == 0
    with db() as s:
        warned = set(s.scalars(select(InboxEvent.id).where(InboxEvent.warnings.is_not(None))))
    assert warned == WARNED_WITHOUT_API
    doc = status(client)
    assert doc["events_priced_without_api_details"] == 1
    assert doc["mrr"] == {"usd": 8000, "eur": 21100}  # applied without the discount


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_replay_with_duplicates_equals_ordered_delivery(
    seed, post_event, run_worker, db, settings, client
):
    events = load_fixture_events()
    for event in events:
        post_event(event)
        run_worker()
    ordered = ledger_snapshot(db)
    assert ordered["movements"]

    empty_tables(db)
    Redis.from_url(settings.redis_url).flushdb()
    rng = random.Random(seed)
    deliveries = events + rng.choices(events, k=10)
    rng.shuffle(deliveries)
    for event in deliveries:
        assert post_event(event).status_code == 200
    assert run_worker() == 0
    assert ledger_snapshot(db) == ordered
    assert status(client)["inbox"]["pending"] == 0


def test_failing_job_is_retried_then_counted_as_failed(
    post_event, run_worker, db, client, monkeypatch
):
    monkeypatch.setattr(queue_module, "RETRY_INTERVALS", (0, 0, 0))  # retry at once
    p = f.price("price_x", 1000)
    broken = f.subscription("sub_broken", "cus_broken", [f.item(p)])
    del broken["status"]  # a subscription with a missing field
    assert (
        post_event(
            f.event("evt_broken", "customer.subscription.updated", 1704067200, broken)
        ).status_code
        == 200
    )
    good = f.event(
        "evt_good",
        "customer.subscription.created",
        1704067200,
        f.subscription("sub_ok", "cus_ok", [f.item(p, 2)]),
    )
    assert post_event(good).status_code == 200
    assert run_worker() == 1
    with db() as s:
        row = s.get(InboxEvent, "evt_broken")
        assert row.status == EventStatus.FAILED
        assert row.attempts == 1 + len(queue_module.RETRY_INTERVALS)
        assert "no status" in row.last_error
        assert s.get(InboxEvent, "evt_good").status == EventStatus.PROCESSED
    doc = status(client)
    assert doc["inbox"]["failed"] == 1
    assert doc["inbox"]["pending"] == 0
    assert doc["inbox"]["received"] == 2
    assert doc["queue"]["failed_jobs"] == 1
    assert doc["mrr"] == {"usd": 2000}
    assert any("failed" in w for w in doc["warnings"])


def test_events_acknowledged_while_redis_is_down_are_swept_later(settings, db, run_worker):
    down = create_app(settings.with_overrides(redis_url="redis://127.0.0.1:1/0")).test_client()
    events = load_fixture_events()
    for event in events:
        body = json.dumps(event)
        response = down.post(
            "/webhooks/stripe", data=body, headers={"Stripe-Signature": sign(body)}
        )
        assert response.status_code == 200
    runtime = bootstrap(settings)
    assert runtime.queue.count == 0  # nothing reached Redis
    assert sweep(runtime) == 0  # not stale yet
    from datetime import timedelta

    from models.clock import utcnow

    later = utcnow() + timedelta(seconds=settings.sweep_after_s + 1)
    assert sweep(runtime, now=later) == 19  # every subscription event of the demo
    assert sweep(runtime, now=later) == 0  # stamped, not re-sent
    assert run_worker() == 0
    assert movement_rows(db) == sorted(EXPECTED_MOVEMENTS)


def test_status_hides_urls_secrets_and_customer_ids(post_event, run_worker, client, settings):
    for event in load_fixture_events():
        post_event(event)
    run_worker()
    text = client.get("/status", headers={"Authorization": f"Bearer {OPS_TOKEN}"}).get_data(
        as_text=True
    )
    for secret in (
        settings.redis_url,
        settings.database_url,
        "redis://",
        "sqlite",
        "postgres",
        OPS_TOKEN,
        settings.webhook_secrets[0],
        "cus_",
        "sub_",
    ):
        assert secret not in text


@pytest.mark.parametrize("seed", [4, 5])
def test_daily_rollup_stays_equal_to_a_recount(seed, post_event, run_worker, db) -> None:
    """Incremental rollup deltas over shuffled, duplicated deliveries equal a full recount
    (`ledger_daily`, and `segment_daily` and `segment_trial_daily` of the item segments)."""
    from tests.integration.helpers import recounted_daily, recounted_segment_rollups
    from tests.lifecycles import random_events

    rng = random.Random(seed)
    events = random_events(seed, customers=6)
    rng.shuffle(events)
    for n, event in enumerate(events):
        post_event(event)
        if n % 3 == 0:
            run_worker()
    run_worker()
    snapshot = ledger_snapshot(db)
    assert snapshot["daily"]
    assert snapshot["daily"] == [r for r in recounted_daily(db) if r[-1] != 0]
    recount = recounted_segment_rollups(db)
    for rollup in ("segment_daily", "segment_trial_daily"):
        assert snapshot[rollup], rollup
        assert snapshot[rollup] == recount[rollup], rollup

"""`mrr backfill` and `mrr reconcile` (SPEC §9) against Stripe's API mocked at the HTTP
layer (`responses`): the fake answers lists with real cursor pagination, a 429 or a 500
when told to, and 404 `resource_missing` for what it does not have."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses
import stripe
from sqlalchemy import delete, select

from models import leases
from models.clock import utcnow
from models.db import transaction
from models.tables import CustomerBalance, InboxEvent, Lease, LedgerMovement, ReconcileRun
from pipeline.apply import rebuild
from pipeline.backfill import backfill, client_for
from pipeline.reconcile import LEASE, is_due, reconcile, reconcile_forever
from pipeline.runtime import bootstrap
from tests import factories as f
from tests.conftest import empty_tables
from tests.integration.existing_account import DAY, Account, existing_account
from tests.integration.fake_stripe import FakeStripe
from tests.integration.helpers import ledger_snapshot

API = "http://stripe.mock"
NOW = 1767225600  # 2026-01-01


@pytest.fixture
def keyed(settings):
    return settings.with_overrides(stripe_api_key="sk_test_backfill", stripe_api_base=API)


@pytest.fixture
def account() -> Account:
    return existing_account(NOW)


@pytest.fixture
def fake(account: Account) -> Iterator[FakeStripe]:
    """Stripe holding the account (every event ever: the window is backfill's to ask
    for), two objects a page, reachable through `responses` at `API`."""
    api = FakeStripe(account.events, account.subscriptions, page_size=2)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(
            responses.GET, re.compile(re.escape(API) + r"/v1/.*"), callback=api.responses_callback
        )
        yield api


def when(unix_seconds: int) -> datetime:
    return datetime.fromtimestamp(unix_seconds, UTC)


def run_backfill(db, keyed, client: Any = None) -> dict[str, int]:
    runtime = bootstrap(keyed)
    done = backfill(runtime, client or client_for(runtime), now=when(NOW), days=30)
    assert done.failed == {}
    return done.document()


def deliver_as_webhooks(post_event, run_worker, events: list[dict[str, Any]]) -> None:
    for event in events:
        assert post_event(event).status_code == 200
    assert run_worker() == 0


def movements_since(db, since: int) -> list[tuple[Any, ...]]:
    """Movements from `since` on, without `seq` (it counts history before too)."""
    with db() as s:
        return sorted(
            (
                m.customer_id,
                m.currency,
                int(m.occurred_at.timestamp()),
                m.event_id,
                m.subscription_id,
                m.type,
                m.amount,
                m.mrr_before,
                m.mrr_after,
                m.kind,
                m.churn_reason,
                m.churn_feedback,
                m.delinquent,
            )
            for m in s.scalars(select(LedgerMovement))
            if m.occurred_at.timestamp() >= since
        )


def ledger_mrr(db) -> dict[tuple[str, str], int]:
    with db() as s:
        return {(b.customer_id, b.currency): b.mrr for b in s.scalars(select(CustomerBalance))}


def inbox_ids(db) -> dict[str, bool]:
    with db() as s:
        return dict(s.execute(select(InboxEvent.id, InboxEvent.synthetic)).all())


# --- acceptance 1 -----------------------------------------------------------------------


def test_backfill_gives_stripes_mrr_now_and_the_webhooks_movements_in_the_window(
    db, keyed, fake, account, post_event, run_worker
) -> None:
    # The reference: the account's whole history delivered as signed webhooks.
    deliver_as_webhooks(post_event, run_worker, account.events)
    expected_window = movements_since(db, account.window_start)
    expected_mrr = ledger_mrr(db)
    assert expected_mrr == account.stripe_mrr()
    empty_tables(db)

    counts = run_backfill(db, keyed)

    assert ledger_mrr(db) == account.stripe_mrr()
    assert movements_since(db, account.window_start) == expected_window
    window = account.in_window()
    assert counts == {
        "days": 30,
        "events": len(window),
        "events_stored": len(window),
        "subscriptions": 8,
        "invoices": 0,
        "customers": 0,
        "opened": 7,  # all but sub_fresh, whose `created` is in the window
        "synthetic_stored": 9,  # 7 openings, a trial's end, sub_gone's end
        # No invoice bills them: each history stands on the subscription as the window
        # first shows it (README: "What invoices cannot show").
        "assumed": 7,
        "applied": len(window) + 9,
        "failed": 0,
        "quarantined": 0,
        "api_calls": len(fake.requests),
    }
    stored = inbox_ids(db)
    assert {i for i, synthetic in stored.items() if not synthetic} == {e["id"] for e in window}
    assert all(i.startswith("bf_") for i, synthetic in stored.items() if synthetic)
    # Real pagination: two objects a page, each next page asked for after the last id.
    events_asked = fake.listed("/v1/events")
    assert len(events_asked) == (len(window) + 1) // 2
    assert events_asked[0]["created[gte]"] == str(account.window_start)
    assert all("starting_after" in q for q in events_asked[1:])
    subs_asked = fake.listed("/v1/subscriptions")
    assert len(subs_asked) == 4 and all(q["status"] == "all" for q in subs_asked)


def test_histories_without_invoices_date_what_stripe_states(db, keyed, fake, account) -> None:
    run_backfill(db, keyed)
    with db() as s:
        rows = s.scalars(select(LedgerMovement).order_by(LedgerMovement.occurred_at)).all()
        by_customer: dict[str, list[tuple[int, str, int, str]]] = {}
        for m in rows:
            by_customer.setdefault(m.customer_id, []).append(
                (int(m.occurred_at.timestamp()), m.type, m.amount, m.event_id)
            )
    trial_end = NOW - 46 * DAY
    assert by_customer["cus_trial"] == [
        (trial_end, "new", 1000, f"bf_sub_trial_updated_{trial_end}")
    ]
    assert by_customer["cus_gone"] == [
        (NOW - 730 * DAY, "new", 6000, f"bf_sub_gone_created_{NOW - 730 * DAY}"),
        (NOW - 365 * DAY, "churn", 6000, f"bf_sub_gone_deleted_{NOW - 365 * DAY}"),
    ]
    # Flattened before the window: the opening carries the state before its first update.
    assert by_customer["cus_old"][0] == (
        NOW - 730 * DAY,
        "new",
        9000,
        f"bf_sub_old_created_{NOW - 730 * DAY}",
    )
    assert by_customer["cus_churn"][-1] == (NOW - 2 * DAY, "churn", 3000, "evt_churn_3")
    assert by_customer["cus_late"] == [(NOW - 26 * DAY, "new", 3000, "evt_late_2")]
    assert by_customer["cus_fresh"] == [(NOW - 5 * DAY, "new", 1000, "evt_fresh_1")]


# --- faults -----------------------------------------------------------------------------


def test_rate_limits_and_stripe_errors_are_retried_with_backoff(db, keyed, fake, account) -> None:
    fake.faults["/v1/events"] = [500]
    fake.faults["/v1/subscriptions"] = [None, 429, 429]  # the second page, twice
    stripe.max_network_retries = 0  # the client's own setting is the one that counts
    run_backfill(db, keyed)
    assert ledger_mrr(db) == account.stripe_mrr()
    subs_asked = fake.listed("/v1/subscriptions")
    assert len(subs_asked) == 4 + 2
    assert subs_asked[1] == subs_asked[2] == subs_asked[3]  # the same page, asked again


def test_an_interrupted_backfill_completes_on_the_next_run_without_duplicates(
    db, keyed, fake, account
) -> None:
    run_backfill(db, keyed)
    complete, complete_ids = ledger_snapshot(db), inbox_ids(db)
    synthetic = sum(complete_ids.values())
    empty_tables(db)

    # Killed while listing: the window is stored, no history yet.
    fake.faults["/v1/subscriptions"] = [None, None, 500]  # the third page fails for good
    impatient = bootstrap(keyed).stripe(max_network_retries=0)
    with pytest.raises(stripe.APIError):
        backfill(bootstrap(keyed), impatient, now=when(NOW), days=30)
    partial = inbox_ids(db)
    assert sum(not s for s in partial.values()) == len(account.in_window())
    assert sum(partial.values()) == 0

    # Killed after storing the histories, before applying them.
    def die(stage: str, n: int) -> None:
        if stage == "histories stored":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backfill(bootstrap(keyed), client_for(bootstrap(keyed)), now=when(NOW), progress=die)
    assert sum(inbox_ids(db).values()) == synthetic

    counts = run_backfill(db, keyed)
    assert (counts["events_stored"], counts["synthetic_stored"]) == (0, 0)
    assert counts["applied"] > 0  # what the killed run left pending
    assert inbox_ids(db) == complete_ids
    assert ledger_snapshot(db) == complete


# --- acceptance 2 -----------------------------------------------------------------------


def test_running_backfill_twice_changes_nothing(db, keyed, fake) -> None:
    run_backfill(db, keyed)
    first, ids = ledger_snapshot(db), inbox_ids(db)
    counts = run_backfill(db, keyed)
    assert (counts["events_stored"], counts["synthetic_stored"], counts["applied"]) == (0, 0, 0)
    assert counts["opened"] == 0
    assert ledger_snapshot(db) == first
    assert inbox_ids(db) == ids


def test_backfill_after_live_webhooks_of_part_of_the_window_changes_nothing(
    db, keyed, fake, account, post_event, run_worker
) -> None:
    run_backfill(db, keyed)
    alone, ids = ledger_snapshot(db), inbox_ids(db)
    empty_tables(db)
    window = account.in_window()
    live = window[len(window) // 2 :]  # the webhook endpoint went live mid-window
    deliver_as_webhooks(post_event, run_worker, live)

    counts = run_backfill(db, keyed)

    assert counts["events_stored"] == len(window) - len(live)
    assert ledger_snapshot(db) == alone
    assert inbox_ids(db) == ids


# --- acceptance 3 -----------------------------------------------------------------------


def lose_the_end_of_sub_churn(db, keyed, fake: FakeStripe) -> None:
    """The event that ended sub_churn never reached us, and the Events API no longer
    lists it (nor does anything the backfill reads restore it: sub_churn's history
    ends where its stored events begin); the ledger is rebuilt without it."""
    lost = "evt_churn_3"
    fake.events = [e for e in fake.events if e["id"] != lost]
    with transaction(db) as s:
        s.execute(delete(InboxEvent).where(InboxEvent.id == lost))
    rebuild(bootstrap(keyed))


def test_reconcile_finds_exactly_the_drift_of_a_lost_event_and_fixes_it(
    db, keyed, fake, account, client, auth
) -> None:
    run_backfill(db, keyed)
    clean = reconcile(bootstrap(keyed), client_for(bootstrap(keyed)), now=when(NOW))
    assert clean.document() == {
        "checked": 8,
        "drifted": 0,
        "drift": {},
        "fixed": 0,
        "subscriptions": [],
    }

    lose_the_end_of_sub_churn(db, keyed, fake)

    later = NOW + 3600
    found = reconcile(bootstrap(keyed), client_for(bootstrap(keyed)), now=when(later))
    assert found.document() == {
        "checked": 8,
        "drifted": 1,
        "drift": {"usd": 3000},
        "fixed": 0,
        "subscriptions": [
            {
                "id": "sub_churn",
                "customer": "cus_churn",
                "ledger": {"status": "active", "currency": "usd", "mrr": 3000},
                "stripe": {"status": "canceled", "currency": "usd", "mrr": 0},
                "drift": {"usd": 3000},
            }
        ],
    }
    fixed = reconcile(bootstrap(keyed), client_for(bootstrap(keyed)), now=when(later), fix=True)
    assert (len(fixed.drifts), fixed.fixed) == (1, 1)
    assert inbox_ids(db)[f"bf_sub_churn_reconcile_{later}"] is True

    after = reconcile(bootstrap(keyed), client_for(bootstrap(keyed)), now=when(later + 60))
    assert (after.checked, after.drifts, after.drift) == (8, [], {})
    assert ledger_mrr(db) == account.stripe_mrr()

    status = client.get("/status", headers=auth).json
    assert status["reconcile"] == {
        "at": "2026-01-01T01:01:00+00:00",
        "checked": 8,
        "drifted": 0,
        "fixed": 0,
        "drift": {},
    }
    assert status["inbox"]["synthetic"] == sum(inbox_ids(db).values())


def test_reconcile_of_a_subscription_stripe_no_longer_has(
    db, keyed, fake, account, post_event, run_worker
) -> None:
    ghost = f.subscription("sub_ghost", "cus_ghost", [f.item(f.price("price_g", 1500))])
    deliver_as_webhooks(
        post_event,
        run_worker,
        [f.event("evt_ghost_1", "customer.subscription.created", NOW - 40 * DAY, ghost)],
    )
    found = reconcile(bootstrap(keyed), client_for(bootstrap(keyed)), now=when(NOW))
    assert [(d.subscription_id, dict(d.amounts)) for d in found.drifts] == [
        ("sub_ghost", {"usd": 1500})
    ]
    assert found.drifts[0].stripe is None
    retrieved = [p for p, _ in fake.requests if p == "/v1/subscriptions/sub_ghost"]
    assert retrieved == ["/v1/subscriptions/sub_ghost"]  # answered 404 resource_missing

    fixed = reconcile(bootstrap(keyed), client_for(bootstrap(keyed)), now=when(NOW), fix=True)
    assert fixed.fixed == 1
    with db() as s:
        gone = s.scalar(
            select(CustomerBalance.mrr).where(CustomerBalance.customer_id == "cus_ghost")
        )
    assert gone == 0
    assert reconcile(bootstrap(keyed), client_for(bootstrap(keyed)), now=when(NOW + 1)).drifts == []


def test_a_stripe_error_other_than_missing_is_not_taken_for_a_missing_subscription(
    db, keyed, fake, post_event, run_worker
) -> None:
    ghost = f.subscription("sub_ghost", "cus_ghost", [f.item(f.price("price_g", 1500))])
    deliver_as_webhooks(
        post_event,
        run_worker,
        [f.event("evt_ghost_1", "customer.subscription.created", NOW - 40 * DAY, ghost)],
    )
    fake.faults["/v1/subscriptions/sub_ghost"] = [500]
    with pytest.raises(stripe.APIError):
        reconcile(bootstrap(keyed), bootstrap(keyed).stripe(max_network_retries=0), now=when(NOW))


# --- the worker's periodic reconcile --------------------------------------------------


def run_periodic(db, keyed, until: Any, every_s: int = 3600) -> None:
    """Run the worker's reconcile loop in a thread until `until()` holds (10 s at most)."""
    stop = threading.Event()
    runtime = bootstrap(keyed.with_overrides(reconcile_every_s=every_s))
    loop = threading.Thread(target=reconcile_forever, args=(runtime, stop))
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while not until() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(timeout=10)
    assert not loop.is_alive()


def reconcile_runs(db) -> list[tuple[int, int, int]]:
    with db() as s:
        return [(r.checked, r.drifted, r.fixed) for r in s.scalars(select(ReconcileRun))]


def test_the_periodic_reconcile_heals_once_per_period_under_its_lease(
    db, keyed, fake, account
) -> None:
    run_backfill(db, keyed)
    lose_the_end_of_sub_churn(db, keyed, fake)

    run_periodic(db, keyed, until=lambda: reconcile_runs(db))
    assert reconcile_runs(db) == [(8, 1, 1)]  # ran with --fix: sub_churn is healed
    assert ledger_mrr(db) == account.stripe_mrr()
    with db() as s:
        lease = s.get(Lease, LEASE)
        assert lease is not None and lease.expires_at < utcnow()  # given back

    # Not due again within the period: another worker's loop does nothing.
    started = time.monotonic()
    run_periodic(db, keyed, until=lambda: time.monotonic() - started > 0.5)
    assert reconcile_runs(db) == [(8, 1, 1)]
    assert not is_due(bootstrap(keyed), 3600, utcnow())
    assert is_due(bootstrap(keyed), 3600, utcnow() + timedelta(hours=1))


def test_the_periodic_reconcile_waits_while_another_worker_holds_the_lease(db, keyed, fake) -> None:
    with transaction(db) as s:
        assert leases.hold(s, LEASE, "another-worker", ttl_s=600, now=utcnow())
    started = time.monotonic()
    run_periodic(db, keyed, until=lambda: time.monotonic() - started > 0.5)
    assert reconcile_runs(db) == []
    assert fake.requests == []

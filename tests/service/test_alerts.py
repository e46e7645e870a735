"""Alerts (SPEC §12) in process, against a local HTTP receiver and the real database and
queue: what is recorded, what is posted, retries, give-up, the digest, `/status`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from models.db import transaction
from models.inbox import store_event
from models.tables import AlertOutbox
from pipeline.alerts import send_round
from pipeline.apply import apply_event_ids, apply_inline, rebuild
from pipeline.runtime import bootstrap
from pipeline.settings import Settings
from tests import factories as f
from tests.alert_receiver import Receiver, alert_receiver

PRO = f.price("price_pro", 20000, product="prod_pro")  # 200.00 a month
#: A time of the night, before the digest's hour.
NIGHT = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
SMALL = f.price("price_small", 500, product="prod_small")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with alert_receiver() as r:
        yield r


@pytest.fixture
def settings(settings: Settings, receiver: Receiver) -> Settings:
    return settings.with_overrides(
        alert_webhook_url=receiver.url,
        alert_min_mrr=10_000,
        public_url="https://mrr.example.com",
        # The digest is due from this hour on: the last, so that before 23:00 only the
        # digest's own tests (with their injected clock) see one; the counts below leave
        # digests out for the last hour of the day.
        digest_hour_utc=23,
    )


def now_s() -> int:
    return int(datetime.now(UTC).timestamp())


def store(db, *events: dict[str, Any]) -> list[str]:
    ids = []
    for event in events:
        with transaction(db) as session:
            ids.append(store_event(session, event, json.dumps(event)).event_id)
    return ids


def started(event_id: str, cus: str, at: int, price=PRO, qty: int = 1, **kw) -> dict[str, Any]:
    sub = f.subscription(f"sub_{cus}", cus, [f.item(price, qty)], **kw)
    return f.event(event_id, "customer.subscription.created", at, sub)


def updated(event_id: str, cus: str, at: int, qty: int) -> dict[str, Any]:
    sub = f.subscription(f"sub_{cus}", cus, [f.item(PRO, qty)])
    return f.event(event_id, "customer.subscription.updated", at, sub)


def outbox_rows(db) -> list[AlertOutbox]:
    """The movements' messages (a digest may join them when the real clock passes its hour)."""
    with db() as session:
        rows = session.scalars(select(AlertOutbox).order_by(AlertOutbox.id))
        return [r for r in rows if r.kind == "movement"]


def moves(receiver: Receiver) -> list[str]:
    """The movement messages delivered (not the digest)."""
    return [t for t in receiver.texts() if not t.startswith("MRR digest")]


def bodies(receiver: Receiver) -> list[dict[str, Any]]:
    """Every movement POST, answered 2xx or not."""
    return [b for b in receiver.bodies if not b["text"].startswith("MRR digest")]


def posted(runtime, receiver: Receiver) -> int:
    """One sender round; how many movement messages it delivered."""
    before = len(moves(receiver))
    send_round(runtime)
    return len(moves(receiver)) - before


def test_a_worker_records_and_the_sender_posts_each_large_movement_once(
    db, runtime, receiver, post_event, run_worker, client, auth
) -> None:
    t = now_s() - 120
    for event in (
        started("evt_a1", "cus_a", t),  # new 200.00: alerted
        started("evt_b1", "cus_b", t, price=SMALL),  # new 5.00: below the threshold
        updated("evt_a2", "cus_a", t + 60, qty=3),  # expansion 400.00 (seats): alerted
    ):
        post_event(event)
    assert run_worker() == 0
    rows = outbox_rows(db)
    assert [(r.customer_id, r.type, r.status) for r in rows] == [
        ("cus_a", "new", "pending"),
        ("cus_a", "expansion", "pending"),
    ]
    assert client.get("/status", headers=auth).json["alerts"]["pending"] == 2
    assert posted(runtime, receiver) == 2
    texts = moves(receiver)
    assert texts == [
        "New customer: <https://mrr.example.com/dashboard/customers/cus_a|cus_a> +200.00 USD MRR",
        "Expansion (seats): <https://mrr.example.com/dashboard/customers/cus_a|cus_a> "
        "+400.00 USD MRR",
    ]
    assert posted(runtime, receiver) == 0 and len(moves(receiver)) == 2
    # Applying the same events again (a retried job, a rebuild) records nothing new.
    apply_event_ids(runtime, ["evt_a1", "evt_a2"], alert=True)
    rebuild(runtime)
    assert posted(runtime, receiver) == 0 and len(outbox_rows(db)) == 2
    status = client.get("/status", headers=auth).json["alerts"]
    digests = len(bodies(receiver)) - len(moves(receiver))
    assert status == {
        "enabled": True,
        "pending": 0,
        "failed": 0,
        "sent": 2 + digests,
        "unconfirmed": 0,
    }


def test_the_threshold_is_in_the_reporting_currency(
    db, runtime, receiver, post_event, run_worker
) -> None:
    """ALERT_MIN_MRR is in minor units of REPORTING_CURRENCY (usd here): ¥12,000 is more
    minor units than 10,000 but under 100 dollars; €99.00 is fewer but over 100 dollars."""
    t = now_s() - 60
    yen = f.price("price_yen", 12_000, currency="jpy")
    euro = f.price("price_euro", 9_900, currency="eur")
    post_event(started("evt_jp", "cus_jp", t, price=yen, currency="jpy"))
    post_event(started("evt_eu", "cus_eu", t, price=euro, currency="eur"))
    assert run_worker() == 0
    assert [(r.customer_id, r.currency) for r in outbox_rows(db)] == [("cus_eu", "eur")]
    assert posted(runtime, receiver) == 1
    [text] = moves(receiver)
    assert text.startswith(
        "New customer: <https://mrr.example.com/dashboard/customers/cus_eu|cus_eu> +99.00 EUR (≈ +"
    )
    assert text.endswith(" USD) MRR")


def test_a_churn_names_its_reason_and_old_events_are_history(
    db, runtime, receiver, post_event, run_worker
) -> None:
    t = now_s()
    old = t - 3 * 86400
    details = {"comment": None, "feedback": "too_expensive", "reason": "cancellation_requested"}
    canceled = f.subscription(
        "sub_cus_c", "cus_c", [f.item(PRO)], status="canceled", cancellation_details=details
    )
    post_event(started("evt_c1", "cus_c", old))  # three days old when it arrives: history
    post_event(f.event("evt_c2", "customer.subscription.deleted", t - 30, canceled))
    assert run_worker() == 0
    assert posted(runtime, receiver) == 1
    assert moves(receiver) == [
        "Churn (too expensive): <https://mrr.example.com/dashboard/customers/cus_c|cus_c> "
        "−200.00 USD MRR"
    ]


def test_rebuild_backfill_replay_and_synthetic_events_alert_nothing(db, runtime, receiver) -> None:
    t = now_s() - 60
    ids = store(db, started("evt_r1", "cus_r", t), started("evt_s1", "cus_s", t))
    apply_inline(runtime, ids)  # `mrr replay --sync`, `mrr backfill`
    rebuild(runtime)  # `mrr rebuild`
    # A backfilled (synthetic) start applied by a worker is history too.
    synthetic = store(db, started(f"bf_sub_cus_y_created_{t}", "cus_y", t))
    apply_event_ids(runtime, synthetic, alert=True)
    assert outbox_rows(db) == []
    assert posted(runtime, receiver) == 0 and bodies(receiver) == []


def test_a_receiver_answering_500_twice_still_gets_exactly_one(db, settings, receiver) -> None:
    clock = [NIGHT]  # hours before the digest's: only the movement's message
    runtime = bootstrap(settings, clock=lambda: clock[0])
    t = int(NIGHT.timestamp()) - 60
    apply_event_ids(runtime, store(db, started("evt_f1", "cus_f", t)), alert=True)
    receiver.answers = [500, 500]
    assert posted(runtime, receiver) == 0
    (row,) = outbox_rows(db)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == clock[0] + timedelta(seconds=60)  # retried after 60 s
    assert posted(runtime, receiver) == 0 and len(bodies(receiver)) == 1  # not due yet
    clock[0] += timedelta(seconds=60)
    assert posted(runtime, receiver) == 0
    (row,) = outbox_rows(db)
    assert row.next_attempt_at == clock[0] + timedelta(seconds=120)  # backing off
    clock[0] += timedelta(seconds=120)
    assert posted(runtime, receiver) == 1
    assert len(bodies(receiver)) == 3 and len(moves(receiver)) == 1
    clock[0] += timedelta(hours=1)
    assert posted(runtime, receiver) == 0 and len(bodies(receiver)) == 3


def test_an_hour_of_failures_is_counted_as_failed(db, settings, receiver, client, auth) -> None:
    clock = [NIGHT]
    runtime = bootstrap(settings, clock=lambda: clock[0])
    t = int(NIGHT.timestamp()) - 60
    apply_event_ids(runtime, store(db, started("evt_g1", "cus_g", t)), alert=True)
    receiver.answers = [503] * 100
    waits = []
    for _ in range(20):
        before = clock[0]
        posted(runtime, receiver)
        (row,) = outbox_rows(db)
        if row.status == "failed":
            break
        waits.append((row.next_attempt_at - before).total_seconds())
        clock[0] = row.next_attempt_at
    assert row.status == "failed" and row.last_error == "the alert webhook answered 503"
    assert waits[:5] == [60, 120, 240, 480, 600] and max(waits) == 600
    assert clock[0] - row.created_at <= timedelta(hours=1)
    doc = client.get("/status", headers=auth).json
    assert doc["alerts"]["failed"] == 1 and doc["alerts"]["pending"] == 0
    assert any("alert" in w for w in doc["warnings"])
    assert receiver.url not in json.dumps(doc)


def test_the_digest_is_posted_once_a_day_from_its_hour(db, settings, receiver) -> None:
    day = datetime(2026, 3, 10, tzinfo=UTC)
    yesterday = int((day - timedelta(hours=12)).timestamp())
    store_ids = store(
        db,
        started("evt_d1", "cus_d", yesterday),
        started("evt_e1", "cus_e", yesterday + 60, qty=2),
    )
    clock = [day + timedelta(hours=7, minutes=59)]
    runtime = bootstrap(settings.with_overrides(digest_hour_utc=8), clock=lambda: clock[0])
    apply_inline(runtime, store_ids)
    assert send_round(runtime) == 0  # 07:59: not yet
    clock[0] = day + timedelta(hours=8)
    assert send_round(runtime) == 1
    (text,) = receiver.texts()
    assert text.startswith("MRR digest for 2026-03-09 (UTC)")
    assert "USD: MRR 600.00; net new MRR +600.00 (new +600.00 USD)" in text
    assert "cus_e" in text.split("Largest movements:")[1].splitlines()[1]  # the largest first
    for hours in (9, 23):  # the same day, a restart: nothing more
        clock[0] = day + timedelta(hours=hours)
        assert send_round(bootstrap(runtime.settings, clock=lambda: clock[0])) == 0
    clock[0] = day + timedelta(days=1, hours=8, minutes=5)
    assert send_round(runtime) == 1
    assert receiver.texts()[1].startswith("MRR digest for 2026-03-10 (UTC)")
    assert len(receiver.bodies) == 2


def test_the_digest_ranks_movements_in_the_reporting_currency(db, settings, receiver) -> None:
    """¥30,000 is more minor units than $250.00 but worth less: the dollar movement is
    the larger one, and the yen one shows its converted amount beside its own."""
    day = datetime(2026, 3, 10, tzinfo=UTC)
    yesterday = int((day - timedelta(hours=12)).timestamp())
    yen = f.price("price_yen", 30_000, currency="jpy")
    dollars = f.price("price_usd", 25_000)
    ids = store(
        db,
        started("evt_y1", "cus_yen", yesterday, price=yen, currency="jpy"),
        started("evt_u1", "cus_usd", yesterday + 60, price=dollars),
    )
    clock = [day + timedelta(hours=8)]
    runtime = bootstrap(settings.with_overrides(digest_hour_utc=8), clock=lambda: clock[0])
    apply_inline(runtime, ids)
    assert send_round(runtime) == 1
    (text,) = receiver.texts()
    first, second = text.split("Largest movements:")[1].strip().splitlines()
    assert "cus_usd" in first and first.endswith("+250.00 USD MRR")
    assert "cus_yen" in second and " +30,000 JPY (≈ +" in second
    assert second.endswith(" USD) MRR")

"""Alerts with real `worker` processes (the Procfile's line) against a local HTTP
receiver: one message per qualifying movement within 60 s whatever worker applies it, a
sender killed mid-POST and restarted still gives exactly one, `mrr rebuild` gives none."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from rq import Worker
from sqlalchemy import select

from models.tables import AlertOutbox, Lease
from pipeline import intake
from pipeline.runtime import bootstrap
from pipeline.settings import Settings
from tests import factories as f
from tests.alert_receiver import alert_receiver
from tests.integration.processes import (
    cli_json,
    fresh_postgres,
    private_redis,
    start_process,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.slow

PRO = f.price("price_pro", 20000, product="prod_pro")
SMALL = f.price("price_small", 500, product="prod_small")


def event(event_id: str, cus: str, at: int, price=PRO, qty: int = 1, kind: str = "created"):
    sub = f.subscription(f"sub_{cus}", cus, [f.item(price, qty)])
    return f.event(event_id, f"customer.subscription.{kind}", at, sub)


def movement_texts(bodies: list[dict[str, Any]]) -> list[str]:
    return [b["text"] for b in bodies if not b["text"].startswith("MRR digest")]


def test_real_workers_post_each_qualifying_movement_once(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("real worker processes are tested on PostgreSQL")
    with (
        alert_receiver() as receiver,
        fresh_postgres(database_url, "alerts") as url,
        private_redis(tmp_path) as redis,
    ):
        runtime = bootstrap(Settings(database_url=url, redis_url=redis.url, queue_name="mrr"))
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": redis.url,
            "ALERT_WEBHOOK_URL": receiver.url,
            "ALERT_MIN_MRR": "10000",
            "PUBLIC_URL": "",
        }
        logs = [tmp_path / "worker1.log", tmp_path / "worker2.log"]
        workers = [start_process("worker", env, log) for log in logs]
        try:
            wait_until(lambda: Worker.count(queue=runtime.queue) == 2, 30, "two workers")
            now = int(time.time())
            sent_at = time.monotonic()
            for e in (
                event("evt_a1", "cus_a", now - 30),  # new 200.00
                event("evt_b1", "cus_b", now - 20, price=SMALL),  # below the threshold
                event("evt_c1", "cus_c", now - 10, qty=2),  # new 400.00
                event("evt_a2", "cus_a", now - 5, qty=4, kind="updated"),  # expansion 600.00
            ):
                intake.store_and_enqueue(runtime, e, json.dumps(e))
            wait_until(lambda: len(movement_texts(receiver.bodies)) >= 3, 60, "three alerts")
            took = time.monotonic() - sent_at
            print(f"three alerts posted {took:.1f} s after their events were stored")
            assert took < 60
            assert sorted(movement_texts(receiver.bodies)) == [
                "Expansion (seats): cus_a +600.00 USD MRR",
                "New customer: cus_a +200.00 USD MRR",
                "New customer: cus_c +400.00 USD MRR",
            ]

            # The sender is killed while its POST is held by the receiver, then restarted.
            receiver.hold_s = 3
            receiver.arrived.clear()
            e = event("evt_d1", "cus_d", int(time.time()), qty=3)
            intake.store_and_enqueue(runtime, e, json.dumps(e))
            assert receiver.arrived.wait(60)
            with runtime.sessions() as session:
                holder = session.scalar(select(Lease.holder).where(Lease.name == "alerts"))
            assert holder is not None
            pid = int(holder.split(":")[1])
            index = next(i for i, w in enumerate(workers) if w.pid == pid)
            os.kill(pid, signal.SIGKILL)
            workers[index].wait(timeout=10)
            workers[index] = start_process("worker", env, logs[index])
            receiver.hold_s = 0
            # Another movement after the restart: the sender (either worker, once the dead
            # one's lease has expired) posts it, and never the one killed mid-send again.
            e = event("evt_e1", "cus_e", int(time.time()), qty=5)
            intake.store_and_enqueue(runtime, e, json.dumps(e))
            wait_until(
                lambda: any("cus_e" in t for t in movement_texts(receiver.bodies)),
                60,
                "the alert after the restart",
            )
            texts = movement_texts(receiver.bodies)
            assert texts.count("New customer: cus_d +600.00 USD MRR") == 1
            assert texts.count("New customer: cus_e +1,000.00 USD MRR") == 1
            with runtime.sessions() as session:
                statuses = dict(
                    session.execute(select(AlertOutbox.customer_id, AlertOutbox.status)).all()
                )
            assert statuses["cus_d"] == "sending"  # unconfirmed: never posted again

            # `mrr rebuild` under running workers: nothing new.
            before = len(receiver.bodies)
            cli_json(env, "rebuild")
            time.sleep(6)  # three sender rounds
            assert len(receiver.bodies) == before
            assert len(movement_texts(receiver.bodies)) == 5
        finally:
            for w in workers:
                stop_process(w)

"""SPEC §2: the webhook may answer before it enqueues; a web process that dies between
the 200 and the enqueue loses nothing — the sweeper enqueues the stored event.

The Procfile's real `web` process is pointed at a Redis that accepts connections and
never answers, so its enqueue is certainly still in flight when the answer comes back;
it is then SIGKILLed. A real `worker` (on the real Redis, `SWEEP_AFTER_S=3`) must apply
the event within `SWEEP_AFTER_S` and a few seconds.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.tables import EventStatus, InboxEvent
from tests import factories as f
from tests.conftest import OPS_TOKEN, SECRET
from tests.integration.processes import (
    WebClient,
    free_port,
    kill_tree,
    start_process,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.slow
SWEEP_AFTER_S = 3
#: What the sweeper may take beyond SWEEP_AFTER_S: its round (SWEEP_AFTER_S / 2), the
#: job, and a loaded machine.
SLACK_S = 10


@pytest.fixture
def silent_redis() -> Iterator[int]:
    """A TCP port that accepts connections (the kernel does) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def status_of(db, event_id: str) -> str | None:
    with db() as session:
        row = session.get(InboxEvent, event_id)
        return None if row is None else row.status


def test_a_web_killed_between_the_answer_and_the_enqueue_loses_nothing(
    settings, db, silent_redis: int, tmp_path: Path
) -> None:
    base = {
        "DATABASE_URL": settings.database_url,
        "MRR_QUEUE": settings.queue_name,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "OPS_TOKEN": OPS_TOKEN,
        "SWEEP_AFTER_S": str(SWEEP_AFTER_S),
    }
    port = free_port()
    web = start_process(
        "web",
        {**base, "REDIS_URL": f"redis://127.0.0.1:{silent_redis}/0", "PORT": str(port)},
        tmp_path / "web.log",
    )
    worker = start_process("worker", {**base, "REDIS_URL": settings.redis_url}, tmp_path / "w.log")
    client = WebClient(port, SECRET, OPS_TOKEN)
    try:
        wait_until(lambda: client.get_json("/healthz")["ok"], 30, "the web process")
        sub = f.subscription("sub_k1", "cus_k1", [f.item(f.price("price_k", 4200))])
        event = f.event("evt_k1", "customer.subscription.created", int(time.time()), sub)
        assert client.post_event(json.dumps(event)) == 200
        answered = time.monotonic()
        kill_tree(web)  # its enqueue is still waiting on the silent Redis
        assert status_of(db, "evt_k1") == EventStatus.PENDING  # stored before the 200
        wait_until(
            lambda: status_of(db, "evt_k1") == EventStatus.PROCESSED,
            SWEEP_AFTER_S + SLACK_S + 30,
            "the sweeper to enqueue the event",
        )
        took = time.monotonic() - answered
        assert took <= SWEEP_AFTER_S + SLACK_S, f"applied {took:.1f} s after the answer"
    finally:
        client.close()
        kill_tree(web)
        stop_process(worker)

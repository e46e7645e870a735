"""What only a real web process shows: chunked bodies over the limit, and slow clients,
against the Procfile's `web` line."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import factories as f
from tests.conftest import OPS_TOKEN, SECRET, sign
from tests.integration.processes import (
    WebClient,
    free_port,
    start_process,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.slow
LIMIT = 4096


@pytest.fixture
def web(settings, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    env = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "MRR_QUEUE": settings.queue_name,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "OPS_TOKEN": OPS_TOKEN,
        "PORT": str(port),
        "MAX_BODY_BYTES": str(LIMIT),
    }
    proc = start_process("web", env, tmp_path / "web.log")
    client = WebClient(port, SECRET, OPS_TOKEN)
    try:
        wait_until(lambda: client.get_json("/healthz")["ok"], 30, "the web process")
        yield port
    finally:
        client.close()
        stop_process(proc)


def event_of_size(size: int, event_id: str) -> str:
    sub = f.subscription(f"sub_{event_id}", "cus_edge", [f.item(f.price("price_e", 100))])
    event = f.event(event_id, "customer.subscription.created", 1704067200, sub)
    body = json.dumps(event)
    event["data"]["object"]["metadata"] = {"pad": "x" * max(size - len(body) - 30, 0)}
    return json.dumps(event)


def post_chunked(port: int, body: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = body.encode()
        chunks = (data[i : i + 1000] for i in range(0, len(data), 1000))
        conn.request(
            "POST",
            "/webhooks/stripe",
            body=chunks,
            headers={"Stripe-Signature": sign(body), "Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_chunked_body_over_the_limit_is_a_413(web: int) -> None:
    status, body = post_chunked(web, event_of_size(3 * LIMIT, "evt_big"))
    assert status == 413 and body["error"]["code"] == "too_large"
    status, body = post_chunked(web, event_of_size(LIMIT - 100, "evt_small"))
    assert status == 200 and body["received"] is True


def test_slow_clients_do_not_starve_intake(web: int) -> None:
    """A hundred connections dribbling a body one byte a second, no credential needed."""
    stop = threading.Event()
    socks: list[socket.socket] = []
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", web), timeout=5)
        sock.sendall(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
        )
        socks.append(sock)

    def dribble() -> None:
        while not stop.is_set():
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(b"{")
            stop.wait(1)

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    client = WebClient(web, SECRET, OPS_TOKEN, timeout=10)
    try:
        time.sleep(2)  # let them settle in
        started = time.monotonic()
        assert client.get_json("/healthz") == {"ok": True}
        healthz_s = time.monotonic() - started
        started = time.monotonic()
        assert client.post_event(event_of_size(1000, "evt_while_slow")) == 200
        webhook_s = time.monotonic() - started
    finally:
        stop.set()
        thread.join()
        client.close()
        for sock in socks:
            sock.close()
    assert healthz_s < 2 and webhook_s < 2, (healthz_s, webhook_s)

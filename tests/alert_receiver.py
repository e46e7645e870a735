"""A local Slack-compatible webhook for the alert tests: records every POST body and
answers the statuses it is told to (then 200), optionally holding each request first."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []  # every POST, whatever was answered
        self.delivered: list[str] = []  # texts answered 2xx
        self.answers: list[int] = []  # statuses to answer first, in order
        self.hold_s = 0.0
        self.arrived = threading.Event()
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/alerts"

    def texts(self) -> list[str]:
        with self.lock:
            return list(self.delivered)


@contextmanager
def alert_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with receiver.lock:
                receiver.bodies.append(body)
                status = receiver.answers.pop(0) if receiver.answers else 200
                if status < 300:
                    receiver.delivered.append(body["text"])
            receiver.arrived.set()
            if receiver.hold_s:
                threading.Event().wait(receiver.hold_s)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()

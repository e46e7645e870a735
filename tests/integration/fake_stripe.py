"""Stripe's API for events and subscriptions, over data held in memory: the list and
retrieve shapes backfill and reconcile read, served to `responses` (in-process) or over
real HTTP (a thread on 127.0.0.1, for the CLI run as a process).

Lists paginate as Stripe does: newest first, `limit` (capped by `page_size`, so a few
objects already take several pages), `starting_after`, `has_more`; events filter on
`created[gte]` and `types[]`, subscriptions on `status` (`all`; canceled ones only with
it). An unknown id is a 404 `resource_missing`. `faults` queues HTTP statuses a path
answers before it answers normally (a 429, a 500).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import requests

if TYPE_CHECKING:
    from tests.world import World

#: Lines an invoice embeds in a list before `has_more`.
EMBEDDED_LINES = 10

ERRORS = {
    404: ("invalid_request_error", "resource_missing", "No such subscription"),
    429: ("invalid_request_error", "rate_limit", "Too many requests hit the API too quickly."),
    500: ("api_error", None, "Something went wrong on Stripe's end."),
}


class FakeStripe:
    def __init__(
        self,
        events: list[dict[str, Any]],
        subscriptions: list[dict[str, Any]],
        page_size: int = 100,
        *,
        invoices: list[dict[str, Any]] | None = None,
        customers: list[dict[str, Any]] | None = None,
        invoice_items: list[dict[str, Any]] | None = None,
        prices: dict[str, dict[str, Any]] | None = None,
        coupons: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.events = sorted(events, key=lambda e: (-e["created"], e["id"]))
        self.subscriptions = sorted(subscriptions, key=lambda s: (-s["created"], s["id"]))
        self.page_size = page_size
        #: Invoices with every line; a list embeds the first EMBEDDED_LINES, as Stripe does.
        self.invoices = sorted(invoices or [], key=lambda i: (-i["created"], i["id"]))
        self.customers = sorted(customers or [], key=lambda c: (-c["created"], c["id"]))
        self.invoice_items = list(invoice_items or [])
        self.objects = {"prices": dict(prices or {}), "coupons": dict(coupons or {})}
        #: Seconds each answer takes (the bench's stand-in for Stripe's latency).
        self.delay_s = 0.0
        self._lists: dict[tuple[Any, ...], tuple[tuple[int, ...], list[dict[str, Any]]]] = {}
        self._indexes: dict[tuple[int, int], tuple[list[dict[str, Any]], dict[str, int]]] = {}
        #: Per path, what its next requests answer: a status, or None to answer normally.
        self.faults: dict[str, list[int | None]] = defaultdict(list)
        #: (path, query) of every request answered, faults included.
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.requests.append((path, query))
            fault = self.faults[path].pop(0) if self.faults[path] else None
            if fault is not None:
                kind, code, message = ERRORS[fault]
                return fault, {"error": {"type": kind, "code": code, "message": message}}
        if path == "/v1/events":
            types = {v for k, v in query.items() if k.startswith("types[")}
            since = int(query.get("created[gte]", 0))
            found = self._filtered(
                ("events", since, *sorted(types)),
                lambda: [e for e in self.events if e["created"] >= since and e["type"] in types],
            )
            return 200, self._page(path, found, query)
        if path == "/v1/subscriptions":
            status = query.get("status")
            found = self._filtered(
                ("subscriptions", status),
                lambda: [
                    s
                    for s in self.subscriptions
                    if status == "all"
                    or s["status"] == status
                    or (status is None and s["status"] != "canceled")
                ],
            )
            return 200, self._page(path, found, query)
        if path == "/v1/customers":
            return 200, self._page(path, self.customers, query)
        if path.startswith("/v1/customers/"):
            customer_id = path.rsplit("/", 1)[1]
            for customer in self.customers:
                if customer["id"] == customer_id:
                    return 200, customer
            return 404, _missing("customer", customer_id)
        if path == "/v1/invoices":
            page = self._page(path, self.invoices, query)
            return 200, {**page, "data": [self._embedded(i) for i in page["data"]]}
        if path.startswith("/v1/invoices/") and path.endswith("/lines"):
            invoice_id = path.split("/")[3]
            for invoice in self.invoices:
                if invoice["id"] == invoice_id:
                    return 200, self._page(path, invoice["lines"]["data"], query)
            return 404, _missing("invoice", invoice_id)
        if path == "/v1/invoiceitems":
            pending = query.get("pending") in ("true", "True")
            return 200, self._page(path, self.invoice_items if pending else [], query)
        for kind in ("prices", "coupons"):
            if path.startswith(f"/v1/{kind}/"):
                obj_id = path.rsplit("/", 1)[1]
                obj = self.objects[kind].get(obj_id)
                return (200, obj) if obj is not None else (404, _missing(kind, obj_id))
        if path.startswith("/v1/subscriptions/"):
            sub_id = path.rsplit("/", 1)[1]
            for sub in self.subscriptions:
                if sub["id"] == sub_id:
                    return 200, sub
            return 404, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "param": "id",
                    "message": f"No such subscription: '{sub_id}'",
                }
            }
        return 404, {"error": {"type": "invalid_request_error", "message": f"no route {path}"}}

    def _filtered(
        self, key: tuple[Any, ...], make: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """A filtered list made once per filter, as long as the objects do not change: a
        list filtered again for every page costs the whole account per page (a real
        Stripe answers a page in about the same time however large the account is)."""
        sizes = (id(self.events), len(self.events), id(self.subscriptions), len(self.subscriptions))
        cached = self._lists.get(key)
        if cached is None or cached[0] != sizes:
            cached = self._lists[key] = (sizes, make())
        return cached[1]

    def _page(
        self, path: str, found: list[dict[str, Any]], query: dict[str, str]
    ) -> dict[str, Any]:
        after = query.get("starting_after")
        if after is not None:
            found = found[self._position(found, after) + 1 :]
        limit = min(int(query.get("limit", 10)), self.page_size)
        return {
            "object": "list",
            "url": path,
            "has_more": len(found) > limit,
            "data": found[:limit],
        }

    def _position(self, found: list[dict[str, Any]], object_id: str) -> int:
        """Where `object_id` is in `found` (indexed once per list: a whole account's
        invoices are paged through thousands of times)."""
        key = (id(found), len(found))
        index = self._indexes.get(key)
        if index is None or index[0] is not found:
            index = self._indexes[key] = (found, {o["id"]: n for n, o in enumerate(found)})
        return index[1][object_id]

    def _embedded(self, invoice: dict[str, Any]) -> dict[str, Any]:
        lines = invoice["lines"]["data"]
        return {
            **invoice,
            "lines": {
                "object": "list",
                "url": f"/v1/invoices/{invoice['id']}/lines",
                "has_more": len(lines) > EMBEDDED_LINES,
                "total_count": len(lines),
                "data": lines[:EMBEDDED_LINES],
            },
        }

    def least_calls(self, days_events: int) -> int:
        """The fewest requests a whole backfill can make: every list page at 100 objects,
        one more lines page per invoice with over EMBEDDED_LINES lines, one per price
        and coupon fetched (counted by the caller's `fetched`)."""
        pages = 0
        for count in (
            days_events,
            len(self.customers),
            len(self.subscriptions),
            len(self.invoices),
            len(self.invoice_items),
        ):
            pages += max(1, -(-count // 100))
        more = sum(
            -(-(len(i["lines"]["data"]) - EMBEDDED_LINES) // 100)
            for i in self.invoices
            if len(i["lines"]["data"]) > EMBEDDED_LINES
        )
        return pages + more

    def listed(self, path: str) -> list[dict[str, str]]:
        """Queries of the requests made to `path`."""
        return [q for p, q in self.requests if p == path]

    # --- transports ---------------------------------------------------------------

    def responses_callback(
        self, request: requests.PreparedRequest
    ) -> tuple[int, dict[str, str], str]:
        """For `responses.add_callback`."""
        url = urlsplit(str(request.url))
        status, body = self.answer(url.path, dict(parse_qsl(url.query)))
        return status, {"Request-Id": "req_fake"}, json.dumps(body)


def holding(world: World, **kw: Any) -> FakeStripe:
    """Stripe holding a test world (`tests.world`): its events (the Events API lists the
    last 30 days of them), customers, subscriptions, invoices, pending invoice items,
    prices and coupons."""
    return FakeStripe(
        world.webhooks(),
        world.subscriptions(),
        invoices=world.invoices(),
        customers=world.customers(),
        invoice_items=world.pending_invoice_items(),
        prices=world.prices(),
        coupons=world.coupons(),
        **kw,
    )


def _missing(kind: str, obj_id: str) -> dict[str, Any]:
    return {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "param": "id",
            "message": f"No such {kind}: '{obj_id}'",
        }
    }


@contextmanager
def serve(fake: FakeStripe) -> Iterator[str]:
    """Serve `fake` over HTTP on 127.0.0.1; yields its base URL, stopped on exit."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            status, body = fake.answer(url.path, dict(parse_qsl(url.query)))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="fake-stripe")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

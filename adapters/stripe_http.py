"""stripe-python's client as the service uses it: the key and base URL of the settings,
and retries of rate limits as well as of what stripe-python retries itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import stripe


class RetryingHTTPClient(stripe.RequestsClient):
    """stripe-python's `requests` client, which also retries rate limits (HTTP 429).

    stripe-python retries connection errors, 409 and 5xx with exponential backoff and
    jitter, but a 429 only when Stripe adds `Stripe-Should-Retry: true` (lock
    timeouts). Listing a whole account can hit the rate limit itself, and the right
    answer to that is the same backoff (SPEC §9), unless Stripe says not to retry.
    `_should_retry` is stripe-python's own hook for this decision (`_http_client.py`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Every HTTP request sent, retries included (`mrr backfill`'s `api_calls`), and
        #: the seconds during which at least one of them was waiting on its answer
        #: (requests made at once on several threads count once).
        self.calls = 0
        self.waited_s = 0.0
        self._count = threading.Lock()
        self._in_flight = 0
        self._since = 0.0

    def request(self, *args: Any, **kwargs: Any) -> Any:
        with self._count:
            if self._in_flight == 0:
                self._since = time.perf_counter()
            self._in_flight += 1
        try:
            return super().request(*args, **kwargs)
        finally:
            with self._count:
                self.calls += 1
                self._in_flight -= 1
                if self._in_flight == 0:
                    self.waited_s += time.perf_counter() - self._since

    def _should_retry(
        self,
        response: tuple[Any, int, Mapping[str, str] | None] | None,
        api_connection_error: stripe.APIConnectionError | None,
        num_retries: int,
        max_network_retries: int | None,
    ) -> bool:
        if response is not None and response[1] == 429 and num_retries < (max_network_retries or 0):
            headers = response[2]
            return headers is None or headers.get("stripe-should-retry") != "false"
        return bool(
            super()._should_retry(response, api_connection_error, num_retries, max_network_retries)
        )


def stripe_client(
    api_key: str,
    api_base: str | None = None,
    *,
    max_network_retries: int = 2,
    http_client: RetryingHTTPClient | None = None,
) -> stripe.StripeClient:
    """A client for `api_key` at `api_base` (Stripe's own when None), retrying 429, 409,
    5xx and connection errors up to `max_network_retries` times with stripe-python's
    backoff."""
    base = {"api": api_base} if api_base else None
    return stripe.StripeClient(
        api_key,
        base_addresses=base,  # type: ignore[arg-type]
        http_client=http_client or RetryingHTTPClient(),
        max_network_retries=max_network_retries,
    )


def plain(obj: Any) -> dict[str, Any]:
    """A StripeObject as plain JSON data, as the API sent it."""
    import json

    data = obj.to_dict(recursive=True) if hasattr(obj, "to_dict") else obj
    # stripe-python turns `*_decimal` strings into Decimal; back to the API's strings.
    result: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return result

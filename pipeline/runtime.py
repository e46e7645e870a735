"""The composition root: `bootstrap(settings)` builds what every entry point shares.

The Flask factory, the worker and every `mrr` command call `bootstrap` and nothing
else builds a session factory, a queue or a Stripe client. A `Runtime` connects to
nothing when it is made: the engine opens its first connection on first use, and the
queue and Stripe client are built on first use, in the process that uses them (the
worker never forks, so nothing pooled crosses a fork). Tests build one from test
settings, and may pass a clock.

RQ calls jobs by name, so a job cannot be handed its runtime: the worker `install`s
its runtime at start and jobs read it with `current()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import stripe
from rq import Queue
from sqlalchemy.orm import Session, sessionmaker

from adapters.queue import make_queue
from adapters.stripe_http import RetryingHTTPClient, stripe_client
from models.clock import utcnow
from models.db import session_factory
from pipeline.errors import StripeAccessError
from pipeline.settings import Settings

Clock = Callable[[], datetime]


@dataclass
class Runtime:
    """Settings and the collaborators built from them, for one process."""

    settings: Settings
    sessions: sessionmaker[Session]
    #: "Now", as an aware UTC datetime: the only clock the use cases read.
    clock: Clock = utcnow
    _queue: Queue | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> datetime:
        return self.clock()

    @property
    def queue(self) -> Queue:
        """The RQ queue of the settings (built on first use; no connection until used)."""
        with self._lock:
            if self._queue is None:
                self._queue = make_queue(self.settings.redis_url, self.settings.queue_name)
            return self._queue

    def stripe(
        self, *, max_network_retries: int = 2, http_client: RetryingHTTPClient | None = None
    ) -> stripe.StripeClient:
        """A Stripe client for `STRIPE_API_KEY` at `STRIPE_API_BASE`; raises
        `StripeAccessError` without a key."""
        key = self.settings.stripe_api_key
        if key is None:
            raise StripeAccessError(
                "STRIPE_API_KEY is required to read the account from Stripe's API"
            )
        return stripe_client(
            key,
            self.settings.stripe_api_base,
            max_network_retries=max_network_retries,
            http_client=http_client,
        )


def bootstrap(settings: Settings | None = None, *, clock: Clock = utcnow) -> Runtime:
    """The runtime of `settings` (read from the environment when None)."""
    settings = settings or Settings.from_env()
    return Runtime(
        settings=settings,
        sessions=session_factory(settings.database_url, settings.db_limits),
        clock=clock,
    )


_installed: Runtime | None = None
_installed_lock = threading.Lock()


def install(runtime: Runtime | None) -> None:
    """Make `runtime` the one jobs of this process use (the worker at start, tests);
    None forgets it, so the next `current()` reads the environment again."""
    global _installed
    with _installed_lock:
        _installed = runtime


def current() -> Runtime:
    """The installed runtime, or one bootstrapped from the environment on first use."""
    global _installed
    with _installed_lock:
        if _installed is None:
            _installed = bootstrap()
        return _installed

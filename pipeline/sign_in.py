"""The dashboard's sign-in throttle: at most `failures` failed sign-ins per client address
in any `window_s` seconds, counted in the database so every web process on every host
shares it (SPEC §13). The token is a long random secret, so this is a brake, not the lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from models import throttle
from models.db import transaction
from pipeline.runtime import Runtime

#: Failed sign-ins allowed per address in a window, and the window.
FAILURES = 10
WINDOW_S = 300
#: Longest address kept (an IPv6 address with a zone fits).
ADDRESS_CHARS = 64


@dataclass(frozen=True)
class SignInThrottle:
    runtime: Runtime
    failures: int = FAILURES
    window_s: float = WINDOW_S

    def retry_after(self, address: str, now: datetime | None = None) -> int:
        """Seconds until `address` may try again; 0 when it may now."""
        now = now or self.runtime.now()
        window = timedelta(seconds=self.window_s)
        with transaction(self.runtime.sessions) as session:
            recent = throttle.failures_since(session, address[:ADDRESS_CHARS], now - window)
        if len(recent) < self.failures:
            return 0
        # Free again once enough of the failures have left the window.
        frees_at = recent[len(recent) - self.failures] + window
        return max(1, math.ceil((frees_at - now).total_seconds()))

    def failed(self, address: str, now: datetime | None = None) -> None:
        now = now or self.runtime.now()
        forget_before = now - timedelta(seconds=self.window_s)
        with transaction(self.runtime.sessions) as session:
            throttle.record_failure(session, address[:ADDRESS_CHARS], now, forget_before)

    def succeeded(self, address: str) -> None:
        with transaction(self.runtime.sessions) as session:
            throttle.forget(session, address[:ADDRESS_CHARS])

"""One process of the deployment runs a task: whoever holds its lease in the database.

The sweeper and the periodic reconcile run in every worker; each round, a worker takes
or renews the task's lease and runs the round only while it holds it. A holder that
dies stops renewing, and another takes over once `ttl_s` has passed; a clean stop
gives the lease up at once. The lease lives in the inbox's database, so it needs
nothing else and survives a Redis loss.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from models import leases
from models.db import transaction

log = logging.getLogger(__name__)


def holder_name() -> str:
    """This process's name as a lease holder: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lead_forever(
    factory: sessionmaker[Session],
    name: str,
    round_: Callable[[], object],
    *,
    pause_s: float,
    ttl_s: float,
    stop: threading.Event,
    clock: Callable[[], datetime],
) -> None:
    """Every `pause_s` until `stop` is set: hold lease `name` for `ttl_s` and, while held,
    run `round_`. A round's errors (Redis or the database away, Stripe down) are logged
    and the round is tried again after the pause. `ttl_s` must outlast the longest
    round, or another process may start one meanwhile."""
    me = holder_name()
    try:
        while not stop.is_set():
            try:
                with transaction(factory) as session:
                    leader = leases.hold(session, name, me, ttl_s=ttl_s, now=clock())
                if leader:
                    round_()
            except Exception as exc:
                log.warning("%s failed, trying again in %.0fs: %s", name, pause_s, exc)
            stop.wait(pause_s)
    finally:
        try:
            with transaction(factory) as session:
                leases.release(session, name, me)
        except Exception:  # the database may be down; the lease expires by itself
            log.debug("could not release the %s lease", name, exc_info=True)

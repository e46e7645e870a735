"""Per-process collaborators of the jobs, built on first use and never at import.

The worker never forks (see `workers.runtime`), so what is built here is used only by
the process that built it.
"""

from __future__ import annotations

import threading

from rq import Queue
from sqlalchemy.orm import Session, sessionmaker

from pipeline.queue import make_queue
from pipeline.settings import Settings

_lock = threading.Lock()
_settings: Settings | None = None


def configure(settings: Settings | None) -> None:
    """Pin the settings jobs of this process use (the worker at boot, tests); None re-reads."""
    global _settings
    with _lock:
        _settings = settings


def settings() -> Settings:
    global _settings
    with _lock:
        if _settings is None:
            _settings = Settings.from_env()
        return _settings


def sessions() -> sessionmaker[Session]:
    return settings().sessions()


def queue() -> Queue:
    current = settings()
    return make_queue(current.redis_url, current.queue_name)

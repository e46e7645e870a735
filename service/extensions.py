"""The app's collaborators, kept in `app.extensions["mrr"]` and built by `create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from rq import Queue
from sqlalchemy.orm import Session, sessionmaker

from models.db import session_factory
from pipeline.queue import make_queue
from pipeline.settings import Settings


@dataclass
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    _queue: Queue | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        return cls(settings=settings, sessions=session_factory(settings.database_url))

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            self._queue = make_queue(self.settings.redis_url, self.settings.queue_name)
        return self._queue


def services() -> Services:
    return current_app.extensions["mrr"]  # type: ignore[no-any-return]

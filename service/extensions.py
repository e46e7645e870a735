"""The app's collaborators, kept in `app.extensions["mrr"]` and built by `create_app`.

Nothing here connects at build time: the engine and the Redis client open their first
connection on first use, in the process that serves requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from rq import Queue
from sqlalchemy.orm import Session, sessionmaker

from pipeline.intake import GroupCommit
from pipeline.queue import make_queue
from pipeline.settings import Settings


@dataclass
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    #: The process's group commit of webhook deliveries.
    intake: GroupCommit = field(init=False, repr=False)
    _queue: Queue | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.intake = GroupCommit(self.sessions, lambda: self.queue)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        return cls(settings=settings, sessions=settings.sessions())

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            self._queue = make_queue(self.settings.redis_url, self.settings.queue_name)
        return self._queue


def services() -> Services:
    return current_app.extensions["mrr"]  # type: ignore[no-any-return]

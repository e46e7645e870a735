"""The RQ worker of `mrr worker`: a worker that never forks (started by `pipeline.worker`).

Why not RQ's default `Worker`: it forks a work horse per job, and the horse inherits
whatever the parent holds — pooled PostgreSQL connections (of the sweeper), the Redis
pubsub socket, an HTTP session. Two processes then speak on one socket, which fails
jobs at best and hands one process the other's rows at worst (SQLAlchemy's "Using
Connection Pools with Multiprocessing or os.fork()"). Forking per job also costs a
re-import of the job's modules every time. So:

* jobs run in the worker process itself (`SimpleWorker`); the job timeout still holds,
  through RQ's SIGALRM death penalty on the main thread, and PostgreSQL's statement
  timeout bounds what a signal cannot interrupt;
* RQ's scheduler, which RQ forks off as a child, runs as a thread here instead, and
  keeps going through a Redis outage instead of dying until the next maintenance;
* the worker re-registers itself when Redis has lost its registration (a restart), so
  `/status` counts it again within seconds;
* `pipeline.worker` runs the sweeper and the periodic reconcile as threads beside it,
  each under its database lease, and imports everything a job needs once, at start.

Nothing is ever forked, so nothing pooled can cross a fork.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from rq import SimpleWorker
from rq.scheduler import RQScheduler

log = logging.getLogger(__name__)

#: Seconds between RQ's registry clean-ups (RQ's default is ten minutes).
MAINTENANCE_S = 60
#: Seconds a dead worker stays registered (RQ: 420); idle workers renew it every 45 s.
WORKER_TTL_S = 60


class ThreadedScheduler(RQScheduler):
    """RQ's scheduler (moves due retries back to the queue) as a thread of the worker.

    Every scheduler tries for the queue's lock each round; the holder enqueues due jobs.
    Errors (Redis away) are logged and the loop goes on, so the scheduler is back as
    soon as Redis is.
    """

    def start(self) -> threading.Thread:  # a thread, not a process
        self._status = self.Status.STARTED
        self._stop_requested = False
        thread = threading.Thread(target=self._loop, name="rq-scheduler", daemon=True)
        self._process = thread  # type: ignore[assignment]
        thread.start()
        return thread

    def _loop(self) -> None:
        registered = False
        while not self._stop_requested:
            try:
                if not registered:
                    self.register_birth()
                    registered = True
                if not self._acquired_locks:
                    self.acquire_locks()  # type: ignore[no-untyped-call]
                if self._acquired_locks:
                    self.heartbeat()  # type: ignore[no-untyped-call]
                    self.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
            except Exception as exc:
                log.warning("scheduler: %s; trying again", exc)
                self._acquired_locks = set()
                self._scheduled_job_registries = []
                registered = False
            time.sleep(self.interval)
        try:
            self.stop()  # type: ignore[no-untyped-call]
        except Exception:  # Redis away at shutdown: the locks expire by themselves
            log.debug("scheduler stop", exc_info=True)


class MrrWorker(SimpleWorker):
    """`SimpleWorker` with a threaded scheduler and self-healing registration."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", MAINTENANCE_S)
        kwargs.setdefault("worker_ttl", WORKER_TTL_S)
        super().__init__(*args, **kwargs)

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = "%H:%M:%S",
        log_format: str = "%(asctime)s %(message)s",
    ) -> None:
        if burst:  # enqueue what is due once, in this thread, as RQ does
            super()._start_scheduler(burst, logging_level, date_format, log_format)
            return
        self.scheduler = ThreadedScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level or "INFO",
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.start()

    def stop_scheduler(self) -> None:
        scheduler = self.scheduler
        if scheduler is None:
            return
        scheduler.request_stop()  # type: ignore[no-untyped-call]
        thread = scheduler._process
        if isinstance(thread, threading.Thread):
            thread.join(timeout=5)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat in one round trip (RQ's takes three), which also notices when
        Redis has lost this worker's registration (a restart) and registers it again."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        with self.connection.pipeline() as pipe:
            pipe.hexists(self.key, "birth")
            super().heartbeat(timeout, pipe)
            registered = pipe.execute()[0]
        if not registered:
            log.warning("worker %s: Redis lost its registration; registering again", self.name)
            self.connection.delete(self.key)
            self.register_birth()  # type: ignore[no-untyped-call]

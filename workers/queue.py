"""The RQ queue: JSON-serialized jobs (never pickle from Redis) carrying only event ids."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from redis import Redis
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

#: Attempts after the first, and the pause before each (seconds).
RETRY_INTERVALS = (2, 10, 30)
#: Failed jobs stay inspectable for a week.
FAILURE_TTL_S = 7 * 24 * 3600
JOB_TIMEOUT_S = 300

_connections: dict[str, Redis] = {}
_lock = threading.Lock()


def redis_for(url: str) -> Redis:
    """The process-wide Redis client for `url`, with short timeouts so a dead Redis fails fast."""
    with _lock:
        conn = _connections.get(url)
        if conn is None:
            conn = _connections[url] = Redis.from_url(
                url, socket_connect_timeout=1, socket_timeout=5, health_check_interval=30
            )
        return conn


def make_queue(redis_url: str, name: str) -> Queue:
    return Queue(
        name,
        connection=redis_for(redis_url),
        serializer=JSONSerializer,
        default_timeout=JOB_TIMEOUT_S,
    )


def job_id(event_id: str) -> str:
    return f"apply-{event_id}"


def enqueue_apply(queue: Queue, event_ids: Sequence[str]) -> list[Job]:
    """Enqueue one idempotent `apply_event` job per event id, with retries."""
    with queue.connection.pipeline() as pipe:
        jobs = [
            queue.enqueue(
                "workers.jobs.apply_event",
                event_id,
                job_id=job_id(event_id),
                retry=Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS)),
                failure_ttl=FAILURE_TTL_S,
                result_ttl=3600,
                description=f"apply {event_id}",
                pipeline=pipe,
            )
            for event_id in event_ids
        ]
        pipe.execute()
    return jobs


def queue_stats(queue: Queue) -> dict[str, int | bool]:
    """Depth, failed and scheduled jobs, live workers; `reachable` False when Redis is down."""
    from rq import Worker
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

    try:
        return {
            "reachable": bool(queue.connection.ping()),
            "depth": queue.count,
            "started": StartedJobRegistry(queue=queue).count,
            "scheduled": ScheduledJobRegistry(queue=queue).count,  # type: ignore[no-untyped-call]
            "failed_jobs": FailedJobRegistry(queue=queue).count,
            "workers": Worker.count(queue=queue),
        }
    except Exception:
        return {"reachable": False}

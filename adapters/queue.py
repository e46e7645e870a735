"""The RQ queue every entry point uses: JSON-serialized jobs (never pickle from Redis),
each carrying one event id, retried by RQ's scheduler.

The attempt budget of an event lives in its inbox row (`attempts`), not in Redis: a
job is enqueued with the retries its event has left, so neither the sweeper nor a
Redis loss can hand an event a fresh budget.
"""

from __future__ import annotations

import hashlib
import re
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat

#: Pauses (seconds) before the retries of a failed apply; attempts in all = 1 + retries.
RETRY_INTERVALS = (2, 10, 30)
#: Failed jobs stay inspectable for a week.
FAILURE_TTL_S = 7 * 24 * 3600
#: Results are only read by tests and operators; an hour is plenty.
RESULT_TTL_S = 3600
#: A job applies one batch of events; a minute is far beyond any healthy batch, and it
#: bounds how long a job that died with its worker still looks "running".
JOB_TIMEOUT_S = 60
#: Seconds past the job timeout after which a job still marked "started" is taken for
#: dead (its worker died: a lost host). A live job never outlasts its timeout (RQ's death
#: penalty ends it, PostgreSQL's statement timeout bounds what a signal cannot), and a
#: job that ran twice finds its events applied. With the sweeper's round (SWEEP_AFTER_S
#: / 2; a row whose job is running is looked at again every round) this bounds how late
#: a lost host's event is applied: 60 + 5 + 15 s < 90 s.
STARTED_GRACE_S = 5
#: The job function, by name: the queue never imports the worker.
APPLY_JOB = "workers.jobs.apply_event"
#: RQ statuses of a job that will still run, whatever the sweeper does.
_WAITING = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED})

_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
#: RQ's set of queue keys (`Queue.redis_queues_keys`).
_QUEUES_KEY = Queue.redis_queues_keys
_connections: dict[str, Redis] = {}
_lock = threading.Lock()


def max_attempts() -> int:
    return 1 + len(RETRY_INTERVALS)


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
    """The apply job's id: `apply-<event id>`, or a digest of an id RQ would refuse (RQ
    allows letters, digits, `_` and `-` only; Stripe's `evt_…` ids always pass)."""
    if _PLAIN_ID.fullmatch(event_id):
        return f"apply-{event_id}"
    # "applyx-": a plain id gives "apply-…", so the two forms can never collide.
    return "applyx-" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()


def enqueue_apply(
    queue: Queue, event_ids: Sequence[str], attempts_made: Mapping[str, int] | None = None
) -> None:
    """Enqueue one idempotent apply job per event, with the retries the event has left.

    `attempts_made` maps event ids to the attempts their inbox rows already count
    (none for a newly stored event). One round trip to Redis for all of them.
    """
    made = attempts_made or {}
    with queue.connection.pipeline() as pipe:
        for event_id in event_ids:
            retries = max_attempts() - 1 - made.get(event_id, 0)
            queue.enqueue(
                APPLY_JOB,
                event_id,
                job_id=job_id(event_id),
                retry=Retry(max=retries, interval=list(RETRY_INTERVALS[-retries:]))
                if retries > 0
                else None,
                failure_ttl=FAILURE_TTL_S,
                result_ttl=RESULT_TTL_S,
                description=f"apply {event_id}",
                pipeline=pipe,
            )
        pipe.execute()


class FastEnqueue:
    """Enqueue new events' apply jobs with one short script call per batch: the webhook's path.

    RQ's own `enqueue` spends most of its time in redis-py packing a ~50-argument
    MULTI/HSET/RPUSH transaction per job (about 0.5 ms of CPU per job, more than the
    rest of the webhook). Here RQ still builds the job (`Queue.create_job`, `Job.data`,
    `Job.to_dict`); the fields that are the same for every job are written into the
    script once, so a call sends only what varies. It stores exactly the hash and queue
    entry RQ's `enqueue` stores; a test compares the two field by field.
    """

    VARYING = ("data", "created_at", "enqueued_at", "description")

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self._lock = threading.Lock()
        self._job = queue.create_job(
            APPLY_JOB,
            args=["template"],
            job_id=job_id("template"),
            retry=Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS)),
            failure_ttl=FAILURE_TTL_S,
            result_ttl=RESULT_TTL_S,
            description="apply template",
        )
        # What enqueueing adds to a created job (RQ's Queue._prepare_for_queue).
        self._job.origin = queue.name
        self._job.enqueued_at = self._job.created_at
        if self._job.timeout is None:
            self._job.timeout = queue._default_timeout
        template = self._job.to_dict()
        template["status"] = JobStatus.QUEUED.value
        constant = {k: v for k, v in template.items() if k not in self.VARYING}
        pairs = ", ".join(f"{_lua(k)}, {_lua(v)}" for k, v in sorted(constant.items()))
        self.script = queue.connection.register_script(
            "redis.call('SADD', KEYS[1], ARGV[1])\n"
            "for n = 3, #KEYS do\n"
            "  local i = 2 + (n - 3) * 5\n"
            f"  redis.call('HSET', KEYS[n], {pairs}, 'data', ARGV[i + 1], "
            "'created_at', ARGV[i + 2], 'enqueued_at', ARGV[i + 3], 'description', ARGV[i + 4])\n"
            "  redis.call('RPUSH', KEYS[2], ARGV[i])\n"
            "end\n"
        )

    def __call__(self, event_ids: Sequence[str]) -> None:
        if not event_ids:
            return
        keys = [_QUEUES_KEY, self.queue.key]
        args: list[Any] = [self.queue.key]
        stamp = utcformat(now())
        with self._lock:
            for event_id in event_ids:
                self._job.args = [event_id]  # RQ serializes the call again
                keys.append(Job.key_for(job_id(event_id)))
                args += [job_id(event_id), zlib.compress(self._job.data), stamp, stamp]
                args.append(f"apply {event_id}")
        self.script(keys=keys, args=args)


_fast: dict[tuple[int, str, tuple[int, ...]], FastEnqueue] = {}


def enqueue_new(queue: Queue, event_ids: Sequence[str]) -> None:
    """Enqueue jobs for newly stored events (a full retry budget each), one round trip."""
    key = (id(queue.connection), queue.name, RETRY_INTERVALS)
    with _lock:
        fast = _fast.get(key)
        if fast is None:
            fast = _fast[key] = FastEnqueue(queue)
    fast(event_ids)


def _lua(value: object) -> str:
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def jobs_in_flight(queue: Queue, event_ids: Iterable[str], now: datetime) -> set[str]:
    """The events whose apply job will still run: queued, scheduled for a retry, or
    started less than a job timeout ago (a job older than that died with its worker)."""
    waiting, running = jobs_waiting_and_running(queue, event_ids, now)
    return waiting | running


def jobs_waiting_and_running(
    queue: Queue, event_ids: Iterable[str], now: datetime
) -> tuple[set[str], set[str]]:
    """`jobs_in_flight`, told apart: the events whose job is queued or scheduled, and
    those whose job has started (and is not yet presumed dead). One round trip."""
    ids = list(event_ids)
    jobs = Job.fetch_many(
        [job_id(e) for e in ids], connection=queue.connection, serializer=queue.serializer
    )
    horizon = now - timedelta(seconds=JOB_TIMEOUT_S + STARTED_GRACE_S)
    waiting, running = set(), set()
    for event_id, job in zip(ids, jobs, strict=True):
        if job is None:
            continue
        status = job.get_status(refresh=False)
        if status in _WAITING:
            waiting.add(event_id)
        elif status == JobStatus.STARTED:
            started = job.last_heartbeat or job.started_at
            if started is not None and _aware(started) > horizon:
                running.add(event_id)
    return waiting, running


#: Remove a job from its queue and delete it, but only while it is still merely queued.
_ABSORB = """
local removed = 0
for i, job_key in ipairs(KEYS) do
  if i > 1 and redis.call('HGET', job_key, 'status') == 'queued' then
    removed = removed + redis.call('LREM', KEYS[1], 1, ARGV[i - 1])
    redis.call('DEL', job_key)
  end
end
return removed
"""


def absorb(queue: Queue, event_ids: Sequence[str]) -> int:
    """Drop the still-queued jobs of events another job has just applied; returns how many.

    A batch applies other pending events beside its own; their jobs would only find
    them applied. Atomic per call (a Lua script): a job a worker already took is left
    alone and finds its event applied. Uses RQ's key layout (`Job.key_for`, `Queue.key`).
    """
    if not event_ids:
        return 0
    ids = [job_id(e) for e in event_ids]
    script = queue.connection.register_script(_ABSORB)
    return int(script(keys=[queue.key, *(Job.key_for(i) for i in ids)], args=ids))


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


def _aware(moment: datetime) -> datetime:
    from datetime import UTC

    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

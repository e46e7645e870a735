"""`/metrics`: Prometheus exposition, computed at scrape time from the inbox and Redis.

Web and worker processes are many and short-lived, so per-process counters would need
a shared directory; instead every figure is read from where the truth already is (the
inbox, the ledger, the queue), which also survives restarts.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from models.db import is_reachable
from models.queries import currency_totals
from models.tables import EventStatus, InboxEvent
from pipeline.queue import queue_stats
from service.extensions import Services

#: Apply-latency histogram buckets, seconds.
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class PipelineCollector(Collector):
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "mrr_events_received", "Distinct events stored", labels=["type"]
        )
        applied = CounterMetricFamily(
            "mrr_events_applied", "Events applied to the ledger", labels=["type"]
        )
        failed = CounterMetricFamily(
            "mrr_events_failed", "Events whose job failed for good", labels=["type"]
        )
        pending = GaugeMetricFamily("mrr_events_pending", "Stored events not yet applied")
        mrr = GaugeMetricFamily("mrr_mrr", "Current MRR in minor units", labels=["currency"])
        customers = GaugeMetricFamily(
            "mrr_customers", "Customers with MRR > 0", labels=["currency"]
        )
        database_up = GaugeMetricFamily("mrr_database_up", "1 when the database answers")
        up = is_reachable(self.svc.sessions)
        database_up.add_metric([], 1 if up else 0)
        if not up:  # the queue's figures still come, the inbox's cannot
            yield database_up
            yield from self._queue()
            return
        e = InboxEvent
        with self.svc.sessions() as session:
            by_type = session.execute(
                select(e.type, e.status, func.count()).group_by(e.type, e.status)
            ).all()
            waiting = 0
            for event_type, status, count in by_type:
                received.add_metric([event_type], count)
                if status == EventStatus.PROCESSED:
                    applied.add_metric([event_type], count)
                elif status == EventStatus.FAILED:
                    failed.add_metric([event_type], count)
                elif status == EventStatus.PENDING:
                    waiting += count
            pending.add_metric([], waiting)
            buckets = session.execute(
                select(
                    *(
                        func.sum(case((e.apply_ms <= b * 1000, 1), else_=0))
                        for b in LATENCY_BUCKETS
                    ),
                    func.count(),
                    func.coalesce(func.sum(e.apply_ms), 0),
                ).where(e.apply_ms.is_not(None))
            ).one()
            for total in currency_totals(session):
                mrr.add_metric([total.currency], total.mrr)
                customers.add_metric([total.currency], total.customers)
        *cumulative, count, sum_ms = buckets
        latency = HistogramMetricFamily(
            "mrr_apply_latency_seconds", "Receipt to ledger commit, per applied event"
        )
        latency.add_metric(
            [],
            [(str(b), int(c or 0)) for b, c in zip(LATENCY_BUCKETS, cumulative, strict=True)]
            + [("+Inf", int(count))],
            sum_value=int(sum_ms) / 1000,
        )
        yield from (database_up, received, applied, failed, pending, latency, mrr, customers)
        yield from self._queue()

    def _queue(self) -> Iterator[Metric]:
        stats = queue_stats(self.svc.queue)
        queue = GaugeMetricFamily("mrr_queue_depth", "Jobs waiting in the RQ queue")
        failed_jobs = GaugeMetricFamily("mrr_failed_jobs", "Jobs in RQ's failed registry")
        redis_up = GaugeMetricFamily("mrr_redis_up", "1 when Redis answers")
        redis_up.add_metric([], 1 if stats.get("reachable") else 0)
        if stats.get("reachable"):
            queue.add_metric([], int(stats["depth"]))
            failed_jobs.add_metric([], int(stats["failed_jobs"]))
        yield from (queue, failed_jobs, redis_up)


def render(svc: Services) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(svc))
    return generate_latest(registry)

"""`/metrics`: Prometheus exposition of `pipeline.status.figures`, read at scrape time.

Web and worker processes are many and short-lived, so per-process counters would need
a shared directory; instead every figure is read from where the truth already is (the
inbox, the ledger, the queue), which also survives restarts. The inbox counts are
`/status`'s own (SPEC §6): received = processed + failed + pending, per type.
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

from pipeline.runtime import Runtime
from pipeline.status import LATENCY_BUCKETS, Figures, figures


class PipelineCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        found = figures(self.runtime)
        database_up = GaugeMetricFamily("mrr_database_up", "1 when the database answers")
        database_up.add_metric([], 1 if found.database_up else 0)
        yield database_up
        if found.database_up:  # the queue's figures still come, the inbox's cannot
            yield from _inbox(found)
        yield from _queue(found)


def _inbox(found: Figures) -> Iterator[Metric]:
    received = CounterMetricFamily("mrr_events_received", "Distinct events stored", labels=["type"])
    processed = CounterMetricFamily(
        "mrr_events_processed",
        "Events applied to the ledger, or stored and ignored (types the ledger does not use)",
        labels=["type"],
    )
    failed = CounterMetricFamily(
        "mrr_events_failed", "Events that failed for good or were quarantined", labels=["type"]
    )
    pending = GaugeMetricFamily("mrr_events_pending", "Stored events not yet applied")
    for event_type, counts in found.by_type.items():
        received.add_metric([event_type], counts["received"])
        processed.add_metric([event_type], counts["processed"])
        failed.add_metric([event_type], counts["failed"])
    pending.add_metric([], sum(c["pending"] for c in found.by_type.values()))
    latency = HistogramMetricFamily(
        "mrr_apply_latency_seconds", "Receipt to ledger commit, per applied event"
    )
    latency.add_metric(
        [],
        [(str(b), c) for b, c in zip(LATENCY_BUCKETS, found.latency_cumulative, strict=True)]
        + [("+Inf", found.latency_count)],
        sum_value=found.latency_sum_ms / 1000,
    )
    mrr = GaugeMetricFamily("mrr_mrr", "Current MRR in minor units", labels=["currency"])
    customers = GaugeMetricFamily("mrr_customers", "Customers with MRR > 0", labels=["currency"])
    for total in found.totals:
        mrr.add_metric([total.currency], total.mrr)
        customers.add_metric([total.currency], total.customers)
    yield from (received, processed, failed, pending, latency, mrr, customers)


def _queue(found: Figures) -> Iterator[Metric]:
    stats = found.queue
    queue = GaugeMetricFamily("mrr_queue_depth", "Jobs waiting in the RQ queue")
    failed_jobs = GaugeMetricFamily("mrr_failed_jobs", "Jobs in RQ's failed registry")
    redis_up = GaugeMetricFamily("mrr_redis_up", "1 when Redis answers")
    redis_up.add_metric([], 1 if stats.get("reachable") else 0)
    if stats.get("reachable"):
        queue.add_metric([], int(stats["depth"]))
        failed_jobs.add_metric([], int(stats["failed_jobs"]))
    yield from (queue, failed_jobs, redis_up)


def render(runtime: Runtime) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(runtime))
    return generate_latest(registry)

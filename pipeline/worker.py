"""`mrr worker`: the RQ worker process, with the sweeper and the periodic reconcile.

The worker never forks (`adapters.rq_worker`): jobs run in this process on the runtime
installed here, so nothing pooled crosses a fork. The sweeper and, with
`RECONCILE_EVERY_S`, the periodic reconcile and, with `ALERT_WEBHOOK_URL`, the alert
sender run as threads beside the jobs, each in one
worker of the deployment at a time (their database leases).
"""

from __future__ import annotations

import importlib
import threading

from rq.serializers import JSONSerializer

from adapters.queue import APPLY_JOB
from adapters.rq_worker import MrrWorker
from pipeline.alerts import alerts_forever
from pipeline.reconcile import reconcile_forever
from pipeline.runtime import Runtime, install
from pipeline.sweep import sweep_forever


def serve(runtime: Runtime, *, burst: bool, with_scheduler: bool, sweep: bool) -> bool:
    """Run the worker until stopped (or, with `burst`, until the queue is empty)."""
    install(runtime)
    # Everything a job needs, imported once at start: a job never imports at run time.
    importlib.import_module(APPLY_JOB.rpartition(".")[0])
    stop = threading.Event()
    if sweep and not burst:
        threading.Thread(
            target=sweep_forever, args=(runtime, stop), daemon=True, name="sweeper"
        ).start()
    if runtime.settings.reconcile_every_s is not None and not burst:
        threading.Thread(
            target=reconcile_forever, args=(runtime, stop), daemon=True, name="reconciler"
        ).start()
    if runtime.settings.alert_webhook_url is not None and not burst:
        threading.Thread(
            target=alerts_forever, args=(runtime, stop), daemon=True, name="alerts"
        ).start()
    worker = MrrWorker(
        [runtime.queue], connection=runtime.queue.connection, serializer=JSONSerializer
    )
    try:
        return bool(
            worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="WARNING")
        )
    finally:
        stop.set()

"""RQ glue: the job entry point RQ calls by name. The worker process itself is
`pipeline.worker.serve` (started by `mrr worker`) on `adapters.rq_worker`."""

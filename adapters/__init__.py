"""Adapters: how the use cases reach the outside world, and nothing else.

RQ and its Redis scripts (`queue`), the worker runtime that never forks (`rq_worker`),
the embedded Redis server of `mrr run` and the tests (`embedded_redis`), stripe-python's
HTTP client with the retries backfill needs (`stripe_http`), and the loop that runs a
task in one process of the deployment under a database lease (`leader`). No business
rule lives here: `pipeline/` decides what to do, these modules only know how.
"""

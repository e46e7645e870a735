"""Pure domain: Stripe subscription payloads → snapshots → MRR → per-customer ledger.

Standard library only. Nothing here reads the clock, the environment, a database or
the network: every function takes what it needs as arguments.
"""

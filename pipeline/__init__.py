"""Use cases every entry point calls: store-and-enqueue an event, apply and rebuild
ledgers, sweep, report documents, enrichment through the Stripe API. Functions take
sessions, queues and settings as arguments; nothing here imports Flask or click.
"""

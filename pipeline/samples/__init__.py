"""Stripe events bundled with the service: four customers' lifecycles over three API
versions (legacy 2020-08-27, 2025-03-31.basil, 2025-09-30.clover), for `mrr replay`,
the quick start and the tests. Written by `tests/fixtures/build_fixtures.py`."""

from __future__ import annotations

from pathlib import Path

#: The folder of the bundled events (package data: it ships in the wheel).
EVENTS = Path(__file__).resolve().parent / "stripe"

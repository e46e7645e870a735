"""The webhook's enqueue after the answer: everything handed over goes out, batches that
arrive during a call go out together, and `flush` waits for it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pipeline.intake import BackgroundEnqueue


def test_everything_handed_over_is_enqueued_and_flush_waits_for_it() -> None:
    calls: list[list[str]] = []
    gate = threading.Event()

    def slow(ids: Sequence[str]) -> None:
        gate.wait(5)
        calls.append(list(ids))

    enqueue = BackgroundEnqueue(slow)
    enqueue(["evt_1"])
    enqueue(["evt_2", "evt_3"])  # while the first call may still be waiting
    assert not enqueue.flush(timeout=0.2)  # not done while the call hangs
    gate.set()
    assert enqueue.flush(timeout=5)
    assert sorted(i for call in calls for i in call) == ["evt_1", "evt_2", "evt_3"]
    assert len(calls) <= 2  # what arrived during a call went out in one more call


def test_a_failing_enqueue_does_not_stop_the_next_ones() -> None:
    seen: list[str] = []

    def flaky(ids: Sequence[str]) -> None:
        seen.extend(ids)
        if ids == ["evt_bad"]:
            raise RuntimeError("redis down")

    enqueue = BackgroundEnqueue(flaky)
    enqueue(["evt_bad"])
    assert enqueue.flush(timeout=5)
    enqueue(["evt_good"])
    assert enqueue.flush(timeout=5)
    assert seen == ["evt_bad", "evt_good"]

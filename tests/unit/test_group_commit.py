"""The group commit's hand-over of the writing, with threads and a writer we control."""

from __future__ import annotations

import threading
from typing import Any

from models.inbox import Stored
from pipeline.intake import GroupCommit, IntakeTimeout


class SlowWriter:
    """Stores instantly, except while `hold` is clear (it then blocks the batch)."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.hold.set()
        self.writing: list[str] = []  # the batch being written now
        self.batches: list[list[str]] = []

    def store(self, items: list[tuple[dict[str, Any], str]]) -> list[Stored]:
        self.writing = [e["id"] for e, _ in items]
        self.hold.wait(10)
        self.batches.append([e["id"] for e, _ in items])
        return [Stored(e["id"], False, False) for e, _ in items]  # nothing to enqueue


def group(writer: SlowWriter, wait_s: float) -> GroupCommit:
    """A group commit whose store is the writer we control and whose enqueue does nothing."""
    return GroupCommit(writer.store, lambda ids: None, wait_s=wait_s)


def test_a_request_that_gave_up_is_never_handed_the_writing() -> None:
    writer = SlowWriter()
    commit = group(writer, wait_s=0.2)
    writer.hold.clear()  # the first batch hangs
    results: dict[str, Any] = {}

    def submit(event_id: str) -> None:
        try:
            results[event_id] = commit.submit({"id": event_id}, "{}")
        except IntakeTimeout as exc:
            results[event_id] = exc

    first = threading.Thread(target=submit, args=("evt_1",))
    first.start()
    while not writer.writing:  # its batch is being written
        pass
    second = threading.Thread(target=submit, args=("evt_2",))
    second.start()
    second.join(5)
    assert isinstance(results["evt_2"], IntakeTimeout)  # gave up, not stored
    writer.hold.set()
    first.join(5)
    assert results["evt_1"].event_id == "evt_1"
    later = threading.Thread(target=submit, args=("evt_3",))
    later.start()
    later.join(5)
    assert results["evt_3"].event_id == "evt_3"  # someone still writes
    assert writer.batches == [["evt_1"], ["evt_3"]]


def test_concurrent_requests_share_batches_and_each_gets_its_own_result() -> None:
    writer = SlowWriter()
    commit = group(writer, wait_s=5)
    writer.hold.clear()
    results: dict[str, Any] = {}
    threads = [
        threading.Thread(
            target=lambda n=n: results.__setitem__(n, commit.submit({"id": f"evt_{n}"}, "{}"))
        )
        for n in range(20)
    ]
    for thread in threads:
        thread.start()
    while len(writer.writing) + len(commit._pending) < 20:
        pass
    first = list(writer.writing)
    writer.hold.set()
    for thread in threads:
        thread.join(5)
    assert {n: r.event_id for n, r in results.items()} == {n: f"evt_{n}" for n in range(20)}
    # The first batch holds whoever came in before its writer took it (its writer yields
    # once first); the second, everyone who came meanwhile.
    assert writer.batches[0] == first
    assert len(writer.batches) == (1 if len(first) == 20 else 2)
    stored = sorted(event_id for batch in writer.batches for event_id in batch)
    assert stored == sorted(f"evt_{n}" for n in range(20))

"""`mrr replay`: Stripe events from fixture files, through the same intake as webhooks.

A path may be a file holding one event, a JSON array of events, or JSON lines; a
directory is read recursively (`*.json`, `*.jsonl`, `*.ndjson`, in sorted order).
Events are stored in the inbox (insert-or-ignore by id) and enqueued, or applied
inline with `sync`. Posting them, signed, to a running server is the CLI's own
(`cli/replay.py`): that path goes through the server's webhook instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import intake
from pipeline.apply import apply_inline
from pipeline.errors import BadEvent, ReplayError
from pipeline.intake import parse_envelope
from pipeline.runtime import Runtime

SUFFIXES = (".json", ".jsonl", ".ndjson")


@dataclass(frozen=True)
class SourcedEvent:
    source: str  # file, or file:line
    event: dict[str, Any]
    raw: str


def discover(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise ReplayError(f"{p}: no such file or directory")
    return files


def read_events(paths: Iterable[str | Path]) -> Iterator[SourcedEvent]:
    for path in discover(paths):
        yield from _read_file(path)


def _read_file(path: Path) -> Iterator[SourcedEvent]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayError(f"{path}: cannot read: {exc}") from None
    stripped = text.strip()
    if not stripped:
        return
    try:
        whole = json.loads(stripped)
    except ValueError:
        whole = None
        lines = True
    else:
        lines = False
    if not lines and isinstance(whole, dict):
        yield SourcedEvent(str(path), _check(whole, str(path)), text)
        return
    if not lines and isinstance(whole, list):
        for n, event in enumerate(whole):
            where = f"{path}[{n}]"
            yield SourcedEvent(where, _check(event, where), json.dumps(event))
        return
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise ReplayError(f"{where}: not JSON: {exc}") from None
        yield SourcedEvent(where, _check(event, where), line)


def _check(event: Any, where: str) -> dict[str, Any]:
    try:
        return parse_envelope(json.dumps(event))
    except BadEvent as exc:
        raise ReplayError(f"{where}: {exc}") from None


@dataclass
class ReplayResult:
    """What `replay` did; `document()` is `mrr replay --json`."""

    events: int = 0
    stored: int = 0
    duplicates: int = 0
    #: Pending events handed to the queue (None with `sync`); False: Redis was down and
    #: the sweeper will enqueue them.
    enqueued: bool | None = None
    pending: int = 0
    applied: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    quarantined: dict[str, str] = field(default_factory=dict)

    def document(self) -> dict[str, int]:
        doc = {"events": self.events, "stored": self.stored, "duplicates": self.duplicates}
        if self.enqueued is None:
            doc.update(
                applied=self.applied, failed=len(self.failed), quarantined=len(self.quarantined)
            )
        else:
            doc["enqueued" if self.enqueued else "left_for_sweeper"] = self.pending
        return doc


def replay(
    runtime: Runtime,
    events: Sequence[SourcedEvent],
    *,
    sync: bool,
    stored_progress: Callable[[int], None] | None = None,
    applied_progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Store the events (insert-or-ignore by id), then enqueue the pending ones, or with
    `sync` apply them inline (no queue, no retries: what cannot be applied is marked
    failed or quarantined with its reason)."""
    result = ReplayResult(events=len(events))
    pending: list[str] = []
    for item in events:
        stored = intake.store(runtime, item.event, item.raw)
        if stored.inserted:
            result.stored += 1
        else:
            result.duplicates += 1
        if stored.pending:
            pending.append(stored.event_id)
        if stored_progress is not None:
            stored_progress(1)
    result.pending = len(pending)
    if not sync:
        result.enqueued = intake.enqueue(runtime, pending)
        return result
    done = apply_inline(runtime, pending, progress=applied_progress)
    result.applied, result.failed, result.quarantined = done.applied, done.failed, done.quarantined
    return result


#: Fields that hold a moment (unix seconds) in events and the objects they carry.
TIME_KEYS = frozenset(
    {
        "created",
        "start_date",
        "current_period_start",
        "current_period_end",
        "trial_start",
        "trial_end",
        "canceled_at",
        "cancel_at",
        "ended_at",
        "billing_cycle_anchor",
        "start",
        "end",
        "resumes_at",
        "period_start",
        "period_end",
    }
)
DAY_S = 86400


def shift_to_now(events: Sequence[SourcedEvent], now: int) -> list[SourcedEvent]:
    """The events moved in time by whole days so that the last of them falls on `now`'s
    UTC day (`mrr replay --shift-to-now`): the bundled demo, dated 2024, then shows in
    the dashboard's default range. Every moment of an event and of the objects it
    carries moves alike, so their order, periods and trials are kept; ids do not change,
    so the shifted events are still the same events."""
    stamps = [e.event["created"] for e in events if isinstance(e.event.get("created"), int)]
    if not stamps:
        return list(events)
    delta = (now // DAY_S - max(stamps) // DAY_S) * DAY_S
    moved = []
    for item in events:
        event = _shifted(item.event, delta)
        moved.append(SourcedEvent(item.source, event, json.dumps(event)))
    return moved


def _shifted(value: Any, delta: int, key: str | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _shifted(v, delta, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, delta, key) for v in value]
    if key in TIME_KEYS and type(value) is int and value > 0:
        return value + delta
    return value

"""Reading Stripe events from fixture files, and feeding them through the pipeline.

A path may be a file holding one event, a JSON array of events, or JSON lines; a
directory is read recursively (`*.json`, `*.jsonl`, `*.ndjson`, in sorted order).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import stripe

from pipeline.intake import BadEvent, parse_envelope

SUFFIXES = (".json", ".jsonl", ".ndjson")


class ReplayError(ValueError):
    """A fixture file is unreadable or holds something that is not a Stripe event."""


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


def post_signed(url: str, secret: str, raw: str, timeout: float = 10.0) -> int:
    """Sign `raw` as Stripe does and POST it to `url`; returns the HTTP status."""
    header = stripe.WebhookSignature.generate_signature_header(
        raw, secret, timestamp=int(time.time())
    )
    request = urllib.request.Request(
        url,
        data=raw.encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/json", "Stripe-Signature": header},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)

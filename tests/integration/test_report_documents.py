"""The `mrr report --json` documents of the fixture ledger, byte for byte.

The golden files under tests/fixtures/reports/ were written before the report code was
reorganised; any change to what a report prints shows up here. Rewrite them on purpose
only, with `python tests/integration/test_report_documents.py`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "fixtures" / "reports"
INVOCATIONS = {
    "summary_usd_2024-03-25": ["summary", "--currency", "usd", "--as-of", "2024-03-25"],
    "summary_2024-06-30": ["summary", "--currency", "eur", "--as-of", "2024-06-30"],
    "summary_eur_2024-12-31": ["summary", "--currency", "eur", "--as-of", "2024-12-31"],
    "movements_usd_month": [
        "movements",
        "--currency",
        "usd",
        "--start",
        "2023-12-01",
        "--end",
        "2024-08-01",
    ],
    "movements_eur_week": [
        "movements",
        "--currency",
        "eur",
        "--period",
        "week",
        "--start",
        "2024-02-01",
        "--end",
        "2024-04-15",
    ],
    "movements_usd_day": [
        "movements",
        "--currency",
        "usd",
        "--period",
        "day",
        "--start",
        "2024-02-25",
        "--end",
        "2024-03-10",
    ],
    "movements_jpy_month": [
        "movements",
        "--currency",
        "jpy",
        "--start",
        "2024-01-01",
        "--end",
        "2024-04-01",
    ],
    "cohorts_usd": ["cohorts", "--currency", "usd", "--start", "2024-01-01", "--end", "2024-08-01"],
    "cohorts_eur": ["cohorts", "--currency", "eur", "--start", "2024-01-01", "--end", "2024-08-01"],
}


def documents(env: dict[str, str]) -> dict[str, str]:
    from cli.main import cli
    from tests.conftest import FIXTURES

    runner = CliRunner(env=env)
    result = runner.invoke(cli, ["replay", "--sync", str(FIXTURES)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    found = {}
    for name, args in INVOCATIONS.items():
        result = runner.invoke(cli, ["report", *args, "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        found[name] = result.stdout
    return found


@pytest.mark.parametrize("name", sorted(INVOCATIONS))
def test_report_documents_are_byte_identical(name, settings, db, monkeypatch) -> None:
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": "redis://127.0.0.1:1/0"}
    docs = documents(env)
    assert docs[name] == (GOLDEN / f"{name}.json").read_text()


if __name__ == "__main__":  # rewrite the golden files from a scratch SQLite database
    import tempfile

    sys.path.insert(0, str(ROOT))
    from migrations import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/golden.db"
        upgrade(url)
        os.environ["DATABASE_URL"] = url
        for name, text in documents(
            {"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:1/0"}
        ).items():
            (GOLDEN / f"{name}.json").write_text(text)
            print(f"wrote {name}.json ({len(text)} bytes)")

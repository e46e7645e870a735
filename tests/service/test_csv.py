"""Every report as CSV (SPEC §4, §12): `format=csv` or `Accept: text/csv` over HTTP, and
`mrr report … --csv`, each parsed with the `csv` module and compared cell by cell with
the report's JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import cli
from tests.conftest import OPS_TOKEN
from tests.service.test_ops_reports import apply_fixtures

AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
REPORTS = [
    "/reports/summary?currency=usd&as_of=2024-06-30",
    "/reports/movements?period=month&start=2024-01-01&end=2024-07-01&currency=usd",
    "/reports/movements?period=week&start=2024-01-01&end=2024-03-01&currency=eur",
    "/reports/cohorts?start=2024-01-01&end=2024-07-01&currency=usd",
    "/reports/customers/cus_acme",
    "/reports/movements/detail?start=2024-01-01&end=2024-07-01&currency=usd&type=expansion",
    "/reports/movements/detail?start=2024-01-01&end=2024-07-01&currency=usd&type=churn",
    "/reports/activity?limit=500",
]


def expected_lines(doc: dict[str, Any]) -> list[dict[str, str]]:
    """The lines the CSV must hold, read from the JSON the plain way (SPEC §4's rule)."""

    def flat(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if isinstance(value, dict):
                out |= flat(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value
        return out

    def text(value: Any) -> str:
        if value is None:
            return ""
        if value is True or value is False:
            return json.dumps(value)
        if isinstance(value, list):
            return " ".join(
                json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else str(v)
                for v in value
            )
        return str(value)

    if "periods" in doc:
        rows = [flat(r) for r in doc["periods"]]
    elif "cohorts" in doc:
        rows = []
        for cohort in doc["cohorts"]:
            own = {k: v for k, v in cohort.items() if k != "months"}
            for month in cohort["months"]:
                rows.append(own | {(f"month.{k}" if k in own else k): v for k, v in month.items()})
    elif isinstance(doc.get("movements"), list):
        rows = [flat(m) for m in doc["movements"]]
    else:
        rows = [flat(doc)]
    return [{k: text(v) for k, v in row.items()} for row in rows]


def check(text: str, doc: dict[str, Any]) -> None:
    lines = list(csv.DictReader(io.StringIO(text, newline="")))
    expected = expected_lines(doc)
    assert len(lines) == len(expected) > 0
    for line, want in zip(lines, expected, strict=True):
        for key, value in want.items():
            assert line[key] == value, key
        assert set(line) >= set(want)
        assert all(line[k] == "" for k in set(line) - set(want))  # a key other rows have


@pytest.mark.parametrize("url", REPORTS)
def test_format_csv_is_the_json_cell_by_cell(url, db, settings, client) -> None:
    apply_fixtures(db, settings)
    doc = client.get(url, headers=AUTH).json
    response = client.get(url + ("&" if "?" in url else "?") + "format=csv", headers=AUTH)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    check(response.get_data(as_text=True), doc)


def test_accept_text_csv_asks_for_the_same(db, settings, client) -> None:
    apply_fixtures(db, settings)
    url = REPORTS[1]
    asked = client.get(url, headers={**AUTH, "Accept": "text/csv"})
    assert asked.mimetype == "text/csv"
    assert asked.get_data() == client.get(url + "&format=csv", headers=AUTH).get_data()
    assert client.get(url, headers={**AUTH, "Accept": "*/*"}).is_json


def test_an_unknown_format_is_a_400(client) -> None:
    response = client.get("/reports/summary?format=xml", headers=AUTH)
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_query"


@pytest.mark.parametrize(
    ("kind", "args"),
    [
        ("summary", ["--currency", "usd", "--as-of", "2024-06-30"]),
        ("movements", ["--currency", "usd", "--start", "2024-01-01", "--end", "2024-07-01"]),
        ("cohorts", ["--currency", "eur", "--start", "2024-01-01", "--end", "2024-07-01"]),
    ],
)
def test_mrr_report_csv_is_the_json_cell_by_cell(kind, args, db, settings, monkeypatch) -> None:
    apply_fixtures(db, settings)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    runner = CliRunner()
    doc = json.loads(runner.invoke(cli, ["report", kind, "--json", *args]).stdout)
    result = runner.invoke(cli, ["report", kind, "--csv", *args])
    assert result.exit_code == 0, result.output
    check(result.stdout, doc)


def test_mrr_activity_csv_and_table_are_the_json(db, settings, monkeypatch) -> None:
    apply_fixtures(db, settings)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    runner = CliRunner()
    doc = json.loads(runner.invoke(cli, ["activity", "--json", "--limit", "500"]).stdout)
    assert set(doc) == {"currency", "limit", "movements", "rates"} and len(doc["movements"]) > 5
    assert doc["currency"] == "usd" and doc["limit"] == 500
    result = runner.invoke(cli, ["activity", "--csv", "--limit", "500"])
    assert result.exit_code == 0, result.output
    check(result.stdout, doc)
    table = runner.invoke(cli, ["activity", "--limit", "3"])
    assert table.exit_code == 0, table.output
    for m in doc["movements"][:3]:
        assert m["customer_id"] in table.stdout and m["events"][0]["id"] in table.stdout
    bad = runner.invoke(cli, ["activity", "--limit", "501"])
    assert bad.exit_code != 0 and "limit" in bad.output

"""Terminal tables fit the terminal: columns packed into several tables, never a cut cell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from cli.render import print_report

REPORTS = Path(__file__).parents[1] / "fixtures" / "reports"


def rendered(name: str, width: int, wide: bool = False) -> str:
    kind = name.split("_", 1)[0]
    doc = json.loads((REPORTS / name).read_text())
    console = Console(width=width, force_terminal=True, record=True, color_system=None)
    print_report(kind, doc, console, wide=wide)
    return console.export_text()


@pytest.mark.parametrize("name", ["movements_usd_month.json", "cohorts_usd.json"])
@pytest.mark.parametrize("width", [80, 100])
def test_tables_fit_the_terminal_and_cut_nothing(name: str, width: int) -> None:
    text = rendered(name, width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text
    wide = rendered(name, 400, wide=True)
    # Every figure of the wide table is somewhere in the packed ones.
    for cell in (c.strip() for line in wide.splitlines() for c in line.split("│")):
        if cell and cell[0].isdigit():
            assert cell in text


def test_wide_is_one_table() -> None:
    text = rendered("movements_usd_month.json", 400, wide=True)
    assert text.count("MRR movements") == 1
    packed = rendered("movements_usd_month.json", 100)
    assert packed.count("MRR movements") >= 2 and "(1/" in packed

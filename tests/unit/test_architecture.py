"""The layers import only downward (ledger ← reporting ← models ← pipeline ← entry points),
and the three entry points (service, workers, cli) never import each other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def loaded_after(imports: list[str], forbidden: set[str]) -> list[str]:
    """Modules under the `forbidden` top-level packages loaded by importing `imports`."""
    code = (
        "import json, sys\n"
        + "".join(f"import {name}\n" for name in imports)
        + f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return list(json.loads(out.stdout))


def test_ledger_and_reporting_import_no_infrastructure() -> None:
    core = [
        "ledger.backfill",
        "ledger.events",
        "ledger.mrr",
        "ledger.snapshot",
        "ledger.timeline",
        "reporting.rows",
        "reporting.summary",
        "reporting.periods",
        "reporting.cohorts",
        "reporting.display",
        "reporting.currencies",
        "reporting.errors",
        "reporting.rates",
        "reporting.fx",
    ]
    infrastructure = {
        "flask",
        "sqlalchemy",
        "redis",
        "rq",
        "stripe",
        "requests",
        "models",
        "workers",
        "service",
        # The shipped rates are package data, read only when asked for.
        "currency_converter",
    }
    assert loaded_after(core, infrastructure) == []


def modules_of(package: str) -> list[str]:
    return sorted(
        f"{package}.{p.stem}" for p in (ROOT / package).glob("*.py") if p.stem != "__init__"
    )


def test_use_cases_import_no_entry_point() -> None:
    """pipeline/ takes sessions, queues and settings: never Flask, click or an entry point."""
    forbidden = {"flask", "click", "service", "workers", "cli"}
    assert loaded_after(modules_of("pipeline") + modules_of("models"), forbidden) == []


def test_the_entry_points_never_import_each_other() -> None:
    assert loaded_after(modules_of("workers"), {"flask", "service", "cli"}) == []
    assert loaded_after(modules_of("service"), {"workers", "cli"}) == []
    # `mrr worker` starts the worker runtime, lazily, inside its command; nothing else.
    assert loaded_after(modules_of("cli"), {"service", "workers"}) == []

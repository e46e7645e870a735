"""The layers import only downward (ledger ← reporting ← models ← pipeline ← entry points),
and the three entry points (service, workers, cli) never import each other."""

from __future__ import annotations

import ast
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
        "ledger.drift",
        "ledger.synthetic",
        "ledger.history",
        "ledger.invoices",
        "ledger.events",
        "ledger.mrr",
        "ledger.snapshot",
        "ledger.timeline",
        "reporting.rows",
        "reporting.summary",
        "reporting.periods",
        "reporting.cohorts",
        "reporting.display",
        "reporting.tabular",
        "reporting.currencies",
        "reporting.errors",
        "reporting.rates",
        "reporting.fx",
        "reporting.alerts",
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
    use_cases = modules_of("pipeline") + modules_of("models") + modules_of("adapters")
    assert loaded_after(use_cases, forbidden) == []


def test_the_entry_points_never_import_each_other() -> None:
    assert loaded_after(modules_of("workers"), {"flask", "service", "cli"}) == []
    assert loaded_after(modules_of("service"), {"workers", "cli"}) == []
    # `mrr worker` starts the worker through `pipeline.worker`, never through `workers/`.
    assert loaded_after(modules_of("cli"), {"service", "workers"}) == []


PRODUCTION = ("ledger", "reporting", "models", "adapters", "pipeline", "workers", "service", "cli")


def sources(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def imported_modules(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_adapters_know_nothing_of_the_use_cases_or_the_entry_points() -> None:
    forbidden = {"pipeline", "service", "workers", "cli", "flask", "click"}
    assert loaded_after(modules_of("adapters"), forbidden) == []


#: What only the composition root (`pipeline.runtime`) and the layers below may touch.
PERSISTENCE = (
    "sqlalchemy",
    "rq",
    "models.db",
    "models.queries",
    "models.inbox",
    "models.ledger_store",
    "models.tables",
    "models.leases",
    "models.runs",
    "adapters.queue",
)
#: Error types may be named to be translated (cli/errors.py), and a URL parsed for display.
ALLOWED = ("sqlalchemy.exc", "sqlalchemy.engine", "sqlalchemy.engine.make_url")
CONSTRUCTORS = {
    "make_queue",
    "create_engine",
    "make_engine",
    "engine_for",
    "session_factory",
    "sessionmaker",
    "redis_for",
    "Queue",
}


def test_the_web_and_the_cli_run_no_sql_and_build_no_queue_or_engine() -> None:
    """Views and commands call use cases; queries, engines and queues are below them."""
    offences = []
    for path in sources("service", "cli"):
        tree = ast.parse(path.read_text())
        for module in sorted(imported_modules(tree)):
            banned = any(module == p or module.startswith(p + ".") for p in PERSISTENCE)
            if banned and module not in ALLOWED and not module.startswith("sqlalchemy.exc"):
                offences.append(f"{path.relative_to(ROOT)} imports {module}")
        for node in ast.walk(tree):
            name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
            if isinstance(node, ast.Name | ast.Attribute) and name in CONSTRUCTORS:
                offences.append(f"{path.relative_to(ROOT)} uses {name}")
    assert offences == []


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            found.add(id(first.value))
    return found


def test_production_code_never_reads_the_tests() -> None:
    """No import of `tests`, and no path into it (the bundled samples are package data)."""
    offences = []
    for path in sources(*PRODUCTION):
        tree = ast.parse(path.read_text())
        if any(m == "tests" or m.startswith("tests.") for m in imported_modules(tree)):
            offences.append(f"{path.relative_to(ROOT)} imports tests")
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docs
                and (node.value == "tests" or node.value.startswith("tests/"))
            ):
                offences.append(f"{path.relative_to(ROOT)}:{node.lineno} names {node.value!r}")
    assert offences == []


def test_one_composition_root_builds_queues_engines_and_stripe_clients() -> None:
    """Outside `models/`, `adapters/` (which define them) and `pipeline/runtime.py`, nothing
    calls a constructor of the shared collaborators."""
    offences = []
    for path in sources("pipeline", "workers", "service", "cli"):
        if path == ROOT / "pipeline" / "runtime.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name in CONSTRUCTORS | {"stripe_client", "StripeClient"}:
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {name}")
    assert offences == []

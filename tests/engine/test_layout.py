"""The engine holds library code only: test oracles and bench books stay out of production."""

from __future__ import annotations

import ast
from pathlib import Path

import margin

MARGIN = Path(margin.__file__).parent
ENGINE = MARGIN / "engine"
REFERENCE = ENGINE / "reference"
BENCH = MARGIN / "bench"


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative ones resolved against its package)."""
    package = ".".join(path.relative_to(MARGIN.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _production_files() -> list[Path]:
    return [p for p in MARGIN.rglob("*.py")
            if REFERENCE not in p.parents and BENCH not in p.parents]


def test_production_code_never_imports_the_test_oracles() -> None:
    offenders = {str(p.relative_to(MARGIN)): sorted(m for m in _imports(p)
                                                    if m.startswith("margin.engine.reference"))
                 for p in _production_files()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_production_code_never_imports_the_bench_book() -> None:
    offenders = {str(p.relative_to(MARGIN)): sorted(m for m in _imports(p)
                                                    if m.startswith("margin.bench"))
                 for p in _production_files()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_engine_imports_nothing_of_django_or_the_project() -> None:
    outside = ("django", "rest_framework", "celery", "brokerage", "accounts", "eligibility",
               "web", "demo")
    offenders = {}
    for path in ENGINE.rglob("*.py"):
        bad = sorted(m for m in _imports(path)
                     if m.split(".")[0] in outside
                     or (m.startswith("margin.") and not m.startswith("margin.engine")))
        if bad:
            offenders[str(path.relative_to(MARGIN))] = bad
    assert offenders == {}


def test_the_import_walk_sees_relative_imports() -> None:
    """The walk itself: a relative import of the oracles would be caught."""
    assert "margin.engine.pricing" in _imports(REFERENCE / "binomial.py")
    assert "margin.engine.parameters.ParameterSet" in _imports(ENGINE / "scenarios.py")

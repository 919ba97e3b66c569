"""The layout's rules (DESIGN.md), read from the source: dependencies point one way.

`brokerage <- accounts <- margin <- eligibility <- web, demo`: a module imports only its own app
and the apps below it. Only the project-level modules of `brokerage` (root urls, celery app,
wsgi/asgi) see every app; settings import no app; web and demo never import each other;
`margin/engine` imports nothing of Django or of the project.

Every import counts, wherever it is written: top level, inside a function (the usual way round a
cycle), relative, and the string forms (`import_module("x")`, `apps.get_model("app", ...)`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RANK = {"brokerage": 0, "accounts": 1, "margin": 2, "eligibility": 3, "web": 4, "demo": 4,
        "operations": 4}
# The project (as opposed to the core app) wires every app together.
PROJECT_MODULES = {"brokerage.urls", "brokerage.celery", "brokerage.wsgi", "brokerage.asgi"}
SETTINGS = "brokerage.settings"
ENGINE = "margin.engine"
# What "Django" means for the engine: the framework and the libraries built on it.
DJANGO = {"django", "rest_framework", "drf_spectacular", "django_filters", "guardian", "celery"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted and absolute
    line: int

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name> import ...` written in `module`."""
    if level == 0:
        return name or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[:len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _string_import(node: ast.Call) -> str | None:
    """`import_module("x")`, `__import__("x")`, `apps.get_model("app", ...)` or
    `apps.get_model("app.Model")` with a literal: an import by another name."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if called not in ("import_module", "__import__", "get_model") or not node.args:
        return None
    first = node.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return None
    return first.value.split(".")[0] if called == "get_model" else first.value


def imports_in(source: str, module: str, is_package: bool = False) -> Iterator[Import]:
    """Every import of a module's source, at any depth (ast.walk visits function bodies)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            # `from margin import services` imports margin.services: name each alias.
            for alias in node.names:
                yield Import(module, f"{base}.{alias.name}" if alias.name != "*" else base,
                             node.lineno)
        elif isinstance(node, ast.Call) and (target := _string_import(node)):
            yield Import(module, target, node.lineno)


def project_sources() -> Iterator[tuple[str, Path]]:
    for package in RANK:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield module_name(path), path


def all_imports() -> list[Import]:
    found: list[Import] = []
    for module, path in project_sources():
        found += imports_in(path.read_text(), module, is_package=path.name == "__init__.py")
    return found


def _app(dotted: str) -> str:
    return dotted.split(".")[0]


def _in(dotted: str, package: str) -> bool:
    return dotted == package or dotted.startswith(package + ".")


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


def test_dependencies_point_one_way(imports: list[Import]) -> None:
    upward = [str(i) for i in imports
              if i.module not in PROJECT_MODULES and _app(i.target) in RANK
              and RANK[_app(i.target)] > RANK[_app(i.module)]]
    assert upward == [], "upward imports (move the code, or let the lower app send a signal)"


def test_web_and_demo_never_import_each_other(imports: list[Import]) -> None:
    across = [str(i) for i in imports
              if {_app(i.module), _app(i.target)} == {"web", "demo"}]
    assert across == []


def test_settings_import_no_app(imports: list[Import]) -> None:
    # Not even the core app: the beat schedule names its tasks by their registered names.
    from_settings = [str(i) for i in imports if i.module == SETTINGS and _app(i.target) in RANK]
    assert from_settings == []


def test_the_engine_imports_nothing_of_django_or_the_project(imports: list[Import]) -> None:
    outside = [str(i) for i in imports if _in(i.module, ENGINE) and not _in(i.target, ENGINE)
               and (_app(i.target) in RANK or _app(i.target) in DJANGO)]
    assert outside == []


def test_the_walk_sees_every_kind_of_import() -> None:
    """The rules are only as good as the walk: function-level, relative and string imports."""
    source = '''
from . import receivers
from ..engine import pricing
import numpy as np

def later():
    from eligibility.services import approve_application
    import web.views

class Hidden:
    def method(self):
        return apps.get_model("demo", "Thing"), import_module("web.urls")
'''
    found = {(i.target, i.line) for i in imports_in(source, "margin.book.inner", True)}
    assert found == {("margin.book.inner.receivers", 2), ("margin.book.engine.pricing", 3),
                     ("numpy", 4), ("eligibility.services.approve_application", 7),
                     ("web.views", 8), ("demo", 12), ("web.urls", 12)}
    engine = {i.target for i in imports_in("from ..errors import E\n",
                                           "margin.engine.defi.oracles")}
    assert engine == {"margin.engine.errors.E"}


def test_the_walk_reads_the_whole_tree(imports: list[Import]) -> None:
    modules = {module for module, _ in project_sources()}
    assert {"brokerage.settings", "margin.engine.pricing", "web.views", "demo.seed"} <= modules
    # A known downward edge of each kind is seen: top-level, function-level, relative.
    seen = {(_app(i.module), _app(i.target)) for i in imports}
    assert {("web", "margin"), ("demo", "margin"), ("eligibility", "margin"),
            ("margin", "accounts")} <= seen


def test_the_beat_schedule_names_registered_tasks(settings) -> None:
    from brokerage.celery import app

    app.loader.import_default_modules()
    named = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert named and named <= set(app.tasks), named - set(app.tasks)
    assert app.conf.beat_schedule == settings.CELERY_BEAT_SCHEDULE


def test_every_app_is_installed_and_packaged(settings) -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packaged = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert [app for app in RANK if f"{app}*" not in packaged] == []
    assert [app for app in RANK if app not in settings.INSTALLED_APPS] == []

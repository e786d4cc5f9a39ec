"""The test suite's own structure: test modules share code through tests/helpers.py (and
tests/clitools.py), never by importing each other or conftest.py, so that a test module can be
moved, renamed or run alone without dragging others along."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function-level imports too), absolute names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from .test_api import y
                base = ".".join(["tests", *filter(None, [base])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def forbidden(module: str) -> bool:
    """tests.test_x, tests.conftest* (and names below them), or test_x / conftest as top-level modules."""
    parts = module.split(".")
    under = parts[1] if parts[0] == "tests" and len(parts) > 1 else parts[0]
    return under.startswith(("test_", "conftest"))


def test_no_test_module_imports_another_test_module_or_conftest():
    modules = sorted(TESTS.glob("test_*.py"))
    assert len(modules) > 20
    offences = {
        path.name: sorted(m for m in imported_modules(path) if forbidden(m))
        for path in modules
    }
    assert {name: found for name, found in offences.items() if found} == {}


def test_the_check_sees_the_imports_it_forbids(tmp_path):
    bad = tmp_path / "test_bad.py"
    bad.write_text(
        "from tests.test_api import post\n"
        "import tests.conftest\n"
        "from tests import test_store\n"
        "from .conftest_store import PG_URL\n"
        "def f():\n    from tests.test_attacks import listed\n"
        "from tests.helpers import XML\n",
        encoding="utf-8",
    )
    found = sorted(m for m in imported_modules(bad) if forbidden(m))
    assert found == [
        "tests.conftest",
        "tests.conftest_store",
        "tests.conftest_store.PG_URL",
        "tests.test_api",
        "tests.test_api.post",
        "tests.test_attacks",
        "tests.test_attacks.listed",
        "tests.test_store",
    ]

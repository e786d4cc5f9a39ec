"""The import layering of the packages below the server: no import (at module level, inside a
function, or for type checking) forms a cycle among them, module by module or package by
package, and none of them imports the store, the API, the jobs, the server or the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import interchange

ROOT = Path(interchange.__file__).parent
LOWER = ("rules", "records", "trust", "forms", "intake", "notices", "months", "xmlparse", "legal")
UPPER = ("store", "api", "jobs", "server", "cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every interchange module `name` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def _top(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def _lower(module: str) -> bool:
    return module.count(".") >= 1 and _top(module) in LOWER


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items() if _lower(name)}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph`, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_cycle_below_the_server():
    graph = {m: {n for n in deps if _lower(n)} for m, deps in _graph().items()}
    assert _cycle(graph) is None


def test_no_package_cycle_below_the_server():
    packages: dict[str, set[str]] = {}
    for module, deps in _graph().items():
        packages.setdefault(_top(module), set()).update(_top(n) for n in deps if _lower(n) and _top(n) != _top(module))
    assert _cycle(packages) is None


def test_nothing_below_the_server_imports_it():
    upward = {(m, n) for m, deps in _graph().items() for n in deps if _top(n) in UPPER}
    assert upward == set()


def test_the_checker_sees_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    known = _modules()
    assert "interchange.rules.catalogue" in _imports("interchange.rules.d02", known["interchange.rules.d02"], known)

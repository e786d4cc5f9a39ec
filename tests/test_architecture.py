"""The shape of the code, checked rather than remembered (docs/architecture.md).

- The import contract in pyproject.toml (`[tool.importlinter]`: the layers of interchange/ and no
  import cycle at any depth) holds, and it really fails when an upward import is added.
- No module uses another module's private names, and no test does.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import interchange

SRC = Path(interchange.__file__).parent
ROOT = SRC.parent
CONTRACT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]


def _lint(workdir: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the `interchange` package found first on the path from `workdir`."""
    env = {**os.environ, "PYTHONPATH": str(workdir)}
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(no_cache=True, no_logo=True))"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _copy(tmp_path: Path) -> Path:
    """The package and its import contract in a folder of their own."""
    shutil.copytree(SRC, tmp_path / "interchange", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_import_contract_holds():
    run = _lint(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout
    layers = next(c for c in CONTRACT["contracts"] if c["type"] == "layers")
    assert layers.get("exhaustive") is True  # a new package must be given its place


def test_an_upward_import_breaks_the_contract(tmp_path):
    work = _copy(tmp_path)
    db = work / "interchange" / "store" / "db.py"
    db.write_text(db.read_text(encoding="utf-8") + "\n\ndef _upward():\n    import interchange.api.http  # noqa\n",
                  encoding="utf-8")  # fmt: skip
    run = _lint(work)
    assert run.returncode != 0
    assert "interchange.store.db -> interchange.api.http" in run.stdout, run.stdout


def test_a_cycle_inside_a_package_breaks_the_contract(tmp_path):
    work = _copy(tmp_path)
    rows = work / "interchange" / "store" / "types.py"  # rows.py imports types.py: now back again
    rows.write_text(rows.read_text(encoding="utf-8") + "\n\nimport interchange.store.rows  # noqa\n",
                    encoding="utf-8")  # fmt: skip
    run = _lint(work)
    assert run.returncode != 0
    assert "no import cycle" in run.stdout and "BROKEN" in run.stdout, run.stdout


# ---- private names ----------------------------------------------------------------------------


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _modules(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path, ast.parse(path.read_text(encoding="utf-8"))


def _imported_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names bound by imports: (of this project, of other packages such as lxml's `etree`)."""
    ours, theirs = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                (ours if a.name.startswith(("interchange", "tests")) else theirs).add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            own = (node.module or "").startswith(("interchange", "tests"))
            (ours if own else theirs).update(a.asname or a.name for a in node.names)
    return ours, theirs


def _private_uses(path: Path, tree: ast.Module, *, any_object: bool) -> list[str]:
    """Private names taken from another module: imported, read off an imported module or class
    (or, with `any_object`, off any object of ours: anything but self, cls and other packages'
    modules), or patched by name."""
    where = path.relative_to(ROOT).as_posix()
    found = []
    ours, theirs = _imported_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("interchange"):
            found += [f"{where}:{node.lineno}: imports {a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner in ("self", "cls") or owner in theirs:
                continue
            if owner in ours or any_object:
                found.append(f"{where}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "setattr" and len(node.args) > 1:
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str) and _private(name.value):
                found.append(f"{where}:{node.lineno}: patches {name.value}")
    return found


def test_no_module_uses_another_modules_private_names():
    found = [f for path, tree in _modules(SRC) for f in _private_uses(path, tree, any_object=False)]
    assert not found, "\n".join(found)


def test_no_test_uses_private_names():
    found = []
    for folder in (ROOT / "tests", ROOT / "bench"):
        found += [f for path, tree in _modules(folder) for f in _private_uses(path, tree, any_object=True)]
    assert not found, "\n".join(found)

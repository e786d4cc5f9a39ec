"""Running `interchange ...` in-process from tests (tests/test_cli.py, tests/test_rules_cli.py)."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

from interchange.cli import main


def run(argv: list[str]) -> tuple[int, str]:
    """`interchange ...` in-process: (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@contextlib.contextmanager
def no_interchange_env():
    """No INTERCHANGE_* variable of the machine running the tests reaches the commands run inside
    (for module-scoped fixtures, which cannot use the function-scoped `clean_environ`)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("INTERCHANGE_"):
                mp.delenv(name)
        yield


def dev_setup(config: Path) -> str:
    """`interchange --config CONFIG dev-setup`, which must succeed; its output."""
    code, out = run(["--config", str(config), "dev-setup"])
    assert code == 0, out
    return out

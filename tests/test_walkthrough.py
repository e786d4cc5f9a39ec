"""The README walkthrough, line by line, against a real `interchange serve` (issue #11: the
commands a new user is shown must work), and the README's links point to files a clone has."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interchange.config import REPO_ROOT
from tests.serverproc import ServerProc, make_site

README = REPO_ROOT / "README.md"
NUMBER = re.compile(r"\d{5}/\d{4}/[A-Z0-9]+")


def walkthrough() -> list[str]:
    """The shell lines between <!-- walkthrough --> and <!-- /walkthrough --> in README.md."""
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- walkthrough -->", 1)[1].split("<!-- /walkthrough -->", 1)[0]
    lines = [ln.strip() for ln in block.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("```")]


def test_the_readme_walkthrough_runs_against_a_real_server(tmp_path):
    site = make_site(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'data' / 'interchange.db'}")
    server = ServerProc(site, tmp_path / "server.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERCHANGE_")}
    env.update(PYTHONPATH=str(REPO_ROOT), INTERCHANGE_CONFIG=str(site.config),
               XDG_CONFIG_HOME=str(tmp_path / "xdg"))  # fmt: skip
    placeholders = {"ik_...": site.submitter, "http://127.0.0.1:8080": f"http://127.0.0.1:{site.port}"}
    number = None
    outputs: list[str] = []
    try:
        server.wait_ready()
        for line in walkthrough():
            words = shlex.split(line, comments=True)
            if words[0] == "export":
                name, value = words[1].split("=", 1)
                env[name] = placeholders.get(value, value)
                continue
            assert words[0] == ".venv/bin/interchange", line
            if number is not None:  # the number this server gave, in place of the README's example
                words = [NUMBER.sub(number, w) for w in words]
            out = run_until(words, env, site.root, line)
            outputs.append(out)
            if number is None and (found := NUMBER.search(out)):
                number = found.group(0)
    finally:
        server.stop()
    text = "\n".join(outputs)
    assert number is not None and "HTTP 202: TIEP_NHAN" in text
    assert "HTTP 200: REPLAY of an earlier receipt" in text
    assert "ket-qua.xml" in text or (site.root / "ket-qua.xml").is_file()
    assert (site.root / "dossier.signed.xml").is_file() and (site.root / "evidence.zip").is_file()
    assert "OK: the evidence verifies" in text and "OK: every signature is valid" in text


def run_until(words: list[str], env: dict[str, str], cwd: Path, line: str, wait: float = 30.0) -> str:
    """Run one README command (retrying while the result is not judged yet); its output."""
    argv = [sys.executable, "-m", "interchange", *words[1:]]
    deadline = time.monotonic() + wait
    while True:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
        if done.returncode == 0:
            assert "Traceback" not in done.stderr, done.stderr
            return done.stdout + done.stderr
        if "no such notice" not in done.stderr or time.monotonic() > deadline:
            pytest.fail(f"{line}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}")
        time.sleep(0.3)


LINK = re.compile(r"\]\(([^)#\s]+)\)")
PATHS = re.compile(r"`((?:docs|bench|tests|interchange|xsd|certs)/[\w./-]+|[\w-]+\.md|\.ci/run|config\.toml)`")


def test_the_readme_points_only_to_files_a_clone_has():
    text = README.read_text(encoding="utf-8")
    named = {m for m in LINK.findall(text) if "://" not in m} | set(PATHS.findall(text))
    assert "docs/integration.md" in named and named
    missing = sorted(p for p in named if not (REPO_ROOT / p).exists() and not (REPO_ROOT / "interchange" / p).exists())
    assert missing == [], f"README.md names files that are not in the repository: {missing}"
    assert "../shared" not in text

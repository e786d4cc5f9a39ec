"""schemathesis against a real `interchange serve` (real HTTP, tests/serverproc.py): every
operation of /api/openapi.json, every phase (examples, coverage, fuzzing, stateful) and every
default check, with a bounded number of examples so that it stays quick. The exceptions, each a
refusal that JSON Schema cannot express, are in tests/data/schemathesis.toml with their reasons.

It runs once with an admin key (which reaches the e-HI card routes) and once with a unit's
submitter key (which reaches the callback routes); both must end with no failure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from interchange.store import Store
from tests.helpers import on_private_loop
from tests.serverproc import ServerProc, make_site

CONFIG = Path(__file__).parent / "data" / "schemathesis.toml"
EXAMPLES = 3  # per operation and phase
SEED = 20261202  # fixed: a failure is reproducible with the same command


def st_command() -> str:
    found = Path(sys.executable).with_name("st")
    if found.exists():
        return str(found)
    path = shutil.which("st")
    assert path, "schemathesis (the [test] extra) is not installed: pip install -e '.[test]'"
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("schemathesis")
    store_url = f"sqlite+aiosqlite:///{root}/data/interchange.db"
    site = make_site(root, store_url)

    async def admin_key() -> str:
        store = await Store.open(store_url)
        try:
            return (await store.keys.create("admin", label="schemathesis"))[1]
        finally:
            await store.close()

    admin = on_private_loop(admin_key())
    # the fuzzer's callback URLs name made-up hosts: literal private addresses are not its concern here
    server = ServerProc(site, root / "server.log", DELIVERY_ALLOW_PRIVATE_URLS="true")
    try:
        server.wait_ready()
        yield site, server, {"admin": admin, "submitter": site.submitter}
    finally:
        server.stop()


@pytest.mark.parametrize("role", ["admin", "submitter"])
def test_the_running_server_keeps_its_api_document(served, role, tmp_path):
    site, server, keys = served
    url = f"http://127.0.0.1:{site.port}/api/openapi.json"
    run = subprocess.run(
        [st_command(), "--config-file", str(CONFIG), "--no-color", "run", url, "-H", f"Authorization: Bearer {keys[role]}",
         "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--workers", "1", "--request-timeout", "30"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,  # its cache (.schemathesis/) goes there
    )  # fmt: skip
    out = run.stdout + run.stderr
    cases = re.search(r"(\d+) generated, (.*)", out)
    print(f"schemathesis ({role} key): {cases.group(0) if cases else 'no summary'}")
    assert run.returncode == 0, out[-20000:]
    assert cases and int(cases.group(1)) > 100, out[-3000:]  # it did reach the operations
    log = server.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log and "does not match its model" not in log, log[-5000:]

"""A real `interchange serve` in a subprocess, for tests that crash it (tests/test_kill.py).

Not a test module: a small harness of its own (a site in a temp folder made with `dev-setup`,
the server started as `python -m interchange --config CONFIG serve` on a free loopback port in
its own process group, SIGKILL and restart on the same database, plain HTTP calls that report
a lost answer instead of raising).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from interchange.cli import main as cli_main
from interchange.config import REPO_ROOT
from interchange.devkit import pki
from interchange.store import Store
from interchange.trust.xmldsig import DocumentSigner
from tests.helpers import on_private_loop

DEMO_MST = "0101234565"  # dev-setup's demo unit
TOKEN = re.compile(r"ik_[0-9a-f]+_[A-Za-z0-9_-]+")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw(host: tuple[str, int], data: bytes, *, wait: float = 5.0) -> bytes:
    """Send `data` on a fresh connection and read what comes back until closed or `wait`."""
    with socket.create_connection(host, timeout=wait) as s:
        s.sendall(data)
        got = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                got += chunk
        return got


@dataclass
class Answer:
    """One HTTP exchange: the status, body and headers, or `error` when no answer came back
    (connection refused, reset, closed before the response: the answer was lost)."""

    status: int | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def lost(self) -> bool:
        return self.error is not None


@dataclass
class Site:
    """A server's folder: config.toml, the dev PKI made by `dev-setup`, its database URL and keys."""

    root: Path
    config: Path
    port: int
    store_url: str
    submitter: str  # dev-setup's demo key (submitter for DEMO_MST)
    auditor: str

    @property
    def p12(self) -> Path:
        return self.root / "data" / "demo" / f"unit-{DEMO_MST}.p12"

    def signer(self) -> DocumentSigner:
        issued = pki.load_p12(self.p12, b"demo")
        return DocumentSigner(issued.key, [issued.cert, *issued.chain])


def make_site(root: Path, store_url: str, *, lease_seconds: int = 15) -> Site:
    """Write a config for a server on a free port with `store_url`, run `dev-setup` there
    (dev CA, notice key, demo unit p12 and key) and create an auditor key.

    Rate limits are off (the load here is about crashes, not about throttling); the work queue
    is polled twice a second, with the default lease (15 s, renewed every 5 s while work runs)
    unless `lease_seconds` is given."""
    port = free_port()
    config = root / "config.toml"
    config.write_text(
        'data_dir = "data"\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nworkers = 1\noffice_code = "TEST"\n'
        f'[store]\nurl = "{store_url}"\n'
        '[trust]\nanchors_dir = "trusted"\ncrl_dir = "crl"\n'
        "[limits]\nrate_per_second = 0\n"
        f"[jobs]\ninterval_seconds = 0.5\nlease_seconds = {lease_seconds}\nheartbeat_seconds = {min(5.0, lease_seconds / 2)}\n"
        '[delivery]\nemail_sender = "off"\n'
        '[targets]\n"600" = "5 working days"\n',
        encoding="utf-8",
    )
    out = io.StringIO()
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("INTERCHANGE_")}
    try:
        with contextlib.redirect_stdout(out):
            code = cli_main(["--config", str(config), "dev-setup"])
    finally:
        os.environ.update(saved)
    assert code == 0, out.getvalue()
    tokens = TOKEN.findall(out.getvalue())
    assert len(tokens) == 1, out.getvalue()

    async def auditor_key() -> str:
        store = await Store.open(store_url)
        try:
            return (await store.keys.create("auditor", label="kill test"))[1]
        finally:
            await store.close()

    return Site(root, config, port, store_url, tokens[0], on_private_loop(auditor_key()))


class ServerProc:
    """`python -m interchange --config CONFIG serve`, in a process group of its own (its worker
    processes included), running this checkout's code (PYTHONPATH = the repository root)."""

    def __init__(self, site: Site, log: Path, *serve_args: str, **overrides: str):
        """`serve_args`: after `serve`, e.g. "--processes", "3"; `overrides`: config keys for this
        run, e.g. JOBS_INTERVAL_SECONDS="0" (given to the server as INTERCHANGE_<KEY>)."""
        self.site = site
        self.base_host = ("127.0.0.1", site.port)
        self.log = log
        self.killed_at: float | None = None  # time.monotonic() of the SIGKILL
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTERCHANGE_")}
        env.update({f"INTERCHANGE_{k.upper()}": v for k, v in overrides.items()})
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "interchange", "--config", str(site.config), "serve", *serve_args],
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=site.root, start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            answer = self.request("GET", "/readyz", timeout=1)
            if answer.status == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the server process alone, as a crash would; then reap its worker processes."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.killed_at = time.monotonic()
        self.proc.wait(10)
        self._kill_group()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (a clean shutdown); SIGKILL whatever is left."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        self._kill_group()

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def request(
        self, method: str, path: str, *, body: bytes | None = None, token: str | None = None,
        headers: dict[str, str] | None = None, timeout: float = 30.0,
    ) -> Answer:  # fmt: skip
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if body is not None:
            sent.setdefault("Content-Type", "application/xml")
        conn = http.client.HTTPConnection(*self.base_host, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            return Answer(resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
        except (OSError, http.client.HTTPException) as exc:
            return Answer(error=f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def get(self, path: str, token: str) -> Answer:
        return self.request("GET", path, token=token)


def all_dossiers(server: ServerProc, site: Site) -> list[dict]:
    """Every stored dossier, as the auditor lists them (page by page)."""
    items, cursor = [], None
    while True:
        path = "/api/v1/dossiers?limit=500" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        answer = server.get(path, site.auditor)
        assert answer.status == 200, answer
        page = json.loads(answer.body)
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items

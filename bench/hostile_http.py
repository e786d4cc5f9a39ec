"""Time to answer (or cut off) each hostile HTTP shape, against a real server subprocess, and the
cost of a worker past its CPU budget. Prints figures; asserts nothing about time.

    PYTHONPATH=. .venv/bin/python bench/hostile_http.py [--keepalive 15] [--body-seconds 30]

The server is the one of tests/serverproc.py (a dev-setup site in a temp folder, SQLite), with
max_body_bytes = 1 MiB (so that a gzip bomb meets the limit) and the given timeouts. Run it on
an older checkout to get the "before" figures: a shape that is not cut off is reported as
"not closed after N s".
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gzip
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from interchange.devkit import samples  # noqa: E402
from interchange.trust.dossier_signing import sign_envelope  # noqa: E402
from tests.serverproc import ServerProc, make_site, raw  # noqa: E402

LIMIT = 1024 * 1024


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result




def drip(host, head: bytes, then: bytes, every: float, limit: float) -> str:
    started = time.monotonic()
    with socket.create_connection(host, timeout=limit) as s:
        s.sendall(head)
        try:
            for byte in then:
                time.sleep(every)
                s.sendall(bytes([byte]))
                if time.monotonic() - started > limit:
                    return f"not closed after {limit:.0f} s"
            s.recv(1000)
        except OSError:
            pass
    return f"closed after {time.monotonic() - started:.1f} s"


def status_of(answer) -> str:
    return f"{answer.status}" if answer.status else f"lost ({answer.error})"


def http_figures(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        site = make_site(root, f"sqlite+aiosqlite:///{root / 'b.db'}")
        server = ServerProc(site, root / "server.log", SERVER_KEEPALIVE_SECONDS=str(args.keepalive),
                            SERVER_BODY_SECONDS=str(args.body_seconds), LIMITS_MAX_BODY_BYTES=str(LIMIT),
                            JOBS_INTERVAL_SECONDS="0")  # fmt: skip
        try:
            server.wait_ready()
            signed = sign_envelope(samples.dossier_600(rows=2, seed=4242), site.signer())
            xml = {"Content-Type": "application/xml"}

            bomb = gzip.compress(b"\0" * (256 * LIMIT), 9)

            def post(body, **h):
                return server.request("POST", "/api/v1/dossiers", body=body, token=site.submitter, headers={**xml, **h})

            print(f"{'shape':46} {'answer':>10} {'seconds':>9}")
            rows = [
                ("plain dossier (first receipt)", lambda: post(signed)),
                ("gzip of the same dossier (replay)", lambda: post(gzip.compress(signed), **{"Content-Encoding": "gzip"})),
                ("bogus gzip body", lambda: post(b"not gzip" * 50, **{"Content-Encoding": "gzip"})),
                ("gzip bomb: 256 MiB of zeros in ~256 KiB",
                 lambda: post(bomb, **{"Content-Encoding": "gzip"})),
            ]
            for name, fn in rows:
                took, answer = timed(fn)
                print(f"{name:46} {status_of(answer):>10} {took:9.3f}")
            for name, data in (
                ("Content-Length: -1", b"POST /api/v1/dossiers HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
                ("Content-Length with chunked", b"POST /api/v1/dossiers HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                ("data after Connection: close", b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /"),
            ):
                took, got = timed(lambda data=data: raw(server.base_host, data, wait=30.0))
                print(f"{name:46} {got[9:12].decode() or '-':>10} {took:9.3f}")
            head = (f"POST /api/v1/dossiers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {site.submitter}\r\n"
                    "Content-Type: application/xml\r\nContent-Length: 100000\r\n\r\n").encode()  # fmt: skip
            took, _ = timed(lambda: _drop(server.base_host, head + signed[:5000]))
            print(f"{'client drops mid-body (then GET /healthz)':46} {status_of(server.request('GET', '/healthz')):>10} {took:9.3f}")
            limit = max(args.keepalive, args.body_seconds) * 2 + 10
            print(f"slow head, 1 byte/s:        {drip(server.base_host, b'GET /healthz HTTP/1.1' + bytes([13, 10]), b'X: ' + b'a' * 500, 1.0, limit)}")
            print(f"slow body, 1 byte/s:        {drip(server.base_host, head, b'<' * 5000, 1.0, limit)}")
            idle = [socket.create_connection(server.base_host, timeout=10) for _ in range(1000)]
            try:
                took, answer = timed(lambda: server.request("GET", "/healthz", timeout=30))
                print(f"{'GET /healthz with 1,000 idle connections open':46} {status_of(answer):>10} {took:9.3f}")
            finally:
                for s in idle:
                    s.close()
            log = (root / "server.log").read_text(errors="replace")
            print(f"server log: {log.count('Traceback')} tracebacks, {log.count(' ERROR ')} ERROR lines, "
                  f"{len(log.splitlines())} lines")  # fmt: skip
        finally:
            server.stop()


def _drop(host, data: bytes) -> None:
    with socket.create_connection(host) as s:
        s.sendall(data)
    time.sleep(0.2)


def budget_figures() -> None:
    """A stage that never ends (the before_stage seam of the tests) in one worker process with a
    budget of 2 s: the time until the call fails, and until the next call is answered."""
    from interchange import workers as workers_module
    from interchange.config import Config
    from interchange.server import worker_settings
    from tests.workerhooks import sleep_if_asked

    ReceiptWorkers = workers_module.ReceiptWorkers  # noqa: N806
    WorkerUnavailable = getattr(workers_module, "WorkerUnavailable", None)  # noqa: N806

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        site = make_site(root, f"sqlite+aiosqlite:///{root / 'b.db'}")
        from interchange.config import load_config

        cfg: Config = load_config(site.config, environ={})
        cfg.limits.worker_seconds, cfg.limits.worker_seconds_per_mib = 2.0, 0.0
        if WorkerUnavailable is None or "before_stage" not in {
            f.name for f in dataclasses.fields(worker_settings(cfg))
        }:
            print("worker budget: not in this checkout (a stuck stage holds its worker for ever)")
            return
        settings = dataclasses.replace(worker_settings(cfg), before_stage=sleep_if_asked)

        async def run() -> None:
            workers = ReceiptWorkers(settings, 1)
            await workers.start()
            now = datetime.now(UTC)
            try:
                t0 = time.perf_counter()
                try:
                    await workers.receive(b"<!--SLEEP:600-->", now, None)
                except WorkerUnavailable as exc:
                    t1 = time.perf_counter()
                    print(f"stuck stage, budget 2 s:    {type(exc).__name__} after {t1 - t0:.2f} s")
                await workers.receive(b"<x/>", now, None)
                print(f"next call answered:         {time.perf_counter() - t1:.2f} s later (new pool started)")
            finally:
                workers.close()

        asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keepalive", type=float, default=15.0)
    parser.add_argument("--body-seconds", type=float, default=30.0)
    args = parser.parse_args()
    http_figures(args)
    budget_figures()


if __name__ == "__main__":
    main()

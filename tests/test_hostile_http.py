"""Hostile HTTP against a real server subprocess (tests/serverproc.py) on loopback: compressed
bodies (valid, bogus, a bomb), clients that drop mid-body, malformed requests aiohttp refuses
itself, slow headers and bodies, and a thousand idle connections. The server's log is read:
these are answered (or cut off) with at most one concise line, never a traceback or a 500."""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import socket
import time
import zlib

import pytest
from lxml import etree

from interchange.devkit import samples
from interchange.notices.notice import NS
from interchange.trust.dossier_signing import sign_envelope
from tests.serverproc import ServerProc, make_site, raw

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
LIMIT = 1024 * 1024  # max_body_bytes of this server: a bomb decoding past it is a 413


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    site = make_site(root, f"sqlite+aiosqlite:///{root / 'interchange.db'}")
    proc = ServerProc(
        site, root / "server.log",
        SERVER_KEEPALIVE_SECONDS="2", SERVER_BODY_SECONDS="1", SERVER_BODY_MIN_RATE="1000",
        LIMITS_MAX_BODY_BYTES=str(LIMIT), JOBS_INTERVAL_SECONDS="0",
    )  # fmt: skip
    try:
        proc.wait_ready()
        proc.signed = sign_envelope(samples.dossier_600(rows=2, seed=77), site.signer())
        yield proc
    finally:
        proc.stop()


class LogSince:
    """The server log written from now on."""

    def __init__(self, server: ServerProc):
        self.server, self.start = server, server.log.stat().st_size

    def text(self, settle: float = 0.3) -> str:
        time.sleep(settle)
        with self.server.log.open("rb") as fh:
            fh.seek(self.start)
            return fh.read().decode("utf-8", "replace")

    def assert_quiet(self) -> str:
        """No traceback, no error and no 500 in the lines written since (JSON lines, or text)."""
        text = self.text()
        for line in text.splitlines():
            assert "Traceback" not in line, text
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict):
                assert event.get("level") not in ("error", "critical") and event.get("status") != 500, line
            else:  # a text line: its time ends ",mmm", which may be ",500"
                assert " ERROR " not in line and not re.search(r"(?<![,.\d])500(?!\d)", line), line
        return text


def post(server, body, **headers):
    return server.request("POST", "/api/v1/dossiers", body=body, token=server.site.submitter,
                          headers={"Content-Type": "application/xml", **headers})  # fmt: skip


def codes_of(notice: bytes) -> list[str]:
    return [e.text for e in etree.fromstring(notice).iterfind(f".//{{{NS}}}Loi/{{{NS}}}Ma")]




# ---- 2. Content-Encoding ---------------------------------------------------------------------


def test_a_gzip_body_is_received(server):
    log = LogSince(server)
    answer = post(server, gzip.compress(server.signed), **{"Content-Encoding": "gzip"})
    assert answer.status == 202, answer.body[:400]
    assert post(server, zlib.compress(server.signed), **{"Content-Encoding": "deflate"}).status == 200  # a replay
    log.assert_quiet()


def test_a_bogus_gzip_body_is_400_with_a_signed_refusal_and_no_traceback(server):
    log = LogSince(server)
    answer = post(server, b"this is not gzip at all" * 10, **{"Content-Encoding": "gzip"})
    assert answer.status == 400, answer.body[:400]
    assert codes_of(answer.body) == ["BODY-UNREADABLE"]
    truncated = gzip.compress(server.signed)[:-200]  # the end of the stream is missing: framing is not broken
    assert post(server, truncated, **{"Content-Encoding": "gzip"}).status in (400, 422)
    log.assert_quiet()


def test_a_gzip_bomb_is_413_once_decoded_past_the_limit(server):
    log = LogSince(server)
    bomb = gzip.compress(b"\0" * (256 * LIMIT), compresslevel=9)  # 256 MiB in about 256 KiB
    assert len(bomb) < LIMIT
    answer = post(server, bomb, **{"Content-Encoding": "gzip"})
    assert answer.status == 413, answer.body[:400]
    assert codes_of(answer.body) == ["BODY-TOO-LARGE"]
    assert server.request("GET", "/healthz").status == 200
    log.assert_quiet()


def test_an_unsupported_content_encoding_is_415(server):
    answer = post(server, server.signed, **{"Content-Encoding": "compress"})
    assert answer.status == 415 and codes_of(answer.body) == ["CONTENT-ENCODING"]


# ---- 3. a client that drops mid-body ---------------------------------------------------------


def test_a_client_dropping_mid_body_is_one_info_line(server):
    log = LogSince(server)
    head = (f"POST /api/v1/dossiers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.site.submitter}\r\n"
            "Content-Type: application/xml\r\nContent-Length: 100000\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection(server.base_host) as s:
        s.sendall(head + server.signed[:5000])
        time.sleep(0.3)
    text = log.assert_quiet()
    assert len(re.findall("client went away", text)) == 1, text
    assert server.request("GET", "/healthz").status == 200


# ---- 4. malformed HTTP that aiohttp answers 400 itself ---------------------------------------

MALFORMED = {
    "negative length": b"POST /api/v1/dossiers HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "absurd length": b"POST /api/v1/dossiers HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "length and chunked": b"POST /api/v1/dossiers HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two lengths": b"POST /api/v1/dossiers HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    "bad chunk": b"POST /api/v1/verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "data after Connection: close": b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                    b"GET /healthz HTTP/1.1\r\nContent-Length: -5\r\n\r\n\x00\x01garbage",
    "junk line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 HTTP/1.1\r\n\r\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_http_is_400_without_a_traceback(server, name):
    log = LogSince(server)
    got = raw(server.base_host, MALFORMED[name])
    assert got.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), got[:200]
    text = log.assert_quiet()
    assert text.count("\n") <= 1, text


# ---- 5. slow clients and idle connections ----------------------------------------------------


def drip(server, head: bytes, then: bytes, every: float, limit: float) -> float:
    """Send `head`, then `then` one byte every `every` s, until the server closes; the time taken."""
    started = time.monotonic()
    with socket.create_connection(server.base_host, timeout=limit) as s:
        s.sendall(head)
        try:
            for byte in then:
                time.sleep(every)
                s.sendall(bytes([byte]))
                if time.monotonic() - started > limit:
                    break
            s.recv(1000)
        except OSError:
            pass
    return time.monotonic() - started


def test_slow_headers_are_cut_off(server):
    log = LogSince(server)
    taken = drip(server, b"GET /healthz HTTP/1.1\r\n", b"X-Slow: " + b"a" * 200, every=0.25, limit=20)
    assert taken < 15, taken  # keepalive_seconds = 2 bounds the wait for a head
    log.assert_quiet()


def test_a_slow_body_is_cut_off(server):
    log = LogSince(server)
    head = (f"POST /api/v1/dossiers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.site.submitter}\r\n"
            "Content-Type: application/xml\r\nContent-Length: 5000\r\n\r\n").encode()  # fmt: skip
    taken = drip(server, head, b"<" * 5000, every=0.25, limit=20)
    assert taken < 15, taken  # body_seconds = 1, then 1000 bytes a second
    text = log.assert_quiet()
    assert "cut off a slow body" in text and "client went away" not in text, text


def test_a_thousand_idle_connections_do_not_stop_a_normal_request(server):
    idle = []
    try:
        for _ in range(1000):
            s = socket.create_connection(server.base_host, timeout=5)
            idle.append(s)
        idle[0].sendall(b"GET /heal")  # and one with half a head
        answer = server.request("GET", "/healthz", timeout=5)
        assert answer.status == 200, answer
        time.sleep(3)  # keepalive_seconds = 2: the server closes them
        closed = 0
        for s in idle[:50]:
            s.settimeout(2)
            with contextlib.suppress(OSError):
                closed += s.recv(10) == b""
        assert closed == 50
    finally:
        for s in idle:
            s.close()
    assert server.request("GET", "/healthz", timeout=5).status == 200

"""The `interchange` command (SPEC §10): dev-setup, sample/sign/check/verify, keys, pki, and an
end-to-end run against a real `serve` process (worker pool, crash and restart)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64decode, b64encode
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from lxml import etree

from interchange.cli import common as cli_common
from interchange.cli import main
from interchange.config import REPO_ROOT
from interchange.intake import pipeline
from interchange.trust import leanbody, streaming
from tests.clitools import dev_setup, no_interchange_env, run
from tests.helpers import MST_A as MST

OTHER_MST = "0312345673"
TOKEN = re.compile(r"ik_[0-9a-f]+_[A-Za-z0-9_-]+")


pytestmark = pytest.mark.usefixtures("clean_environ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@dataclass
class Setup:
    root: Path
    config: Path
    port: int
    first_output: str
    demo_key: str
    p12: Path
    pem: Path
    unsigned: Path
    signed: Path

    def cli(self, *argv: str) -> tuple[int, str]:
        return run(["--config", str(self.config), *argv])


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    root = tmp_path_factory.mktemp("cli")
    port = free_port()
    config = root / "config.toml"
    config.write_text(
        'data_dir = "data"\n'
        f"[server]\nhost = \"127.0.0.1\"\nport = {port}\nworkers = 1\noffice_code = \"TEST\"\n"
        '[trust]\nanchors_dir = "trusted"\ncrl_dir = "crl"\n'
        '[targets]\n"600" = "5 working days"\n',
        encoding="utf-8",
    )
    with no_interchange_env():
        out = dev_setup(config)
        tokens = TOKEN.findall(out)
        assert len(tokens) == 1, out
        s = Setup(root, config, port, out, tokens[0], root / "data" / "demo" / f"unit-{MST}.p12",
                  root / "data" / "demo" / f"unit-{MST}.pem", root / "unsigned.xml", root / "signed.xml")
        assert s.cli("sample", "-o", str(s.unsigned))[0] == 0
        code, out = s.cli("sign", str(s.unsigned), "--p12", str(s.p12), "--password", "demo", "-o", str(s.signed))
        assert code == 0, out
    return s



# ---- dev-setup --------------------------------------------------------------------------------


def test_dev_setup_creates_the_dev_pki_and_prints_a_demo_key_once(setup):
    root, data, anchors = setup.root, setup.root / "data", setup.root / "trusted"
    ca_pem = anchors / "dev-ca.pem"
    ca_key = data / "dev-ca" / "ca-key.pem"
    assert ca_pem.is_file() and ca_key.is_file()
    assert sorted(p.name for p in anchors.iterdir()) == ["dev-ca.pem"]  # no key among the anchors
    assert b"PRIVATE KEY" not in ca_pem.read_bytes() and b"PRIVATE KEY" in ca_key.read_bytes()
    assert (data / "server" / "notice-key.pem").is_file() and (data / "server" / "notice-cert.pem").is_file()
    assert setup.p12.is_file() and setup.pem.is_file()
    for secret in (ca_key, data / "server" / "notice-key.pem", setup.p12, setup.pem):
        assert secret.stat().st_mode & 0o077 == 0, secret
    for name in ("ca", "ca_key", "signing_key", "signing_cert", "demo_p12", "demo_pem"):
        assert f"created {name}:" in setup.first_output
    assert f"demo unit {MST}" in setup.first_output and "demo API key" in setup.first_output

    # the demo p12 opens with the password "demo" and is issued by the dev CA
    ca = x509.load_pem_x509_certificate(ca_pem.read_bytes())
    _, cert, _ = pkcs12.load_key_and_certificates(setup.p12.read_bytes(), b"demo")
    assert cert.issuer == ca.subject
    assert cert.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == f"MST:{MST}"

    before = snapshot(root)
    code, out = setup.cli("dev-setup")
    assert code == 0
    assert not TOKEN.search(out) and "created" not in out, out
    assert snapshot(root) == before  # nothing rewritten, the store included


# ---- sample, sign, check, verify --------------------------------------------------------------


def test_check_signed_and_unsigned(setup):
    code, out = setup.cli("check", str(setup.signed))
    assert code == 0, out
    assert "TIEP_NHAN" in out

    code, out = setup.cli("check", str(setup.unsigned))
    assert code == 1
    assert "SIG-MISSING" in out and "TU_CHOI" in out

    code, out = setup.cli("check", "--json", str(setup.signed))
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["problems"] == []
    assert report["layers"] == {"envelope": "passed", "signature": "passed", "schema": "passed"}

    code, out = setup.cli("check", "--json", str(setup.unsigned))
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert report["layers"]["signature"] == "failed"
    assert {p["code"] for p in report["problems"]} == {"SIG-MISSING"}


def test_verify(setup, tmp_path):
    code, out = setup.cli("verify", str(setup.signed))
    assert code == 0, out
    assert "Hoso: VALID" in out and "D02-TS.xml: VALID" in out
    assert f"UID=MST:{MST}" in out and f"MST: {MST}" in out and "Công ty TNHH Mẫu Việt" in out

    tampered = tmp_path / "tampered.xml"
    data = setup.signed.read_bytes()
    changed = re.sub(rb"<KyKeKhai>[^<]*</KyKeKhai>", b"<KyKeKhai>01/2001</KyKeKhai>", data, count=1)
    assert changed != data
    tampered.write_bytes(changed)
    code, out = setup.cli("verify", str(tampered))
    assert code == 1 and "SIG-DIGEST" in out and "FAILED" in out

    _, cert, _ = pkcs12.load_key_and_certificates(setup.p12.read_bytes(), b"demo")
    after_expiry = (cert.not_valid_after_utc + timedelta(days=1)).isoformat()
    code, out = setup.cli("verify", "--at", after_expiry, str(setup.signed))
    assert code == 1 and "SIG-EXPIRED" in out

    code, out = setup.cli("verify", "--json", str(setup.signed))
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["problems"] == []
    assert [s["document"] for s in report["signatures"]] == ["Hoso", "D02-TS.xml"]
    assert all(s["valid"] and s["mst"] == MST for s in report["signatures"])

    code, out = setup.cli("verify", "--json", str(tampered))
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and "SIG-DIGEST" in {p["code"] for p in report["problems"]}


# ---- keys, pki --------------------------------------------------------------------------------


def test_keys_create_list_revoke(setup, capsys):
    code, out = setup.cli("keys", "create", "--role", "submitter", "--mst", OTHER_MST, "--label", "payroll")
    assert code == 0
    tokens = TOKEN.findall(out)
    assert len(tokens) == 1
    key_id = re.search(r"key id ([0-9a-f]+)", out).group(1)
    assert tokens[0].startswith(f"ik_{key_id}_")

    code, out = setup.cli("keys", "list")
    assert code == 0
    line = next(ln for ln in out.splitlines() if ln.startswith(key_id))
    assert OTHER_MST in line and "active" in line and "payroll" in line
    assert not TOKEN.search(out)  # the token is never shown again

    code, out = setup.cli("keys", "revoke", key_id)
    assert code == 0 and f"revoked {key_id}" in out
    code, out = setup.cli("keys", "list")
    line = next(ln for ln in out.splitlines() if ln.startswith(key_id))
    assert "revoked" in line and "active" not in line

    code, _ = setup.cli("keys", "revoke", "000000000000")
    assert code == 1 and "no active key" in capsys.readouterr().err


def test_keys_create_submitter_without_mst_is_a_usage_error(setup, capsys):
    code, out = setup.cli("keys", "create", "--role", "submitter")
    assert code == 2 and not TOKEN.search(out)
    assert "submitter key is bound to one MST" in capsys.readouterr().err
    code, out = setup.cli("keys", "create", "--role", "auditor", "--mst", MST)
    assert code == 2 and not TOKEN.search(out)


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [("--mst", "0101234566", "not a tax code"), ("--mst", "010123456", "not a tax code"), ("--ivan", "1234", "not a MaIVAN")],
)
def test_keys_create_refuses_a_bad_binding(setup, capsys, flag, value, says):
    code, out = setup.cli("keys", "create", "--role", "submitter" if flag == "--mst" else "ivan", flag, value)
    assert code == 2 and not TOKEN.search(out)
    assert says in capsys.readouterr().err


def test_keys_reads_the_config_named_by_interchange_config(setup, monkeypatch):
    monkeypatch.setenv("INTERCHANGE_CONFIG", str(setup.config))
    code, out = run(["keys", "list"])
    assert code == 0 and "demo unit" in out and MST in out


def test_pki_issue_unit_makes_a_p12_with_the_mst_uid(setup, tmp_path):
    out_p12 = tmp_path / "u.p12"
    code, out = setup.cli("pki", "issue-unit", "--mst", OTHER_MST, "--name", "X", "--out", str(out_p12))
    assert code == 0, out
    key, cert, chain = pkcs12.load_key_and_certificates(out_p12.read_bytes(), b"demo")
    assert key is not None
    assert cert.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == f"MST:{OTHER_MST}"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "X"
    ca = x509.load_pem_x509_certificate((setup.root / "trusted" / "dev-ca.pem").read_bytes())
    assert cert.issuer == ca.subject and [c.subject for c in chain] == [ca.subject]
    pem = tmp_path / "u.pem"
    assert pem.is_file() and pem.stat().st_mode & 0o077 == 0

    # a dossier for that unit, signed with the new certificate, passes the checks
    unsigned, signed = tmp_path / "other.xml", tmp_path / "other-signed.xml"
    assert setup.cli("sample", "--mst", OTHER_MST, "--rows", "3", "-o", str(unsigned))[0] == 0
    assert setup.cli("sign", str(unsigned), "--p12", str(out_p12), "--password", "demo", "-o", str(signed))[0] == 0
    code, out = setup.cli("check", str(signed))
    assert code == 0, out


def test_check_validates_a_large_form_beside_its_pass(setup, tmp_path, monkeypatch):
    """`check` reads a large dossier as a worker does: from its file, the form's XSD in a forked
    helper beside the streaming pass ([server] validate_aside_mib; trust/aside.py); a form
    changed after signing is refused all the same."""
    unsigned, signed = tmp_path / "big.xml", tmp_path / "big-signed.xml"
    assert setup.cli("sample", "--rows", "300", "-o", str(unsigned))[0] == 0
    assert setup.cli("sign", str(unsigned), "--p12", str(setup.p12), "--password", "demo", "-o", str(signed))[0] == 0
    monkeypatch.setattr(cli_common, "LARGE", 64 * 1024)
    monkeypatch.setattr(leanbody, "LARGE", 64 * 1024)
    monkeypatch.setattr(pipeline, "STREAM_MIN", 64 * 1024)
    monkeypatch.setenv("INTERCHANGE_SERVER_VALIDATE_ASIDE_MIB", "0.01")
    helpers: list[str] = []
    real = streaming.validate_aside
    monkeypatch.setattr(streaming, "validate_aside", lambda path, *a: helpers.append(path) or real(path, *a))
    code, out = setup.cli("check", str(signed))
    assert code == 0, out
    assert len(helpers) == 1
    # a row not as the XSD has it, signed all the same: the helper's verdict, with the schema's errors
    text = etree.fromstring(unsigned.read_bytes()).findtext(".//NoiDungFile")
    to_sign, invalid = tmp_path / "big-invalid-unsigned.xml", tmp_path / "big-invalid.xml"
    form = b64decode(text).replace(b"<STT>7</STT>", b"<STT>x</STT>", 1)
    to_sign.write_bytes(unsigned.read_bytes().replace(text.encode(), b64encode(form)))
    code, out = setup.cli("sign", str(to_sign), "--p12", str(setup.p12), "--password", "demo", "-o", str(invalid))
    assert code == 0, out
    code, out = setup.cli("check", "--json", str(invalid))
    assert code == 1 and len(helpers) == 2
    report = json.loads(out)
    assert report["layers"] == {"envelope": "passed", "signature": "passed", "schema": "failed"}
    assert [(p["code"], p["xpath"]) for p in report["problems"]] == [("XSD", "/D02-TS/NoiDung/LaoDong[7]/STT")]


def test_config_option_after_the_subcommand(setup):
    code, out = run(["check", "--config", str(setup.config), str(setup.signed)])
    assert code == 0


def test_problem_list_follows_redirected_stdout(setup):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--config", str(setup.config), "check", str(setup.unsigned)])
    assert code == 1 and "REFUSED" in out.getvalue()
    assert "SIG-MISSING" in out.getvalue()


# ---- end to end with a real server ------------------------------------------------------------


class Server:
    def __init__(self, setup: Setup, log: Path):
        self.base = f"http://127.0.0.1:{setup.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTERCHANGE_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "interchange", "--config", str(setup.config), "serve"],
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=setup.root, start_new_session=True,  # its own process group: workers included
            )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        pytest.fail(f"server not ready after {timeout} s:\n{self.log.read_text()}")

    def crash(self) -> None:
        """SIGKILL the server process alone (as a crash would), then reap what it left behind."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.stop()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def get(self, path: str, token: str) -> tuple[int, bytes]:
        req = urllib.request.Request(f"{self.base}{path}", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()


def submit(setup: Setup, path: Path, token: str, *extra: str) -> tuple[int, str]:
    return setup.cli("submit", str(path), "--api-key", token, "--url", f"http://127.0.0.1:{setup.port}", *extra)


def test_end_to_end_with_a_real_server_survives_sigkill(setup, tmp_path):
    log = tmp_path / "server.log"
    servers: list[Server] = []
    try:
        server = Server(setup, log)
        servers.append(server)
        server.wait_ready()

        code, out = submit(setup, setup.signed, setup.demo_key)
        assert code == 0, out
        assert "HTTP 202" in out and "TIEP_NHAN" in out and "notice signature: valid" in out
        so_ho_so = re.search(r"TIEP_NHAN (\d{5}/\d{4}/TEST)", out).group(1)
        assert "result due by:" in out

        code, out = submit(setup, setup.signed, setup.demo_key)  # exact replay
        assert code == 0 and "HTTP 200" in out and f"TIEP_NHAN {so_ho_so}" in out, out

        code, out = submit(setup, setup.unsigned, setup.demo_key)
        assert code == 1 and "HTTP 422" in out and "TU_CHOI" in out and "SIG-MISSING" in out, out
        assert "notice signature: valid" in out  # refusals are signed too

        code, out = submit(setup, setup.signed, "ik_000000000000_nope", "--json")
        assert code == 1 and json.loads(out)["http_status"] == 401

        # a key revoked from the command line stops working on the running server
        _, out = setup.cli("keys", "create", "--role", "auditor")
        key_id, token = re.search(r"key id ([0-9a-f]+)", out).group(1), TOKEN.search(out).group(0)
        assert server.get("/api/v1/dossiers", token)[0] == 200
        assert setup.cli("keys", "revoke", key_id)[0] == 0
        deadline = time.monotonic() + 5
        while server.get("/api/v1/dossiers", token)[0] != 401:
            assert time.monotonic() < deadline, "revoked key still accepted after 5 s"
            time.sleep(0.2)

        # a new dossier, then SIGKILL right after its 202
        fresh_unsigned, fresh = tmp_path / "fresh-unsigned.xml", tmp_path / "fresh.xml"
        assert setup.cli("sample", "--seed", "9", "--rows", "5", "-o", str(fresh_unsigned))[0] == 0
        assert setup.cli("sign", str(fresh_unsigned), "--p12", str(setup.p12), "-o", str(fresh))[0] == 0
        code, out = submit(setup, fresh, setup.demo_key, "--json")
        server.crash()
        summary = json.loads(out)
        assert code == 0 and summary["http_status"] == 202 and summary["kind"] == "TIEP_NHAN", out
        tx = summary["transaction"]

        server = Server(setup, log)
        servers.append(server)
        server.wait_ready()
        status, body = server.get(f"/api/v1/dossiers/{tx}", setup.demo_key)
        assert status == 200, body
        info = json.loads(body)
        assert info["state"] in ("received", "accepted") and info["so_ho_so"] == summary["so_ho_so"]
        # the restarted server's scheduler judges it: a signed KET_QUA follows
        deadline = time.monotonic() + 15
        while server.get(f"/api/v1/dossiers/{tx}/notices/ket-qua", setup.demo_key)[0] != 200:
            assert time.monotonic() < deadline, "no KET_QUA 15 s after the restart"
            time.sleep(0.2)
        assert json.loads(server.get(f"/api/v1/dossiers/{tx}", setup.demo_key)[1])["state"] == "accepted"
        status, body = server.get(f"/api/v1/dossiers/{tx}/original", setup.demo_key)
        assert status == 200 and body == fresh.read_bytes()

        code, out = submit(setup, fresh, setup.demo_key)  # the replay index survived too
        assert code == 0 and "HTTP 200" in out and summary["so_ho_so"] in out, out
    finally:
        for s in servers:
            s.stop()

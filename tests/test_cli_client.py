"""The `interchange` client commands against a real `interchange serve` (issue #11, Must have 1):
`submit` of a folder (progress, a summary table, exit 1 when any was refused, replays said as
replays, Idempotency-Key conflicts), `dossiers list` (filters, paging), `show`, `notice`,
`original`, `evidence` by id or by dossier number, and the client config file."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.clitools import no_interchange_env, run
from tests.serverproc import ServerProc, Site, make_site

NUMBER = re.compile(r"\d{5}/\d{4}/TEST")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("client")
    with no_interchange_env():
        site = make_site(root, f"sqlite+aiosqlite:///{root / 'data' / 'interchange.db'}")
    proc = ServerProc(site, root / "server.log")
    try:
        proc.wait_ready()
        yield site
    finally:
        proc.stop()


@pytest.fixture
def env(server: Site, monkeypatch, tmp_path) -> Site:
    """The client's settings from the environment, as the README shows."""
    for name in [n for n in os.environ if n.startswith("INTERCHANGE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("INTERCHANGE_CONFIG", str(server.config))
    monkeypatch.setenv("INTERCHANGE_URL", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("INTERCHANGE_API_KEY", server.submitter)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return server


def make_folder(site: Site, folder: Path, seeds: list[int], unsigned: list[int]) -> None:
    folder.mkdir()
    for seed in seeds + unsigned:
        raw = folder / f"raw-{seed}.xml"
        assert run(["sample", "--seed", str(seed), "--rows", "3", "-o", str(raw)])[0] == 0
        if seed in seeds:
            code, out = run(["sign", str(raw), "--p12", str(site.p12), "-o", str(folder / f"signed-{seed}.xml")])
            assert code == 0, out
            raw.unlink()


def test_submit_a_folder_then_read_the_dossiers_back(env, tmp_path, capsys):
    folder = tmp_path / "outbox"
    make_folder(env, folder, seeds=[101, 102, 103], unsigned=[104])
    capsys.readouterr()
    code, out = run(["submit", str(folder), "--concurrency", "3"])
    err = capsys.readouterr().err
    assert code == 1, out  # one was refused
    assert out.splitlines()[0].split()[:4] == ["FILE", "HTTP", "OUTCOME", "SOHOSO"]
    assert "4 files: 3 received, 1 refused" in out
    refused_line = next(ln for ln in out.splitlines() if "raw-104.xml" in ln)
    assert " 422 " in refused_line and "refused" in refused_line and "SIG-MISSING" in refused_line
    assert "4/4" in err and "received 3" in err  # the progress bar, on stderr

    code, out = run(["submit", str(folder)])  # again: the three are replays, the refused one is judged again
    assert code == 1 and "3 replay" in out and "1 refused" in out

    code, out = run(["submit", str(folder / "signed-101.xml")])
    assert code == 0 and "HTTP 200: REPLAY of an earlier receipt" in out and "nothing new was stored" in out
    number = NUMBER.search(out).group(0)

    code, out = run(["dossiers", "list", "--state", "refused"])
    assert code == 0 and "2 dossier(s)" in out and out.splitlines()[0].startswith("ID")
    code, out = run(["dossiers", "list", "--limit", "2", "--all", "--json"])
    listed = json.loads(out)
    assert code == 0 and len(listed["items"]) == 5 and listed["next_cursor"] is None
    code, out = run(["dossiers", "list", "--limit", "2"])
    assert code == 0 and "more: --cursor" in out

    code, out = run(["dossiers", "show", number])
    assert code == 0 and f"  {number}" in out.splitlines()[0] and "state: " in out and "signer of Hoso" in out
    ident = out.split()[1]
    code, out = run(["dossiers", "show", ident, "--json"])
    assert code == 0 and json.loads(out)["so_ho_so"] == number

    original = tmp_path / "original.xml"
    code, _ = run(["dossiers", "original", number, "-o", str(original)])
    assert code == 0 and original.read_bytes() == (folder / "signed-101.xml").read_bytes()
    code, _ = run(["dossiers", "original", number, "-o", str(original)])
    assert code == 2  # never overwritten without --force

    refused = next(d for d in listed["items"] if d["state"] == "refused")
    code, out = run(["dossiers", "notice", refused["id"], "tu-choi", "--json"])
    notice = json.loads(out)
    assert code == 0 and notice["kind"] == "TU_CHOI" and {e["code"] for e in notice["errors"]} == {"SIG-MISSING"}
    code, out = run(["dossiers", "notice", refused["id"], "ket-qua"])
    assert code == 1

    bundle = tmp_path / "evidence.zip"
    assert run(["dossiers", "evidence", ident, "-o", str(bundle)])[0] == 0
    code, out = run(["evidence", "verify", str(bundle)])
    assert code == 0 and "OK: the evidence verifies" in out


def test_idempotency_key_conflict_and_json_lines(env, tmp_path):
    folder = tmp_path / "two"
    make_folder(env, folder, seeds=[201, 202], unsigned=[])
    code, out = run(["submit", str(folder / "signed-201.xml"), "--idempotency-key", "batch-201", "--json"])
    first = json.loads(out)
    assert code == 0 and first["outcome"] == "received" and first["http_status"] == 202
    assert first["notice_signature_valid"] is True
    code, out = run(["submit", str(folder / "signed-202.xml"), "--idempotency-key", "batch-201", "--json"])
    second = json.loads(out)
    assert code == 1 and second["outcome"] == "conflict" and second["http_status"] == 409
    code, out = run(["submit", str(folder), "--json"])
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["outcome"] for r in lines) == ["received", "replay"]


def test_client_config_file_and_a_wrong_key(server, tmp_path, monkeypatch, capsys):
    for name in [n for n in os.environ if n.startswith("INTERCHANGE_")]:
        monkeypatch.delenv(name)
    client = tmp_path / "client.toml"
    client.write_text(f'url = "http://127.0.0.1:{server.port}"\napi_key = "{server.auditor}"\n', encoding="utf-8")
    client.chmod(0o600)
    code, out = run(["dossiers", "list", "--client-config", str(client)])
    assert code == 0 and out.splitlines()[0].startswith("ID"), out
    monkeypatch.setenv("INTERCHANGE_CLIENT_CONFIG", str(client))
    code, out = run(["dossiers", "list", "--api-key", "ik_000000000000_nope"])
    err = capsys.readouterr().err
    assert code == 1 and "HTTP 401" in err and "Traceback" not in err



def test_hi_card_client_answers_from_the_server(env, capsys):
    code, out = run(["keys", "create", "--role", "facility", "--facility", "01001"])
    assert code == 0, out
    token = re.search(r"ik_[0-9a-f]+_[A-Za-z0-9_-]+", out).group(0)
    code, out = run(["hi-card", "001099012345", "--name", "Không Có Ai", "--birth", "01/01/1990", "--api-key", token])
    assert code == 1 and "HTTP 404" in out and "NOT-FOUND" in out
    code, out = run(["hi-card", "001099012345", "--name", "X", "--birth", "01/01/1990", "--json", "--api-key", token])
    assert code == 1 and json.loads(out)["code"] == "NOT-FOUND"


def test_a_client_without_the_notice_ca_says_the_notice_is_not_checked(env, tmp_path, monkeypatch, capsys):
    """A payroll machine far from the server: no trust anchors here. The outcome stands, and the
    output says the notice's signature was not checked (rather than NOT VALID, or nothing)."""
    folder = tmp_path / "one"
    make_folder(env, folder, seeds=[301], unsigned=[])
    bare = tmp_path / "client-config.toml"
    bare.write_text(f'[trust]\nanchors_dir = "{tmp_path / "no-anchors"}"\n', encoding="utf-8")
    monkeypatch.setenv("INTERCHANGE_CONFIG", str(bare))
    capsys.readouterr()
    code, out = run(["submit", str(folder / "signed-301.xml")])
    err = capsys.readouterr().err
    assert code == 0 and "HTTP 202" in out and "notice signature: not checked" in out, out
    assert "not checked: no trust anchors" in err

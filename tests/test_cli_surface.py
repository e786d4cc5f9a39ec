"""The `interchange` command as a person meets it (issue #11, Must have 1): help on every
option, every subcommand named, `--version`, no traceback from any command on bad input,
`sign` that never overwrites or guesses a password silently, `dev-setup` and `keys list` that
say what there is, the client settings (flags, environment, client config), progress lines."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pytest

from interchange.cli import command_tree, main
from interchange.cli.common import CliError
from interchange.cli.progress import Bar, Stages
from interchange.cli.remote import remote_of
from interchange.config import REPO_ROOT
from tests.clitools import dev_setup, no_interchange_env

pytestmark = pytest.mark.usefixtures("clean_environ")
TOKEN = re.compile(r"ik_[0-9a-f]+_[A-Za-z0-9_-]+")
DEMO_MST = "0101234565"


def run_all(argv: list[str]) -> tuple[int, str, str]:
    """`interchange ...` in-process: (exit code, stdout, stderr); argparse's exits included."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A config with a development PKI made by dev-setup (and the demo key printed once)."""
    root = tmp_path_factory.mktemp("surface")
    config = root / "config.toml"
    config.write_text('data_dir = "data"\n[server]\nport = 1\n[trust]\nanchors_dir = "trusted"\ncrl_dir = "crl"\n',
                      encoding="utf-8")
    with no_interchange_env():
        dev_setup(config)
    (root / "unsigned.xml").write_bytes(b"")
    with no_interchange_env():
        assert run_all(["--config", str(config), "sample", "--rows", "2", "-o", str(root / "d.xml")])[0] == 0
    return root


def cli(site: Path, *argv: str) -> tuple[int, str, str]:
    return run_all(["--config", str(site / "config.toml"), *argv])


# ---- help, subcommands, version ------------------------------------------------------------------


def test_every_option_of_every_command_has_help():
    missing = []
    commands = list(command_tree())
    assert len(commands) >= 25
    for path, options, subcommands in commands:
        missing += [f"{path} {name}" for name, line in subcommands if not line]
        missing += [f"{path} {name}" for name, text in options if not text or text == argparse.SUPPRESS]
    assert missing == []


def test_top_level_help_names_every_subcommand():
    code, out, _ = run_all(["--help"])
    assert code == 0
    _, _, names = next(command_tree())
    assert len(names) == 15
    for name, _line in names:
        assert re.search(rf"^\s+{re.escape(name)}\s", out, re.M), f"{name} not in the top-level help"


def test_version():
    code, out, _ = run_all(["--version"])
    assert code == 0 and re.fullmatch(r"interchange \S+\n", out) and "unknown" not in out


# ---- no traceback, whatever the input --------------------------------------------------------------


def bad_inputs(site: Path, tmp: Path) -> list[list[str]]:
    garbage, folder, notxml = tmp / "garbage.bin", tmp / "folder", tmp / "not.xml"
    garbage.write_bytes(os.urandom(300))
    folder.mkdir()
    notxml.write_text("hello, not XML\n")
    empty = tmp / "empty.xml"
    empty.write_bytes(b"")
    revocation = tmp / "rev.json"
    revocation.write_text("{not json")
    p12 = str(site / "data" / "demo" / f"unit-{DEMO_MST}.p12")
    no_server = ["--url", "http://127.0.0.1:9", "--api-key", "ik_0_x"]
    return [
        ["--config", str(tmp / "missing.toml"), "serve"],
        ["--config", str(notxml), "dev-setup"],
        ["pki", "issue-unit", "--mst", DEMO_MST, "--name", "X", "--out", str(tmp / "u.txt")],
        ["keys", "create", "--role", "submitter", "--mst", "123"],
        ["keys", "revoke", "nope"],
        ["keys", "rotate", "nope"],
        ["codes", "--layer", "bogus"],
        ["sample", "-o", str(tmp / "no" / "such" / "dir.xml")],
        ["sample", "--rows", "-1", "-o", str(tmp / "s.xml")],
        ["sample", "-o", str(folder)],
        ["sign", str(notxml), "--p12", p12, "-o", str(tmp / "o1.xml")],
        ["sign", str(garbage), "--p12", p12, "-o", str(tmp / "o2.xml")],
        ["sign", str(empty), "--p12", p12, "-o", str(tmp / "o3.xml")],
        ["sign", str(folder), "--p12", p12, "-o", str(tmp / "o4.xml")],
        ["sign", str(tmp / "absent.xml"), "--p12", p12, "-o", str(tmp / "o5.xml")],
        ["sign", str(site / "d.xml"), "--p12", str(garbage), "--password", "x", "-o", str(tmp / "o6.xml")],
        ["sign", str(site / "d.xml"), "--p12", p12, "--password", "wrong", "-o", str(tmp / "o7.xml")],
        ["check", str(notxml)], ["check", str(garbage)], ["check", str(empty)], ["check", str(folder)],
        ["check", str(tmp / "absent.xml")], ["check", "--at", "soon", str(site / "d.xml")],
        ["verify", str(notxml)], ["verify", str(garbage)], ["verify", str(folder)],
        ["verify", "--revocation", str(revocation), str(site / "d.xml")],
        ["verify", "--at", "13/13/2026", str(site / "d.xml")],
        ["evidence", "verify", str(garbage)], ["evidence", "verify", str(notxml)], ["evidence", "verify", str(folder)],
        ["submit", str(site / "d.xml")],  # no key anywhere
        ["submit", str(site / "d.xml"), *no_server],
        ["submit", str(folder), *no_server],
        ["submit", str(tmp / "absent.xml"), *no_server],
        ["submit", str(site / "d.xml"), "--url", "ftp://x", "--api-key", "k"],
        ["submit", str(site / "d.xml"), "--concurrency", "0", *no_server],
        ["submit", str(site / "d.xml"), str(site / "d.xml"), "--idempotency-key", "k", *no_server],
        ["dossiers", "list", *no_server], ["dossiers", "show", "00001/2026/BHXH", *no_server],
        ["dossiers", "notice", "x", "ket-qua", *no_server], ["dossiers", "notice", "x", "bogus", *no_server],
        ["dossiers", "original", "x", *no_server], ["dossiers", "evidence", "x", *no_server],
        ["dossiers", "list", "--url", "http://[::1", "--api-key", "k"],
        ["hi-card", "001099012345", "--name", "A", "--birth", "01/01/1990", *no_server],
        ["hi-card", "001099012345", "--name", "A", "--birth", "01/01/1990"],
        ["submit", str(site / "d.xml"), "--client-config", str(notxml)],
    ]


def test_no_command_answers_bad_input_with_a_traceback(site, tmp_path, monkeypatch):
    signed = tmp_path / "signed.xml"
    p12 = str(site / "data" / "demo" / f"unit-{DEMO_MST}.p12")
    assert cli(site, "sign", str(site / "d.xml"), "--p12", p12, "-o", str(signed))[0] == 0
    with monkeypatch.context() as mp:  # a database that is not there, a parameters file that is not there
        mp.setenv("INTERCHANGE_STORE_URL", "postgresql+asyncpg://nobody@127.0.0.1:9/none")
        mp.setenv("INTERCHANGE_RULES_PARAMETERS", str(tmp_path / "gone.toml"))
        for argv in [["keys", "list"], ["audit", "verify"], ["rules"], ["dev-setup"], ["check", "--registration", str(signed)]]:
            code, out, err = cli(site, *argv)
            assert code in (1, 2) and "Traceback" not in out + err and err.strip(), (argv, code, out, err)
    for argv in bad_inputs(site, tmp_path):
        code, out, err = cli(site, *argv)
        assert code in (1, 2), (argv, code, out, err)
        assert "Traceback" not in out + err, (argv, err)
        assert (out + err).strip(), (argv, "no word of why")


def test_sign_of_a_file_that_is_not_xml_says_why_in_a_real_process(site, tmp_path):
    """The finding itself: `sign` of a non-XML file ended in a Python traceback."""
    notxml = tmp_path / "not.xml"
    notxml.write_text("hello")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERCHANGE_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "interchange", "--config", str(site / "config.toml"), "sign", str(notxml),
         "--p12", str(site / "data" / "demo" / f"unit-{DEMO_MST}.p12")],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "XML-MALFORMED" in done.stderr and not (tmp_path / "not.signed.xml").exists()


# ---- sign: never overwrites, never guesses a password silently --------------------------------------


def test_sign_never_overwrites_without_force(site, tmp_path):
    p12 = str(site / "data" / "demo" / f"unit-{DEMO_MST}.p12")
    source = tmp_path / "d.xml"
    source.write_bytes((site / "d.xml").read_bytes())
    code, out, err = cli(site, "sign", str(source), "--p12", p12)
    signed = tmp_path / "d.signed.xml"
    assert code == 0 and str(signed) in out and source.read_bytes() == (site / "d.xml").read_bytes()
    assert "development password 'demo'" in err  # the dev-mode password is said, not silent
    first = signed.read_bytes()

    code, _, err = cli(site, "sign", str(source), "--p12", p12)
    assert code == 2 and "exists" in err and "--force" in err and signed.read_bytes() == first
    code, _, err = cli(site, "sign", str(source), "--p12", p12, "-o", str(source))
    assert code == 2 and "input" in err and source.read_bytes() == (site / "d.xml").read_bytes()
    time.sleep(1.1)  # another SigningTime: other bytes
    code, _, _ = cli(site, "sign", str(source), "--p12", p12, "--force")
    assert code == 0 and signed.read_bytes() != first


def test_sign_password_from_the_environment_or_an_error(site, tmp_path, monkeypatch):
    # a certificate that is not dev-setup's demo one: no development password for it
    p12 = tmp_path / "unit.p12"
    p12.write_bytes((site / "data" / "demo" / f"unit-{DEMO_MST}.p12").read_bytes())
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal: no prompt
    code, _, err = cli(site, "sign", str(site / "d.xml"), "--p12", str(p12), "-o", str(tmp_path / "a.xml"))
    assert code == 2 and "INTERCHANGE_P12_PASSWORD" in err and not (tmp_path / "a.xml").exists()
    monkeypatch.setenv("INTERCHANGE_P12_PASSWORD", "wrong")
    code, _, err = cli(site, "sign", str(site / "d.xml"), "--p12", str(p12), "-o", str(tmp_path / "a.xml"))
    assert code == 2 and "wrong password" in err
    monkeypatch.setenv("INTERCHANGE_P12_PASSWORD", "demo")
    code, _, err = cli(site, "sign", str(site / "d.xml"), "--p12", str(p12), "-o", str(tmp_path / "a.xml"))
    assert code == 0 and "development password" not in err
    monkeypatch.setenv("MY_SECRET", "demo")
    monkeypatch.delenv("INTERCHANGE_P12_PASSWORD")
    code, _, _ = cli(site, "sign", str(site / "d.xml"), "--p12", str(p12), "--password-env", "MY_SECRET",
                     "-o", str(tmp_path / "b.xml"))
    assert code == 0
    code, out, _ = cli(site, "sign", "--help")
    assert code == 0 and "INTERCHANGE_P12_PASSWORD" in out and "prompt" in out


# ---- dev-setup, keys list ----------------------------------------------------------------------------


def test_dev_setup_again_says_what_exists_and_how_to_get_a_key(site):
    code, out, _ = cli(site, "dev-setup")
    assert code == 0 and not TOKEN.search(out)
    assert "already set up" in out and "dev-ca.pem" in out and f"unit-{DEMO_MST}.p12" in out
    assert "keys rotate" in out and "keys create --role submitter" in out


def test_keys_list_has_a_header(site):
    code, out, _ = cli(site, "keys", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["KEY", "ID", "ROLE", "BOUND", "TO", "STATE", "LABEL"]
    assert any(DEMO_MST in line and "active" in line for line in lines[1:])


# ---- the client's settings: flags, environment, client config --------------------------------------


def test_server_and_key_from_flags_environment_or_client_config(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('[server]\nhost = "0.0.0.0"\nport = 8181\n', encoding="utf-8")
    client = tmp_path / "client.toml"
    client.write_text('url = "http://file.example:1"\napi_key = "ik_file"\n', encoding="utf-8")
    client.chmod(0o600)
    args = Namespace(config=str(config), url=None, api_key=None, client_config=None)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nothing"))
    with pytest.raises(CliError, match="API key is needed"):
        remote_of(args)
    assert remote_of(args, need_key=False).url == "http://127.0.0.1:8181"  # the server config's port
    monkeypatch.setenv("INTERCHANGE_CLIENT_CONFIG", str(client))
    assert (remote_of(args).url, remote_of(args).key) == ("http://file.example:1", "ik_file")
    monkeypatch.setenv("INTERCHANGE_URL", "http://env.example:2")
    monkeypatch.setenv("INTERCHANGE_KEY", "ik_env_short")
    assert (remote_of(args).url, remote_of(args).key) == ("http://env.example:2", "ik_env_short")
    monkeypatch.setenv("INTERCHANGE_API_KEY", "ik_env")
    assert remote_of(args).key == "ik_env"
    flags = Namespace(config=str(config), url="http://flag.example:3/", api_key="ik_flag", client_config=None)
    assert (remote_of(flags).url, remote_of(flags).key) == ("http://flag.example:3", "ik_flag")

    client.write_text('url = "http://x"\ntoken = "y"\n', encoding="utf-8")
    with pytest.raises(CliError, match="unknown key"):
        remote_of(args)
    client.write_text('api_key = "ik_file"\n', encoding="utf-8")
    client.chmod(0o644)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        remote_of(args)
    assert "chmod 600" in err.getvalue()


# ---- progress ----------------------------------------------------------------------------------------


def test_progress_only_for_steps_that_take_time():
    out = io.StringIO()
    stages = Stages("sign", after=0.05, every=0.05, out=out)
    with stages.step("quick"):
        pass
    assert out.getvalue() == ""
    with stages.step("signing the envelope"):
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("interchange sign: signing the envelope ... ")
    assert lines[-1].startswith("interchange sign: signing the envelope: done in ")
    quiet = io.StringIO()
    with Stages("sign", quiet=True, after=0.0, out=quiet).step("x"):
        time.sleep(0.1)
    assert quiet.getvalue() == ""


def test_bar_counts_to_the_total():
    out = io.StringIO()
    bar = Bar("submit", 20, out=out)
    for n in range(20):
        bar.advance({"received": n + 1})
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 11 and lines[-1].startswith("interchange submit: [" + "#" * 30 + "] 20/20")
    assert "received 20" in lines[-1]


def test_sign_asks_for_the_password_on_a_terminal(site, tmp_path, monkeypatch):
    p12 = tmp_path / "unit.p12"
    p12.write_bytes((site / "data" / "demo" / f"unit-{DEMO_MST}.p12").read_bytes())
    asked = []

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(""))
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or "demo")
    code, out, err = cli(site, "sign", str(site / "d.xml"), "--p12", str(p12), "-o", str(tmp_path / "t.xml"))
    assert code == 0, err
    assert asked == [f"password of {p12}: "]

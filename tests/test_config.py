"""`load_config` (SPEC §10): the TOML file, INTERCHANGE_CONFIG, INTERCHANGE_<SECTION>_<KEY>
overrides, unknown keys, the default store URL and relative-path resolution."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

import interchange
from interchange.config import DEFAULT_CONFIG, REPO_ROOT, Config, load_config

FULL = """
data_dir = "var/data"

[server]
host = "0.0.0.0"
port = 9090
role = "ivan"
office_code = "HCM"
workers = 3

[store]
url = "postgresql+asyncpg://u:p@db/interchange"

[trust]
anchors_dir = "/etc/interchange/anchors"
crl_dir = "crl"
legacy_sha1 = true
cache_seconds = 60

[signing]
key = "k.pem"
cert = "/abs/cert.pem"

[limits]
max_body_bytes = 1024
max_depth = 10
max_elements = 100
max_files = 5
max_errors = 7

[registration]
required = true

[upstream]
url = "https://upstream.example/api"
api_key = "secret"

[targets]
"600" = "5 working days"
"04/DK-IVAN" = "2 working hours"
"""


pytestmark = pytest.mark.usefixtures("clean_environ")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path



def test_reads_every_section_of_the_file(tmp_path):
    cfg = load_config(write(tmp_path / "config.toml", FULL), environ={})
    assert cfg.base_dir == tmp_path.resolve()
    assert cfg.data_dir == "var/data"
    assert (cfg.server.host, cfg.server.port, cfg.server.role, cfg.server.office_code, cfg.server.workers) == (
        "0.0.0.0", 9090, "ivan", "HCM", 3,
    )
    assert cfg.store.url == cfg.store_url == "postgresql+asyncpg://u:p@db/interchange"
    assert cfg.trust.legacy_sha1 is True and cfg.trust.cache_seconds == 60
    assert (cfg.limits.max_body_bytes, cfg.limits.max_depth, cfg.limits.max_elements) == (1024, 10, 100)
    assert (cfg.limits.max_files, cfg.limits.max_errors) == (5, 7)
    assert cfg.registration.required is True
    assert (cfg.upstream.url, cfg.upstream.api_key) == ("https://upstream.example/api", "secret")
    assert cfg.targets == {"600": "5 working days", "04/DK-IVAN": "2 working hours"}


def test_keys_absent_from_the_file_keep_their_defaults(tmp_path):
    cfg = load_config(write(tmp_path / "c.toml", "[server]\nport = 8181\n"), environ={})
    default = Config()
    assert cfg.server.port == 8181
    assert cfg.server.host == default.server.host and cfg.server.workers == default.server.workers
    assert cfg.trust == default.trust and cfg.limits == default.limits and cfg.signing == default.signing
    assert cfg.data_dir == "data" and cfg.store.url == ""


def test_string_number_in_the_file_is_coerced_to_int(tmp_path):
    cfg = load_config(write(tmp_path / "c.toml", '[server]\nport = "8082"\n'), environ={})
    assert cfg.server.port == 8082


def test_interchange_config_picks_the_file_when_no_path_is_given(tmp_path, monkeypatch):
    picked = write(tmp_path / "elsewhere" / "picked.toml", "[server]\nport = 7001\n")
    monkeypatch.setenv("INTERCHANGE_CONFIG", str(picked))
    cfg = load_config()  # os.environ
    assert cfg.server.port == 7001 and cfg.base_dir == picked.parent.resolve()
    assert load_config(environ={"INTERCHANGE_CONFIG": str(picked)}).server.port == 7001

    # an explicit path wins over the variable
    explicit = write(tmp_path / "explicit.toml", "[server]\nport = 7002\n")
    assert load_config(explicit).server.port == 7002


def test_without_path_or_variable_the_repository_config_is_read():
    cfg = load_config(environ={})
    assert DEFAULT_CONFIG == REPO_ROOT / "config.toml" and cfg.base_dir == REPO_ROOT
    with DEFAULT_CONFIG.open("rb") as fh:
        expected = tomllib.load(fh)
    assert cfg.server.port == expected["server"]["port"]
    assert cfg.targets == expected.get("targets", {})


def test_explicit_path_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_config(tmp_path / "nope.toml", environ={})


def test_interchange_config_naming_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(environ={"INTERCHANGE_CONFIG": str(tmp_path / "typo.toml")})


def test_environment_overrides_with_coercion(tmp_path):
    path = write(tmp_path / "config.toml", FULL)
    environ = {
        "INTERCHANGE_SERVER_PORT": "8081",
        "INTERCHANGE_SERVER_WORKERS": "0",
        "INTERCHANGE_SERVER_OFFICE_CODE": "DNG",
        "INTERCHANGE_TRUST_LEGACY_SHA1": "false",
        "INTERCHANGE_REGISTRATION_REQUIRED": "0",
        "INTERCHANGE_LIMITS_MAX_BODY_BYTES": "2048",
        "INTERCHANGE_STORE_URL": "",
        "INTERCHANGE_DATA_DIR": str(tmp_path / "state"),
        "INTERCHANGE_TARGETS_630": "6 working days",
        "UNRELATED": "x",
    }
    cfg = load_config(path, environ=environ)
    assert cfg.server.port == 8081 and isinstance(cfg.server.port, int)
    assert cfg.server.workers == 0 and cfg.server.office_code == "DNG"
    assert cfg.trust.legacy_sha1 is False and cfg.registration.required is False
    assert cfg.limits.max_body_bytes == 2048
    assert cfg.data_path == tmp_path / "state"
    # an empty store URL from the environment falls back to SQLite in the (overridden) data_dir
    assert cfg.store_url == f"sqlite+aiosqlite:///{tmp_path / 'state' / 'interchange.db'}"
    assert cfg.targets == {"600": "5 working days", "04/DK-IVAN": "2 working hours", "630": "6 working days"}
    # untouched keys keep the file's values
    assert cfg.server.host == "0.0.0.0" and cfg.trust.cache_seconds == 60


@pytest.mark.parametrize(
    "text, expected",
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True),
     ("false", False), ("0", False), ("no", False), ("off", False), ("", False)],
)
def test_boolean_override_spellings(tmp_path, text, expected):
    path = write(tmp_path / "c.toml", "[trust]\nlegacy_sha1 = false\n[registration]\nrequired = true\n")
    cfg = load_config(path, environ={"INTERCHANGE_TRUST_LEGACY_SHA1": text, "INTERCHANGE_REGISTRATION_REQUIRED": text})
    assert cfg.trust.legacy_sha1 is expected and cfg.registration.required is expected


def test_overrides_are_read_from_os_environ(tmp_path, monkeypatch):
    path = write(tmp_path / "c.toml", "[server]\nport = 8080\n")
    monkeypatch.setenv("INTERCHANGE_SERVER_PORT", "8081")
    monkeypatch.setenv("INTERCHANGE_TRUST_LEGACY_SHA1", "true")
    monkeypatch.setenv("INTERCHANGE_DATA_DIR", "other-data")
    cfg = load_config(path)
    assert cfg.server.port == 8081 and cfg.trust.legacy_sha1 is True
    # a relative data_dir from the environment resolves against the config file's folder too
    assert cfg.data_path == tmp_path.resolve() / "other-data"


def test_a_bad_integer_override_is_an_error(tmp_path):
    with pytest.raises(ValueError):
        load_config(write(tmp_path / "c.toml", ""), environ={"INTERCHANGE_SERVER_PORT": "eighty"})


@pytest.mark.parametrize(
    "text, where",
    [
        ("colour = 1\n", "colour"),
        ("[server]\nprot = 8080\n", "server.prot"),
        ("[trust]\nlegacy_sha256 = true\n", "trust.legacy_sha256"),
        ("[storage]\nurl = 'x'\n", "storage"),
    ],
)
def test_unknown_key_in_the_file_is_an_error(tmp_path, text, where):
    with pytest.raises(ValueError, match=f"unknown key {where}"):
        load_config(write(tmp_path / "c.toml", text), environ={})


@pytest.mark.parametrize("text", ['base_dir = "/elsewhere"\n', 'path = "x"\n', 'store_url = "x"\n'])
def test_names_that_are_not_config_keys_are_unknown_keys(tmp_path, text):
    with pytest.raises(ValueError, match="unknown key"):
        load_config(write(tmp_path / "c.toml", text), environ={})


def test_a_boolean_written_as_a_string_is_not_left_truthy(tmp_path):
    try:
        cfg = load_config(write(tmp_path / "c.toml", '[trust]\nlegacy_sha1 = "false"\n'), environ={})
    except ValueError:
        return  # refusing it is fine too
    assert cfg.trust.legacy_sha1 is False


def test_default_store_url_is_a_sqlite_file_in_data_dir(tmp_path):
    cfg = load_config(write(tmp_path / "conf" / "config.toml", 'data_dir = "state"\n'), environ={})
    assert cfg.store.url == ""
    url = make_url(cfg.store_url)
    assert url.drivername == "sqlite+aiosqlite"
    assert Path(url.database) == tmp_path.resolve() / "conf" / "state" / "interchange.db"

    absolute = load_config(write(tmp_path / "c2.toml", f'data_dir = "{tmp_path / "abs"}"\n'), environ={})
    assert Path(make_url(absolute.store_url).database) == tmp_path / "abs" / "interchange.db"


def test_relative_paths_resolve_against_the_config_files_folder(tmp_path, monkeypatch):
    conf_dir = tmp_path / "etc" / "interchange"
    write(conf_dir / "config.toml", FULL)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # the file named by a path relative to the working directory
    cfg = load_config(Path("..") / "etc" / "interchange" / "config.toml", environ={})
    base = conf_dir.resolve()
    assert cfg.base_dir == base
    assert cfg.data_path == base / "var" / "data"
    assert cfg.path(cfg.trust.crl_dir) == base / "crl"
    assert cfg.path(cfg.trust.anchors_dir) == Path("/etc/interchange/anchors")  # absolute: kept
    # [signing] relative paths are under data_dir, absolute ones are kept
    assert cfg.signing_key_path == base / "var" / "data" / "k.pem"
    assert cfg.signing_cert_path == Path("/abs/cert.pem")

    # the defaults resolve the same way
    cfg = load_config(write(conf_dir / "minimal.toml", ""), environ={})
    assert cfg.path(cfg.trust.anchors_dir) == base / "certs" / "trusted"
    assert cfg.path(cfg.trust.crl_dir) == base / "certs" / "crl"
    assert cfg.signing_key_path == base / "data" / "server" / "notice-key.pem"
    assert cfg.signing_cert_path == base / "data" / "server" / "notice-cert.pem"
    assert Path(make_url(cfg.store_url).database) == base / "data" / "interchange.db"


# ---- each component takes its own section ----------------------------------------------------

WIRING = {"server.py", "cli", "config.py"}  # where the whole Config is read and handed out (cli: the package)


def _mentions_config(annotation: ast.expr | None) -> bool:
    """`Config`, `Config | None`, `"Config"`, `config.Config` ... (not `TrustConfig`)."""
    if annotation is None:
        return False
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return False
    return any(
        (isinstance(n, ast.Name) and n.id == "Config") or (isinstance(n, ast.Attribute) and n.attr == "Config")
        for n in ast.walk(annotation)
    )


def test_no_component_takes_the_whole_config():
    """Components are given their sections (and resolved paths) by the composition root; only
    server.py, cli.py and config.py handle the whole `Config`."""
    src = Path(interchange.__file__).parent
    offenders = []
    for path in sorted(src.rglob("*.py")):
        name = path.relative_to(src).as_posix()
        if name in WIRING or name.split("/", 1)[0] in WIRING:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                    if arg is not None and _mentions_config(arg.annotation):
                        offenders.append(f"{name}:{node.lineno} {node.name}({arg.arg}: Config)")
            elif isinstance(node, ast.ImportFrom) and node.module == "interchange.config":
                if any(alias.name == "Config" for alias in node.names):
                    offenders.append(f"{name}:{node.lineno} imports Config")
    assert offenders == []

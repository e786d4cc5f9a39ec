"""The client side of the `interchange` command: which server and which API key (flags, the
environment, a small client config file), and one HTTP client for every client command
(`submit`, `dossiers`, `hi-card`).

Where each setting comes from, first found wins (SPEC §10):

  server URL   --url, $INTERCHANGE_URL, `url` in the client config, else the server config's
               [server] host and port (http://127.0.0.1:8080 by default)
  API key      --api-key, $INTERCHANGE_API_KEY (or $INTERCHANGE_KEY), `api_key` in the client config

The client config is a TOML file named by --client-config, else $INTERCHANGE_CLIENT_CONFIG, else
~/.config/interchange/client.toml (when it exists):

    url = "http://127.0.0.1:8080"
    api_key = "ik_..."
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from interchange.cli.common import EXIT_FAILED, EXIT_USAGE, CliError, config_of

URL_ENV = "INTERCHANGE_URL"
KEY_ENVS = ("INTERCHANGE_API_KEY", "INTERCHANGE_KEY")
CLIENT_CONFIG_ENV = "INTERCHANGE_CLIENT_CONFIG"
CLIENT_KEYS = ("url", "api_key")


def default_client_config() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "interchange" / "client.toml"


def client_config(args) -> dict[str, str]:
    """The client config's settings ({} when there is none)."""
    named = getattr(args, "client_config", None) or os.environ.get(CLIENT_CONFIG_ENV)
    path = Path(named) if named else default_client_config()
    if not path.exists():
        if named:
            raise CliError(f"client config not found: {path}")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"client config {path}: not TOML ({exc})") from None
    unknown = sorted(set(data) - set(CLIENT_KEYS))
    if unknown:
        raise CliError(f"client config {path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(CLIENT_KEYS)})")
    if not all(isinstance(v, str) for v in data.values()):
        raise CliError(f"client config {path}: url and api_key must be strings")
    if "api_key" in data and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"interchange: warning: {path} holds an API key and others may read it (chmod 600 {path})",
              file=sys.stderr)
    return data


@dataclass
class Remote:
    url: str
    key: str | None


def remote_of(args, *, need_key: bool = True) -> Remote:
    """The server and key for a client command (see the module docstring)."""
    file = client_config(args)
    url = getattr(args, "url", None) or os.environ.get(URL_ENV) or file.get("url")
    if not url:
        cfg = config_of(args)
        host = "127.0.0.1" if cfg.server.host in ("0.0.0.0", "::", "") else cfg.server.host
        url = f"http://{host}:{cfg.server.port}"
    if not url.startswith(("http://", "https://")):
        raise CliError(f"server URL {url!r} must start with http:// or https://")
    key = getattr(args, "api_key", None) or next((os.environ[n] for n in KEY_ENVS if os.environ.get(n)), None)
    key = key or file.get("api_key")
    if need_key and not key:
        raise CliError(
            "an API key is needed: --api-key KEY, $INTERCHANGE_API_KEY, or api_key in the client config "
            f"({default_client_config()}); `interchange dev-setup` prints a demo one, `interchange keys create` makes others",
            EXIT_USAGE,
        )
    return Remote(url.rstrip("/"), key)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return {}
        return value if isinstance(value, dict) else {"items": value}

    def problem(self) -> str:
        """A problem answer in one line: status, code, English then Vietnamese text (RFC 9457
        problem+json: `detail_en`/`detail`; or `message`), else the start of the body."""
        j = self.json()
        code = j.get("code") or ""
        en = j.get("detail_en") or j.get("message") or j.get("title_en")
        vi = j.get("detail") if j.get("detail") != en else None
        text = " / ".join(t for t in (en, vi) if t) or self.body[:200].decode("utf-8", "replace")
        return f"HTTP {self.status}: {code} {text}".replace("  ", " ").strip()


class Client:
    """`async with Client(remote) as c: await c.get(path)`: aiohttp, one session, no retries.
    A server that cannot be reached is a CliError that says where it looked."""

    def __init__(self, remote: Remote, *, timeout: float = 300.0, connections: int = 8):
        self.remote = remote
        self.timeout = timeout
        self.connections = connections
        self.session = None

    async def __aenter__(self) -> Client:
        import aiohttp

        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=self.connections),
            headers={"Authorization": f"Bearer {self.remote.key}"} if self.remote.key else {},
        )
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, **kw) -> Answer:
        import aiohttp

        url = f"{self.remote.url}{path}"
        try:
            async with self.session.request(method, url, **kw) as resp:
                return Answer(resp.status, dict(resp.headers), await resp.read())
        except aiohttp.ClientConnectorError as exc:
            raise CliError(f"cannot reach the server at {self.remote.url} ({exc.os_error or exc}); is it running? "
                           f"give --url or ${URL_ENV}", EXIT_FAILED) from None
        except aiohttp.InvalidURL:
            raise CliError(f"not a valid URL: {url}", EXIT_USAGE) from None
        except TimeoutError:
            raise CliError(f"no answer from {url} within {self.timeout:.0f} s", EXIT_FAILED) from None
        except aiohttp.ClientError as exc:
            raise CliError(f"{method} {url}: {type(exc).__name__}: {exc}", EXIT_FAILED) from None

    async def get(self, path: str, **kw) -> Answer:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw) -> Answer:
        return await self.request("POST", path, **kw)


def add_remote_options(p) -> None:
    """--url, --api-key, --client-config on a client command."""
    p.add_argument("--url", help=f"server base URL (default: ${URL_ENV}, else `url` in the client config, "
                                 "else the config's [server] address, http://127.0.0.1:8080)")
    p.add_argument("--api-key", help="the API key (default: $INTERCHANGE_API_KEY or $INTERCHANGE_KEY, else "
                                     "`api_key` in the client config)")
    p.add_argument("--client-config", metavar="FILE",
                   help=f"client config, TOML with url and api_key (default: ${CLIENT_CONFIG_ENV}, "
                        "else ~/.config/interchange/client.toml)")

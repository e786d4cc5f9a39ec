"""Callback URLs: what may be registered, the POST of one notice, and a circuit breaker per host.

A callback URL is chosen by a caller, and the server POSTs to it: unless `allow_private_urls`
is on, URLs that name or resolve to loopback, private, link-local or otherwise non-public
addresses are refused (SSRF): by their shape at registration (a literal address, `localhost`,
a special-use name), with no DNS lookup in the request, and by what the name resolves to at every
connection (so a name re-pointed later gains nothing). Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
from aiohttp.resolver import ThreadedResolver

from interchange.jobs.policy import CircuitBreaker, retry_after

MAX_URL = 2000
SPECIAL_USE = {"invalid", "test", "example", "local", "internal", "localdomain", "home", "lan"}  # never public names
RESOLVE_TIMEOUT = 10.0  # seconds for the name of a callback URL being registered to resolve
ANSWER_EXCERPT = 300  # bytes of a refusing receiver's answer kept with the attempt


class UrlRefused(ValueError):
    """A callback URL that may not be used; the message says why."""


def _non_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_url_shape(url: object, *, allow_private: bool) -> str:
    """The URL if it is an absolute http(s) URL without credentials (and, unless allowed, not
    a literal non-public address); UrlRefused otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise UrlRefused('"url" must be a non-empty string')
    url = url.strip()
    if len(url) > MAX_URL:
        raise UrlRefused(f"the URL is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        raise UrlRefused(f"the URL cannot be read: {exc}") from None
    if parts.scheme not in ("https", "http"):
        raise UrlRefused(f"the URL must start with https:// or http://, not {parts.scheme or '(no scheme)'}")
    if not parts.hostname:
        raise UrlRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("the URL must not carry credentials (user:password@); put a secret in the path instead")
    if parts.fragment:
        raise UrlRefused("the URL must not have a #fragment")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise UrlRefused("the URL must not contain spaces or control characters")
    if not allow_private:
        try:
            ip = ipaddress.ip_address(parts.hostname)
        except ValueError:
            ip = None
        if ip is not None and _non_public(ip):
            raise UrlRefused(f"the URL's host {parts.hostname} is not a public address (loopback or private networks are refused)")
        host = parts.hostname.lower().rstrip(".")
        if host == "localhost" or host.endswith(".localhost"):
            raise UrlRefused(f"the URL's host {parts.hostname} is not a public address (loopback is refused)")
        if host.rsplit(".", 1)[-1] in SPECIAL_USE:
            raise UrlRefused(f"the URL's host {parts.hostname} is a special-use name (RFC 6761), never a public one")
    if parts.hostname.lower().rstrip(".").endswith(".invalid"):
        raise UrlRefused(f"the URL's host {parts.hostname} is a special-use name (RFC 6761) that never resolves")
    return url


async def check_url(url: object, *, allow_private: bool) -> str:
    """`check_url_shape`, and the host must resolve, to public addresses only unless allowed."""
    url = check_url_shape(url, allow_private=allow_private)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):  # a hanging resolver must not hang the request
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise UrlRefused(f"the URL's host {parts.hostname} did not resolve within {RESOLVE_TIMEOUT:g} s") from None
    except OSError as exc:
        raise UrlRefused(f"the URL's host {parts.hostname} does not resolve ({exc.strerror or exc})") from None
    if not allow_private:
        for info in infos:
            address = info[4][0]
            if _non_public(ipaddress.ip_address(address.split("%", 1)[0])):
                raise UrlRefused(
                    f"the URL's host {parts.hostname} resolves to {address}, not a public address "
                    "(loopback or private networks are refused)"
                )
    return url


class _PublicOnlyResolver(ThreadedResolver):
    """Resolves as usual, but refuses names that resolve to non-public addresses (at connect time)."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):  # type: ignore[override]
        found = await super().resolve(host, port, family)
        for info in found:
            if _non_public(ipaddress.ip_address(info["host"])):
                raise OSError(f"{host} resolves to {info['host']}, not a public address: refused")
        return found


@dataclass
class Answer:
    status: int | None  # None: no HTTP answer (timeout, connection refused, refused address)
    error: str | None  # None: delivered (2xx)
    duration_ms: int
    retry_after: str | None = None  # the receiver's Retry-After on a 429 or 503: when to try again

    def wait(self, now: datetime) -> timedelta | None:
        """The wait the receiver asked for (429/503 with Retry-After), else None."""
        return retry_after(self.retry_after, now) if self.status in (429, 503) else None


async def post_notice(
    url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool
) -> Answer:
    """POST one notice; never raises for what the receiver or the network does."""
    started = time.perf_counter()

    def answer(status: int | None, error: str | None, wait: str | None = None) -> Answer:
        return Answer(status, error, int((time.perf_counter() - started) * 1000), wait)

    try:
        check_url_shape(url, allow_private=allow_private)
    except UrlRefused as exc:
        return answer(None, f"refused: {exc}")
    connector = aiohttp.TCPConnector(
        force_close=True, resolver=None if allow_private else _PublicOnlyResolver()
    )
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as session:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    return answer(resp.status, None)
                excerpt = (await resp.content.read(ANSWER_EXCERPT)).decode("utf-8", "replace").strip()
                reason = f"HTTP {resp.status} {resp.reason or ''}".strip()
                return answer(resp.status, f"{reason}: {excerpt}" if excerpt else reason, resp.headers.get("Retry-After"))
    except TimeoutError:
        return answer(None, f"timeout: no answer within {timeout:g} s")
    except aiohttp.ClientConnectorError as exc:
        return answer(None, f"connection failed: {exc.os_error or exc}")
    except (aiohttp.ClientError, OSError) as exc:
        return answer(None, f"{type(exc).__name__}: {exc}")


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{(parts.hostname or '').lower()}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class HostBreakers:
    """A circuit breaker per callback host, in this process: after `failures` consecutive failed
    attempts the host's circuit opens for `cooldown`; attempts meanwhile wait (they are not
    attempts). Then one trial goes: success closes the circuit, failure opens it again."""

    def __init__(self, failures: int, cooldown: timedelta):
        self.failures = max(1, failures)
        self.cooldown = cooldown
        self._hosts: dict[str, CircuitBreaker] = {}

    def admit(self, host: str, now: datetime) -> datetime | None:
        """None: go ahead. Else: wait until then."""
        breaker = self._hosts.get(host)
        return None if breaker is None or breaker.allow(now) else breaker.retry_at(now)

    def record(self, host: str, ok: bool, now: datetime) -> None:
        if ok:
            self._hosts.pop(host, None)  # a healthy host needs no state
        else:
            self._hosts.setdefault(host, CircuitBreaker(self.failures, self.cooldown)).failure(now)

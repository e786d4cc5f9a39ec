"""HTTP to the upstream agency server: one aiohttp session per process, made on first use
(inside the event loop) and closed on shutdown."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from interchange.spool import Spooled

MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a notice with the capped error list is far smaller


@dataclass
class Answer:
    status: int
    body: bytes
    retry_after: str | None  # the Retry-After header, as sent
    transaction_id: str | None  # X-Transaction-Id (unsigned: the signed MaGiaoDich is what counts)


class UpstreamError(Exception):
    """The upstream could not be reached, or its answer not read in time."""

    def __init__(self, outcome: str, message: str):
        super().__init__(message)
        self.outcome = outcome  # unreachable | timeout


class UpstreamClient:
    def __init__(self, url: str, api_key: str, timeout_seconds: float):
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    async def submit(self, body: bytes | Spooled, idempotency_key: str) -> Answer:
        """POST the exact bytes (a large original from its file, as it is read); the
        Idempotency-Key makes a resend after a lost answer a replay (200)."""
        headers = {"Content-Type": "application/xml", "Idempotency-Key": idempotency_key}
        if not isinstance(body, Spooled):
            return await self._call("POST", f"{self.url}/api/v1/dossiers", data=body, headers=headers)
        with open(body.path, "rb") as fh:  # aiohttp sends a file with its length, a chunk at a time
            return await self._call("POST", f"{self.url}/api/v1/dossiers", data=fh, headers=headers)

    async def ket_qua(self, upstream_id: str) -> Answer:
        """The upstream's KET_QUA of a dossier it received (404 while there is none)."""
        return await self._call("GET", f"{self.url}/api/v1/dossiers/{quote(upstream_id, safe='')}/notices/ket-qua")

    async def callback(self) -> Answer:
        """This I-VAN's callback URL registered upstream (404: none)."""
        return await self._call("GET", f"{self.url}/api/v1/callback")

    async def register_callback(self, url: str) -> Answer:
        """Register (or replace) this I-VAN's callback URL upstream: the agency POSTs every notice
        of the dossiers this I-VAN forwarded there (interchange.delivery)."""
        return await self._call("PUT", f"{self.url}/api/v1/callback", json={"url": url})

    async def _call(self, method: str, url: str, **kw) -> Answer:
        try:
            # No redirects: a POST must not be resent elsewhere; a redirect is a wrong upstream.url.
            async with self._open().request(method, url, allow_redirects=False, **kw) as resp:
                chunks, size = [], 0
                async for chunk in resp.content.iter_any():  # read(n) would stop at the first chunk
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        raise UpstreamError("unreachable", f"{method} {url}: answer larger than {MAX_ANSWER_BYTES} bytes")
                    chunks.append(chunk)
                body = b"".join(chunks)
                return Answer(resp.status, body, resp.headers.get("Retry-After"), resp.headers.get("X-Transaction-Id"))
        except TimeoutError as exc:
            raise UpstreamError("timeout", f"{method} {url}: no answer within {self._timeout.total:g} s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError("unreachable", f"{method} {url}: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

"""Role ivan: the agency pushes its notices to this I-VAN, so that a relayed KET_QUA comes within
seconds of the agency's instead of at the next poll (SPEC §8, docs/forwarding-push.md).

The I-VAN registers a callback URL with the agency through the agency's own callback API
(`PUT /api/v1/callback` with its ivan key): `[upstream] push_url` (this server as the agency
reaches it) + `/api/v1/upstream/notices/<token>`. The agency then POSTs every notice of the
dossiers this I-VAN forwarded there (interchange.delivery: at least once, retried with backoff).
The token is derived from the I-VAN's upstream API key (HMAC), so every process of the I-VAN
registers the same URL, nothing is stored, and a rotated key moves the URL with it. It only
keeps strangers from making the server verify signatures: what a pushed notice is worth is
decided as for a polled one (`Forwarder.check_result`): signed by the agency's pinned notice
signer, about the exact bytes forwarded, naming the agency's transaction of that forwarding.
A KET_QUA that passes settles the dossier as a polled one does (`Forwarder.keep_result`), once.

Polling stays: the first poll still comes `first_retry_seconds` after the forwarding, then with
backoff, and finds the KET_QUA kept already when the push came; when the push never comes (the
agency cannot reach this server), the poll brings the KET_QUA as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from interchange.jobs.policy import backoff
from interchange.kinds import SLUG_RESULT, WORK_RELAY
from interchange.store.forwarding import FORWARDED, Attempt, Forwarding

from .client import UpstreamError
from .notices import BadNotice
from .work import ALL, BAD_NOTICE, RELAYED, Forwarder

log = logging.getLogger(__name__)

PUSH_PATH = "/api/v1/upstream/notices/"
PUSHED = "push"  # forward_attempts.kind of a pushed notice
DUPLICATE = "duplicate"  # pushed again, or polled first: kept once already
RECHECK = timedelta(hours=1)  # the registration upstream is looked at again this often
FIRST_RETRY, MAX_RETRY = timedelta(seconds=5), timedelta(minutes=10)  # a failed registration is tried again
UNKNOWN_WAIT = 2.0  # seconds a push naming a transaction not (yet) known here waits for its forwarding's row
# A push that came before its forwarding's row is asked back soon (503 + Retry-After: 5, 10, 20 ...
# seconds by the agency's X-Delivery-Attempt), not at the agency's usual 3-minute backoff.
NOT_YET_RETRY, NOT_YET_RETRY_MAX = 5, 300


def not_yet_retry(attempt: str | None) -> int:
    """The Retry-After (seconds) for a push of a transaction not known here yet, on its n-th attempt."""
    n = int(attempt) if attempt and attempt.isdigit() else 1
    return min(NOT_YET_RETRY * 2 ** min(max(n - 1, 0), 16), NOT_YET_RETRY_MAX)


def push_token(api_key: str) -> str:
    return hmac.new(api_key.encode(), b"interchange upstream push v1", hashlib.sha256).hexdigest()[:32]


@dataclass
class Pushed:
    """What became of a pushed notice: the HTTP status to answer the agency with (2xx: delivered,
    no retry), an outcome and why."""

    status: int
    outcome: str  # relayed | duplicate | ignored | unknown | bad_notice
    message: str
    dossier_id: str | None = None
    retry_after: int | None = None  # seconds, for a 503: come back then


class PushChannel:
    def __init__(self, forwarder: Forwarder, push_url: str, api_key: str):
        self.forwarder = forwarder
        self.token = push_token(api_key)
        self.url = push_url.rstrip("/") + PUSH_PATH + self.token
        self.live: bool | None = None  # registered upstream (None: not known yet)
        self.last_error: str | None = None

    def admits(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.token.encode())

    # -- the registration upstream ----------------------------------------------------------------

    async def register(self) -> bool:
        """Make sure the agency has this I-VAN's callback URL (a look first; registered when it has
        another or none). Whether it has it now; never raises."""
        client = self.forwarder.client
        try:
            answer = await client.callback()
            if answer.status == 200 and _url_of(answer.body) == self.url:
                return self._registered(True, None)
            answer = await client.register_callback(self.url)
        except UpstreamError as exc:
            return self._registered(False, str(exc))
        if answer.status in (200, 201):
            log.info("forwarding: the agency at %s pushes its notices to %s", client.url, self.url.rsplit("/", 1)[0])
            return self._registered(True, None)
        return self._registered(False, f"HTTP {answer.status} from PUT {client.url}/api/v1/callback: "
                                       f"{answer.body[:300].decode('utf-8', 'replace')}")  # fmt: skip

    def _registered(self, live: bool, error: str | None) -> bool:
        if not live and error != self.last_error:
            log.warning("forwarding: the agency's push channel is not registered (%s); its KET_QUA are polled", error)
        self.live, self.last_error = live, error
        return live

    async def keep_registered(self) -> None:
        """Register now, then look again every RECHECK; after a failure, again with backoff."""
        failures = 0
        while True:
            if await self.register():
                failures, wait = 0, RECHECK
            else:
                failures += 1
                wait = backoff(failures, FIRST_RETRY, MAX_RETRY)
            await asyncio.sleep(wait.total_seconds())

    async def running(self, _app=None) -> AsyncIterator[None]:
        """An aiohttp cleanup context: keep the registration while the server runs."""
        task = asyncio.get_running_loop().create_task(self.keep_registered(), name="upstream-push-registration")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- a pushed notice --------------------------------------------------------------------------

    async def accept(self, upstream_id: str, kind: str, xml: bytes, now: datetime, attempt: str | None = None) -> Pushed:
        """A notice the agency pushed, with its X-Transaction-Id (the agency's transaction),
        X-Notice-Kind and X-Delivery-Attempt. Only a KET_QUA is kept: the upstream's receipt came
        with the forwarding."""
        if kind != SLUG_RESULT:
            return Pushed(200, "ignored", f"a {kind or 'notice'} is not relayed from a push (only {SLUG_RESULT})")
        fw = await self._forwarding(upstream_id)
        if fw is None:
            # The agency's answer to the forwarding may not be written here yet (a busy I-VAN):
            # the agency pushes again after Retry-After, and the poll comes meanwhile.
            return Pushed(503, "unknown", f"no dossier forwarded from here is known upstream as {upstream_id!r} (yet)",
                          retry_after=not_yet_retry(attempt))  # fmt: skip
        dossier = await self.forwarder.store.dossiers.get(fw.dossier_id, ALL)
        if dossier is None:
            return Pushed(409, "unknown", f"the dossier forwarded as {upstream_id!r} is gone")  # for good
        if fw.relayed_at is not None:
            return Pushed(200, DUPLICATE, "its KET_QUA is kept already", dossier.id)
        started = time.perf_counter()
        try:
            notice = await self.forwarder.check_result(xml, dossier, upstream_id, now)
        except BadNotice as exc:
            error = f"pushed KET_QUA not kept: {exc}"
            await self._record(dossier.id, now, started, BAD_NOTICE, upstream_id, error=error)
            log.warning("dossier %s: %s", dossier.id, error)
            return Pushed(422, BAD_NOTICE, error, dossier.id)
        settled = await self.forwarder.keep_result(dossier, notice, now)
        outcome = RELAYED if settled is not None else DUPLICATE
        await self._record(dossier.id, now, started, outcome, upstream_id)
        return Pushed(200, outcome, "KET_QUA kept and relayed" if settled else "its KET_QUA is kept already",
                      dossier.id)  # fmt: skip

    async def _forwarding(self, upstream_id: str) -> Forwarding | None:
        """The forwarding known upstream as `upstream_id`. The agency may push its KET_QUA before
        this I-VAN has written the agency's receipt (it checks the receipt's signature first):
        a moment is given for that before the push is turned away."""
        if not upstream_id:
            return None
        deadline = time.monotonic() + UNKNOWN_WAIT
        while True:
            fw = await self.forwarder.store.forwarding.of_upstream(upstream_id)
            if fw is not None and fw.state == FORWARDED:
                return fw
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.1)

    async def _record(self, dossier_id: str, now: datetime, started: float, outcome: str, upstream_id: str, *,
                      error: str | None = None) -> None:  # fmt: skip
        ms = int((time.perf_counter() - started) * 1000)
        attempt = Attempt(kind=PUSHED, at=now, outcome=outcome, duration_ms=ms, error=error, upstream_id=upstream_id)
        await self.forwarder.store.forwarding.pushed(dossier_id, now, attempt, relayed=outcome in (RELAYED, DUPLICATE),
                                                     relay_kind=WORK_RELAY)  # fmt: skip
        self.forwarder.count(PUSHED, outcome)


def _url_of(body: bytes) -> str | None:
    try:
        found = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return found.get("url") if isinstance(found, dict) else None

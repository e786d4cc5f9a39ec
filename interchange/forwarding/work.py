"""The work handlers of the `ivan` role: WORK_FORWARD (the exact bytes upstream) and WORK_RELAY (the
upstream's KET_QUA back), sharing one HTTP client, circuit breaker and notice checker.

One run makes at most one request. Its outcome is written in one transaction
(`forwarding.store.write`); when another try is due later, the handler puts its own work item
back in the queue at that time (backoff, Retry-After, or the breaker's cool-down), in the same
transaction as the try's row, and raises `Rescheduled` (a RetryAt: the runner's own requeue then
finds nothing to change). Its claim count goes back to 0 there, so the runner's limit of claims
(meant for items that crash their process) never ends a forwarding that is merely waiting for the
upstream; the tries are counted in the forwarding's row. Runs are idempotent: a run after a crash
finds the forwarding decided (or the KET_QUA stored) and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from interchange.config import UpstreamConfig
from interchange.jobs.policy import CircuitBreaker, backoff, retry_after
from interchange.jobs.registration import CHAP_NHAN, KHONG_CHAP_NHAN
from interchange.jobs.runner import GiveUp, Handler, RetryAt
from interchange.kinds import (
    NOTICE_RECEIPT,
    NOTICE_REFUSAL,
    NOTICE_RESULT,
    SLUG_UPSTREAM_RECEIPT,
    SLUG_UPSTREAM_REFUSAL,
    WORK_FORWARD,
    WORK_RELAY,
)
from interchange.spool import Spooled
from interchange.store.forwarding import FAILED, FORWARDED, PENDING, REFUSED_UPSTREAM, Attempt, Change
from interchange.store.store import Store
from interchange.store.types import ACCEPTED, REJECTED, Dossier, Scope, Settlement, Unit, WorkItem
from interchange.store.types import REFUSED as REFUSED_STATE

from .client import UpstreamClient, UpstreamError
from .notices import BadNotice, NoticeChecker, UpstreamNotice, error_summary

log = logging.getLogger(__name__)
ALL = Scope(all=True)
RETRYABLE_4XX = (408, 429)  # a 4xx that a later try may pass; 422 is the upstream's TU_CHOI
PAUSING = (429, 503)  # the upstream asks everyone to wait (Retry-After): the breaker opens that long

# Attempt outcomes (forward_attempts.outcome and the interchange_forward_attempts counter).
ACCEPTED_UPSTREAM = "accepted"  # 202 TIEP_NHAN
REPLAYED = "replayed"  # 200: the upstream had it already (a resend after a lost answer)
REFUSED = "refused"  # TU_CHOI: the upstream refused the dossier
RELAYED = "relayed"  # the KET_QUA was fetched and kept
NOT_YET = "not_yet"  # no KET_QUA yet (404)
UNREACHABLE, TIMEOUT = "unreachable", "timeout"
SERVER_ERROR = "server_error"  # 5xx
THROTTLED = "throttled"  # 429
CLIENT_ERROR = "client_error"  # another 4xx (or a redirect): the request itself is wrong, no retry
BAD_NOTICE = "bad_notice"  # an answer whose notice we may not keep (signature, BamHoSo, kind)
OUTCOMES = (ACCEPTED_UPSTREAM, REPLAYED, REFUSED, RELAYED, NOT_YET, UNREACHABLE, TIMEOUT, SERVER_ERROR,
            THROTTLED, CLIENT_ERROR, BAD_NOTICE)  # fmt: skip


class Rescheduled(RetryAt):
    """The handler put its work item back in the queue itself, from `when` (the message says why)."""

    handled = True


class ForwardingFailed(GiveUp):
    """The upstream refused the request itself; the work item is failed, no retry helps."""

    handled = True  # failed in the transaction of the try's row


@dataclass
class Hooks:
    """Metrics callbacks (interchange.api.app.Metrics); each may be None."""

    attempt: Callable[[str, str], None] | None = None  # (kind forward|poll, outcome)
    forwarded: Callable[[float], None] | None = None  # seconds from receipt to the upstream's receipt
    result: Callable[[Dossier, datetime], None] | None = None  # the KET_QUA relayed


class Forwarder:
    def __init__(
        self,
        store: Store,
        client: UpstreamClient,
        breaker: CircuitBreaker,
        checker: NoticeChecker,
        *,
        first_retry: timedelta,
        max_retry: timedelta,
        hooks: Hooks | None = None,
    ):
        self.store = store
        self.client = client
        self.breaker = breaker
        self.checker = checker
        self.first_retry = first_retry
        self.max_retry = max_retry
        self.hooks = hooks or Hooks()

    @classmethod
    def from_config(
        cls, up: UpstreamConfig, store: Store, checker: NoticeChecker, *, hooks: Hooks | None = None,
        on_breaker: Callable[[str], None] | None = None,
    ) -> Forwarder:
        """The role ivan's forwarder from `[upstream]`; ValueError when it cannot work."""
        up.check()
        return cls(
            store,
            UpstreamClient(up.url, up.api_key, up.timeout_seconds),
            CircuitBreaker(up.breaker_failures, timedelta(seconds=up.breaker_cooldown_seconds), on_change=on_breaker),
            checker,
            first_retry=timedelta(seconds=up.first_retry_seconds),
            max_retry=timedelta(seconds=up.max_retry_seconds),
            hooks=hooks,
        )

    def handlers(self) -> dict[str, Handler]:
        return {WORK_FORWARD: self.forward, WORK_RELAY: self.relay}

    async def close(self) -> None:
        await self.client.close()

    # -- WORK_FORWARD -------------------------------------------------------------------------------

    async def forward(self, item: WorkItem, now: datetime) -> None:
        fw = await self.store.forwarding.of(item.dossier_id)
        if fw is not None and fw.state != PENDING:
            return  # decided by an earlier run whose process died before marking the item done
        if not self.breaker.allow(now):
            await self._defer(item, now, WORK_FORWARD)
        dossier = await self.store.dossiers.get(item.dossier_id, ALL)
        body = await self.store.dossiers.original_file(item.dossier_id, ALL) if dossier is not None else None
        if dossier is None or body is None:
            raise LookupError(f"no dossier {item.dossier_id!r} to forward")
        tries = (fw.attempts if fw else 0) + 1
        started = time.perf_counter()
        try:
            answer = await self.client.submit(body, idempotency_key=dossier.id)
        except UpstreamError as exc:
            self.breaker.failure(now)
            await self._retry(item, now, WORK_FORWARD, tries, exc.outcome, str(exc), _ms(started))
            return
        finally:
            if isinstance(body, Spooled):  # a large original, sent from its file
                body.remove()
        ms = _ms(started)
        status = answer.status
        if status in (200, 202, 422):
            self.breaker.success()  # the upstream works, whatever it thinks of the notice
            try:
                notice = await asyncio.to_thread(
                    self.checker.check, answer.body, sha256=dossier.sha256, kinds=(NOTICE_RECEIPT, NOTICE_REFUSAL), at=now
                )
                # 200 replays either notice (a resend after a lost answer, Idempotency-Key).
                if (notice.kind, status) in ((NOTICE_RECEIPT, 422), (NOTICE_REFUSAL, 202)):
                    raise BadNotice(f"HTTP {status} with a {notice.kind} notice")
            except BadNotice as exc:
                await self._retry(item, now, WORK_FORWARD, tries, BAD_NOTICE,
                                  f"HTTP {status}, notice not kept: {exc}", ms, status=status)  # fmt: skip
                return
            await self._forwarded(item, now, dossier, tries, notice, status, ms)
            return
        wait = None
        if status in PAUSING:
            wait = retry_after(answer.retry_after, now)
        if status >= 500 or status in RETRYABLE_4XX:
            self.breaker.failure(now, pause=wait if status in PAUSING else None)
            outcome = THROTTLED if status == 429 else SERVER_ERROR
            await self._retry(item, now, WORK_FORWARD, tries, outcome,
                              f"HTTP {status}: {error_summary(answer.body)}", ms, status=status, wait=wait)  # fmt: skip
            return
        self.breaker.success()
        if status in (401, 403):
            # Most likely the upstream key being rotated: an operator fixes [upstream] api_key and
            # the dossiers go on (tries visible in the API), rather than failing for good.
            await self._retry(item, now, WORK_FORWARD, tries, CLIENT_ERROR,
                              f"HTTP {status}: {error_summary(answer.body)} (check [upstream] api_key)", ms,
                              status=status)  # fmt: skip
            return
        error = f"HTTP {status} from {self.client.url}: {error_summary(answer.body)}"
        if 300 <= status < 400:
            error += " (a redirect: set upstream.url to the server's final URL)"
        await self.store.forwarding.write(item, now, Change(
            forwarding={"state": FAILED, "attempts": tries, "last_error": error, "next_try_at": None},
            attempt=Attempt(kind=WORK_FORWARD, at=now, outcome=CLIENT_ERROR, duration_ms=ms, http_status=status,
                                   error=error),
            audit_data={"state": FAILED, "http_status": status, "error": error, "attempts": tries},
            fail=error,
        ))  # fmt: skip
        self.count(WORK_FORWARD, CLIENT_ERROR)
        log.error("forwarding %s failed for good: %s", item.dossier_id, error)
        raise ForwardingFailed(f"{error}; not tried again (the request itself was refused)")

    async def _forwarded(
        self, item: WorkItem, now: datetime, dossier: Dossier, tries: int, notice: UpstreamNotice, status: int, ms: int
    ) -> None:
        received = notice.kind == NOTICE_RECEIPT
        outcome = (ACCEPTED_UPSTREAM if status == 202 else REPLAYED) if received else REFUSED
        state = FORWARDED if received else REFUSED_UPSTREAM
        enqueue = None
        if received:  # poll for its KET_QUA, first after the first backoff; due at the upstream's HanTraKetQua
            enqueue = (WORK_RELAY, notice.due_at or dossier.due_at or now + self.max_retry, now + self.first_retry)
        await self.store.forwarding.write(item, now, Change(
            forwarding={"state": state, "attempts": tries, "upstream_id": notice.transaction_id, "forwarded_at": now,
                        "result_due_at": notice.due_at, "last_error": None,
                        "next_try_at": enqueue[2] if enqueue else None},
            attempt=Attempt(kind=WORK_FORWARD, at=now, outcome=outcome, duration_ms=ms, http_status=status,
                                   upstream_id=notice.transaction_id),
            notice=(SLUG_UPSTREAM_RECEIPT if received else SLUG_UPSTREAM_REFUSAL, notice.xml),
            audit_data={"state": state, "http_status": status, "upstream_id": notice.transaction_id,
                        "so_ho_so": notice.so_ho_so, "attempts": tries, "sha256": dossier.sha256.hex(),
                        "errors": sorted({p["code"] for p in notice.problems if p.get("code")})},
            enqueue=enqueue,
            # refused by the agency: no KET_QUA will come, the dossier ends here (and, as after any
            # refusal, the same bytes sent again are judged again)
            dossier=None if received else {"state": REFUSED_STATE, "result_at": now, "replay_key": None},
        ))  # fmt: skip
        self.count(WORK_FORWARD, outcome)
        if self.hooks.forwarded is not None:
            self.hooks.forwarded((now - dossier.received_at).total_seconds())

    # -- WORK_RELAY ---------------------------------------------------------------------------------

    async def relay(self, item: WorkItem, now: datetime) -> None:
        fw = await self.store.forwarding.of(item.dossier_id)
        if fw is None or fw.state != FORWARDED or fw.upstream_id is None:
            raise LookupError(f"dossier {item.dossier_id}: nothing forwarded to poll a result for")
        if fw.relayed_at is not None:
            return
        if not self.breaker.allow(now):
            await self._defer(item, now, WORK_RELAY)
        dossier = await self.store.dossiers.get(item.dossier_id, ALL)
        assert dossier is not None  # the forwarding's row is the dossier's (ON DELETE CASCADE)
        polls = fw.polls + 1
        started = time.perf_counter()
        try:
            answer = await self.client.ket_qua(fw.upstream_id)
        except UpstreamError as exc:
            self.breaker.failure(now)
            await self._retry(item, now, WORK_RELAY, polls, exc.outcome, str(exc), _ms(started))
            return
        ms = _ms(started)
        if answer.status == 404:
            self.breaker.success()
            await self._retry(item, now, WORK_RELAY, polls, NOT_YET, None, ms, status=404, upstream_id=fw.upstream_id)
            return
        if answer.status != 200:
            wait = retry_after(answer.retry_after, now) if answer.status in PAUSING else None
            retryable = answer.status >= 500 or answer.status in RETRYABLE_4XX
            if retryable:
                self.breaker.failure(now, pause=wait)
            else:
                self.breaker.success()
            # A 401/403 here is most likely a key being rotated: polling goes on (at the capped
            # backoff), visible in the attempts, rather than losing the result for good.
            await self._retry(item, now, WORK_RELAY, polls, THROTTLED if answer.status == 429 else
                              (SERVER_ERROR if retryable else CLIENT_ERROR),
                              f"HTTP {answer.status}: {error_summary(answer.body)}", ms,
                              status=answer.status, wait=wait, upstream_id=fw.upstream_id)  # fmt: skip
            return
        self.breaker.success()
        try:
            notice = await self.check_result(answer.body, dossier, fw.upstream_id, now)
        except BadNotice as exc:
            await self._retry(item, now, WORK_RELAY, polls, BAD_NOTICE, f"KET_QUA not kept: {exc}", ms,
                              status=200, upstream_id=fw.upstream_id)  # fmt: skip
            return
        await self.keep_result(dossier, notice, now)
        await self.store.forwarding.write(item, now, Change(
            forwarding={"polls": polls, "relayed_at": now, "next_try_at": None, "last_error": None},
            attempt=Attempt(kind="poll", at=now, outcome=RELAYED, duration_ms=ms, http_status=200,
                                   upstream_id=fw.upstream_id),
        ))  # fmt: skip
        self.count("poll", RELAYED)

    # -- the upstream's KET_QUA, polled or pushed (forwarding.push) ----------------------------------

    async def check_result(self, xml: bytes, dossier: Dossier, upstream_id: str, now: datetime) -> UpstreamNotice:
        """The upstream's KET_QUA of `dossier` (forwarded, received upstream as `upstream_id`), or
        BadNotice: signed by the pinned agency signer, about the exact bytes forwarded (BamHoSo),
        naming the upstream's transaction, with a KetQua we know."""
        notice = await asyncio.to_thread(
            self.checker.check, xml, sha256=dossier.sha256, kinds=(NOTICE_RESULT,), at=now, transaction_id=upstream_id
        )
        if notice.result not in (CHAP_NHAN, KHONG_CHAP_NHAN):
            raise BadNotice(f"KetQua is {notice.result}, expected {CHAP_NHAN} or {KHONG_CHAP_NHAN}")
        return notice

    async def keep_result(self, dossier: Dossier, notice: UpstreamNotice, now: datetime) -> Settlement | None:
        """Settle the dossier with the agency's KET_QUA, kept exactly as signed upstream, and
        relayed to the submitter as any result (its deliveries). None when it has its KET_QUA
        already (the same notice polled and pushed is kept once)."""

        async def decide(_dossier: Dossier, _unit: Unit | None) -> Settlement:
            return Settlement(state=ACCEPTED if notice.result == CHAP_NHAN else REJECTED, notice=notice.xml,
                              problems=notice.problems)  # fmt: skip

        settled = await self.store.results.settle(dossier.id, decide, now=now)
        if settled is not None and self.hooks.result is not None:
            self.hooks.result(dossier, now)
        return settled

    # -- the bookkeeping of tries ----------------------------------------------------------------

    async def _retry(
        self, item: WorkItem, now: datetime, kind: str, tries: int, outcome: str, error: str | None, ms: int, *,
        status: int | None = None, wait: timedelta | None = None, upstream_id: str | None = None,
    ) -> None:
        """Record a try that did not settle anything and queue the item again: after the upstream's
        Retry-After when it gave one, else after the backoff of `tries` tries."""
        at = now + (wait if wait is not None else backoff(tries, self.first_retry, self.max_retry))
        label = "forward" if kind == WORK_FORWARD else "poll"
        counter = {"attempts": tries} if kind == WORK_FORWARD else {"polls": tries}
        await self.store.forwarding.write(item, now, Change(
            forwarding={**counter, "next_try_at": at, "last_error": error or outcome},
            attempt=Attempt(kind=label, at=now, outcome=outcome, duration_ms=ms, http_status=status,
                                   error=error, upstream_id=upstream_id),
            requeue_at=at,
        ))  # fmt: skip
        self.count(label, outcome)
        message = f"{label} try {tries}: {error or outcome}; next try at {at.isoformat()}"
        (log.info if outcome == NOT_YET else log.warning)("dossier %s: %s", item.dossier_id, message)
        raise Rescheduled(at, message)

    async def _defer(self, item: WorkItem, now: datetime, kind: str) -> None:
        """The breaker is open: no try, none counted; the item comes back when it may go."""
        at = self.breaker.retry_at(now)
        reason = (f"deferred: circuit {self.breaker.state} after {self.breaker.consecutive} failures in a row "
                  f"at {self.client.url}")  # fmt: skip
        await self.store.forwarding.write(item, now, Change(
            forwarding={"next_try_at": at, "last_error": reason}, requeue_at=at,
        ))  # fmt: skip
        raise Rescheduled(at, f"{kind}: {reason}; not counted as a try, next at {at.isoformat()}")

    def count(self, kind: str, outcome: str) -> None:
        if self.hooks.attempt is not None:
            self.hooks.attempt(kind, outcome)


def forwarder_of(handlers: Mapping[str, Handler]) -> Forwarder | None:
    """The Forwarder behind a runner's handlers (role ivan), to close its HTTP session on shutdown."""
    owner = getattr(handlers.get(WORK_FORWARD), "__self__", None)
    return owner if isinstance(owner, Forwarder) else None


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)

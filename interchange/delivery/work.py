"""The handler of delivery work items: one run is one attempt.

A delivered, failed or skipped delivery is left alone (a run after a crash that follows a
recorded attempt sends nothing). A failed attempt is recorded and the item is queued again
at the backoff time through `RetryAt`; past the attempt or time limit the delivery is failed
and its work is done (the failure is the delivery's, shown with every attempt in the API).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from interchange.config import DeliveryConfig
from interchange.jobs.policy import backoff
from interchange.jobs.runner import RetryAt
from interchange.kinds import NOTICE_SLUGS, SLUG_RESULT, delivery_work
from interchange.store.deliveries import (
    CALLBACK,
    DELIVERED,
    FAILED,
    PENDING,
    ROUTE_EMAIL,
    ROUTE_IVAN,
    ROUTE_MST,
    SKIPPED,
    Attempt,
    Delivery,
    Outgoing,
    delivery_id_of,
)
from interchange.store.store import Store
from interchange.store.types import WorkItem

from .callback import Answer, HostBreakers, host_of, post_notice
from .mail import MailSender, build_message

log = logging.getLogger(__name__)

USER_AGENT = "interchange-delivery/1"

# Every kind of delivery work: callbacks of every notice, e-mail of the KET_QUA only (the
# receipt notices are in the submitter's HTTP answer already; mailing them is noise).
DELIVERY_KINDS = tuple(
    [delivery_work(n, r) for n in NOTICE_SLUGS for r in (ROUTE_MST, ROUTE_IVAN)] + [delivery_work(SLUG_RESULT, ROUTE_EMAIL)]
)

# Called with the delivery, the outcome of this run (delivered, retry, failed, deferred,
# skipped) and the time; for metrics.
OnOutcome = Callable[[Delivery, str, datetime], None]


def retry_wait(cfg: DeliveryConfig, n: int) -> timedelta:
    """The wait after failed attempt n (1-based): first_retry_seconds, doubling, capped."""
    return backoff(n, timedelta(seconds=cfg.first_retry_seconds), timedelta(seconds=cfg.max_retry_seconds))


class DeliveryWork:
    """The handler of every DELIVERY_KINDS work item."""

    def __init__(
        self,
        store: Store,
        cfg: DeliveryConfig,
        mailer: MailSender | None,
        *,
        breaker: HostBreakers | None = None,
        on_outcome: OnOutcome | None = None,
    ):
        self.store = store
        self.cfg = cfg
        self.mailer = mailer
        self.breaker = breaker or HostBreakers(cfg.breaker_failures, timedelta(seconds=cfg.breaker_cooldown_seconds))
        self.on_outcome = on_outcome
        # The runner's claim limit for these items: every attempt, every wait for an open
        # circuit over the give-up time, and some room for crashes.
        give_up = cfg.give_up_hours * 3600
        self.max_attempts = cfg.max_attempts + math.ceil(give_up / max(1, cfg.breaker_cooldown_seconds)) + 10

    async def __call__(self, item: WorkItem, now: datetime) -> None:
        out = await self.store.deliveries.outgoing(delivery_id_of(item.dossier_id, item.kind))
        if out is None or out.delivery.state != PENDING:
            return  # recorded as done by an earlier run
        d = out.delivery
        if d.channel == CALLBACK:
            host = host_of(d.target)
            wait = self.breaker.admit(host, now)
            if wait is not None:  # not an attempt: the delivery waits for the host's circuit
                why = f"circuit open: {host} failed {self.breaker.failures} times in a row; next try at {wait.isoformat()}"
                if wait > self._give_up_at(d):
                    await self.store.deliveries.set_state(d.id, state=FAILED, next_at=None, why=f"given up: {why}")
                    self._outcome(d, FAILED, now)
                    return
                await self.store.deliveries.set_state(d.id, state=PENDING, next_at=wait, why=why)
                self._outcome(d, "deferred", now)
                raise RetryAt(wait, why)
            answer = await self._post(out)
            if answer.wait(now) is None:  # a receiver that says when to come back is not failing
                self.breaker.record(host, answer.error is None, now)
        elif self.mailer is None:
            await self.store.deliveries.set_state(d.id, state=SKIPPED, next_at=None,
                            why="e-mail is switched off ([delivery] email_sender = off)")  # fmt: skip
            self._outcome(d, SKIPPED, now)
            return
        else:
            answer = await self._mail(out, now)
        await self._record(d, answer, now)

    async def _post(self, out: Outgoing) -> Answer:
        d = out.delivery
        headers = {
            "Content-Type": "application/xml; charset=utf-8",
            "User-Agent": USER_AGENT,
            "X-Transaction-Id": d.dossier_id,
            "X-Notice-Kind": d.notice_kind,
            "X-Delivery-Id": d.id,
            "X-Delivery-Attempt": str(d.attempts + 1),
        }
        return await post_notice(
            d.target, out.notice, headers,
            timeout=self.cfg.timeout_seconds, allow_private=self.cfg.allow_private_urls,
        )  # fmt: skip

    async def _mail(self, out: Outgoing, now: datetime) -> Answer:
        assert self.mailer is not None
        d = out.delivery
        started = time.perf_counter()
        message = build_message(
            delivery_id=d.id, mail_from=self.cfg.mail_from, to=d.target, dossier=out.dossier,
            notice=out.notice, now=now,
        )  # fmt: skip
        try:
            await self.mailer.send(message, d.id)
            error = None
        except Exception as exc:  # a refusing server, the network, a full disk: a failed attempt
            error = f"{type(exc).__name__}: {exc}"
        return Answer(None, error, int((time.perf_counter() - started) * 1000))

    async def _record(self, d: Delivery, answer: Answer, now: datetime) -> None:
        n = d.attempts + 1
        attempt = Attempt(n, now, answer.status, answer.error, answer.duration_ms)
        if answer.error is None:
            state, next_at = DELIVERED, None
        else:
            asked = answer.wait(now)  # the receiver's Retry-After, within [1 s, max_retry_seconds]
            wait = retry_wait(self.cfg, n) if asked is None else min(max(asked, timedelta(seconds=1)),
                                                                     timedelta(seconds=self.cfg.max_retry_seconds))
            next_at = now + wait
            given_up = n >= self.cfg.max_attempts or next_at > self._give_up_at(d)
            state, next_at = (FAILED, None) if given_up else (PENDING, next_at)
        if not await self.store.deliveries.record_attempt(d, attempt, state=state, next_at=next_at):
            return  # another run (whose lease had run out) recorded this attempt: its record stands
        if state == PENDING:
            self._outcome(d, "retry", now)
            log.info("delivery %s attempt %d failed: %s; next at %s", d.id, n, answer.error, next_at)
            raise RetryAt(next_at, f"attempt {n}: {answer.error}")
        if state == FAILED:
            log.warning("delivery %s given up after %d attempts: %s", d.id, n, answer.error)
        self._outcome(d, state, now)

    def _give_up_at(self, d: Delivery) -> datetime:
        return d.created_at + timedelta(hours=self.cfg.give_up_hours)

    def _outcome(self, d: Delivery, outcome: str, now: datetime) -> None:
        if self.on_outcome is not None:
            self.on_outcome(d, outcome, now)


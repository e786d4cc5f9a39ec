"""Claiming and running due work items: a batch at a time, a few at once, with retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from interchange.clock import utc_now
from interchange.jobs.policy import backoff
from interchange.store.db import StoreUnavailable
from interchange.store.store import Store
from interchange.store.types import Overdue, WorkItem

log = logging.getLogger(__name__)

# A handler returns True when it marked its item done itself, in its own transaction.
Handler = Callable[[WorkItem, datetime], Awaitable[bool | None]]
DRAIN_ROUNDS = 10  # full batches between two refreshes of the overdue gauges while a round drains


class RetryAt(Exception):
    """Raised by a handler whose work is not finished and that keeps its own schedule (result
    delivery): the item is queued again from `when`, whatever the runner's backoff. A handler
    may also carry a `max_attempts` attribute: its items' claim limit instead of the runner's."""

    # True in a subclass whose handler has re-queued (or failed) the item in its own transaction:
    # the runner then writes nothing more.
    handled = False

    def __init__(self, when: datetime, reason: str = ""):
        super().__init__(reason or f"retry at {when.isoformat()}")
        self.when = when


class GiveUp(Exception):
    """Raised by a handler whose work can never succeed (the other side refused the request
    itself): the item is failed now, without the retries."""

    handled = False  # as RetryAt.handled


class SteadyClock:
    """The wall clock in UTC, never going backwards in this process: after a backward step (NTP,
    a restored VM) it goes on from the last time it gave at the monotonic clock's pace until the
    wall clock catches up; a forward step is followed at once.

    So a lease taken or a retry scheduled just before a step back is not stretched by the step
    in this process (its next claim still comes after `interval`, not after the step plus it),
    and the times the runner writes (claimed_until, not_before, done_at) never go backwards."""

    def __init__(self, wall: Callable[[], datetime] = utc_now, monotonic: Callable[[], float] = time.monotonic):
        self.wall = wall
        self.monotonic = monotonic
        self._last: tuple[datetime, float] | None = None

    def __call__(self) -> datetime:
        wall, mono = self.wall(), self.monotonic()
        if self._last is not None:
            steady = self._last[0] + timedelta(seconds=max(0.0, mono - self._last[1]))
            if wall < steady:
                if steady - wall > STEP_WARNING:
                    log.warning("work: the wall clock stepped back by %s; keeping time from before the step",
                                steady - wall)  # fmt: skip
                wall = steady
        self._last = (wall, mono)
        return wall


STEP_WARNING = timedelta(seconds=5)


@dataclass
class Ran:
    item: WorkItem
    outcome: str  # done | retry | failed | lost (another process holds it now, or the store failed)
    error: str | None = None


class WorkRunner:
    """Runs the handlers of claimed items. `now` may be given (tests): the claim, the lease,
    the handlers and the bookkeeping all use it; otherwise the clock is read at each step."""

    def __init__(
        self,
        store: Store,
        handlers: Mapping[str, Handler],
        *,
        worker: str | None = None,
        batch: int = 20,
        concurrency: int = 4,
        lease: timedelta = timedelta(minutes=2),
        max_attempts: int = 6,
        backoff: timedelta = timedelta(seconds=30),
        max_backoff: timedelta = timedelta(hours=1),
        on_ran: Callable[[Ran], None] | None = None,
        on_overdue: Callable[[list[Overdue], datetime], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ):
        self.store = store
        self.clock = clock or SteadyClock()  # never backwards (see SteadyClock)
        self.handlers = dict(handlers)
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.batch = batch
        self.concurrency = concurrency
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_ran = on_ran
        self.on_overdue = on_overdue
        self._round: asyncio.Task | None = None
        self._stopping = False

    async def run_due(self, now: datetime | None = None) -> list[Ran]:
        """Claim one batch of due items and run it; the outcomes, most urgent item first."""
        clock = (lambda: now) if now is not None else self.clock
        items = await self.store.work.claim(
            self.worker, clock(), limit=self.batch, lease=self.lease, kinds=self.handlers.keys()
        )
        if not items:
            return []
        slots = asyncio.Semaphore(self.concurrency)
        return list(await asyncio.gather(*(self._run(item, clock, slots) for item in items)))

    async def _run(self, item: WorkItem, clock: Callable[[], datetime], slots: asyncio.Semaphore) -> Ran:
        # A handler that settles its items in groups (jobs.result) is given them all at once: it
        # bounds its own work, and the concurrency limit would cut its groups down to that size.
        together = getattr(self.handlers[item.kind], "together", False)
        async with contextlib.nullcontext() if together else slots:
            try:
                ran = await self._attempt(item, clock)
            except Exception as exc:  # the store failed: the lease brings the item back
                log.warning("work %s %s (%s): bookkeeping failed: %r", item.kind, item.id, item.dossier_id, exc)
                ran = Ran(item, "lost", repr(exc))
        if self.on_ran is not None:
            self.on_ran(ran)
        return ran

    async def _attempt(self, item: WorkItem, clock: Callable[[], datetime]) -> Ran:
        handler = self.handlers[item.kind]
        max_attempts = getattr(handler, "max_attempts", None) or self.max_attempts
        if item.attempts > max_attempts:  # claimed again and again, never finished: it kills or hangs its process
            error = f"given up: claimed {item.attempts - 1} times without finishing"
            await self.store.work.fail(item.id, self.worker, clock(), error, retry_at=None)
            log.error("work %s %s (%s): %s", item.kind, item.id, item.dossier_id, error)
            return Ran(item, "failed", error)
        try:
            completed = await handler(item, clock())
        except RetryAt as retry:
            if not retry.handled:
                await self.store.work.fail(item.id, self.worker, clock(), str(retry), retry_at=retry.when)
            return Ran(item, "retry", str(retry))
        except GiveUp as exc:
            log.error("work %s %s (%s), attempt %d: %s; given up", item.kind, item.id, item.dossier_id, item.attempts, exc)
            if not exc.handled:
                await self.store.work.fail(item.id, self.worker, clock(), str(exc), retry_at=None)
            return Ran(item, "failed", str(exc))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            retry_at = None if item.attempts >= max_attempts else clock() + self._backoff(item.attempts)
            log.warning(
                "work %s %s (%s), attempt %d: %s; %s", item.kind, item.id, item.dossier_id, item.attempts, error,
                f"retry at {retry_at.isoformat()}" if retry_at else "given up",
            )  # fmt: skip
            await self.store.work.fail(item.id, self.worker, clock(), error, retry_at=retry_at)
            return Ran(item, "retry" if retry_at else "failed", error)
        if completed:
            return Ran(item, "done")
        done = await self.store.work.complete(item.id, self.worker, clock())
        return Ran(item, "done" if done else "lost")

    def _backoff(self, attempts: int) -> timedelta:
        return backoff(max(attempts, 1), self.backoff, self.max_backoff)

    async def refresh_overdue(self, now: datetime | None = None) -> list[Overdue]:
        now = now or self.clock()
        overdue = await self.store.work.overdue(now)
        if self.on_overdue is not None:
            self.on_overdue(overdue, now)
        return overdue

    # -- the scheduler's job ---------------------------------------------------------------

    async def tick(self) -> None:
        """The scheduler's job: start a round unless one is running. A round runs due work until
        a batch comes back short, then refreshes the overdue gauges. It runs as its
        own task, so the job returns at once (the scheduler never sees it overrun its interval)
        and stopping the scheduler never cuts an item off halfway."""
        if self._stopping or (self._round is not None and not self._round.done()):
            return
        self._round = asyncio.get_running_loop().create_task(self._drain(), name="work-round")

    async def _drain(self) -> None:
        try:
            rounds = 0
            # Until a batch comes back short (waiting for the next tick meanwhile left the queue idle
            # a second in three at month-start volumes), refreshing the overdue gauges now and then.
            while not self._stopping and len(await self.run_due()) >= self.batch:
                rounds += 1
                if rounds % DRAIN_ROUNDS == 0:
                    await self.refresh_overdue()
            await self.refresh_overdue()
        except StoreUnavailable as exc:  # the store logged it when it began; no traceback every tick
            log.debug("work: the database cannot be used (%s); trying again at the next tick", exc)
        except Exception:
            log.exception("work: claiming or refreshing failed; trying again at the next tick")

    async def stop(self, timeout: float = 30.0) -> None:
        """Claim nothing more and let the running batch finish (what does not finish in time is
        taken up again after its lease, by this process's successor or another)."""
        self._stopping = True
        if self._round is not None and not self._round.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._round), timeout)
            except TimeoutError:
                log.warning("work: a batch was still running at shutdown; its items return after the lease")

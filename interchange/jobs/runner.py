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
from interchange.store.slots import Slot, take_slot
from interchange.store.store import Store
from interchange.store.types import Overdue, WorkItem

log = logging.getLogger(__name__)

# A handler returns True when it marked its item done itself, in its own transaction.
Handler = Callable[[WorkItem, datetime], Awaitable[bool | None]]
DRAIN_ROUNDS = 10  # full batches between two refreshes of the overdue gauges while a round drains
OVERDUE_EVERY = 2.0  # seconds: the overdue gauges are refreshed at most this often by rounds `wake` starts


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
CLOCK_WARNING = timedelta(seconds=2)  # an offset to the database's clock this large is logged
ALIGN_EVERY = 60.0  # seconds between two measurements of the offset to the database's clock
LEASE = timedelta(seconds=15)  # [jobs] lease_seconds
HEARTBEAT = timedelta(seconds=5)  # [jobs] heartbeat_seconds (a third of a shorter lease unless given)
MAX_HOLD = timedelta(minutes=15)  # an item running longer is no longer renewed (its handler hangs)


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
        instance: str | None = None,
        batch: int = 20,
        concurrency: int = 4,
        lease: timedelta = LEASE,
        heartbeat: timedelta | None = None,
        max_hold: timedelta = MAX_HOLD,
        max_attempts: int = 6,
        backoff: timedelta = timedelta(seconds=30),
        max_backoff: timedelta = timedelta(hours=1),
        on_ran: Callable[[Ran], None] | None = None,
        on_overdue: Callable[[list[Overdue], datetime], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ):
        heartbeat = heartbeat if heartbeat is not None else min(HEARTBEAT, lease / 3)
        if heartbeat * 2 > lease:
            raise ValueError(
                f"config: jobs.heartbeat_seconds ({heartbeat.total_seconds():g}) must be at most half of "
                f"jobs.lease_seconds ({lease.total_seconds():g}): a lease must outlive a late heartbeat"
            )
        self.store = store
        self._offset = timedelta(0)  # the database's clock minus this process's (see align)
        self._aligned = clock is None
        # never backwards (see SteadyClock), on the database's time line unless a clock is given
        self.clock = clock or SteadyClock(wall=lambda: utc_now() + self._offset)
        self.handlers = dict(handlers)
        self.instance = instance or socket.gethostname()
        self._fixed_worker = worker is not None
        self.worker = worker or f"{self.instance}:{os.getpid()}:{secrets.token_hex(3)}"  # until `begin`
        self.batch = batch
        self.concurrency = concurrency
        self.lease = lease
        self.heartbeat = heartbeat
        self.max_hold = max_hold
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_ran = on_ran
        self.on_overdue = on_overdue
        self._round: asyncio.Task | None = None
        self._wake: asyncio.TimerHandle | None = None  # a round asked for by `wake`, not started yet
        self._refreshed_at: float | None = None  # monotonic time the overdue gauges were last refreshed
        self._beat: asyncio.Task | None = None
        self._stopping = False
        self._slot: Slot | None = None
        self._begun = False
        self._held: dict[str, float] = {}  # items claimed and not yet finished -> monotonic claim time
        self._last_beat = time.monotonic()
        self._aligned_at: float | None = None

    async def run_due(self, now: datetime | None = None) -> list[Ran]:
        """Claim one batch of due items and run it; the outcomes, most urgent item first."""
        clock = (lambda: now) if now is not None else self.clock
        items = await self.store.work.claim(
            self.worker, clock(), limit=self.batch, lease=self.lease, kinds=self.handlers.keys()
        )
        if not items:
            return []
        claimed = time.monotonic()
        self._held.update((item.id, claimed) for item in items)  # renewed by the heartbeat until finished
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
            finally:
                self._held.pop(item.id, None)
        if self.on_ran is not None:
            self.on_ran(ran)
        return ran

    async def _attempt(self, item: WorkItem, clock: Callable[[], datetime]) -> Ran:
        handler = self.handlers[item.kind]
        holder = item.claimed_by or self.worker  # the name it was claimed under
        max_attempts = getattr(handler, "max_attempts", None) or self.max_attempts
        if item.attempts > max_attempts:  # claimed again and again, never finished: it kills or hangs its process
            error = f"given up: claimed {item.attempts - 1} times without finishing"
            await self.store.work.fail(item.id, holder, clock(), error, retry_at=None)
            log.error("work %s %s (%s): %s", item.kind, item.id, item.dossier_id, error)
            return Ran(item, "failed", error)
        try:
            completed = await handler(item, clock())
        except RetryAt as retry:
            if not retry.handled:
                await self.store.work.fail(item.id, holder, clock(), str(retry), retry_at=retry.when)
            return Ran(item, "retry", str(retry))
        except GiveUp as exc:
            log.error("work %s %s (%s), attempt %d: %s; given up", item.kind, item.id, item.dossier_id, item.attempts, exc)
            if not exc.handled:
                await self.store.work.fail(item.id, holder, clock(), str(exc), retry_at=None)
            return Ran(item, "failed", str(exc))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            retry_at = None if item.attempts >= max_attempts else clock() + self._backoff(item.attempts)
            log.warning(
                "work %s %s (%s), attempt %d: %s; %s", item.kind, item.id, item.dossier_id, item.attempts, error,
                f"retry at {retry_at.isoformat()}" if retry_at else "given up",
            )  # fmt: skip
            await self.store.work.fail(item.id, holder, clock(), error, retry_at=retry_at)
            return Ran(item, "retry" if retry_at else "failed", error)
        if completed:
            return Ran(item, "done")
        done = await self.store.work.complete(item.id, holder, clock())
        return Ran(item, "done" if done else "lost")

    def _backoff(self, attempts: int) -> timedelta:
        return backoff(max(attempts, 1), self.backoff, self.max_backoff)

    async def refresh_overdue(self, now: datetime | None = None) -> list[Overdue]:
        now = now or self.clock()
        self._refreshed_at = time.monotonic()
        overdue = await self.store.work.overdue(now)
        if self.on_overdue is not None:
            self.on_overdue(overdue, now)
        return overdue

    # -- the scheduler's job ---------------------------------------------------------------

    async def tick(self) -> None:
        """The scheduler's job: the heartbeat when one is due, and a round unless one is running.
        A round runs due work until a batch comes back short, then refreshes the overdue gauges.
        Both run as tasks of their own, so the job returns at once (the scheduler never sees it
        overrun its interval) and stopping the scheduler never cuts an item off halfway."""
        if self._stopping:
            return
        loop = asyncio.get_running_loop()
        if time.monotonic() - self._last_beat >= self.heartbeat.total_seconds() and (
            self._beat is None or self._beat.done()
        ):
            self._last_beat = time.monotonic()
            self._beat = loop.create_task(self._heartbeat(), name="work-heartbeat")
        if self._round is not None and not self._round.done():
            return
        self._round = loop.create_task(self._drain(), name="work-round")

    def wake(self, delay: float) -> None:
        """Work due now was just committed in this process (a receipt): run a round `delay` seconds
        from now instead of at the next tick. The receipts of those seconds are then claimed and
        settled together, as small steady groups, and a dossier's KET_QUA comes a fraction of a
        second after its receipt. Waiting for the tick gathered a tick's receipts into a burst of
        full groups whose settlement held SQLite's one write lock and the GIL back to back: at 60
        receipts/s their p99 went from 20-40 ms without the result work to 210-290 ms with it.
        Wakes before that round are one; a wake while a round runs brings another after it. A wake
        does nothing before the first tick has begun the runner, or once it is stopping."""
        if self._stopping or not self._begun or self._wake is not None:
            return
        self._wake = asyncio.get_running_loop().call_later(delay, self._woken, delay)

    def _woken(self, delay: float) -> None:
        self._wake = None
        if self._stopping:
            return
        if self._round is not None and not self._round.done():
            self._wake = asyncio.get_running_loop().call_later(delay, self._woken, delay)  # after this round
            return
        self._round = asyncio.get_running_loop().create_task(self._drain(woken=True), name="work-round")

    async def begin(self) -> int:
        """Before the first claim of a process: align to the database's clock, take this process's
        work slot (unless a fixed `worker` was given) and release what earlier runs of that slot
        held (their process is gone: its slot was free). How many items were released."""
        await self.align()
        released = 0
        if not self._fixed_worker:
            if self._slot is None:
                self._slot = await take_slot(self.store.db, self.instance)
                self.worker = f"{self._slot.name}/{os.getpid()}.{secrets.token_hex(3)}"
            if self._slot.number is not None:
                released = await self.store.work.release_earlier(self._slot.name, self.worker, self.clock())
            log.info("work: claiming as %s (lease %g s, heartbeat %g s)%s", self.worker, self.lease.total_seconds(),
                     self.heartbeat.total_seconds(),
                     f"; released {released} items held by an earlier run of {self._slot.name}" if released
                     else "")  # fmt: skip
        self._begun = True
        return released

    async def align(self) -> timedelta:
        """Measure this process's clock against the database's (one small read) and keep the
        offset: the times the runner writes and compares (leases, retries) are the database's,
        so processes whose clocks differ agree on when a lease has run out. No-op with a given clock."""
        if not self._aligned:
            return self._offset
        before = utc_now()
        db_now = await self.store.work.database_time()
        after = utc_now()
        offset = db_now - (before + (after - before) / 2)
        if abs(offset) > CLOCK_WARNING and abs(offset - self._offset) > CLOCK_WARNING:
            log.warning("work: this process's clock is %+.1f s off the database's; the work keeps the database's time",
                        -offset.total_seconds())  # fmt: skip
        self._offset = offset
        self._aligned_at = time.monotonic()
        return offset

    async def renew(self) -> int:
        """The heartbeat: extend the leases of every item this process is running, in one
        statement (items held longer than `max_hold` are left to run out: a hung handler's work
        goes to another process). How many leases were extended."""
        oldest = time.monotonic() - self.max_hold.total_seconds()
        ids = [i for i, claimed in self._held.items() if claimed > oldest]
        if not ids:
            return 0
        renewed = await self.store.work.renew(self.worker, ids, self.clock() + self.lease)
        if renewed < len(ids):
            log.info("work: %d of %d items held here were taken over or finished meanwhile", len(ids) - renewed, len(ids))
        return renewed

    async def _heartbeat(self) -> None:
        try:
            await self.renew()
            if self._aligned_at is None or time.monotonic() - self._aligned_at >= ALIGN_EVERY:
                await self.align()
        except StoreUnavailable as exc:
            log.debug("work: heartbeat: the database cannot be used (%s)", exc)
        except Exception:
            log.exception("work: the heartbeat failed; trying again at the next tick")

    async def _drain(self, woken: bool = False) -> None:
        """Rounds of due work until a batch comes back short, then the overdue gauges (after a round
        that `wake` started, only when they are older than OVERDUE_EVERY: such rounds come often)."""
        try:
            if not self._begun:
                await self.begin()
            rounds = 0
            # Until a batch comes back short (waiting for the next tick meanwhile left the queue idle
            # a second in three at month-start volumes), refreshing the overdue gauges now and then.
            while not self._stopping and len(await self.run_due()) >= self.batch:
                rounds += 1
                if rounds % DRAIN_ROUNDS == 0:
                    await self.refresh_overdue()
            if not woken or self._refreshed_at is None or time.monotonic() - self._refreshed_at >= OVERDUE_EVERY:
                await self.refresh_overdue()
        except StoreUnavailable as exc:  # the store logged it when it began; no traceback every tick
            log.debug("work: the database cannot be used (%s); trying again at the next tick", exc)
        except Exception:
            log.exception("work: claiming or refreshing failed; trying again at the next tick")

    async def stop(self, timeout: float = 30.0) -> None:
        """Claim nothing more and let the running batch finish (what does not finish in time is
        taken up again after its lease, by this process's successor or another)."""
        self._stopping = True
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        if self._round is not None and not self._round.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._round), timeout)
            except TimeoutError:
                log.warning("work: a batch was still running at shutdown; its items return after the lease")
        if self._beat is not None and not self._beat.done():
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._beat, 5)
        if self._slot is not None:
            await self._slot.close()
            self._slot = None

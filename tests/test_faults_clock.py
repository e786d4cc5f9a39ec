"""The wall clock stepping backwards: audit times never go backwards along the chain, the work
runner's clock never goes backwards (a retry is not delayed by the step), the work loop keeps
running, the rate limiter neither drains nor blocks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from interchange import clock
from interchange.api.ratelimit import RateLimiter
from interchange.audit.chain import Event
from interchange.jobs.runner import SteadyClock, WorkRunner
from interchange.jobs.scheduler import WorkScheduler
from interchange.store.audit import append as audit_append
from interchange.store.types import DONE
from tests.helpers import dossiers_with_work

T0 = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


class FakeClocks:
    """A wall clock the test steps, and a monotonic one that only goes forward."""

    def __init__(self, wall: datetime):
        self.now = wall
        self.mono = 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


async def test_audit_times_never_go_backwards_along_the_chain(store, monkeypatch):
    clocks = FakeClocks(T0)
    monkeypatch.setattr(clock, "utc_now", clocks.wall)
    first = await store.audit.append("test.event", {"n": 1})
    clocks.now = T0 - HOUR  # stepped back an hour
    second = await store.audit.append("test.event", {"n": 2})
    clocks.now = T0 + HOUR
    third = await store.audit.append("test.event", {"n": 3})
    times = [datetime.fromisoformat(e.at) for e in (first, second, third)]
    assert times == [T0, T0, T0 + HOUR]  # the step back: the last entry's time until the clock catches up
    assert (await store.audit.verify()).ok


async def test_an_entry_waiting_for_the_head_takes_the_time_of_the_entry_it_waited_for(store, monkeypatch):
    """One writer appends with its clock an hour ahead and commits while another, its clock right,
    waits for the head's lock: the second entry carries the first one's time (on PostgreSQL the
    locked read of the head then sees an entry its statement began without)."""
    clocks = FakeClocks(T0 + HOUR)
    monkeypatch.setattr(clock, "utc_now", clocks.wall)
    await store.audit.append("test.event", {"n": 0})
    appended = asyncio.Event()
    release = asyncio.Event()

    async def ahead():
        async with store.db.writing() as conn:
            await audit_append(conn, [Event("test.event", "first", {"n": 1})])
            appended.set()
            await release.wait()

    async def behind():
        await appended.wait()
        clocks.now = T0  # this writer's clock: an hour behind the other's
        async with store.db.writing() as conn:
            return await audit_append(conn, [Event("test.event", "second", {"n": 2})])

    first = asyncio.create_task(ahead())
    second = asyncio.create_task(behind())
    await appended.wait()
    await asyncio.sleep(0.3)  # the second is waiting for the head (its lock, or this process's turn)
    assert not second.done()
    release.set()
    await first
    (entry,) = await second
    assert datetime.fromisoformat(entry.at) == T0 + HOUR
    report = await store.audit.verify()
    assert report.ok and report.entries == 3


def test_steady_clock_follows_forward_steps_and_keeps_time_through_backward_ones():
    clocks = FakeClocks(T0)
    steady = SteadyClock(clocks.wall, clocks.monotonic)
    assert steady() == T0
    clocks.now -= HOUR  # step back
    clocks.mono += 10
    assert steady() == T0 + timedelta(seconds=10)  # goes on at the monotonic pace
    clocks.advance(20)
    assert steady() == T0 + timedelta(seconds=30)
    clocks.now = T0 + 2 * HOUR  # step forward: followed
    assert steady() == T0 + 2 * HOUR


async def test_a_retry_is_not_delayed_by_a_backward_step(store):
    """An item that failed just before the step is retried after its backoff, not after the
    backoff plus the hour the clock went back; and the run after the step writes no time before
    the ones already written."""
    clocks = FakeClocks(T0)
    calls = []

    async def flaky(item, now):
        calls.append(now)
        if len(calls) == 1:
            raise RuntimeError("receiver down")

    runner = WorkRunner(store, {"test": flaky}, backoff=timedelta(seconds=30),
                        clock=SteadyClock(clocks.wall, clocks.monotonic))  # fmt: skip
    (dossier_id,) = await dossiers_with_work(store, [timedelta(0)])
    assert [r.outcome for r in await runner.run_due()] == ["retry"]
    clocks.now -= HOUR  # the wall clock steps back an hour
    clocks.mono += 31
    assert [r.outcome for r in await runner.run_due()] == ["done"]
    assert calls[1] > calls[0]
    (item,) = await store.work.of(dossier_id)
    assert item.state == DONE and item.done_at >= calls[0]


async def test_the_work_loop_keeps_ticking_when_the_clock_steps_back(monkeypatch):
    """APScheduler (before) computed its next run in wall time: a step back of an hour stopped
    the work for an hour. The loop is paced by the monotonic clock now."""
    apscheduler_base = pytest.importorskip("apscheduler.schedulers.base")

    class SteppedBack(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) - HOUR

    monkeypatch.setattr(apscheduler_base, "datetime", SteppedBack)
    monkeypatch.setattr(clock, "utc_now", lambda: datetime.now(UTC) - HOUR)

    class Runner:
        ticks = 0

        async def tick(self):
            self.ticks += 1

        async def stop(self):
            pass

    runner = Runner()
    scheduler = WorkScheduler(runner, 0.05)  # type: ignore[arg-type]
    scheduler.start()
    try:
        await asyncio.sleep(0.5)
    finally:
        await scheduler.stop()
    assert runner.ticks >= 4


async def test_the_work_loop_survives_a_failing_tick():
    class Runner:
        ticks = 0

        async def tick(self):
            self.ticks += 1
            raise RuntimeError("database away")

        async def stop(self):
            pass

    runner = Runner()
    scheduler = WorkScheduler(runner, 0.02)  # type: ignore[arg-type]
    scheduler.start()
    await asyncio.sleep(0.2)
    await scheduler.stop()
    assert runner.ticks >= 3


def test_rate_limiter_with_a_clock_stepping_back():
    now = [100.0]
    limiter = RateLimiter(1.0, 2, clock=lambda: now[0])
    assert limiter.take("k") == 0 and limiter.take("k") == 0
    assert 0 < limiter.take("k") <= 1
    now[0] = 50.0  # a clock that went back 50 s
    assert 0 < limiter.take("k") <= 1  # not 51 s
    now[0] = 51.5
    assert limiter.take("k") == 0  # refills from the stamp it had, not from the step

"""The event-loop-driven process pool (interchange.workerpool) through its public behaviour: calls,
their results and exceptions, a process killed while idle or busy, a call past its budget beside
another call, results that cannot make the trip, a large result and a large input while the loop
keeps running, and close() with a call stuck in a process. The functions run in the processes
are in tests/poolcalls.py (a spawned process imports them)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from interchange.workerpool import CallOverBudget, ProcessPool, WorkerDied
from tests import poolcalls


@pytest.fixture
async def pools():
    """Make pools; each is closed at the end of the test."""
    made: list[ProcessPool] = []

    async def make(size: int, *initargs) -> ProcessPool:
        pool = ProcessPool(size, poolcalls.remember, initargs or ("ready",))
        made.append(pool)
        await pool.start()
        return pool

    yield make
    for pool in made:
        pool.close(grace=1.0)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def gone(pid: int, within: float = 20.0) -> bool:
    """The process has ended and been reaped, within `within` seconds (a loaded machine is slow to)."""
    deadline = asyncio.get_running_loop().time() + within
    while alive(pid):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_a_call_runs_in_an_initialised_process_and_gives_its_result_or_exception(pools):
    pool = await pools(2, {"key": "value"})
    assert len(set(pool.pids())) == 2 and os.getpid() not in pool.pids()
    assert await pool.call(poolcalls.given) == {"key": "value"}
    assert await pool.call(poolcalls.pid) in pool.pids()
    with pytest.raises(ValueError, match="bad input") as raised:
        await pool.call(poolcalls.fail, "bad input")
    assert any("in worker process" in note for note in raised.value.__notes__)  # where it happened
    assert pool.replaced == 0


async def test_one_call_per_process_and_the_budget_starts_when_the_call_does(pools):
    pool = await pools(1)
    # each takes 0.6 s of a 1 s budget: the second waits for the first, not within its budget
    got = await asyncio.gather(*(pool.call(poolcalls.sleep_then, 0.6, i, budget=1.0) for i in range(3)))
    assert got == [0, 1, 2] and pool.replaced == 0


async def test_a_process_killed_while_idle_is_replaced_and_the_next_call_runs(pools):
    pool = await pools(1)
    (before,) = pool.pids()
    os.kill(before, signal.SIGKILL)
    await asyncio.sleep(0.5)
    assert await pool.call(poolcalls.pid) != before
    assert pool.replaced == 1 and before not in pool.pids()


async def running_in(path) -> int:
    """The id of the process running a `sleep_noting_pid` call, once it has started."""
    while not path.exists():
        await asyncio.sleep(0.05)
    return int(path.read_text())


def wait_until_exited(pid: int) -> None:
    """Block (the event loop too, so that the pool cannot notice) until `pid` is a zombie."""
    while Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        time.sleep(0.01)


async def test_a_call_sent_to_a_process_dead_unnoticed_runs_in_its_replacement(pools):
    pool = await pools(1)
    (before,) = pool.pids()
    os.kill(before, signal.SIGKILL)
    wait_until_exited(before)  # dead, its sentinel not read yet: the call is sent to it
    assert await pool.call(poolcalls.pid) != before  # nothing of it ran: run once more
    assert pool.replaced == 1


async def test_a_process_killed_while_busy_fails_its_call_alone(pools, tmp_path):
    pool = await pools(2)
    victim = asyncio.ensure_future(pool.call(poolcalls.sleep_noting_pid, str(tmp_path / "pid"), 60, "never"))
    other = asyncio.ensure_future(pool.call(poolcalls.sleep_then, 1.5, "other"))
    victim_pid = await running_in(tmp_path / "pid")
    os.kill(victim_pid, signal.SIGKILL)
    with pytest.raises(WorkerDied) as died:
        await asyncio.wait_for(victim, 20)
    assert died.value.pid == victim_pid
    assert await other == "other"  # the other process's call went on
    assert pool.replaced == 1 and victim_pid not in pool.pids()
    assert await pool.call(poolcalls.given) == "ready"  # the replacement is initialised too


async def test_a_call_past_its_budget_kills_its_process_and_another_call_succeeds(pools):
    pool = await pools(2)
    before = set(pool.pids())
    slow = asyncio.ensure_future(pool.call(poolcalls.sleep_then, 60, "never", budget=1.0))
    await asyncio.sleep(0.3)
    other = await pool.call(poolcalls.sleep_then, 1.5, "done", budget=10.0)  # runs past the slow one's end
    assert other == "done"
    with pytest.raises(CallOverBudget) as over:
        await slow
    assert over.value.budget == 1.0 and over.value.pid in before
    assert pool.replaced == 1
    assert over.value.pid not in pool.pids()
    assert await gone(over.value.pid)  # killed and reaped (its death is seen when its sentinel fires)
    assert len(set(pool.pids()) & before) == 1  # the other process is still the same


async def test_a_result_or_exception_that_cannot_be_pickled_fails_the_call_not_the_process(pools):
    pool = await pools(1)
    (before,) = pool.pids()
    with pytest.raises(RuntimeError, match="result of the call could not be pickled"):
        await pool.call(poolcalls.a_lock)
    with pytest.raises(RuntimeError, match="OddError.*could not be pickled"):
        await pool.call(poolcalls.fail_oddly)
    assert await pool.call(poolcalls.pid) == before and pool.replaced == 0


async def test_a_large_result_and_a_large_input_travel_while_the_loop_keeps_running(pools):
    pool = await pools(1)
    ticks = 0
    done = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    ticking = asyncio.ensure_future(ticker())
    try:
        size = 50 * 1024 * 1024
        result = await pool.call(poolcalls.zeros, size)
        assert len(result) == size and result.count(0) == size
        during_result, ticks = ticks, 0
        assert await pool.call(poolcalls.length, result) == size  # 50 MB the other way
        during_input = ticks
    finally:
        done.set()
        await ticking
    assert during_result > 1 and during_input > 1  # the loop ran other work meanwhile


async def test_idle_counts_the_processes_free_for_a_call_now(pools):
    pool = await pools(2)
    assert pool.idle() == 2
    first = asyncio.ensure_future(pool.call(poolcalls.sleep_then, 0.5, "first"))
    await asyncio.sleep(0.1)
    assert pool.idle() == 1
    second = asyncio.ensure_future(pool.call(poolcalls.sleep_then, 0.5, "second"))
    third = asyncio.ensure_future(pool.call(poolcalls.sleep_then, 0, "third"))
    await asyncio.sleep(0.1)
    assert pool.idle() == 0  # two running, one waiting
    assert await asyncio.gather(first, second, third) == ["first", "second", "third"]
    assert pool.idle() == 2


async def test_a_cancelled_call_keeps_its_process_until_it_answers(pools):
    pool = await pools(1)
    first = asyncio.ensure_future(pool.call(poolcalls.sleep_then, 1.0, "first"))
    await asyncio.sleep(0.3)
    first.cancel()
    # the process still runs the first call: the second waits for it and gets its own result
    assert await pool.call(poolcalls.sleep_then, 0, "second") == "second"
    assert pool.replaced == 0


async def test_an_urgent_call_takes_the_next_free_process_before_the_calls_waiting(pools):
    pool = await pools(1)
    order: list[str] = []

    async def call(name: str, *, urgent: bool = False) -> None:
        await pool.call(poolcalls.sleep_then, 0.05, name, urgent=urgent)
        order.append(name)

    busy = asyncio.ensure_future(call("running"))
    await asyncio.sleep(0.02)  # the process is taken: the calls below wait, in this order
    waiting = [asyncio.ensure_future(call(f"check {i}")) for i in range(3)]
    await asyncio.sleep(0)
    cancelled = asyncio.ensure_future(call("cancelled", urgent=True))
    await asyncio.sleep(0)
    urgent = [asyncio.ensure_future(call(f"notice {i}", urgent=True)) for i in range(2)]
    await asyncio.sleep(0)
    cancelled.cancel()  # a waiter that goes away gives up its turn, not the process
    await asyncio.gather(busy, *waiting, *urgent)
    assert order == ["running", "notice 0", "notice 1", "check 0", "check 1", "check 2"]


async def test_calls_waiting_for_a_process_fail_when_the_pool_closes(pools):
    pool = await pools(1)
    busy = asyncio.ensure_future(pool.call(poolcalls.sleep_then, 30, "never"))
    await asyncio.sleep(0.1)
    waiting = [asyncio.ensure_future(pool.call(poolcalls.pid, urgent=u)) for u in (False, True, False)]
    await asyncio.sleep(0.05)
    pool.close(grace=1.0)
    for call in (busy, *waiting):
        with pytest.raises(WorkerDied):
            await call


async def test_close_kills_a_process_stuck_in_a_call_and_fails_the_call(pools, caplog, tmp_path):
    pool = await pools(2)
    stuck = asyncio.ensure_future(pool.call(poolcalls.sleep_noting_pid, str(tmp_path / "pid"), 60, "never"))
    stuck_pid = await running_in(tmp_path / "pid")
    pids = pool.pids()
    with caplog.at_level(logging.WARNING, "interchange.workerpool"):
        pool.close(grace=1.0)
    with pytest.raises(WorkerDied):
        await stuck
    assert not any(alive(pid) for pid in pids)
    assert caplog.text.count("still running after") == 1  # the idle one ended on its own
    assert f"worker process {stuck_pid} still running" in caplog.text
    with pytest.raises(WorkerDied, match="closed"):
        await pool.call(poolcalls.pid)


async def test_a_process_whose_initialiser_fails_fails_start_and_calls(pools):
    pool = ProcessPool(1, poolcalls.fail_to_start, ("no key",))
    try:
        with pytest.raises(WorkerDied, match="could not start.*no key"):
            await pool.start()
        with pytest.raises(WorkerDied, match="could not start"):
            await pool.call(poolcalls.pid)
        assert pool.replaced == 0
    finally:
        pool.close(grace=1.0)

"""Work leases (interchange.jobs.runner, interchange.store.work, interchange.store.slots), on
SQLite and PostgreSQL: short leases renewed by a heartbeat while the work runs, one renewal
statement per heartbeat for everything a process holds, leases on the database's clock, and a
restarted process taking its predecessor's slot and releasing what that one held.

tests/test_kill.py shows the same with real servers killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from interchange.config import REPO_ROOT
from interchange.jobs import runner as runner_module
from interchange.jobs.runner import WorkRunner
from interchange.jobs.scheduler import WorkScheduler
from interchange.store.slots import take_slot
from interchange.store.tables import work_items
from interchange.store.types import DONE, RUNNING
from tests.helpers import JOBS_T0 as T0
from tests.helpers import dossiers_with_work

LEASE = timedelta(seconds=15)


async def test_renew_extends_only_the_leases_the_worker_still_holds(store):
    ids = await dossiers_with_work(store, [timedelta(0), timedelta(minutes=1), timedelta(minutes=2)])
    mine = await store.work.claim("me", T0, limit=2, lease=LEASE)
    (theirs,) = await store.work.claim("them", T0, limit=5, lease=LEASE)
    assert theirs.dossier_id == ids[2]
    renewed = await store.work.renew("me", [i.id for i in mine] + [theirs.id], T0 + timedelta(hours=1))
    assert renewed == 2  # their item is theirs: not renewed by me
    (taken,) = await store.work.claim("other", T0 + LEASE, limit=5, lease=LEASE)
    assert taken.id == theirs.id  # theirs ran out; mine are leased for an hour
    assert await store.work.complete(mine[0].id, "me", T0)
    assert await store.work.renew("me", [mine[0].id], T0 + timedelta(hours=2)) == 0  # finished: nothing to renew
    assert await store.work.renew("me", [], T0) == 0


async def test_a_renewed_lease_is_not_taken_and_a_lapsed_one_is(store):
    ids = await dossiers_with_work(store, [timedelta(0), timedelta(minutes=1)])
    held = await store.work.claim("me", T0, limit=5, lease=LEASE)
    assert await store.work.renew("me", [held[0].id], T0 + LEASE + timedelta(seconds=10)) == 1
    (taken,) = await store.work.claim("other", T0 + LEASE, limit=5, lease=LEASE)
    assert taken.dossier_id == ids[1] and taken.attempts == 2  # the one not renewed
    assert await store.work.claim("other", T0 + LEASE + timedelta(seconds=9), limit=5, lease=LEASE) == []
    (late,) = await store.work.claim("other", T0 + LEASE + timedelta(seconds=10), limit=5, lease=LEASE)
    assert late.dossier_id == ids[0]
    assert not await store.work.complete(held[0].id, "me", T0)  # mine no more: the other finishes it


async def test_release_earlier_frees_the_items_of_earlier_runs_of_the_slot_only(store):
    await dossiers_with_work(store, [timedelta(0), timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=3)])
    long = timedelta(hours=1)
    (dead,) = await store.work.claim("h#0/111.aaa", T0, limit=1, lease=long)
    (sibling,) = await store.work.claim("h#1/222.bbb", T0, limit=1, lease=long)
    (prefix_alike,) = await store.work.claim("h#01/333.ccc", T0, limit=1, lease=long)
    (current,) = await store.work.claim("h#0/444.ddd", T0, limit=1, lease=long)
    assert await store.work.release_earlier("h#0", "h#0/444.ddd", T0 + timedelta(seconds=1)) == 1
    (again,) = await store.work.claim("h#0/444.ddd", T0 + timedelta(seconds=1), limit=5, lease=LEASE)
    assert (again.id, again.attempts) == (dead.id, 2)
    still = {i.id: i.claimed_by for d in (sibling, prefix_alike, current) for i in await store.work.of(d.dossier_id)}
    assert still == {sibling.id: "h#1/222.bbb", prefix_alike.id: "h#01/333.ccc", current.id: "h#0/444.ddd"}


async def test_the_database_clock_is_read(store):
    before = datetime.now(UTC)
    db_now = await store.work.database_time()
    after = datetime.now(UTC)
    assert db_now.tzinfo is not None
    # same host: the same clock, within the resolution of SQLite's 'now' (1 ms) and a margin
    assert before - timedelta(seconds=1) <= db_now <= after + timedelta(seconds=1)


async def test_slots_are_one_live_holder_each_and_free_again_on_close(store):
    first = await take_slot(store.db, "host-a")
    second = await take_slot(store.db, "host-a")
    other = await take_slot(store.db, "host-b")
    try:
        assert (first.number, second.number, other.number) == (0, 1, 0)
        assert (first.name, second.name) == ("host-a#0", "host-a#1")
        await first.close()
        again = await take_slot(store.db, "host-a")
        assert again.number == 0
        await again.close()
    finally:
        for s in (first, second, other):
            await s.close()


SLOT_HOLDER = """
import asyncio, sys
from interchange.store import Store
from interchange.store.slots import take_slot
from interchange.store.tables import work_items

async def main():
    store = await Store.open(sys.argv[1])
    slot = await take_slot(store.db, "killed-host")
    print(slot.number, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_the_slot_of_a_killed_process_is_free_at_once(store, store_url):
    """SIGKILL: no code of the holder runs, yet its slot is free (the kernel closes its lock file
    or its database connection, and the server ends the session)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SLOT_HOLDER, store_url], stdout=subprocess.PIPE, env=env)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.strip() == b"0"
        busy = await take_slot(store.db, "killed-host")
        assert busy.number == 1  # the holder is alive: its slot is not given away
        await busy.close()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        started = time.monotonic()
        while True:
            slot = await take_slot(store.db, "killed-host")
            await slot.close()
            if slot.number == 0:
                break
            assert time.monotonic() - started < 5, "the killed process's slot stayed held"
            await asyncio.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(10)


async def test_a_restarted_runner_releases_what_its_earlier_run_held(store):
    (dossier_id,) = await dossiers_with_work(store, [timedelta(0)])
    earlier = await take_slot(store.db, "restarted")
    now = datetime.now(UTC)
    (held,) = await store.work.claim(f"{earlier.name}/1.dead", now, limit=1, lease=timedelta(hours=1))
    await earlier.close()  # the earlier run is gone (a kill frees it the same way: test above)
    ran = []

    async def handler(item, _now):
        ran.append(item.id)

    runner = WorkRunner(store, {"test": handler}, instance="restarted")
    try:
        assert await runner.run_due() == []  # before `begin`: leased for an hour still
        assert await runner.begin() == 1
        assert runner.worker.startswith("restarted#0/")
        (done,) = await runner.run_due()
        assert (done.item.id, done.outcome, done.item.attempts) == (held.id, "done", 2)
    finally:
        await runner.stop()
    (item,) = await store.work.of(dossier_id)
    assert item.state == DONE and ran == [held.id]


async def test_a_runner_whose_clock_is_off_keeps_the_database_time(store, monkeypatch):
    """A process whose clock runs an hour ahead would take every live lease as run out; on the
    database's time line it does not, and what it writes is on that time line too."""
    (dossier_id,) = await dossiers_with_work(store, [timedelta(0)])
    db_now = await store.work.database_time()
    await store.work.claim("alive", db_now, limit=1, lease=LEASE)
    monkeypatch.setattr(runner_module, "utc_now", lambda: datetime.now(UTC) + timedelta(hours=1))
    ahead = WorkRunner(store, {"test": lambda item, now: asyncio.sleep(0)}, worker="ahead")
    offset = await ahead.align()
    assert abs(offset + timedelta(hours=1)) < timedelta(seconds=2)
    assert abs(ahead.clock() - datetime.now(UTC)) < timedelta(seconds=2)
    assert await ahead.run_due() == []  # the live lease stands
    (item,) = await store.work.of(dossier_id)
    assert (item.state, item.claimed_by) == (RUNNING, "alive")


def test_a_heartbeat_longer_than_half_the_lease_is_refused(store):
    with pytest.raises(ValueError, match="heartbeat_seconds"):
        WorkRunner(store, {}, lease=timedelta(seconds=10), heartbeat=timedelta(seconds=6))


async def test_the_heartbeat_keeps_a_long_item_and_renews_in_one_statement_per_beat(store, monkeypatch):
    """An item running for several leases stays with its process (another one claiming all the
    while never gets it), and each heartbeat is one renewal for every item held."""
    await dossiers_with_work(store, [timedelta(0), timedelta(seconds=1), timedelta(seconds=2)], kind="slow")
    lease, release = timedelta(seconds=1.2), asyncio.Event()
    started = []

    async def slow(item, now):
        started.append(item.id)
        await release.wait()

    calls = []
    renew = store.work.renew

    async def counting_renew(worker, ids, until):
        calls.append(sorted(ids))
        return await renew(worker, ids, until)

    monkeypatch.setattr(store.work, "renew", counting_renew)
    runner = WorkRunner(store, {"slow": slow}, lease=lease, heartbeat=timedelta(seconds=0.3), concurrency=2)
    other = WorkRunner(store, {"slow": slow}, worker="other", lease=lease)
    scheduler = WorkScheduler(runner, 0.1)
    scheduler.start()
    try:
        while len(started) < 2:
            await asyncio.sleep(0.05)
        waited = time.monotonic()
        while time.monotonic() - waited < 3 * lease.total_seconds():
            assert await other.run_due() == [], "a renewed lease was taken"
            await asyncio.sleep(0.1)
        assert len(calls) >= 6
        assert all(len(ids) == 3 for ids in calls[1:])  # the two running and the one waiting: one statement
        release.set()
        for _ in range(100):
            if all(i.state == DONE for i in await _items(store)):
                break
            await asyncio.sleep(0.05)
    finally:
        release.set()
        await scheduler.stop()
    items = await _items(store)
    assert [i.state for i in items] == [DONE] * 3 and all(i.attempts == 1 for i in items)


async def test_an_item_held_past_max_hold_is_no_longer_renewed(store):
    """A hung handler does not keep its item for ever: past `max_hold` its lease runs out."""
    (dossier_id,) = await dossiers_with_work(store, [timedelta(0)])
    hang = asyncio.Event()

    async def hung(item, now):
        await hang.wait()

    runner = WorkRunner(store, {"test": hung}, lease=timedelta(seconds=1), heartbeat=timedelta(seconds=0.2),
                        max_hold=timedelta(seconds=0.3))  # fmt: skip
    round_ = asyncio.ensure_future(runner.run_due())
    try:
        await asyncio.sleep(0.1)
        assert await runner.renew() == 1
        await asyncio.sleep(0.4)
        assert await runner.renew() == 0  # held too long: left to run out
        await asyncio.sleep(1.0)
        other = WorkRunner(store, {"test": lambda item, now: asyncio.sleep(0)}, worker="other")
        (ran,) = await other.run_due()
        assert (ran.item.dossier_id, ran.outcome) == (dossier_id, "done")
    finally:
        hang.set()
        await round_


async def _items(store):
    async with store.db.reading() as conn:
        ids = (await conn.execute(select(work_items.c.dossier_id).order_by(work_items.c.dossier_id))).scalars().all()
    return [i for d in ids for i in await store.work.of(d)]

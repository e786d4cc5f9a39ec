"""The work queue in the database (interchange.jobs) on SQLite and PostgreSQL: enqueueing with
the receipt, claim order, SKIP LOCKED, leases, retries, idempotent re-runs, the scheduler.

Every claim and run takes `now` from the test (a controllable clock); nothing sleeps longer
than a fraction of a second."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import text

from interchange.audit import chain as audit
from interchange.jobs.registration import RegistrationWork
from interchange.jobs.runner import WorkRunner
from interchange.jobs.scheduler import WorkScheduler
from interchange.kinds import SLUG_RESULT
from interchange.kinds import WORK_REGISTRATION as REGISTRATION
from interchange.notices.notice import NoticeSigner
from interchange.store import ACCEPTED, ACTIVE, REFUSED, REJECTED, Store
from interchange.store.types import DONE, FAILED, QUEUED, RUNNING, Settlement
from tests.helpers import ALL, UNIT, dossiers_with_work, receipt, received, save
from tests.helpers import JOBS_T0 as T0

LEASE = timedelta(minutes=2)



@pytest.mark.fresh_database  # the store runs the migrations themselves, not a copy of their result
async def test_the_migrations_make_the_tables_as_declared(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from interchange.store.tables import metadata

    def differences(conn):
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)

    async with store.db.engine.connect() as conn:
        assert await conn.run_sync(differences) == []


async def test_receipt_enqueues_its_work_in_the_same_transaction(store):
    new = received()
    saved = await store.receipts.save(new, receipt)
    (item,) = await store.work.of(new.id)
    assert (item.kind, item.state, item.attempts) == (REGISTRATION, QUEUED, 0)
    assert item.due_at == saved.dossier.due_at and item.not_before == T0
    assert (await store.receipts.save(new, receipt)).outcome == "replay"
    assert len(await store.work.of(new.id)) == 1  # a replay enqueues nothing

    refused = received(state=REFUSED)
    await store.receipts.save(refused, receipt)
    assert await store.work.of(refused.id) == []

    async def failing(_dossier):
        raise RuntimeError("signing failed")

    lost = received()
    with pytest.raises(RuntimeError):
        await store.receipts.save(lost, failing)
    assert await store.dossiers.get(lost.id, ALL) is None and await store.work.of(lost.id) == []
    assert not await store.work.enqueue(new.id, REGISTRATION, T0)  # one item of a kind per dossier


async def test_claim_takes_the_most_overdue_first(store):
    ids = await dossiers_with_work(store, [timedelta(hours=1), timedelta(hours=-2), timedelta(minutes=30),
                                           timedelta(hours=-1)])  # fmt: skip
    first = await store.work.claim("w", T0, limit=2, lease=LEASE)
    assert [i.dossier_id for i in first] == [ids[1], ids[3]]  # overdue, the oldest due first
    assert all(i.state == RUNNING and i.claimed_by == "w" and i.claimed_until == T0 + LEASE for i in first)
    rest = await store.work.claim("w", T0, limit=10, lease=LEASE)
    assert [i.dossier_id for i in rest] == [ids[2], ids[0]]
    assert await store.work.claim("w", T0, limit=10, lease=LEASE) == []
    assert [(o.kind, o.count, o.oldest_due_at) for o in await store.work.overdue(T0)] == [
        ("test", 2, T0 - timedelta(hours=2))
    ]


async def test_only_the_given_kinds_are_claimed(store):
    await dossiers_with_work(store, [timedelta(0)], kind="other")
    assert await store.work.claim("w", T0, limit=10, lease=LEASE, kinds=["test"]) == []
    assert len(await store.work.claim("w", T0, limit=10, lease=LEASE, kinds=["other"])) == 1


async def test_concurrent_claimers_get_disjoint_items(store):
    await dossiers_with_work(store, [timedelta(minutes=m) for m in range(20)])
    batches = await asyncio.gather(
        *(store.work.claim(f"w{n}", T0, limit=6, lease=LEASE) for n in range(4))
    )
    ids = [i.id for batch in batches for i in batch]
    assert len(ids) == len(set(ids)) == 20
    assert sorted(len(b) for b in batches) == [2, 6, 6, 6]


async def test_skip_locked_passes_over_rows_another_claimer_holds(store, store_url):
    if not store_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite claimers take turns on the write lock")
    await dossiers_with_work(store, [timedelta(minutes=m) for m in range(6)])
    async with store.db.engine.connect() as other:
        async with other.begin():  # another process, in the middle of its claim
            held = set(
                (
                    await other.execute(
                        text("SELECT id FROM work_items ORDER BY due_at LIMIT 3 FOR UPDATE")
                    )
                ).scalars()
            )
            # Without SKIP LOCKED this claim would wait for the other transaction (and time out).
            mine = await asyncio.wait_for(store.work.claim("me", T0, limit=10, lease=LEASE), 5)
            assert len(mine) == 3 and not held & {i.id for i in mine}
    later = await store.work.claim("me", T0, limit=10, lease=LEASE)
    assert {i.id for i in later} == held  # the other one committed nothing: its rows are free again


async def test_an_expired_lease_is_claimed_again(store):
    (dossier_id,) = await dossiers_with_work(store, [timedelta(hours=1)])
    (dead,) = await store.work.claim("dead", T0, limit=5, lease=LEASE)
    assert await store.work.claim("alive", T0 + LEASE - timedelta(seconds=1), limit=5, lease=LEASE) == []
    (again,) = await store.work.claim("alive", T0 + LEASE, limit=5, lease=LEASE)
    assert (again.id, again.claimed_by, again.attempts) == (dead.id, "alive", 2)
    assert not await store.work.complete(dead.id, "dead", T0 + LEASE)  # its claim is gone
    assert await store.work.complete(again.id, "alive", T0 + LEASE)
    (item,) = await store.work.of(dossier_id)
    assert (item.state, item.done_at, item.claimed_until) == (DONE, T0 + LEASE, None)


async def test_a_failing_handler_is_retried_with_backoff_then_failed(store):
    (dossier_id,) = await dossiers_with_work(store, [timedelta(minutes=10)])
    calls = []

    async def flaky(item, now):
        calls.append(now)
        raise ConnectionError("upstream down")

    runner = WorkRunner(store, {"test": flaky}, worker="w", max_attempts=2, backoff=timedelta(seconds=30))
    (ran,) = await runner.run_due(T0)
    assert ran.outcome == "retry" and ran.error == "ConnectionError: upstream down"
    (item,) = await store.work.of(dossier_id)
    assert (item.state, item.not_before, item.claimed_by) == (QUEUED, T0 + timedelta(seconds=30), None)
    assert await runner.run_due(T0 + timedelta(seconds=29)) == []
    (ran,) = await runner.run_due(T0 + timedelta(seconds=30))
    assert ran.outcome == "failed"
    (item,) = await store.work.of(dossier_id)
    assert (item.state, item.attempts, item.last_error) == (FAILED, 2, "ConnectionError: upstream down")
    assert await runner.run_due(T0 + timedelta(hours=5)) == [] and len(calls) == 2
    # a failed item stays visible as overdue: its deadline was missed all the same
    (overdue,) = await runner.refresh_overdue(T0 + timedelta(hours=1))
    assert (overdue.count, overdue.oldest_due_at) == (1, T0 + timedelta(minutes=10))


async def test_an_item_that_keeps_killing_its_process_is_given_up(store):
    (dossier_id,) = await dossiers_with_work(store, [timedelta(0)])
    runs = []

    async def handler(item, now):
        runs.append(item.attempts)

    now = T0
    for _ in range(3):  # claimed, then the process "dies" each time
        assert len(await store.work.claim("dying", now, limit=1, lease=LEASE)) == 1
        now += LEASE
    (ran,) = await WorkRunner(store, {"test": handler}, worker="w", max_attempts=3).run_due(now)
    assert ran.outcome == "failed" and runs == []
    (item,) = await store.work.of(dossier_id)
    assert item.state == FAILED and item.last_error.startswith("given up")


async def test_a_batch_runs_with_bounded_concurrency(store):
    await dossiers_with_work(store, [timedelta(minutes=m) for m in range(10)])
    running, most = 0, 0

    async def handler(item, now):
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1

    runner = WorkRunner(store, {"test": handler}, worker="w", batch=10, concurrency=3)
    ran = await runner.run_due(T0)
    assert [r.outcome for r in ran] == ["done"] * 10 and most == 3


@pytest.fixture
def signer(world) -> NoticeSigner:
    return NoticeSigner(world.server.key, [world.server.cert, *world.server.chain])


def registration_work(store: Store, signer: NoticeSigner, results: list | None = None) -> RegistrationWork:
    async def sign(data):
        return signer.sign(data)

    return RegistrationWork(store, sign, on_result=None if results is None else lambda d, at: results.append(at))


async def audit_kinds(store: Store, dossier_id: str) -> list[str]:
    return [e.kind for e in await store.audit.entries() if e.dossier_id == dossier_id]


async def test_the_result_and_its_item_done_are_one_transaction(store, signer):
    dossier_id = await save(store)
    (item,) = await store.work.claim("w", T0, limit=5, lease=LEASE)
    assert await registration_work(store, signer)(item, T0) is True
    (done,) = [w for w in await store.work.of(dossier_id) if w.kind == REGISTRATION]
    assert (done.state, done.done_at) == ("done", T0)
    assert await registration_work(store, signer)(item, T0) is False  # run again: nothing to do


async def test_a_crash_after_the_result_and_before_done_runs_again_with_the_same_outcome(store, signer):
    dossier_id = await save(store)
    handler = registration_work(store, signer)
    (item,) = await store.work.claim("dead", T0, limit=5, lease=LEASE)
    # The result marks its item done in its own transaction; an item the handler no longer holds
    # (as if its lease had passed) stays running: the KET_QUA is stored, the unit written ... and
    # the process dies here.
    assert await handler(dataclasses.replace(item, claimed_by="not-me"), T0) is True
    assert [w.state for w in await store.work.of(dossier_id) if w.kind == REGISTRATION] == ["running"]
    notice = await store.dossiers.notice(dossier_id, SLUG_RESULT, ALL)
    unit = await store.units.get(UNIT.mst, ALL)
    assert notice and unit.state == ACTIVE and unit.updated_at == T0

    results = []
    runner = WorkRunner(store, {REGISTRATION: registration_work(store, signer, results)}, worker="alive", lease=LEASE)
    (ran,) = await runner.run_due(T0 + LEASE + timedelta(minutes=5))
    assert (ran.outcome, ran.item.attempts) == ("done", 2)
    assert results == []  # the second run found the result and changed nothing
    assert await store.dossiers.notice(dossier_id, SLUG_RESULT, ALL) == notice
    assert await store.units.get(UNIT.mst, ALL) == unit
    dossier = await store.dossiers.get(dossier_id, ALL)
    assert (dossier.state, dossier.result_at, dossier.notice_kinds.count(SLUG_RESULT)) == (ACCEPTED, T0, 1)
    assert await audit_kinds(store, dossier_id) == [
        audit.DOSSIER_RECEIVED, audit.NOTICE_STORED, audit.DOSSIER_SETTLED, audit.UNIT_CHANGED,
    ]  # fmt: skip
    assert (await store.audit.verify()).ok


async def test_two_processes_running_the_same_item_store_one_result(store, signer):
    dossier_id = await save(store)
    (item,) = await store.work.claim("slow", T0, limit=5, lease=LEASE)
    results = []
    await asyncio.gather(*(registration_work(store, signer, results)(item, T0 + timedelta(seconds=n))
                           for n in range(3)))  # fmt: skip
    assert len(results) == 1
    dossier = await store.dossiers.get(dossier_id, ALL)
    assert dossier.notice_kinds.count(SLUG_RESULT) == 1
    assert (await audit_kinds(store, dossier_id)).count(audit.UNIT_CHANGED) == 1


async def test_a_unit_that_changes_while_deciding_is_decided_again(store, signer):
    first, second = await save(store), await save(store)
    (item_second,) = [i for i in await store.work.claim("w", T0, limit=5, lease=LEASE) if i.dossier_id == second]
    seen = []

    async def decide(dossier, unit):
        seen.append(unit.state if unit else None)
        if len(seen) == 1:  # meanwhile, the other registration of the same unit is settled
            await registration_work(store, signer)(item_second, T0)
        state = REJECTED if unit else ACCEPTED
        return Settlement(state=state, notice=b"<ThongBao/>", problems=[], unit=None)

    settled = await store.results.settle(first, decide, now=T0)
    assert seen == [None, ACTIVE] and settled.state == REJECTED
    assert (await store.dossiers.get(first, ALL)).state == REJECTED


async def test_the_scheduler_claims_and_runs_due_work(store):
    (dossier_id,) = await dossiers_with_work(store, [timedelta(0)])
    ran = asyncio.Event()
    seen = []

    async def handler(item, now):
        ran.set()

    runner = WorkRunner(store, {"test": handler}, worker="w", on_overdue=lambda o, now: seen.append(o))
    scheduler = WorkScheduler(runner, interval_seconds=0.05)
    scheduler.start()
    try:
        await asyncio.wait_for(ran.wait(), 2)
        for _ in range(40):  # the tick marks the item done, then refreshes the gauges
            if seen:
                break
            await asyncio.sleep(0.025)
    finally:
        await scheduler.stop()
    (item,) = await store.work.of(dossier_id)
    assert item.state == DONE and seen
    await runner.tick()  # stopped: claims nothing more


async def test_a_wake_runs_the_work_before_the_next_tick_and_wakes_together_are_one_round(store):
    ran: list[str] = []
    handled = asyncio.Event()

    async def handler(item, now):
        ran.append(item.dossier_id)
        if len(ran) == 2:
            handled.set()

    first_round = asyncio.Event()  # its gauges refreshed: the runner has begun, nothing was due
    runner = WorkRunner(store, {"test": handler}, worker="w", on_overdue=lambda o, now: first_round.set())
    rounds = []
    run_due = runner.run_due

    async def counted(now=None):
        rounds.append(1)
        return await run_due(now)

    runner.run_due = counted
    scheduler = WorkScheduler(runner, interval_seconds=3600)  # the next tick is an hour away
    scheduler.start()
    try:
        await asyncio.wait_for(first_round.wait(), 5)
        before = len(rounds)
        ids = await dossiers_with_work(store, [timedelta(0), timedelta(0)])
        for _ in range(3):
            runner.wake(0.05)
        await asyncio.wait_for(handled.wait(), 5)
        await asyncio.sleep(0.2)
        assert sorted(ran) == sorted(ids)
        assert len(rounds) - before == 1  # three wakes, one round (its batch came back short)
    finally:
        await scheduler.stop()
    assert [i.state for d in ids for i in await store.work.of(d)] == [DONE, DONE]


async def test_a_wake_during_a_round_brings_another_round_after_it(store):
    (first,) = await dossiers_with_work(store, [timedelta(0)])
    release = asyncio.Event()
    ran: list[str] = []
    second_ran = asyncio.Event()

    async def handler(item, now):
        ran.append(item.dossier_id)
        if item.dossier_id == first:
            await release.wait()
        else:
            second_ran.set()

    runner = WorkRunner(store, {"test": handler}, worker="w")
    scheduler = WorkScheduler(runner, interval_seconds=3600)
    scheduler.start()  # its first tick claims `first`, whose handler waits
    try:
        for _ in range(200):
            if ran:
                break
            await asyncio.sleep(0.01)
        assert ran == [first]
        (second,) = await dossiers_with_work(store, [timedelta(0)])
        runner.wake(0.02)  # the round is still running
        await asyncio.sleep(0.1)
        assert ran == [first]
        release.set()
        await asyncio.wait_for(second_ran.wait(), 5)
        assert ran == [first, second]
    finally:
        release.set()
        await scheduler.stop()
    runner.wake(0.01)  # stopped: nothing more
    (late,) = await dossiers_with_work(store, [timedelta(0)])
    await asyncio.sleep(0.1)
    assert late not in ran

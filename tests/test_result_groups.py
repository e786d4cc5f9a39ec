"""Result work in groups (jobs.result, Store.results.inputs/settle_group): the items claimed
together are judged, signed and settled together, each exactly as alone; what cannot go with
its group (an earlier KET_QUA, a unit changed meanwhile, a group that fails) is settled alone."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from interchange.server import WORK
from interchange.store.results import ALREADY, CHANGED, SETTLED, GroupEntry, SettleInput
from interchange.store.types import ACTIVE, Scope, Unit
from interchange.store.units import write_unit
from tests.helpers import OTHER_UNIT, P_SI, UNIT, XML, p_row, run_work, signed

ALL = Scope(all=True)


async def submit(api, body: bytes, key: str = "unit") -> str:
    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys[key]})
    assert resp.status == 202, await resp.text()
    return resp.headers["X-Transaction-Id"]


def declaration(world, n: int, unit=UNIT) -> bytes:
    """A D02-TS of one new person (a different SI code for each n)."""
    return signed(world, unit, "12/2025", [
        p_row(MasoBHXH=f"79{n:08d}", CMND=f"079090{n:06d}", TienLuong=str(9_000_000 + n), TuThang="12/2025",
              PA="TM", Loai="1"),
    ])  # fmt: skip


async def states(store, ids: list[str]) -> list[tuple[str, list[str], list[str]]]:
    out = []
    for tx in ids:
        d = await store.dossiers.get(tx, ALL)
        out.append((d.state, d.notice_kinds, [w.state for w in await store.work.of(tx) if w.kind == "result"]))
    return out


async def test_a_group_settles_each_dossier_once_with_its_records(api, world):
    ids = [await submit(api, declaration(world, n)) for n in range(6)]
    ids.append(await submit(api, signed(world, OTHER_UNIT, "12/2025", [
        p_row(MasoBHXH=P_SI, TienLuong="10000000", TuThang="12/2025", PA="TM", Loai="1"),
    ]), "other"))  # fmt: skip
    calls = []
    real = api.store.results.settle_group

    async def counted(group, **kw):
        calls.append(len(group))
        return await real(group, **kw)

    api.store.results.settle_group = counted
    assert sorted(await run_work(api)) == ["result:done"] * 7
    assert calls == [7]  # one transaction for the seven
    assert await states(api.store, ids) == [("accepted", ["tiep-nhan", "ket-qua"], ["done"])] * 7
    for n in range(6):  # each dossier's own records, each person once
        resp = await api.get(f"/api/v1/persons/79{n:08d}/book?as_of=12/2025", headers=api.keys["auditor"])
        assert resp.status == 200, await resp.text()
    assert (await api.store.audit.verify()).ok


async def test_a_dossier_settled_meanwhile_is_left_as_it_is(api, world):
    ids = [await submit(api, declaration(world, n)) for n in range(3)]
    store, now = api.store, datetime.now(UTC) + timedelta(seconds=1)
    items = await store.work.claim("me", now, limit=10, lease=timedelta(minutes=2), kinds=["result"])
    handler = api.app[WORK].handlers["result"]
    assert await handler.one(items[1], now) is True  # settled alone first (another process, say)
    notice = await store.dossiers.notice(ids[1], "ket-qua", ALL)
    inputs = await store.results.inputs(ids)
    assert inputs[ids[1]] is None and all(isinstance(inputs[i], SettleInput) for i in (ids[0], ids[2]))
    got = await asyncio.gather(*(handler(item, now) for item in items))
    assert sorted(got) == [False, True, True]
    assert await store.dossiers.notice(ids[1], "ket-qua", ALL) == notice  # never replaced
    assert [s for s, _, _ in await states(store, ids)] == ["accepted"] * 3


async def test_a_unit_changed_meanwhile_is_decided_again_alone(api, world):
    tx = await submit(api, declaration(world, 1))
    store, now = api.store, datetime.now(UTC) + timedelta(seconds=1)
    (item,) = await store.work.claim("me", now, limit=10, lease=timedelta(minutes=2), kinds=["result"])
    seen = (await store.results.inputs([tx]))[tx]
    assert seen.unit is None
    unit = Unit(mst=UNIT.mst, unit_code=None, name=UNIT.name, state=ACTIVE, email="ketoan@example.vn",
                address=None, contact=None, result_channel=None, dossier_id=tx, updated_at=now)
    async with store.db.writing() as conn:  # a registration of the unit comes first
        await write_unit(conn, store.db.insert, unit)
    handler = api.app[WORK].handlers["result"]
    judgement = (await handler.workers.judge_many([seen.original]))[0]
    from interchange.jobs.result import notice_of, settlement_of

    xml = (await handler.workers.sign_notices([notice_of(seen.dossier, judgement, now)]))[0]
    entry = GroupEntry(seen, settlement_of(judgement, xml), item, now)
    assert await store.results.settle_group([entry]) == [CHANGED]
    assert (await store.dossiers.get(tx, ALL)).notice_kinds == ["tiep-nhan"]  # nothing written
    assert await store.results.settle_group([entry, replace(entry, seen=replace(seen, unit=unit))]) == [
        CHANGED, SETTLED]  # fmt: skip
    assert await store.results.settle_group([replace(entry, seen=replace(seen, unit=unit))]) == [ALREADY]
    assert [w.state for w in await store.work.of(tx) if w.kind == "result"] == ["done"]


async def test_a_group_that_fails_is_settled_one_by_one(api, world):
    ids = [await submit(api, declaration(world, n)) for n in range(4)]
    store = api.store

    async def broken(group, **kw):
        raise RuntimeError("the group's transaction failed")

    store.results.settle_group = broken
    assert sorted(await run_work(api)) == ["result:done"] * 4  # each alone, as before groups
    assert await states(store, ids) == [("accepted", ["tiep-nhan", "ket-qua"], ["done"])] * 4
    assert (await store.audit.verify()).ok


async def test_a_dossier_the_rules_cannot_read_fails_only_its_own_item(api, world):
    ids = [await submit(api, declaration(world, n)) for n in range(3)]
    handler = api.app[WORK].handlers["result"]
    for tx in ids:  # not judged at receipt (another process received them, say): judged from the originals
        assert handler.known.take(tx) is not None
    real = handler.workers.judge_many

    async def one_fails(originals):
        out = await real(originals)
        out[1] = ValueError("this dossier cannot be judged")
        return out

    handler.workers.judge_many = one_fails
    ran = await run_work(api)
    assert sorted(ran) == ["result:done", "result:done", "result:retry"]
    assert sorted(s for s, _, _ in await states(api.store, ids)) == ["accepted", "accepted", "received"]


async def test_judged_at_receipt_the_originals_are_not_read_again(api, world):
    ids = [await submit(api, declaration(world, n)) for n in range(4)]
    handler = api.app[WORK].handlers["result"]
    assert handler.known is api.services.reception.known and all(tx in handler.known for tx in ids)
    dropped = handler.known.take(ids[2])  # one dropped (for room, or lost with a restart)
    judged = []
    real = handler.workers.judge_many

    async def counted(originals):
        judged.extend(originals)
        return await real(originals)

    handler.workers.judge_many = counted
    assert sorted(await run_work(api)) == ["result:done"] * 4
    assert len(judged) == 1 and dropped is not None  # only the dropped one, from its original
    assert not any(tx in handler.known for tx in ids)
    assert await states(api.store, ids) == [("accepted", ["tiep-nhan", "ket-qua"], ["done"])] * 4
    for n in range(4):  # the records of each, the one judged late included
        resp = await api.get(f"/api/v1/persons/79{n:08d}/book?as_of=12/2025", headers=api.keys["auditor"])
        assert resp.status == 200, await resp.text()


def test_known_judgements_hold_a_bounded_number_of_records(world):
    from interchange.jobs.result import KnownJudgements
    from interchange.rules.judge import judge
    from tests.helpers import dossier

    one = judge(dossier(None, rows=10))  # 10 records
    known = KnownJudgements(max_rows=30)
    for n in range(4):
        known.put(f"d{n}", one)
    assert [f"d{n}" in known for n in range(4)] == [False, False, True, True]  # 11 rows each: the oldest go
    assert known.take("d3") is one and known.take("d3") is None
    known.put("big", judge(dossier(None, rows=40)))  # more than the bound alone: not kept
    assert "big" not in known

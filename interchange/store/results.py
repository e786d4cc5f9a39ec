"""Settling a received dossier: its KET_QUA, its new state, its unit's registration and its
records, with their audit entries and deliveries, in one transaction, once.

`settle` does one dossier; `inputs` and `settle_group` do many in one read and one write
transaction (the result work settles what it claimed together: one commit, one lock of the
audit chain's head and one delivery check for the group instead of one each).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from interchange.audit.chain import DOSSIER_SETTLED, UNIT_CHANGED, Event
from interchange.kinds import SLUG_RESULT
from interchange.spool import Spooled

from .audit import append as audit_append
from .audit import notice_stored
from .bulk import RecordRows, insert_rows
from .db import Database
from .deliveries import enqueue_deliveries, enqueue_many_deliveries
from .originals import read_originals
from .persons import RecordsJob, write_many_records, write_records
from .rows import DOSSIER_COLUMNS, dossier_of, notice_kinds, unit_data, unit_of
from .tables import dossiers, notices, units, work_items
from .types import (
    ACCEPTED,
    DONE,
    RECEIVED,
    REJECTED,
    RUNNING,
    Dossier,
    Settlement,
    Unit,
    WorkItem,
)
from .units import write_unit

SETTLE_TRIES = 5  # decisions made again because the unit changed meanwhile, at most

# What settle_group did with each dossier of a group.
SETTLED = "settled"  # its KET_QUA, state and records written, its work item done
ALREADY = "already"  # it had its KET_QUA already (or is gone): nothing written
CHANGED = "changed"  # its unit changed since `inputs`: nothing written; decide it again (`settle`)


@dataclass
class SettleInput:
    """What a settlement is decided from: the dossier, its unit's registration, its original (a
    large one in a file, which the caller removes)."""

    dossier: Dossier
    unit: Unit | None
    original: bytes | Spooled | None  # None: not read (judged at receipt)


@dataclass
class GroupEntry:
    """One dossier of a group settlement: decided from `seen`, by the claimed `work` item."""

    seen: SettleInput
    settlement: Settlement
    work: WorkItem
    now: datetime


# Built once (store/db.py says why).
_DOSSIERS = select(*DOSSIER_COLUMNS).where(dossiers.c.id.in_(bindparam("ids", expanding=True)))
_UNITS = select(units).where(units.c.mst.in_(bindparam("msts", expanding=True)))
# Locked in id order: no deadlock between two processes settling overlapping groups (PostgreSQL).
_DOSSIERS_LOCKED = _DOSSIERS.order_by(dossiers.c.id).with_for_update()
_UNITS_LOCKED = _UNITS.order_by(units.c.mst).with_for_update()
_WORK_DONE = (
    update(work_items)
    .where(work_items.c.id == bindparam("item_id"), work_items.c.state == RUNNING,
           work_items.c.claimed_by == bindparam("worker"))
    .values(state=DONE, done_at=bindparam("now"), claimed_until=None)
)  # fmt: skip


class Results:
    def __init__(self, db: Database):
        self._db = db

    async def settle(
        self,
        id: str,
        decide: Callable[[Dossier, Unit | None], Awaitable[Settlement]],
        *,
        now: datetime,
        actor: str = "server",
        work: WorkItem | None = None,
    ) -> Settlement | None:
        """Give a received dossier its result, once. `work`, the claimed item doing this, is
        marked done in the same transaction (one commit fewer per result).

        `decide` gets the dossier and its unit's registration as they are and returns the
        settlement with the signed KET_QUA. It runs outside any transaction (signing waits for
        a worker process, and a SQLite write lock held meanwhile would hold up the receipts);
        the unit is read again under lock before writing, and when it changed in between,
        `decide` runs again. The notice, the dossier's new state, the unit's row and their
        audit entries are committed together. None, and nothing changed, when the dossier has
        its KET_QUA already: work run again after a crash (or by a second process whose lease
        had run out) has the same outcome. LookupError when the dossier is not a received one.
        """
        for _ in range(SETTLE_TRIES):
            async with self._db.reading() as conn:
                dossier, unit = await self._settle_inputs(conn, id, lock=False)
            if dossier is None:
                return None
            settlement = await decide(dossier, unit)
            async with self._db.writing() as conn:
                # Locking the dossier first makes a second settler wait here, then find the KET_QUA.
                dossier, current = await self._settle_inputs(conn, id, lock=True)
                if dossier is None:
                    return None
                if current != unit:
                    continue  # another registration of the unit came first: decide again
                await self._write_settlement(conn, dossier, unit, settlement, now, actor)
                if work is not None:
                    await conn.execute(
                        update(work_items)
                        .where(work_items.c.id == work.id, work_items.c.state == RUNNING,
                               work_items.c.claimed_by == work.claimed_by)
                        .values(state=DONE, done_at=now, claimed_until=None)
                    )
                return settlement
        raise RuntimeError(f"dossier {id}: its unit kept changing while its result was decided")

    async def inputs(self, ids: Sequence[str], *, without_original: Sequence[str] = ()
                     ) -> dict[str, SettleInput | None | LookupError]:
        """For each dossier id, in one read: what its settlement is decided from; None when it is
        gone or has its KET_QUA already (nothing to do); LookupError when it is not a received one.
        A large original is in a file (`Spooled`): the caller removes it. Those `without_original`
        (judged already) come without it (`original` None)."""
        out: dict[str, SettleInput | None | LookupError] = dict.fromkeys(ids)
        skip = set(without_original)

        async def read(conn: AsyncConnection):
            rows = (await conn.execute(_DOSSIERS, {"ids": list(ids)})).all()
            kinds = await notice_kinds(conn, list(ids))
            msts = sorted({r.unit_mst for r in rows if r.unit_mst})
            found_units = (await conn.execute(_UNITS, {"msts": msts})).all() if msts else []
            wanted = [r.id for r in rows if SLUG_RESULT not in kinds.get(r.id, []) and r.state == RECEIVED]
            content = await read_originals(conn, [i for i in wanted if i not in skip])
            content.update((i, None) for i in wanted if i in skip)
            return rows, kinds, found_units, content

        rows, kinds, found_units, content = await self._db.read_inline(read)
        by_mst = {u.mst: unit_of(u) for u in found_units}
        for row in rows:
            if SLUG_RESULT in kinds.get(row.id, []):
                continue
            if row.state != RECEIVED:
                out[row.id] = LookupError(f"dossier {row.id!r} is {row.state}, not {RECEIVED}")
            elif row.id in content:
                dossier = dossier_of(row, kinds.get(row.id, []))
                out[row.id] = SettleInput(dossier, by_mst.get(row.unit_mst), content[row.id])
        return out

    async def settle_group(self, group: Sequence[GroupEntry], *, actor: str = "server") -> list[str]:
        """Settle many dossiers in one transaction, each as `settle` would (its KET_QUA, state,
        records, audit entries, deliveries, its work item done), once; SETTLED, ALREADY or CHANGED
        for each, in order. Dossiers and units are locked in id order (no deadlock between two
        processes settling overlapping groups on PostgreSQL). An exception leaves nothing written:
        the caller settles them one by one then, so that one bad dossier fails alone."""
        return await self._db.write_inline(lambda conn: self._settle_group(conn, group, actor))

    async def _settle_group(self, conn: AsyncConnection, group: Sequence[GroupEntry], actor: str) -> list[str]:
        ids = sorted({e.seen.dossier.id for e in group})
        rows = {r.id: r for r in (await conn.execute(_DOSSIERS_LOCKED, {"ids": ids})).all()}
        kinds = await notice_kinds(conn, ids)
        msts = sorted({r.unit_mst for r in rows.values() if r.unit_mst})
        by_mst = {}
        if msts:
            by_mst = {u.mst: unit_of(u) for u in (await conn.execute(_UNITS_LOCKED, {"msts": msts})).all()}
        outcomes, events, deliveries, done, written = [], [], [], [], _Rows(records=RecordRows())
        for entry in group:
            id = entry.seen.dossier.id
            row = rows.get(id)
            if row is None or SLUG_RESULT in kinds.get(id, []) or id in done:
                outcomes.append(ALREADY)
                continue
            if row.state != RECEIVED:
                raise LookupError(f"dossier {id!r} is {row.state}, not {RECEIVED}")
            unit = by_mst.get(row.unit_mst) if row.unit_mst else None
            if unit != entry.seen.unit or entry.settlement.unit is not None:
                outcomes.append(CHANGED)  # a unit's registration changes one settlement at a time
                continue
            dossier = dossier_of(row, kinds.get(id, []))
            events.append(await self._write_parts(conn, dossier, entry.settlement, entry.now, actor, written))
            deliveries.append((id, dossier.owner, dossier.unit_mst, SLUG_RESULT, entry.now))
            done.append(id)
            outcomes.append(SETTLED)
        settled = [e for e, o in zip(group, outcomes, strict=True) if o == SETTLED]
        if settled:
            jobs = written.jobs
            records = await write_many_records(conn, [job for job, _ in jobs], batch=written.records)
            for (_, entry_events), w in zip(jobs, records, strict=True):
                entry_events += w.audit_events(actor)  # after the entry's own, as `settle` writes them
            await written.write(conn)
            await conn.execute(
                _WORK_DONE, [{"item_id": e.work.id, "worker": e.work.claimed_by, "now": e.now} for e in settled]
            )
            await enqueue_many_deliveries(conn, deliveries)
            await audit_append(conn, [e for entry_events in events for e in entry_events])
        return outcomes

    async def _settle_inputs(
        self, conn: AsyncConnection, id: str, *, lock: bool
    ) -> tuple[Dossier | None, Unit | None]:
        """The dossier and its unit (locked until commit with `lock`); no dossier when it has
        its KET_QUA already."""
        query = select(*DOSSIER_COLUMNS).where(dossiers.c.id == id)
        row = (await conn.execute(query.with_for_update() if lock else query)).first()
        if row is None:
            raise LookupError(f"no dossier {id!r}")
        kinds = (await notice_kinds(conn, [id])).get(id, [])
        if SLUG_RESULT in kinds:
            return None, None
        if row.state != RECEIVED:
            raise LookupError(f"dossier {id!r} is {row.state}, not {RECEIVED}")
        unit = None
        if row.unit_mst:
            query = select(units).where(units.c.mst == row.unit_mst)
            found = (await conn.execute(query.with_for_update() if lock else query)).first()
            unit = None if found is None else unit_of(found)
        return dossier_of(row, kinds), unit

    async def _write_settlement(
        self,
        conn: AsyncConnection,
        dossier: Dossier,
        unit: Unit | None,
        settlement: Settlement,
        now: datetime,
        actor: str,
    ) -> None:
        id = dossier.id
        events = await self._write_parts(conn, dossier, settlement, now, actor)
        if settlement.unit is not None:
            await write_unit(conn, self._db.insert, settlement.unit)
            events.append(
                Event(
                    UNIT_CHANGED,
                    actor,
                    {**unit_data(settlement.unit), "previous_state": unit.state if unit else None},
                    id,
                )
            )
        await enqueue_deliveries(
            conn, dossier_id=id, owner=dossier.owner, unit_mst=dossier.unit_mst, kind=SLUG_RESULT, now=now
        )  # after the unit's row: a registration's own result is mailed to the address it registers
        await audit_append(conn, events)

    async def _write_parts(
        self, conn: AsyncConnection, dossier: Dossier, settlement: Settlement, now: datetime, actor: str,
        rows: _Rows | None = None,
    ) -> list[Event]:
        """The notice, the dossier's row and its records; the audit events of them (to append).
        With `rows`, the notice, the dossier's row and its records job are added to it, written by
        `rows.write` and `write_many_records` (for a group: one statement of each for all); the
        records' events are then added to the list returned."""
        id = dossier.id
        mine = rows if rows is not None else _Rows()
        mine.notices.append({"dossier_id": id, "kind": SLUG_RESULT, "xml": settlement.notice, "created_at": now})
        values = {
            "state": settlement.state,
            "result_at": now,
            # the dossier reads as its KET_QUA does: the rule layer ran, with these errors and warnings
            "layers": {**dossier.layers, "rule": "passed" if settlement.state == ACCEPTED else "failed"},
            "problems": [*dossier.problems, *settlement.problems],
        }
        if settlement.state == REJECTED:
            values["replay_key"] = None  # as after a refusal: the same bytes sent again are judged again
        if settlement.params is not None:
            values["params"] = settlement.params
        mine.dossiers.append((id, values))
        if rows is None:
            await mine.write(conn)
        events = [
            notice_stored(id, SLUG_RESULT, settlement.notice, actor),
            Event(
                DOSSIER_SETTLED,
                actor,
                {
                    "state": settlement.state,
                    "result_at": now.astimezone(UTC).isoformat(),
                    "due_at": dossier.due_at.isoformat() if dossier.due_at else None,
                    "errors": sorted({p.get("code") for p in settlement.problems if p.get("code")}),
                },
                id,
            ),
        ]
        if settlement.records is not None and settlement.state == ACCEPTED:  # a rejected dossier makes no records
            if rows is not None:
                rows.jobs.append((RecordsJob(dossier, settlement.records, now), events))
            else:
                written = await write_records(
                    conn, dossier=dossier, extracted=settlement.records, params=settlement.params, now=now
                )
                events += written.audit_events(actor)
        return events


class _Rows:
    """The KET_QUA notices and dossier rows of settlements, written together: one insert and one
    update per set of columns (executemany of cached statements) for a whole group; with `records`,
    the record rows of the group's dossiers too (one insert per record table)."""

    def __init__(self, records: RecordRows | None = None) -> None:
        self.notices: list[dict] = []
        self.dossiers: list[tuple[str, dict]] = []
        self.records = records
        self.jobs: list[tuple[RecordsJob, list[Event]]] = []  # records to write, events to add theirs to

    async def write(self, conn: AsyncConnection) -> None:
        await insert_rows(conn, notices, self.notices)
        if self.records is not None:
            await self.records.flush(conn)
        by_columns: dict[tuple[str, ...], list[dict]] = {}
        for id, values in self.dossiers:
            by_columns.setdefault(tuple(sorted(values)), []).append(
                {"dossier_id": id, **{f"v_{k}": v for k, v in values.items()}}
            )
        for columns, params in by_columns.items():
            await conn.execute(_dossier_update(columns), params)


@functools.lru_cache(maxsize=16)  # a few sets of columns: with or without params, replay_key
def _dossier_update(columns: tuple[str, ...]):
    """The UPDATE of a settled dossier's `columns` (parameters v_<column>), built once."""
    stmt = update(dossiers).where(dossiers.c.id == bindparam("dossier_id"))
    return stmt.values({k: bindparam(f"v_{k}") for k in columns})

"""Settling a received dossier: its KET_QUA, its new state, its unit's registration and its
records, with their audit entries and deliveries, in one transaction, once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from interchange.audit.chain import DOSSIER_SETTLED, UNIT_CHANGED, Event
from interchange.kinds import SLUG_RESULT

from .audit import append as audit_append
from .audit import notice_stored
from .db import Database
from .deliveries import enqueue_deliveries
from .persons import write_records
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
        await conn.execute(
            notices.insert(), {"dossier_id": id, "kind": SLUG_RESULT, "xml": settlement.notice, "created_at": now}
        )
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
        await conn.execute(update(dossiers).where(dossiers.c.id == id).values(**values))
        records_events = []
        if settlement.records is not None and settlement.state == ACCEPTED:  # a rejected dossier makes no records
            written = await write_records(
                conn, dossier=dossier, extracted=settlement.records, params=settlement.params, now=now
            )
            records_events = written.audit_events(actor)
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
            *records_events,
        ]
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

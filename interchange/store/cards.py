"""E-HI cards: what a card is made of, read for many IDs at once, and the log of lookups.

Reading (`Cards.inputs`): for a list of IDs (personal IDs or SI codes), three indexed queries
per 500 IDs whatever the number of records: the persons (unique indexes on personal_id and
si_code), their contribution changes (ix_contribution_changes_person, with the unit's name from
the dossier by primary key), and their TK1-TS rows (ix_personal_data_changes_person). Nothing is
cached: a settlement changes the next answer (interchange.records.card derives the card).

The lookup log (`LookupLog`): every lookup is queued in memory and written in batches by a
background task, so that the answer never waits for it; `flush()` writes what is queued now
(the listing of a person's lookups calls it first) and `close()` (from `Store.close`) writes
everything before the connections go: a clean shutdown loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, or_, select
from sqlalchemy.engine import Connection

from interchange.months import Month
from interchange.records.book import DeclaredChange, Identity, UnitRef
from interchange.records.card import CardRecords, FacilityRegistration
from interchange.records.model import ContributionChange, PersonRef

from .db import Database
from .persons import LOOKUP_CHUNK, find_person
from .tables import contribution_changes, dossiers, hi_card_lookups, personal_data_changes, persons

log = logging.getLogger("interchange.store.cards")

FLUSH_DELAY = 0.05  # seconds a lookup may wait in memory before its batch is written
FLUSH_BATCH = 2000  # rows per INSERT

_CHANGE_COLUMNS = (
    contribution_changes.c.person_id, contribution_changes.c.dossier_id, contribution_changes.c.received_at,
    contribution_changes.c.unit_mst, contribution_changes.c.unit_code, contribution_changes.c.xpath,
    contribution_changes.c.stt, contribution_changes.c.pa, contribution_changes.c.direction,
    contribution_changes.c.from_month, contribution_changes.c.to_month, contribution_changes.c.benefit_level,
    dossiers.c.unit_name,
)  # fmt: skip


@dataclass(frozen=True)
class Lookup:
    """One lookup as the log keeps it."""

    at: datetime
    key_id: str
    facility: str | None
    asked_id: str
    person_id: int | None
    outcome: str

    def to_json(self) -> dict:
        return {"at": self.at.isoformat(), "key_id": self.key_id, "facility": self.facility,
                "asked_id": self.asked_id, "outcome": self.outcome}  # fmt: skip


class LookupLog:
    def __init__(self, db: Database):
        self._db = db
        self._pending: list[dict] = []
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    def record(self, lookups: Iterable[Lookup]) -> None:
        """Queue lookups; a background task writes them shortly."""
        self._pending += [{name: getattr(x, name) for name in Lookup.__dataclass_fields__} for x in lookups]
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(FLUSH_DELAY)
        try:
            await self.flush()
        except Exception:  # kept in memory: the next flush (or close) tries again
            log.exception("writing the e-HI card lookup log failed; %d lookups kept in memory", len(self._pending))

    async def flush(self) -> None:
        """Write every lookup queued so far."""
        async with self._lock:
            while self._pending:
                batch = self._pending[:FLUSH_BATCH]
                async with self._db.writing() as conn:
                    await conn.execute(hi_card_lookups.insert(), batch)
                del self._pending[: len(batch)]

    async def close(self) -> None:
        """Write everything queued (a clean shutdown loses no lookup)."""
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task])
        await self.flush()


class Cards:
    def __init__(self, db: Database):
        self._db = db
        self.log = LookupLog(db)

    async def inputs(self, ids: list[str]) -> dict[str, CardRecords]:
        """What the card of each known ID is made of (unknown IDs are left out), from one snapshot."""
        return await self._db.read_snapshot(lambda conn: read_card_records(conn, ids))

    async def lookups_of(self, pid: str) -> list[Lookup]:
        """Every lookup of a person (by any of their identifiers, or of the ID as asked when it names
        no one), oldest first."""
        await self.log.flush()
        async with self._db.reading() as conn:
            person = await find_person(conn, pid)
            t = hi_card_lookups
            if person is None:
                where = t.c.asked_id == pid
            else:
                asked = [x for x in (person.personal_id, person.si_code) if x]
                where = or_(t.c.person_id == person.id, t.c.asked_id.in_(asked))
            rows = (await conn.execute(select(t).where(where).order_by(t.c.at, t.c.id))).all()
        return [Lookup(**{name: getattr(r, name) for name in Lookup.__dataclass_fields__}) for r in rows]

    async def close(self) -> None:
        await self.log.close()


_IDS = bindparam("ids", expanding=True)
_PEOPLE = bindparam("people", expanding=True)
# Built once: the statements' cache keys and compiled forms are reused whatever the number of IDs.
_PERSONS = select(
    persons.c.id, persons.c.personal_id, persons.c.si_code, persons.c.name, persons.c.birth_date,
    persons.c.gender, persons.c.nationality,
).where(or_(persons.c.personal_id.in_(_IDS), persons.c.si_code.in_(_IDS)))  # fmt: skip
_CHANGES = (
    select(*_CHANGE_COLUMNS)
    .join(dossiers, dossiers.c.id == contribution_changes.c.dossier_id)
    .where(contribution_changes.c.person_id.in_(_PEOPLE))
)
_FACILITIES = select(
    personal_data_changes.c.person_id, personal_data_changes.c.received_at, personal_data_changes.c.data
).where(personal_data_changes.c.person_id.in_(_PEOPLE))


def read_card_records(conn: Connection, ids: list[str]) -> dict[str, CardRecords]:
    """What the card of each known ID is made of; run inside one read transaction."""
    wanted = sorted(set(ids))
    found: dict[str, CardRecords] = {}
    by_person: dict[int, CardRecords] = {}
    for chunk in _chunks(wanted):
        for p in conn.execute(_PERSONS, {"ids": chunk}):
            records = by_person.get(p.id) or CardRecords(
                p.id, Identity(p.personal_id, p.si_code, p.name, p.birth_date, p.gender, p.nationality)
            )
            by_person[p.id] = records
            for code in (p.personal_id, p.si_code):
                if code:
                    found[code] = records
    person_ids = sorted(by_person)
    for chunk in _chunks(person_ids):
        for r in conn.execute(_CHANGES, {"people": chunk}):
            by_person[r.person_id].changes.append(_change(r))
        for r in conn.execute(_FACILITIES, {"people": chunk}):
            code = (r.data or {}).get("MaBenhVien")
            if code:
                registration = FacilityRegistration(r.received_at, (r.data or {}).get("MaTinhBenhVien"), code)
                by_person[r.person_id].facilities.append(registration)
    return {pid: found[pid] for pid in ids if pid in found}


def _change(r) -> DeclaredChange:
    change = ContributionChange(
        xpath=r.xpath, stt=r.stt, person=PersonRef(None, None, ""), pa=r.pa, direction=r.direction,
        from_month=Month.parse_iso(r.from_month), to_month=Month.parse_iso(r.to_month) if r.to_month else None,
        position=None, workplace=None, salary=None, benefit_level=r.benefit_level,
    )  # fmt: skip
    return DeclaredChange(change, r.dossier_id, r.received_at, UnitRef(r.unit_mst, r.unit_code, r.unit_name))


def _chunks(values: list) -> Iterable[list]:
    for start in range(0, len(values), LOOKUP_CHUNK):
        yield values[start : start + LOOKUP_CHUNK]

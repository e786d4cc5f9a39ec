"""E-HI cards: what a card is made of, read for many IDs at once, and the log of lookups.

Reading (`Cards.inputs`): for a list of IDs (personal IDs or SI codes), one statement per 500
IDs whatever the number of records (SQLITE_CARDS, PG_CARDS): the persons (unique indexes on
personal_id and si_code), each with its contribution changes (ix_contribution_changes_person, with
the unit's name from the dossier by primary key) and its TK1-TS rows
(ix_personal_data_changes_person) aggregated as JSON. It runs on the driver's own connection
(`Database.read_plain`): the lookup is the hottest read of the server, and SQLAlchemy's execution
layer cost more than the statement. Nothing is cached: a settlement changes the next answer
(interchange.records.card derives the card).

The lookup log (`LookupLog`): every lookup is queued in memory and written in batches by a
background task, so that the answer never waits for it; `flush()` writes what is queued now
(the listing of a person's lookups calls it first) and `close()` (from `Store.close`) writes
everything before the connections go: a clean shutdown loses nothing.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import or_, select

from interchange.months import Month
from interchange.records.book import DeclaredChange, Identity, UnitRef
from interchange.records.card import CardRecords, FacilityRegistration
from interchange.records.model import ContributionChange, PersonRef

from .db import Database
from .persons import LOOKUP_CHUNK, find_person
from .tables import hi_card_lookups

log = logging.getLogger("interchange.store.cards")

SMALL_READ = 4  # IDs or fewer: read without the hop to a thread on SQLite (Database.read_plain)
FLUSH_DELAY = 0.5  # seconds a lookup may wait in memory before its batch is written (fewer, larger
# transactions: at 0.05 s the writes took a tenth of the server's CPU at 700 lookups/s)
FLUSH_BATCH = 2000  # rows per transaction
INSERT_ROWS = 250  # rows per INSERT: the event loop prepares each statement's rows (~2.5 us a row),
# and between two statements it answers requests (one INSERT of 1000 rows held it 2.5-3 ms)

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
                    for start in range(0, len(batch), INSERT_ROWS):
                        await conn.execute(hi_card_lookups.insert(), batch[start : start + INSERT_ROWS])
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
        return await read_card_records(self._db, ids)

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


# One statement per lookup, whatever the number of IDs (one or a batch of 500): the persons by
# either identifier (both unique indexes), each with its contribution changes (and the declaring
# unit's name) and its TK1-TS rows aggregated as JSON by correlated subqueries on the person
# indexes. A single statement reads one snapshot on both backends: no transaction to open.
_COLUMNS = "p.id, p.personal_id, p.si_code, p.name, p.birth_date, p.gender, p.nationality"
_CHANGE_FIELDS = (
    "c.dossier_id, c.received_at, c.unit_mst, c.unit_code, c.xpath, c.stt, c.pa, c.direction, "
    "c.from_month, c.to_month, c.benefit_level, d.unit_name"
)
_CHANGES_OF = "FROM contribution_changes c JOIN dossiers d ON d.id = c.dossier_id WHERE c.person_id = p.id"
_FACILITIES_OF = "FROM personal_data_changes f WHERE f.person_id = p.id"
SQLITE_CARDS = (
    f"SELECT {_COLUMNS}, "
    f"(SELECT json_group_array(json_array({_CHANGE_FIELDS})) {_CHANGES_OF}), "
    f"(SELECT json_group_array(json_array(f.received_at, json(f.data))) {_FACILITIES_OF}) "
    "FROM persons p WHERE p.personal_id IN (SELECT value FROM json_each(?1)) "
    "OR p.si_code IN (SELECT value FROM json_each(?1))"
)


@functools.cache
def _sqlite_few(n: int) -> str:
    """SQLITE_CARDS for `n` IDs bound one by one: a third cheaper than json_each for a single ID."""
    ids = ", ".join(f"?{i}" for i in range(1, n + 1))
    return SQLITE_CARDS.replace("IN (SELECT value FROM json_each(?1))", f"IN ({ids})")


PG_CARDS = (
    f"SELECT {_COLUMNS}, "
    f"(SELECT json_agg(json_build_array({_CHANGE_FIELDS})) {_CHANGES_OF})::text, "
    f"(SELECT json_agg(json_build_array(f.received_at, f.data)) {_FACILITIES_OF})::text "
    "FROM persons p WHERE p.personal_id = ANY($1::varchar[]) OR p.si_code = ANY($1::varchar[])"
)


async def read_card_records(db: Database, ids: list[str]) -> dict[str, CardRecords]:
    """What the card of each known ID is made of, in one statement per LOOKUP_CHUNK IDs."""
    wanted = sorted(set(ids))
    found: dict[str, CardRecords] = {}
    for chunk in _chunks(wanted):
        if db.postgres:
            rows = await db.read_plain("", PG_CARDS, chunk)
        elif len(chunk) <= SMALL_READ:
            rows = await db.read_plain(_sqlite_few(len(chunk)), "", *chunk, small=True)
        else:
            rows = await db.read_plain(SQLITE_CARDS, "", json.dumps(chunk))
        for row in rows:
            records = _card_records(row)
            for code in (records.identity.personal_id, records.identity.si_code):
                if code:
                    found[code] = records
    return {pid: found[pid] for pid in ids if pid in found}


def _card_records(row) -> CardRecords:
    person_id, personal_id, si_code, name, birth, gender, nationality, changes, facilities = row
    if isinstance(birth, str):  # SQLite
        birth = date.fromisoformat(birth)
    records = CardRecords(person_id, Identity(personal_id, si_code, name, birth, gender, nationality))
    for c in json.loads(changes) if changes else ():
        records.changes.append(_change(*c))
    for received_at, data in json.loads(facilities) if facilities else ():
        code = (data or {}).get("MaBenhVien")
        if code:
            records.facilities.append(FacilityRegistration(_utc(received_at), data.get("MaTinhBenhVien"), code))
    return records


def _utc(text: str) -> datetime:
    """A stored time as JSON gives it: SQLite's naive UTC text, PostgreSQL's ISO with offset."""
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _change(dossier_id, received_at, unit_mst, unit_code, xpath, stt, pa, direction, from_month, to_month,
            benefit_level, unit_name) -> DeclaredChange:  # fmt: skip
    change = ContributionChange(
        xpath=xpath, stt=stt, person=_NOBODY, pa=pa, direction=direction, from_month=Month.parse_iso(from_month),
        to_month=Month.parse_iso(to_month) if to_month else None,
        position=None, workplace=None, salary=None, benefit_level=benefit_level,
    )  # fmt: skip
    return DeclaredChange(change, dossier_id, _utc(received_at), UnitRef(unit_mst, unit_code, unit_name))


_NOBODY = PersonRef(None, None, "")


def _chunks(values: list) -> Iterable[list]:
    for start in range(0, len(values), LOOKUP_CHUNK):
        yield values[start : start + LOOKUP_CHUNK]

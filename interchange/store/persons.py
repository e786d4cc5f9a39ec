"""Persons and the records of accepted dossiers: writing them with the dossier's result, and
reading back what the electronic social-insurance book is made of (interchange.records.book).

Identity (SPEC §6): the 12-digit personal ID is the key and the 10-digit SI code an alias. A
row names a person by either or both; a person first declared by SI code and later by personal ID
(or with both) is one person. When a row names a personal ID known on one person and an SI code
known on another that has no personal ID, the two are one: they are merged (records moved to the
row that stays, the other row keeps its id, loses its identifiers and points at the one kept), and
the merge is written to the audit log with the result. A row whose identifiers belong to two
persons that cannot be one (two different personal IDs, or two different SI codes) is recorded
under its personal ID and reported as a conflict.

Personal data (name, date of birth, gender, nationality) follows the newest dossier, with TK1-TS
(the participant's own registration or change) outranking D02-TS and M01B-HSB: those only fill
in what is unknown or replace data they set themselves.

Writes are batched: one look-up per 500 identifiers, one insert (multi-row on PostgreSQL) or
update per table, whatever the number of rows; a group settlement writes the records of its
dossiers in runs of independent ones (`write_many_records`), the resolution itself in
interchange.store.identity. A dossier's records are written once: a second write finds them and changes
nothing, and the (dossier, XPath) unique constraints refuse a duplicate written concurrently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import bindparam, or_, select, text, union, update
from sqlalchemy.ext.asyncio import AsyncConnection

from interchange.audit.chain import Event
from interchange.months import Month
from interchange.records.book import DeclaredChange, DeclaredClaim, Identity, PersonRecords, UnitRef
from interchange.records.model import BenefitClaim, ContributionChange, Extracted, PersonRef

from .bulk import PAGE, RecordRows, insert_rows
from .db import Database
from .identity import Resolver, Working
from .rows import visible
from .tables import benefit_claims, contribution_changes, dossiers, personal_data_changes, persons
from .types import Dossier, Scope

LOOKUP_CHUNK = 500  # identifiers per IN (...) list: well under every driver's parameter limit
TK1, D02, M01B = "TK1-TS", "D02-TS", "M01B-HSB"
RANK = {TK1: 2, D02: 1, M01B: 0}  # whose personal data wins
RECORD_TABLES = (contribution_changes, personal_data_changes, benefit_claims)

# Audit entry kinds written with a dossier's result.
RECORDS_WRITTEN = "records.written"
PERSON_MERGED = "person.merged"


@dataclass(frozen=True)
class Person:
    id: int
    personal_id: str | None
    si_code: str | None
    name: str | None
    birth_date: date | None
    gender: int | None
    nationality: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def identity(self) -> Identity:
        return Identity(self.personal_id, self.si_code, self.name, self.birth_date, self.gender, self.nationality)


@dataclass(frozen=True)
class Merge:
    kept: int  # persons.id of the row that stays
    merged: int  # persons.id of the row merged into it
    personal_id: str | None  # the identifiers the kept row has now
    si_code: str | None


@dataclass
class RecordsWritten:
    dossier_id: str
    contribution_changes: int = 0
    personal_data: int = 0
    benefit_claims: int = 0
    persons_created: int = 0
    persons_updated: int = 0
    merges: list[Merge] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    already: bool = False  # the dossier's records were written before: nothing was changed

    def audit_events(self, actor: str) -> list[Event]:
        """What the audit log keeps of this write (nothing when it was a repeat)."""
        if self.already:
            return []
        events = [
            Event(
                RECORDS_WRITTEN,
                actor,
                {
                    "contribution_changes": self.contribution_changes,
                    "personal_data": self.personal_data,
                    "benefit_claims": self.benefit_claims,
                    "persons_created": self.persons_created,
                    "persons_updated": self.persons_updated,
                    "conflicts": self.conflicts[:100],
                },
                self.dossier_id,
            )
        ]
        events += [
            Event(
                PERSON_MERGED,
                actor,
                {"kept": m.kept, "merged": m.merged, "personal_id": m.personal_id, "si_code": m.si_code},
                self.dossier_id,
            )
            for m in self.merges
        ]
        return events


def _rows_of(extracted: Extracted) -> list[tuple[str, object]]:
    """Every row with a person, TK1-TS first: personal data is taken in order of authority."""
    return [
        *((TK1, r) for r in extracted.personal_data),
        *((D02, r) for r in extracted.contribution_changes),
        *((M01B, r) for r in extracted.benefit_claims),
    ]


PERSONS_LOCK = 0x696E_7463_0002  # pg_advisory_xact_lock key: one settlement writes persons at a time


@dataclass
class RecordsJob:
    """The records of one accepted dossier to write (`write_many_records`), at `now`."""

    dossier: Dossier
    extracted: Extracted
    now: datetime


@dataclass
class _Pending:
    """A dossier of a `write_many_records` call while its persons are resolved."""

    job: RecordsJob
    written: RecordsWritten
    rows: list
    loaded: list[Working] = field(default_factory=list)
    resolver: Resolver | None = None
    people: list[Working] = field(default_factory=list)


async def write_records(
    conn: AsyncConnection, *, dossier: Dossier, extracted: Extracted, params: dict | None, now: datetime,
    batch: RecordRows | None = None,
) -> RecordsWritten:
    """Write the records of an accepted dossier, inside the caller's transaction (the one that
    stores its KET_QUA). `params` is the legal-parameters stamp, kept on the dossier by the caller.
    With `batch`, the record rows are added to it for the caller to flush (`write_many_records`)."""
    return (await write_many_records(conn, [RecordsJob(dossier, extracted, now)], batch=batch))[0]


async def write_many_records(
    conn: AsyncConnection, jobs: Sequence[RecordsJob], *, batch: RecordRows | None = None
) -> list[RecordsWritten]:
    """Write the records of several accepted dossiers in the caller's transaction, leaving what
    one `write_records` each, in order, would leave; what was written for each, in order.

    The dossiers are taken in runs of independent ones: no two of a run name a common identifier
    or a common stored person (all of a person's identifiers count), so none sees another's
    writes and each is resolved against the persons as loaded for the run (one look-up), and the
    run's persons are written together. A dossier naming what an earlier one of the run touched
    starts the next run, resolved against the persons as the run before left them. The record
    rows go to `batch` (the caller's, or one flushed here), flushed before a merge moves records.
    """
    out = [RecordsWritten(j.dossier.id) for j in jobs]
    # settle() writes records once, with the KET_QUA; this guards any other caller, in one statement
    ids = [j.dossier.id for j in jobs]
    earlier: set[str] = set()
    for chunk in _chunks(ids, LOOKUP_CHUNK):
        earlier.update((await conn.execute(_RECORDED, {"ids": chunk})).scalars())
    todo: list[_Pending] = []
    for job, written in zip(jobs, out, strict=True):
        if job.dossier.id in earlier:
            written.already = True
            continue
        rows = []
        for form, r in _rows_of(job.extracted):
            if r.person.personal_id or r.person.si_code:
                rows.append((form, r))
            else:  # the rules refuse such a row; should one get here, it cannot be anyone's record
                written.conflicts.append(f"{r.xpath} (STT {r.stt}): neither personal ID nor SI code; not recorded")
        if rows:
            todo.append(_Pending(job, written, rows))
    if not todo:
        return out
    mine = batch if batch is not None else RecordRows()
    if conn.dialect.name == "postgresql" and not mine.persons_locked:
        # Who is who is decided from the persons as they are: two settlements naming the same new
        # person at once would both insert it (one then fails on the unique key and is judged all
        # over again). Persons are written one settlement at a time; SQLite has one writer anyway.
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PERSONS_LOCK})
        mine.persons_locked = True
    while todo:
        refs = [r.person for p in todo for _, r in p.rows]
        loaded = await _load(conn, {r.personal_id for r in refs}, {r.si_code for r in refs})
        run, todo = _independent_run(todo, loaded)
        await _write_run(conn, run, mine)
    if batch is None:
        await mine.flush(conn)
    return out


def _independent_run(todo: list[_Pending], loaded: list[Working]) -> tuple[list[_Pending], list[_Pending]]:
    """The longest head of `todo` whose dossiers touch no common identifier or stored person,
    each given the loaded persons it names; and the rest."""
    by_pid = {p.personal_id: p for p in loaded if p.personal_id}
    by_si = {p.si_code: p for p in loaded if p.si_code}
    taken: set = set()
    for n, pending in enumerate(todo):
        mine: dict[int, Working] = {}
        marks: set = set()
        for _, r in pending.rows:
            pid, si = r.person.personal_id or None, r.person.si_code or None
            for key, found in ((("p", pid), by_pid.get(pid)), (("s", si), by_si.get(si))):
                if key[1] is not None:
                    marks.add(key)
                if found is not None:
                    mine[found.id] = found
                    marks.update(k for k in (("id", found.id), ("p", found.personal_id), ("s", found.si_code)) if k[1])
        if n and marks & taken:
            return todo[:n], todo[n:]
        taken |= marks
        pending.loaded = list(mine.values())
    return todo, []


async def _write_run(conn: AsyncConnection, run: list[_Pending], batch: RecordRows) -> None:
    """Resolve and write the persons of a run of independent dossiers, add their record rows."""
    for p in run:
        p.resolver = Resolver(p.loaded)
        at = p.job.dossier.received_at
        p.people = [p.resolver.resolve(r.person, f"{r.xpath} (STT {r.stt})", RANK[form], at) for form, r in p.rows]
    if any(p.resolver.merges for p in run):
        await batch.flush(conn)  # the merge moves the records of earlier dossiers of the group too
        merged = await _apply_merges(conn, [(m, p.job.now) for p in run for m in p.resolver.merges])
        for p in run:
            p.written.merges, merged = merged[: len(p.resolver.merges)], merged[len(p.resolver.merges) :]
    changed = [(w, p.job.now) for p in run for w in p.loaded if w.merged_into is None and w.dirty]
    await _update_changed(conn, changed)
    await _insert_new(conn, [(w, p.job.now) for p in run for w in p.resolver.new])
    for p in run:
        made = await _insert_records(conn, p.job.dossier, p.rows, p.people, batch)
        written = p.written
        written.contribution_changes = made[D02]
        written.personal_data = made[TK1]
        written.benefit_claims = made[M01B]
        written.persons_created = len(p.resolver.new)
        written.persons_updated = sum(1 for w in p.loaded if w.merged_into is None and w.dirty)
        written.conflicts += p.resolver.conflicts


async def _apply_merges(conn: AsyncConnection, merges: list[tuple[tuple[Working, Working], datetime]]) -> list[Merge]:
    """Merged rows first give up their identifiers, so the rows kept can take them (unique
    columns); their records, and the rows merged into them earlier, move to the row kept."""
    moves = [{"gone_id": gone.id, "kept_id": kept.final.id, "now": now} for (kept, gone), now in merges]
    await conn.execute(
        update(persons)
        .where(persons.c.id == bindparam("gone_id"))
        .values(personal_id=None, si_code=None, merged_into=bindparam("kept_id"), updated_at=bindparam("now")),
        moves,
    )
    for table in RECORD_TABLES:
        await conn.execute(
            update(table).where(table.c.person_id == bindparam("gone_id")).values(person_id=bindparam("kept_id")),
            moves,
        )
    await conn.execute(
        update(persons)
        .where(persons.c.merged_into == bindparam("gone_id"))
        .values(merged_into=bindparam("kept_id")),
        moves,
    )
    return [Merge(kept.final.id, gone.id, kept.final.personal_id, kept.final.si_code) for (kept, gone), _ in merges]


async def _update_changed(conn: AsyncConnection, changed: list[tuple[Working, datetime]]) -> None:
    """Write back the loaded persons the resolver changed (and did not merge away), each at its time."""
    if changed:
        await conn.execute(
            update(persons)
            .where(persons.c.id == bindparam("person_id"))
            .values({**{k: bindparam(f"v_{k}") for k in changed[0][0].values()}, "updated_at": bindparam("now")}),
            [{"person_id": p.id, "now": now, **{f"v_{k}": v for k, v in p.values().items()}} for p, now in changed],
        )


async def _insert_new(conn: AsyncConnection, new: list[tuple[Working, datetime]]) -> None:
    """Insert the persons first seen in these dossiers and give them their ids.

    One insert of them all (`insert_rows`), then the ids by identifier: an ordered INSERT ...
    RETURNING would be one statement per row on SQLite."""
    if new:
        await insert_rows(conn, persons, ({**p.values(), "created_at": now, "updated_at": now} for p, now in new))
        await _fetch_ids(conn, [p for p, _ in new])


async def _insert_records(
    conn: AsyncConnection, dossier: Dossier, rows: list, people: list[Working], batch: RecordRows | None
) -> dict[str, int]:
    """One record row per form row, on the person it was resolved to, added to `batch` (or
    inserted now) a page at a time; how many of each form."""
    base = {
        "dossier_id": dossier.id,
        "received_at": dossier.received_at,
        "unit_mst": dossier.unit_mst,
        "unit_code": dossier.unit_code,
    }
    mine = batch if batch is not None else RecordRows()
    tables = {D02: contribution_changes, TK1: personal_data_changes, M01B: benefit_claims}
    made = dict.fromkeys(tables, 0)
    pages: dict[str, list[dict]] = {form: [] for form in tables}
    for (form, r), person in zip(rows, people, strict=True):
        row = {
            **base,
            "person_id": person.final.id,
            "xpath": r.xpath,
            "stt": r.stt,
            "personal_id": r.person.personal_id,
            "si_code": r.person.si_code,
            "name": r.person.name,
        }
        pages[form].append({**row, **_FORM_VALUES[form](r)})
        made[form] += 1
        if len(pages[form]) >= PAGE:
            await mine.add(conn, tables[form], pages[form])
            pages[form] = []
    for form, table in tables.items():
        await mine.add(conn, table, pages[form])
    if batch is None:
        await mine.flush(conn)
    return made


def _change_values(c: ContributionChange) -> dict:
    return {
        "pa": c.pa,
        "direction": c.direction,
        "from_month": c.from_month.iso,
        "to_month": c.to_month.iso if c.to_month else None,
        "position": c.position,
        "workplace": c.workplace,
        "salary": c.salary,
        "coefficient": c.coefficient,
        "allowances": {k: str(v) for k, v in c.allowances.items() if v is not None},
        "rate": c.rate,
        "region": c.region,
        "note": c.note,
        "benefit_level": c.benefit_level,
    }


def _data_values(d) -> dict:
    return {
        "birth_date": d.person.birth_date,
        "gender": d.person.gender,
        "nationality": d.person.nationality,
        "data": dict(d.data),
        "change": d.change,
    }


def _claim_values(c: BenefitClaim) -> dict:
    return {
        "regime": c.regime,
        "kind": c.kind,
        "group_code": c.group,
        "from_date": c.from_date,
        "to_date": c.to_date,
        "days": c.days,
        "data": dict(c.data),
    }


_FORM_VALUES = {D02: _change_values, TK1: _data_values, M01B: _claim_values}


# Built once (store/db.py says why).
_RECORDED = union(*(select(t.c.dossier_id).where(t.c.dossier_id.in_(bindparam("ids", expanding=True)))
                    for t in RECORD_TABLES))  # fmt: skip
_BY_CODE = {c.name: c.in_(bindparam("codes", expanding=True)) for c in (persons.c.personal_id, persons.c.si_code)}
_PERSONS_BY = {name: select(persons).where(match) for name, match in _BY_CODE.items()}
_IDS_BY = {name: select(persons.c.id, persons.c[name]).where(match) for name, match in _BY_CODE.items()}


async def _load(conn: AsyncConnection, pids: set[str | None], sis: set[str | None]) -> list[Working]:
    """The stored persons with any of these identifiers, a few hundred identifiers per query."""
    wanted = [(persons.c.personal_id, sorted(x for x in pids if x)), (persons.c.si_code, sorted(x for x in sis if x))]
    found: dict[int, Working] = {}
    for column, values in wanted:
        for chunk in _chunks(values, LOOKUP_CHUNK):
            for row in await conn.execute(_PERSONS_BY[column.name], {"codes": chunk}):
                if row.id not in found:
                    found[row.id] = Working(row)
    return list(found.values())


async def _fetch_ids(conn: AsyncConnection, new: list[Working]) -> None:
    """Set the ids of persons just inserted (each has a personal ID or an SI code)."""
    by_pid = {p.personal_id: p for p in new if p.personal_id}
    by_si = {p.si_code: p for p in new if not p.personal_id}
    for column, wanted in ((persons.c.personal_id, by_pid), (persons.c.si_code, by_si)):
        for chunk in _chunks(sorted(wanted), LOOKUP_CHUNK):
            for id, code in await conn.execute(_IDS_BY[column.name], {"codes": chunk}):
                wanted[code].id = id
    missing = [p for p in new if p.id is None]
    if missing:
        raise RuntimeError(f"persons inserted but not found again: {len(missing)}")


def _chunks(values: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# ---- reading -----------------------------------------------------------------------------


def _person(row) -> Person:
    return Person(**{name: getattr(row, name) for name in Person.__dataclass_fields__})


async def find_person(conn: AsyncConnection, pid: str) -> Person | None:
    """A person by personal ID (12 digits) or SI code (10 digits); None when unknown."""
    query = select(persons).where(or_(persons.c.personal_id == pid, persons.c.si_code == pid))
    row = (await conn.execute(query)).first()
    return None if row is None else _person(row)


async def read_person_records(conn: AsyncConnection, pid: str, visible) -> PersonRecords | None:
    """Everything the book of a person needs. `visible` is a condition on `dossiers` saying which
    dossiers the reader may see (None: every one). None when the person is unknown, or the reader
    may see none of their records."""
    person = await find_person(conn, pid)
    if person is None:
        return None
    change_rows, claim_rows = [
        (
            await conn.execute(
                select(t, dossiers.c.unit_name)
                .join(dossiers, dossiers.c.id == t.c.dossier_id)
                .where(t.c.person_id == person.id)
                .order_by(t.c.received_at, t.c.dossier_id, t.c.stt)
            )
        ).all()
        for t in (contribution_changes, benefit_claims)
    ]
    data_ids = (
        await conn.execute(
            select(personal_data_changes.c.dossier_id).where(personal_data_changes.c.person_id == person.id)
        )
    ).scalars().all()
    ids = {r.dossier_id for r in change_rows} | {r.dossier_id for r in claim_rows} | set(data_ids)
    allowed: frozenset[str] | None = None
    if visible is not None:
        seen: set[str] = set()
        for chunk in _chunks(sorted(ids), LOOKUP_CHUNK):
            seen.update((await conn.execute(select(dossiers.c.id).where(dossiers.c.id.in_(chunk), visible))).scalars())
        if not seen:
            return None
        allowed = frozenset(seen)
    return PersonRecords(
        identity=person.identity,
        changes=[_declared_change(r) for r in change_rows],
        claims=[_declared_claim(r) for r in claim_rows],
        visible=allowed,
    )


def _ref(r) -> PersonRef:
    return PersonRef(personal_id=r.personal_id, si_code=r.si_code, name=r.name or "")


def _declared_change(r) -> DeclaredChange:
    change = ContributionChange(
        xpath=r.xpath,
        stt=r.stt,
        person=_ref(r),
        pa=r.pa,
        direction=r.direction,
        from_month=Month.parse_iso(r.from_month),
        to_month=Month.parse_iso(r.to_month) if r.to_month else None,
        position=r.position,
        workplace=r.workplace,
        salary=_decimal(r.salary),
        allowances={k: Decimal(v) for k, v in (r.allowances or {}).items()},
        rate=_decimal(r.rate),
        region=r.region,
        note=r.note,
        benefit_level=r.benefit_level,
    )
    return DeclaredChange(change, r.dossier_id, r.received_at, UnitRef(r.unit_mst, r.unit_code, r.unit_name))


def _declared_claim(r) -> DeclaredClaim:
    claim = BenefitClaim(
        xpath=r.xpath,
        stt=r.stt,
        person=_ref(r),
        regime=r.regime,
        kind=r.kind,
        group=r.group_code,
        from_date=r.from_date,
        to_date=r.to_date,
        days=r.days,
        data=dict(r.data or {}),
    )
    return DeclaredClaim(claim, r.dossier_id, r.received_at, UnitRef(r.unit_mst, r.unit_code, r.unit_name))


def _decimal(value) -> Decimal | None:
    """Numeric columns come back as Decimal (PostgreSQL) or via float (SQLite): normalise both."""
    if value is None:
        return None
    return Decimal(str(value)).normalize()


class Persons:
    def __init__(self, db: Database):
        self._db = db

    async def find(self, pid: str) -> Person | None:
        """A person by personal ID or SI code."""
        async with self._db.reading() as conn:
            return await find_person(conn, pid)

    async def book_rows(self, pid: str, scope: Scope) -> PersonRecords | None:
        """What the book of a person is made of, read from one snapshot, with the dossiers `scope`
        may see; None when the person is unknown or `scope` may see none of their records."""
        async with self._db.reading(snapshot=True) as conn:
            return await read_person_records(conn, pid, None if scope.all else visible(scope))

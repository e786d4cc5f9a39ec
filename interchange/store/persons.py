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

Writes are batched: one look-up per 500 identifiers, one executemany per table, whatever the
number of rows. A dossier's records are written once: a second write finds them and changes
nothing, and the (dossier, XPath) unique constraints refuse a duplicate written concurrently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import bindparam, exists, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from interchange.audit.chain import Event
from interchange.months import Month
from interchange.records.book import DeclaredChange, DeclaredClaim, Identity, PersonRecords, UnitRef
from interchange.records.model import BenefitClaim, ContributionChange, Extracted, PersonRef

from .bulk import RecordRows, insert_rows
from .db import Database
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


class _Working:
    """A person while a dossier's rows are resolved: loaded, or new (id None until inserted)."""

    def __init__(self, row=None, **values):
        src = row._mapping if row is not None else values
        self.id: int | None = src.get("id")
        self.personal_id: str | None = src.get("personal_id")
        self.si_code: str | None = src.get("si_code")
        self.name: str | None = src.get("name")
        self.birth_date: date | None = src.get("birth_date")
        self.gender: int | None = src.get("gender")
        self.nationality: str | None = src.get("nationality")
        self.data_rank: int = src.get("data_rank", 0)
        self.data_at: datetime = src["data_at"]
        self.merged_into: _Working | None = None
        self.dirty = False

    @property
    def final(self) -> _Working:
        p = self
        while p.merged_into is not None:
            p = p.merged_into
        return p

    def offer(self, ref: PersonRef, rank: int, at: datetime) -> None:
        """Take the personal data of a row: fill what is unknown; replace what differs when the
        row's form outranks (or equals and is not older than) what set the data."""
        newer = (rank, at) >= (self.data_rank, self.data_at)
        changed = False
        for name in ("name", "birth_date", "gender", "nationality"):
            value = getattr(ref, name)
            if value is None or value == "":
                continue
            current = getattr(self, name)
            if current is None or (newer and current != value):
                setattr(self, name, value)
                changed = True
        # The source is moved on only when the data changes: a monthly dossier repeating what is
        # known rewrites no person row.
        if changed or rank > self.data_rank:
            self.dirty = True
            if newer:
                self.data_rank, self.data_at = rank, at

    def values(self) -> dict:
        return {
            "personal_id": self.personal_id,
            "si_code": self.si_code,
            "name": self.name,
            "birth_date": self.birth_date,
            "gender": self.gender,
            "nationality": self.nationality,
            "data_rank": self.data_rank,
            "data_at": self.data_at,
        }


class _Resolver:
    """Each PersonRef of a dossier to one person, with the merges and conflicts that brings."""

    def __init__(self, loaded: Iterable[_Working]):
        self.by_pid: dict[str, _Working] = {}
        self.by_si: dict[str, _Working] = {}
        self.new: list[_Working] = []
        self.merges: list[tuple[_Working, _Working]] = []  # (kept, merged), both stored before
        self.conflicts: list[str] = []
        for p in loaded:
            self._index(p)

    def _index(self, p: _Working) -> None:
        if p.personal_id:
            self.by_pid[p.personal_id] = p
        if p.si_code:
            self.by_si[p.si_code] = p

    def resolve(self, ref: PersonRef, where: str, rank: int, at: datetime) -> _Working:
        person = self._find(ref, where, at)
        person.offer(ref, rank, at)
        return person

    def _find(self, ref: PersonRef, where: str, at: datetime) -> _Working:
        pid, si = ref.personal_id or None, ref.si_code or None
        by_pid = self.by_pid.get(pid) if pid else None
        by_si = self.by_si.get(si) if si else None
        if by_pid is not None and by_si is not None and by_pid is not by_si:
            if by_si.personal_id is None and by_pid.si_code is None:
                return self._merge(by_pid, by_si)
            self.conflicts.append(
                f"{where}: SI code {si} belongs to another person (personal ID {by_si.personal_id}) "
                f"than personal ID {pid} (SI code {by_pid.si_code}); recorded under personal ID {pid}"
            )
            return by_pid
        if by_pid is not None:
            if si and by_pid.si_code is None:
                by_pid.si_code, by_pid.dirty = si, True
                self.by_si[si] = by_pid
            elif si and by_pid.si_code != si:
                self.conflicts.append(
                    f"{where}: personal ID {pid} is known with SI code {by_pid.si_code}, not {si}; "
                    f"recorded under personal ID {pid}"
                )
            return by_pid
        if by_si is not None:
            if pid and by_si.personal_id is None:
                by_si.personal_id, by_si.dirty = pid, True
                self.by_pid[pid] = by_si
                return by_si
            if not pid:
                return by_si
            # The SI code is another person's: the personal ID is the key, so this is a new person.
            self.conflicts.append(
                f"{where}: SI code {si} belongs to personal ID {by_si.personal_id}, not {pid}; "
                f"recorded under personal ID {pid}"
            )
            si = None
        person = _Working(personal_id=pid, si_code=si, name=ref.name, data_rank=-1, data_at=at)
        self.new.append(person)
        self._index(person)
        return person

    def _merge(self, by_pid: _Working, by_si: _Working) -> _Working:
        # Keep a stored row when only one of them is stored, so that no records move needlessly.
        if by_pid.id is None and by_si.id is not None:
            kept, gone = by_si, by_pid
        else:
            kept, gone = by_pid, by_si
        newer, older = (gone, kept) if (gone.data_rank, gone.data_at) > (kept.data_rank, kept.data_at) else (kept, gone)
        for name in ("name", "birth_date", "gender", "nationality"):
            setattr(kept, name, getattr(newer, name) if getattr(newer, name) is not None else getattr(older, name))
        kept.data_rank, kept.data_at = newer.data_rank, newer.data_at
        kept.personal_id = kept.personal_id or gone.personal_id
        kept.si_code = kept.si_code or gone.si_code
        kept.dirty = True
        gone.merged_into = kept
        if gone.id is None:
            self.new.remove(gone)
        else:
            self.merges.append((kept, gone))
        self._index(kept)
        return kept


def _rows_of(extracted: Extracted) -> list[tuple[str, object]]:
    """Every row with a person, TK1-TS first: personal data is taken in order of authority."""
    return [
        *((TK1, r) for r in extracted.personal_data),
        *((D02, r) for r in extracted.contribution_changes),
        *((M01B, r) for r in extracted.benefit_claims),
    ]


PERSONS_LOCK = 0x696E_7463_0002  # pg_advisory_xact_lock key: one settlement writes persons at a time


async def write_records(
    conn: AsyncConnection, *, dossier: Dossier, extracted: Extracted, params: dict | None, now: datetime,
    batch: RecordRows | None = None,
) -> RecordsWritten:
    """Write the records of an accepted dossier, inside the caller's transaction (the one that
    stores its KET_QUA). `params` is the legal-parameters stamp, kept on the dossier by the caller.
    With `batch` (a group settlement), the record rows are added to it, for the caller to flush,
    and the persons' lock is taken once for the group; persons are written now, so the next
    dossier of the group finds them as it would after a commit."""
    written = RecordsWritten(dossier.id)
    # settle() writes records once, with the KET_QUA; this guards any other caller, in one statement
    earlier = or_(*(exists().where(table.c.dossier_id == dossier.id) for table in RECORD_TABLES))
    if (await conn.execute(select(earlier))).scalar():
        written.already = True
        return written
    rows = []
    for form, r in _rows_of(extracted):
        if r.person.personal_id or r.person.si_code:
            rows.append((form, r))
        else:  # the rules refuse such a row; should one get here, it cannot be anyone's record
            written.conflicts.append(f"{r.xpath} (STT {r.stt}): neither personal ID nor SI code; not recorded")
    if not rows:
        return written
    if conn.dialect.name == "postgresql" and not (batch is not None and batch.persons_locked):
        # Who is who is decided from the persons as they are: two settlements naming the same new
        # person at once would both insert it (one then fails on the unique key and is judged all
        # over again). Persons are written one settlement at a time; SQLite has one writer anyway.
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PERSONS_LOCK})
        if batch is not None:
            batch.persons_locked = True
    loaded = await _load(conn, {r.person.personal_id for _, r in rows}, {r.person.si_code for _, r in rows})
    resolver = _Resolver(loaded)
    at = dossier.received_at
    people = [resolver.resolve(r.person, f"{r.xpath} (STT {r.stt})", RANK[form], at) for form, r in rows]

    if resolver.merges:
        if batch is not None:
            await batch.flush(conn)  # the merge moves the records of earlier dossiers of the group too
        written.merges = await _apply_merges(conn, resolver.merges, now)
    written.persons_updated = await _update_changed(conn, loaded, now)
    if resolver.new:
        await _insert_new(conn, resolver.new, now)
    made = await _insert_records(conn, dossier, rows, people, batch)
    written.contribution_changes = len(made[D02])
    written.personal_data = len(made[TK1])
    written.benefit_claims = len(made[M01B])
    written.persons_created = len(resolver.new)
    written.conflicts += resolver.conflicts
    return written


async def _apply_merges(conn: AsyncConnection, merges: list[tuple[_Working, _Working]], now: datetime) -> list[Merge]:
    """Merged rows first give up their identifiers, so the rows kept can take them (unique
    columns); their records, and the rows merged into them earlier, move to the row kept."""
    moves = [{"gone_id": gone.id, "kept_id": kept.final.id} for kept, gone in merges]
    await conn.execute(
        update(persons)
        .where(persons.c.id == bindparam("gone_id"))
        .values(personal_id=None, si_code=None, merged_into=bindparam("kept_id"), updated_at=now),
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
    return [Merge(kept.final.id, gone.id, kept.final.personal_id, kept.final.si_code) for kept, gone in merges]


async def _update_changed(conn: AsyncConnection, loaded: list[_Working], now: datetime) -> int:
    """Write back the loaded persons the resolver changed (and did not merge away); how many."""
    changed = [p for p in loaded if p.merged_into is None and p.dirty]
    if changed:
        await conn.execute(
            update(persons)
            .where(persons.c.id == bindparam("person_id"))
            .values({**{k: bindparam(f"v_{k}") for k in changed[0].values()}, "updated_at": now}),
            [{"person_id": p.id, **{f"v_{k}": v for k, v in p.values().items()}} for p in changed],
        )
    return len(changed)


async def _insert_new(conn: AsyncConnection, new: list[_Working], now: datetime) -> None:
    """Insert the persons first seen in this dossier and give them their ids.

    One insert of them all (`insert_rows`), then the ids by identifier: an ordered INSERT ...
    RETURNING would be one statement per row on SQLite."""
    await insert_rows(conn, persons, [{**p.values(), "created_at": now, "updated_at": now} for p in new])
    await _fetch_ids(conn, new)


async def _insert_records(
    conn: AsyncConnection, dossier: Dossier, rows: list, people: list[_Working], batch: RecordRows | None
) -> dict[str, list[dict]]:
    """One record row per form row, on the person it was resolved to; the rows by form. Inserted
    now, or added to `batch` for its flush."""
    base = {
        "dossier_id": dossier.id,
        "received_at": dossier.received_at,
        "unit_mst": dossier.unit_mst,
        "unit_code": dossier.unit_code,
    }
    made: dict[str, list[dict]] = {TK1: [], D02: [], M01B: []}
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
        made[form].append({**row, **_FORM_VALUES[form](r)})
    for form, table in ((D02, contribution_changes), (TK1, personal_data_changes), (M01B, benefit_claims)):
        if batch is not None:
            batch.add(table, made[form])
        else:
            await insert_rows(conn, table, made[form])
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


async def _load(conn: AsyncConnection, pids: set[str | None], sis: set[str | None]) -> list[_Working]:
    """The stored persons with any of these identifiers, a few hundred identifiers per query."""
    wanted = [(persons.c.personal_id, sorted(x for x in pids if x)), (persons.c.si_code, sorted(x for x in sis if x))]
    found: dict[int, _Working] = {}
    for column, values in wanted:
        for chunk in _chunks(values, LOOKUP_CHUNK):
            for row in await conn.execute(select(persons).where(column.in_(chunk))):
                if row.id not in found:
                    found[row.id] = _Working(row)
    return list(found.values())


async def _fetch_ids(conn: AsyncConnection, new: list[_Working]) -> None:
    """Set the ids of persons just inserted (each has a personal ID or an SI code)."""
    by_pid = {p.personal_id: p for p in new if p.personal_id}
    by_si = {p.si_code: p for p in new if not p.personal_id}
    for column, wanted in ((persons.c.personal_id, by_pid), (persons.c.si_code, by_si)):
        for chunk in _chunks(sorted(wanted), LOOKUP_CHUNK):
            for id, code in await conn.execute(select(persons.c.id, column).where(column.in_(chunk))):
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

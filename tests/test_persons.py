"""Persons and records of accepted dossiers (interchange.store.persons) on SQLite and PostgreSQL:
identity by personal ID (the key) and SI code (an alias), merges, personal data by authority,
idempotent writes, the settlement hook, and a large dossier written in a bounded number of
statements."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import event, func, select

from interchange.months import Month
from interchange.records.model import (
    INCREASE,
    BenefitClaim,
    Extracted,
    PersonalDataChange,
    PersonRef,
)
from interchange.store import ACCEPTED, RECEIVED, REJECTED, NewDossier, Store
from interchange.store.persons import PERSON_MERGED, RECORDS_WRITTEN, RecordsWritten, write_records
from interchange.store.tables import benefit_claims, contribution_changes, personal_data_changes, persons
from interchange.store.types import Dossier, Settlement
from tests.helpers import ALL, UNIT, change, ref

T0 = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
PID = "001090012345"
SI = "0101234567"
STAMP = {"version": "test", "sha256": "0" * 64}
def data_change(stt: int, person: PersonRef, change: str | None = None) -> PersonalDataChange:
    return PersonalDataChange(xpath=f"/TK1-TS/NoiDung/LaoDong[{stt}]", stt=stt, person=person,
                              data={"DanToc": "01"}, change=change)  # fmt: skip


async def stored_dossier(store: Store, at: datetime = T0) -> Dossier:
    data = f"<Hoso id='{uuid.uuid4().hex}'/>".encode()
    new = NewDossier(
        id=uuid.uuid4().hex, state=RECEIVED, owner=f"mst:{UNIT.mst}", submitter_key_id="k", original=data,
        sha256=hashlib.sha256(data).digest(), received_at=at, office_code="X", unit_mst=UNIT.mst,
        unit_code=UNIT.code, unit_name=UNIT.name, procedure="600", period=at.strftime("%m/%Y"),
        due_at=at + timedelta(days=5),
    )  # fmt: skip

    async def receipt(_dossier) -> bytes:
        return b"<ThongBao/>"

    return (await store.receipts.save(new, receipt)).dossier


async def write(store: Store, extracted: Extracted, at: datetime = T0, dossier: Dossier | None = None) -> RecordsWritten:
    dossier = dossier or await stored_dossier(store, at)
    async with store.db.engine.connect() as conn:
        async with conn.begin():
            return await write_records(conn, dossier=dossier, extracted=extracted, params=STAMP, now=at)


async def count(store: Store, table, *where) -> int:
    async with store.db.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()


async def test_si_code_first_then_personal_id_is_one_person(store):
    first = await write(store, Extracted(contribution_changes=[change(1, ref(si=SI))]))
    assert (first.persons_created, first.contribution_changes) == (1, 1)
    assert await store.persons.find(PID) is None
    by_si = await store.persons.find(SI)
    assert (by_si.si_code, by_si.personal_id) == (SI, None)

    second = await write(store, Extracted(contribution_changes=[change(1, ref(PID, SI), "DC", "2026-02")]),
                         T0 + timedelta(days=30))  # fmt: skip
    assert (second.persons_created, second.persons_updated, second.merges) == (0, 1, [])
    by_pid, by_si = await store.persons.find(PID), await store.persons.find(SI)
    assert by_pid == by_si and (by_pid.personal_id, by_pid.si_code) == (PID, SI)

    # Later rows may name the person by either identifier alone.
    await write(store, Extracted(contribution_changes=[change(1, ref(pid=PID), "GH", "2026-03")]), T0 + timedelta(days=60))
    await write(store, Extracted(contribution_changes=[change(1, ref(si=SI), "DC", "2026-04")]), T0 + timedelta(days=90))
    assert await count(store, persons) == 1
    assert await count(store, contribution_changes, contribution_changes.c.person_id == by_pid.id) == 4
    rows = await store.persons.book_rows(SI, ALL)
    assert [c.change.pa for c in rows.changes] == ["TM", "DC", "GH", "DC"]  # in order of receipt
    assert rows.identity.personal_id == PID


async def test_both_identifiers_at_once_and_unknown_lookups(store):
    await write(store, Extracted(contribution_changes=[change(1, ref(PID, SI)), change(2, ref(pid="079195001234"))]))
    assert (await store.persons.find(PID)).id == (await store.persons.find(SI)).id
    assert (await store.persons.find("079195001234")).si_code is None
    assert await store.persons.find("9999999999") is None
    assert await store.persons.book_rows("999999999999", ALL) is None
    assert await count(store, persons) == 2


async def test_two_rows_found_to_be_one_person_are_merged(store):
    by_si = await write(store, Extracted(contribution_changes=[change(1, ref(si=SI, name="Nguyen Van An"))]))
    by_pid = await write(store, Extracted(contribution_changes=[change(1, ref(pid=PID), "DC", "2026-02")]),
                         T0 + timedelta(days=1))  # fmt: skip
    assert by_si.persons_created == by_pid.persons_created == 1
    si_person, pid_person = await store.persons.find(SI), await store.persons.find(PID)
    assert si_person.id != pid_person.id  # nothing said yet that they are one

    both = await write(store, Extracted(contribution_changes=[change(1, ref(PID, SI), "DC", "2026-03")]),
                       T0 + timedelta(days=2))  # fmt: skip
    (merge,) = both.merges
    assert (merge.kept, merge.merged, merge.personal_id, merge.si_code) == (pid_person.id, si_person.id, PID, SI)
    one = await store.persons.find(SI)
    assert one == await store.persons.find(PID) and one.id == pid_person.id
    assert one.name == "Nguyễn Văn An"  # the newer dossier's spelling
    # Every record now belongs to the row kept; the merged row stays, pointing at it.
    assert await count(store, contribution_changes, contribution_changes.c.person_id == one.id) == 3
    async with store.db.engine.connect() as conn:
        gone = (await conn.execute(select(persons).where(persons.c.id == si_person.id))).one()
    assert (gone.merged_into, gone.personal_id, gone.si_code) == (one.id, None, None)
    events = [e for e in await store.audit.entries() if e.kind == PERSON_MERGED]
    assert events == []  # written directly here; the settlement writes them (next test)
    assert [e.kind for e in both.audit_events("test")] == [RECORDS_WRITTEN, PERSON_MERGED]


async def test_merge_within_one_dossier_and_a_new_row_folded_in(store):
    await write(store, Extracted(contribution_changes=[change(1, ref(si=SI))]))
    # One dossier names the person first by personal ID alone (new), then by both: one person, the stored row.
    written = await write(store, Extracted(contribution_changes=[
        change(1, ref(pid=PID), "DC", "2026-02"), change(2, ref(PID, SI), "DC", "2026-03")]),
        T0 + timedelta(days=1))  # fmt: skip
    assert (written.persons_created, written.merges) == (0, [])
    assert await count(store, persons) == 1
    assert (await store.persons.find(PID)).si_code == SI


async def test_conflicting_identifiers_are_kept_apart_and_reported(store):
    await write(store, Extracted(contribution_changes=[change(1, ref(PID, SI))]))
    other_pid = "079195001234"
    written = await write(store, Extracted(contribution_changes=[change(1, ref(other_pid, SI), "DC", "2026-02")]),
                          T0 + timedelta(days=1))  # fmt: skip
    assert len(written.conflicts) == 1 and SI in written.conflicts[0] and "/D02-TS/NoiDung/LaoDong[1]" in written.conflicts[0]
    assert (await store.persons.find(SI)).personal_id == PID  # the SI code stays with its person
    newcomer = await store.persons.find(other_pid)
    assert newcomer.si_code is None and newcomer.id != (await store.persons.find(PID)).id


async def test_personal_data_follows_tk1_ts_first_then_the_newest(store):
    await write(store, Extracted(contribution_changes=[change(1, ref(si=SI, name="Nguyen Van An"))]))
    assert (await store.persons.find(SI)).birth_date is None
    tk1 = ref(PID, SI, name="Nguyễn Văn An", birth_date=date(1990, 5, 17), gender=1, nationality="VN")
    await write(store, Extracted(personal_data=[data_change(1, tk1, "Cấp lại")]), T0 + timedelta(days=1))
    p = await store.persons.find(SI)
    assert (p.name, p.birth_date, p.gender, p.nationality) == ("Nguyễn Văn An", date(1990, 5, 17), 1, "VN")
    # A later D02-TS spells the name otherwise: the TK1-TS data stands.
    await write(store, Extracted(contribution_changes=[change(1, ref(pid=PID, name="NGUYEN VAN AN"), "DC")]),
                T0 + timedelta(days=2))  # fmt: skip
    assert (await store.persons.find(PID)).name == "Nguyễn Văn An"
    # A later TK1-TS changes it, and an older one (settled late) does not undo that.
    await write(store, Extracted(personal_data=[data_change(1, ref(pid=PID, name="Nguyễn Văn Ân"))]), T0 + timedelta(days=3))
    await write(store, Extracted(personal_data=[data_change(1, ref(pid=PID, name="Nguyễn Văn Xưa"))]), T0 - timedelta(days=1))
    assert (await store.persons.find(PID)).name == "Nguyễn Văn Ân"
    assert await count(store, personal_data_changes) == 3


async def test_writing_a_dossier_twice_changes_nothing(store):
    dossier = await stored_dossier(store)
    claim = BenefitClaim(xpath="/M01B-HSB/NoiDung/PhatSinh/CheDoOmDau/LaoDong[1]", stt=1, person=ref(si=SI),
                         regime="CheDoOmDau", kind="PhatSinh", group="1", from_date=date(2026, 1, 5),
                         to_date=date(2026, 1, 7), days=3, data={"HinhThucNhan": "1"})  # fmt: skip
    extracted = Extracted(contribution_changes=[change(1, ref(PID, SI)), change(2, ref(pid="079195001234"))],
                          personal_data=[data_change(1, ref(PID, SI))], benefit_claims=[claim])  # fmt: skip
    first = await write(store, extracted, dossier=dossier)
    assert (first.contribution_changes, first.personal_data, first.benefit_claims, first.persons_created) == (2, 1, 1, 2)
    again = await write(store, extracted, dossier=dossier)
    assert again.already and again.audit_events("x") == [] and again.contribution_changes == 0
    for table, n in ((contribution_changes, 2), (personal_data_changes, 1), (benefit_claims, 1), (persons, 2)):
        assert await count(store, table) == n
    book = await store.persons.book_rows(SI, ALL)
    (declared,) = book.claims
    assert (declared.claim.regime, declared.claim.days, declared.claim.data) == ("CheDoOmDau", 3, {"HinhThucNhan": "1"})


async def test_records_round_trip_exactly(store):
    c = change(7, ref(PID, SI), "TM", "2025-11", to_month="2026-06", salary=Decimal("2.34"),
               allowances={"PhuCapCV": Decimal("0.5"), "PhuCapTNVK": Decimal("5")}, rate=Decimal("31.8"),
               note="HĐLĐ 12 tháng")  # fmt: skip
    await write(store, Extracted(contribution_changes=[c]))
    (back,) = (await store.persons.book_rows(PID, ALL)).changes
    got = back.change
    assert (got.pa, got.direction, got.from_month, got.to_month) == ("TM", INCREASE, Month(2025, 11), Month(2026, 6))
    assert got.salary == Decimal("2.34") and got.coefficient
    assert got.allowances == {"PhuCapCV": Decimal("0.5"), "PhuCapTNVK": Decimal("5")}
    assert (got.rate, got.region, got.note, got.position, got.workplace) == (Decimal("31.8"), "01", "HĐLĐ 12 tháng", "Kế toán", "Hà Nội")
    assert (back.unit.mst, back.unit.code, back.unit.name) == (UNIT.mst, UNIT.code, UNIT.name)
    assert back.received_at == T0


async def test_settlement_writes_records_and_params_with_the_result(store):
    accepted = await stored_dossier(store)
    rejected = await stored_dossier(store)
    extracted = Extracted(contribution_changes=[change(1, ref(si=SI)), change(2, ref(pid=PID))])

    def decide(state):
        async def decide(_dossier, _unit):
            return Settlement(state=state, notice=b"<ThongBao/>", problems=[], records=extracted, params=STAMP)
        return decide

    await store.results.settle(rejected.id, decide(REJECTED), now=T0)
    assert await count(store, contribution_changes) == 0  # a rejected dossier makes no records
    await store.results.settle(accepted.id, decide(ACCEPTED), now=T0)
    assert await count(store, contribution_changes, contribution_changes.c.dossier_id == accepted.id) == 2
    assert (await store.dossiers.get(accepted.id, ALL)).params == STAMP
    assert await store.results.settle(accepted.id, decide(ACCEPTED), now=T0) is None  # once
    assert await count(store, contribution_changes) == 2

    # A third dossier says the two are one person: the merge is in the audit log with the result.
    third = await stored_dossier(store, T0 + timedelta(days=1))
    extracted = Extracted(contribution_changes=[change(1, ref(PID, SI), "DC", "2026-02")])
    await store.results.settle(third.id, decide(ACCEPTED), now=T0 + timedelta(days=1))
    entries = [e for e in await store.audit.entries() if e.dossier_id == third.id]
    kinds = [e.kind for e in entries]
    assert RECORDS_WRITTEN in kinds and PERSON_MERGED in kinds
    merged = next(e for e in entries if e.kind == PERSON_MERGED)
    assert (merged.data["personal_id"], merged.data["si_code"]) == (PID, SI)
    assert (await store.audit.verify()).ok


async def test_a_large_dossier_is_written_in_few_statements(store):
    n = 20_000
    rows = [change(i, ref(f"{100000000000 + i:012d}", f"{1000000000 + i:010d}", name=f"Người {i}")) for i in range(1, n + 1)]
    statements = []

    def counting(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(store.db.engine.sync_engine, "before_cursor_execute", counting)
    started = time.perf_counter()
    try:
        written = await write(store, Extracted(contribution_changes=rows))
    finally:
        event.remove(store.db.engine.sync_engine, "before_cursor_execute", counting)
    elapsed = time.perf_counter() - started
    assert (written.persons_created, written.contribution_changes) == (n, n)
    # Look-ups by 500 identifiers, inserts in driver batches: never a statement per row.
    assert len(statements) < n / 50, len(statements)
    assert elapsed < 60, elapsed
    # A second dossier naming the same people finds them all, again in a few statements.
    statements.clear()
    event.listen(store.db.engine.sync_engine, "before_cursor_execute", counting)
    try:
        again = await write(store, Extracted(contribution_changes=[change(r.stt, r.person, "DC", "2026-02") for r in rows]),
                            T0 + timedelta(days=1))  # fmt: skip
    finally:
        event.remove(store.db.engine.sync_engine, "before_cursor_execute", counting)
    assert (again.persons_created, again.persons_updated) == (0, 0)
    assert len(statements) < n / 50
    assert await count(store, persons) == n

"""Record rows of a group settlement written together (interchange.store.bulk.RecordRows): the
persons and records left by a group in one transaction are those left by the same dossiers
written one by one, including when later dossiers of the group name the persons of earlier ones
(found again, updated, merged, with the records of earlier dossiers moving to the row kept)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select

from interchange.records.model import Extracted, PersonalDataChange
from interchange.store import bulk
from interchange.store import persons as persons_module
from interchange.store.bulk import RecordRows
from interchange.store.persons import RecordsJob, write_many_records, write_records
from interchange.store.tables import benefit_claims, contribution_changes, personal_data_changes, persons
from tests.helpers import change, receipt, received, ref

T0 = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
STAMP = {"version": "test", "sha256": "0" * 64}
PID, SI, PID2, SI2, PID3 = "001090012345", "0101234567", "079195001234", "7912345678", "001200000777"
PID4, SI4 = "001200000888", "0109990000"
TABLES = (contribution_changes, personal_data_changes, benefit_claims)


def data_change(stt: int, person) -> PersonalDataChange:
    return PersonalDataChange(xpath=f"/TK1-TS/NoiDung/LaoDong[{stt}]", stt=stt, person=person,
                              data={"DanToc": "01"}, change="HoTen")  # fmt: skip


# Each dossier names persons of the dossiers before it: by the other identifier, both at once
# (a merge of two rows made earlier in the group), with new personal data.
SEQUENCE = [
    Extracted(contribution_changes=[change(1, ref(si=SI, name="Nguyen Van An"))]),
    Extracted(contribution_changes=[change(1, ref(pid=PID4))]),  # independent of the one before
    Extracted(contribution_changes=[change(1, ref(pid=PID), "DC", "2026-02"), change(2, ref(PID2, SI2))]),
    Extracted(contribution_changes=[change(1, ref(PID, SI), "DC", "2026-03"), change(2, ref(si=SI2), "DC")]),
    Extracted(personal_data=[data_change(1, ref(pid=PID2, name="Trần Thị Bình"))],
              contribution_changes=[change(1, ref(si=SI), "GH", "2026-04"), change(2, ref(pid=PID3))]),
    Extracted(contribution_changes=[change(1, ref(si=SI4))]),
    Extracted(contribution_changes=[change(1, ref(PID4, SI4), "DC", "2026-05")]),  # a merge of two new ones
    Extracted(contribution_changes=[change(1, ref(PID3, "0109999999"), "DC", "2026-05"),
                                     change(2, ref(PID2, SI), "DC", "2026-05")]),
]  # fmt: skip


async def dossiers(store) -> list:
    out = []
    for i in range(len(SEQUENCE)):
        out.append((await store.receipts.save(received(at=T0 + timedelta(days=i)), receipt)).dossier)
    return out


def summary(w) -> tuple:
    return (w.contribution_changes, w.personal_data, w.benefit_claims, w.persons_created, w.persons_updated,
            len(w.merges), w.conflicts)  # fmt: skip


async def snapshot(store, order: list[str]) -> tuple[list, list]:
    """Persons and records, ids counted from the run's first person, dossiers by their place."""
    async with store.db.engine.connect() as conn:
        people = (await conn.execute(select(persons).order_by(persons.c.id))).all()
        first = people[0].id
        rel = {p.id: p.id - first for p in people}
        out_persons = [(rel[p.id], p.personal_id, p.si_code, p.name, p.birth_date, p.data_rank,
                        None if p.merged_into is None else rel[p.merged_into]) for p in people]  # fmt: skip
        records = []
        for table in TABLES:
            for r in (await conn.execute(select(table).order_by(table.c.id))).all():
                records.append((table.name, order.index(r.dossier_id), r.xpath, rel[r.person_id]))
    return out_persons, records


async def clear(store) -> None:
    async with store.db.engine.begin() as conn:
        for table in TABLES:
            await conn.execute(delete(table))
        await conn.execute(delete(persons))


@pytest.mark.parametrize("page", [bulk.PAGE, 1], ids=["whole", "a row a page"])
async def test_a_group_in_one_transaction_leaves_what_one_by_one_leaves(store, monkeypatch, page):
    # with pages of one row, every record row is inserted as soon as it is made (bounded memory)
    monkeypatch.setattr(bulk, "PAGE", page)
    monkeypatch.setattr(persons_module, "PAGE", page)
    one_by_one = await dossiers(store)
    alone = []
    for d, extracted in zip(one_by_one, SEQUENCE, strict=True):
        async with store.db.engine.begin() as conn:
            alone.append(await write_records(conn, dossier=d, extracted=extracted, params=STAMP, now=d.received_at))
    expected = await snapshot(store, [d.id for d in one_by_one])
    assert [len(w.merges) for w in alone] == [0, 0, 0, 1, 0, 0, 1, 0]  # the sequence does merge
    assert [len(w.conflicts) for w in alone] == [0, 0, 0, 0, 0, 0, 0, 1]  # and meets a conflict
    await clear(store)

    grouped = await dossiers(store)
    batch = RecordRows()
    async with store.db.engine.begin() as conn:
        together = [await write_records(conn, dossier=d, extracted=e, params=STAMP, now=d.received_at, batch=batch)
                    for d, e in zip(grouped, SEQUENCE, strict=True)]  # fmt: skip
        await batch.flush(conn)
    assert await snapshot(store, [d.id for d in grouped]) == expected
    assert [summary(w) for w in together] == [summary(w) for w in alone]
    await clear(store)

    at_once = await dossiers(store)
    async with store.db.engine.begin() as conn:
        jobs = [RecordsJob(d, e, d.received_at) for d, e in zip(at_once, SEQUENCE, strict=True)]
        many = await write_many_records(conn, jobs)
    assert await snapshot(store, [d.id for d in at_once]) == expected
    assert [summary(w) for w in many] == [summary(w) for w in alone]
    async with store.db.engine.begin() as conn:  # written once: a second call changes nothing
        again = await write_many_records(conn, jobs)
    assert [w.already for w in again] == [True] * len(jobs)
    assert await snapshot(store, [d.id for d in at_once]) == expected

"""The store on SQLite and PostgreSQL (fixtures in tests/conftest_store.py)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import event, text
from sqlalchemy.pool import Pool

from interchange.kinds import SLUG_RECEIPT, SLUG_REFUSAL, SLUG_RESULT
from interchange.store import RECEIVED, REFUSED, Dossier, Scope, Store
from interchange.store import db as db_module
from interchange.store import keys as keys_module
from interchange.store import receipts as receipts_module
from interchange.store.db import StoreUnavailable
from interchange.store.receipts import Receipts
from tests.helpers import ALL, MST_A, MST_B, VN, new_dossier, notice_bytes, notice_for
from tests.helpers import STORE_T0 as T0


async def count(store: Store) -> int:
    items, _ = await store.dossiers.list_page(ALL, limit=500)
    return len(items)


async def test_round_trip_keeps_every_field_and_aware_times(store):
    new = new_dossier(
        ivan_code="00123",
        due_at=datetime(2026, 3, 9, 17, 0, tzinfo=VN),
        idempotency_key="retry-1",
        problems=[{"layer": "rule", "code": "R-X", "severity": "warning", "message_vi": "Cảnh báo"}],
        layers={"envelope": "passed", "signature": "passed", "schema": "passed", "rule": "passed"},
        signers=[{"subject": "CN=Công ty", "mst": MST_A, "valid": True}],
        facts={"forms": ["D02-TS"], "versions": {"D02-TS": "1"}},
    )
    saved = await store.receipts.save(new, notice_for)
    assert saved.outcome == "stored"
    assert saved.notice == notice_bytes(saved.dossier)
    got = await store.dossiers.get(new.id, ALL)
    assert got == saved.dossier
    assert got.received_at == T0 and got.received_at.tzinfo is not None
    assert got.received_at.utcoffset() == timedelta(0)
    assert got.due_at == new.due_at and got.due_at.utcoffset() == timedelta(0)
    assert (got.size, got.sha256, got.ivan_code) == (len(new.original), new.sha256, "00123")
    assert got.problems == new.problems and got.layers == new.layers
    assert got.signers == new.signers and got.facts == new.facts
    assert got.so_ho_so == "00001/2026/X" and got.notice_kinds == [SLUG_RECEIPT]
    assert await store.dossiers.original(new.id, ALL) == new.original  # the BOM and all
    assert await store.dossiers.notice(new.id, SLUG_RECEIPT, ALL) == saved.notice
    assert await store.dossiers.notice(new.id, SLUG_REFUSAL, ALL) is None
    assert await store.dossiers.get("no-such-id", ALL) is None


async def test_save_rejects_naive_times_and_bad_states(store):
    with pytest.raises(ValueError):
        await store.receipts.save(new_dossier(received_at=datetime(2026, 1, 1)), notice_for)
    with pytest.raises(ValueError):
        await store.receipts.save(new_dossier(state="accepted"), notice_for)


LZ4_COLUMNS = {("dossier_originals", "content"), ("staged_originals", "content"), ("notices", "xml"),
               ("dossiers", "signers")}  # fmt: skip


async def test_large_values_are_compressed_with_lz4_on_postgresql(store):
    """Migrations 0010 and 0011: the originals (staged ones too), notices and signers' reports
    compress with lz4 (pglz cost the database 0.8 ms per 45 KiB original); what is stored reads
    back the same."""
    if store.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores values as they are: no compression to choose")
    async with store.db.reading() as conn:
        try:
            async with conn.begin_nested():
                await conn.execute(text("CREATE TEMP TABLE lz4_probe (b bytea COMPRESSION lz4)"))
        except Exception as exc:  # noqa: BLE001
            pytest.skip(f"this PostgreSQL has no lz4: {exc}")
        rows = (await conn.execute(text(
            "SELECT c.relname, a.attname, a.attcompression::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relnamespace = current_schema()::regnamespace AND a.attnum > 0 AND a.attcompression::text <> ''"
        ))).all()  # fmt: skip
    assert {(table, column) for table, column, method in rows if method == "l"} == LZ4_COLUMNS
    body = b"<Hoso>" + b"".join(b"<LaoDong><STT>%d</STT><HoTen>Nguyen Van A</HoTen></LaoDong>" % i for i in range(2000)) + b"</Hoso>"
    saved = await store.receipts.save(new_dossier(body), notice_for)
    async with store.db.reading() as conn:
        stored = (await conn.execute(text(
            "SELECT pg_column_compression(content), content FROM dossier_originals WHERE dossier_id = :id"
        ), {"id": saved.dossier.id})).one()  # fmt: skip
    assert stored[0] == "lz4" and bytes(stored[1]) == body


async def test_times_are_stored_as_sqlalchemy_writes_them_and_read_back_aware(store):
    """UTCDateTime formats SQLite's text itself (fast); it must be the very text SQLAlchemy's
    DATETIME writes (older databases and comparisons with stored times depend on it)."""
    from sqlalchemy.dialects.sqlite import DATETIME

    at = datetime(2026, 3, 9, 7, 5, 3, 42, tzinfo=VN)
    saved = await store.receipts.save(new_dossier(received_at=at, due_at=at + timedelta(days=5)), notice_for)
    got = await store.dossiers.get(saved.dossier.id, ALL)
    assert got.received_at == at and got.received_at.tzinfo is not None
    if store.db.engine.dialect.name == "sqlite":
        async with store.db.reading() as conn:
            raw = (await conn.execute(text("SELECT received_at FROM dossiers WHERE id = :id"), {"id": got.id})).scalar_one()
        utc_naive = at.astimezone(UTC).replace(tzinfo=None)
        assert raw == DATETIME().bind_processor(store.db.engine.dialect)(utc_naive) == "2026-03-09 00:05:03.000042"



def test_sqlite_time_text_is_kept_for_the_same_time_only():
    """The SQLite bind of UTCDateTime keeps the text of the last time it formatted (a settlement
    writes one `now` into many rows): another time, equal or not, or a naive one, is never given it."""
    from sqlalchemy.dialects import sqlite

    from interchange.store.tables import UTCDateTime

    process = UTCDateTime().bind_processor(sqlite.dialect())
    at = datetime(2026, 3, 9, 7, 5, 3, 42, tzinfo=VN)
    assert process(at) == process(at) == "2026-03-09 00:05:03.000042"
    assert process(at + timedelta(microseconds=1)) == "2026-03-09 00:05:03.000043"
    assert process(at.astimezone(UTC)) == "2026-03-09 00:05:03.000042"  # equal, another object
    assert process(None) is None
    with pytest.raises(ValueError):
        process(at.replace(tzinfo=None))
    times = [at + timedelta(seconds=i) for i in range(200)]
    with ThreadPoolExecutor(4) as pool:  # threads writing at once each get their own time's text
        got = list(pool.map(process, times * 20))
    assert got == [t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") for t in times] * 20

async def test_numbers_count_per_office_and_vietnamese_year_and_skip_refusals(store):
    async def save(n: int, **kw) -> str | None:
        saved = await store.receipts.save(new_dossier(f"<Hoso n='{n}'/>".encode(), **kw), notice_for)
        return saved.dossier.so_ho_so

    assert await save(1) == "00001/2026/X"
    assert await save(2, state=REFUSED) is None
    assert await save(3) == "00002/2026/X"
    assert await save(4, office_code="Y") == "00001/2026/Y"
    # 31 Dec 17:30 UTC is already 1 Jan in Viet Nam.
    assert await save(5, received_at=datetime(2026, 12, 31, 17, 30, tzinfo=UTC)) == "00001/2027/X"
    assert await save(6, received_at=datetime(2026, 12, 31, 16, 30, tzinfo=UTC)) == "00003/2026/X"


async def test_numbers_grow_past_five_digits(store):
    async with store.db.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO dossier_counters (office, year, last_number) VALUES ('X', 2026, 99999)")
        )
    saved = await store.receipts.save(new_dossier(), notice_for)
    assert saved.dossier.so_ho_so == "100000/2026/X"


async def test_replay_of_a_received_dossier_returns_the_first_notice(store):
    first = await store.receipts.save(new_dossier(), notice_for)

    async def must_not_run(_: Dossier) -> bytes:
        raise AssertionError("a replay makes no notice")

    again = await store.receipts.save(new_dossier(), must_not_run)
    assert again.outcome == "replay"
    assert again.dossier.id == first.dossier.id and again.notice == first.notice
    assert await count(store) == 1
    # Same bytes from another unit are that unit's own dossier.
    other = await store.receipts.save(new_dossier(owner=f"mst:{MST_B}", unit_mst=MST_B), notice_for)
    assert other.outcome == "stored" and other.dossier.so_ho_so == "00002/2026/X"


async def test_a_refused_dossier_sent_again_is_judged_again(store):
    first = await store.receipts.save(new_dossier(state=REFUSED), notice_for)
    second = await store.receipts.save(new_dossier(state=REFUSED), notice_for)
    assert (first.outcome, second.outcome) == ("stored", "stored")
    assert first.dossier.id != second.dossier.id
    assert first.dossier.notice_kinds == [SLUG_REFUSAL] and first.dossier.so_ho_so is None
    accepted = await store.receipts.save(new_dossier(), notice_for)
    assert accepted.outcome == "stored" and accepted.dossier.so_ho_so == "00001/2026/X"
    replay = await store.receipts.save(new_dossier(), notice_for)
    assert replay.outcome == "replay" and replay.dossier.id == accepted.dossier.id
    assert await count(store) == 3


async def test_idempotency_key_replays_and_conflicts(store):
    first = await store.receipts.save(new_dossier(b"<A/>", idempotency_key="k1"), notice_for)
    replay = await store.receipts.save(new_dossier(b"<A/>", idempotency_key="k1"), notice_for)
    conflict = await store.receipts.save(new_dossier(b"<B/>", idempotency_key="k1"), notice_for)
    assert (first.outcome, replay.outcome, conflict.outcome) == ("stored", "replay", "conflict")
    assert replay.dossier.id == conflict.dossier.id == first.dossier.id
    assert conflict.notice == first.notice
    assert await count(store) == 1
    # A key belongs to its owner: another unit may use the same one.
    other = await store.receipts.save(
        new_dossier(b"<B/>", idempotency_key="k1", owner=f"mst:{MST_B}", unit_mst=MST_B), notice_for
    )
    assert other.outcome == "stored"


async def test_idempotency_key_replays_a_refusal_with_its_refusal_notice(store):
    refused = await store.receipts.save(new_dossier(state=REFUSED, idempotency_key="k2"), notice_for)
    again = await store.receipts.save(new_dossier(state=REFUSED, idempotency_key="k2"), notice_for)
    assert again.outcome == "replay" and again.dossier.id == refused.dossier.id
    assert again.notice == refused.notice and b"refused" in again.notice
    corrected = await store.receipts.save(new_dossier(b"<fixed/>", idempotency_key="k2"), notice_for)
    assert corrected.outcome == "conflict"  # a corrected resend needs a new key
    assert await count(store) == 1


async def test_concurrent_identical_saves_store_one(store):
    results = await asyncio.gather(*(store.receipts.save(new_dossier(), notice_for) for _ in range(20)))
    assert sorted(r.outcome for r in results) == ["replay"] * 19 + ["stored"]
    assert len({r.dossier.id for r in results}) == 1
    assert len({r.notice for r in results}) == 1
    assert await count(store) == 1


async def test_concurrent_identical_saves_from_two_processes_store_one(store, store_url):
    other = await Store.open(store_url)  # a second engine and writer, as another process has
    try:
        results = await asyncio.gather(
            *(
                s.receipts.save(new_dossier(idempotency_key="same"), notice_for)
                for _ in range(10)
                for s in (store, other)
            )
        )
    finally:
        await other.close()
    assert sorted(r.outcome for r in results) == ["replay"] * 19 + ["stored"]
    assert len({r.dossier.id for r in results}) == 1
    assert await count(store) == 1


async def test_a_race_lost_to_another_process_answers_with_the_winner(store, monkeypatch):
    winner = await store.receipts.save(new_dossier(), notice_for)
    real = Receipts.find_stored
    blind = {"left": 2}  # the batch's look and the one-by-one look both miss the winner

    async def stale(self, conn, replay_keys, scopes):
        if blind["left"]:
            blind["left"] -= 1
            return {}, {}
        return await real(self, conn, replay_keys, scopes)

    monkeypatch.setattr(Receipts, "find_stored", stale)
    loser = await store.receipts.save(new_dossier(), notice_for)
    assert blind["left"] == 0
    assert loser.outcome == "replay" and loser.dossier.id == winner.dossier.id
    assert await count(store) == 1
    following = await store.receipts.save(new_dossier(b"<next/>"), notice_for)
    assert following.dossier.so_ho_so == "00002/2026/X"  # the loser's number was given back


async def test_group_commit_stores_200_concurrent_saves_with_gapless_numbers(store, monkeypatch):
    batches: list[int] = []
    real = Receipts.write_batch

    async def counting(self, batch, signed=None):
        batches.append(len(batch))
        await real(self, batch, signed)

    monkeypatch.setattr(Receipts, "write_batch", counting)
    results = await asyncio.gather(
        *(store.receipts.save(new_dossier(f"<Hoso n='{i}'/>".encode()), notice_for) for i in range(200))
    )
    assert all(r.outcome == "stored" for r in results)
    numbers = sorted(int(r.dossier.so_ho_so.split("/")[0]) for r in results)
    assert numbers == list(range(1, 201))
    assert sum(batches) == 200 and max(batches) <= receipts_module.BATCH_SIZE
    assert len(batches) < 20  # gathered, not one commit each
    assert await count(store) == 200


async def test_notices_are_signed_before_the_write_lock_and_match_what_is_stored(store, store_url):
    """On an SQLite file a batch's notices are signed before the write lock is taken, so another
    writer (here another process's store) may go in meanwhile. It took the number the notice was
    signed with: the batch is decided and signed again under the lock, and the notice answered is
    the one of the number stored, with no gap."""
    if not store.db.inline:
        pytest.skip("PostgreSQL signs under the lock (the counter row stays locked)")
    other = await Store.open(store_url)
    signed: list[str] = []

    async def meanwhile(dossier: Dossier) -> bytes:
        signed.append(dossier.so_ho_so)
        if len(signed) == 1:  # while our first notice is being signed, another process stores one
            assert (await other.receipts.save(new_dossier(b"<other/>"), notice_for)).dossier.so_ho_so == "00001/2026/X"
        return notice_bytes(dossier)

    try:
        mine = await store.receipts.save(new_dossier(b"<mine/>"), meanwhile)
    finally:
        await other.close()
    assert signed == ["00001/2026/X", "00002/2026/X"]  # signed first, then again under the lock
    assert mine.dossier.so_ho_so == "00002/2026/X"
    assert b"so='00002/2026/X'" in mine.notice
    assert (await store.dossiers.notice(mine.dossier.id, SLUG_RECEIPT, ALL)) == mine.notice
    following = await store.receipts.save(new_dossier(b"<next/>"), notice_for)
    assert following.dossier.so_ho_so == "00003/2026/X"


async def test_a_batch_signed_first_answers_repeats_with_the_notice_of_the_dossier_they_repeat(store):
    results = await asyncio.gather(*(store.receipts.save(new_dossier(b"<same/>"), notice_for) for _ in range(5)),
                                   store.receipts.save(new_dossier(b"<else/>"), notice_for))  # fmt: skip
    same = results[:5]
    assert sorted(r.outcome for r in same) == ["replay"] * 4 + ["stored"]
    assert len({r.notice for r in same}) == 1 and same[0].notice.startswith(b"<ThongBao")
    assert results[5].outcome == "stored" and results[5].notice != same[0].notice


async def _held_write(store, monkeypatch, *, fail_first: bool = False, holds: int = 2):
    """Hold the first `holds` inline write transactions (a batch signed first is written in one)
    until their events are set; with `fail_first`, the first then fails as when the database is
    gone for a moment (nothing of it stored)."""
    held: list[asyncio.Event] = []
    real = store.db.write_inline

    async def holding(fn):
        if len(held) == holds:
            return await real(fn)
        gate = asyncio.Event()
        held.append(gate)
        await gate.wait()
        if fail_first and len(held) == 1:
            raise StoreUnavailable("disk gone for a moment")
        return await real(fn)

    monkeypatch.setattr(store.db, "write_inline", holding)
    return held


async def _until(condition, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_batch_is_signed_while_the_batch_before_is_written_its_numbers_following_on(store, monkeypatch):
    """On an SQLite file the next batch is decided and signed while the one before is being
    written, numbered after the numbers that one gives: each notice is signed once, gapless."""
    if not store.db.inline:
        pytest.skip("PostgreSQL signs under the lock, a batch at a time")
    held = await _held_write(store, monkeypatch)
    signed: list[str] = []

    async def noting(dossier: Dossier) -> bytes:
        signed.append(dossier.so_ho_so)
        return notice_bytes(dossier)

    first = [asyncio.ensure_future(store.receipts.save(new_dossier(f"<a{i}/>".encode()), noting)) for i in range(2)]
    await _until(lambda: len(held) == 1)  # the first batch signed, its write held
    second = [asyncio.ensure_future(store.receipts.save(new_dossier(f"<b{i}/>".encode()), noting)) for i in range(3)]
    await _until(lambda: len(signed) == 5)  # the second signed while the first is not written yet
    assert not any(f.done() for f in first + second)
    held[0].set()
    await _until(lambda: len(held) == 2)
    held[1].set()
    got = await asyncio.gather(*first, *second)
    assert [r.dossier.so_ho_so for r in got] == [f"{n:05d}/2026/X" for n in range(1, 6)]
    assert signed == [r.dossier.so_ho_so for r in got]  # each signed once, with the number it was stored with
    for r in got:
        assert await store.dossiers.notice(r.dossier.id, SLUG_RECEIPT, ALL) == r.notice == notice_bytes(r.dossier)


async def test_a_batch_signed_while_the_one_before_failed_is_signed_again_without_a_gap(store, monkeypatch):
    if not store.db.inline:
        pytest.skip("PostgreSQL signs under the lock, a batch at a time")
    held = await _held_write(store, monkeypatch, fail_first=True)
    signed: list[str] = []

    async def noting(dossier: Dossier) -> bytes:
        signed.append(dossier.so_ho_so)
        return notice_bytes(dossier)

    first = asyncio.ensure_future(store.receipts.save(new_dossier(b"<a/>"), noting))
    await _until(lambda: len(held) == 1)
    second = asyncio.ensure_future(store.receipts.save(new_dossier(b"<b/>"), noting))
    await _until(lambda: len(signed) == 2)  # signed after the number the first was to take
    held[0].set()
    with pytest.raises(StoreUnavailable):
        await first
    await _until(lambda: len(held) == 2)
    held[1].set()
    got = await second  # that number was never stored: decided and signed again, under the lock
    assert signed == ["00001/2026/X", "00002/2026/X", "00001/2026/X"]
    assert got.dossier.so_ho_so == "00001/2026/X" and got.notice == notice_bytes(got.dossier)
    assert await count(store) == 1


async def test_a_repeat_of_a_dossier_of_the_batch_being_written_replays_it(store, monkeypatch):
    if not store.db.inline:
        pytest.skip("PostgreSQL signs under the lock, a batch at a time")
    held = await _held_write(store, monkeypatch)
    first = asyncio.ensure_future(store.receipts.save(new_dossier(b"<same/>"), notice_for))
    await _until(lambda: len(held) == 1)
    again = asyncio.ensure_future(store.receipts.save(new_dossier(b"<same/>"), notice_for))
    await asyncio.sleep(0.2)  # decided on a read that cannot see the first yet
    held[0].set()
    await _until(lambda: len(held) == 2)
    held[1].set()
    stored, replayed = await first, await again
    assert stored.outcome == "stored" and replayed.outcome == "replay"
    assert replayed.dossier.id == stored.dossier.id and replayed.notice == stored.notice
    assert await count(store) == 1
    nxt = await store.receipts.save(new_dossier(b"<next/>"), notice_for)
    assert nxt.dossier.so_ho_so == "00002/2026/X"


async def test_a_failing_notice_fails_only_its_own_save(store):
    async def fussy(dossier: Dossier) -> bytes:
        if dossier.id.startswith("bad-"):  # ids are uuid hex otherwise, which may well contain "bad"
            raise RuntimeError("signing failed")
        return notice_bytes(dossier)

    ids = [f"bad-{i}" if i in (3, 7) else uuid.uuid4().hex for i in range(10)]
    results = await asyncio.gather(
        *(store.receipts.save(new_dossier(f"<n{i}/>".encode(), id=ids[i]), fussy) for i in range(10)),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(failed) == 2 and all(isinstance(e, RuntimeError) for e in failed)
    numbers = sorted(r.dossier.so_ho_so for r in results if not isinstance(r, Exception))
    assert numbers == [f"{n:05d}/2026/X" for n in range(1, 9)]
    assert await store.dossiers.get("bad-3", ALL) is None
    assert await count(store) == 8


async def test_a_database_error_fails_only_its_own_save(store):
    # Two dossiers with one id (a caller's bug) in one batch: the second cannot be stored.
    results = await asyncio.gather(
        store.receipts.save(new_dossier(b"<a/>"), notice_for),
        store.receipts.save(new_dossier(b"<b/>", id="dup"), notice_for),
        store.receipts.save(new_dossier(b"<c/>", id="dup"), notice_for),
        store.receipts.save(new_dossier(b"<d/>"), notice_for),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["SaveResult", "SaveResult", "IntegrityError", "SaveResult"]
    assert sorted(r.dossier.so_ho_so for r in results if not isinstance(r, Exception)) == [
        "00001/2026/X",
        "00002/2026/X",
        "00003/2026/X",
    ]
    assert await store.dossiers.original("dup", ALL) == b"<b/>"


async def test_scopes_never_show_another_units_dossiers(store):
    a = await store.receipts.save(new_dossier(b"<a/>"), notice_for)
    b = await store.receipts.save(new_dossier(b"<b/>", owner=f"mst:{MST_B}", unit_mst=MST_B), notice_for)
    # An I-VAN submits for unit C: the I-VAN and unit C both see it.
    c = await store.receipts.save(
        new_dossier(b"<c/>", owner="ivan:00123", unit_mst="0100000001", ivan_code="00123"), notice_for
    )

    async def visible(scope: Scope) -> set[str]:
        items, _ = await store.dossiers.list_page(scope)
        return {d.id for d in items}

    assert await visible(Scope(mst=MST_A)) == {a.dossier.id}
    assert await visible(Scope(mst=MST_B)) == {b.dossier.id}
    assert await visible(Scope(mst="0100000001")) == {c.dossier.id}
    assert await visible(Scope(ivan="00123")) == {c.dossier.id}
    assert await visible(Scope(ivan="99999")) == set()
    assert await visible(Scope()) == set()
    assert await visible(ALL) == {a.dossier.id, b.dossier.id, c.dossier.id}

    mine, theirs = Scope(mst=MST_A), b.dossier.id
    assert await store.dossiers.get(theirs, mine) is None
    assert await store.dossiers.notice(theirs, SLUG_RECEIPT, mine) is None
    assert await store.dossiers.original(theirs, mine) is None
    assert (await store.dossiers.get(a.dossier.id, mine)).id == a.dossier.id
    assert await store.dossiers.original(a.dossier.id, mine) == b"<a/>"


async def test_list_filters(store):
    for i, (state, procedure, period) in enumerate(
        [(RECEIVED, "600", "01/2026"), (REFUSED, "600", "01/2026"), (RECEIVED, "602", "02/2026")]
    ):
        new = new_dossier(
            f"<n{i}/>".encode(),
            state=state,
            procedure=procedure,
            period=period,
            received_at=T0 + timedelta(hours=i),
        )
        await store.receipts.save(new, notice_for)

    async def found(**filters) -> list[tuple[str, str, str]]:
        items, _ = await store.dossiers.list_page(ALL, **filters)
        return [(d.state, d.procedure, d.period) for d in items]

    assert await found(state=REFUSED) == [(REFUSED, "600", "01/2026")]
    assert await found(procedure="602") == [(RECEIVED, "602", "02/2026")]
    assert await found(period="01/2026", state=RECEIVED) == [(RECEIVED, "600", "01/2026")]
    assert len(await found(received_from=T0 + timedelta(hours=1))) == 2  # from: inclusive
    assert len(await found(received_to=T0 + timedelta(hours=1))) == 1  # to: exclusive
    in_utc = (T0 + timedelta(minutes=30)).astimezone(UTC)
    assert len(await found(received_from=in_utc, received_to=in_utc + timedelta(hours=1))) == 1


async def test_pagination_walks_newest_first_without_gaps_or_repeats(store):
    saved = []
    for i in range(11):
        at = T0 + timedelta(minutes=i // 3)  # ties on received_at: the id breaks them
        saved.append(
            (await store.receipts.save(new_dossier(f"<n{i}/>".encode(), received_at=at), notice_for)).dossier
        )
    expected = [d.id for d in sorted(saved, key=lambda d: (d.received_at, d.id), reverse=True)]
    seen, cursor, pages = [], None, 0
    while True:
        items, cursor = await store.dossiers.list_page(ALL, limit=4, cursor=cursor)
        seen += [d.id for d in items]
        pages += 1
        if cursor is None:
            break
    assert seen == expected and pages == 3
    assert all(d.notice_kinds == [SLUG_RECEIPT] for d in (await store.dossiers.list_page(ALL))[0])
    with pytest.raises(ValueError):
        await store.dossiers.list_page(ALL, cursor="not-a-cursor")


async def test_page_size_is_capped_at_500(store):
    await asyncio.gather(
        *(store.receipts.save(new_dossier(f"<n{i}/>".encode()), notice_for) for i in range(501))
    )
    items, cursor = await store.dossiers.list_page(ALL, limit=10_000)
    assert len(items) == 500 and cursor is not None
    rest, cursor = await store.dossiers.list_page(ALL, limit=10_000, cursor=cursor)
    assert len(rest) == 1 and cursor is None


async def test_later_notices(store):
    saved = await store.receipts.save(new_dossier(), notice_for)
    assert await store.dossiers.add_notice(saved.dossier.id, SLUG_RESULT, b"<KetQua/>") is True
    assert await store.dossiers.add_notice(saved.dossier.id, SLUG_RESULT, b"<Other/>") is False  # never replaced
    assert await store.dossiers.notice(saved.dossier.id, SLUG_RESULT, Scope(mst=MST_A)) == b"<KetQua/>"
    assert await store.dossiers.notice(saved.dossier.id, SLUG_RESULT, Scope(mst=MST_B)) is None
    assert (await store.dossiers.get(saved.dossier.id, ALL)).notice_kinds == [SLUG_RECEIPT, SLUG_RESULT]
    with pytest.raises(LookupError):
        await store.dossiers.add_notice("no-such-id", SLUG_RESULT, b"<KetQua/>")
    with pytest.raises(ValueError):
        await store.dossiers.add_notice(saved.dossier.id, "ket_qua", b"<KetQua/>")
    replay = await store.receipts.save(new_dossier(), notice_for)
    assert replay.notice == saved.notice and replay.dossier.notice_kinds == [SLUG_RECEIPT, SLUG_RESULT]


async def test_api_keys(store):
    key, token = await store.keys.create("submitter", mst=MST_A, label="payroll")
    assert re.fullmatch(r"ik_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token) and token.split("_")[1] == key.key_id
    assert (key.owner, key.scope) == (f"mst:{MST_A}", Scope(mst=MST_A))
    assert await store.keys.authenticate(token) == key
    secret = token[len("ik_") + 13 :]
    for bad in [
        "",
        "garbage",
        token + "x",
        token[:-1],
        f"ik_{key.key_id}_{secret[::-1]}",  # wrong secret
        f"ik_000000000000_{secret}",  # unknown key
        token.upper(),
    ]:
        assert await store.keys.authenticate(bad) is None, bad

    ivan, ivan_token = await store.keys.create("ivan", ivan="00123")
    auditor, _ = await store.keys.create("auditor")
    assert (ivan.owner, ivan.scope, auditor.scope) == ("ivan:00123", Scope(ivan="00123"), ALL)
    assert [k.key_id for k in await store.keys.list_all()] == [key.key_id, ivan.key_id, auditor.key_id]

    assert await store.keys.revoke(key.key_id) is True
    assert await store.keys.authenticate(token) is None
    assert await store.keys.revoke(key.key_id) is True  # already revoked: still revoked
    assert await store.keys.revoke("ffffffffffff") is False
    listed = {k.key_id: k for k in await store.keys.list_all()}
    assert listed[key.key_id].revoked_at is not None and listed[ivan.key_id].revoked_at is None
    assert (await store.keys.authenticate(ivan_token)).ivan == "00123"

    for role, kw in [
        ("submitter", {}),
        ("submitter", {"mst": MST_A, "ivan": "00123"}),
        ("ivan", {}),
        ("auditor", {"mst": MST_A}),
        ("root", {}),
    ]:
        with pytest.raises(ValueError):
            await store.keys.create(role, **kw)


async def test_a_revocation_reaches_other_processes_within_seconds(store, store_url, monkeypatch):
    key, token = await store.keys.create("admin")
    other = await Store.open(store_url)
    try:
        assert await other.keys.authenticate(token) == key  # now cached there
        await store.keys.revoke(key.key_id)
        later = time.monotonic() + keys_module.KEY_CACHE_SECONDS + 0.1
        monkeypatch.setattr(keys_module.time, "monotonic", lambda: later)
        assert await other.keys.authenticate(token) is None
    finally:
        await other.close()


class KeyReads:
    """The reads of api_keys rows the store makes, seen through the engine's events; `hold_next`
    keeps the next one waiting (on its driver thread) until released."""

    def __init__(self, store: Store):
        self.count = 0
        self.started = threading.Event()
        self.release: threading.Event | None = None
        event.listen(store.db.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, *rest) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM api_keys" in statement:
            self.count += 1
            self.started.set()
            release, self.release = self.release, None
            if release is not None:
                release.wait(10)

    def hold_next(self) -> threading.Event:
        self.started.clear()
        self.release = threading.Event()
        return self.release


async def until(done) -> None:
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


async def test_a_stale_key_is_read_once_for_all_the_requests_finding_it_stale(store, monkeypatch):
    key, token = await store.keys.create("facility", facility="01001")
    reads = KeyReads(store)
    read_at = time.monotonic()
    assert await asyncio.gather(*(store.keys.authenticate(token) for _ in range(20))) == [key] * 20
    assert reads.count == 1
    # shortly before it expires, a request has it read again in the background and goes on with it
    soon = read_at + keys_module.KEY_CACHE_SECONDS - keys_module.KEY_REFRESH_AHEAD / 2
    monkeypatch.setattr(keys_module, "time", SimpleNamespace(monotonic=lambda: soon))  # the store's clock only
    assert await store.keys.authenticate(token) == key
    await until(lambda: reads.count == 2)
    await asyncio.sleep(0.2)  # the background read ends and is kept
    past_first = read_at + keys_module.KEY_CACHE_SECONDS + 0.01  # past the first read's time, within the second's
    monkeypatch.setattr(keys_module, "time", SimpleNamespace(monotonic=lambda: past_first))
    assert await store.keys.authenticate(token) == key
    await asyncio.sleep(0.2)
    assert reads.count == 2
    if store.db.postgres:
        return  # holding a read on its driver's thread: aiosqlite's, not asyncpg's (the event loop's)
    # a revocation while a read is under way: that read is not cached, the next request reads again
    later = soon + keys_module.KEY_CACHE_SECONDS + 0.1
    monkeypatch.setattr(keys_module, "time", SimpleNamespace(monotonic=lambda: later))
    release = reads.hold_next()
    under_way = asyncio.ensure_future(store.keys.authenticate(token))
    assert await asyncio.to_thread(reads.started.wait, 10) and reads.count == 3
    await store.keys.revoke(key.key_id)
    release.set()
    await under_way
    revoked = reads.count  # the revocation's own statements included
    assert await store.keys.authenticate(token) is None and reads.count == revoked + 1


async def test_small_card_reads_keep_one_connection_and_take_a_new_one_after_an_error(store):
    from interchange.store.cards import read_card_records

    if store.db.postgres:
        return  # asyncpg's own pool there
    checkouts = []

    def checked_out(*_):
        checkouts.append(1)

    event.listen(Pool, "checkout", checked_out)
    try:
        for _ in range(3):  # small: on the connection kept for the loop's small reads
            assert await read_card_records(store.db, ["001090123456"]) == {}
        assert len(checkouts) <= 1
        kept = len(checkouts)
        with pytest.raises(StoreUnavailable):
            await store.db.read_plain("SELECT * FROM no_such_table", "", small=True)
        assert await read_card_records(store.db, ["001090123456"]) == {}
        assert await read_card_records(store.db, ["001090123456"]) == {}
        assert len(checkouts) == kept + 1  # dropped after the error, one new one kept
    finally:
        event.remove(Pool, "checkout", checked_out)


def _head_revision() -> str:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(AlembicConfig(str(db_module.ALEMBIC_INI))).get_current_head()


@pytest.mark.fresh_database  # two processes migrating one new database at once
async def test_migrations_run_again_harmlessly(store_url):
    first, second = await asyncio.gather(Store.open(store_url), Store.open(store_url))  # two starting at once
    saved = await first.receipts.save(new_dossier(), notice_for)
    await first.close()
    await second.close()
    again = await Store.open(store_url)
    try:
        assert (await again.dossiers.get(saved.dossier.id, ALL)).so_ho_so == "00001/2026/X"
        async with again.db.engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
        assert versions == [_head_revision()]
    finally:
        await again.close()


async def test_ping(store):
    assert await store.ping() is True


async def test_sqlite_connections_are_durable(store, store_url):
    if not store_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    async with store.db.engine.connect() as conn:
        pragmas = [
            (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        ]
    assert pragmas == ["wal", 2, 1, 10000]  # synchronous 2 = FULL


async def test_close_finishes_what_is_queued(store_url):
    opened = await Store.open(store_url)
    saves = [
        asyncio.ensure_future(opened.receipts.save(new_dossier(f"<n{i}/>".encode()), notice_for))
        for i in range(5)
    ]
    await asyncio.sleep(0)
    await opened.close()
    assert all(s.result().outcome == "stored" for s in saves)
    with pytest.raises(RuntimeError):
        await opened.receipts.save(new_dossier(), notice_for)


async def test_throughput_of_concurrent_small_saves(store, store_url, capsys):
    n = 2000
    started = time.perf_counter()
    results = await asyncio.gather(
        *(store.receipts.save(new_dossier(f"<Hoso n='{i}'/>".encode()), notice_for) for i in range(n))
    )
    elapsed = time.perf_counter() - started
    assert len({r.dossier.so_ho_so for r in results}) == n
    with capsys.disabled():
        backend = store_url.split(":", 1)[0]
        print(f"\n[store] {n} concurrent small saves on {backend}: {n / elapsed:.0f} saves/s")

"""Large bodies in bounded memory (issue #13 item 4): the server process never holds a large
dossier whole. Its body goes into a temporary file as it arrives (api.http.read_body), to the
worker and into the store from there (store.originals: SQLite's incremental blob I/O), and back
out into a file for the rule layer; every file is removed once its work is done. "Large" is made
small here (spool.LARGE, as imported by each module) so that a test dossier is."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import tempfile
import zipfile
from datetime import timedelta

import pytest
from aiohttp import web
from sqlalchemy import func, select

from interchange.api import http as api_http
from interchange.clock import utc_now
from interchange.spool import Spooled, SpoolWriter
from interchange.store import originals
from interchange.store.originals import (
    ORPHAN_AFTER,
    OriginalUnreadable,
    claim_staged,
    read_originals,
    stage_original,
)
from interchange.store.tables import originals as originals_table
from interchange.store.tables import staged_originals
from tests.helpers import ALL, UNIT, XML, new_dossier, notice_for, notice_of, p_row, run_work, signed, t

pytest_plugins = ["tests.conftest_store"]

SMALL = 1024


@pytest.fixture
def spools(monkeypatch, tmp_path):
    """The temporary files made (their writers), in a folder of the test's own; LARGE = 1 KiB."""
    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setattr(api_http, "LARGE", SMALL)
    monkeypatch.setattr(originals, "LARGE", SMALL)
    made = []
    real_init = SpoolWriter.__init__

    def init(self, **kw):
        real_init(self, **kw)
        made.append(self)

    monkeypatch.setattr(SpoolWriter, "__init__", init)
    return folder, made


async def test_a_large_body_is_received_stored_and_judged_through_files(spools, api, world, store_url):
    folder, made = spools
    body = signed(world, UNIT, "12/2025", [p_row(CMND="001090123456", TienLuong="10000000", TuThang="12/2025",
                                                 PA="TM", Loai="1")])
    assert len(body) > 3 * SMALL
    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys["unit"]})
    assert resp.status == 202, await resp.text()
    notice = notice_of(await resp.read())
    assert base64.b64decode(t(notice, "BamHoSo")) == hashlib.sha256(body).digest()  # bound to the bytes sent
    assert len(made) == 1 and made[0].size == len(body)  # the body went to a file
    assert not list(folder.iterdir())  # ... removed once stored
    tx = resp.headers["X-Transaction-Id"]
    got = await api.get(f"/api/v1/dossiers/{tx}/original", headers=api.keys["unit"])
    assert await got.read() == body  # stored from the file, byte for byte
    sqlite = store_url.startswith("sqlite")
    assert len(made) == (2 if sqlite else 1) and not list(folder.iterdir())  # ... and sent from one on SQLite

    assert await run_work(api) == ["result:done"]
    result = notice_of(await (await api.get(f"/api/v1/dossiers/{tx}/notices/ket-qua", headers=api.keys["unit"])).read())
    assert t(result, "KetQua") == "CHAP_NHAN"
    # on SQLite the rule layer got the original back through a file too (PostgreSQL: bytes)
    assert len(made) == (3 if sqlite else 1)
    assert not list(folder.iterdir())


async def where_stored(store, id: str) -> tuple[int, int]:
    """How many rows of dossier `id` each table holds: (dossier_originals, staged_originals)."""
    async with store.db.reading() as conn:
        return tuple([
            (await conn.execute(select(func.count()).select_from(table).where(table.c.dossier_id == id))).scalar_one()
            for table in (originals_table, staged_originals)
        ])  # fmt: skip


async def staged_count(store) -> int:
    async with store.db.reading() as conn:
        return (await conn.execute(select(func.count()).select_from(staged_originals))).scalar_one()


async def test_a_large_body_is_staged_while_checked_and_read_back_from_there(spools, api, world):
    """The body in its file is written into staged_originals while the worker checks it; the
    receipt only names it. Every reader finds it there: the original route, the evidence bundle,
    the result work. A receipt that stores nothing (a replay, a conflict, forbidden) leaves no
    staged row behind."""
    folder, _ = spools
    body = signed(world, UNIT, "12/2025", [p_row(CMND="001090123456", TienLuong="10000000", TuThang="12/2025",
                                                 PA="TM", Loai="1")])
    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys["unit"], "Idempotency-Key": "k-1"})
    assert resp.status == 202, await resp.text()
    tx = resp.headers["X-Transaction-Id"]
    assert await where_stored(api.store, tx) == (0, 1)
    assert await (await api.get(f"/api/v1/dossiers/{tx}/original", headers=api.keys["unit"])).read() == body
    bundle = await (await api.get(f"/api/v1/dossiers/{tx}/evidence", headers=api.keys["unit"])).read()
    with zipfile.ZipFile(io.BytesIO(bundle)) as zf:
        assert zf.read("original.xml") == body
    assert await run_work(api) == ["result:done"]
    result = notice_of(await (await api.get(f"/api/v1/dossiers/{tx}/notices/ket-qua", headers=api.keys["unit"])).read())
    assert t(result, "KetQua") == "CHAP_NHAN"

    again = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys["unit"]})
    assert again.status == 200 and again.headers["X-Transaction-Id"] == tx  # a replay: its staging removed
    other = signed(world, UNIT, "11/2025", [p_row(CMND="001090123456", TienLuong="9000000", TuThang="11/2025",
                                                  PA="TM", Loai="1")])
    conflict = await api.post("/api/v1/dossiers", data=other, headers={**XML, **api.keys["unit"], "Idempotency-Key": "k-1"})
    assert conflict.status == 409, await conflict.text()
    forbidden = await api.post("/api/v1/dossiers", data=other, headers={**XML, **api.keys["other"]})
    assert forbidden.status == 403, await forbidden.text()
    assert await staged_count(api.store) == 1 and await where_stored(api.store, tx) == (0, 1)
    assert not list(folder.iterdir())


async def test_the_staged_content_is_the_last_column_as_sqlite_needs(store, store_url):
    """SQLite writes a zeroblob() without making its zeros only in a row's last column: before
    it, staging a 103 MiB original took the server process from 77 to 291 MiB."""
    if not store_url.startswith("sqlite"):
        pytest.skip("SQLite's incremental blob I/O only")
    async with store.db.reading() as conn:
        for table in ("dossier_originals", "staged_originals"):
            columns = (await conn.exec_driver_sql(f"PRAGMA table_info({table})")).all()
            assert max(columns)[1] == "content", columns


async def received_with_its_original_in_dossier_originals(api, world) -> None:
    """A large dossier posted gets its 202, and its original is read back from dossier_originals."""
    body = signed(world, UNIT, "12/2025", [p_row(CMND="001090123456", TienLuong="10000000", TuThang="12/2025",
                                                 PA="TM", Loai="1")])
    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys["unit"]})
    assert resp.status == 202, await resp.text()
    tx = resp.headers["X-Transaction-Id"]
    assert await where_stored(api.store, tx) == (1, 0)
    assert await (await api.get(f"/api/v1/dossiers/{tx}/original", headers=api.keys["unit"])).read() == body


async def test_a_failed_staging_leaves_the_original_to_the_receipt(spools, api, world, monkeypatch):
    async def fails(id, content):
        raise OSError("disk full")

    monkeypatch.setattr(api.store.receipts, "stage_original", fails)
    await received_with_its_original_in_dossier_originals(api, world)


async def test_a_staging_cancelled_after_its_commit_leaves_one_original(spools, api, world, monkeypatch):
    """A staging task cancelled (the server stopping) while its thread commits: the receipt writes
    the original itself, and the staged copy is removed (it would otherwise be kept for ever, its
    dossier stored)."""
    real = api.store.receipts.stage_original

    async def committed_then_cancelled(id, content):
        await real(id, content)
        raise asyncio.CancelledError

    monkeypatch.setattr(api.store.receipts, "stage_original", committed_then_cancelled)
    await received_with_its_original_in_dossier_originals(api, world)


async def test_a_staged_original_gone_before_the_receipt_is_written_from_its_file(spools, api, world, monkeypatch):
    """However it went (a cleanup on a machine whose clock is hours ahead), a staged original not
    there when the receipt commits is written by the receipt from the body's file: a stored
    dossier always has its original."""
    real = api.store.receipts.stage_original

    async def staged_then_removed(id, content):
        await real(id, content)
        async with api.store.db.writing() as conn:
            await conn.execute(staged_originals.delete().where(staged_originals.c.dossier_id == id))

    monkeypatch.setattr(api.store.receipts, "stage_original", staged_then_removed)
    await received_with_its_original_in_dossier_originals(api, world)


async def test_a_cleanup_skips_a_staged_original_a_receipt_has_claimed(spools, store, store_url):
    """PostgreSQL: a receipt's transaction locks the staged originals it names (claim_staged); a
    cleanup meanwhile, however late the clock says it is, leaves them (on SQLite the receipt's
    write lock keeps any cleanup out)."""
    if not store_url.startswith("postgresql"):
        pytest.skip("SQLite: one writer at a time")
    spooled = Spooled.write(b"<Hoso>" + b"x" * 4000 + b"</Hoso>")
    await store.receipts.stage_original("claimed", spooled)
    async with store.db.writing() as receipt:
        assert await claim_staged(receipt, ["claimed", "never-staged"]) == {"claimed"}
        far = utc_now() + 10 * ORPHAN_AFTER
        removed = await asyncio.wait_for(store.db.write_inline(lambda conn: stage_original(conn, "later", spooled, far)), 10)
        assert removed == 0
    assert await store.db.write_inline(lambda conn: stage_original(conn, "latest", spooled, far)) == 1  # now it goes
    spooled.remove()


async def test_staged_originals_no_dossier_names_go_after_an_hour(spools, store):
    """What a dead process staged (no dossier row) is removed by a later staging once older than
    ORPHAN_AFTER; a younger one may still be a receipt under way, and a stored dossier's stays."""
    data = b"<Hoso>" + b"x" * 4000 + b"</Hoso>"
    spooled = Spooled.write(data)
    long_ago = utc_now() - ORPHAN_AFTER - timedelta(minutes=1)
    kept, doubled = new_dossier(data), new_dossier(data + b" ")
    kept.original, kept.original_staged = spooled, True
    for id, at in (("orphan-old", long_ago), ("orphan-young", utc_now() - ORPHAN_AFTER / 2), (kept.id, long_ago),
                   (doubled.id, long_ago)):
        assert await store.db.write_inline(lambda conn, id=id, at=at: stage_original(conn, id, spooled, at)) == 0
    assert (await store.receipts.save(kept, notice_for)).outcome == "stored"
    assert (await store.receipts.save(doubled, notice_for)).outcome == "stored"  # its original written again
    await store.receipts.stage_original("later", spooled)
    async with store.db.reading() as conn:
        left = set((await conn.execute(select(staged_originals.c.dossier_id))).scalars())
    assert left == {"orphan-young", kept.id, "later"}
    assert await store.dossiers.original(kept.id, ALL) == data
    assert await store.dossiers.original(doubled.id, ALL) == data + b" "  # from dossier_originals
    await store.receipts.unstage_original(kept.id)  # a stored dossier's original is never removed
    await store.receipts.unstage_original("orphan-young")
    assert await staged_count(store) == 2 and await store.dossiers.original(kept.id, ALL) == data
    spooled.remove()


async def test_originals_go_in_and_come_out_whole_or_spooled(spools, store, store_url):
    folder, _ = spools
    small, large = b"\xef\xbb\xbf<Hoso/>", bytes(range(256)) * 40  # 10 KiB, every byte value
    spooled = Spooled.write(large)
    ids = []
    for original, data in ((small, small), (spooled, large)):
        new = new_dossier(data)
        new.original = original
        ids.append((await store.receipts.save(new, notice_for)).dossier.id)
    spooled.remove()
    async with store.db.reading() as conn:
        back = await read_originals(conn, [*ids, "no-such-dossier"])
    assert set(back) == set(ids) and back[ids[0]] == small
    assert await store.dossiers.original(ids[1], ALL) == large
    if store_url.startswith("sqlite"):
        assert isinstance(back[ids[1]], Spooled) and back[ids[1]].read() == large
        back[ids[1]].remove()
    else:
        assert back[ids[1]] == large
    assert not list(folder.iterdir())


async def test_a_receipt_whose_file_is_gone_fails_alone(spools, store):
    # its request ended (and removed the file) while the receipt waited for the writer: the other
    # receipts of the batch are stored, and the store is not taken for unavailable
    gone = Spooled.write(b"<Hoso>" + b"x" * 4000 + b"</Hoso>")
    gone.remove()
    lost = new_dossier(b"<Hoso>" + b"x" * 4000 + b"</Hoso>")
    lost.original = gone
    kept = new_dossier(b"\xef\xbb\xbf<Hoso id='kept'/>")
    got = await asyncio.gather(store.receipts.save(lost, notice_for), store.receipts.save(kept, notice_for),
                               return_exceptions=True)
    assert isinstance(got[0], OriginalUnreadable), got[0]
    assert got[1].outcome == "stored" and store.db.unavailable is None
    assert await store.dossiers.original(kept.id, ALL) == kept.original
    assert await store.dossiers.get(lost.id, ALL) is None  # nothing of it stored


@pytest.mark.parametrize(("sent", "limit", "expect"), [(500, 4096, "bytes"), (3000, 4096, "spooled"),
                                                       (5000, 4096, "too large")])
async def test_read_body_spools_past_large_and_leaves_no_file_past_the_limit(spools, aiohttp_client, sent, limit,
                                                                             expect):
    folder, made = spools
    seen = {}

    async def handler(request: web.Request) -> web.Response:
        body = await api_http.read_body(request, limit)
        seen["body"] = body
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/", handler)
    client = await aiohttp_client(app)

    async def chunks():  # chunked: no Content-Length to refuse it by
        for at in range(0, sent, 700):
            yield bytes([at % 251]) * min(700, sent - at)

    resp = await client.post("/", data=chunks())
    assert resp.status == 200
    body = seen["body"]
    expected = b"".join([bytes([at % 251]) * min(700, sent - at) for at in range(0, sent, 700)])
    if expect == "bytes":
        assert body == expected and not made
    elif expect == "spooled":
        assert isinstance(body, Spooled) and body.read() == expected
        body.remove()
    else:
        assert body is None  # (spooled first or not, as the chunks came)
    assert not list(folder.iterdir())


def test_a_spool_can_digest_its_bytes_as_they_come(spools):
    data = bytes(range(256)) * 100
    writer = SpoolWriter(digest=True)
    for at in range(0, len(data), 777):
        writer.write(data[at : at + 777])
    spooled = writer.finish()
    assert spooled.digest == hashlib.sha256(data).digest() == spooled.sha256()
    plain = Spooled.write(data)  # no digest on the way: read back to compute it
    assert plain.digest is None and plain.sha256() == hashlib.sha256(data).digest()
    spooled.remove()
    plain.remove()

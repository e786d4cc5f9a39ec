"""Large bodies in bounded memory (issue #13 item 4): the server process never holds a large
dossier whole. Its body goes into a temporary file as it arrives (api.http.read_body), to the
worker and into the store from there (store.originals: SQLite's incremental blob I/O), and back
out into a file for the rule layer; every file is removed once its work is done. "Large" is made
small here (spool.LARGE, as imported by each module) so that a test dossier is."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import tempfile

import pytest
from aiohttp import web

from interchange.api import http as api_http
from interchange.spool import Spooled, SpoolWriter
from interchange.store import originals
from interchange.store.originals import OriginalUnreadable, read_originals
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

"""The database going away (PostgreSQL behind a TCP proxy the test cuts), SQLite read-only or
full, and the database down at start: 503 with Retry-After (a signed TU_CHOI with
STORE-UNAVAILABLE for a dossier), nothing acknowledged that was not committed, /readyz naming
the component, and recovery without a restart."""

from __future__ import annotations

import asyncio
import time

import pytest
from lxml import etree
from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url

from interchange import codes
from interchange.api.http import SERVICES
from interchange.notices.notice import NS
from interchange.server import make_app
from interchange.store.tables import dossiers
from tests.faultproxy import TcpProxy
from tests.helpers import PG_URL, UNIT, dossier
from tests.serverproc import ServerProc, free_port, make_site

XML = {"Content-Type": "application/xml"}


def error_codes(body: bytes) -> list[str]:
    root = etree.fromstring(body)
    assert root.findtext(f"{{{NS}}}LoaiThongBao") == "TU_CHOI"
    assert root.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is not None  # signed
    return [e.text for e in root.iterfind(f".//{{{NS}}}Loi/{{{NS}}}Ma")]


@pytest.fixture
def pg_schema_url(request):
    """A PostgreSQL URL with a schema of its own (skipped when PostgreSQL is not reachable)."""
    schemas = request.getfixturevalue("pg_schemas")
    if isinstance(schemas, pytest.skip.Exception):
        pytest.skip(schemas.msg)
    schema = schemas.empty()  # the server migrates it through the proxy
    try:
        yield make_url(PG_URL).update_query_dict({"search_path": schema})
    finally:
        schemas.drop(schema)


@pytest.fixture
async def proxied(pg_schema_url, cfg, aiohttp_client):
    """An app whose PostgreSQL is behind a proxy: (client, proxy). No work scheduler (quiet DB)."""
    proxy = await TcpProxy(pg_schema_url.host or "127.0.0.1", pg_schema_url.port or 5432).start()
    cfg.store.url = pg_schema_url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    cfg.jobs.interval_seconds = 0
    app = await make_app(cfg, workers=0)
    client = await aiohttp_client(app)
    store = app[SERVICES].store
    _, token = await store.keys.create("submitter", mst=UNIT.mst)
    client.key = {"Authorization": f"Bearer {token}"}
    client.store = store
    yield client, proxy
    await proxy.restore()  # so that the app closes cleanly
    await proxy.close()


@pytest.fixture
async def sqlite_api(cfg, tmp_path, aiohttp_client):
    cfg.store.url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'interchange.db'}"
    cfg.jobs.interval_seconds = 0
    app = await make_app(cfg, workers=0)
    client = await aiohttp_client(app)
    client.services = app[SERVICES]
    _, token = await client.services.store.keys.create("submitter", mst=UNIT.mst)
    client.keys = {"unit": {"Authorization": f"Bearer {token}"}}
    client.store = client.services.store
    return client


async def _count(store) -> int:
    async with store.db.reading() as conn:
        return (await conn.execute(select(func.count()).select_from(dossiers))).scalar_one()


async def test_postgres_gone_mid_run_answers_503_and_recovers(proxied, world):
    api, proxy = proxied
    post = lambda body: api.post("/api/v1/dossiers", data=body, headers={**XML, **api.key})  # noqa: E731
    assert (await post(dossier(world.signer(world.unit), seed=1))).status == 202

    await proxy.cut()
    started = time.monotonic()
    resp = await post(dossier(world.signer(world.unit), seed=2))
    assert resp.status == 503, await resp.text()
    assert int(resp.headers["Retry-After"]) >= 1
    assert error_codes(await resp.read()) == [codes.STORE_UNAVAILABLE]
    assert time.monotonic() - started < 10
    await asyncio.sleep(2.1)  # past the API key cache: reads go to the database
    resp = await api.get("/api/v1/dossiers", headers=api.key)
    assert resp.status == 503 and resp.headers["Retry-After"]
    assert (await resp.json())["code"] == codes.STORE_UNAVAILABLE
    resp = await api.get("/readyz")
    assert resp.status == 503
    ready = await resp.json()
    assert ready["status"] == "not ready" and ready["components"]["database"] == "unreachable"
    assert ready["components"]["workers"] == "ok" and ready["components"]["notice_key"].startswith("ok")
    assert ready["components"]["trust_anchors"] == "ok"

    await proxy.restore()  # the database is back: no restart
    resp = await post(dossier(world.signer(world.unit), seed=3))
    assert resp.status == 202, await resp.text()
    assert (await api.get("/readyz")).status == 200
    assert (await api.get("/api/v1/dossiers", headers=api.key)).status == 200
    assert await _count(api.store) == 2  # seeds 1 and 3: nothing of the refused one


async def test_commit_lost_fails_every_caller_of_the_batch(proxied, world):
    api, proxy = proxied
    bodies = [dossier(world.signer(world.unit), seed=10 + i) for i in range(4)]
    proxy.cut_on(b"COMMIT")  # the first COMMIT never reaches the database: the connection dies
    answers = await asyncio.gather(
        *(api.post("/api/v1/dossiers", data=b, headers={**XML, **api.key}) for b in bodies)
    )
    assert [a.status for a in answers] == [503] * 4
    for a in answers:
        assert error_codes(await a.read()) == [codes.STORE_UNAVAILABLE]
    await proxy.restore()
    assert await _count(api.store) == 0  # nothing half-written
    # The receipt writer is not broken: the same dossiers go in now, each one once.
    answers = await asyncio.gather(
        *(api.post("/api/v1/dossiers", data=b, headers={**XML, **api.key}) for b in bodies)
    )
    assert [a.status for a in answers] == [202] * 4
    assert await _count(api.store) == 4


@pytest.mark.parametrize("fault", ["read-only", "full"])
async def test_sqlite_read_only_or_full_answers_503(fault, sqlite_api, world, caplog):
    """A read-only database (PRAGMA query_only: root ignores file permissions) or a full disk
    (PRAGMA max_page_count at the current size: SQLITE_FULL) on every new connection."""
    api = sqlite_api
    engine = api.services.store.db.engine
    post = lambda body, **h: api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys["unit"], **h})  # noqa: E731
    assert (await post(dossier(world.signer(world.unit), seed=1))).status == 202

    def break_it(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        if fault == "read-only":
            cursor.execute("PRAGMA query_only = ON")
        else:
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages}")
        cursor.close()

    db = api.services.store.db
    for each in db.sync_engines:  # the async engine's and the one of the thread writes run on
        event.listen(each, "connect", break_it)
        each.pool.dispose()  # every connection from now on is broken
    await engine.dispose()
    big = dossier(world.signer(world.unit), seed=2, rows=200)  # needs new pages
    resp = await post(big, **{"Idempotency-Key": "k-2"})
    assert resp.status == 503, await resp.text()
    assert resp.headers["Retry-After"] and error_codes(await resp.read()) == [codes.STORE_UNAVAILABLE]
    expected = "readonly" if fault == "read-only" else "full"
    assert any("cannot be used" in r.getMessage() and expected in r.getMessage() for r in caplog.records)

    for each in db.sync_engines:
        event.remove(each, "connect", break_it)
        each.pool.dispose()
    await engine.dispose()
    resp = await post(big, **{"Idempotency-Key": "k-2"})
    assert resp.status == 202, await resp.text()  # the same key: nothing was kept of the failed try
    assert await _count(api.store) == 2
    assert any("works again" in r.getMessage() for r in caplog.records)


async def test_receipt_writer_started_again_if_it_ever_stopped(store):
    """The writer task must never end while the store is open; if it did, the next save restarts it
    rather than leaving its caller waiting for ever."""
    from tests.helpers import receipt, received

    writer = store.receipts.writer
    writer.cancel()
    await asyncio.sleep(0.01)
    assert writer.done()
    saved = await asyncio.wait_for(store.receipts.save(received(procedure="600", work=[]), receipt), 10)
    assert saved.outcome == "stored"


def test_start_with_database_down_exits_non_zero_with_one_clear_line(tmp_path):
    """Fail fast: the schema must be migrated before serving; a supervisor restarts the process."""
    site = make_site(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'data' / 'interchange.db'}")
    down = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test"  # nothing listens there
    log = tmp_path / "server.log"
    started = time.monotonic()
    server = ServerProc(site, log, STORE_URL=down)
    try:
        code = server.proc.wait(25)
    finally:
        server.stop()
    assert code != 0
    assert time.monotonic() - started < 25
    text = log.read_text()
    lines = [line for line in text.splitlines() if "cannot start" in line]
    assert len(lines) == 1 and "127.0.0.1" in lines[0] and "Traceback" not in text, text

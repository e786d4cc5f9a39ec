"""A transaction that writes a large original does not copy SQLite's WAL into the database at
its commit (SQLite's autocheckpoint would: 0.35-0.73 s for a 103 MiB original, while the
receipt waits); a thread does it just after, and the connection goes back to SQLite's own
checkpoints."""

from __future__ import annotations

import asyncio
import os
import threading

from sqlalchemy import event, text

from interchange.store.db import SQLITE_AUTOCHECKPOINT, Database, StoreUnavailable

MIB = 1024 * 1024


def _blob_writer(size: int, *, defer: bool):
    async def write(conn):
        if defer:
            conn.checkpoint_after_commit()
        await conn.execute(text("CREATE TABLE IF NOT EXISTS blobs (content BLOB)"))
        await conn.execute(text("INSERT INTO blobs VALUES (:c)"), {"c": os.urandom(size)})

    return write


async def test_a_large_write_is_checkpointed_after_its_commit_not_in_it(tmp_path, monkeypatch):
    path = tmp_path / "store.db"
    db = await Database.open(f"sqlite+aiosqlite:///{path}")
    used: list = []
    event.listen(db.sync_engines[-1], "checkout", lambda dbapi, record, proxy: used.append(dbapi))
    release, copied = threading.Event(), threading.Event()
    real = db.checkpoint

    def held():
        release.wait(20)
        try:
            return real()
        finally:
            copied.set()

    monkeypatch.setattr(db, "checkpoint", held)
    try:
        await db.write_inline(_blob_writer(12 * MIB, defer=True))  # 3,000 pages: past SQLite's mark
        assert os.path.getsize(path) < 2 * MIB  # committed (durable in the WAL), not copied yet
        assert os.path.getsize(f"{path}-wal") > 12 * MIB
        release.set()
        assert await asyncio.to_thread(copied.wait, 20)
        assert os.path.getsize(path) > 12 * MIB  # copied by the thread
        # every connection used is back on SQLite's own checkpoints: a large write without the
        # deferral is copied at its commit, as before
        await db.write_inline(_blob_writer(12 * MIB, defer=False))
        assert os.path.getsize(path) > 24 * MIB
        for dbapi in {id(c): c for c in used}.values():
            assert dbapi.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == SQLITE_AUTOCHECKPOINT
    finally:
        await db.dispose()


async def test_a_failed_large_write_still_gives_the_connection_back_its_checkpoints(tmp_path):
    path = tmp_path / "store.db"
    db = await Database.open(f"sqlite+aiosqlite:///{path}")
    used: list = []
    event.listen(db.sync_engines[-1], "checkout", lambda dbapi, record, proxy: used.append(dbapi))

    async def failing(conn):
        await _blob_writer(MIB, defer=True)(conn)
        raise RuntimeError("a statement failed")

    try:
        try:
            await db.write_inline(failing)
        except RuntimeError:
            pass
        else:
            raise AssertionError("the write should have failed")
        assert used
        for dbapi in {id(c): c for c in used}.values():
            assert dbapi.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == SQLITE_AUTOCHECKPOINT
    finally:
        await db.dispose()


async def test_a_large_write_whose_connection_breaks_fails_alone_and_the_store_works_on(tmp_path):
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")

    async def broken(conn):
        await _blob_writer(MIB, defer=True)(conn)
        (await conn.get_raw_connection()).driver_connection.close()  # as if the database went away

    try:
        try:
            await db.write_inline(broken)
        except StoreUnavailable:
            pass  # a 503 to its caller, as for any write on a database that went away
        else:
            raise AssertionError("the write should have failed")
        await db.write_inline(_blob_writer(MIB, defer=True))  # a new connection takes over
        assert await db.read_inline(_count) == 1
    finally:
        await db.dispose()


async def _count(conn) -> int:
    return (await conn.execute(text("SELECT count(*) FROM blobs"))).scalar_one()

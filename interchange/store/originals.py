"""The original bytes of dossiers, into `dossier_originals` and back out for the rule layer.

A large original (`interchange.spool.Spooled`: a body the server read into a file) goes from its
file into its row on SQLite a MiB at a time through incremental blob I/O, and comes back out the
same way into a file: an INSERT of the bytes has the driver and SQLite each copy them (a 103 MiB
dossier took the server process from 118 to 433 MiB), and a SELECT hands them over whole.
PostgreSQL gets and gives the bytes (asyncpg has no streaming bytea).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from interchange.spool import CHUNK, LARGE, Spooled, SpoolWriter

from .bulk import insert_many
from .db import InlineConnection
from .tables import originals

TABLE, COLUMN = originals.name, originals.c.content.name


class OriginalUnreadable(RuntimeError):
    """The file of a large original could not be read (its request gone, and the file removed,
    while the receipt waited to be written): that receipt fails alone, the store works on (an
    OSError would say the database cannot be used, and fail the whole batch)."""


async def insert_originals(conn: AsyncConnection, rows: Sequence[tuple[str, bytes | Spooled]]) -> None:
    """Insert (dossier id, original) rows, in the caller's transaction."""
    await insert_many(conn, originals, [{"dossier_id": id, "content": content}
                                        for id, content in rows if not isinstance(content, Spooled)])
    spooled = [(id, content) for id, content in rows if isinstance(content, Spooled)]
    if not spooled:
        return
    if isinstance(conn, InlineConnection):
        conn.checkpoint_after_commit()
    run = await sqlite_thread(conn)
    for id, content in spooled:
        if run is None:
            try:
                data = content.read()
            except OSError as exc:
                raise OriginalUnreadable(f"the original of dossier {id}: {exc}") from None
            await conn.execute(originals.insert(), {"dossier_id": id, "content": data})
        else:
            await run(_write_blob, id, content)


async def read_originals(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, bytes | Spooled]:
    """The originals of these dossiers (those that have one), in the caller's read: a large one on
    SQLite as a `Spooled` file, which the caller removes."""
    if not ids:
        return {}
    run = await sqlite_thread(conn)
    if run is None:
        query = select(originals.c.dossier_id, originals.c.content).where(originals.c.dossier_id.in_(list(ids)))
        return dict((await conn.execute(query)).all())
    return await run(_read_blobs, list(ids))


async def sqlite_thread(conn: AsyncConnection) -> Callable | None:
    """`run(fn, *args)`, awaitable: fn(the sqlite3 connection of `conn`, *args) on the thread that
    owns it (aiosqlite's, or the one an InlineConnection runs on), inside `conn`'s transaction;
    None on PostgreSQL (or another driver)."""
    if conn.dialect.name != "sqlite":
        return None
    driver = (await conn.get_raw_connection()).driver_connection
    if isinstance(driver, sqlite3.Connection):  # an InlineConnection's: this is its thread already

        async def here(fn, *args):
            return fn(driver, *args)

        return here
    # aiosqlite's own queue to its thread: it has no public call for blob I/O
    queue = getattr(driver, "_execute", None)
    db = getattr(driver, "_connection", None)
    if queue is None or not isinstance(db, sqlite3.Connection):
        return None

    async def run(fn, *args):
        return await queue(fn, db, *args)

    return run


def _write_blob(db: sqlite3.Connection, id: str, content: Spooled) -> None:
    try:
        chunks = content.chunks(CHUNK)
    except OSError as exc:
        raise OriginalUnreadable(f"the original of dossier {id}: {exc}") from None
    cursor = db.execute(f"INSERT INTO {TABLE} (dossier_id, {COLUMN}) VALUES (?, zeroblob(?))", (id, len(content)))
    try:
        rowid = cursor.lastrowid
    finally:
        cursor.close()
    with db.blobopen(TABLE, COLUMN, rowid) as blob:
        for chunk in chunks:
            blob.write(chunk)


def _read_blobs(db: sqlite3.Connection, ids: list[str]) -> dict[str, bytes | Spooled]:
    marks = ",".join("?" * len(ids))
    rowids = db.execute(f"SELECT dossier_id, rowid FROM {TABLE} WHERE dossier_id IN ({marks})", ids).fetchall()
    out: dict[str, bytes | Spooled] = {}
    try:
        for id, rowid in rowids:
            with db.blobopen(TABLE, COLUMN, rowid, readonly=True) as blob:
                out[id] = blob.read() if len(blob) < LARGE else _spool_blob(blob)
    except BaseException:
        for got in out.values():
            if isinstance(got, Spooled):
                got.remove()
        raise
    return out


def _spool_blob(blob: sqlite3.Blob) -> Spooled:
    writer = SpoolWriter()
    try:
        while chunk := blob.read(CHUNK):
            writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    return writer.finish()

"""The original bytes of dossiers, into `dossier_originals` and back out for the rule layer.

A large original (`interchange.spool.Spooled`: a body the server read into a file) goes from its
file into its row on SQLite a MiB at a time through incremental blob I/O, and comes back out the
same way into a file: an INSERT of the bytes has the driver and SQLite each copy them (a 103 MiB
dossier took the server process from 118 to 433 MiB), and a SELECT hands them over whole.
PostgreSQL gets and gives the bytes (asyncpg has no streaming bytea).

A large body is staged: written into `staged_originals` in a transaction of its own while a
worker checks it (`stage_original`), so that the receipt's transaction need not write it after
the check. The readers here take a dossier's original from either table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Table, delete, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from interchange.spool import CHUNK, LARGE, Spooled, SpoolWriter

from .bulk import insert_many
from .db import InlineConnection
from .tables import dossiers, originals, staged_originals

COLUMN = originals.c.content.name
# A staged original whose dossier was not stored by then never will be: its receipt ended without
# storing (forbidden, a replay, a failure) or its process died. Far past any check's budget.
ORPHAN_AFTER = timedelta(hours=1)


class OriginalUnreadable(RuntimeError):
    """The file of a large original could not be read (its request gone, and the file removed,
    while the receipt waited to be written): that receipt fails alone, the store works on (an
    OSError would say the database cannot be used, and fail the whole batch)."""


async def insert_originals(conn: AsyncConnection, rows: Sequence[tuple[str, bytes | Spooled]]) -> None:
    """Insert (dossier id, original) rows, in the caller's transaction."""
    await insert_many(conn, originals, [{"dossier_id": id, "content": content}
                                        for id, content in rows if not isinstance(content, Spooled)])
    for id, content in rows:
        if isinstance(content, Spooled):
            await _insert_large(conn, originals, id, content, {})


async def stage_original(conn: AsyncConnection, id: str, content: Spooled, now: datetime) -> int:
    """Write the original of dossier `id`, not stored yet, into `staged_originals`, in the
    caller's transaction; first remove the staged originals older than `ORPHAN_AFTER` that no
    stored dossier reads. How many were removed."""
    # Those a receipt has claimed (`claim_staged`, its transaction under way) are skipped, and the
    # rest checked again when deleted (a new snapshot): a clock stepped by hours, or a receipt
    # slower than ORPHAN_AFTER, never takes a stored dossier's original.
    old = (select(staged_originals.c.dossier_id)
           .where(staged_originals.c.staged_at < now - ORPHAN_AFTER, _unneeded(staged_originals.c.dossier_id))
           .with_for_update(skip_locked=True))  # fmt: skip
    orphans = list((await conn.execute(old)).scalars())
    if orphans:
        await conn.execute(delete(staged_originals).where(staged_originals.c.dossier_id.in_(orphans),
                                                          _unneeded(staged_originals.c.dossier_id)))  # fmt: skip
    await _insert_large(conn, staged_originals, id, content, {"staged_at": now})
    return len(orphans)


async def claim_staged(conn: AsyncConnection, ids: Sequence[str]) -> set[str]:
    """Those of `ids` whose original is staged, locked in the caller's (the receipt's) transaction
    so that no cleanup removes them before it commits (on SQLite its write lock does that). The
    caller writes the others' originals itself."""
    if not ids:
        return set()
    query = select(staged_originals.c.dossier_id).where(staged_originals.c.dossier_id.in_(list(ids)))
    return set((await conn.execute(query.with_for_update(key_share=True))).scalars())


async def unstage_original(conn: AsyncConnection, id: str) -> None:
    """Remove the staged original of `id` unless it is the stored dossier `id`'s original: the
    receipt ended without storing the dossier, or stored the original itself (its staging was
    cancelled, yet committed)."""
    await conn.execute(delete(staged_originals).where(staged_originals.c.dossier_id == id, _unneeded(id)))


def _unneeded(id):
    """A staged original no stored dossier reads: none was stored, or its original was written
    in dossier_originals (the staging was cancelled, yet its thread committed)."""
    return or_(~exists().where(dossiers.c.id == id), exists().where(originals.c.dossier_id == id))


async def _insert_large(conn: AsyncConnection, table: Table, id: str, content: Spooled, extra: dict) -> None:
    if isinstance(conn, InlineConnection):
        conn.checkpoint_after_commit()
    run = await sqlite_thread(conn)
    if run is None:
        try:
            data = content.read()
        except OSError as exc:
            raise OriginalUnreadable(f"the original of dossier {id}: {exc}") from None
        await conn.execute(table.insert(), {"dossier_id": id, "content": data, **extra})
    else:  # the values as the column types write them (a time as UTCDateTime's text)
        bound = {k: (p(v) if (p := table.c[k].type.bind_processor(conn.dialect)) else v) for k, v in extra.items()}
        await run(_write_blob, table, id, content, bound)


async def read_originals(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, bytes | Spooled]:
    """The originals of these dossiers (those that have one), in the caller's read: a large one on
    SQLite as a `Spooled` file, which the caller removes. Staged ones too: call it only for
    dossiers that are stored."""
    if not ids:
        return {}
    run = await sqlite_thread(conn)
    if run is None:
        out = {}
        for table in (originals, staged_originals):
            if wanted := [i for i in ids if i not in out]:
                query = select(table.c.dossier_id, table.c.content).where(table.c.dossier_id.in_(wanted))
                out.update((await conn.execute(query)).all())
        return out
    return await run(_read_blobs, list(ids))


async def read_original_bytes(conn: AsyncConnection, id: str) -> bytes | None:
    """The original of stored dossier `id`, whole, from either table (None when it has none)."""
    query = select(originals.c.content).where(originals.c.dossier_id == id).union_all(
        select(staged_originals.c.content).where(staged_originals.c.dossier_id == id)
    )
    return (await conn.execute(query)).scalars().first()


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


def _write_blob(db: sqlite3.Connection, table: Table, id: str, content: Spooled, extra: dict) -> None:
    try:
        chunks = content.chunks(CHUNK)
    except OSError as exc:
        raise OriginalUnreadable(f"the original of dossier {id}: {exc}") from None
    names = ", ".join(["dossier_id", COLUMN, *extra])
    marks = ", ".join(["?", "zeroblob(?)", *("?" * len(extra))])
    values = (id, len(content), *extra.values())
    cursor = db.execute(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", values)
    try:
        rowid = cursor.lastrowid
    finally:
        cursor.close()
    with db.blobopen(table.name, COLUMN, rowid) as blob:
        for chunk in chunks:
            blob.write(chunk)


def _read_blobs(db: sqlite3.Connection, ids: list[str]) -> dict[str, bytes | Spooled]:
    out: dict[str, bytes | Spooled] = {}
    try:
        for table in (originals.name, staged_originals.name):
            wanted = [i for i in ids if i not in out]
            if not wanted:
                break
            marks = ",".join("?" * len(wanted))
            rowids = db.execute(f"SELECT dossier_id, rowid FROM {table} WHERE dossier_id IN ({marks})", wanted).fetchall()
            for id, rowid in rowids:
                with db.blobopen(table, COLUMN, rowid, readonly=True) as blob:
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

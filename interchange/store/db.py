"""The database seam every store module goes through: the engine, a writing transaction, a
reading transaction (optionally one snapshot), the dialect's INSERT ... ON CONFLICT, and the
migrations.

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) past one machine; the same Core statements
serve both. The schema is migrated to head by Alembic when the database opens.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")
MIGRATION_LOCK = 0x696E_7463_0001  # pg_advisory_xact_lock key: one process migrates at a time
SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=10000",  # first: switching to WAL takes a lock that another opener may hold
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
)


class Database:
    """One engine and the ways to use it. Writers of one process take turns on SQLite."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.insert = postgresql.insert if self.postgres else sqlite.insert  # both have ON CONFLICT ... RETURNING
        # SQLite has one writer at a time. Writers of this process take turns here: left to
        # SQLite's busy handler they sleep and poll (up to 100 ms a try), which left the work queue
        # idle most of the time (26 results/s) and the receipts' p99 at 1.5 s while it ran.
        self._write_turn = None if self.postgres else asyncio.Lock()

    @classmethod
    async def open(cls, url: str, *, connect_args: dict | None = None) -> Database:
        """Connect (see `make_engine`) and migrate to head."""
        db = cls(make_engine(url, connect_args))
        try:
            await db.migrate()
        except BaseException:
            await db.engine.dispose()
            raise
        return db

    async def migrate(self) -> None:
        """Bring the schema to head; a database already there costs one small read."""
        async with self.reading() as conn:
            if await conn.run_sync(_at_head):
                return
        async with self.writing() as conn:
            if self.postgres:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            await conn.run_sync(_upgrade_to_head)

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed when the block ends (rolled back on an exception).
        On SQLite it takes the write lock up front (BEGIN IMMEDIATE), after this process's
        other writers."""
        async with self._write_turn or nullcontext():
            async with self.engine.connect() as conn:
                await conn.execution_options(sqlite_immediate=True)
                async with conn.begin():
                    yield conn

    @asynccontextmanager
    async def reading(self, *, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection for reads. With `snapshot`, every read in the block sees one state of
        the database (REPEATABLE READ on PostgreSQL; on SQLite in WAL a read transaction is one)."""
        async with self.engine.connect() as conn:
            if not snapshot:
                yield conn
                return
            if self.postgres:
                await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                yield conn

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()


def make_engine(url: str, connect_args: dict | None = None) -> AsyncEngine:
    """An engine set up for the store.

    SQLite: the folder is created and every connection gets the PRAGMAs. PostgreSQL: the URL
    may carry `?search_path=<schema>`; asyncpg has no such option, so it is taken off the URL
    and sent as a server setting (the tests give each test a schema of its own this way).
    """
    u = make_url(url)
    connect_args = dict(connect_args or {})
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    elif backend == "postgresql":
        if "search_path" in u.query:
            settings = dict(connect_args.get("server_settings") or {})
            settings["search_path"] = u.query["search_path"]
            connect_args["server_settings"] = settings
            u = u.difference_update_query(["search_path"])
    else:
        raise ValueError(f"store: unsupported database {backend!r} (sqlite or postgresql)")
    engine = create_async_engine(u, connect_args=connect_args)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # The driver's own transaction handling breaks SAVEPOINTs and cannot BEGIN IMMEDIATE:
    # switch it off and let _sqlite_on_begin say BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        for attempt in range(50):
            try:
                cursor.execute(pragma)
                break
            except sqlite3.OperationalError as exc:
                # Switching a new file to WAL needs it to itself: two processes opening it at once can
                # get "database is locked" at once, without the busy handler. One wins soon.
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.05)
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # Writers take the write lock up front: a deferred transaction that reads and then writes
    # can fail with SQLITE_BUSY when another connection wrote in between (busy_timeout cannot help).
    conn.exec_driver_sql(
        "BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "BEGIN"
    )


def _alembic_config() -> AlembicConfig:
    return AlembicConfig(str(ALEMBIC_INI))


_HEAD: str | None = None


def head_revision() -> str:
    """The newest migration's revision id (read once per process)."""
    global _HEAD
    if _HEAD is None:
        _HEAD = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    return _HEAD


def _at_head(connection: Connection) -> bool:
    if not inspect(connection).has_table("alembic_version"):  # a new database
        return False
    current = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    return current == [head_revision()]


def _upgrade_to_head(connection: Connection) -> None:
    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")

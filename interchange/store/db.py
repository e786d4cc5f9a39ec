"""The database seam every store module goes through: the engine, a writing transaction, a
reading transaction (optionally one snapshot), the dialect's INSERT ... ON CONFLICT, and the
migrations.

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) past one machine; the same Core statements
serve both. The schema is migrated to head by Alembic when the database opens.

The statements of every receipt batch and result group are built once, at module level, with
`bindparam`s (expanding ones for lists): SQLAlchemy builds and keys (its cache key) a statement
made per call anew, 0.13-0.23 ms a select, against 0.045 ms for one built once and 0.02 ms of
SQLite's own work. At moderate rates a batch holds one dossier and runs a dozen of them.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

T = TypeVar("T")

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")
PG_CONNECT_TIMEOUT = 5.0  # seconds to open a PostgreSQL connection (a black-holed server must not hang us)
PLAIN_POOL_SIZE = 10  # connections of read_plain's pool per process (PostgreSQL), beside the engine's
PLAIN_POOL_CLOSE = 5.0  # seconds for its connections to close cleanly at shutdown
PG_COMMAND_TIMEOUT = 120.0  # seconds for one statement (a batch of large originals included)
RETRY_AFTER_SECONDS = 5  # what callers are told to wait when the database cannot be used
MIGRATION_LOCK = 0x696E_7463_0001  # pg_advisory_xact_lock key: one process migrates at a time
SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=10000",  # first: switching to WAL takes a lock that another opener may hold
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
)
SQLITE_AUTOCHECKPOINT = 1000  # SQLite's own: pages of WAL past which a commit copies it into the database
CHECKPOINT_AFTER_COMMIT = "interchange_checkpoint_after_commit"  # key in a pooled connection's info


class StoreUnavailable(Exception):
    """The database cannot be used now (unreachable, gone mid-transaction, read-only, disk full,
    locked too long). Nothing of the transaction was committed (or, when the connection was lost
    during COMMIT, its outcome is unknown and nothing was answered): the caller may retry later."""

    retry_after = RETRY_AFTER_SECONDS


def store_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be used now, rather than that a statement was wrong
    (an IntegrityError, a bug): connection refused or lost, timeouts, SQLite's read-only, full or
    locked database, PostgreSQL refusing connections or shutting down."""
    if isinstance(exc, StoreUnavailable):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(exc, OperationalError | InterfaceError)
    if isinstance(exc, OSError | TimeoutError | sqlite3.OperationalError):
        return True
    if type(exc).__module__.startswith("asyncpg"):
        import asyncpg

        return isinstance(
            exc,
            asyncpg.exceptions.InterfaceError | asyncpg.exceptions.PostgresConnectionError
            | asyncpg.exceptions.CannotConnectNowError | asyncpg.exceptions.OperatorInterventionError
            | asyncpg.exceptions.InsufficientResourcesError,
        )  # fmt: skip
    return False


def describe(exc: BaseException) -> str:
    """One line on what the database said first (no SQL, no parameters). SQLite rolls the whole
    transaction back on a full disk, so what surfaces is "no such savepoint": the error that
    caused it, earlier in the chain, is the one named."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    database = [e for e in seen if isinstance(e, DBAPIError | sqlite3.Error) or store_unavailable(e)]
    first = database[-1] if database else exc
    if isinstance(first, StoreUnavailable):
        return str(first)
    if isinstance(first, DBAPIError) and first.orig is not None:
        first = first.orig
    text = str(first).splitlines()[0] if str(first) else ""
    return f"{type(first).__name__}: {text}" if text else type(first).__name__


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
        self.unavailable: str | None = None  # why the last use failed, until one succeeds again
        self._log_changes = True
        self._last_error: str | None = None  # the database's last own error (see _remember_error)
        event.listen(engine.sync_engine, "handle_error", self._remember_error)
        self._threaded: Engine | None = _threaded_engine(engine)
        # PostgreSQL: read_plain's own asyncpg pool (made on first use), from `open`'s URL
        self._plain_connect: dict | None = None
        self._plain_pool = None
        self._plain_pool_made = asyncio.Lock()
        if self._threaded is not None:
            event.listen(self._threaded, "handle_error", self._remember_error)
        self._here = None  # SQLite file: the pool connection of read_plain's small reads (_plain_here)

    def _remember_error(self, context) -> None:
        # SQLite rolls a transaction back by itself on a full disk (and a few other errors); the
        # savepoint's rollback then fails with "no such savepoint", and that is what surfaces
        # (aiosqlite's thread loses the exception chain). Keep the first one, to name the cause.
        what = describe(context.original_exception)
        if "no such savepoint" not in what:
            self._last_error = what

    def _why(self, exc: BaseException) -> str:
        what = describe(exc)
        if "no such savepoint" in what and self._last_error:
            return f"{self._last_error} (then {what})"
        return what

    @classmethod
    async def open(cls, url: str, *, connect_args: dict | None = None) -> Database:
        """Connect (see `make_engine`) and migrate to head."""
        db = cls(make_engine(url, connect_args))
        if db.postgres:
            u, args = _pg_connect(make_url(url), dict(connect_args or {}))
            # its statements are few and prepared once per connection: planned once, not at each
            # call (a lookup's plan took 0.9 ms, its execution 0.15 ms; PostgreSQL 12 or later)
            args["server_settings"] = {**args.get("server_settings", {}), "plan_cache_mode": "force_generic_plan"}
            db._plain_connect = {"dsn": u.set(drivername="postgresql").render_as_string(hide_password=False), **args}
        db._log_changes = False  # the caller says why opening failed, once
        try:
            await db.migrate()
        except BaseException:
            await db.engine.dispose()
            raise
        db._log_changes = True
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
        other writers. StoreUnavailable when the database cannot be used (nothing committed)."""
        async with self._unavailable_as_error():
            async with self._write_turn or nullcontext():
                async with self.engine.connect() as conn:
                    await conn.execution_options(sqlite_immediate=True)
                    async with conn.begin():
                        yield conn

    @asynccontextmanager
    async def reading(self, *, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection for reads. With `snapshot`, every read in the block sees one state of
        the database (REPEATABLE READ on PostgreSQL; on SQLite in WAL a read transaction is one).
        StoreUnavailable when the database cannot be used."""
        async with self._unavailable_as_error():
            async with self.engine.connect() as conn:
                if not snapshot:
                    yield conn
                    return
                if self.postgres:
                    await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    yield conn

    async def read_snapshot(self, fn: Callable[[Connection], object]):
        """fn(connection) in one snapshot read transaction, with a plain (synchronous) connection.
        On an SQLite file it runs on a worker thread with its own pool of sqlite3 connections: the
        whole read is one hop to that thread, not one per statement and per fetch (aiosqlite),
        which cost more than the reads themselves; elsewhere it runs on the async connection."""
        if self._threaded is None:
            async with self.reading(snapshot=True) as conn:
                return await conn.run_sync(fn)
        async with self._unavailable_as_error():
            return await asyncio.to_thread(self._read_in_thread, fn)

    @property
    def sync_engines(self) -> list[Engine]:
        """Every engine this database opens connections from (for event listeners): the async
        engine's, and on an SQLite file the one of the thread `read_inline`, `write_inline`,
        `read_snapshot` and `read_plain` run on."""
        return [self.engine.sync_engine, *([self._threaded] if self._threaded is not None else [])]

    @property
    def inline(self) -> bool:
        """Whether `write_inline` and `read_inline` run on a thread of their own (an SQLite file)."""
        return self._threaded is not None

    async def write_inline(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`await fn(conn)` in one write transaction, as `writing()` gives, for a transaction that
        waits for nothing but its own statements (no worker process, no other task).

        On an SQLite file the whole transaction runs on a worker thread in one hop, on a plain
        sqlite3 connection (`InlineConnection`), instead of one hop to aiosqlite's thread and back
        per statement: under load each hop also waited for its turn of a busy event loop, and
        SQLite's one write lock was held that much longer (a result group of 60 dossiers held it
        100-130 ms, the receipts waiting behind it). Elsewhere it runs on the async connection."""
        if self._threaded is None:
            async with self.writing() as conn:
                return await fn(conn)
        async with self._unavailable_as_error():
            async with self._write_turn or nullcontext():
                return await asyncio.to_thread(self._write_in_thread, fn)

    async def read_inline(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`await fn(conn)` in one snapshot read transaction (as `reading(snapshot=True)`), in one
        hop to a worker thread on an SQLite file, as `write_inline` does for writes."""
        if self._threaded is None:
            async with self.reading(snapshot=True) as conn:
                return await fn(conn)
        async with self._unavailable_as_error():
            return await asyncio.to_thread(self._read_in_thread, lambda conn: run_inline(fn(InlineConnection(conn))))

    def _write_in_thread(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        assert self._threaded is not None
        with self._threaded.connect() as conn:
            conn.execution_options(sqlite_immediate=True)
            try:
                with conn.begin():
                    return run_inline(fn(InlineConnection(conn)))  # type: ignore[arg-type]
            finally:
                if conn.info.pop(CHECKPOINT_AFTER_COMMIT, False):  # see InlineConnection.checkpoint_after_commit
                    self._checkpoint_after(conn)

    def _checkpoint_after(self, conn: Connection) -> None:
        """After a large write (committed or not): the connection back on SQLite's own checkpoints,
        and the WAL copied by a thread. A connection that cannot take the PRAGMA (the database
        failed meanwhile) is dropped from the pool rather than kept without checkpoints; that
        never hides the transaction's own outcome."""
        try:
            conn.connection.driver_connection.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT}")
        except Exception as exc:  # noqa: BLE001
            log.warning("store: dropping a connection that could not restore its WAL checkpoints: %s", describe(exc))
            with suppress(Exception):
                conn.invalidate()
            return
        threading.Thread(target=self._checkpoint_quietly, name="wal-checkpoint", daemon=True).start()

    def checkpoint(self) -> tuple[int, int, int]:
        """Copy the WAL of an SQLite file into the database now (blocking; PASSIVE: it waits for no
        writer, and none waits for it): (busy, frames in the WAL, frames copied)."""
        assert self._threaded is not None
        raw = self._threaded.raw_connection()
        try:
            return tuple(raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
        finally:
            raw.close()

    def _checkpoint_quietly(self) -> None:
        try:
            self.checkpoint()
        except Exception as exc:  # noqa: BLE001  (the next commit past the mark does it instead)
            log.warning("store: WAL checkpoint after a large write failed: %s", describe(exc))

    async def read_plain(self, sqlite_sql: str, pg_sql: str, *params, small: bool = False) -> list[tuple]:
        """The rows of one read-only statement run straight on the driver's connection (sqlite3,
        asyncpg), without SQLAlchemy's execution layer: for hot reads whose one statement is its
        own snapshot (card lookups). `sqlite_sql` takes ?-parameters, `pg_sql` $n-parameters.
        On an SQLite file the statement runs on a worker thread, or right here when `small` (a
        few rows by index: some 30 microseconds from the page cache): the hop to a thread and
        back cost more than such a statement (a single card lookup over HTTP took 0.47 ms of the
        server's CPU with the hop, 0.28 ms without; p99 90 ms against 17-50 ms at concurrency
        32). Database failures are StoreUnavailable, as everywhere."""
        async with self._unavailable_as_error():
            if self._threaded is not None:
                if small:
                    return self._plain_here(sqlite_sql, params)
                return await asyncio.to_thread(self._plain_in_thread, sqlite_sql, params)
            if self._plain_connect is not None:
                async with (await self._plain_pg_pool()).acquire() as driver:
                    return [tuple(r) for r in await driver.fetch(pg_sql, *params)]
            async with self.engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                if self.postgres:
                    return [tuple(r) for r in await driver.fetch(pg_sql, *params)]
                cursor = await driver.execute(sqlite_sql, params)  # aiosqlite (in-memory databases)
                return list(await cursor.fetchall())

    async def _plain_pg_pool(self):
        """asyncpg's own pool: acquiring a connection there costs no round trip, where the
        engine's pool pings every connection it hands out and wraps every call in a greenlet
        (2 ms a lookup, against 0.2 for the statement). A connection found dead fails its one
        statement (503, StoreUnavailable) and is replaced by the pool."""
        if self._plain_pool is not None:  # made: no lock to take at each lookup
            return self._plain_pool
        async with self._plain_pool_made:
            if self._plain_pool is None:
                import asyncpg

                assert self._plain_connect is not None
                self._plain_pool = await asyncpg.create_pool(min_size=0, max_size=PLAIN_POOL_SIZE, **self._plain_connect)
        return self._plain_pool

    def _plain_here(self, sql: str, params: tuple) -> list[tuple]:
        """A small read on the event loop's thread, on a connection of the pool kept for it: taking
        one from the pool and giving it back (with its rollback) cost as much as the statement.
        Autocommit: the statement is its own snapshot. Dropped after an error (a new one next time)."""
        if self._here is None:
            self._here = self._threaded.raw_connection()
        try:
            return self._here.driver_connection.execute(sql, params).fetchall()
        except BaseException:
            here, self._here = self._here, None
            here.invalidate()
            raise

    def _plain_in_thread(self, sql: str, params: tuple) -> list[tuple]:
        assert self._threaded is not None
        raw = self._threaded.raw_connection()
        try:
            return raw.cursor().execute(sql, params).fetchall()
        finally:
            raw.close()

    def _read_in_thread(self, fn: Callable[[Connection], object]):
        with self._threaded.connect() as conn, conn.begin():
            return fn(conn)

    @asynccontextmanager
    async def _unavailable_as_error(self) -> AsyncIterator[None]:
        """Database failures become StoreUnavailable, logged once when they start and once when
        the database works again (not once per request while it is down)."""
        try:
            yield
        except Exception as exc:
            if not store_unavailable(exc):
                raise
            self.mark_unavailable(exc)
            if isinstance(exc, StoreUnavailable):
                raise
            raise StoreUnavailable(self._why(exc)) from exc
        else:
            if self.unavailable is not None and self._log_changes:
                log.warning("store: the database works again (it failed with %s)", self.unavailable)
                self.unavailable = None

    def mark_unavailable(self, exc: BaseException) -> None:
        why = self._why(exc)
        if self.unavailable is None and self._log_changes:
            log.error("store: the database cannot be used: %s; answering 503 until it can", why)
        self.unavailable = why

    async def ping(self, timeout: float = 3.0) -> bool:
        try:
            async with asyncio.timeout(timeout), self.reading() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        if self._plain_pool is not None:
            try:
                await asyncio.wait_for(self._plain_pool.close(), PLAIN_POOL_CLOSE)
            except (TimeoutError, OSError):
                self._plain_pool.terminate()
            self._plain_pool = None
        await self.engine.dispose()
        if self._here is not None:
            self._here.close()  # back to its pool, disposed next
            self._here = None
        if self._threaded is not None:
            await asyncio.to_thread(self._threaded.dispose)


class InlineConnection:
    """What the store's statement helpers use of an `AsyncConnection` (`execute`, `begin_nested`,
    `dialect`, `get_raw_connection`), over a synchronous connection on the thread that owns it.
    Each call returns at once: a helper awaiting only these never suspends, so `run_inline` runs
    it to its end without an event loop (see `Database.write_inline`)."""

    def __init__(self, sync: Connection):
        self.sync = sync
        self.dialect = sync.dialect

    async def execute(self, statement, parameters=None, **kw):
        return self.sync.execute(statement, parameters, **kw)

    async def exec_driver_sql(self, statement, parameters=None, **kw):
        return self.sync.exec_driver_sql(statement, parameters, **kw)

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[InlineConnection]:
        with self.sync.begin_nested():
            yield self

    async def get_raw_connection(self):
        return self.sync.connection  # .driver_connection: the sqlite3 connection

    def checkpoint_after_commit(self) -> None:
        """This transaction writes a lot (a large original): its commit does not copy the WAL into
        the database (SQLite's autocheckpoint would, past 1,000 pages: 0.35-0.73 s for a 103 MiB
        original against 0.14 s for the commit itself, while its caller waits); a thread does it
        just after, and the connection goes back to SQLite's own checkpoints."""
        self.sync.connection.driver_connection.execute("PRAGMA wal_autocheckpoint=0")
        self.sync.info[CHECKPOINT_AFTER_COMMIT] = True


def run_inline(coro: Coroutine[Any, Any, T]) -> T:
    """The value of a coroutine that never suspends (it awaits only `InlineConnection` calls),
    run here to its end. One that does suspend is a bug: it is closed and RuntimeError raised."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("an inline transaction waited for something other than its connection")


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
        u, connect_args = _pg_connect(u, connect_args)
    else:
        raise ValueError(f"store: unsupported database {backend!r} (sqlite or postgresql)")
    # PostgreSQL: a pooled connection is checked before use, so that the first request after the
    # database comes back (restarted, failed over) gets a new connection instead of a dead one.
    engine = create_async_engine(u, connect_args=connect_args, pool_pre_ping=backend == "postgresql")
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _pg_connect(u: URL, connect_args: dict) -> tuple[URL, dict]:
    """asyncpg's arguments: the timeouts, and `?search_path=` as a server setting."""
    connect_args.setdefault("timeout", PG_CONNECT_TIMEOUT)
    connect_args.setdefault("command_timeout", PG_COMMAND_TIMEOUT)
    if "search_path" in u.query:
        settings = dict(connect_args.get("server_settings") or {})
        settings["search_path"] = u.query["search_path"]
        connect_args["server_settings"] = settings
        u = u.difference_update_query(["search_path"])
    return u, connect_args


def _threaded_engine(engine: AsyncEngine) -> Engine | None:
    """A synchronous engine on the same SQLite file (pysqlite), for reads run on a worker thread;
    None for PostgreSQL and in-memory databases."""
    u = engine.url
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" or u.database.startswith("file:"):
        return None
    sync = create_engine(u.set(drivername="sqlite"), connect_args={"check_same_thread": False})
    event.listen(sync, "connect", _sqlite_on_connect)
    event.listen(sync, "begin", _sqlite_on_begin)
    return sync


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

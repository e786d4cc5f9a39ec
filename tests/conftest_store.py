"""Store fixtures, a pytest plugin (`pytest_plugins = ["tests.conftest_store"]`).

`store_url` runs each test once on SQLite (a file under tmp_path) and once on PostgreSQL
(`INTERCHANGE_TEST_PG_URL`), where every test gets a fresh schema of its own, named after
this session (`t_<random>_<n>`), so that parallel runs never meet. `store` is a Store
opened on that URL.

The database a test gets is already at the migrations' head, made from a template instead of
running Alembic for every test (it cost ~0.1 s a test on SQLite and ~0.5 s on PostgreSQL):

- SQLite: one file migrated once per session (`sqlite_template`), checkpointed so that the
  main file holds everything, and copied to the test's file (`cfg`'s default store too).
- PostgreSQL: the migrations rendered once per session as SQL (Alembic's offline mode, the same
  scripts and options as store/migrations/env.py, seeded rows included), run in the new schema
  in one round trip, a few tests ahead by a thread of its own (`Schemas`), which also drops the
  used schemas in the background.

tests/test_template_database.py checks that both give what running the migrations gives.
A test marked `@pytest.mark.fresh_database` (the tests of the migrations themselves) gets an
empty database instead.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import io
import itertools
import secrets
import shutil
import sqlite3
import threading
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from interchange.store import Store
from interchange.store.db import ALEMBIC_INI, Database
from tests.helpers import PG_DSN, PG_URL, on_private_loop, pg_execute


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fresh_database: the test's store_url (and cfg's store) is an empty database, not one at head"
    )


def fresh_database(request) -> bool:
    return request.node.get_closest_marker("fresh_database") is not None


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file migrated to head, whole in its main file (no WAL beside it)."""
    path = tmp_path_factory.mktemp("template") / "interchange.db"

    async def migrate():
        db = await Database.open(f"sqlite+aiosqlite:///{path}")
        await db.dispose()

    on_private_loop(migrate())
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = path.with_name(path.name + "-wal")  # the last connection to close removes it
    assert not wal.exists() or wal.stat().st_size == 0, wal
    return path


def copy_sqlite_template(template: Path, database: Path) -> None:
    """The template as `database`, unless that file exists already (another fixture made it)."""
    if not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, database)


@pytest.fixture
def migrated_sqlite(request):
    """`migrated_sqlite(path)` puts a SQLite database at head at `path` (if there is no file
    there yet); nothing for a test marked fresh_database."""

    def make(database: Path) -> None:
        if not fresh_database(request):
            copy_sqlite_template(request.getfixturevalue("sqlite_template"), database)

    return make


def migrations_as_sql(dialect: str) -> str:
    """The migrations from nothing to head as one SQL script (Alembic's offline mode, through
    store/migrations/env.py)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    out = io.StringIO()
    config = AlembicConfig(str(ALEMBIC_INI), output_buffer=out)
    config.attributes["dialect"] = dialect
    command.upgrade(config, "head", sql=True)
    return out.getvalue()


@pytest.fixture(scope="session")
def pg_template_sql() -> str:
    return migrations_as_sql("postgresql")


class Schemas:
    """This session's PostgreSQL schemas, `t_<random>_<n>`: each test gets one that nothing else
    used. They are made and dropped by a thread of their own on one connection: the migrated ones a
    few tests ahead, so that the server runs their DDL while the tests run, and used ones dropped
    without waiting."""

    AHEAD = 2

    def __init__(self, migrated_sql: str):
        self._sql = migrated_sql
        prefix = f"t_{secrets.token_hex(4)}"
        self._names = (f"{prefix}_{n}" for n in itertools.count(1))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-schemas", daemon=True)
        self._thread.start()
        self._turn = asyncio.Lock()  # one statement at a time on the connection
        self._conn = self._submit(asyncpg.connect(PG_DSN, timeout=5)).result()
        self._ahead: collections.deque[concurrent.futures.Future] = collections.deque()
        self._drops: list[concurrent.futures.Future] = []

    def _submit(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _execute(self, sql: str) -> None:
        async with self._turn:
            try:
                await self._conn.execute(sql)
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._conn.execute("ROLLBACK")  # out of the script's BEGIN, if it failed inside
                raise

    async def _create(self, name: str, sql: str) -> str:
        # one round trip: the schema and, in it, the tables (the script has its BEGIN/COMMIT)
        await self._execute(f'CREATE SCHEMA "{name}"; SET search_path TO "{name}";\n{sql}')
        return name

    def migrated(self) -> str:
        """A new schema at the migrations' head."""
        if not self._ahead:
            self._ahead.append(self._submit(self._create(next(self._names), self._sql)))
        name = self._ahead.popleft().result(timeout=120)
        while len(self._ahead) < self.AHEAD:
            self._ahead.append(self._submit(self._create(next(self._names), self._sql)))
        return name

    def empty(self) -> str:
        """A new empty schema."""
        return self._submit(self._create(next(self._names), "")).result(timeout=120)

    def drop(self, name: str) -> None:
        self._drops = [f for f in self._drops if not f.done() or f.exception() is not None]
        self._drops.append(self._submit(self._execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')))

    def close(self) -> None:
        """Drop what is left (the schemas made ahead too), then stop the thread; a failed drop is raised."""
        try:
            for future in self._ahead:
                with contextlib.suppress(Exception):
                    self.drop(future.result(timeout=120))
            errors = [e for e in (f.exception(timeout=120) for f in self._drops) if e is not None]
            if errors:
                raise errors[0]
        finally:
            with contextlib.suppress(Exception):
                self._submit(self._conn.close()).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()


def _url_of(schema: str) -> str:
    return make_url(PG_URL).update_query_dict({"search_path": schema}).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_schemas(pg_template_sql):
    """This session's `Schemas`, or a skip when the server cannot be reached."""
    try:
        on_private_loop(pg_execute("SELECT 1"))
    except Exception as exc:
        reason = (
            f"PostgreSQL not reachable at {make_url(PG_URL)!r} ({exc!r}): storage tests ran on SQLite only"
        )
        yield pytest.skip.Exception(reason)  # raised by store_url, so that SQLite tests still run
        return
    schemas = Schemas(pg_template_sql)
    try:
        yield schemas
    finally:
        schemas.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        database = tmp_path / "data" / "interchange.db"
        if not fresh_database(request):
            copy_sqlite_template(request.getfixturevalue("sqlite_template"), database)
        yield f"sqlite+aiosqlite:///{database}"
        return
    schemas = request.getfixturevalue("pg_schemas")
    if isinstance(schemas, pytest.skip.Exception):
        pytest.skip(schemas.msg)
    schema = schemas.empty() if fresh_database(request) else schemas.migrated()
    try:
        yield _url_of(schema)
    finally:
        schemas.drop(schema)  # after the test's store and app have closed (they depend on store_url)


@pytest.fixture
def fresh_store_url(request, store_url, tmp_path):
    """A second database on store_url's backend, empty whatever the marks (to compare with)."""
    if store_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'interchange.db'}"
        return
    schemas = request.getfixturevalue("pg_schemas")
    schema = schemas.empty()
    try:
        yield _url_of(schema)
    finally:
        schemas.drop(schema)


@pytest.fixture
async def store(store_url):
    opened = await Store.open(store_url)
    yield opened
    await opened.close()


def _pg_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        on_private_loop(pg_execute("SELECT 1"))
    except Exception as exc:
        return repr(exc)
    return None


def pytest_report_header(config):
    why = _pg_reachable()
    where = make_url(PG_URL).render_as_string(hide_password=True)
    if why is None:
        return f"PostgreSQL: {where} reachable: storage and API tests run on SQLite and PostgreSQL"
    return f"PostgreSQL: NOT reachable at {where} ({why}): storage and API tests run on SQLite only (SKIPPED on PostgreSQL)"


def pytest_terminal_summary(terminalreporter):
    """Say it plainly, even under -q: which storage tests did not run on PostgreSQL, and why."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "not reachable" in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"NOTE: {len(skipped)} PostgreSQL variants of the storage and API tests were SKIPPED: "
            f"{pytest_report_header(None)}. Set INTERCHANGE_TEST_PG_URL to a reachable server to run them.",
            yellow=True,
        )

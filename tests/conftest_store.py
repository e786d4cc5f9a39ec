"""Store fixtures, a pytest plugin (`pytest_plugins = ["tests.conftest_store"]`).

`store_url` runs each test once on SQLite (a file under tmp_path) and once on PostgreSQL
(`INTERCHANGE_TEST_PG_URL`), where every test gets a fresh schema of its own, named after
this session (`t_<random>_<n>`), so that parallel runs never meet. `store` is a Store
opened (and migrated) on that URL.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from interchange.store import Store

PG_URL = os.environ.get("INTERCHANGE_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _on_private_loop(coro):
    # Not asyncio.run: that would reset the event loop pytest-asyncio runs the tests in.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def _pg_execute(*statements: str) -> None:
    dsn = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_schemas():
    """Schema names for this session, or a skip when the server cannot be reached."""
    try:
        _on_private_loop(_pg_execute("SELECT 1"))
    except Exception as exc:
        reason = (
            f"PostgreSQL not reachable at {make_url(PG_URL)!r} ({exc!r}): storage tests ran on SQLite only"
        )
        yield pytest.skip.Exception(reason)  # raised by store_url, so that SQLite tests still run
        return
    prefix = f"t_{secrets.token_hex(4)}"
    yield (f"{prefix}_{n}" for n in itertools.count(1))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'interchange.db'}"
        return
    schemas = request.getfixturevalue("pg_schemas")
    if isinstance(schemas, pytest.skip.Exception):
        pytest.skip(schemas.msg)
    schema = next(schemas)
    _on_private_loop(_pg_execute(f'CREATE SCHEMA "{schema}"'))
    try:
        yield (
            make_url(PG_URL).update_query_dict({"search_path": schema}).render_as_string(hide_password=False)
        )
    finally:
        _on_private_loop(_pg_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
async def store(store_url):
    opened = await Store.open(store_url)
    yield opened
    await opened.close()


def _pg_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        _on_private_loop(_pg_execute("SELECT 1"))
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

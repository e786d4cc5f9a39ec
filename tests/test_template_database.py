"""The databases the tests get (tests/conftest_store.py: a copy of a migrated SQLite file, or the
migrations rendered as SQL and run in a new PostgreSQL schema) are what running the migrations
on an empty database gives: the same tables, columns, keys, indexes, sequences and seeded rows."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from interchange.store.db import Database, head_revision, make_engine
from interchange.store.tables import metadata


def describe(connection) -> dict:
    """The schema and every row, in a form to compare."""
    insp = inspect(connection)
    schema = {}
    for table in sorted(insp.get_table_names()):
        schema[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")), c.get("autoincrement"))
                for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table),
            "fks": sorted(map(repr, insp.get_foreign_keys(table))),
            "indexes": sorted(map(repr, insp.get_indexes(table))),
            "uniques": sorted(map(repr, insp.get_unique_constraints(table))),
            "checks": sorted(map(repr, insp.get_check_constraints(table))),
            "rows": sorted(map(tuple, connection.exec_driver_sql(f'SELECT * FROM "{table}"').all()), key=repr),
        }
    if connection.dialect.name == "sqlite":
        schema["sqlite_master"] = connection.exec_driver_sql(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).all()
    else:
        schema["sequences"] = sorted(insp.get_sequence_names())
        schema["pg_indexes"] = connection.exec_driver_sql(
            "SELECT tablename, indexname, replace(indexdef, current_schema() || '.', '') FROM pg_indexes"
            " WHERE schemaname = current_schema() ORDER BY tablename, indexname"
        ).all()
        schema["constraints"] = connection.exec_driver_sql(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2"
        ).all()
    return schema


async def described(url: str) -> dict:
    db = await Database.open(url)  # migrates an empty database; one at head is left alone
    try:
        async with db.reading() as conn:
            return await conn.run_sync(describe)
    finally:
        await db.dispose()


async def test_a_tests_database_is_what_the_migrations_make(store_url, fresh_store_url):
    copied = await described(store_url)
    assert copied == await described(fresh_store_url)
    assert set(metadata.tables) <= set(copied)
    assert copied["alembic_version"]["rows"] == [(head_revision(),)]
    assert copied["audit_head"]["rows"]  # the genesis row the migrations seed


async def test_a_tests_database_is_already_at_head(store_url):
    db = Database(make_engine(store_url))
    try:
        async with db.reading() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    finally:
        await db.dispose()
    assert versions == [head_revision()]


@pytest.mark.fresh_database
async def test_a_fresh_database_is_empty(store_url):
    db = Database(make_engine(store_url))
    try:
        async with db.reading() as conn:
            assert await conn.run_sync(lambda c: inspect(c).get_table_names()) == []
    finally:
        await db.dispose()

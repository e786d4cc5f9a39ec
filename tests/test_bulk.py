"""`insert_many` on SQLite hands the driver tuples it makes itself instead of going through
SQLAlchemy's executemany: what it stores must be byte for byte what SQLAlchemy would have
stored, for every table of the schema and every column type in it (times, dates, JSON, bytes,
decimals, booleans, NULLs)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import JSON, BigInteger, Boolean, Date, Integer, LargeBinary, Numeric, String, create_engine

from interchange.store.bulk import insert_many, insert_rows
from interchange.store.db import InlineConnection, run_inline
from interchange.store.tables import UTCDateTime, metadata

ROWS = 40


def _value(column, i: int, rng: random.Random):
    if column.nullable and not column.primary_key and rng.random() < 0.2:
        return None
    t = column.type
    if isinstance(t, UTCDateTime):
        zone = timezone(timedelta(hours=rng.choice([0, 7, -5])))
        return datetime(2026, 1, 1, tzinfo=UTC).astimezone(zone) + timedelta(seconds=rng.randrange(10**8),
                                                                            microseconds=rng.choice([0, 1, 999999]))
    if isinstance(t, Date):
        return date(1950, 1, 1) + timedelta(days=rng.randrange(30000))
    if isinstance(t, JSON):
        return rng.choice([{"a": i, "ư": "Nguyễn"}, [1, "x", None], {}, [], "text", 3, None])
    if isinstance(t, LargeBinary):
        return rng.randbytes(rng.choice([0, 1, 32, 300]))
    if isinstance(t, Numeric):
        return Decimal(rng.randrange(-10**9, 10**9)) / 10000
    if isinstance(t, Boolean):
        return rng.random() < 0.5
    if isinstance(t, Integer | BigInteger):
        return i if column.primary_key or column.unique else rng.randrange(-2**40, 2**40)
    if isinstance(t, String):
        text = f"{i}-{rng.choice(['', 'Đ', 'a b', '0'])}-{column.name}"  # unique where it must be
        return text[: t.length] if t.length else text
    raise AssertionError(f"a column type the test does not know: {column.table.name}.{column.name} {t!r}")


def _stored(conn, table) -> list[tuple]:
    return conn.exec_driver_sql(f'SELECT * FROM "{table.name}" ORDER BY rowid').fetchall()


@pytest.mark.parametrize("table", sorted(metadata.tables.values(), key=lambda t: t.name), ids=lambda t: t.name)
def test_insert_many_stores_what_sqlalchemy_stores(table, tmp_path):
    rng = random.Random(table.name)
    rows = [{c.name: _value(c, i, rng) for c in table.columns} for i in range(ROWS)]
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")  # no foreign keys: each table alone
    metadata.create_all(engine)
    with engine.connect() as conn:
        with conn.begin():
            conn.execute(table.insert(), rows)
            by_sqlalchemy = _stored(conn, table)
            conn.execute(table.delete())
        with conn.begin():
            run_inline(insert_many(InlineConnection(conn), table, rows))
            mine = _stored(conn, table)
        with conn.begin():  # a generator in pages, as the record writers use it
            conn.execute(table.delete())
            run_inline(insert_rows(InlineConnection(conn), table, (r for r in rows)))
            paged = _stored(conn, table)
    engine.dispose()
    assert len(by_sqlalchemy) == ROWS
    assert mine == by_sqlalchemy
    assert paged == by_sqlalchemy


def test_a_key_that_is_not_a_column_is_refused(tmp_path):
    table = metadata.tables["notices"]
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    metadata.create_all(engine)
    with engine.connect() as conn, conn.begin():
        with pytest.raises(KeyError):
            run_inline(insert_many(InlineConnection(conn), table, [{"dossier_id": "d", "no_such_column": 1}]))
    engine.dispose()


def test_run_inline_refuses_a_coroutine_that_suspends():
    import asyncio

    async def waits():
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="waited for something other than its connection"):
        run_inline(waits())

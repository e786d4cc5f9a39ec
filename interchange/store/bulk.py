"""Many rows written in few statements.

On PostgreSQL, asyncpg's executemany runs one INSERT per row (one bind and execute each, and the
per-row work in Python around it); an INSERT with RETURNING makes SQLAlchemy send one multi-row
INSERT ... VALUES per page of rows instead ("insertmanyvalues": up to 1,000 rows and under the
driver's parameter limit per statement). SQLite keeps executemany, which runs in-process and is
the fastest way there, given tuples made here (`insert_many`): SQLAlchemy's own executemany builds
a dict of every parameter of every row and runs each value's conversion in its own call, which
was five times the cost of SQLite's work and a fifth of the server's CPU with the result work on.

`RecordRows` gathers the record rows of a group settlement (interchange.store.results) so that
each record table gets one insert for the whole group, a page at a time: the rows of a
200,000-row dossier are never all built at once (neither here nor in the driver's parameters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from itertools import islice
from operator import itemgetter

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

PAGE = 5000  # rows per statement, at most (and rows of a group held before they are inserted)


async def insert_rows(conn: AsyncConnection, table: Table, rows: Iterable[dict]) -> None:
    """Insert `rows` (all with the same keys) into `table`, in order, in as few statements as
    the dialect allows, PAGE rows at a time (a generator is built a page at a time)."""
    stmt = table.insert().returning(*table.primary_key.columns) if conn.dialect.name == "postgresql" else None
    rows = iter(rows)
    while page := list(islice(rows, PAGE)):
        if stmt is not None:
            await conn.execute(stmt, page)
        else:
            await insert_many(conn, table, page)


async def insert_many(conn: AsyncConnection, table: Table, rows: Sequence[dict]) -> None:
    """Insert `rows` (dicts with the same keys, every one a column of `table`: it has no Python-side
    defaults) in one executemany. On SQLite the rows go to the driver as tuples, each value
    converted as SQLAlchemy would (the type's bind processor for this dialect); elsewhere through
    SQLAlchemy's own executemany."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        await conn.execute(table.insert(), list(rows))
        return
    sql, make = _sqlite_plan(table, tuple(rows[0]), conn.dialect)
    await conn.exec_driver_sql(sql, [make(row) for row in rows])


@lru_cache(maxsize=256)
def _sqlite_plan(table: Table, keys: tuple[str, ...], dialect: Dialect) -> tuple[str, Callable[[dict], tuple]]:
    """The INSERT of these columns as SQLAlchemy compiles it, and the function that makes a row's
    tuple in the order of its ?-parameters."""
    if unknown := set(keys) - set(table.c.keys()):
        raise KeyError(f"not columns of {table.name}: {', '.join(sorted(unknown))}")
    compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
    order = list(compiled.positiontup or [])
    values = itemgetter(*order) if len(order) > 1 else lambda row: (row[order[0]],)
    converts = [(i, p) for i, k in enumerate(order) if (p := table.c[k].type.dialect_impl(dialect).bind_processor(dialect))]
    if not converts:
        return compiled.string, values

    def make(row: dict) -> tuple:
        out = list(values(row))
        for i, convert in converts:
            out[i] = convert(out[i])
        return tuple(out)

    return compiled.string, make


class RecordRows:
    """The record rows of several dossiers settled in one transaction, inserted together (one
    `insert_rows` per table, in the order they were added) by `flush`. Anything that reads or
    moves record rows by person (a merge of persons) flushes first, so that it sees the rows of
    the dossiers settled before it in the group, as one write per dossier would have left them."""

    def __init__(self) -> None:
        self.rows: dict[Table, list[dict]] = {}
        self.held = 0  # rows waiting
        self.persons_locked = False  # the persons' advisory lock is held (PostgreSQL)

    async def add(self, conn: AsyncConnection, table: Table, rows: Sequence[dict]) -> None:
        """Rows to insert; the waiting ones are inserted once they are a page: earlier than
        `flush` is always right (a write per dossier would have inserted them already)."""
        if rows:
            self.rows.setdefault(table, []).extend(rows)
            self.held += len(rows)
            if self.held >= PAGE:
                await self.flush(conn)

    async def flush(self, conn: AsyncConnection) -> None:
        pending, self.rows, self.held = self.rows, {}, 0
        for table, rows in pending.items():
            await insert_rows(conn, table, rows)

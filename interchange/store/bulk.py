"""Many rows written in few statements.

On PostgreSQL, asyncpg's executemany runs one INSERT per row (one bind and execute each, and the
per-row work in Python around it); an INSERT with RETURNING makes SQLAlchemy send one multi-row
INSERT ... VALUES per page of rows instead ("insertmanyvalues": up to 1,000 rows and under the
driver's parameter limit per statement). SQLite keeps executemany, which runs in-process and is
the fastest way there.

`RecordRows` gathers the record rows of a group settlement (interchange.store.results) so that
each record table gets one insert for the whole group, a page at a time: the rows of a
200,000-row dossier are never all built at once (neither here nor in the driver's parameters).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

PAGE = 5000  # rows per statement, at most (and rows of a group held before they are inserted)


async def insert_rows(conn: AsyncConnection, table: Table, rows: Iterable[dict]) -> None:
    """Insert `rows` (all with the same keys) into `table`, in order, in as few statements as
    the dialect allows, PAGE rows at a time (a generator is built a page at a time)."""
    stmt = table.insert().returning(*table.primary_key.columns) if conn.dialect.name == "postgresql" else table.insert()
    rows = iter(rows)
    while page := list(islice(rows, PAGE)):
        await conn.execute(stmt, page)


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

"""Many rows written in few statements.

On PostgreSQL, asyncpg's executemany runs one INSERT per row (one bind and execute each, and the
per-row work in Python around it); an INSERT with RETURNING makes SQLAlchemy send one multi-row
INSERT ... VALUES per page of rows instead ("insertmanyvalues": up to 1,000 rows and under the
driver's parameter limit per statement). SQLite keeps executemany, which runs in-process and is
the fastest way there.

`RecordRows` gathers the record rows of a group settlement (interchange.store.results) so that
each record table gets one insert for the whole group.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection


async def insert_rows(conn: AsyncConnection, table: Table, rows: Sequence[dict]) -> None:
    """Insert `rows` (all with the same keys) into `table`, in order, in as few statements as
    the dialect allows."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        await conn.execute(table.insert().returning(*table.primary_key.columns), list(rows))
    else:
        await conn.execute(table.insert(), list(rows))


class RecordRows:
    """The record rows of several dossiers settled in one transaction, inserted together (one
    `insert_rows` per table, in the order they were added) by `flush`. Anything that reads or
    moves record rows by person (a merge of persons) flushes first, so that it sees the rows of
    the dossiers settled before it in the group, as one write per dossier would have left them."""

    def __init__(self) -> None:
        self.rows: dict[Table, list[dict]] = {}
        self.persons_locked = False  # the persons' advisory lock is held (PostgreSQL)

    def add(self, table: Table, rows: Sequence[dict]) -> None:
        if rows:
            self.rows.setdefault(table, []).extend(rows)

    async def flush(self, conn: AsyncConnection) -> None:
        pending, self.rows = self.rows, {}
        for table, rows in pending.items():
            await insert_rows(conn, table, rows)

"""Units registered for electronic transactions (SPEC §9): reading one, writing one with the
result of its registration dossier."""

from __future__ import annotations

from sqlalchemy import exists, false, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import Database
from .rows import unit_of, unit_row
from .tables import dossiers, units
from .types import REFUSED, Scope, Unit


class Units:
    def __init__(self, db: Database):
        self._db = db

    async def get(self, mst: str, scope: Scope) -> Unit | None:
        """A unit's registration (SPEC §9), if `scope` may see it: a unit itself, an I-VAN that
        carried one of its dossiers, or everyone for auditors and admins."""
        query = select(units).where(units.c.mst == mst)
        if not scope.all:
            allowed = []
            if scope.mst:
                allowed.append(units.c.mst == scope.mst)
            if scope.ivan:
                carried = select(dossiers.c.id).where(
                    dossiers.c.unit_mst == mst,
                    or_(dossiers.c.ivan_code == scope.ivan, dossiers.c.owner == f"ivan:{scope.ivan}"),
                    dossiers.c.state != REFUSED,  # signed by the unit: anyone can send a refused one naming any MST
                )
                allowed.append(exists(carried))
            query = query.where(or_(*allowed) if allowed else false())
        async with self._db.reading() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else unit_of(row)


async def write_unit(conn: AsyncConnection, insert, unit: Unit) -> None:
    """Insert or replace a unit's row in the caller's transaction (`insert`: Database.insert)."""
    row = unit_row(unit)
    stmt = insert(units).values(row).on_conflict_do_update(
        index_elements=[units.c.mst], set_={k: v for k, v in row.items() if k != "mst"}
    )
    await conn.execute(stmt)

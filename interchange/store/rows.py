"""Rows to the store's types and back, and who may see which dossier: shared by the store's modules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import bindparam, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import dossiers, notices, units, work_items
from .types import QUEUED, ApiKey, Dossier, Scope, Unit, WorkItem

# What a Dossier is made of: the row without the columns that only the receipt writer uses.
DOSSIER_COLUMNS = [c for c in dossiers.c if c.name not in ("replay_key", "idempotency_scope")]


def dossier_of(row, kinds: list[str]) -> Dossier:
    return Dossier(**{c.name: getattr(row, c.name) for c in DOSSIER_COLUMNS}, notice_kinds=kinds)


def unit_of(row) -> Unit:
    return Unit(**{c.name: getattr(row, c.name) for c in units.c})


def unit_row(unit: Unit) -> dict:
    return {c.name: getattr(unit, c.name) for c in units.c}


def unit_data(unit: Unit) -> dict:
    """A unit as JSON values (for the audit log)."""
    data = {c.name: getattr(unit, c.name) for c in units.c if c.name != "updated_at"}
    return {**data, "updated_at": unit.updated_at.astimezone(UTC).isoformat()}


def work_item_of(row) -> WorkItem:
    return WorkItem(**{c.name: getattr(row, c.name) for c in work_items.c})


KEY_COLUMNS = ("key_id", "role", "mst", "ivan", "facility", "label", "created_at", "revoked_at")


def api_key_of(row) -> ApiKey:
    return ApiKey(**{c: getattr(row, c) for c in KEY_COLUMNS})


def visible(scope: Scope):
    """The condition on `dossiers` for what `scope` may read."""
    if scope.all:
        return true()
    allowed = []
    if scope.mst:
        allowed += [dossiers.c.unit_mst == scope.mst, dossiers.c.owner == f"mst:{scope.mst}"]
    if scope.ivan:
        allowed += [dossiers.c.ivan_code == scope.ivan, dossiers.c.owner == f"ivan:{scope.ivan}"]
    return or_(*allowed) if allowed else false()


# Built once (store/db.py says why).
_NOTICE_KINDS = (
    select(notices.c.dossier_id, notices.c.kind)
    .where(notices.c.dossier_id.in_(bindparam("ids", expanding=True)))
    .order_by(notices.c.created_at, notices.c.kind)
)


async def notice_kinds(conn: AsyncConnection, ids: list[str]) -> dict[str, list[str]]:
    """The kinds of notice each dossier has, in the order they were stored."""
    rows = await conn.execute(_NOTICE_KINDS, {"ids": list(ids)})
    kinds: dict[str, list[str]] = {}
    for dossier_id, kind in rows:
        kinds.setdefault(dossier_id, []).append(kind)
    return kinds


def new_work_row(dossier_id: str, kind: str, due_at: datetime, now: datetime) -> dict:
    return {
        "id": uuid.uuid4().hex,
        "dossier_id": dossier_id,
        "kind": kind,
        "due_at": due_at,
        "not_before": now,
        "state": QUEUED,
        "attempts": 0,
        "created_at": now,
    }

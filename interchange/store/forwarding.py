"""The I-VAN forwarding's rows (tables `forwardings`, `forward_attempts`): one run of a work
handler leaves all it changed in one transaction: the try's row, the forwarding's state, an
upstream notice (with its audit entry), the next work item, and its own work item queued again
or failed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from interchange.audit.chain import Event

from .audit import append as audit_append
from .audit import notice_stored
from .db import Database
from .deliveries import enqueue_notice_deliveries
from .tables import dossiers, forward_attempts, forwardings, notices, work_items
from .types import DONE, QUEUED, RUNNING, WorkItem
from .types import FAILED as WORK_FAILED

# Forwarding states (forwardings.state).
PENDING = "pending"  # not yet received upstream (tries go on)
FORWARDED = "forwarded"  # the upstream gave its TIEP_NHAN
REFUSED_UPSTREAM = "refused_upstream"  # the upstream gave a TU_CHOI (kept as bhxh-tu-choi)
FAILED = "failed"  # the upstream refused the request itself (401, 403, 409, 413 ...): no retry helps
STATES = (PENDING, FORWARDED, REFUSED_UPSTREAM, FAILED)

FORWARDING_EVENT = "dossier.forwarded"  # audit kind: the upstream received (or refused) the bytes, or never will


@dataclass(kw_only=True)
class Forwarding:
    dossier_id: str
    state: str
    due_at: datetime
    attempts: int
    next_try_at: datetime | None
    last_error: str | None
    upstream_id: str | None
    forwarded_at: datetime | None
    result_due_at: datetime | None
    polls: int
    relayed_at: datetime | None


@dataclass(kw_only=True)
class Attempt:
    kind: str  # forward | poll
    at: datetime
    outcome: str
    duration_ms: int
    http_status: int | None = None
    error: str | None = None
    upstream_id: str | None = None
    n: int = 0  # given when written


@dataclass
class Change:
    """What one run of a handler writes, together."""

    forwarding: dict  # columns of the forwarding's row to set (the row is made when absent)
    attempt: Attempt | None = None
    notice: tuple[str, bytes] | None = None  # (kind, signed XML) to keep with the dossier
    audit_data: dict | None = None  # an audit entry FORWARDING_EVENT with this data
    enqueue: tuple[str, datetime, datetime] | None = None  # (kind, due_at, not_before) of a new work item
    requeue_at: datetime | None = None  # the item back in the queue from then (its claim not counted)
    fail: str | None = None  # the item failed for good, with this error
    dossier: dict | None = None  # columns of the dossier's row to set (the agency refused it: state, result_at)


class Forwardings:
    def __init__(self, db: Database):
        self._db = db

    async def of(self, dossier_id: str) -> Forwarding | None:
        async with self._db.reading() as conn:
            row = (await conn.execute(select(forwardings).where(forwardings.c.dossier_id == dossier_id))).first()
        return None if row is None else Forwarding(**{c.name: getattr(row, c.name) for c in forwardings.c})

    async def of_upstream(self, upstream_id: str) -> Forwarding | None:
        """The forwarding the upstream received as `upstream_id` (its MaGiaoDich)."""
        async with self._db.reading() as conn:
            row = (await conn.execute(select(forwardings).where(forwardings.c.upstream_id == upstream_id))).first()
        return None if row is None else Forwarding(**{c.name: getattr(row, c.name) for c in forwardings.c})

    async def pushed(self, dossier_id: str, now: datetime, attempt: Attempt, *, relayed: bool, relay_kind: str) -> None:
        """A notice the upstream pushed, in one transaction: its try's row and, when its KET_QUA was
        kept (`relayed`), the forwarding marked relayed and its polling (`relay_kind` item, while
        queued) done. A poll running meanwhile finds the KET_QUA stored and keeps nothing twice."""
        async with self._db.writing() as conn:
            await conn.execute(
                select(forwardings.c.dossier_id).where(forwardings.c.dossier_id == dossier_id).with_for_update()
            )
            await _add_attempt(conn, dossier_id, attempt)
            if not relayed:
                return
            await conn.execute(
                update(forwardings)
                .where(forwardings.c.dossier_id == dossier_id, forwardings.c.relayed_at.is_(None))
                .values(relayed_at=now, next_try_at=None, last_error=None)
            )
            await conn.execute(
                update(work_items)
                .where(work_items.c.dossier_id == dossier_id, work_items.c.kind == relay_kind,
                       work_items.c.state == QUEUED)
                .values(state=DONE, done_at=now)
            )  # fmt: skip

    async def attempts_of(self, dossier_id: str) -> list[Attempt]:
        async with self._db.reading() as conn:
            rows = (
                await conn.execute(
                    select(forward_attempts)
                    .where(forward_attempts.c.dossier_id == dossier_id)
                    .order_by(forward_attempts.c.n)
                )
            ).all()
        return [Attempt(**{c.name: getattr(r, c.name) for c in forward_attempts.c if c.name != "dossier_id"})
                for r in rows]  # fmt: skip

    async def write(self, item: WorkItem, now: datetime, change: Change, *, actor: str = "server") -> None:
        """Write `change` for the dossier of `item` in one transaction. The item is requeued or failed
        only while this process still holds its claim (a process whose lease ran out changes nothing
        of the item; its rows are written all the same, as the try was made)."""
        id = item.dossier_id
        insert = self._db.insert
        async with self._db.writing() as conn:
            made = insert(forwardings).values(
                dossier_id=id, state=PENDING, due_at=item.due_at, attempts=0, polls=0
            ).on_conflict_do_nothing(index_elements=[forwardings.c.dossier_id])
            await conn.execute(made)
            # Two runs of one item (a lease ran out) take turns here, so that each try gets its own n.
            await conn.execute(select(forwardings.c.dossier_id).where(forwardings.c.dossier_id == id).with_for_update())
            if change.forwarding:
                await conn.execute(update(forwardings).where(forwardings.c.dossier_id == id).values(**change.forwarding))
            if change.dossier:
                await conn.execute(update(dossiers).where(dossiers.c.id == id).values(**change.dossier))
            if change.attempt is not None:
                await _add_attempt(conn, id, change.attempt)
            events = []
            if change.notice is not None:
                kind, xml = change.notice
                await conn.execute(notices.insert(), {"dossier_id": id, "kind": kind, "xml": xml, "created_at": now})
                await enqueue_notice_deliveries(conn, id, kind, now)  # relayed to the submitter's callback
                events.append(notice_stored(id, kind, xml, actor))
            if change.audit_data is not None:
                events.append(Event(FORWARDING_EVENT, actor, change.audit_data, id))
            if change.enqueue is not None:
                kind, due_at, not_before = change.enqueue
                row = {"id": uuid.uuid4().hex, "dossier_id": id, "kind": kind, "due_at": due_at,
                       "not_before": not_before, "state": QUEUED, "attempts": 0, "created_at": now}  # fmt: skip
                await conn.execute(
                    insert(work_items).values(row).on_conflict_do_nothing(
                        index_elements=[work_items.c.dossier_id, work_items.c.kind]
                    )
                )
            await _release(conn, item, now, change)
            if events:
                await audit_append(conn, events)


async def _add_attempt(conn: AsyncConnection, dossier_id: str, a: Attempt) -> None:
    last = (
        await conn.execute(select(func.max(forward_attempts.c.n)).where(forward_attempts.c.dossier_id == dossier_id))
    ).scalar()
    a.n = (last or 0) + 1
    await conn.execute(forward_attempts.insert(), {
        "dossier_id": dossier_id, "n": a.n, "kind": a.kind, "at": a.at, "outcome": a.outcome,
        "http_status": a.http_status, "error": (a.error or None) and a.error[:2000],
        "duration_ms": a.duration_ms, "upstream_id": a.upstream_id,
    })  # fmt: skip


async def _release(conn: AsyncConnection, item: WorkItem, now: datetime, change: Change) -> None:
    """The handler's own work item queued again or failed, while this process holds its claim."""
    held = (work_items.c.id == item.id, work_items.c.state == RUNNING, work_items.c.claimed_by == item.claimed_by)
    if change.requeue_at is not None:
        # attempts back to 0: the runner gives up on items claimed too often without finishing
        # (a crash loop); these tries finished, and their count is in the forwarding's row.
        await conn.execute(update(work_items).where(*held).values(
            state=QUEUED, not_before=change.requeue_at, claimed_by=None, claimed_until=None,
            attempts=0, last_error=(change.forwarding.get("last_error") or "")[:2000] or None,
        ))  # fmt: skip
    elif change.fail is not None:
        await conn.execute(update(work_items).where(*held).values(
            state=WORK_FAILED, done_at=now, claimed_until=None, last_error=change.fail[:2000],
        ))  # fmt: skip

"""Appending to the hash-chained audit log (the chain itself is `interchange.audit.chain`) and
reading it back: appends happen inside the transaction of what they record."""

from __future__ import annotations

import getpass
import hashlib
import socket
from collections.abc import Sequence

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from interchange import clock
from interchange.audit.chain import HEAD_ID, NOTICE_STORED, ChainChecker, ChainReport, Entry, Event, chain

from .bulk import insert_many
from .db import Database
from .tables import audit_head, audit_log

PAGE = 5000  # entries read at a time when the whole log is checked

# Built once (store/db.py says why).
_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ID)
# The head locked, with the time of its entry (one round trip where two were); see `append`
_HEAD_LOCKED = (
    select(
        audit_head.c.seq,
        audit_head.c.hash,
        select(audit_log.c.at).where(audit_log.c.seq == audit_head.c.seq).scalar_subquery().label("last_at"),
    )
    .where(audit_head.c.id == HEAD_ID)
    .with_for_update(of=audit_head)
)
_LAST_AT = select(audit_log.c.at).where(audit_log.c.seq == bindparam("last_seq"))
_SET_HEAD = update(audit_head).where(audit_head.c.id == HEAD_ID).values(
    seq=bindparam("head_seq"), hash=bindparam("head_hash")
)


async def append(conn: AsyncConnection, events: Sequence[Event]) -> list[Entry]:
    """Append `events` in the caller's transaction: one locked read of the head (with the time of
    its entry), one insert of all the entries, one update. Call it last in a transaction, so that
    the head stays locked briefly."""
    if not events:
        return []
    head = (await conn.execute(_HEAD_LOCKED)).one()
    # Taken under the lock, and never before the last entry's: a clock stepped backwards (NTP,
    # a VM restored, another process's clock behind) must not make times go backwards along the
    # chain. The entry then carries its predecessor's time until the clock catches up.
    at = clock.utc_now()
    last = head.last_at
    if head.seq and last is None:
        # PostgreSQL, when the head moved while this waited for its lock: the locked read sees the
        # new head, but its sub-select sees the log as the statement began, without that entry.
        # A statement of its own sees it.
        last = (await conn.execute(_LAST_AT, {"last_seq": head.seq})).scalar_one_or_none()
    if last is not None and last > at:
        at = last
    entries = chain(head.seq, head.hash, at, events)
    # One executemany of a cached statement: a multi-row VALUES would be compiled anew for every
    # batch size, which cost more than the whole insert.
    await insert_many(
        conn,
        audit_log,
        [
            {
                "seq": e.seq,
                "at": at,
                "kind": e.kind,
                "actor": e.actor,
                "dossier_id": e.dossier_id,
                "data": e.data,
                "prev_hash": e.prev_hash,
                "hash": e.hash,
            }
            for e in entries
        ],
    )
    await conn.execute(_SET_HEAD, {"head_seq": entries[-1].seq, "head_hash": entries[-1].hash})
    return entries


async def head_of(conn: AsyncConnection) -> tuple[int, str]:
    row = (await conn.execute(_HEAD)).one()
    return row.seq, row.hash


def notice_stored(dossier_id: str, kind: str, xml: bytes, actor: str) -> Event:
    """The entry of a notice stored with a dossier."""
    data = {"kind": kind, "sha256": hashlib.sha256(xml).hexdigest(), "size": len(xml)}
    return Event(NOTICE_STORED, actor, data, dossier_id)


def operator() -> str:
    """Who runs this process (the actor of key events made from the command line)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"os:{user}@{socket.gethostname()}"


class AuditLog:
    def __init__(self, db: Database):
        self._db = db

    async def append(
        self, kind: str, data: dict, *, actor: str | None = None, dossier_id: str | None = None
    ) -> Entry:
        """Record an admin action or a change of state that has no transaction of its own."""
        async with self._db.writing() as conn:
            (entry,) = await append(conn, [Event(kind, actor or operator(), data, dossier_id)])
        return entry

    async def head(self) -> tuple[int, str]:
        async with self._db.reading() as conn:
            return await head_of(conn)

    async def entries(self, *, after: int = 0, upto: int | None = None, limit: int = PAGE) -> list[Entry]:
        """Entries with after < seq <= upto, in seq order."""
        query = select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(limit)
        if upto is not None:
            query = query.where(audit_log.c.seq <= upto)
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [Entry.from_row(r) for r in rows]

    async def verify(self) -> ChainReport:
        """Recompute the whole chain (page by page) up to the head as it is now."""
        head_seq, head_hash = await self.head()  # first: every entry up to it is committed
        checker = ChainChecker()
        after = 0
        while True:
            page = await self.entries(after=after, upto=head_seq)
            for entry in page:
                checker.add(entry)
            if len(page) < PAGE:
                break
            after = page[-1].seq
        return checker.finish(head_seq, head_hash)

"""Reading dossiers back (one, a page, a notice, the original, an evidence bundle's parts) and
storing the notices that come later."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError

from interchange.audit.chain import Entry, excerpt_records
from interchange.kinds import NOTICE_SLUGS
from interchange.spool import Spooled
from interchange.trust.revocation import referenced_data

from .audit import append as audit_append
from .audit import head_of, notice_stored
from .db import Database
from .deliveries import enqueue_notice_deliveries
from .originals import read_original_bytes, read_originals
from .revdata import read_revocation_data
from .rows import DOSSIER_COLUMNS, dossier_of, notice_kinds, visible
from .tables import audit_log, dossiers, notices
from .types import Dossier, Scope

MAX_PAGE = 500


@dataclass
class EvidenceParts:
    dossier: Dossier
    original: bytes
    notices: dict[str, bytes]  # kind -> signed XML, in the order they were stored
    audit: list[dict]  # interchange.audit.chain.excerpt_records
    revocation: dict[str, bytes]  # the revocation data its signers name by SHA-256 (hex) -> DER


class Dossiers:
    def __init__(self, db: Database):
        self._db = db

    async def get(self, id: str, scope: Scope) -> Dossier | None:
        async with self._db.reading() as conn:
            row = (
                await conn.execute(select(*DOSSIER_COLUMNS).where(dossiers.c.id == id, visible(scope)))
            ).first()
            if row is None:
                return None
            kinds = await notice_kinds(conn, [id])
        return dossier_of(row, kinds.get(id, []))

    async def list_page(
        self,
        scope: Scope,
        *,
        state: str | None = None,
        procedure: str | None = None,
        period: str | None = None,
        so_ho_so: str | None = None,
        received_from: datetime | None = None,
        received_to: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        unit_mst: str | None = None,
    ) -> tuple[list[Dossier], str | None]:
        """Newest first. `received_from` is inclusive, `received_to` exclusive. Pass the cursor
        returned with one page to get the next; None means there is no next page.
        Raises ValueError for a cursor this store did not make."""
        limit = max(1, min(int(limit), MAX_PAGE))
        query = select(*DOSSIER_COLUMNS).where(visible(scope))
        if state is not None:
            query = query.where(dossiers.c.state == state)
        if procedure is not None:
            query = query.where(dossiers.c.procedure == procedure)
        if period is not None:
            query = query.where(dossiers.c.period == period)
        if so_ho_so is not None:
            query = query.where(dossiers.c.so_ho_so == so_ho_so)
        if received_from is not None:
            query = query.where(dossiers.c.received_at >= received_from)
        if received_to is not None:
            query = query.where(dossiers.c.received_at < received_to)
        if unit_mst is not None:  # the unit's tax code (auditors; a unit's key sees its own anyway)
            query = query.where(dossiers.c.unit_mst == unit_mst)
        if cursor is not None:
            after_time, after_id = _decode_cursor(cursor)
            query = query.where(
                or_(
                    dossiers.c.received_at < after_time,
                    and_(dossiers.c.received_at == after_time, dossiers.c.id < after_id),
                )
            )
        query = query.order_by(dossiers.c.received_at.desc(), dossiers.c.id.desc()).limit(limit + 1)
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            kinds = await notice_kinds(conn, [r.id for r in rows]) if rows else {}
        page = [dossier_of(r, kinds.get(r.id, [])) for r in rows]
        return page, (_encode_cursor(page[-1]) if more else None)

    async def notice(self, id: str, kind: str, scope: Scope) -> bytes | None:
        query = (
            select(notices.c.xml)
            .join(dossiers, dossiers.c.id == notices.c.dossier_id)
            .where(notices.c.dossier_id == id, notices.c.kind == kind, visible(scope))
        )
        async with self._db.reading() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def original(self, id: str, scope: Scope) -> bytes | None:
        """The original's bytes, whole (`original_file` leaves a large one in its file)."""
        data = await self.original_file(id, scope)
        if not isinstance(data, Spooled):
            return data
        try:
            return data.read()
        finally:
            data.remove()

    async def original_file(self, id: str, scope: Scope) -> bytes | Spooled | None:
        """The original (None when there is none visible in `scope`): a large one on SQLite as a
        `Spooled` file (read a MiB at a time, never whole), which the caller removes."""
        async with self._db.reading() as conn:
            if (await conn.execute(select(dossiers.c.id).where(dossiers.c.id == id, visible(scope)))).first() is None:
                return None
            return (await read_originals(conn, [id])).get(id)

    async def add_notice(self, id: str, kind: str, xml: bytes, *, actor: str = "server") -> bool:
        """Store a later notice (KET_QUA). False when one of that kind is already stored: a
        signed notice is never replaced. LookupError when there is no such dossier."""
        if kind not in NOTICE_SLUGS:
            raise ValueError(f"unknown notice kind {kind!r}")
        row = {"dossier_id": id, "kind": kind, "xml": xml, "created_at": datetime.now(UTC)}
        stored = notice_stored(id, kind, xml, actor)
        try:
            async with self._db.writing() as conn:
                await conn.execute(notices.insert(), row)
                await enqueue_notice_deliveries(conn, id, kind, row["created_at"])
                await audit_append(conn, [stored])
            return True
        except IntegrityError:
            async with self._db.reading() as conn:
                exists = (await conn.execute(select(dossiers.c.id).where(dossiers.c.id == id))).first()
            if exists is None:
                raise LookupError(f"no dossier {id!r}") from None
            return False

    async def evidence_parts(self, id: str, scope: Scope) -> EvidenceParts | None:
        """Everything an evidence bundle holds, read from one snapshot (so that the audit entries
        and the notices agree); None when the dossier is not visible in `scope`."""
        async with self._db.reading(snapshot=True) as conn:
            row = (
                await conn.execute(select(*DOSSIER_COLUMNS).where(dossiers.c.id == id, visible(scope)))
            ).first()
            if row is None:
                return None
            stored = (
                await conn.execute(
                    select(notices.c.kind, notices.c.xml)
                    .where(notices.c.dossier_id == id)
                    .order_by(notices.c.created_at, notices.c.kind)
                )
            ).all()
            original = await read_original_bytes(conn, id)
            if original is None:
                raise LookupError(f"dossier {id} has no original")
            revocation = await read_revocation_data(conn, referenced_data(row.signers))
            head_seq, head_hash = await head_of(conn)
            entries = [
                Entry.from_row(r)
                for r in await conn.execute(
                    select(audit_log)
                    .where(audit_log.c.dossier_id == id, audit_log.c.seq <= head_seq)
                    .order_by(audit_log.c.seq)
                )
            ]
            following = {e.seq + 1 for e in entries} - {e.seq for e in entries}
            links = []
            if following:
                links = (
                    await conn.execute(
                        select(audit_log.c.seq, audit_log.c.prev_hash, audit_log.c.hash)
                        .where(audit_log.c.seq.in_(following), audit_log.c.seq <= head_seq)
                        .order_by(audit_log.c.seq)
                    )
                ).all()
        return EvidenceParts(
            dossier=dossier_of(row, [r.kind for r in stored]),
            original=original,
            notices={r.kind: r.xml for r in stored},
            audit=excerpt_records(entries, links, head_seq, head_hash),
            revocation=revocation,
        )


def _encode_cursor(last: Dossier) -> str:
    raw = json.dumps([last.received_at.isoformat(), last.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, id = json.loads(raw)
        after = datetime.fromisoformat(when)
        if after.tzinfo is None or not isinstance(id, str):
            raise ValueError
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc
    return after, id

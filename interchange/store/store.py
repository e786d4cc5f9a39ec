"""The one data-access layer: dossiers, their original bytes and notices, API keys.

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) past one machine; the same Core
statements serve both. The schema is migrated to head by Alembic when the store opens.

Receipts are written by a single writer task that gathers every `save_receipt` waiting at
that moment into one transaction (one SAVEPOINT per dossier) and commits once: with
durable commits an fsync per dossier would cap SQLite far below the target rate.

Every write that matters to an auditor (receipts, later notices, key events) appends its
entry to the hash-chained audit log in its own transaction (`interchange.audit.log`); a
batch's entries go in together, last, so the chain head stays locked only briefly.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import and_, event, exists, false, func, or_, select, text, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from interchange.audit import log as audit
from interchange.delivery import store as delivery_rows  # deliveries are made with their notices
from interchange.identifiers import mst_valid

from . import persons
from .records import (
    ACCEPTED,
    DONE,
    FAILED,
    KET_QUA,
    NOTICE_KINDS,
    QUEUED,
    RECEIVED,
    REFUSED,
    REJECTED,
    ROLES,
    RUNNING,
    TIEP_NHAN,
    TU_CHOI,
    ApiKey,
    Dossier,
    NewDossier,
    Overdue,
    SaveResult,
    Scope,
    Settlement,
    Unit,
    WorkItem,
)
from .tables import (
    api_keys,
    audit_head,
    audit_log,
    counters,
    dossiers,
    notices,
    originals,
    units,
    work_items,
)

log = logging.getLogger(__name__)

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")
VN_TIME = ZoneInfo("Asia/Ho_Chi_Minh")  # dossier numbers count per year of Vietnamese time
MIGRATION_LOCK = 0x696E_7463_0001  # pg_advisory_xact_lock key: one process migrates at a time
BATCH_SIZE = 64
MAX_PAGE = 500
SETTLE_TRIES = 5  # decisions made again because the unit changed meanwhile, at most
AUDIT_PAGE = 5000  # entries read at a time when the whole log is checked
KEY_CACHE_SECONDS = 2.0  # a revocation reaches every process within this time
SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=10000",  # first: switching to WAL takes a lock that another opener may hold
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
)
_TOKEN = re.compile(r"ik_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_DOSSIER_COLUMNS = [c for c in dossiers.c if c.name not in ("replay_key", "idempotency_scope")]


@dataclass
class EvidenceParts:
    dossier: Dossier
    original: bytes
    notices: dict[str, bytes]  # kind -> signed XML, in the order they were stored
    audit: list[dict]  # audit.excerpt_records


@dataclass(eq=False)
class _Job:
    new: NewDossier
    make_notice: Callable[[Dossier], Awaitable[bytes]]
    future: asyncio.Future


class Store:
    def __init__(self, engine: AsyncEngine):
        self._engine = engine
        pg = engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if pg else sqlite.insert  # both have ON CONFLICT ... RETURNING
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._writer: asyncio.Task | None = None
        self._keys: dict[str, tuple[float, ApiKey, bytes]] = {}
        # SQLite has one writer at a time. Writers of this process take turns here: left to
        # SQLite's busy handler they sleep and poll (up to 100 ms a try), which left the work queue
        # idle most of the time (26 results/s) and the receipts' p99 at 1.5 s while it ran.
        self._write_turn = None if pg else asyncio.Lock()

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    async def open(cls, url: str, *, connect_args: dict | None = None) -> Store:
        """Connect (see `make_engine`) and migrate to head."""
        engine = make_engine(url, connect_args)
        store = cls(engine)
        try:
            await store._migrate()
        except BaseException:
            await engine.dispose()
            raise
        store._writer = asyncio.get_running_loop().create_task(store._write_loop(), name="store-writer")
        return store

    async def _migrate(self) -> None:
        async with self.writing() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            await conn.run_sync(_upgrade_to_head)

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed when the block ends (rolled back on an exception).
        On SQLite it takes the write lock up front (BEGIN IMMEDIATE), after this process's
        other writers."""
        async with self._write_turn or nullcontext():
            async with self._engine.connect() as conn:
                await conn.execution_options(sqlite_immediate=True)
                async with conn.begin():
                    yield conn

    async def close(self) -> None:
        """Finish the receipts already queued, then release the connections."""
        writer, self._writer = self._writer, None  # refuse new receipts from now on
        if writer is not None:
            self._queue.put_nowait(None)
            await writer
        await self._engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    # -- receipts ------------------------------------------------------------------------

    async def save_receipt(
        self, new: NewDossier, make_notice: Callable[[Dossier], Awaitable[bytes]]
    ) -> SaveResult:
        """Store a received or refused dossier with its receipt notice; return after the commit.

        `make_notice` gets the dossier as stored (with its number) and returns the signed
        notice bytes; it runs inside the transaction, so a notice exists for every dossier.
        The notices of one batch are made concurrently (the server signs them in its worker
        processes), so signing never holds up the event loop.
        An exact resend of a dossier that was not refused, or a resend with a known
        Idempotency-Key, stores nothing and returns the earlier dossier and notice.
        """
        _check_new(new)
        if self._writer is None:
            raise RuntimeError("store is closed")
        job = _Job(new, make_notice, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def _write_loop(self) -> None:
        stopping = False
        batch: list[_Job | None] = []
        try:
            while not stopping:
                job = await self._queue.get()
                if job is None:
                    break
                batch = [job]
                while len(batch) < BATCH_SIZE and not self._queue.empty():
                    job = self._queue.get_nowait()
                    if job is None:
                        stopping = True
                        break
                    batch.append(job)
                await self._write_batch(batch)
                batch = []
        finally:  # cancelled (the loop is going away): no caller may wait for ever
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            for job in batch:
                if job is not None and not job.future.done():
                    job.future.set_exception(RuntimeError("store closed before the dossier was stored"))

    async def _write_batch(self, batch: list[_Job]) -> None:
        jobs = [job for job in batch if not job.future.done()]  # skip callers gone before anything was stored
        try:
            async with self.writing() as conn:
                try:
                    async with conn.begin_nested():
                        results = await self._save_together(conn, jobs)
                        await audit.append(conn, _receipt_events(jobs, results))
                except Exception as exc:
                    # A database error in the batch: on PostgreSQL most likely another process
                    # stored the same dossier or key first. Redo the batch one by one, each
                    # in its own savepoint, so that an error reaches only its own caller.
                    log.info(
                        "store: a batch of %d failed (%s); saving one by one",
                        len(jobs),
                        type(exc).__name__,
                    )
                    results = [await self._save_alone(conn, job) for job in jobs]
                    # Logged after every savepoint: the chain head is locked last, as on the fast path.
                    await audit.append(conn, _receipt_events(jobs, results))
        except Exception as exc:  # begin or commit failed: nothing of this batch is stored
            results = [exc] * len(jobs)
        for job, outcome in zip(jobs, results, strict=True):
            if job.future.done():
                continue
            if isinstance(outcome, Exception):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    async def _save_together(self, conn: AsyncConnection, jobs: list[_Job]) -> list[SaveResult | Exception]:
        """The fast path: a few statements for the whole batch instead of several per dossier."""
        by_replay, by_scope = await self._stored(
            conn, {_replay_key(j.new) for j in jobs}, {_idempotency_scope(j.new) for j in jobs}
        )
        last: dict[tuple[str, int], int] = {}  # (office, year) -> last number given
        at_start: dict[tuple[str, int], int] = {}
        results: list[SaveResult | Exception] = []
        stored: list[tuple[NewDossier, SaveResult]] = []
        repeats: list[tuple[int, SaveResult, str]] = []  # results that copy an earlier one of this batch
        for job in jobs:
            new = job.new
            earlier = _earlier_of(new, by_replay, by_scope)
            if earlier is not None:
                results.append(SaveResult(replace(earlier[0].dossier), earlier[0].notice, earlier[1]))
                repeats.append((len(results) - 1, earlier[0], earlier[1]))
                continue
            so_ho_so = None
            if new.state == RECEIVED:
                group = (new.office_code, new.received_at.astimezone(VN_TIME).year)
                if group not in last:
                    last[group] = at_start[group] = await self._bump_counter(conn, *group, 0)
                last[group] += 1
                so_ho_so = _so_ho_so(last[group], *group)
            result = SaveResult(_stored_dossier(new, so_ho_so), b"", "stored")
            results.append(result)
            stored.append((new, result))
            _remember(new, result, by_replay, by_scope)
        made = await asyncio.gather(
            *(
                job.make_notice(result.dossier)
                for job, (_, result) in zip(_fresh(jobs, stored), stored, strict=True)
            ),
            return_exceptions=True,
        )
        if any(isinstance(m, BaseException) for m in made):
            # Numbers were handed out in order: redo the batch one by one, so that the failing
            # dossier's savepoint gives its number back and only its caller sees the error.
            raise _NoticeFailed(next(m for m in made if isinstance(m, BaseException)))
        for (_, result), xml in zip(stored, made, strict=True):
            result.notice = xml
        for index, earlier, outcome in repeats:
            results[index] = SaveResult(replace(earlier.dossier), earlier.notice, outcome)
        if stored:
            await conn.execute(dossiers.insert(), [_dossier_row(new, r.dossier) for new, r in stored])
            await conn.execute(
                originals.insert(), [{"dossier_id": new.id, "content": new.original} for new, _ in stored]
            )
            await conn.execute(notices.insert(), [_notice_row(r) for _, r in stored])
            await delivery_rows.enqueue_receipt_deliveries(conn, [r.dossier for _, r in stored])
            work = [row for new, r in stored for row in _work_rows(new, r.dossier)]
            if work:
                await conn.execute(work_items.insert(), work)
        for (office, year), number in last.items():
            if number != at_start[(office, year)]:
                await conn.execute(
                    update(counters)
                    .where(counters.c.office == office, counters.c.year == year)
                    .values(last_number=number)
                )
        return results

    async def _save_alone(self, conn: AsyncConnection, job: _Job) -> SaveResult | Exception:
        """The slow path: one dossier in its own savepoint."""
        new = job.new
        try:
            try:
                async with conn.begin_nested():
                    found = await self._repeat_stored(conn, new)
                    if found is not None:
                        return found
                    so_ho_so = None
                    if new.state == RECEIVED:
                        year = new.received_at.astimezone(VN_TIME).year
                        number = await self._bump_counter(conn, new.office_code, year, 1)
                        so_ho_so = _so_ho_so(number, new.office_code, year)
                    dossier = _stored_dossier(new, so_ho_so)
                    result = SaveResult(dossier, await job.make_notice(dossier), "stored")
                    await conn.execute(dossiers.insert(), _dossier_row(new, result.dossier))
                    await conn.execute(originals.insert(), {"dossier_id": new.id, "content": new.original})
                    await conn.execute(notices.insert(), _notice_row(result))
                    await delivery_rows.enqueue_receipt_deliveries(conn, [result.dossier])
                    if work := _work_rows(new, result.dossier):
                        await conn.execute(work_items.insert(), work)
                    return result
            except IntegrityError:
                # Another process stored the same dossier or key after our look: answer with that one.
                async with conn.begin_nested():
                    found = await self._repeat_stored(conn, new)
                if found is None:
                    raise
                return found
        except Exception as exc:
            return exc

    async def earlier_receipt(self, owner: str, sha256: bytes) -> SaveResult | None:
        """The receipt of the same bytes from the same owner, unless refused (what an exact
        resend replays)."""
        key = f"{owner}:{sha256.hex()}"
        async with self._engine.connect() as conn:
            by_replay, _ = await self._stored(conn, {key}, set())
        found = by_replay.get(key)
        return None if found is None else SaveResult(found.dossier, found.notice, "replay")

    async def _repeat_stored(self, conn: AsyncConnection, new: NewDossier) -> SaveResult | None:
        return _repeat_of(new, *await self._stored(conn, {_replay_key(new)}, {_idempotency_scope(new)}))

    async def _stored(
        self, conn: AsyncConnection, replay_keys: set[str | None], scopes: set[str | None]
    ) -> tuple[dict[str, SaveResult], dict[str, SaveResult]]:
        """Stored dossiers with these replay keys or idempotency scopes, with their receipt notices."""
        replay_keys.discard(None)
        scopes.discard(None)
        wanted = []
        if replay_keys:
            wanted.append(dossiers.c.replay_key.in_(replay_keys))
        if scopes:
            wanted.append(dossiers.c.idempotency_scope.in_(scopes))
        if not wanted:
            return {}, {}
        columns = (*_DOSSIER_COLUMNS, dossiers.c.replay_key, dossiers.c.idempotency_scope)
        rows = (await conn.execute(select(*columns).where(or_(*wanted)))).all()
        if not rows:
            return {}, {}
        stored = await conn.execute(
            select(notices.c.dossier_id, notices.c.kind, notices.c.xml)
            .where(notices.c.dossier_id.in_([r.id for r in rows]))
            .order_by(notices.c.created_at, notices.c.kind)
        )
        kinds: dict[str, list[str]] = {}
        receipts: dict[str, bytes] = {}
        for dossier_id, kind, xml in stored:
            kinds.setdefault(dossier_id, []).append(kind)
            if kind in (TIEP_NHAN, TU_CHOI):
                receipts[dossier_id] = xml
        by_replay: dict[str, SaveResult] = {}
        by_scope: dict[str, SaveResult] = {}
        for row in rows:
            result = SaveResult(_dossier(row, kinds.get(row.id, [])), receipts.get(row.id, b""), "stored")
            if row.replay_key is not None:
                by_replay[row.replay_key] = result
            if row.idempotency_scope is not None:
                by_scope[row.idempotency_scope] = result
        return by_replay, by_scope

    async def _bump_counter(self, conn: AsyncConnection, office: str, year: int, step: int) -> int:
        """Add `step` (0 or 1) to the counter of (office, year), creating it, and return its value.

        One statement, atomic on both backends. The counter stays locked until commit (a row
        lock on PostgreSQL; on SQLite the writer holds the database lock), and a rolled-back
        savepoint gives the number back: numbers have no gaps.
        """
        stmt = self._insert(counters).values(office=office, year=year, last_number=step)
        stmt = stmt.on_conflict_do_update(
            index_elements=[counters.c.office, counters.c.year],
            set_={"last_number": counters.c.last_number + step},
        ).returning(counters.c.last_number)
        return (await conn.execute(stmt)).scalar_one()

    # -- reading -------------------------------------------------------------------------

    async def get_dossier(self, id: str, scope: Scope) -> Dossier | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(*_DOSSIER_COLUMNS).where(dossiers.c.id == id, _visible(scope)))
            ).first()
            if row is None:
                return None
            kinds = await _notice_kinds(conn, [id])
        return _dossier(row, kinds.get(id, []))

    async def list_dossiers(
        self,
        scope: Scope,
        *,
        state: str | None = None,
        procedure: str | None = None,
        period: str | None = None,
        received_from: datetime | None = None,
        received_to: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Dossier], str | None]:
        """Newest first. `received_from` is inclusive, `received_to` exclusive. Pass the cursor
        returned with one page to get the next; None means there is no next page.
        Raises ValueError for a cursor this store did not make."""
        limit = max(1, min(int(limit), MAX_PAGE))
        query = select(*_DOSSIER_COLUMNS).where(_visible(scope))
        if state is not None:
            query = query.where(dossiers.c.state == state)
        if procedure is not None:
            query = query.where(dossiers.c.procedure == procedure)
        if period is not None:
            query = query.where(dossiers.c.period == period)
        if received_from is not None:
            query = query.where(dossiers.c.received_at >= received_from)
        if received_to is not None:
            query = query.where(dossiers.c.received_at < received_to)
        if cursor is not None:
            after_time, after_id = _decode_cursor(cursor)
            query = query.where(
                or_(
                    dossiers.c.received_at < after_time,
                    and_(dossiers.c.received_at == after_time, dossiers.c.id < after_id),
                )
            )
        query = query.order_by(dossiers.c.received_at.desc(), dossiers.c.id.desc()).limit(limit + 1)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            kinds = await _notice_kinds(conn, [r.id for r in rows]) if rows else {}
        page = [_dossier(r, kinds.get(r.id, [])) for r in rows]
        return page, (_encode_cursor(page[-1]) if more else None)

    async def get_notice(self, id: str, kind: str, scope: Scope) -> bytes | None:
        query = (
            select(notices.c.xml)
            .join(dossiers, dossiers.c.id == notices.c.dossier_id)
            .where(notices.c.dossier_id == id, notices.c.kind == kind, _visible(scope))
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def get_original(self, id: str, scope: Scope) -> bytes | None:
        query = (
            select(originals.c.content)
            .join(dossiers, dossiers.c.id == originals.c.dossier_id)
            .where(originals.c.dossier_id == id, _visible(scope))
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def add_notice(self, id: str, kind: str, xml: bytes, *, actor: str = "server") -> bool:
        """Store a later notice (KET_QUA). False when one of that kind is already stored: a
        signed notice is never replaced. LookupError when there is no such dossier."""
        if kind not in NOTICE_KINDS:
            raise ValueError(f"unknown notice kind {kind!r}")
        row = {"dossier_id": id, "kind": kind, "xml": xml, "created_at": datetime.now(UTC)}
        stored = _notice_event(id, kind, xml, actor)
        try:
            async with self.writing() as conn:
                await conn.execute(notices.insert(), row)
                await delivery_rows.enqueue_notice_deliveries(conn, id, kind, row["created_at"])
                await audit.append(conn, [stored])
            return True
        except IntegrityError:
            async with self._engine.connect() as conn:
                exists = (await conn.execute(select(dossiers.c.id).where(dossiers.c.id == id))).first()
            if exists is None:
                raise LookupError(f"no dossier {id!r}") from None
            return False

    # -- results -------------------------------------------------------------------------

    async def settle(
        self,
        id: str,
        decide: Callable[[Dossier, Unit | None], Awaitable[Settlement]],
        *,
        now: datetime,
        actor: str = "server",
        work: WorkItem | None = None,
    ) -> Settlement | None:
        """Give a received dossier its result, once. `work`, the claimed item doing this, is
        marked done in the same transaction (one commit fewer per result).

        `decide` gets the dossier and its unit's registration as they are and returns the
        settlement with the signed KET_QUA. It runs outside any transaction (signing waits for
        a worker process, and a SQLite write lock held meanwhile would hold up the receipts);
        the unit is read again under lock before writing, and when it changed in between,
        `decide` runs again. The notice, the dossier's new state, the unit's row and their
        audit entries are committed together. None, and nothing changed, when the dossier has
        its KET_QUA already: work run again after a crash (or by a second process whose lease
        had run out) has the same outcome. LookupError when the dossier is not a received one.
        """
        for _ in range(SETTLE_TRIES):
            async with self._engine.connect() as conn:
                dossier, unit = await self._settle_inputs(conn, id, lock=False)
            if dossier is None:
                return None
            settlement = await decide(dossier, unit)
            async with self.writing() as conn:
                # Locking the dossier first makes a second settler wait here, then find the KET_QUA.
                dossier, current = await self._settle_inputs(conn, id, lock=True)
                if dossier is None:
                    return None
                if current != unit:
                    continue  # another registration of the unit came first: decide again
                await self._write_settlement(conn, dossier, unit, settlement, now, actor)
                if work is not None:
                    await conn.execute(
                        update(work_items)
                        .where(work_items.c.id == work.id, work_items.c.state == RUNNING,
                               work_items.c.claimed_by == work.claimed_by)
                        .values(state=DONE, done_at=now, claimed_until=None)
                    )
                return settlement
        raise RuntimeError(f"dossier {id}: its unit kept changing while its result was decided")

    async def _settle_inputs(
        self, conn: AsyncConnection, id: str, *, lock: bool
    ) -> tuple[Dossier | None, Unit | None]:
        """The dossier and its unit (locked until commit with `lock`); no dossier when it has
        its KET_QUA already."""
        query = select(*_DOSSIER_COLUMNS).where(dossiers.c.id == id)
        row = (await conn.execute(query.with_for_update() if lock else query)).first()
        if row is None:
            raise LookupError(f"no dossier {id!r}")
        kinds = (await _notice_kinds(conn, [id])).get(id, [])
        if KET_QUA in kinds:
            return None, None
        if row.state != RECEIVED:
            raise LookupError(f"dossier {id!r} is {row.state}, not {RECEIVED}")
        unit = None
        if row.unit_mst:
            query = select(units).where(units.c.mst == row.unit_mst)
            found = (await conn.execute(query.with_for_update() if lock else query)).first()
            unit = None if found is None else _unit(found)
        return _dossier(row, kinds), unit

    async def _write_settlement(
        self,
        conn: AsyncConnection,
        dossier: Dossier,
        unit: Unit | None,
        settlement: Settlement,
        now: datetime,
        actor: str,
    ) -> None:
        id = dossier.id
        await conn.execute(
            notices.insert(), {"dossier_id": id, "kind": KET_QUA, "xml": settlement.notice, "created_at": now}
        )
        values = {
            "state": settlement.state,
            "result_at": now,
            # the dossier reads as its KET_QUA does: the rule layer ran, with these errors and warnings
            "layers": {**dossier.layers, "rule": "passed" if settlement.state == ACCEPTED else "failed"},
            "problems": [*dossier.problems, *settlement.problems],
        }
        if settlement.state == REJECTED:
            values["replay_key"] = None  # as after a refusal: the same bytes sent again are judged again
        if settlement.params is not None:
            values["params"] = settlement.params
        await conn.execute(update(dossiers).where(dossiers.c.id == id).values(**values))
        records_events = []
        if settlement.records is not None and settlement.state == ACCEPTED:  # a rejected dossier makes no records
            written = await persons.write_records(
                conn, dossier=dossier, extracted=settlement.records, params=settlement.params, now=now
            )
            records_events = written.audit_events(actor)
        events = [
            _notice_event(id, KET_QUA, settlement.notice, actor),
            audit.Event(
                audit.DOSSIER_SETTLED,
                actor,
                {
                    "state": settlement.state,
                    "result_at": now.astimezone(UTC).isoformat(),
                    "due_at": dossier.due_at.isoformat() if dossier.due_at else None,
                    "errors": sorted({p.get("code") for p in settlement.problems if p.get("code")}),
                },
                id,
            ),
            *records_events,
        ]
        if settlement.unit is not None:
            await self._write_unit(conn, settlement.unit)
            events.append(
                audit.Event(
                    audit.UNIT_CHANGED,
                    actor,
                    {**_unit_data(settlement.unit), "previous_state": unit.state if unit else None},
                    id,
                )
            )
        await delivery_rows.enqueue_deliveries(
            conn, dossier_id=id, owner=dossier.owner, unit_mst=dossier.unit_mst, kind=KET_QUA, now=now
        )  # after the unit's row: a registration's own result is mailed to the address it registers
        await audit.append(conn, events)

    async def _write_unit(self, conn: AsyncConnection, unit: Unit) -> None:
        row = {c.name: getattr(unit, c.name) for c in units.c}
        stmt = self._insert(units).values(row)
        stmt = stmt.on_conflict_do_update(
            index_elements=[units.c.mst], set_={k: v for k, v in row.items() if k != "mst"}
        )
        await conn.execute(stmt)

    # -- units ---------------------------------------------------------------------------

    async def get_unit(self, mst: str, scope: Scope) -> Unit | None:
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
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _unit(row)

    # -- persons and their records (logic in interchange.store.persons) ----------------------

    async def find_person(self, pid: str) -> persons.Person | None:
        """A person by personal ID or SI code."""
        return await persons.find_person(self._engine, pid)

    async def person_book_rows(self, pid: str, scope: Scope) -> persons.PersonRecords | None:
        """What the book of a person is made of, read from one snapshot, with the dossiers `scope`
        may see; None when the person is unknown or `scope` may see none of their records."""
        async with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                return await persons.read_person_records(conn, pid, None if scope.all else _visible(scope))

    # -- work queue ----------------------------------------------------------------------
    # Each server process claims due items in its own transactions (interchange.jobs). On
    # PostgreSQL, FOR UPDATE SKIP LOCKED lets concurrent claimers pass over each other's rows
    # instead of waiting; on SQLite the claim's BEGIN IMMEDIATE makes claimers take turns.

    async def enqueue_work(self, dossier_id: str, kind: str, due_at: datetime, *, now: datetime | None = None) -> bool:
        """Add a work item for a stored dossier; False when it has one of that kind already."""
        row = _work_row(dossier_id, kind, due_at, now or datetime.now(UTC))
        stmt = self._insert(work_items).values(row).on_conflict_do_nothing(
            index_elements=[work_items.c.dossier_id, work_items.c.kind]
        )
        async with self.writing() as conn:
            inserted = await conn.execute(stmt)
        return bool(inserted.rowcount)

    async def claim_work(
        self,
        worker: str,
        now: datetime,
        *,
        limit: int,
        lease: timedelta,
        kinds: Collection[str] | None = None,
    ) -> list[WorkItem]:
        """Claim up to `limit` items that may run at `now`, earliest due (most overdue) first:
        queued items past their `not_before`, and running items whose lease has run out (their
        process died or hangs). A claim counts an attempt and holds the item until now + lease."""
        claimable = or_(
            and_(work_items.c.state == QUEUED, work_items.c.not_before <= now),
            and_(work_items.c.state == RUNNING, work_items.c.claimed_until <= now),
        )
        if kinds is not None:
            claimable = and_(claimable, work_items.c.kind.in_(list(kinds)))
        pick = (
            select(work_items.c.id)
            .where(claimable)
            .order_by(work_items.c.due_at, work_items.c.created_at, work_items.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has no row locks (and needs none)
        )
        async with self.writing() as conn:
            ids = list((await conn.execute(pick)).scalars())
            if not ids:
                return []
            await conn.execute(
                update(work_items)
                .where(work_items.c.id.in_(ids))
                .values(
                    state=RUNNING,
                    claimed_by=worker,
                    claimed_until=now + lease,
                    attempts=work_items.c.attempts + 1,
                )
            )
            rows = (await conn.execute(select(work_items).where(work_items.c.id.in_(ids)))).all()
        return sorted((_work_item(r) for r in rows), key=lambda w: (w.due_at, w.created_at, w.id))

    async def complete_work(self, item_id: str, worker: str, now: datetime) -> bool:
        """Mark a claimed item done. False when `worker` no longer holds it (its lease ran out
        and another process claimed it: that one finishes it)."""
        return await self._release(item_id, worker, state=DONE, done_at=now, claimed_until=None)

    async def fail_work(
        self, item_id: str, worker: str, now: datetime, error: str, *, retry_at: datetime | None
    ) -> bool:
        """Record a failed attempt: queued again from `retry_at`, or failed for good when None."""
        if retry_at is None:
            return await self._release(
                item_id, worker, state=FAILED, done_at=now, claimed_until=None, last_error=error[:2000]
            )
        return await self._release(
            item_id, worker, state=QUEUED, not_before=retry_at, claimed_by=None, claimed_until=None,
            last_error=error[:2000],
        )  # fmt: skip

    async def _release(self, item_id: str, worker: str, **values) -> bool:
        async with self.writing() as conn:
            changed = await conn.execute(
                update(work_items)
                .where(
                    work_items.c.id == item_id,
                    work_items.c.state == RUNNING,
                    work_items.c.claimed_by == worker,
                )
                .values(**values)
            )
        return changed.rowcount == 1

    async def work_of(self, dossier_id: str) -> list[WorkItem]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(work_items)
                    .where(work_items.c.dossier_id == dossier_id)
                    .order_by(work_items.c.created_at, work_items.c.id)
                )
            ).all()
        return [_work_item(r) for r in rows]

    async def overdue_work(self, now: datetime) -> list[Overdue]:
        """Items not done whose due time has passed, by kind (failed ones included: their
        deadline was missed all the same)."""
        query = (
            select(work_items.c.kind, func.count(), func.min(work_items.c.due_at))
            .where(work_items.c.state.in_([QUEUED, RUNNING, FAILED]), work_items.c.due_at < now)
            .group_by(work_items.c.kind)
            .order_by(work_items.c.kind)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [Overdue(kind, count, oldest) for kind, count, oldest in rows]

    # -- API keys ------------------------------------------------------------------------

    async def create_api_key(
        self,
        role: str,
        *,
        mst: str | None = None,
        ivan: str | None = None,
        label: str = "",
        actor: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its token `ik_<key_id>_<secret>`; the token is shown once, never stored.
        `actor` (who asked, for the audit log) defaults to the user running this process."""
        _check_role(role, mst, ivan)
        async with self.writing() as conn:
            key, token = await _insert_key(conn, role, mst, ivan, label)
            await audit.append(
                conn, [audit.Event(audit.KEY_CREATED, actor or _operator(), _key_data(key))]
            )
        return key, token

    async def authenticate(self, token: str) -> ApiKey | None:
        """The key a bearer token stands for; None for a malformed, unknown, wrong or revoked one."""
        match = _TOKEN.fullmatch(token or "")
        if match is None:
            return None
        key_id, secret = match.groups()
        now = time.monotonic()
        cached = self._keys.get(key_id)
        if cached is None or cached[0] < now:
            async with self._engine.connect() as conn:
                row = (await conn.execute(select(api_keys).where(api_keys.c.key_id == key_id))).first()
            if row is None:  # the key id is not secret: answering this one faster leaks nothing
                return None
            cached = (now + KEY_CACHE_SECONDS, _api_key(row), row.secret_sha256)
            self._keys[key_id] = cached
        _, key, digest = cached
        if not hmac.compare_digest(digest, _secret_digest(secret)) or key.revoked_at is not None:
            return None
        return key

    async def revoke_api_key(self, key_id: str, *, actor: str | None = None) -> bool:
        """Revoke a key (a second revocation keeps the first time). False when there is no such key."""
        self._keys.pop(key_id, None)
        async with self.writing() as conn:
            revoked = await conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            if revoked.rowcount:
                await audit.append(
                    conn, [audit.Event(audit.KEY_REVOKED, actor or _operator(), {"key_id": key_id})]
                )
            found = (
                await conn.execute(select(api_keys.c.key_id).where(api_keys.c.key_id == key_id))
            ).first()
        return found is not None

    async def rotate_api_key(self, key_id: str, *, actor: str | None = None) -> tuple[ApiKey, str] | None:
        """Replace an active key by a new one with the same role, binding and label, and revoke
        the old one, in one transaction. None when there is no such active key."""
        self._keys.pop(key_id, None)
        async with self.writing() as conn:
            row = (
                await conn.execute(
                    select(api_keys).where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                )
            ).first()
            if row is None:
                return None
            key, token = await _insert_key(conn, row.role, row.mst, row.ivan, row.label)
            await conn.execute(
                update(api_keys).where(api_keys.c.key_id == key_id).values(revoked_at=key.created_at)
            )
            rotated = audit.Event(
                audit.KEY_ROTATED, actor or _operator(), {"revoked": key_id, **_key_data(key)}
            )
            await audit.append(conn, [rotated])
        return key, token

    async def list_api_keys(self) -> list[ApiKey]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id))
            ).all()
        return [_api_key(r) for r in rows]

    # -- audit log -----------------------------------------------------------------------
    # Appends happen inside the transactions above (receipts, notices, keys); see interchange.audit.log.

    async def append_audit(
        self, kind: str, data: dict, *, actor: str | None = None, dossier_id: str | None = None
    ) -> audit.Entry:
        """Record an admin action or a change of state that has no transaction of its own here."""
        async with self.writing() as conn:
            (entry,) = await audit.append(
                conn, [audit.Event(kind, actor or _operator(), data, dossier_id)]
            )
        return entry

    async def audit_head(self) -> tuple[int, str]:
        async with self._engine.connect() as conn:
            return await _audit_head(conn)

    async def audit_entries(
        self, *, after: int = 0, upto: int | None = None, limit: int = AUDIT_PAGE
    ) -> list[audit.Entry]:
        """Entries with after < seq <= upto, in seq order."""
        query = select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(limit)
        if upto is not None:
            query = query.where(audit_log.c.seq <= upto)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [audit.Entry.from_row(r) for r in rows]

    async def verify_audit(self) -> audit.ChainReport:
        """Recompute the whole chain (page by page) up to the head as it is now."""
        head_seq, head_hash = await self.audit_head()  # first: every entry up to it is committed
        checker = audit.ChainChecker()
        after = 0
        while True:
            page = await self.audit_entries(after=after, upto=head_seq)
            for entry in page:
                checker.add(entry)
            if len(page) < AUDIT_PAGE:
                break
            after = page[-1].seq
        return checker.finish(head_seq, head_hash)

    async def evidence_parts(self, id: str, scope: Scope) -> EvidenceParts | None:
        """Everything an evidence bundle holds, read from one snapshot (so that the audit entries
        and the notices agree); None when the dossier is not visible in `scope`."""
        async with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():  # on SQLite (WAL) a read transaction is a snapshot too
                row = (
                    await conn.execute(select(*_DOSSIER_COLUMNS).where(dossiers.c.id == id, _visible(scope)))
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
                original = (
                    await conn.execute(select(originals.c.content).where(originals.c.dossier_id == id))
                ).scalar_one()
                head_seq, head_hash = await _audit_head(conn)
                entries = [
                    audit.Entry.from_row(r)
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
            dossier=_dossier(row, [r.kind for r in stored]),
            original=original,
            notices={r.kind: r.xml for r in stored},
            audit=audit.excerpt_records(entries, links, head_seq, head_hash),
        )


# -- helpers -------------------------------------------------------------------------------


async def _audit_head(conn: AsyncConnection) -> tuple[int, str]:
    row = (
        await conn.execute(
            select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == audit.HEAD_ID)
        )
    ).one()
    return row.seq, row.hash


def make_engine(url: str, connect_args: dict | None = None) -> AsyncEngine:
    """An engine set up for the store.

    SQLite: the folder is created and every connection gets the PRAGMAs. PostgreSQL: the URL
    may carry `?search_path=<schema>`; asyncpg has no such option, so it is taken off the URL
    and sent as a server setting (the tests give each test a schema of its own this way).
    """
    u = make_url(url)
    connect_args = dict(connect_args or {})
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    elif backend == "postgresql":
        if "search_path" in u.query:
            settings = dict(connect_args.get("server_settings") or {})
            settings["search_path"] = u.query["search_path"]
            connect_args["server_settings"] = settings
            u = u.difference_update_query(["search_path"])
    else:
        raise ValueError(f"store: unsupported database {backend!r} (sqlite or postgresql)")
    engine = create_async_engine(u, connect_args=connect_args)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # The driver's own transaction handling breaks SAVEPOINTs and cannot BEGIN IMMEDIATE:
    # switch it off and let _sqlite_on_begin say BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        for attempt in range(50):
            try:
                cursor.execute(pragma)
                break
            except sqlite3.OperationalError as exc:
                # Switching a new file to WAL needs it to itself: two processes opening it at once can
                # get "database is locked" at once, without the busy handler. One wins soon.
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.05)
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # Writers take the write lock up front: a deferred transaction that reads and then writes
    # can fail with SQLITE_BUSY when another connection wrote in between (busy_timeout cannot help).
    conn.exec_driver_sql(
        "BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "BEGIN"
    )


def _upgrade_to_head(connection: Connection) -> None:
    config = AlembicConfig(str(ALEMBIC_INI))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _check_new(new: NewDossier) -> None:
    if new.state not in (RECEIVED, REFUSED):
        raise ValueError(f"dossier state must be {RECEIVED!r} or {REFUSED!r}, not {new.state!r}")
    if len(new.sha256) != 32:
        raise ValueError("sha256 must be the 32-byte digest")
    for name in ("received_at", "due_at"):
        value = getattr(new, name)
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be tz-aware")


def _check_role(role: str, mst: str | None, ivan: str | None) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if role == "submitter" and (not mst or ivan):
        raise ValueError("a submitter key is bound to one MST (and no MaIVAN)")
    if role == "ivan" and (not ivan or mst):
        raise ValueError("an ivan key is bound to one MaIVAN (and no MST)")
    if role in ("auditor", "admin") and (mst or ivan):
        raise ValueError(f"an {role} key is bound to no MST or MaIVAN")
    if mst and not mst_valid(mst):
        raise ValueError(f"{mst!r} is not a tax code: 10 digits whose last is the check digit, optionally -NNN")
    if ivan and not re.fullmatch(r"[0-9]{5}", ivan):
        raise ValueError(f"{ivan!r} is not a MaIVAN: 5 digits")


def _replay_key(new: NewDossier) -> str | None:
    return None if new.state == REFUSED else f"{new.owner}:{new.sha256.hex()}"


def _idempotency_scope(new: NewDossier) -> str | None:
    return None if new.idempotency_key is None else f"{new.owner}:{new.idempotency_key}"


def _earlier_of(
    new: NewDossier, by_replay: dict[str, SaveResult], by_scope: dict[str, SaveResult]
) -> tuple[SaveResult, str] | None:
    """The stored dossier `new` repeats, and how: same bytes from the same owner (unless
    refused) is a "replay"; the same Idempotency-Key is a replay, or a "conflict" when the
    bytes differ."""
    earlier = by_replay.get(_replay_key(new) or "")
    if earlier is not None:
        return earlier, "replay"
    earlier = by_scope.get(_idempotency_scope(new) or "")
    if earlier is None:
        return None
    return earlier, ("replay" if earlier.dossier.sha256 == new.sha256 else "conflict")


def _repeat_of(
    new: NewDossier, by_replay: dict[str, SaveResult], by_scope: dict[str, SaveResult]
) -> SaveResult | None:
    found = _earlier_of(new, by_replay, by_scope)
    if found is None:
        return None
    return SaveResult(replace(found[0].dossier), found[0].notice, found[1])


def _remember(
    new: NewDossier, result: SaveResult, by_replay: dict[str, SaveResult], by_scope: dict[str, SaveResult]
) -> None:
    if (key := _replay_key(new)) is not None:
        by_replay[key] = result
    if (scope := _idempotency_scope(new)) is not None:
        by_scope[scope] = result


def _so_ho_so(number: int, office: str, year: int) -> str:
    return f"{number:05d}/{year}/{office}"


class _NoticeFailed(Exception):
    """Making one notice of a batch failed: the batch is redone one dossier at a time."""


def _fresh(jobs: list[_Job], stored: list[tuple[NewDossier, SaveResult]]) -> list[_Job]:
    """The jobs whose dossiers are stored now, in the order of `stored`."""
    by_id = {job.new.id: job for job in jobs}
    return [by_id[new.id] for new, _ in stored]


def _stored_dossier(new: NewDossier, so_ho_so: str | None) -> Dossier:
    return Dossier(
        id=new.id,
        so_ho_so=so_ho_so,
        state=new.state,
        owner=new.owner,
        submitter_key_id=new.submitter_key_id,
        sha256=new.sha256,
        size=len(new.original),
        received_at=new.received_at.astimezone(UTC),
        unit_mst=new.unit_mst,
        unit_code=new.unit_code,
        unit_name=new.unit_name,
        ivan_code=new.ivan_code,
        procedure=new.procedure,
        period=new.period,
        due_at=None if new.due_at is None else new.due_at.astimezone(UTC),
        idempotency_key=new.idempotency_key,
        problems=new.problems,
        layers=new.layers,
        signers=new.signers,
        facts=new.facts,
        notice_kinds=[TIEP_NHAN if new.state == RECEIVED else TU_CHOI],
    )


def _dossier_row(new: NewDossier, dossier: Dossier) -> dict:
    row = {c.name: getattr(dossier, c.name) for c in _DOSSIER_COLUMNS}
    row.update(replay_key=_replay_key(new), idempotency_scope=_idempotency_scope(new))
    return row


def _work_rows(new: NewDossier, dossier: Dossier) -> list[dict]:
    """The work items a received dossier brings, stored in its receipt's transaction."""
    if dossier.state != RECEIVED:
        return []
    default_due = dossier.due_at or dossier.received_at
    return [_work_row(dossier.id, *(w if isinstance(w, tuple) else (w, default_due)), dossier.received_at)
            for w in new.work]


def _work_row(dossier_id: str, kind: str, due_at: datetime, now: datetime) -> dict:
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


def _notice_row(result: SaveResult) -> dict:
    d = result.dossier
    return {"dossier_id": d.id, "kind": d.notice_kinds[0], "xml": result.notice, "created_at": d.received_at}


def _receipt_events(jobs: list[_Job], results: list[SaveResult | Exception]) -> list[audit.Event]:
    """One audit entry per answered receipt: stored (received or refused), replayed or conflicting."""
    events = []
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, Exception):
            continue
        new, d = job.new, result.dossier
        data = {
            "sha256": new.sha256.hex(),
            "size": len(new.original),
            "notice": {
                "kind": d.notice_kinds[0] if d.notice_kinds else None,
                "sha256": hashlib.sha256(result.notice).hexdigest(),
            },
            "idempotency_key": new.idempotency_key,
        }
        if result.outcome == "stored":
            kind = audit.DOSSIER_RECEIVED if d.state == RECEIVED else audit.DOSSIER_REFUSED
            data.update(
                state=d.state,
                so_ho_so=d.so_ho_so,
                owner=d.owner,
                unit_mst=d.unit_mst,
                ivan_code=d.ivan_code,
                procedure=d.procedure,
                period=d.period,
                received_at=d.received_at.isoformat(),
                due_at=d.due_at.isoformat() if d.due_at else None,
                errors=sorted({p.get("code") for p in d.problems if p.get("code")}),
            )
        else:
            kind = audit.DOSSIER_REPLAYED if result.outcome == "replay" else audit.DOSSIER_CONFLICT
        events.append(audit.Event(kind, f"key:{new.submitter_key_id}", data, d.id))
    return events


def _notice_event(id: str, kind: str, xml: bytes, actor: str) -> audit.Event:
    return audit.Event(
        audit.NOTICE_STORED,
        actor,
        {"kind": kind, "sha256": hashlib.sha256(xml).hexdigest(), "size": len(xml)},
        id,
    )


def _unit(row) -> Unit:
    return Unit(**{c.name: getattr(row, c.name) for c in units.c})


def _unit_data(unit: Unit) -> dict:
    data = {c.name: getattr(unit, c.name) for c in units.c if c.name != "updated_at"}
    return {**data, "updated_at": unit.updated_at.astimezone(UTC).isoformat()}


def _work_item(row) -> WorkItem:
    return WorkItem(**{c.name: getattr(row, c.name) for c in work_items.c})


def _key_data(key: ApiKey) -> dict:
    return {"key_id": key.key_id, "role": key.role, "mst": key.mst, "ivan": key.ivan, "label": key.label}


def _operator() -> str:
    """Who runs this process (the actor of key events made from the command line)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"os:{user}@{socket.gethostname()}"


async def _insert_key(
    conn: AsyncConnection, role: str, mst: str | None, ivan: str | None, label: str
) -> tuple[ApiKey, str]:
    """Insert a new key; return it and its token `ik_<key_id>_<secret>` (the secret is not stored)."""
    key = ApiKey(
        key_id=secrets.token_hex(6), role=role, mst=mst, ivan=ivan, label=label,
        created_at=datetime.now(UTC), revoked_at=None,
    )
    secret = secrets.token_urlsafe(32)
    row = {c: getattr(key, c) for c in ("key_id", "role", "mst", "ivan", "label", "created_at")}
    await conn.execute(api_keys.insert(), {**row, "secret_sha256": _secret_digest(secret)})
    return key, f"ik_{key.key_id}_{secret}"


def _secret_digest(secret: str) -> bytes:
    # The secret is 256 random bits, not a password: no one can guess it from its hash, so a
    # slow password hash (bcrypt, scrypt) would only add cost to every request.
    return hashlib.sha256(secret.encode("ascii")).digest()


def _visible(scope: Scope):
    if scope.all:
        return true()
    allowed = []
    if scope.mst:
        allowed += [dossiers.c.unit_mst == scope.mst, dossiers.c.owner == f"mst:{scope.mst}"]
    if scope.ivan:
        allowed += [dossiers.c.ivan_code == scope.ivan, dossiers.c.owner == f"ivan:{scope.ivan}"]
    return or_(*allowed) if allowed else false()


async def _notice_kinds(conn: AsyncConnection, ids: list[str]) -> dict[str, list[str]]:
    rows = await conn.execute(
        select(notices.c.dossier_id, notices.c.kind)
        .where(notices.c.dossier_id.in_(ids))
        .order_by(notices.c.created_at, notices.c.kind)
    )
    kinds: dict[str, list[str]] = {}
    for dossier_id, kind in rows:
        kinds.setdefault(dossier_id, []).append(kind)
    return kinds


def _dossier(row, kinds: list[str]) -> Dossier:
    return Dossier(**{c.name: getattr(row, c.name) for c in _DOSSIER_COLUMNS}, notice_kinds=kinds)


def _api_key(row) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        role=row.role,
        mst=row.mst,
        ivan=row.ivan,
        label=row.label,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
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

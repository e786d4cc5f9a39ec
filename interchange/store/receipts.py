"""Receiving: the group-commit writer that stores each received or refused dossier with its
original bytes, its signed receipt notice, its work items and deliveries, and the replay and
idempotency decisions made against what is stored.

One writer task gathers every `save` waiting at that moment into one transaction (one SAVEPOINT
per dossier) and commits once: with durable commits an fsync per dossier would cap SQLite far
below the target rate. A batch's audit entries go in together, last, so the chain head stays
locked only briefly.

On an SQLite file a batch's notices are signed before its write transaction begins (decided on a
read, decided again under the lock, written in one hop to the database's thread), so that the
result work can write while the notices are being signed; and the next batch is decided and
signed while this one is written (a pipeline of two), numbered after the numbers this one gives.
On PostgreSQL, where other processes number dossiers from the same counter row, they are signed
inside the transaction, the row locked, a batch at a time.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC

from sqlalchemy import bindparam, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from interchange.audit.chain import (
    DOSSIER_CONFLICT,
    DOSSIER_RECEIVED,
    DOSSIER_REFUSED,
    DOSSIER_REPLAYED,
    Event,
)
from interchange.clock import VN_TZ, utc_now
from interchange.kinds import SLUG_RECEIPT, SLUG_REFUSAL
from interchange.spool import Spooled
from interchange.trust.revocation import referenced_data

from .audit import append as audit_append
from .bulk import insert_many
from .db import Database, StoreUnavailable, describe, store_unavailable
from .deliveries import enqueue_receipt_deliveries
from .originals import claim_staged, insert_originals, stage_original, unstage_original
from .revdata import StoredNames, insert_revocation_data
from .rows import DOSSIER_COLUMNS, dossier_of, new_work_row
from .tables import counters, dossiers, notices, work_items
from .types import RECEIVED, REFUSED, Dossier, NewDossier, SaveResult

log = logging.getLogger(__name__)

BATCH_SIZE = 64

# Built once (store/db.py says why).
_COUNTER = select(counters.c.last_number).where(
    counters.c.office == bindparam("c_office"), counters.c.year == bindparam("c_year")
)
_STORED_COLUMNS = (*DOSSIER_COLUMNS, dossiers.c.replay_key, dossiers.c.idempotency_scope)
_BY_REPLAY = dossiers.c.replay_key.in_(bindparam("replay_keys", expanding=True))
_BY_SCOPE = dossiers.c.idempotency_scope.in_(bindparam("scopes", expanding=True))
_STORED = select(*_STORED_COLUMNS).where(or_(_BY_REPLAY, _BY_SCOPE))  # an empty list matches nothing
_NOTICES_OF = (
    select(notices.c.dossier_id, notices.c.kind, notices.c.xml)
    .where(notices.c.dossier_id.in_(bindparam("ids", expanding=True)))
    .order_by(notices.c.created_at, notices.c.kind)
)


@functools.cache
def _bump_statement(insert: Callable) -> object:
    """`_bump_counter`'s statement for the dialect's INSERT (`Database.insert`), built once."""
    stmt = insert(counters).values(office=bindparam("c_office"), year=bindparam("c_year"),
                                   last_number=bindparam("c_step"))  # fmt: skip
    return stmt.on_conflict_do_update(
        index_elements=[counters.c.office, counters.c.year],
        set_={"last_number": counters.c.last_number + bindparam("c_add")},
    ).returning(counters.c.last_number)


@dataclass(eq=False)
class _Job:
    new: NewDossier
    make_notice: Callable[[Dossier], Awaitable[bytes]]
    future: asyncio.Future


class Receipts:
    """The group-commit writer of receipts (start it in the event loop that serves it)."""

    def __init__(self, db: Database):
        self._db = db
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._writer: asyncio.Task | None = None
        self.stored_names = StoredNames()  # revocation data committed: the workers need not send it

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name="store-writer")

    @property
    def writer(self) -> asyncio.Task | None:
        """The writer task (None when closed): running for as long as the store is open."""
        return self._writer

    async def close(self) -> None:
        """Finish the receipts already queued; refuse new ones."""
        writer, self._writer = self._writer, None  # refuse new receipts from now on
        if writer is not None:
            self._queue.put_nowait(None)
            await writer

    async def save(
        self, new: NewDossier, make_notice: Callable[[Dossier], Awaitable[bytes]]
    ) -> SaveResult:
        """Store a received or refused dossier with its receipt notice; return after the commit.

        `make_notice` gets the dossier as stored (with its number) and returns the signed
        notice bytes; every stored dossier has the notice of the number it was stored with. It
        may be called again for the same dossier (signed first, then under the lock when the
        number it was given was taken meanwhile): it must have no other effect.
        The notices of one batch are made concurrently (the server signs them in its worker
        processes), so signing never holds up the event loop.
        An exact resend of a dossier that was not refused, or a resend with a known
        Idempotency-Key, stores nothing and returns the earlier dossier and notice.
        """
        _check_new(new)
        if self._writer is None:
            raise RuntimeError("store is closed")
        if self._writer.done():  # it must never end while open; if it did, no caller may wait for ever
            log.error("store: the receipt writer had stopped (%r); starting it again", _ended(self._writer))
            self.start()
        job = _Job(new, make_notice, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def _write_loop(self) -> None:
        stopping = False
        batch: list[_Job | None] = []
        writing: _Writing | None = None  # signed first: the batch before, its write still running
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
                if self._db.inline:
                    writing = await self._sign_while_writing(batch, writing)
                else:
                    await self.write_batch(batch)
                batch = []
            if writing is not None:
                await asyncio.shield(writing.task)
        finally:  # cancelled (the loop is going away): no caller may wait for ever
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            for job in batch:
                if job is not None and not job.future.done():
                    job.future.set_exception(RuntimeError("store closed before the dossier was stored"))

    async def _sign_while_writing(self, batch: list[_Job], writing: _Writing | None) -> _Writing:
        """The pipeline of an SQLite file: this batch is decided and signed while the batch before
        is being written (its numbers continued from those that batch gives), then written once
        that write is over. Returns this batch's write, running."""
        jobs = [job for job in batch if not job.future.done()]
        before = writing.plan.last if writing is not None and writing.plan is not None and not writing.task.done() else {}
        signed = await self._signed_first(jobs, before)
        if writing is not None:  # in order: the numbers are given in the order of the batches
            await asyncio.shield(writing.task)  # cancelled here, it still answers its own callers
        task = asyncio.get_running_loop().create_task(self.write_batch(jobs, signed), name="store-write")
        return _Writing(task, signed)

    async def write_batch(self, batch: list[_Job], signed: _Plan | None = None) -> None:
        """Store a batch and answer its callers (after the commit). `signed`: the batch decided and
        signed first (`_sign_while_writing`); without it the notices are signed under the lock."""
        # skip callers gone before anything was stored (one gone while its batch was signed first
        # changes the batch: it is then decided and signed again under the lock, without it)
        jobs = [job for job in batch if not job.future.done()]
        try:
            results = await self._write_signed_first(jobs, signed) if signed is not None else None
            if results is None:
                results = await self._write_signing_inside(jobs)
        except Exception as exc:  # begin or commit failed: nothing of this batch is stored
            # Every caller of the batch gets the error (a 503 for StoreUnavailable): none of them
            # may be answered with a notice for a dossier that was not committed.
            if store_unavailable(exc) and not isinstance(exc, StoreUnavailable):
                exc = StoreUnavailable(describe(exc))
            log.warning("store: a batch of %d receipts was not stored: %s", len(jobs), describe(exc))
            results = [exc] * len(jobs)
        else:  # committed
            self.stored_names.add(
                name for job, outcome in zip(jobs, results, strict=True)
                if isinstance(outcome, SaveResult) and outcome.outcome == "stored"
                for name in referenced_data(job.new.signers)
            )  # fmt: skip
        for job, outcome in zip(jobs, results, strict=True):
            if job.future.done():
                continue
            if isinstance(outcome, Exception):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    async def _signed_first(self, jobs: list[_Job], before: dict[tuple[str, int], int] | None = None) -> _Plan | None:
        """The batch decided on a read of what is stored (replays, the next numbers: after those
        in `before`, the numbers a batch being written gives) and its notices signed, before any
        write lock is taken; None when that failed (the batch is then signed under the lock).

        Signing waits for a worker process (10-20 ms under load); holding SQLite's one write lock
        meanwhile held up the result work's writes, and the batch before can be written meanwhile."""
        try:
            seen = await self._db.read_inline(lambda conn: self._decide(conn, jobs, bump=False, before=before))
            await self._sign(jobs, seen)
        except Exception as exc:  # noqa: BLE001  (the way that signs under the lock says what fails)
            if not isinstance(exc, _NoticeFailed):
                log.info("store: a batch of %d could not be signed first (%s)", len(jobs), type(exc).__name__)
            return None
        return seen

    async def _write_signed_first(self, jobs: list[_Job], seen: _Plan) -> list[SaveResult | Exception] | None:
        """The batch signed first, written in one hop to the database's thread after deciding it
        again under the lock. None, and nothing written, when the second decision differs (another
        process numbered or stored meanwhile, or the batch before did not give the numbers it
        was to give) or the write failed otherwise than by the database being unavailable: the
        batch then goes the way that signs under the lock (`_write_signing_inside`)."""

        async def write(conn: AsyncConnection) -> list[SaveResult | Exception]:
            plan = await self._decide(conn, jobs, bump=True)
            if plan.key() != seen.key():
                raise _Moved
            for (_, mine), (_, signed) in zip(plan.stored, seen.stored, strict=True):
                mine.notice = signed.notice
            plan.copy_repeats()
            await self._write(conn, plan)
            await audit_append(conn, _receipt_events(jobs, plan.results))
            return plan.results

        try:
            return await self._db.write_inline(write)
        except Exception as exc:
            if store_unavailable(exc):
                raise
            if not isinstance(exc, _Moved):
                log.info("store: a batch of %d signed first failed (%s); writing it again", len(jobs), type(exc).__name__)
            return None

    async def _write_signing_inside(self, jobs: list[_Job]) -> list[SaveResult | Exception]:
        """The batch in one write transaction that signs its notices inside (`_save_together`), or,
        when that fails, in another one dossier at a time, each in its own savepoint. (Not the
        batch in a savepoint, redone in the same transaction: two round trips more for every
        batch, for a failure that is rare.)"""
        try:
            async with self._db.writing() as conn:
                results = await self._save_together(conn, jobs)
                await audit_append(conn, _receipt_events(jobs, results))
            return results
        except Exception as exc:
            if store_unavailable(exc):  # the database is gone: one by one would fail the same way
                raise
            # A database error in the batch (nothing of it stored): on PostgreSQL most likely
            # another process stored the same dossier or key first. Redo the batch one by one,
            # each in its own savepoint, so that an error reaches only its own caller.
            log.info("store: a batch of %d failed (%s); saving one by one", len(jobs), type(exc).__name__)
        async with self._db.writing() as conn:
            results = [await self._save_alone(conn, job) for job in jobs]
            # Logged after every savepoint: the chain head is locked last, as on the fast path.
            await audit_append(conn, _receipt_events(jobs, results))
        return results

    async def _save_together(self, conn: AsyncConnection, jobs: list[_Job]) -> list[SaveResult | Exception]:
        """A few statements for the whole batch instead of several per dossier, its notices signed
        inside the transaction."""
        plan = await self._decide(conn, jobs, bump=True)
        await self._sign(jobs, plan)
        await self._write(conn, plan)
        return plan.results

    async def _decide(self, conn: AsyncConnection, jobs: list[_Job], *, bump: bool,
                      before: dict[tuple[str, int], int] | None = None) -> _Plan:
        """What the batch does against what is stored: which dossiers repeat an earlier one, the
        numbers of those received (the counters read; with `bump`, created where missing; those
        in `before` taken from there instead: the last numbers of a batch not committed yet)."""
        by_replay, by_scope = await self.find_stored(
            conn, {_replay_key(j.new) for j in jobs}, {_idempotency_scope(j.new) for j in jobs}
        )
        plan = _Plan()
        numbered: list[tuple[SaveResult, tuple[str, int]]] = []  # received: numbered once all are known
        for job in jobs:
            new = job.new
            earlier = _earlier_of(new, by_replay, by_scope)
            if earlier is not None:  # its number, when of this batch, is copied after signing (copy_repeats)
                plan.results.append(SaveResult(replace(earlier[0].dossier), earlier[0].notice, earlier[1]))
                plan.repeats.append((len(plan.results) - 1, earlier[0], earlier[1]))
                continue
            result = SaveResult(_stored_dossier(new, None), b"", "stored")
            if new.state == RECEIVED:
                numbered.append((result, (new.office_code, new.received_at.astimezone(VN_TZ).year)))
            plan.results.append(result)
            plan.stored.append((new, result))
            _remember(new, result, by_replay, by_scope)
        counts = Counter(group for _, group in numbered)
        for group, count in counts.items():
            if before and group in before:
                start = before[group]
            elif bump:  # the counter moved on by the whole batch in one statement
                start = await self._bump_counter(conn, *group, count) - count
            else:
                start = await self._counter(conn, *group)
            plan.last[group] = plan.at_start[group] = start
        for result, group in numbered:
            plan.last[group] += 1
            result.dossier = replace(result.dossier, so_ho_so=_so_ho_so(plan.last[group], *group))
        return plan

    async def _sign(self, jobs: list[_Job], plan: _Plan) -> None:
        """The receipt notices of the dossiers `plan` stores, made concurrently."""
        made = await asyncio.gather(
            *(
                job.make_notice(result.dossier)
                for job, (_, result) in zip(_fresh(jobs, plan.stored), plan.stored, strict=True)
            ),
            return_exceptions=True,
        )
        if any(isinstance(m, BaseException) for m in made):
            # Numbers were handed out in order: redo the batch one by one, so that the failing
            # dossier's savepoint gives its number back and only its caller sees the error.
            raise _NoticeFailed(next(m for m in made if isinstance(m, BaseException)))
        for (_, result), xml in zip(plan.stored, made, strict=True):
            result.notice = xml
        plan.copy_repeats()

    async def _write(self, conn: AsyncConnection, plan: _Plan) -> None:
        stored = plan.stored
        if stored:
            await insert_many(conn, dossiers, [_dossier_row(new, r.dossier) for new, r in stored])
            staged = await claim_staged(conn, [new.id for new, _ in stored if new.original_staged])
            await insert_originals(conn, [(new.id, new.original) for new, _ in stored if new.id not in staged])
            await insert_revocation_data(conn, self._db.insert, [new for new, _ in stored], self.stored_names, utc_now())
            await insert_many(conn, notices, [_notice_row(r) for _, r in stored])
            await enqueue_receipt_deliveries(conn, [r.dossier for _, r in stored])
            await insert_many(conn, work_items, [row for new, r in stored for row in _work_rows(new, r.dossier)])

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
                        year = new.received_at.astimezone(VN_TZ).year
                        number = await self._bump_counter(conn, new.office_code, year, 1)
                        so_ho_so = _so_ho_so(number, new.office_code, year)
                    dossier = _stored_dossier(new, so_ho_so)
                    result = SaveResult(dossier, await job.make_notice(dossier), "stored")
                    await conn.execute(dossiers.insert(), _dossier_row(new, result.dossier))
                    if not (new.original_staged and await claim_staged(conn, [new.id])):
                        await insert_originals(conn, [(new.id, new.original)])
                    await insert_revocation_data(conn, self._db.insert, [new], self.stored_names, utc_now())
                    await conn.execute(notices.insert(), _notice_row(result))
                    await enqueue_receipt_deliveries(conn, [result.dossier])
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

    async def stage_original(self, id: str, content: Spooled) -> None:
        """Write the large original of dossier `id` before its receipt is saved (in a transaction
        of its own, while the dossier is checked): `save` of a NewDossier with `original_staged`
        then only names it. A receipt that ends without storing `id` calls `unstage_original`;
        what a dead process staged is removed by a later staging (`originals.ORPHAN_AFTER`)."""
        now = utc_now()
        removed = await self._db.write_inline(lambda conn: stage_original(conn, id, content, now))
        if removed:
            log.info("store: removed %d staged originals whose dossiers were never stored", removed)

    async def unstage_original(self, id: str) -> None:
        """Remove the staged original of `id` unless dossier `id` was stored."""
        await self._db.write_inline(lambda conn: unstage_original(conn, id))

    async def earlier(self, owner: str, sha256: bytes) -> SaveResult | None:
        """The receipt of the same bytes from the same owner, unless refused (what an exact
        resend replays)."""
        key = f"{owner}:{sha256.hex()}"
        async with self._db.reading() as conn:
            by_replay, _ = await self.find_stored(conn, {key}, set())
        found = by_replay.get(key)
        return None if found is None else SaveResult(found.dossier, found.notice, "replay")

    async def _repeat_stored(self, conn: AsyncConnection, new: NewDossier) -> SaveResult | None:
        return _repeat_of(new, *await self.find_stored(conn, {_replay_key(new)}, {_idempotency_scope(new)}))

    async def find_stored(
        self, conn: AsyncConnection, replay_keys: set[str | None], scopes: set[str | None]
    ) -> tuple[dict[str, SaveResult], dict[str, SaveResult]]:
        """Stored dossiers with these replay keys or idempotency scopes, with their receipt notices."""
        replay_keys.discard(None)
        scopes.discard(None)
        if not replay_keys and not scopes:
            return {}, {}
        rows = (await conn.execute(_STORED, {"replay_keys": list(replay_keys), "scopes": list(scopes)})).all()
        if not rows:
            return {}, {}
        stored = await conn.execute(_NOTICES_OF, {"ids": [r.id for r in rows]})
        kinds: dict[str, list[str]] = {}
        receipts: dict[str, bytes] = {}
        for dossier_id, kind, xml in stored:
            kinds.setdefault(dossier_id, []).append(kind)
            if kind in (SLUG_RECEIPT, SLUG_REFUSAL):
                receipts[dossier_id] = xml
        by_replay: dict[str, SaveResult] = {}
        by_scope: dict[str, SaveResult] = {}
        for row in rows:
            result = SaveResult(dossier_of(row, kinds.get(row.id, [])), receipts.get(row.id, b""), "stored")
            if row.replay_key is not None:
                by_replay[row.replay_key] = result
            if row.idempotency_scope is not None:
                by_scope[row.idempotency_scope] = result
        return by_replay, by_scope

    async def _counter(self, conn: AsyncConnection, office: str, year: int) -> int:
        """The last number given in (office, year), 0 before the first."""
        return (await conn.execute(_COUNTER, {"c_office": office, "c_year": year})).scalar_one_or_none() or 0

    async def _bump_counter(self, conn: AsyncConnection, office: str, year: int, step: int) -> int:
        """Add `step` (the numbers a batch gives, 1 for one dossier) to the counter of (office,
        year), creating it, and return its value.

        One statement, atomic on both backends. The counter stays locked until commit (a row
        lock on PostgreSQL; on SQLite the writer holds the database lock), and a rolled-back
        savepoint gives the number back: numbers have no gaps.
        """
        params = {"c_office": office, "c_year": year, "c_step": step, "c_add": step}
        return (await conn.execute(_bump_statement(self._db.insert), params)).scalar_one()


def _ended(task: asyncio.Task) -> BaseException | None:
    return None if task.cancelled() else task.exception()


def _check_new(new: NewDossier) -> None:
    if new.state not in (RECEIVED, REFUSED):
        raise ValueError(f"dossier state must be {RECEIVED!r} or {REFUSED!r}, not {new.state!r}")
    if len(new.sha256) != 32:
        raise ValueError("sha256 must be the 32-byte digest")
    for name in ("received_at", "due_at"):
        value = getattr(new, name)
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be tz-aware")


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


@dataclass(eq=False)
class _Writing:
    """A batch being written (its task answers its callers), and the plan it was signed from."""

    task: asyncio.Task
    plan: _Plan | None


class _NoticeFailed(Exception):
    """Making one notice of a batch failed: the batch is redone one dossier at a time."""


class _Moved(Exception):
    """What is stored changed between deciding a batch and writing it: written the other way."""


@dataclass(eq=False)
class _Plan:
    """What a batch does: a result per job (stored, or a repeat of an earlier dossier), the
    dossiers it stores, and the numbers it gives per (office, year)."""

    results: list[SaveResult | Exception] = field(default_factory=list)
    stored: list[tuple[NewDossier, SaveResult]] = field(default_factory=list)
    repeats: list[tuple[int, SaveResult, str]] = field(default_factory=list)  # (index, earlier, outcome)
    last: dict[tuple[str, int], int] = field(default_factory=dict)  # (office, year) -> last number given
    at_start: dict[tuple[str, int], int] = field(default_factory=dict)

    def key(self) -> tuple:
        """What the notices signed from this plan depend on: equal keys, equal notices."""
        return (
            tuple((r.outcome, r.dossier.id, r.dossier.so_ho_so) for r in self.results if isinstance(r, SaveResult)),
            tuple((i, earlier.dossier.id, outcome) for i, earlier, outcome in self.repeats),
            tuple(sorted(self.at_start.items())),
        )

    def copy_repeats(self) -> None:
        """Repeats answer with their earlier dossier's notice (one of this batch's, once signed)."""
        for index, earlier, outcome in self.repeats:
            self.results[index] = SaveResult(replace(earlier.dossier), earlier.notice, outcome)


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
        notice_kinds=[SLUG_RECEIPT if new.state == RECEIVED else SLUG_REFUSAL],
    )


def _dossier_row(new: NewDossier, dossier: Dossier) -> dict:
    row = {c.name: getattr(dossier, c.name) for c in DOSSIER_COLUMNS}
    row.update(replay_key=_replay_key(new), idempotency_scope=_idempotency_scope(new))
    return row


def _work_rows(new: NewDossier, dossier: Dossier) -> list[dict]:
    """The work items a received dossier brings, stored in its receipt's transaction."""
    if dossier.state != RECEIVED:
        return []
    default_due = dossier.due_at or dossier.received_at
    return [new_work_row(dossier.id, *(w if isinstance(w, tuple) else (w, default_due)), dossier.received_at)
            for w in new.work]


def _notice_row(result: SaveResult) -> dict:
    d = result.dossier
    return {"dossier_id": d.id, "kind": d.notice_kinds[0], "xml": result.notice, "created_at": d.received_at}


def _receipt_events(jobs: list[_Job], results: list[SaveResult | Exception]) -> list[Event]:
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
        if new.request_id:
            data["request_id"] = new.request_id
        if result.outcome == "stored":
            kind = DOSSIER_RECEIVED if d.state == RECEIVED else DOSSIER_REFUSED
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
            kind = DOSSIER_REPLAYED if result.outcome == "replay" else DOSSIER_CONFLICT
        events.append(Event(kind, f"key:{new.submitter_key_id}", data, d.id))
    return events

"""The result of a received declaration dossier (procedures 600, 602, 603, 630 ...): the rule
layer judges its forms, and one transaction (`Store.results.settle`) stores the signed KET_QUA, the
dossier's new state (accepted or rejected), the records of an accepted dossier, the legal
parameters applied and the audit entries. A second run finds the KET_QUA and changes nothing.

Judging is CPU work on the stored original bytes (a 50,000-row D02-TS takes about a second):
it runs in the worker processes, outside any transaction.

In groups: the work runner calls the handler once per item, a few at once; the calls that
arrive together are settled together (as receipts are committed together): one read of their
dossiers and originals, one call per worker process to judge them and one to sign their
KET_QUA, one write transaction (`Store.results.settle_group`). Should the group fail as a
whole (a worker process died, a database error), each of its items is settled alone, the way
it was before groups, so that one bad dossier fails only its own item.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from interchange.kinds import SLUG_RESULT
from interchange.notices.notice import NoticeData
from interchange.rules.judge import Judgement
from interchange.spool import Spooled
from interchange.store.db import StoreUnavailable
from interchange.store.results import ALREADY, SETTLED, GroupEntry, SettleInput
from interchange.store.store import Store
from interchange.store.types import ACCEPTED, REJECTED, Dossier, Scope, Settlement, Unit, WorkItem

from .registration import result_notice

log = logging.getLogger(__name__)

MAX_GROUP = 64  # items settled in one transaction, at most


class KnownJudgements:
    """Judgements made at receipt (interchange.workers: the rule layer on the trees the receipt had
    just read), kept in this process until the result work takes them. Only a shortcut: a
    judgement is the same made now or from the stored original later (tests/test_judge_read.py),
    so one that is not here (dropped for room, another process's, lost with a restart) is made
    from the original as before. Bounded by the records held (`max_rows`), the oldest dropped."""

    def __init__(self, max_rows: int = 100_000):
        self.max_rows = max_rows
        self._held: OrderedDict[str, tuple[Judgement, int]] = OrderedDict()
        self._rows = 0

    def put(self, dossier_id: str, judgement: Judgement) -> None:
        rows = _rows_of(judgement) + 1
        if rows > self.max_rows:
            return
        self._held[dossier_id] = (judgement, rows)
        self._rows += rows
        while self._rows > self.max_rows:
            _, (_, dropped) = self._held.popitem(last=False)
            self._rows -= dropped

    def take(self, dossier_id: str) -> Judgement | None:
        held = self._held.pop(dossier_id, None)
        if held is None:
            return None
        self._rows -= held[1]
        return held[0]

    def __contains__(self, dossier_id: str) -> bool:
        return dossier_id in self._held


def _rows_of(judgement: Judgement) -> int:
    x = judgement.extracted
    return len(x.contribution_changes) + len(x.personal_data) + len(x.benefit_claims)


class Judges:
    """What the handler needs of the worker processes (interchange.workers.ReceiptWorkers)."""

    judge: Callable[[bytes], Awaitable[Judgement]]
    sign_notice: Callable[[NoticeData], Awaitable[bytes]]
    judge_many: Callable[[list[bytes | Spooled]], Awaitable[list]]
    sign_notices: Callable[[list[NoticeData]], Awaitable[list[bytes]]]


@dataclass(eq=False)
class _Call:
    item: WorkItem
    now: datetime
    future: asyncio.Future = field(repr=False)


class ResultWork:
    """The handler of WORK_JUDGE items (interchange.kinds)."""

    together = True  # WorkRunner: run every claimed item at once; they are settled in groups

    def __init__(
        self,
        store: Store,
        workers: Judges,
        *,
        on_result: Callable[[Dossier, datetime], None] | None = None,
        max_group: int = MAX_GROUP,
        known: KnownJudgements | None = None,
    ):
        self.known = known if known is not None else KnownJudgements()
        self.store = store
        self.workers = workers  # the rule layer and notice signing in worker processes
        self.on_result = on_result
        self.max_group = max_group
        self._waiting: list[_Call] = []
        self._flusher: asyncio.Task | None = None

    async def __call__(self, item: WorkItem, now: datetime) -> bool:
        """True when the item was marked done with the result (see WorkRunner)."""
        call = _Call(item, now, asyncio.get_running_loop().create_future())
        self._waiting.append(call)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="result-groups")
        return await call.future

    async def _flush(self) -> None:
        """Settle the calls waiting, a group at a time, until none is left."""
        await asyncio.sleep(0)  # let the calls the runner starts together join the first group
        while self._waiting:
            group, self._waiting = self._waiting[: self.max_group], self._waiting[self.max_group :]
            try:
                await self._settle_group(group)
            except StoreUnavailable as exc:
                _fail(group, exc)
            except Exception as exc:  # noqa: BLE001  (each item alone: one bad dossier fails only itself)
                log.info("result work: a group of %d failed (%r); settling one by one", len(group), exc)
                await asyncio.gather(*(self._alone(call) for call in group if not call.future.done()))
            _fail(group, RuntimeError("result work: the group ended without an outcome"))  # never hang a caller

    async def _settle_group(self, group: list[_Call]) -> None:
        ids = [c.item.dossier_id for c in group]
        taken = {i: j for i in ids if (j := self.known.take(i)) is not None}  # before any await: all or none
        inputs = await self.store.results.inputs(ids, without_original=list(taken))
        todo: list[tuple[_Call, SettleInput]] = []
        for call in group:
            got = inputs.get(call.item.dossier_id)
            if isinstance(got, Exception):
                call.future.set_exception(got)
            elif got is None:
                call.future.set_result(False)  # done by an earlier run (or the dossier is gone)
            else:
                todo.append((call, got))
        try:
            await self._judge_group(todo, taken)
        finally:
            for _, seen in todo:
                if isinstance(seen.original, Spooled):
                    seen.original.remove()

    async def _judge_group(self, todo: list[tuple[_Call, SettleInput]], taken: dict[str, Judgement]) -> None:
        if not todo:
            return
        known = [taken.get(seen.dossier.id) for _, seen in todo]
        originals = [seen.original for (_, seen), j in zip(todo, known, strict=True) if j is None]
        made = iter(await self.workers.judge_many(originals) if originals else [])
        judgements = [j if j is not None else next(made) for j in known]
        judged = []
        for (call, seen), judgement in zip(todo, judgements, strict=True):
            if isinstance(judgement, Exception):
                call.future.set_exception(judgement)
            else:
                judged.append((call, seen, judgement))
        notices = await self.workers.sign_notices([notice_of(seen.dossier, j, call.now) for call, seen, j in judged])
        entries = [
            GroupEntry(seen, settlement_of(j, xml), call.item, call.now)
            for (call, seen, j), xml in zip(judged, notices, strict=True)
        ]
        outcomes = await self.store.results.settle_group(entries)
        again = []
        for (call, seen, j), outcome in zip(judged, outcomes, strict=True):
            if outcome == SETTLED:
                call.future.set_result(True)
                if self.on_result:  # the dossier as settled, for the log line and the metrics
                    self.on_result(replace(seen.dossier, state=ACCEPTED if j.accepted else REJECTED), call.now)
            elif outcome == ALREADY:
                call.future.set_result(False)
            else:  # CHANGED: its unit changed meanwhile; settle() decides again under the lock
                again.append(call)
        await asyncio.gather(*(self._alone(call) for call in again))

    async def _alone(self, call: _Call) -> None:
        try:
            call.future.set_result(await self.one(call.item, call.now))
        except Exception as exc:  # noqa: BLE001  (the runner records it and retries the item)
            call.future.set_exception(exc)

    async def one(self, item: WorkItem, now: datetime) -> bool:
        """One item on its own: judge, sign and settle (`Store.results.settle`)."""
        # settle() finds an earlier KET_QUA too; looking first saves judging (a second at 50,000 rows)
        stored = await self.store.dossiers.get(item.dossier_id, Scope(all=True))
        if stored is None or SLUG_RESULT in stored.notice_kinds:
            return False  # done by an earlier run (or the dossier is gone): nothing to judge
        original = await self.store.dossiers.original_file(item.dossier_id, Scope(all=True))
        try:
            judgement = await self.workers.judge(original)
        finally:
            if isinstance(original, Spooled):
                original.remove()
        settled: list[Dossier] = []

        async def decide(dossier: Dossier, _unit: Unit | None) -> Settlement:
            notice = await self.workers.sign_notice(notice_of(dossier, judgement, now))
            settled.append(replace(dossier, state=ACCEPTED if judgement.accepted else REJECTED))  # as settled: for the log
            return settlement_of(judgement, notice)

        if await self.store.results.settle(item.dossier_id, decide, now=now, work=item) is None:
            return False
        if self.on_result:
            self.on_result(settled[-1], now)
        return True


def notice_of(dossier: Dossier, judgement: Judgement, now: datetime) -> NoticeData:
    return result_notice(
        dossier, now, accepted=judgement.accepted, problems=judgement.problems, truncated=judgement.truncated
    )


def settlement_of(judgement: Judgement, notice: bytes) -> Settlement:
    accepted = judgement.accepted
    return Settlement(
        state=ACCEPTED if accepted else REJECTED,
        notice=notice,
        problems=[p.as_dict() for p in judgement.problems],
        records=judgement.extracted if accepted else None,
        params=judgement.params,
    )


def _fail(group: list[_Call], exc: BaseException) -> None:
    for call in group:
        if not call.future.done():
            call.future.set_exception(exc)

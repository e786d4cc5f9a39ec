"""The result of a received declaration dossier (procedures 600, 602, 603, 630 ...): the rule
layer judges its forms, and one transaction (`Store.results.settle`) stores the signed KET_QUA, the
dossier's new state (accepted or rejected), the records of an accepted dossier, the legal
parameters applied and the audit entries. A second run finds the KET_QUA and changes nothing.

Judging is CPU work on the stored original bytes (a 50,000-row D02-TS takes about a second):
it runs in the worker processes, outside any transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime

from interchange.kinds import SLUG_RESULT
from interchange.notices.notice import NoticeData
from interchange.rules.judge import Judgement
from interchange.store.store import Store
from interchange.store.types import ACCEPTED, REJECTED, Dossier, Scope, Settlement, Unit, WorkItem

from .registration import result_notice


class ResultWork:
    """The handler of WORK_JUDGE items (interchange.kinds)."""

    def __init__(
        self,
        store: Store,
        judge: Callable[[bytes], Awaitable[Judgement]],
        sign: Callable[[NoticeData], Awaitable[bytes]],
        *,
        on_result: Callable[[Dossier, datetime], None] | None = None,
    ):
        self.store = store
        self.judge = judge  # ReceiptWorkers.judge: the rule layer in a worker process
        self.sign = sign  # ReceiptWorkers.sign_notice
        self.on_result = on_result

    async def __call__(self, item: WorkItem, now: datetime) -> bool:
        """True when the item was marked done with the result (see WorkRunner)."""
        # settle() finds an earlier KET_QUA too; looking first saves judging (a second at 50,000 rows)
        stored = await self.store.dossiers.get(item.dossier_id, Scope(all=True))
        if stored is None or SLUG_RESULT in stored.notice_kinds:
            return False  # done by an earlier run (or the dossier is gone): nothing to judge
        original = await self.store.dossiers.original(item.dossier_id, Scope(all=True))
        judgement = await self.judge(original)
        settled: list[Dossier] = []

        async def decide(dossier: Dossier, _unit: Unit | None) -> Settlement:
            accepted = judgement.accepted
            notice = await self.sign(result_notice(
                dossier, now, accepted=accepted, problems=judgement.problems, truncated=judgement.truncated
            ))
            settled.append(replace(dossier, state=ACCEPTED if accepted else REJECTED))  # as settled: for the log
            return Settlement(
                state=ACCEPTED if accepted else REJECTED,
                notice=notice,
                problems=[p.as_dict() for p in judgement.problems],
                records=judgement.extracted if accepted else None,
                params=judgement.params,
            )

        if await self.store.results.settle(item.dossier_id, decide, now=now, work=item) is None:
            return False
        if self.on_result:
            self.on_result(settled[0], now)
        return True

"""Receiving a dossier (SPEC §2-§5, §8, §9), without HTTP: the stages run in the worker
processes, then the registration gate, the replay and idempotency decisions, the due time, the
work the dossier brings, and the signed receipt notice, stored before anything is answered.

    submission -> stages (envelope, signature, schema)      interchange.workers / intake
               -> registration gate (REG-NOT-ACTIVE)        registration_gate
               -> replay of an earlier receipt?             Store.receipts.earlier
               -> new dossier: due time, work items         new_dossier, work_for
               -> stored with its signed notice             Store.receipts.save (group commit)
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from interchange import codes
from interchange.clock import utc_now
from interchange.errors import Layer, Problem
from interchange.intake.pipeline import Caller, Outcome
from interchange.jobs.registration import REGISTRATION_PROCEDURES, not_active_problem
from interchange.jobs.result import KnownJudgements
from interchange.kinds import NOTICE_RECEIPT, NOTICE_REFUSAL, WORK_FORWARD, WORK_JUDGE, WORK_REGISTRATION
from interchange.notices.notice import NoticeData
from interchange.spool import Spooled
from interchange.store.store import Store
from interchange.store.types import ACTIVE, RECEIVED, REFUSED, ApiKey, Dossier, NewDossier, Scope
from interchange.workcal import WorkCalendar

log = logging.getLogger(__name__)

# What a submission became (Answer.outcome).
RECEIVED_NOW = "received"  # stored with a TIEP_NHAN
REFUSED_NOW = "refused"  # stored with a TU_CHOI
REPLAYED = "replay"  # an earlier receipt of the same bytes (or Idempotency-Key) answered again
CONFLICT = "conflict"  # the Idempotency-Key names other bytes: nothing stored
FORBIDDEN = "forbidden"  # not the caller's to send: nothing stored


@dataclass(frozen=True)
class Policy:
    """The server's settings the decisions depend on."""

    role: str = "agency"  # agency | ivan
    office_code: str = "BHXH"
    targets: dict[str, str] | None = None  # procedure -> target time ("5 working days")
    registration_required: bool = False
    forward_within: timedelta = timedelta(minutes=15)  # role ivan: the forwarding target


@dataclass
class Answer:
    outcome: str  # RECEIVED_NOW | REFUSED_NOW | REPLAYED | CONFLICT | FORBIDDEN
    dossier: Dossier | None = None  # stored (or replayed); None when nothing was stored
    notice: bytes | None = None  # the signed receipt notice to answer with
    problem: Problem | None = None  # why, for CONFLICT and FORBIDDEN
    # Where a stored or replayed receipt's time went, in seconds, by stage (RECEIPT_STAGES; only
    # those it went through)
    seconds: dict[str, float] = field(default_factory=dict)


# The stages of a receipt's time, in order: "check", the receipt's layers in a worker process
# (with the wait for a free one); "sign", from then until its notice is signed (the unit's
# registration read, the wait for its batch, the batch's numbering read, the wait for a worker to
# sign); "write", from then until its batch is committed (the batch before it, the database's
# write turn, the transaction). An operator reads from these where slow receipts wait.
RECEIPT_STAGES = ("check", "sign", "write")


class Stages:
    """What the use case needs of the worker processes (interchange.workers.ReceiptWorkers)."""

    receive: Callable[..., Awaitable[Outcome]]  # (body, at, caller, *, judge: bool, stored_data: frozenset[str])
    sign_notice: Callable[[NoticeData], Awaitable[bytes]]


class Reception:
    def __init__(self, store: Store, stages: Stages, calendar: WorkCalendar, policy: Policy,
                 known: KnownJudgements | None = None):
        self.store = store
        self.stages = stages
        self.calendar = calendar
        self.policy = policy
        # The rule layer's judgement made with the receipt, for the result work of this process:
        # the agency judges; an I-VAN forwards and judges nothing.
        self.known = known if policy.role == "agency" else None
        # Called once a stored dossier brings work due now (the composition root wakes this
        # process's work runner with it: jobs.runner.WorkRunner.wake); None: the ticks find it.
        self.on_work: Callable[[], None] | None = None

    async def receive(
        self, body: bytes | Spooled, key: ApiKey, *, idempotency_key: str | None = None, received_at: datetime | None = None,
        request_id: str | None = None,
    ) -> Answer:
        """Judge `body` sent with `key` and store it with its signed notice (or find the earlier
        receipt it repeats). Returns after the commit. A `Spooled` body stays the caller's to remove;
        it is staged into the store while the workers check it (`Receipts.stage_original`)."""
        received_at = received_at or utc_now()
        caller = Caller(role=key.role, mst=key.mst, ivan=key.ivan)
        id = uuid.uuid4().hex
        staging = self._stage(id, body)
        kept = False  # the staged original is the stored dossier's
        started = time.perf_counter()
        seconds: dict[str, float] = {}
        try:
            outcome = await self.stages.receive(body, received_at, caller, judge=self.known is not None,
                                                stored_data=self.store.receipts.stored_names.recent())
            checked = time.perf_counter()
            seconds["check"] = checked - started
            if outcome.forbidden:
                return Answer(FORBIDDEN, problem=outcome.problems[-1])
            gated = await registration_gate(self.store, self.policy, outcome)
            # An exact resend of a dossier received before its unit stopped replays that receipt.
            saved = await self.store.receipts.earlier(key.owner, outcome.sha256) if gated is not outcome else None
            if saved is None:
                new = new_dossier(self.policy, self.calendar, key, body, gated, received_at, idempotency_key, id=id)
                new.request_id = request_id  # written into the audit entry of the receipt
                new.original_staged = staging is not None and await _staged(staging)

                signed: list[float] = []  # when each signing of its notice ended (it may be signed again)

                async def make_notice(dossier: Dossier) -> bytes:
                    notice = await self.stages.sign_notice(receipt_notice(dossier, gated))
                    signed.append(time.perf_counter())
                    return notice

                saved = await self.store.receipts.save(new, make_notice)
                if signed:  # a replay is not signed: its time after the check is all "write"
                    seconds["sign"] = signed[-1] - checked
                seconds["write"] = time.perf_counter() - (signed[-1] if signed else checked)
                stored = saved.outcome == "stored"
                kept = stored and new.original_staged
                if stored and WORK_JUDGE in new.work and outcome.judgement is not None:
                    self.known.put(saved.dossier.id, outcome.judgement)
                if stored and self.on_work is not None and any(isinstance(w, str) for w in new.work):
                    self.on_work()  # a kind alone is due now; (kind, due) later
        finally:
            if staging is not None and not kept:
                await self._unstage(id, staging)
        if saved.outcome == "conflict":
            return Answer(CONFLICT, dossier=saved.dossier, problem=conflict_problem(saved.dossier.id))
        if saved.outcome == "replay":
            return Answer(REPLAYED, saved.dossier, saved.notice, seconds=seconds)
        state = RECEIVED_NOW if saved.dossier.state == RECEIVED else REFUSED_NOW
        return Answer(state, saved.dossier, saved.notice, seconds=seconds)

    def _stage(self, id: str, body: bytes | Spooled) -> asyncio.Task | None:
        """A large body (in its file) written into the store while the workers check it, instead
        of in the receipt's transaction after the check (0.38-0.51 s of a 103 MiB dossier's 202;
        0.35 s sooner on two cores, the worker's pass on one and its XSD helper, then this, on the
        other: docs/deployment.md, large dossiers)."""
        if not isinstance(body, Spooled):
            return None
        task = asyncio.get_running_loop().create_task(self.store.receipts.stage_original(id, body), name=f"stage-{id}")
        task.add_done_callback(_staging_ended)
        return task

    async def _unstage(self, id: str, staging: asyncio.Task) -> None:
        """The receipt ended without storing dossier `id`, or stored its original itself: the
        staged original goes (what cannot go now, the database away, goes with a later staging:
        `originals.ORPHAN_AFTER`)."""
        await asyncio.wait([staging])
        if not staging.cancelled() and staging.exception() is not None:
            return  # rolled back: nothing to remove
        try:
            await self.store.receipts.unstage_original(id)
        except Exception as exc:  # noqa: BLE001 - the receipt's own outcome stands
            log.warning("receipt: the staged original of %s stays until a later staging removes it: %s", id, exc)


async def _staged(staging: asyncio.Task) -> bool:
    """Whether the staging committed; when it failed the receipt writes the original itself."""
    await asyncio.wait([staging])
    return not staging.cancelled() and staging.exception() is None


def _staging_ended(task: asyncio.Task) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("receipt: staging a large original failed (the receipt writes it instead): %s", exc)


async def registration_gate(store: Store, policy: Policy, outcome: Outcome) -> Outcome:
    """With `[registration] required`, a dossier of a unit that is not registered and active
    is refused (SPEC §9); registration dossiers themselves are always received. Returns the
    outcome unchanged when the gate lets it through."""
    procedure, mst = outcome.envelope.get("procedure"), outcome.envelope.get("mst")
    if not (policy.registration_required and outcome.accepted) or procedure in REGISTRATION_PROCEDURES:
        return outcome
    if policy.role != "agency":
        return outcome  # registrations are the agency's: an I-VAN forwards and the agency judges
    unit = await store.units.get(mst, Scope(all=True)) if mst else None
    if unit is not None and unit.state == ACTIVE:
        return outcome
    return replace(
        outcome,
        accepted=False,
        problems=[*outcome.problems, not_active_problem(mst, None if unit is None else unit.state)],
        layers={**outcome.layers, "rule": "failed"},
    )


def work_for(
    procedure: str | None, role: str = "agency", *, received_at: datetime | None = None,
    forward_within: timedelta | None = None,
) -> list[str | tuple[str, datetime]]:
    """The work a received dossier of `procedure` brings, in server role `role`. In role ivan
    that is forwarding upstream, due at received_at + forward_within (clock time: I-VANs run
    24/7), and nothing else: the agency upstream checks, records and decides."""
    if role == "ivan":
        if received_at is None or forward_within is None:
            raise ValueError("work_for: role ivan needs received_at and forward_within (the forwarding target)")
        return [(WORK_FORWARD, received_at + forward_within)]
    # registration dossiers have their own checks; every other procedure is judged by the rule layer
    return [WORK_REGISTRATION] if procedure in REGISTRATION_PROCEDURES else [WORK_JUDGE]


def new_dossier(
    policy: Policy, calendar: WorkCalendar, key: ApiKey, body: bytes | Spooled, outcome: Outcome, received_at: datetime,
    idempotency_key: str | None, *, id: str | None = None,
) -> NewDossier:
    """What the store keeps of a judged submission: its state, due time and work."""
    env = outcome.envelope
    due_at = None
    target = (policy.targets or {}).get(env.get("procedure") or "")
    if outcome.accepted and target:
        due_at = calendar.due(received_at, target)
    work = work_for(env.get("procedure"), policy.role, received_at=received_at, forward_within=policy.forward_within)
    return NewDossier(
        id=id or uuid.uuid4().hex,
        state=RECEIVED if outcome.accepted else REFUSED,
        owner=key.owner,
        submitter_key_id=key.key_id,
        original=body,
        sha256=outcome.sha256,
        received_at=received_at,
        office_code=policy.office_code,
        unit_mst=env.get("mst"),
        unit_code=env.get("unit_code"),
        unit_name=env.get("unit_name"),
        ivan_code=env.get("ivan_code"),
        procedure=env.get("procedure"),
        period=env.get("period"),
        due_at=due_at,
        idempotency_key=idempotency_key,
        problems=[p.as_dict() for p in outcome.problems],
        layers=outcome.layers,
        signers=outcome.signers,
        revocation_data=outcome.revocation_data,
        facts={
            "files": env.get("files", []),
            "forms": outcome.forms,
            "truncated": outcome.truncated,
            **({"contact": env["contact"]} if env.get("contact") else {}),
        },
        work=work if outcome.accepted else [],
    )


def receipt_notice(dossier: Dossier, outcome: Outcome) -> NoticeData:
    """The TIEP_NHAN or TU_CHOI of a stored dossier."""
    return NoticeData(
        kind=NOTICE_RECEIPT if dossier.state == RECEIVED else NOTICE_REFUSAL,
        transaction_id=dossier.id,
        received_at=dossier.received_at,
        issued_at=utc_now(),
        sha256=dossier.sha256,
        so_ho_so=dossier.so_ho_so,
        procedure=dossier.procedure,
        mst=dossier.unit_mst,
        unit_code=dossier.unit_code,
        ivan_code=dossier.ivan_code,
        due_at=dossier.due_at,
        layers=outcome.layers,
        problems=outcome.problems,
        truncated=outcome.truncated,
    )


def conflict_problem(dossier_id: str) -> Problem:
    return Problem(
        layer=Layer.TRANSPORT, code=codes.IDEMPOTENCY_CONFLICT, xpath="/",
        message_vi="Idempotency-Key này đã dùng cho một hồ sơ khác.",
        message_en=f"This Idempotency-Key was used for different bytes (dossier {dossier_id}).",
    )  # fmt: skip

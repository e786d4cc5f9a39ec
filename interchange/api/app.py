"""The HTTP shell (SPEC §5): authentication, limits and routing around the pure stages.

A dossier's answer is sent only after `Store.save_receipt` has committed the original
bytes, the state and the signed notice: a crash before that loses nothing acknowledged.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from interchange.api import forwarding as forwarding_api
from interchange.api.openapi import OPENAPI
from interchange.api.ratelimit import RateLimiter
from interchange.audit.evidence import build_bundle
from interchange.config import Config
from interchange.delivery.mail import make_sender
from interchange.delivery.store import Delivery
from interchange.delivery.work import DELIVERY_KINDS, DeliveryWork
from interchange.errors import Layer, Problem
from interchange.forwarding.work import Forwarder, Hooks
from interchange.intake.pipeline import Caller, Outcome
from interchange.jobs import REGISTRATION, REGISTRATION_PROCEDURES, RESULT, work_for
from interchange.jobs.policy import BREAKER_STATES
from interchange.jobs.registration import RegistrationWork, not_active_problem
from interchange.jobs.result import ResultWork
from interchange.jobs.runner import Ran, WorkRunner
from interchange.notices.notice import KIND_SLUG, RECEIPT, REFUSAL, NoticeData, NoticeSigner
from interchange.store.records import (
    ACTIVE,
    RECEIVED,
    REFUSED,
    ApiKey,
    Dossier,
    NewDossier,
    Overdue,
    Scope,
    Unit,
    WorkItem,
)
from interchange.store.store import Store
from interchange.workcal import WorkCalendar
from interchange.workers import ReceiptWorkers

log = logging.getLogger("interchange.api")

XML_TYPES = {"application/xml", "text/xml"}
XML_RESPONSE = "application/xml"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


@dataclass
class Services:
    cfg: Config
    store: Store
    workers: ReceiptWorkers
    signer: NoticeSigner
    calendar: WorkCalendar


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.receipts = Counter(
            "interchange_receipts", "Dossiers answered at receipt, by outcome", ["outcome"], registry=self.registry
        )
        self.receipt_seconds = Histogram(
            "interchange_receipt_seconds",
            "Time from request to signed receipt notice",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        # Compliance with the target times (SPEC §8). The gauges are refreshed by the work scheduler.
        self.work_overdue = Gauge(
            "interchange_work_overdue_items",
            "Work items past their due time and not done, by kind (the whole queue: every process "
            "reports the same value, aggregate with max)",
            ["kind"],
            registry=self.registry,
        )
        self.work_overdue_age = Gauge(
            "interchange_work_overdue_age_seconds",
            "How long the oldest overdue work item of a kind is past its due time",
            ["kind"],
            registry=self.registry,
        )
        self.work_runs = Counter(
            "interchange_work_runs",
            "Work items run by this process, by kind and outcome (done, retry, failed, lost)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.time_to_result = Histogram(
            "interchange_time_to_result_seconds",
            "Time from receipt to the KET_QUA, by procedure",
            ["procedure"],
            buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 432000, 864000, 1728000),
            registry=self.registry,
        )
        # Role ivan (interchange.forwarding): forwarding upstream within its target (SPEC §8).
        self.time_to_forward = Histogram(
            "interchange_time_to_forward_seconds",
            "Time from receipt to the upstream's answer to the forwarded bytes (its TIEP_NHAN or TU_CHOI)",
            buckets=(1, 5, 15, 60, 180, 300, 600, 900, 1800, 3600, 7200, 14400, 86400),
            registry=self.registry,
        )
        self.forward_attempts = Counter(
            "interchange_forward_attempts",
            "Tries upstream by this process, by kind (forward, poll) and outcome (accepted, replayed, "
            "refused, relayed, not_yet, unreachable, timeout, server_error, throttled, client_error, bad_notice)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.forward_breaker = Gauge(
            "interchange_forward_breaker_state",
            "This process's circuit breaker for the upstream: 0 closed, 1 half-open (probing), 2 open",
            registry=self.registry,
        )

        self.deliveries = Counter(
            "interchange_deliveries",
            "Runs of result deliveries by channel (callback, email) and outcome (delivered, retry, "
            "failed: given up, deferred: circuit open, skipped: e-mail off)",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "interchange_delivery_seconds",
            "Time from a notice to its delivery, by channel",
            ["channel"],
            buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400),
            registry=self.registry,
        )

    def delivery_ran(self, delivery: Delivery, outcome: str, now: datetime) -> None:
        self.deliveries.labels(channel=delivery.channel, outcome=outcome).inc()
        if outcome == "delivered":
            self.delivery_seconds.labels(channel=delivery.channel).observe((now - delivery.created_at).total_seconds())

    def set_overdue(self, kinds: list[str], overdue: list[Overdue], now: datetime) -> None:
        """Every kind gets a value (0 when nothing is overdue), so that its series never go stale."""
        by_kind = {o.kind: o for o in overdue}
        for kind in sorted({*kinds, *by_kind}):
            o = by_kind.get(kind)
            self.work_overdue.labels(kind=kind).set(o.count if o else 0)
            self.work_overdue_age.labels(kind=kind).set((now - o.oldest_due_at).total_seconds() if o else 0)

    def ran(self, ran: Ran) -> None:
        self.work_runs.labels(kind=ran.item.kind, outcome=ran.outcome).inc()

    def result_given(self, dossier: Dossier, at: datetime) -> None:
        self.time_to_result.labels(procedure=dossier.procedure or "").observe((at - dossier.received_at).total_seconds())

    def forwarding_hooks(self) -> Hooks:
        return Hooks(
            attempt=lambda kind, outcome: self.forward_attempts.labels(kind=kind, outcome=outcome).inc(),
            forwarded=self.time_to_forward.observe,
            result=self.result_given,
        )

    def breaker_changed(self, state: str) -> None:
        self.forward_breaker.set(BREAKER_STATES[state])


SERVICES = web.AppKey("services", Services)
METRICS = web.AppKey("metrics", Metrics)
WORK = web.AppKey("work", WorkRunner)
LIMITER = web.AppKey("limiter", RateLimiter)


def _now() -> datetime:
    return datetime.now(UTC)


def _transport_problem(code: str, vi: str, en: str) -> Problem:
    return Problem(layer=Layer.TRANSPORT, code=code, message_vi=vi, message_en=en, xpath="/")


def _refusal_response(request: web.Request, status: int, problem: Problem, **headers) -> web.Response:
    """A signed TU_CHOI for a request refused before the pipeline ran; nothing is stored."""
    services = request.app[SERVICES]
    now = _now()
    notice = services.signer.sign(
        NoticeData(kind=REFUSAL, transaction_id=uuid.uuid4().hex, received_at=now, issued_at=now, problems=[problem])
    )
    request.app[METRICS].receipts.labels(outcome=f"http_{status}").inc()
    return web.Response(status=status, body=notice, content_type=XML_RESPONSE, charset="utf-8", headers=headers)


def _problem_json(status: int, code: str, message: str, **headers) -> web.Response:
    return web.json_response({"status": status, "code": code, "message": message}, status=status, headers=headers)


async def _api_key(request: web.Request) -> ApiKey | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return await request.app[SERVICES].store.authenticate(token.strip())


async def _reader(request: web.Request) -> ApiKey:
    key = await _api_key(request)
    if key is None:
        raise web.HTTPUnauthorized(
            text='{"status": 401, "code": "AUTH-MISSING", "message": "a valid API key is required (Authorization: Bearer ...)"}',
            content_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="interchange"'},
        )
    wait = request.app[LIMITER].take(key.key_id)
    if wait:
        raise web.HTTPTooManyRequests(
            text='{"status": 429, "code": "RATE-LIMIT", "message": "too many requests for this API key"}',
            content_type="application/json",
            headers={"Retry-After": _retry_after(wait)},
        )
    return key


def _retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))


# ---- POST /api/v1/dossiers -------------------------------------------------------------------


async def post_dossier(request: web.Request) -> web.Response:
    started = time.perf_counter()
    services = request.app[SERVICES]
    metrics = request.app[METRICS]
    limit = services.cfg.limits.max_body_bytes

    key = await _api_key(request)
    if key is None:
        return _refusal_response(
            request,
            401,
            _transport_problem("AUTH-MISSING", "Thiếu hoặc sai khóa API.", "A valid API key is required (Authorization: Bearer ...)."),
            **{"WWW-Authenticate": 'Bearer realm="interchange"'},
        )
    wait = request.app[LIMITER].take(key.key_id)
    if wait:
        return _refusal_response(
            request,
            429,
            _transport_problem(
                "RATE-LIMIT", "Gửi quá nhiều yêu cầu; hãy thử lại sau.", "Too many requests for this API key; retry later."
            ),
            **{"Retry-After": _retry_after(wait)},
        )
    if key.role not in ("submitter", "ivan", "admin"):
        return _refusal_response(
            request, 403, _transport_problem("AUTH-ROLE", "Vai trò này không được nộp hồ sơ.", f"The role {key.role} may not submit dossiers.")
        )
    body = await _xml_body(request, limit)
    if isinstance(body, Problem):
        return _refusal_response(request, _BODY_STATUS[body.code], body)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
        return _refusal_response(
            request,
            422,
            _transport_problem(
                "IDEMPOTENCY-KEY", "Idempotency-Key không hợp lệ.", "Idempotency-Key must be 1-200 printable ASCII characters."
            ),
        )

    received_at = _now()
    outcome = await services.workers.receive(body, received_at, Caller(role=key.role, mst=key.mst, ivan=key.ivan))
    if outcome.forbidden:
        return _refusal_response(request, 403, outcome.problems[-1])
    unregistered = await _unless_unregistered(services, outcome)
    # An exact resend of a dossier received before its unit stopped replays that receipt.
    saved = await services.store.earlier_receipt(key.owner, outcome.sha256) if unregistered is not outcome else None
    outcome = unregistered

    if saved is None:
        new = _new_dossier(services, key, body, outcome, received_at, idempotency_key)

        async def make_notice(dossier: Dossier) -> bytes:
            return await services.workers.sign_notice(_receipt_notice(dossier, outcome))

        saved = await services.store.save_receipt(new, make_notice)
    if saved.outcome == "conflict":
        status = 409
        response = _refusal_response(
            request,
            409,
            _transport_problem(
                "IDEMPOTENCY-CONFLICT",
                "Idempotency-Key này đã dùng cho một hồ sơ khác.",
                f"This Idempotency-Key was used for different bytes (dossier {saved.dossier.id}).",
            ),
        )
    else:
        status = 200 if saved.outcome == "replay" else (202 if saved.dossier.state == RECEIVED else 422)
        response = web.Response(
            status=status,
            body=saved.notice,
            content_type=XML_RESPONSE,
            charset="utf-8",
            headers={
                "Location": f"/api/v1/dossiers/{saved.dossier.id}",
                "X-Transaction-Id": saved.dossier.id,
            },
        )
        metrics.receipts.labels(outcome=saved.outcome if saved.outcome == "replay" else saved.dossier.state).inc()
    metrics.receipt_seconds.observe(time.perf_counter() - started)
    return response


_BODY_STATUS = {"CONTENT-TYPE": 415, "BODY-TOO-LARGE": 413, "BODY-EMPTY": 422}


async def _xml_body(request: web.Request, limit: int) -> bytes | Problem:
    """The XML body, or why it is refused (its code's status in _BODY_STATUS): not XML, larger than
    `limit` (said before reading when the length is declared), or empty."""
    if request.content_type not in XML_TYPES:
        return _transport_problem(
            "CONTENT-TYPE",
            "Hồ sơ phải gửi với Content-Type application/xml.",
            f"Send the dossier as application/xml, not {request.content_type or '(none)'}.",
        )
    too_large = _transport_problem(
        "BODY-TOO-LARGE", f"Hồ sơ vượt quá {limit} byte.", f"The dossier is larger than the limit of {limit} bytes."
    )
    if request.content_length is not None and request.content_length > limit:
        return too_large
    try:
        body = await request.read()  # bounded by client_max_size as the stream is read
    except web.HTTPRequestEntityTooLarge:
        return too_large
    return body or _transport_problem("BODY-EMPTY", "Hồ sơ rỗng.", "The request body is empty.")


async def _unless_unregistered(services: Services, outcome: Outcome) -> Outcome:
    """With `[registration] required`, a dossier of a unit that is not registered and active
    is refused (SPEC §9); registration dossiers themselves are always received."""
    procedure, mst = outcome.envelope.get("procedure"), outcome.envelope.get("mst")
    if not (services.cfg.registration.required and outcome.accepted) or procedure in REGISTRATION_PROCEDURES:
        return outcome
    if services.cfg.server.role != "agency":
        return outcome  # registrations are the agency's: an I-VAN forwards and the agency judges
    unit = await services.store.get_unit(mst, Scope(all=True)) if mst else None
    if unit is not None and unit.state == ACTIVE:
        return outcome
    return replace(
        outcome,
        accepted=False,
        problems=[*outcome.problems, not_active_problem(mst, None if unit is None else unit.state)],
        layers={**outcome.layers, "rule": "failed"},
    )


def _new_dossier(
    services: Services, key: ApiKey, body: bytes, outcome: Outcome, received_at: datetime, idempotency_key: str | None
) -> NewDossier:
    env = outcome.envelope
    due_at = None
    target = services.cfg.targets.get(env.get("procedure") or "")
    if outcome.accepted and target:
        due_at = services.calendar.due(received_at, target)
    return NewDossier(
        id=uuid.uuid4().hex,
        state=RECEIVED if outcome.accepted else REFUSED,
        owner=key.owner,
        submitter_key_id=key.key_id,
        original=body,
        sha256=outcome.sha256,
        received_at=received_at,
        office_code=services.cfg.server.office_code,
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
        facts={
            "files": env.get("files", []),
            "forms": outcome.forms,
            "truncated": outcome.truncated,
            **({"contact": env["contact"]} if env.get("contact") else {}),
        },
        work=work_for(
            env.get("procedure"), services.cfg.server.role, received_at=received_at,
            forward_within=timedelta(minutes=services.cfg.upstream.target_minutes),
        ) if outcome.accepted else [],
    )


def _receipt_notice(dossier: Dossier, outcome: Outcome) -> NoticeData:
    return NoticeData(
        kind=RECEIPT if dossier.state == RECEIVED else REFUSAL,
        transaction_id=dossier.id,
        received_at=dossier.received_at,
        issued_at=_now(),
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


# ---- reading back ----------------------------------------------------------------------------


def _dossier_json(d: Dossier, now: datetime, work: list[WorkItem] | None = None) -> dict:
    base = f"/api/v1/dossiers/{d.id}"
    out = {
        "id": d.id,
        "so_ho_so": d.so_ho_so,
        "state": d.state,
        "sha256": d.sha256.hex(),
        "size": d.size,
        "received_at": d.received_at.isoformat(),
        "due_at": d.due_at.isoformat() if d.due_at else None,
        "result_at": d.result_at.isoformat() if d.result_at else None,
        "parameters": d.params,  # the legal parameters the rule layer applied (version, SHA-256)
        # the result is late, or is not given and its time has passed
        "overdue": d.due_at is not None and (d.result_at or now) > d.due_at,
        "unit": {"mst": d.unit_mst, "code": d.unit_code, "name": d.unit_name},
        "ivan_code": d.ivan_code,
        "procedure": d.procedure,
        "period": d.period,
        "idempotency_key": d.idempotency_key,
        "layers": d.layers,
        "errors": d.problems,
        "signers": [_signer_json(s) for s in d.signers],
        "notices": {kind: f"{base}/notices/{kind}" for kind in d.notice_kinds},
        "original": f"{base}/original",
    }
    if work is not None:
        out["work"] = [_work_json(w, now) for w in work]
    return out


def _work_json(w: WorkItem, now: datetime) -> dict:
    return {
        "kind": w.kind,
        "state": w.state,
        "due_at": w.due_at.isoformat(),
        "done_at": w.done_at.isoformat() if w.done_at else None,
        "overdue": (w.done_at or now) > w.due_at,
        "attempts": w.attempts,
        "last_error": w.last_error,
    }


def _signer_json(report: dict) -> dict:
    """A signature report without the bulky proofs (chains, CRLs, OCSP answers): those are in
    the evidence bundle."""
    out = {k: v for k, v in report.items() if k != "chain_pem"}
    revocation = report.get("revocation")
    if isinstance(revocation, dict):
        out["revocation"] = {
            **{k: v for k, v in revocation.items() if k not in ("crls", "ocsp")},
            "crls": len(revocation.get("crls") or []),
            "ocsp": len(revocation.get("ocsp") or []),
        }
    return out


def _parse_time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"status": 400, "code": "BAD-QUERY", "message": "{name} must be an ISO 8601 time"}}',
            content_type="application/json",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def list_dossiers(request: web.Request) -> web.Response:
    key = await _reader(request)
    q = request.query
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        return _problem_json(400, "BAD-QUERY", "limit must be a whole number")
    try:
        items, cursor = await request.app[SERVICES].store.list_dossiers(
            key.scope,
            state=q.get("state"),
            procedure=q.get("procedure"),
            period=q.get("period"),
            received_from=_parse_time(q.get("from"), "from"),
            received_to=_parse_time(q.get("to"), "to"),
            limit=max(1, min(limit, 500)),
            cursor=q.get("cursor"),
        )
    except ValueError as exc:
        return _problem_json(400, "BAD-QUERY", str(exc))
    now = _now()
    return web.json_response({"items": [_dossier_json(d, now) for d in items], "next_cursor": cursor})


async def get_dossier(request: web.Request) -> web.Response:
    key = await _reader(request)
    store = request.app[SERVICES].store
    dossier = await store.get_dossier(request.match_info["id"], key.scope)
    if dossier is None:
        return _problem_json(404, "NOT-FOUND", "no such dossier")  # also for another unit's: no existence leak
    return web.json_response(_dossier_json(dossier, _now(), await store.work_of(dossier.id)))


async def get_unit(request: web.Request) -> web.Response:
    """A unit's registration for electronic transactions (SPEC §9)."""
    key = await _reader(request)
    unit = await request.app[SERVICES].store.get_unit(request.match_info["mst"], key.scope)
    if unit is None:
        return _problem_json(404, "NOT-FOUND", "no such registered unit")  # or not the caller's to see
    return web.json_response(_unit_json(unit))


def _unit_json(u: Unit) -> dict:
    return {
        "mst": u.mst,
        "unit_code": u.unit_code,
        "name": u.name,
        "state": u.state,
        "email": u.email,
        "address": u.address,
        "contact": u.contact,
        "result_channel": u.result_channel,
        "updated_at": u.updated_at.isoformat(),
        "registration": f"/api/v1/dossiers/{u.dossier_id}",
    }


async def get_notice(request: web.Request) -> web.Response:
    key = await _reader(request)
    kind = request.match_info["kind"]
    if kind not in KIND_SLUG.values():
        return _problem_json(404, "NOT-FOUND", f"notice kinds are {', '.join(KIND_SLUG.values())}")
    xml = await request.app[SERVICES].store.get_notice(request.match_info["id"], kind, key.scope)
    if xml is None:
        return _problem_json(404, "NOT-FOUND", "no such notice")
    return web.Response(body=xml, content_type=XML_RESPONSE, charset="utf-8")


async def get_original(request: web.Request) -> web.Response:
    key = await _reader(request)
    data = await request.app[SERVICES].store.get_original(request.match_info["id"], key.scope)
    if data is None:
        return _problem_json(404, "NOT-FOUND", "no such dossier")
    return web.Response(body=data, content_type=XML_RESPONSE)


async def post_verify(request: web.Request) -> web.Response:
    """A signature report on any signed XML: an envelope, a form or a notice (SPEC §5). Any role."""
    await _reader(request)  # any valid key may ask
    services = request.app[SERVICES]
    body = await _xml_body(request, services.cfg.limits.max_body_bytes)
    if isinstance(body, Problem):
        return _problem_json(_BODY_STATUS[body.code], body.code, body.message_en)
    report = await services.workers.verify(body, _now())
    return web.json_response(report, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))


async def get_evidence(request: web.Request) -> web.Response:
    """The dossier's evidence bundle (ZIP), checked offline by `interchange evidence verify`."""
    key = await _reader(request)
    services = request.app[SERVICES]
    parts = await services.store.evidence_parts(request.match_info["id"], key.scope)
    if parts is None:
        return _problem_json(404, "NOT-FOUND", "no such dossier")
    body = await build_bundle(parts.dossier, parts.original, parts.notices, parts.audit, services.signer)
    return web.Response(
        body=body,
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="evidence-{parts.dossier.id}.zip"'},
    )


# ---- operations ------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ok = await request.app[SERVICES].store.ping()
    return web.json_response({"status": "ready" if ok else "not ready"}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


_INDEX = (Path(__file__).parent / "static" / "index.html").read_bytes()


async def index(request: web.Request) -> web.Response:
    """A small page to look up a dossier's state and notices with one's own API key."""
    return web.Response(body=_INDEX, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"})


@web.middleware
async def never_500_silently(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _problem_json(500, "INTERNAL", "unexpected server error; it has been logged")


def _work_runner(services: Services, metrics: Metrics) -> WorkRunner:
    """The work this process claims and runs (started by the scheduler in interchange.server)."""
    jobs = services.cfg.jobs
    handlers = {
        REGISTRATION: RegistrationWork(services.store, services.workers.sign_notice, on_result=metrics.result_given),
        RESULT: ResultWork(services.store, services.workers.judge, services.workers.sign_notice,
                           on_result=metrics.result_given),
    }
    if services.cfg.server.role == "ivan":  # forwarding upstream and relaying its notices (ValueError: bad [upstream])
        handlers |= Forwarder.from_config(services.cfg, services.store, hooks=metrics.forwarding_hooks(),
                                          on_breaker=metrics.breaker_changed).handlers()
    deliver = DeliveryWork(services.store, services.cfg.delivery, make_sender(services.cfg), on_outcome=metrics.delivery_ran)
    handlers |= dict.fromkeys(DELIVERY_KINDS, deliver)  # one handler for every route of every notice
    return WorkRunner(
        services.store,
        handlers,
        batch=jobs.batch,
        concurrency=jobs.concurrency,
        lease=timedelta(seconds=jobs.lease_seconds),
        max_attempts=jobs.max_attempts,
        on_ran=metrics.ran,
        on_overdue=lambda overdue, now: metrics.set_overdue(list(handlers), overdue, now),
    )


def build_app(services: Services) -> web.Application:
    app = web.Application(client_max_size=services.cfg.limits.max_body_bytes, middlewares=[never_500_silently])
    app[SERVICES] = services
    app[METRICS] = Metrics()
    app[WORK] = _work_runner(services, app[METRICS])
    app[LIMITER] = RateLimiter(services.cfg.limits.rate_per_second, services.cfg.limits.rate_burst)
    app.router.add_post("/api/v1/dossiers", post_dossier)
    app.router.add_get("/api/v1/dossiers", list_dossiers)
    app.router.add_get("/api/v1/dossiers/{id}", get_dossier)
    forwarding_api.add_routes(app.router)  # before the generic notice route: it adds the upstream's notices
    app.router.add_get("/api/v1/dossiers/{id}/notices/{kind}", get_notice)
    app.router.add_get("/api/v1/dossiers/{id}/original", get_original)
    app.router.add_get("/api/v1/dossiers/{id}/evidence", get_evidence)
    app.router.add_get("/api/v1/units/{mst}", get_unit)
    from interchange.api.delivery import add_routes as add_delivery_routes  # it builds on this module

    add_delivery_routes(app)
    from interchange.api.book import get_person_book  # book.py builds on this module
    app.router.add_get("/api/v1/persons/{pid}/book", get_person_book)
    app.router.add_post("/api/v1/verify", post_verify)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/", index)
    return app

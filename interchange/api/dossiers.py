"""The dossier routes (SPEC §5): submit, list, read one, its notices, original and evidence;
a unit's registration; verifying any signed XML."""

from __future__ import annotations

import json
import time
from datetime import datetime

from aiohttp import web

from interchange import codes
from interchange.api import models as m
from interchange.api.http import (
    BODY_STATUS,
    IDEMPOTENCY_KEY,
    LIMITER,
    RECEIPT_STARTED,
    SERVICES,
    XML_RESPONSE,
    api_key,
    not_found,
    parse_query,
    problem_json,
    query_time,
    reader,
    receipt_answered,
    refusal_response,
    retry_after,
    transport_problem,
    typed,
    unauthenticated,
    xml_body,
)
from interchange.api.observe import request_id_of
from interchange.clock import utc_now
from interchange.errors import Problem
from interchange.evidence.bundle import build_bundle
from interchange.kinds import SLUG_OF_NOTICE
from interchange.receiving.receipt import CONFLICT, FORBIDDEN, RECEIVED_NOW, REFUSED_NOW, REPLAYED
from interchange.spool import Spooled
from interchange.store.types import ApiKey, Dossier, Unit, WorkItem
from interchange.trust.revocation import CRL, INLINE_KEYS, OCSP, REF_KEYS, kept_data
from interchange.workers import WorkerBudgetExceeded, WorkerUnavailable

SUBMITTING_ROLES = ("submitter", "ivan", "admin")
ANSWER_STATUS = {RECEIVED_NOW: 202, REFUSED_NOW: 422, REPLAYED: 200}


async def post_dossier(request: web.Request) -> web.Response:
    """POST /api/v1/dossiers: the HTTP side of interchange.receiving (limits, key, body, answer).
    Nothing is signed for a caller without a valid key: its 401 is problem JSON."""
    request[RECEIPT_STARTED] = time.perf_counter()
    services = request.app[SERVICES]
    key = await api_key(request)
    if key is None:
        receipt_answered(request, 401, "rejected", code=codes.AUTH_MISSING)
        return unauthenticated(request)
    wait = request.app[LIMITER].take(key.key_id)
    if wait:
        return refusal_response(
            request,
            429,
            transport_problem(
                codes.RATE_LIMIT, "Gửi quá nhiều yêu cầu; hãy thử lại sau.", "Too many requests for this API key; retry later."
            ),
            **{"Retry-After": retry_after(wait)},
        )
    if key.role not in SUBMITTING_ROLES:
        return refusal_response(
            request, 403, transport_problem(codes.AUTH_ROLE, "Vai trò này không được nộp hồ sơ.", f"The role {key.role} may not submit dossiers.")
        )
    body = await xml_body(request, services.limits.max_body_bytes)
    if isinstance(body, Problem):
        return refusal_response(request, BODY_STATUS[body.code], body)
    try:
        return await _receive(request, key, body)
    finally:
        if isinstance(body, Spooled):
            body.remove()  # stored by now (or refused, or failed): the file's work is done


async def _receive(request: web.Request, key: ApiKey, body: bytes | Spooled) -> web.Response:
    services = request.app[SERVICES]
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
        return refusal_response(
            request,
            422,
            transport_problem(
                codes.IDEMPOTENCY_KEY, "Idempotency-Key không hợp lệ.", "Idempotency-Key must be 1-200 printable ASCII characters."
            ),
        )
    try:
        answer = await services.reception.receive(body, key, idempotency_key=idempotency_key,
                                                  request_id=request_id_of(request))  # fmt: skip
    except WorkerUnavailable as exc:  # a worker process ended (past its budget, or died): nothing stored
        return refusal_response(request, 503, worker_problem(exc), **{"Retry-After": str(exc.retry_after)})
    if answer.outcome in (FORBIDDEN, CONFLICT):
        return refusal_response(request, 403 if answer.outcome == FORBIDDEN else 409, answer.problem)
    status = ANSWER_STATUS[answer.outcome]
    receipt_answered(request, status, answer.outcome, dossier=answer.dossier, stages=answer.seconds)
    return web.Response(
        status=status,
        body=answer.notice,
        content_type=XML_RESPONSE,
        charset="utf-8",
        headers={"Location": f"/api/v1/dossiers/{answer.dossier.id}", "X-Transaction-Id": answer.dossier.id},
    )


def worker_problem(exc: WorkerUnavailable) -> Problem:
    if isinstance(exc, WorkerBudgetExceeded):
        return transport_problem(
            codes.WORKER_BUDGET,
            "Hồ sơ cần quá nhiều thời gian xử lý; chưa lưu gì, hãy thử lại sau.",
            f"Checking the dossier took longer than the server's budget ({exc.stage}); nothing was stored, retry later.",
        )
    return transport_problem(
        codes.WORKER_LOST,
        "Tiến trình xử lý hồ sơ bị dừng; chưa lưu gì, hãy thử lại sau.",
        f"The process checking the dossier ended ({exc.stage}); nothing was stored, retry later.",
    )


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
        # how many, inline (stored before migration 0009) or named by SHA-256
        counts = {INLINE_KEYS[kind]: sum(map(len, kept_data(revocation, kind))) for kind in (CRL, OCSP)}
        out["revocation"] = {
            **{k: v for k, v in revocation.items() if k not in (*INLINE_KEYS.values(), *REF_KEYS.values())},
            **counts,
        }
    return out


async def list_dossiers(request: web.Request) -> web.Response:
    key = await reader(request)
    q = parse_query(request, m.DossierQuery)  # 400 naming the parameter (and its values) when one is not valid
    try:
        items, cursor = await request.app[SERVICES].store.dossiers.list_page(
            key.scope,
            state=q.state,
            procedure=q.procedure,
            period=q.period,
            so_ho_so=q.so_ho_so or None,
            received_from=query_time(q.from_, "from"),
            received_to=query_time(q.to, "to"),
            limit=q.limit,
            cursor=q.cursor,
            unit_mst=q.mst or None,
        )
    except ValueError:
        return problem_json(400, codes.BAD_QUERY, "cursor: not a next_cursor this server gave",
                            vi="Tham số cursor không phải next_cursor do máy chủ trả về.", parameter="cursor")  # fmt: skip
    now = utc_now()
    return typed(m.DossierPage, {"items": [_dossier_json(d, now) for d in items], "next_cursor": cursor})


async def get_dossier(request: web.Request) -> web.Response:
    key = await reader(request)
    store = request.app[SERVICES].store
    dossier = await store.dossiers.get(request.match_info["id"], key.scope)
    if dossier is None:
        return not_found("dossier")  # also for another unit's: no existence leak
    return typed(m.Dossier, _dossier_json(dossier, utc_now(), await store.work.of(dossier.id)))


async def get_unit(request: web.Request) -> web.Response:
    """A unit's registration for electronic transactions (SPEC §9)."""
    key = await reader(request)
    unit = await request.app[SERVICES].store.units.get(request.match_info["mst"], key.scope)
    if unit is None:
        return not_found("unit")  # or not the caller's to see
    return typed(m.UnitRegistration, _unit_json(unit))


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
    key = await reader(request)
    kind = request.match_info["kind"]
    if kind not in SLUG_OF_NOTICE.values():
        return problem_json(404, codes.NOT_FOUND, f"notice kinds are {', '.join(SLUG_OF_NOTICE.values())}",
                            vi="Không có loại thông báo này.", parameter="kind", allowed=list(SLUG_OF_NOTICE.values()))
    xml = await request.app[SERVICES].store.dossiers.notice(request.match_info["id"], kind, key.scope)
    if xml is None:
        return not_found("notice")
    return web.Response(body=xml, content_type=XML_RESPONSE, charset="utf-8")


async def get_original(request: web.Request) -> web.StreamResponse:
    key = await reader(request)
    data = await request.app[SERVICES].store.dossiers.original_file(request.match_info["id"], key.scope)
    if data is None:
        return not_found("dossier")
    if not isinstance(data, Spooled):
        return web.Response(body=data, content_type=XML_RESPONSE)
    try:  # a large original, from its file a MiB at a time
        resp = web.StreamResponse(headers={"Content-Type": XML_RESPONSE})
        resp.content_length = data.size
        await resp.prepare(request)
        for chunk in data.chunks():
            await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        data.remove()


async def post_verify(request: web.Request) -> web.Response:
    """A signature report on any signed XML: an envelope, a form or a notice (SPEC §5). Any role."""
    await reader(request)  # any valid key may ask
    services = request.app[SERVICES]
    body = await xml_body(request, services.limits.max_body_bytes)
    if isinstance(body, Problem):
        return problem_json(BODY_STATUS[body.code], body.code, body.message_en, vi=body.message_vi)
    try:
        report = await services.workers.verify(body, utc_now())
    except WorkerUnavailable as exc:
        problem = worker_problem(exc)
        return problem_json(503, problem.code, problem.message_en, vi=problem.message_vi,
                            **{"Retry-After": str(exc.retry_after)})  # fmt: skip
    finally:
        if isinstance(body, Spooled):
            body.remove()
    return typed(m.VerifyReport, json.loads(json.dumps(report, default=str)))


async def get_evidence(request: web.Request) -> web.Response:
    """The dossier's evidence bundle (ZIP), checked offline by `interchange evidence verify`."""
    key = await reader(request)
    services = request.app[SERVICES]
    parts = await services.store.dossiers.evidence_parts(request.match_info["id"], key.scope)
    if parts is None:
        return not_found("dossier")
    body = await build_bundle(parts.dossier, parts.original, parts.notices, parts.audit, services.signer,
                              revocation=parts.revocation)
    return web.Response(
        body=body,
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="evidence-{parts.dossier.id}.zip"'},
    )

"""Role ivan in the API: where a dossier's forwarding upstream stands, every try, and the
upstream's own receipt or refusal (`bhxh-tiep-nhan`, `bhxh-tu-choi`). The upstream's KET_QUA
is the dossier's result: it is read as `ket-qua` through the ordinary notice route."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from interchange import codes
from interchange.api import models as m
from interchange.api.http import SERVICES, XML_RESPONSE, not_found, problem_json, read_body, reader, typed
from interchange.clock import utc_now
from interchange.forwarding import LEGAL_CEILING
from interchange.forwarding.push import PushChannel
from interchange.kinds import SLUG_RESULT, SLUG_UPSTREAM_RECEIPT, SLUG_UPSTREAM_REFUSAL, WORK_FORWARD
from interchange.store.forwarding import PENDING, Forwarding

UPSTREAM_KINDS = (SLUG_UPSTREAM_RECEIPT, SLUG_UPSTREAM_REFUSAL)
PUSH = web.AppKey("upstream_push", PushChannel)  # role ivan with [upstream] push_url (set by the server)
MAX_PUSHED_BYTES = 4 * 1024 * 1024  # a notice with the capped error list is far smaller




def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


async def get_forwarding(request: web.Request) -> web.Response:
    key = await reader(request)
    store = request.app[SERVICES].store
    dossier = await store.dossiers.get(request.match_info["id"], key.scope)
    if dossier is None:
        return not_found("dossier")  # also for another unit's
    fw = await store.forwarding.of(dossier.id)
    if fw is None:
        item = next((w for w in await store.work.of(dossier.id) if w.kind == WORK_FORWARD), None)
        if item is None:
            return problem_json(
                404, codes.NOT_FORWARDED,
                "this dossier is not forwarded upstream (it was refused at receipt, or the server is not in role ivan)",
                vi="Hồ sơ này không được chuyển tiếp lên cơ quan BHXH.",
            )  # fmt: skip
        fw = Forwarding(
            dossier_id=dossier.id, state=PENDING, due_at=item.due_at, attempts=0, next_try_at=item.not_before,
            last_error=item.last_error, upstream_id=None, forwarded_at=None, result_due_at=None, polls=0,
            relayed_at=None,
        )  # fmt: skip
    now = datetime.now(UTC)
    base = f"/api/v1/dossiers/{dossier.id}"
    legal = dossier.received_at + LEGAL_CEILING
    upstream_at = fw.forwarded_at or now  # the target is met when the upstream answered the bytes
    return typed(m.Forwarding, {
        "dossier_id": dossier.id,
        "state": fw.state,
        "due_at": _iso(fw.due_at),
        "legal_deadline_at": legal.isoformat(),
        "overdue": upstream_at > fw.due_at,
        "past_legal_deadline": upstream_at > legal,
        "forwarded_at": _iso(fw.forwarded_at),
        "upstream_id": fw.upstream_id,
        "attempts": fw.attempts,
        "next_try_at": _iso(fw.next_try_at),
        "last_error": fw.last_error,
        "result": {
            "due_at": _iso(fw.result_due_at),
            "polls": fw.polls,
            "relayed_at": _iso(fw.relayed_at),
            "state": dossier.state,
        },
        "notices": {k: f"{base}/notices/{k}" for k in dossier.notice_kinds if k in (*UPSTREAM_KINDS, SLUG_RESULT)},
        "tries": [
            {"n": a.n, "kind": a.kind, "at": a.at.isoformat(), "outcome": a.outcome, "http_status": a.http_status,
             "error": a.error, "duration_ms": a.duration_ms, "upstream_id": a.upstream_id}
            for a in await store.forwarding.attempts_of(dossier.id)
        ],
    })  # fmt: skip


async def get_upstream_notice(request: web.Request) -> web.Response:
    key = await reader(request)
    xml = await request.app[SERVICES].store.dossiers.notice(request.match_info["id"], request.match_info["kind"], key.scope)
    if xml is None:
        return not_found("notice")
    return web.Response(body=xml, content_type=XML_RESPONSE, charset="utf-8")


async def post_upstream_notice(request: web.Request) -> web.Response:
    """Role ivan: a notice the agency pushes (its callback delivery to this I-VAN). The path's
    token stands for the key: the notice itself is believed only for its signature by the
    agency's pinned notice signer and its binding to a dossier forwarded from here."""
    channel = request.app.get(PUSH)
    if channel is None or not channel.admits(request.match_info["token"]):
        return problem_json(404, codes.NOT_FOUND, "no such push channel")
    too_large = (request.content_length or 0) > MAX_PUSHED_BYTES
    body = None if too_large else await read_body(request, MAX_PUSHED_BYTES, spool=False)  # chunked bodies counted too
    if body is None:
        return problem_json(413, codes.UPSTREAM_NOTICE, f"a pushed notice is at most {MAX_PUSHED_BYTES} bytes")
    pushed = await channel.accept(
        request.headers.get("X-Transaction-Id", ""), request.headers.get("X-Notice-Kind", ""), body, utc_now(),
        request.headers.get("X-Delivery-Attempt"),
    )
    if pushed.status >= 300:
        code = codes.NOT_FORWARDED if pushed.outcome == "unknown" else codes.UPSTREAM_NOTICE
        wait = {} if pushed.retry_after is None else {"Retry-After": str(pushed.retry_after)}
        return problem_json(pushed.status, code, pushed.message, **wait)
    return typed(m.PushOutcome, {"outcome": pushed.outcome, "message": pushed.message, "dossier_id": pushed.dossier_id},
                 status=pushed.status)  # fmt: skip

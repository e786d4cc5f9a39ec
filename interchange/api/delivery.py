"""Callback registration and the delivery record of a dossier (issue #4 item 5).

A submitter key registers its unit's callback URL, an ivan key its I-VAN's: one URL per
owner. Every notice stored after that for a dossier of the owner is POSTed there.
"""

from __future__ import annotations

import json

from aiohttp import web

from interchange import codes
from interchange.api import models as m
from interchange.api.http import SERVICES, forbidden, not_found, problem_json, reader, typed
from interchange.clock import utc_now
from interchange.delivery.callback import UrlRefused, check_url_shape
from interchange.store.deliveries import EMAIL, Attempt, Delivery, Subscription
from interchange.store.types import ApiKey

CALLBACK_ROLES = ("submitter", "ivan")


def _owner(key: ApiKey) -> str:
    if key.role not in CALLBACK_ROLES:
        raise forbidden(
            f"a callback URL belongs to a unit (submitter key) or an I-VAN (ivan key), not to the role {key.role}",
            vi="Địa chỉ callback thuộc về đơn vị (khóa submitter) hoặc I-VAN (khóa ivan).",
        )
    return key.owner


def _subscription_json(s: Subscription) -> dict:
    return {"owner": s.owner, "url": s.url, "key_id": s.key_id, "created_at": s.created_at.isoformat()}


async def put_callback(request: web.Request) -> web.Response:
    """Register or replace the caller's callback URL: JSON {"url": "https://..."}."""
    key = await reader(request)
    owner = _owner(key)
    if request.content_type != "application/json":
        return problem_json(415, codes.CONTENT_TYPE, f"send the body as application/json, not {request.content_type}",
                            vi="Nội dung phải gửi với Content-Type application/json.")  # fmt: skip
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return problem_json(400, codes.BAD_JSON, 'the body must be JSON: {"url": "https://..."}',
                            vi='Nội dung phải là JSON: {"url": "https://..."}.')  # fmt: skip
    if not isinstance(body, dict) or "url" not in body:
        return problem_json(400, codes.BAD_JSON, 'the body must be a JSON object with "url"',
                            vi='Nội dung phải là đối tượng JSON có "url".', pointer="/url")  # fmt: skip
    cfg = request.app[SERVICES].delivery
    try:  # by its shape only: no DNS lookup here; what the name resolves to is checked at every connection
        url = check_url_shape(body["url"], allow_private=cfg.allow_private_urls)
    except UrlRefused as exc:
        return problem_json(422, codes.CALLBACK_URL, f"callback URL refused: {exc}",
                            vi="Địa chỉ callback không được chấp nhận.", pointer="/url")  # fmt: skip
    sub, created = await request.app[SERVICES].store.deliveries.subscribe(owner, url, key.key_id, utc_now())
    return typed(m.Subscription, _subscription_json(sub), status=201 if created else 200)


async def get_callback(request: web.Request) -> web.Response:
    key = await reader(request)
    sub = await request.app[SERVICES].store.deliveries.subscription(_owner(key))
    if sub is None:
        return problem_json(404, codes.NOT_FOUND, "no callback URL is registered for this unit or I-VAN",
                            vi="Đơn vị hoặc I-VAN này chưa đăng ký địa chỉ callback.")
    return typed(m.Subscription, _subscription_json(sub))


async def delete_callback(request: web.Request) -> web.Response:
    key = await reader(request)
    if not await request.app[SERVICES].store.deliveries.unsubscribe(_owner(key), key.key_id):
        return problem_json(404, codes.NOT_FOUND, "no callback URL is registered for this unit or I-VAN",
                            vi="Đơn vị hoặc I-VAN này chưa đăng ký địa chỉ callback.")
    return web.Response(status=204)


def _delivery_json(d: Delivery, attempts: list[Attempt], key: ApiKey) -> dict:
    # Another party's callback URL may carry its secret: only its owner (and auditors) see it.
    own = key.scope.all or d.recipient == key.owner or (d.channel == EMAIL and key.role == "submitter"
                                                         and d.recipient == f"mst:{key.mst}")
    return {
        "id": d.id,
        "notice": d.notice_kind,
        "channel": d.channel,
        "recipient": d.recipient,
        "target": d.target if own else None,
        "state": d.state,
        "attempt_count": d.attempts,
        "next_at": d.next_at.isoformat() if d.next_at else None,
        "last_error": d.last_error,
        "created_at": d.created_at.isoformat(),
        "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
        "attempts": [
            {"n": a.n, "at": a.at.isoformat(), "status": a.status, "error": a.error, "duration_ms": a.duration_ms}
            for a in attempts
        ],
    }


async def get_deliveries(request: web.Request) -> web.Response:
    """Every delivery of a dossier's notices with every attempt; same visibility as the dossier."""
    key = await reader(request)
    store = request.app[SERVICES].store
    dossier = await store.dossiers.get(request.match_info["id"], key.scope)
    if dossier is None:
        return not_found("dossier")
    found = await store.deliveries.of(dossier.id)
    return typed(m.Deliveries, {"dossier": dossier.id, "deliveries": [_delivery_json(d, a, key) for d, a in found]})

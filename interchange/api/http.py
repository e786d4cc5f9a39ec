"""What every route of the HTTP shell shares: the services it is given, API keys and rate
limits, problem JSON, signed refusals, the XML body and query times."""

from __future__ import annotations

import io
import json
import logging
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError

from interchange import codes
from interchange.api.metrics import Metrics
from interchange.api.ratelimit import RateLimiter
from interchange.clock import utc_now
from interchange.config import DeliveryConfig, LimitsConfig
from interchange.errors import Layer, Problem
from interchange.kinds import NOTICE_REFUSAL
from interchange.legal.params import LegalParameters
from interchange.notices.notice import NoticeData, NoticeKeyUnavailable, NoticeSigner
from interchange.receiving.receipt import Reception
from interchange.store.db import StoreUnavailable
from interchange.store.store import Store
from interchange.store.types import FACILITY, ApiKey
from interchange.workcal import WorkCalendar
from interchange.workers import ReceiptWorkers

XML_TYPES = {"application/xml", "text/xml"}
XML_RESPONSE = "application/xml"
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
CARD_ROLES = (FACILITY, "admin")  # who may look up e-HI cards
# Problem code -> HTTP status
BODY_STATUS = {codes.CONTENT_TYPE: 415, codes.CONTENT_ENCODING: 415, codes.BODY_UNREADABLE: 400,
               codes.BODY_TOO_LARGE: 413, codes.BODY_EMPTY: 422}  # fmt: skip
# A payroll vendor may compress: aiohttp decodes these as the body is read, in bounded steps, and
# the decoded size is what `client_max_size` (limits.max_body_bytes) bounds: a zip bomb is a 413.
CONTENT_ENCODINGS = {"", "identity", "gzip", "x-gzip", "deflate"}


@dataclass
class Services:
    """What the HTTP shell is given by the composition root (interchange.server)."""

    limits: LimitsConfig  # [limits]: body size, rate per key
    delivery: DeliveryConfig  # [delivery]: the callback URL check
    params: LegalParameters  # the legal parameters of [rules] (the e-SI book)
    store: Store
    workers: ReceiptWorkers
    signer: NoticeSigner
    calendar: WorkCalendar
    reception: Reception
    anchors: Path | None = None  # [trust] anchors_dir, resolved (reported by /readyz)


SERVICES = web.AppKey("services", Services)
METRICS = web.AppKey("metrics", Metrics)
LIMITER = web.AppKey("limiter", RateLimiter)


log = logging.getLogger("interchange.api")
SUBMIT_PATH = "/api/v1/dossiers"
NOTICE_KEY_RETRY_SECONDS = 300  # an expired notice certificate is replaced by hand: ask for a long wait


@web.middleware
async def unavailable_as_503(request: web.Request, handler):
    """A component the request needs cannot be used now: 503 with Retry-After, never a 500.

    The store (StoreUnavailable: database unreachable, read-only, full): nothing was stored or
    acknowledged; a POST of a dossier gets a signed TU_CHOI with STORE-UNAVAILABLE, the other
    routes problem JSON. The notice key (NoticeKeyUnavailable: its certificate expired while the
    server ran): problem JSON, since nothing may be signed with it. Each is logged by whoever
    saw it first (the store logs when the database fails and when it works again)."""
    try:
        return await handler(request)
    except StoreUnavailable as exc:
        wait = str(exc.retry_after)
        if request.method == "POST" and request.path == SUBMIT_PATH:
            problem = transport_problem(
                codes.STORE_UNAVAILABLE,
                "Cơ sở dữ liệu tạm thời không dùng được; hồ sơ chưa được lưu, hãy gửi lại sau.",
                f"The database cannot be used now; nothing was stored: send again in {wait} s.",
            )
            try:
                return refusal_response(request, 503, problem, **{"Retry-After": wait})
            except NoticeKeyUnavailable:
                pass  # not signable either: the problem JSON below
        return problem_json(503, codes.STORE_UNAVAILABLE, f"the database cannot be used now: {exc}",
                            **{"Retry-After": wait})  # fmt: skip
    except NoticeKeyUnavailable as exc:
        log.error("%s %s: %s; answering 503", request.method, request.path, exc)
        return problem_json(503, codes.NOTICE_KEY_UNAVAILABLE, str(exc),
                            **{"Retry-After": str(NOTICE_KEY_RETRY_SECONDS)})  # fmt: skip


def problem_json(status: int, code: str, message: str, **headers) -> web.Response:
    return web.json_response({"status": status, "code": code, "message": message}, status=status, headers=headers)


def transport_problem(code: str, vi: str, en: str) -> Problem:
    return Problem(layer=Layer.TRANSPORT, code=code, message_vi=vi, message_en=en, xpath="/")


def refusal_response(request: web.Request, status: int, problem: Problem, **headers) -> web.Response:
    """A signed TU_CHOI for a request refused before anything was stored."""
    services = request.app[SERVICES]
    now = utc_now()
    notice = services.signer.sign(
        NoticeData(kind=NOTICE_REFUSAL, transaction_id=uuid.uuid4().hex, received_at=now, issued_at=now, problems=[problem])
    )
    request.app[METRICS].receipts.labels(outcome=f"http_{status}").inc()
    return web.Response(status=status, body=notice, content_type=XML_RESPONSE, charset="utf-8", headers=headers)


async def api_key(request: web.Request) -> ApiKey | None:
    """The valid key of the request's bearer token, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return await request.app[SERVICES].store.keys.authenticate(token.strip())


async def reader(request: web.Request) -> ApiKey:
    """The caller's key for a JSON route; 401 without a valid one, 429 past its rate, 403 for a
    facility key (a health facility looks up e-HI cards and nothing else: `card_reader`)."""
    key = await _authenticated(request)
    if key.role == FACILITY:
        raise forbidden("a facility key may only look up e-HI cards (/api/v1/hi-cards)")
    return key


async def card_reader(request: web.Request) -> ApiKey:
    """The caller's key for an e-HI card lookup: a facility or an admin key (401, 429, 403)."""
    key = await _authenticated(request)
    if key.role not in CARD_ROLES:
        raise forbidden(f"the role {key.role} may not look up e-HI cards")
    return key


def forbidden(message: str) -> web.HTTPForbidden:
    return web.HTTPForbidden(
        text=json.dumps({"status": 403, "code": codes.AUTH_ROLE, "message": message}), content_type="application/json"
    )


async def _authenticated(request: web.Request) -> ApiKey:
    """The caller's key, rate limited; 401 without a valid one, 429 past its rate."""
    key = await api_key(request)
    if key is None:
        raise web.HTTPUnauthorized(
            text=json.dumps({"status": 401, "code": codes.AUTH_MISSING,
                             "message": "a valid API key is required (Authorization: Bearer ...)"}),
            content_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="interchange"'},
        )  # fmt: skip
    wait = request.app[LIMITER].take(key.key_id)
    if wait:
        raise web.HTTPTooManyRequests(
            text=json.dumps({"status": 429, "code": codes.RATE_LIMIT, "message": "too many requests for this API key"}),
            content_type="application/json",
            headers={"Retry-After": retry_after(wait)},
        )
    return key


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))


def unreadable_problem(exc: web.RequestPayloadError) -> Problem:
    cause = "it does not decode with its Content-Encoding" if isinstance(exc.__cause__, ContentEncodingError) else (
        "its framing is broken")  # fmt: skip
    return transport_problem(codes.BODY_UNREADABLE, "Không đọc được nội dung yêu cầu.",
                             f"The request body could not be read: {cause}.")  # fmt: skip


async def xml_body(request: web.Request, limit: int) -> bytes | Problem:
    """The XML body, or why it is refused (its code's status in BODY_STATUS): not XML, not in a
    Content-Encoding we decode, larger than `limit` once decoded (said before reading when the
    length is declared), not decodable, or empty."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in CONTENT_ENCODINGS:
        return transport_problem(
            codes.CONTENT_ENCODING,
            "Chỉ nhận hồ sơ nén gzip hoặc deflate.",
            f"Content-Encoding {encoding[:40]!r} is not supported; send the dossier as is, or gzip or deflate it.",
        )
    if request.content_type not in XML_TYPES:
        return transport_problem(
            codes.CONTENT_TYPE,
            "Hồ sơ phải gửi với Content-Type application/xml.",
            f"Send the dossier as application/xml, not {request.content_type or '(none)'}.",
        )
    too_large = transport_problem(
        codes.BODY_TOO_LARGE, f"Hồ sơ vượt quá {limit} byte.", f"The dossier is larger than the limit of {limit} bytes."
    )
    if request.content_length is not None and request.content_length > limit:
        return too_large
    try:
        body = await read_whole(request, limit)
        if body is None:
            return too_large
    except web.HTTPRequestEntityTooLarge:
        return too_large
    except web.RequestPayloadError as exc:
        if client_gone(request):
            raise  # not an answer to give: never_500_silently logs the disconnect
        return unreadable_problem(exc)
    return body or transport_problem(codes.BODY_EMPTY, "Hồ sơ rỗng.", "The request body is empty.")


async def read_whole(request: web.Request, limit: int) -> bytes | None:
    """The (decoded) body in one buffer of about its size, or None past `limit` bytes, checked as
    it arrives. aiohttp's `read()` ends holding the body twice (its bytearray and a bytes copy of
    it); a BytesIO grows by an eighth and hands its buffer over without a copy."""
    out = io.BytesIO()
    while chunk := await request.content.readany():
        if out.tell() + len(chunk) > limit:
            return None
        out.write(chunk)
    return out.getvalue()


def client_gone(request: web.Request) -> bool:
    """The client closed the connection (or it was cut off): no answer can reach it."""
    transport = request.transport
    return transport is None or transport.is_closing()


def query_time(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 time from the query (UTC when no offset is given); 400 when it is not one."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"status": 400, "code": codes.BAD_QUERY, "message": f"{name} must be an ISO 8601 time"}),
            content_type="application/json",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

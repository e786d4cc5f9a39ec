"""What every route of the HTTP shell shares: the services it is given, API keys and rate
limits, problem JSON, signed refusals, the XML body and query times."""

from __future__ import annotations

import io
import json
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from pydantic import BaseModel, ValidationError

from interchange import codes
from interchange.api.metrics import Metrics
from interchange.api.ratelimit import RateLimiter
from interchange.clock import utc_now
from interchange.codes import CATALOGUE
from interchange.config import DeliveryConfig, LimitsConfig
from interchange.errors import Layer, Problem
from interchange.kinds import NOTICE_REFUSAL
from interchange.legal.params import LegalParameters
from interchange.notices.notice import NoticeData, NoticeKeyUnavailable, NoticeSigner
from interchange.receiving.receipt import Reception
from interchange.spool import LARGE, Spooled, SpoolWriter
from interchange.store.db import StoreUnavailable
from interchange.store.store import Store
from interchange.store.types import FACILITY, ApiKey, Dossier
from interchange.workcal import WorkCalendar
from interchange.workers import ReceiptWorkers

XML_TYPES = {"application/xml", "text/xml"}
XML_RESPONSE = "application/xml"
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # the pattern of the API document
QueryModel = TypeVar("QueryModel", bound=BaseModel)
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
                            vi="Cơ sở dữ liệu tạm thời không dùng được; hãy thử lại sau.", **{"Retry-After": wait})
    except NoticeKeyUnavailable as exc:
        log.error("%s %s: %s; answering 503", request.method, request.path, exc)
        return problem_json(503, codes.NOTICE_KEY_UNAVAILABLE, str(exc), vi="Khóa ký thông báo của máy chủ không dùng "
                            "được; hãy thử lại sau.", **{"Retry-After": str(NOTICE_KEY_RETRY_SECONDS)})  # fmt: skip


PROBLEM_TYPE = "application/problem+json"
PROBLEM_KEY = web.ResponseKey("problem", dict)  # the problem's members on its response, completed by `place_problem`


def problem_json(status: int, code: str, detail_en: str, *, vi: str | None = None, parameter: str | None = None,
                 pointer: str | None = None, allowed: list[str] | tuple[str, ...] | None = None,
                 **headers) -> web.Response:  # fmt: skip
    """An RFC 9457 problem (application/problem+json): the stable `code` with what it means in
    Vietnamese and English (`title`, `title_en`: interchange.codes), this occurrence in both
    (`detail`: `vi`, or the code's Vietnamese text; `detail_en`) and the place: `instance` (the
    request's path, filled in by the middleware) and the `parameter`, `pointer` or `allowed` values
    when there are some."""
    known = CATALOGUE.get(code)
    problem = {
        "type": f"urn:interchange:problem:{code}",
        "title": known.vi if known else code,
        "title_en": known.en if known else code,
        "status": status,
        "detail": vi or (known.vi if known else detail_en),
        "detail_en": detail_en,
        "code": code,
        "instance": "",
        "message": detail_en,
    }
    for name, value in (("parameter", parameter), ("pointer", pointer), ("allowed", allowed)):
        if value is not None:
            problem[name] = list(value) if name == "allowed" else value
    response = web.Response(status=status, body=_dumps(problem), content_type=PROBLEM_TYPE, charset="utf-8",
                            headers=headers)  # fmt: skip
    response[PROBLEM_KEY] = problem
    return response


def _dumps(value: dict) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def place_problem(request: web.Request, response: web.StreamResponse, request_id: str | None) -> None:
    """Complete a problem answer with where it happened: the request's path and id."""
    problem = response.get(PROBLEM_KEY) if isinstance(response, web.Response) else None
    if problem is None or problem["instance"]:
        return
    problem["instance"] = request.path
    if request_id:
        problem["request_id"] = request_id
    response.body = _dumps(problem)


class ProblemError(Exception):
    """Raised by a helper deep in a route: answered with its problem by the middleware."""

    def __init__(self, response: web.Response):
        super().__init__(response.get(PROBLEM_KEY, {}).get("detail_en", ""))
        self.response = response


NOT_FOUND_TEXT = {"dossier": ("no such dossier", "Không có hồ sơ này."),
                  "notice": ("no such notice", "Không có thông báo này."),
                  "unit": ("no such registered unit", "Không có đơn vị đã đăng ký này."),
                  "person": ("no such person", "Không có người này.")}  # fmt: skip


def not_found(what: str) -> web.Response:
    """404 NOT-FOUND: also for what exists but is not the caller's to see (no existence leak)."""
    en, vi = NOT_FOUND_TEXT[what]
    return problem_json(404, codes.NOT_FOUND, f"{en} (or not the caller's to see)", vi=f"{vi} (hoặc không được xem)")


def typed(model: type[BaseModel], data: dict, status: int = 200, **headers) -> web.Response:
    """A JSON answer checked against its model (the API document's schema). An answer that does not
    match is still sent as it is, with an error in the log: the document must be mended."""
    try:
        body = model.model_validate(data).model_dump_json(exclude_unset=True)
    except ValidationError as exc:
        log.error("the answer does not match its model %s: %s", model.__name__, " ".join(str(exc).split())[:500])
        body = json.dumps(data, ensure_ascii=False, default=str)
    return web.Response(status=status, body=body, content_type="application/json", charset="utf-8", headers=headers)


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # as pydantic writes JSON


def shaped(data: dict, status: int = 200) -> web.Response:
    """A JSON answer built in its model's shape, members in the model's order, written byte for
    byte as `typed` writes it but without the pydantic round trip (a tenth of a card lookup's
    time). Only for answers of strings, integers, booleans and None from the server's own
    records, never for echoed input; the tests compare such answers with `typed`'s."""
    return web.Response(status=status, body=_COMPACT.encode(data), content_type="application/json", charset="utf-8")


def transport_problem(code: str, vi: str, en: str) -> Problem:
    return Problem(layer=Layer.TRANSPORT, code=code, message_vi=vi, message_en=en, xpath="/")


def refusal_response(request: web.Request, status: int, problem: Problem, **headers) -> web.Response:
    """A signed TU_CHOI for a request refused before anything was stored."""
    services = request.app[SERVICES]
    now = utc_now()
    notice = services.signer.sign(
        NoticeData(kind=NOTICE_REFUSAL, transaction_id=uuid.uuid4().hex, received_at=now, issued_at=now, problems=[problem])
    )
    receipt_answered(request, status, "rejected", code=problem.code)
    return web.Response(status=status, body=notice, content_type=XML_RESPONSE, charset="utf-8", headers=headers)


RECEIPT_STARTED = web.RequestKey("receipt_started", float)  # perf_counter() when the POST began


def receipt_answered(request: web.Request, status: int, outcome: str, *, dossier: Dossier | None = None,
                     code: str | None = None, stages: dict[str, float] | None = None) -> None:  # fmt: skip
    """One metric and one log line per POSTed dossier: its id, unit, procedure, outcome (received,
    refused, replay, rejected: refused before it was read), status and milliseconds, in all and by
    stage (`stages`: seconds by name, interchange.receiving.receipt.RECEIPT_STAGES)."""
    started = request.get(RECEIPT_STARTED)
    seconds = time.perf_counter() - started if started is not None else None
    metrics = request.app[METRICS]
    metrics.receipts.labels(outcome=outcome, status=str(status)).inc()
    if seconds is not None:
        metrics.receipt_seconds.observe(seconds)
    for stage, took in (stages or {}).items():
        metrics.receipt_stage_seconds.labels(stage=stage).observe(took)
    fields = {"outcome": outcome, "status": status, "ms": round(seconds * 1000, 1) if seconds is not None else None,
              "id": dossier.id if dossier else None, "so_ho_so": dossier.so_ho_so if dossier else None,
              "unit": dossier.unit_mst if dossier else None, "procedure": dossier.procedure if dossier else None,
              "code": code}  # fmt: skip
    if stages:
        fields["stage_ms"] = {stage: round(took * 1000, 1) for stage, took in stages.items()}
    log.info("dossier %s: %s (%s) %s", outcome, fields["id"] or "-", status, code or "", extra={
        "event": "receipt", "fields": fields})  # fmt: skip


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


def forbidden(message: str, vi: str | None = None) -> ProblemError:
    return ProblemError(problem_json(403, codes.AUTH_ROLE, message, vi=vi))


async def _authenticated(request: web.Request) -> ApiKey:
    """The caller's key, rate limited; 401 without a valid one, 429 past its rate."""
    key = await api_key(request)
    if key is None:
        raise ProblemError(unauthenticated(request))
    wait = request.app[LIMITER].take(key.key_id)
    if wait:
        raise ProblemError(problem_json(429, codes.RATE_LIMIT, "too many requests for this API key; retry later",
                                        **{"Retry-After": retry_after(wait)}))  # fmt: skip
    return key


def unauthenticated(request: web.Request) -> web.Response:
    """401 problem JSON, never signed: AUTH-MISSING without a bearer token, AUTH-INVALID with
    one the server does not know (or that was revoked)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="interchange"'}
    if scheme.lower() != "bearer" or not token.strip():
        return problem_json(401, codes.AUTH_MISSING, "an API key is required: Authorization: Bearer <key>",
                            vi="Cần khóa API: Authorization: Bearer <khóa>.", parameter="Authorization",
                            **challenge)  # fmt: skip
    return problem_json(401, codes.AUTH_INVALID, "this API key is not known to the server, or it was revoked",
                        vi="Khóa API không đúng hoặc đã bị thu hồi.", parameter="Authorization",
                        **{**challenge, "WWW-Authenticate": 'Bearer realm="interchange", error="invalid_token"'})


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))


def unreadable_problem(exc: web.RequestPayloadError) -> Problem:
    cause = "it does not decode with its Content-Encoding" if isinstance(exc.__cause__, ContentEncodingError) else (
        "its framing is broken")  # fmt: skip
    return transport_problem(codes.BODY_UNREADABLE, "Không đọc được nội dung yêu cầu.",
                             f"The request body could not be read: {cause}.")  # fmt: skip


async def xml_body(request: web.Request, limit: int) -> bytes | Spooled | Problem:
    """The XML body, or why it is refused (its code's status in BODY_STATUS): not XML, not in a
    Content-Encoding we decode, larger than `limit` once decoded (said before reading when the
    length is declared), not decodable, or empty. A large body is in a temporary file
    (`read_body`): the caller removes it."""
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
        body = await read_body(request, limit)
        if body is None:
            return too_large
    except web.HTTPRequestEntityTooLarge:
        return too_large
    except web.RequestPayloadError as exc:
        if client_gone(request):
            raise  # not an answer to give: never_500_silently logs the disconnect
        return unreadable_problem(exc)
    return body or transport_problem(codes.BODY_EMPTY, "Hồ sơ rỗng.", "The request body is empty.")


async def read_body(request: web.Request, limit: int, *, spool: bool = True) -> bytes | Spooled | None:
    """The (decoded) body, or None past `limit` bytes, checked as it arrives: in one buffer of about
    its size (aiohttp's `read()` ends holding the body twice, its bytearray and a bytes copy of it;
    a BytesIO grows by an eighth and hands its buffer over without a copy), or, with `spool`, past
    spool.LARGE bytes on into a temporary file as it arrives: the server process never holds a
    large dossier (it goes to a worker process and into the store from the file)."""
    out = io.BytesIO()
    writer: SpoolWriter | None = None
    try:
        while chunk := await request.content.readany():
            size = (out.tell() if writer is None else writer.size) + len(chunk)
            if size > limit:
                if writer is not None:
                    writer.abort()
                return None
            if spool and writer is None and size > LARGE:
                writer = SpoolWriter(digest=True)  # the receipt's digest, as it arrives
                with out.getbuffer() as held:
                    writer.write(held)
                out = io.BytesIO()
            (out if writer is None else writer).write(chunk)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return out.getvalue() if writer is None else writer.finish()


def client_gone(request: web.Request) -> bool:
    """The client closed the connection (or it was cut off): no answer can reach it."""
    transport = request.transport
    return transport is None or transport.is_closing()


def query_time(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 time from the query (UTC when no offset is given); 400 when it is not one."""
    if value is None:
        return None
    try:
        if not TIME.fullmatch(value):
            raise ValueError(value)
        moment = datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        raise ProblemError(problem_json(
            400, codes.BAD_QUERY, f"{name}: {value[:40]!r} is not an ISO 8601 time (YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+07:00)",
            vi=f"{name}: không phải thời điểm theo ISO 8601 (YYYY-MM-DD hoặc YYYY-MM-DDThh:mm:ss+07:00).", parameter=name,
        )) from None  # fmt: skip
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?")


def parse_query(request: web.Request, model: type[QueryModel]) -> QueryModel:
    """The query as its typed model (interchange.api.models; the API document is made from the
    same): 400 BAD-QUERY naming the parameter (and its allowed values) when one is not valid.
    Parameters the model does not name are ignored; an empty `cursor` is no cursor."""
    names = {field.alias or name for name, field in model.model_fields.items()}
    given = {name: request.query.get(name) for name in names if name in request.query}
    if given.get("cursor") == "":
        del given["cursor"]
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "query"
        expected = error.get("ctx", {}).get("expected")
        allowed = re.findall(r"'([^']*)'", expected) if isinstance(expected, str) else None
        value = str(given.get(name, ""))[:40]
        en = f"{name}: {value!r} is not valid ({error['msg']})"
        vi = f"Tham số {name} không hợp lệ: {value!r}."
        if allowed:
            en, vi = f"{name}: {value!r} is not one of {', '.join(allowed)}", f"{vi} Giá trị cho phép: {', '.join(allowed)}."
        raise ProblemError(problem_json(400, codes.BAD_QUERY, en, vi=vi, parameter=name, allowed=allowed)) from None

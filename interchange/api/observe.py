"""What every request goes through first and last: its request id (taken from `X-Request-Id`
when sane, else made; echoed in the answer and written into the dossier's audit entries), one
access-log line, the HTTP metrics by route template, method and status, and problem answers for
everything the JSON API refuses (RFC 9457), aiohttp's own 404 and 405 included."""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time

from aiohttp import web

from interchange import codes
from interchange.api.http import METRICS, ProblemError, place_problem, problem_json

access = logging.getLogger("interchange.access")
REQUEST_ID = web.RequestKey("request_id", str)
SANE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# aiohttp's own refusals, as problems
HTTP_CODES = {404: codes.NOT_FOUND, 405: codes.METHOD_NOT_ALLOWED, 413: codes.BODY_TOO_LARGE}
HTTP_TEXT = {404: ("no such path", "Không có đường dẫn này."),
             405: ("this path does not take this method (see Allow)", "Đường dẫn này không nhận phương thức này."),
             413: ("the body is larger than the limit", "Nội dung yêu cầu vượt quá kích thước cho phép.")}  # fmt: skip


def request_id_of(request: web.Request) -> str:
    return request.get(REQUEST_ID) or ""


def route_of(request: web.Request) -> str:
    """The route template (`/api/v1/dossiers/{id}`), never the raw path: a bounded label."""
    info = request.match_info
    resource = info.route.resource if info is not None and info.http_exception is None else None
    return resource.canonical if resource is not None else "(unmatched)"


@web.middleware
async def observe(request: web.Request, handler):
    given = request.headers.get("X-Request-Id", "")
    rid = given if SANE_ID.fullmatch(given) else os.urandom(16).hex()  # 32 hex digits, as uuid4().hex without its cost
    request[REQUEST_ID] = rid
    token = current_request_id.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except ProblemError as exc:
            response = exc.response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _as_problem(exc)
        status = response.status
        place_problem(request, response, rid)
        response.headers["X-Request-Id"] = rid
        return response
    finally:
        seconds = time.perf_counter() - started
        route = route_of(request)
        request.app[METRICS].http_request(route, request.method, status, seconds)
        access.info("%s %s %s", request.method, request.path_qs[:300], status, extra={"event": "access", "fields": {
            "method": request.method, "route": route, "path": request.path[:300], "status": status,
            "ms": round(seconds * 1000, 1), "remote": request.remote, "request_id": rid}})  # fmt: skip
        current_request_id.reset(token)


def _as_problem(exc: web.HTTPException) -> web.Response:
    en, vi = HTTP_TEXT.get(exc.status, (exc.reason, None))
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")}
    return problem_json(exc.status, HTTP_CODES.get(exc.status, codes.BAD_REQUEST), en, vi=vi, **headers)

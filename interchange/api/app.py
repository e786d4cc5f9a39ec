"""The HTTP shell (SPEC §5): the routes and the middleware around them. Handlers translate
between HTTP and the use cases (interchange.receiving, the store's reads); the services they use
are assembled by the composition root (interchange.server).

A dossier's answer is sent only after the store has committed the original bytes, the state and
the signed notice: a crash before that loses nothing acknowledged.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web, web_response
from aiohttp.client_exceptions import ClientConnectionResetError
from aiohttp.http_exceptions import HttpProcessingError

from interchange import codes
from interchange.api import book, cards, console, delivery, dossiers, forwarding, ops
from interchange.api.http import (
    LIMITER,
    METRICS,
    SERVICES,
    ProblemError,
    Services,
    client_gone,
    problem_json,
    unavailable_as_503,
    unreadable_problem,
)
from interchange.api.metrics import Metrics
from interchange.api.observe import observe
from interchange.api.ratelimit import RateLimiter
from interchange.config import ServerConfig
from interchange.workers import WorkerBudgetExceeded, WorkerUnavailable

log = logging.getLogger("interchange.api")
BODY_PACE = web.AppKey("body_pace", tuple)  # ([server] body_seconds, body_min_rate)
CUT_OFF = "interchange.cut_off"  # request key: the body watch closed the connection
WATCH_INTERVAL = 0.5  # seconds between two looks at a body's progress
GONE = (ConnectionResetError, ClientConnectionResetError, web.RequestPayloadError)


@web.middleware
async def never_500_silently(request: web.Request, handler):
    watch = watch_body(request)
    try:
        return await handler(request)
    except (web.HTTPException, ProblemError):
        raise  # answered by `observe`
    except GONE as exc:
        if client_gone(request):  # the client dropped (or was cut off) mid-request: nothing to answer
            if CUT_OFF not in request:
                log.info("client went away during %s %s (%s: %s)", request.method, request.path, type(exc).__name__, exc)
            return web.Response(status=400)  # aiohttp cannot send it; returned so it logs nothing more
        if isinstance(exc, web.RequestPayloadError):
            problem = unreadable_problem(exc)
            return problem_json(400, problem.code, problem.message_en, vi=problem.message_vi)
        log.exception("unexpected error on %s %s", request.method, request.path)
        return problem_json(500, codes.INTERNAL, "unexpected server error; it has been logged")
    except WorkerUnavailable as exc:
        code = codes.WORKER_BUDGET if isinstance(exc, WorkerBudgetExceeded) else codes.WORKER_LOST
        return problem_json(503, code, str(exc), **{"Retry-After": str(exc.retry_after)})
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return problem_json(500, codes.INTERNAL, "unexpected server error; it has been logged")
    finally:
        if watch is not None:
            watch.cancel()


def watch_body(request: web.Request) -> asyncio.Task | None:
    """Slow bodies (slowloris): a body must arrive within `body_seconds` plus one second per
    `body_min_rate` bytes received; past that the connection is closed (one info line). None when
    there is no body to wait for."""
    if not request.body_exists or request.content.is_eof():
        return None
    seconds, min_rate = request.app.get(BODY_PACE, (30.0, 16384))
    if seconds <= 0:
        return None
    return asyncio.get_running_loop().create_task(_watch(request, seconds, max(1, min_rate)))


async def _watch(request: web.Request, seconds: float, min_rate: int) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    content = request.content
    while not content.is_eof():
        await asyncio.sleep(min(WATCH_INTERVAL, seconds))
        taken, received = loop.time() - started, content.total_bytes
        if not content.is_eof() and taken > seconds + received / min_rate:
            request[CUT_OFF] = True
            log.info("cut off a slow body: %s bytes in %.1f s on %s %s from %s",
                     received, taken, request.method, request.path, request.remote)  # fmt: skip
            if request.transport is not None:
                request.transport.close()
            return


class OneLineForBadRequests(logging.Filter):
    """For aiohttp's server logger: a request aiohttp refuses itself with a 400 (malformed HTTP:
    a bad Content-Length, Content-Length with chunked, data after Connection: close, ...), the
    rest of a body that does not decode (drained after its 400), or a client that went away is
    one info line, not an error with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError | ConnectionError | web.RequestPayloadError):
            detail = " ".join(str(getattr(exc, "message", "") or exc).split())[:200]
            record.msg, record.args = "%s: %s: %s", (record.getMessage(), type(exc).__name__, detail)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_bad_requests() -> None:
    """Install OneLineForBadRequests on aiohttp's server logger (once)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, OneLineForBadRequests) for f in logger.filters):
        logger.addFilter(OneLineForBadRequests())


SERVER_NAME = "interchange"


async def _no_version_banner(_request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp's default names the Python and aiohttp versions: a gift to whoever scans for them.
    response.headers["Server"] = SERVER_NAME


def no_version_banner_anywhere() -> None:
    """The 400s aiohttp gives itself to malformed requests (bad request line, headers, framing) are
    made before any app is matched, so no `on_response_prepare` hook sees them; they take the
    Server header from aiohttp's module default, which is set here (aiohttp has no setting)."""
    web_response.SERVER_SOFTWARE = SERVER_NAME


def build_app(services: Services, metrics: Metrics, server: ServerConfig | None = None) -> web.Application:
    app = web.Application(client_max_size=services.limits.max_body_bytes,
                          middlewares=[observe, never_500_silently, unavailable_as_503])  # 503 inside: no 500 for those
    server = server or ServerConfig()
    app.on_response_prepare.append(_no_version_banner)
    no_version_banner_anywhere()
    app[BODY_PACE] = (server.body_seconds, server.body_min_rate)
    app[SERVICES] = services
    app[METRICS] = metrics
    app[LIMITER] = RateLimiter(services.limits.rate_per_second, services.limits.rate_burst)
    add = app.router
    add.add_post("/api/v1/dossiers", dossiers.post_dossier)
    add.add_get("/api/v1/dossiers", dossiers.list_dossiers)
    add.add_get("/api/v1/dossiers/{id}", dossiers.get_dossier)
    # the upstream's notices (role ivan) before the generic notice route, which knows the agency's own kinds
    add.add_get("/api/v1/dossiers/{id}/forwarding", forwarding.get_forwarding)
    add.add_get(f"/api/v1/dossiers/{{id}}/notices/{{kind:{'|'.join(forwarding.UPSTREAM_KINDS)}}}",
                forwarding.get_upstream_notice)  # fmt: skip
    add.add_get("/api/v1/dossiers/{id}/notices/{kind}", dossiers.get_notice)
    add.add_post("/api/v1/upstream/notices/{token}", forwarding.post_upstream_notice)  # role ivan: the agency's push
    add.add_get("/api/v1/dossiers/{id}/original", dossiers.get_original)
    add.add_get("/api/v1/dossiers/{id}/evidence", dossiers.get_evidence)
    add.add_get("/api/v1/dossiers/{id}/deliveries", delivery.get_deliveries)
    add.add_put("/api/v1/callback", delivery.put_callback)
    add.add_get("/api/v1/callback", delivery.get_callback)
    add.add_delete("/api/v1/callback", delivery.delete_callback)
    add.add_get("/api/v1/units/{mst}", dossiers.get_unit)
    add.add_get("/api/v1/persons/{pid}/book", book.get_person_book)
    add.add_get("/api/v1/persons/{pid}/lookups", cards.get_person_lookups)
    add.add_get("/api/v1/hi-cards/{id:(?!lookups$)[^/]+}", cards.get_card)  # not the batch's path: 405 there
    add.add_post("/api/v1/hi-cards/lookups", cards.post_lookups)
    add.add_post("/api/v1/verify", dossiers.post_verify)
    add.add_get("/healthz", ops.healthz)
    add.add_get("/readyz", ops.readyz)
    add.add_get("/metrics", ops.metrics)
    add.add_get("/api/openapi.json", ops.openapi)
    console.add_routes(add)  # the web console: /, /console/{name}, /api/v1/codes, /api/v1/key
    return app

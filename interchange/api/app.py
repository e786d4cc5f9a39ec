"""The HTTP shell (SPEC §5): the routes and the middleware around them. Handlers translate
between HTTP and the use cases (interchange.receiving, the store's reads); the services they use
are assembled by the composition root (interchange.server).

A dossier's answer is sent only after the store has committed the original bytes, the state and
the signed notice: a crash before that loses nothing acknowledged.
"""

from __future__ import annotations

import logging

from aiohttp import web

from interchange import codes
from interchange.api import book, cards, delivery, dossiers, forwarding, ops
from interchange.api.http import LIMITER, METRICS, SERVICES, Services, problem_json
from interchange.api.metrics import Metrics
from interchange.api.ratelimit import RateLimiter

log = logging.getLogger("interchange.api")


@web.middleware
async def never_500_silently(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return problem_json(500, codes.INTERNAL, "unexpected server error; it has been logged")


def build_app(services: Services, metrics: Metrics) -> web.Application:
    app = web.Application(client_max_size=services.limits.max_body_bytes, middlewares=[never_500_silently])
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
    add.add_get("/api/v1/dossiers/{id}/original", dossiers.get_original)
    add.add_get("/api/v1/dossiers/{id}/evidence", dossiers.get_evidence)
    add.add_get("/api/v1/dossiers/{id}/deliveries", delivery.get_deliveries)
    add.add_put("/api/v1/callback", delivery.put_callback)
    add.add_get("/api/v1/callback", delivery.get_callback)
    add.add_delete("/api/v1/callback", delivery.delete_callback)
    add.add_get("/api/v1/units/{mst}", dossiers.get_unit)
    add.add_get("/api/v1/persons/{pid}/book", book.get_person_book)
    add.add_get("/api/v1/persons/{pid}/lookups", cards.get_person_lookups)
    add.add_get("/api/v1/hi-cards/{id}", cards.get_card)
    add.add_post("/api/v1/hi-cards/lookups", cards.post_lookups)
    add.add_post("/api/v1/verify", dossiers.post_verify)
    add.add_get("/healthz", ops.healthz)
    add.add_get("/readyz", ops.readyz)
    add.add_get("/metrics", ops.metrics)
    add.add_get("/api/openapi.json", ops.openapi)
    add.add_get("/", ops.index)
    return app

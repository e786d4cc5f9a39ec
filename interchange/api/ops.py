"""Operations: /healthz, /readyz, /metrics, the API document (the web console is api/console.py)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from interchange.api import models as m
from interchange.api.http import METRICS, SERVICES, typed
from interchange.api.openapi import document
from interchange.clock import utc_now
from interchange.trust.certinfo import load_anchor_certs

log = logging.getLogger("interchange.api")
READY_TIMEOUT = 3.0  # seconds for each component's check


async def healthz(request: web.Request) -> web.Response:
    return typed(m.Health, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when every component a dossier needs works: the database answers, the worker pool
    runs a task, the notice key may sign now, and at least one trust anchor is valid. Each is
    named: {"status": "not ready", "components": {"database": "unreachable", ...}}."""
    services = request.app[SERVICES]
    database, workers = await asyncio.gather(_database(services), _workers(services))
    components = {
        "database": database,
        "workers": workers,
        "notice_key": _notice_key(services),
        "trust_anchors": await asyncio.to_thread(_anchors, services.anchors),
    }
    failing = [name for name, value in components.items() if not value.startswith("ok")]
    if failing:
        log.warning("not ready: %s", "; ".join(f"{name}: {components[name]}" for name in failing))
    return typed(m.Readiness, {"status": "not ready" if failing else "ready", "components": components,
                               "failing": failing}, status=503 if failing else 200)  # fmt: skip


async def _database(services) -> str:
    return "ok" if await services.store.ping(READY_TIMEOUT) else "unreachable"


async def _workers(services) -> str:
    try:
        await asyncio.wait_for(services.workers.start(), READY_TIMEOUT)  # one trivial task per worker
    except TimeoutError:  # every worker busy with long dossiers: still ready (a broken pool is not)
        return "ok (busy: no answer within 3 s)"
    except Exception as exc:
        return f"broken ({type(exc).__name__})"
    return "ok"


def _notice_key(services) -> str:
    problem = services.signer.problem()
    if problem is not None:
        return f"cannot sign: {problem}"
    left = services.signer.chain[0].not_valid_after_utc - utc_now()
    return f"ok (expires in {left.days} days)" if left < timedelta(days=30) else "ok"


def _anchors(folder: Path | None) -> str:
    if folder is None:
        return "ok (not checked)"
    try:
        certs = load_anchor_certs(folder)
    except Exception as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    now = utc_now()
    valid = [c for c in certs if c.not_valid_before_utc <= now <= c.not_valid_after_utc]
    if not valid:
        return f"none valid in {folder} ({len(certs)} certificates)"
    return "ok"


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; the work queue's depth is read now (bounded: an unreachable database
    leaves the last values and is said by /readyz)."""
    try:
        depth = await asyncio.wait_for(request.app[SERVICES].store.work.depth(utc_now()), READY_TIMEOUT)
    except Exception as exc:  # StoreUnavailable, a timeout: the metrics are still served
        log.warning("metrics: the work queue could not be read (%s: %s)", type(exc).__name__, exc)
    else:
        request.app[METRICS].set_queue(depth)
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())

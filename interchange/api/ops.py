"""Operations and the small web page: /healthz, /readyz, /metrics, the API document, /."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from interchange.api.http import METRICS, SERVICES
from interchange.api.openapi import OPENAPI


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

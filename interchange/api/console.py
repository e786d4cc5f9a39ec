"""The web console (issue #11): plain HTML, CSS and JavaScript in interchange/api/static/, served
as they are, and the two small reads it needs beyond the dossier API: the code catalogue (to
show any error code in Vietnamese and English) and who the caller's key is.

Everything else the console shows comes from the JSON API itself (SPEC §5) with the API key the
person typed in, kept in the browser's sessionStorage only.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from aiohttp import web

from interchange import codes
from interchange.api import models as m
from interchange.api.http import problem_json, reader, typed
from interchange.rules.catalogue import every_code

STATIC = Path(__file__).parent / "static"
ASSETS = {"console.js": "application/javascript", "console.css": "text/css"}
# Only our own files: no inline script or style, no other origin, no framing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")  # fmt: skip
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}  # fmt: skip


def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


_PAGES = {name: _read(name) for name in ("index.html", *ASSETS)}  # read once, at import


async def index(request: web.Request) -> web.Response:
    """GET /: the console (search, a dossier, an e-SI book, a unit, verify, card lookups)."""
    return web.Response(body=_PAGES["index.html"], content_type="text/html", charset="utf-8", headers=HEADERS)


async def asset(request: web.Request) -> web.Response:
    """GET /console/{name}: the console's script and style sheet."""
    name = request.match_info["name"]
    if name not in ASSETS:
        return problem_json(404, codes.NOT_FOUND, f"no console file {name!r}; there are {', '.join(ASSETS)}")
    return web.Response(body=_PAGES[name], content_type=ASSETS[name], charset="utf-8", headers=HEADERS)


@cache
def _catalogue() -> dict:
    return {"codes": [c.as_dict() for c in every_code()]}


async def get_codes(request: web.Request) -> web.Response:
    """GET /api/v1/codes: every code the server can emit, with its layer, severity and Vietnamese
    and English text (as `interchange codes` lists them). Any key but a facility's (which looks up
    e-HI cards and nothing else)."""
    await reader(request)
    return typed(m.CodeCatalogue, _catalogue())


async def get_key(request: web.Request) -> web.Response:
    """GET /api/v1/key: the caller's own key (role and what it is bound to), never its secret."""
    key = await reader(request)
    return typed(m.KeyInfo, {
        "key_id": key.key_id, "role": key.role, "mst": key.mst, "ivan": key.ivan, "facility": key.facility,
        "label": key.label, "created_at": key.created_at.isoformat(),
        "sees_all": key.scope.all,
    })  # fmt: skip


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/codes", get_codes)
    router.add_get("/api/v1/key", get_key)
    router.add_get("/console/{name}", asset)
    router.add_get("/", index)


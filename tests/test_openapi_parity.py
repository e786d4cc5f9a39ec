"""The OpenAPI document served at /api/openapi.json (interchange/api/openapi.py) and the routes of
the app (interchange/api/app.py) say the same: every route is documented with its method, and
every documented operation is routed."""

from __future__ import annotations

import json
import re

from interchange.server import make_app

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}  # OpenAPI 3 operations


def template(path: str) -> str:
    """A router path as an OpenAPI path template: `{kind:a|b}` (a regex-constrained part) -> `{kind}`."""
    return re.sub(r"\{(\w+):[^{}]*\}", r"{\1}", path)


async def served_and_routed(cfg, aiohttp_client) -> tuple[dict, set[tuple[str, str]]]:
    app = await make_app(cfg, workers=0)  # as the api fixture builds it
    client = await aiohttp_client(app)
    spec = await (await client.get("/api/openapi.json")).json()
    routed = {(route.method.lower(), template(route.resource.canonical)) for route in app.router.routes()}
    # add_get also answers HEAD on the same path; that HEAD is not an operation of its own
    routed -= {("head", path) for method, path in set(routed) if method == "get"}
    return spec, routed


def documented(spec: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in spec["paths"].items() for method in item if method in METHODS}


def test_template_normalises_regex_parts():
    assert template("/api/v1/dossiers/{id}/notices/{kind:bhxh-tiep-nhan|bhxh-tu-choi}") == (
        "/api/v1/dossiers/{id}/notices/{kind}"
    )
    assert template("/api/v1/units/{mst}") == "/api/v1/units/{mst}"


async def test_every_route_is_documented_and_every_documented_operation_routed(cfg, aiohttp_client):
    spec, routed = await served_and_routed(cfg, aiohttp_client)
    assert len(routed) > 15 and ("post", "/api/v1/dossiers") in routed
    assert sorted(routed - documented(spec)) == [], "routed but missing from interchange/api/openapi.py"
    assert sorted(documented(spec) - routed) == [], "documented but not routed"


async def test_documented_path_parameters_are_declared(cfg, aiohttp_client):
    spec, _ = await served_and_routed(cfg, aiohttp_client)
    for path, item in spec["paths"].items():
        in_path = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in item.items():
            if method not in METHODS:
                continue
            declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"}
            assert declared == in_path, (method, path)


async def test_every_schema_reference_resolves(cfg, aiohttp_client):
    """The document is generated from the models: every `$ref` names a component schema it carries."""
    spec, _ = await served_and_routed(cfg, aiohttp_client)
    text = json.dumps(spec)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))
    assert "ProblemDetails" in refs and "Dossier" in refs and len(refs) > 20
    assert sorted(refs - set(spec["components"]["schemas"])) == []

"""The API document served at /api/openapi.json, generated: the operations below name the typed
models (interchange.api.models) of their query, body and answers and every status they can
answer; the schemas are the models' own JSON Schema, the problem format is one component.

tests/test_openapi_parity.py holds this table against the app's route table, and schemathesis
(tests/test_schemathesis.py) holds the running server to the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from interchange.api import models as m
from interchange.kinds import NOTICE_SLUGS

PROBLEM = "application/problem+json"
REF = "#/components/schemas/{model}"
IDEMPOTENCY_PATTERN = r"^[!-~]{1,200}$"  # 1-200 printable ASCII characters, no space


@dataclass(frozen=True)
class Json:
    model: type[BaseModel]
    description: str


@dataclass(frozen=True)
class Raw:
    """A body that is not JSON: the signed XML of a notice, a ZIP, a page."""

    media: str
    description: str
    binary: bool = False


XML_NOTICE = "a signed ThongBao notice (SPEC §4)"
# What each error status means when the operation does not say more.
ERRORS = {
    400: "a parameter or the body is malformed (see code, parameter, allowed)",
    401: "no API key (AUTH-MISSING) or one the server does not know (AUTH-INVALID)",
    403: "the key's role may not do this (AUTH-ROLE)",
    404: "no such thing, or not the caller's to see (NOT-FOUND)",
    409: "conflict",
    413: "the body is larger than [limits] max_body_bytes (BODY-TOO-LARGE)",
    415: "a Content-Type or Content-Encoding the route does not take",
    422: "understood but refused",
    429: "past the rate of this API key (RATE-LIMIT); see Retry-After",
    503: "a component is down or busy (STORE-UNAVAILABLE, NOTICE-KEY-UNAVAILABLE, WORKER-*); see Retry-After",
}
KEYED = (401, 403, 429, 503)  # every route behind an API key may answer these


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    answers: dict[int, Json | Raw | tuple[Json | Raw, ...] | None]  # the successful answers (None: no body)
    errors: dict[int, str | Raw] = field(default_factory=dict)  # more than KEYED; a str overrides ERRORS
    path_params: tuple[dict, ...] = ()
    query: type[BaseModel] | None = None
    headers: tuple[dict, ...] = ()
    body: Json | Raw | None = None
    keyed: bool = True


def _path(name: str, description: str, **schema) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1, **schema}}  # fmt: skip


ID = _path("id", "the dossier's id (MaGiaoDich), as in Location and X-Transaction-Id")
PID = _path("pid", "12-digit personal ID or 10-digit SI code", pattern=m.PID)
XML_IN = Raw("application/xml", "the exact bytes (text/xml is taken too; gzip or deflate Content-Encoding)")
NOTICE_ERRORS = {400: Raw("application/xml", "the body could not be read (BODY-UNREADABLE): a signed TU_CHOI"),
                 403: Raw("application/xml", "not this key's unit or I-VAN, or its role may not submit: a signed TU_CHOI"),
                 409: Raw("application/xml", "Idempotency-Key reused with different bytes: a signed TU_CHOI"),
                 413: Raw("application/xml", "larger than [limits] max_body_bytes: a signed TU_CHOI"),
                 415: Raw("application/xml", "not application/xml, or an unknown Content-Encoding: a signed TU_CHOI"),
                 422: Raw("application/xml", "TU_CHOI: refused at receipt, with every error; or a bad Idempotency-Key"),
                 429: Raw("application/xml", "past the rate of this API key: a signed TU_CHOI; see Retry-After"),
                 503: Raw("application/xml", "nothing stored (STORE-UNAVAILABLE, WORKER-BUDGET, WORKER-LOST): a signed "
                          "TU_CHOI, or problem JSON when the notice key cannot sign; see Retry-After")}  # fmt: skip

OPERATIONS: tuple[Op, ...] = (
    Op("post", "/api/v1/dossiers", "Submit a dossier (the Hoso XML, exact bytes); the answer is a signed notice",
       {202: Raw("application/xml", "TIEP_NHAN: received"), 200: Raw("application/xml", "a replay: the original notice")},
       errors=NOTICE_ERRORS, body=XML_IN,
       headers=({"name": "Idempotency-Key", "in": "header", "description": "makes retries safe across different bytes",
                 "schema": {"type": "string", "pattern": IDEMPOTENCY_PATTERN}},)),
    Op("get", "/api/v1/dossiers", "The caller's dossiers, newest first, a page at a time",
       {200: Json(m.DossierPage, "a page")}, errors={400: "a filter is not one of its values (BAD-QUERY)"},
       query=m.DossierQuery),
    Op("get", "/api/v1/dossiers/{id}", "A dossier: state, times, deadlines, errors, signers, notices, work",
       {200: Json(m.Dossier, "the dossier")}, errors={404: ERRORS[404]}, path_params=(ID,)),
    Op("get", "/api/v1/dossiers/{id}/forwarding", "Role ivan: the dossier's forwarding upstream and every try",
       {200: Json(m.Forwarding, "the forwarding and its tries")},
       errors={404: "no such dossier (or not the caller's), or NOT-FORWARDED"}, path_params=(ID,)),
    Op("get", "/api/v1/dossiers/{id}/notices/{kind}", "A signed notice of the dossier (bhxh-*: the upstream "
       "agency's own receipt or refusal, role ivan)", {200: Raw("application/xml", XML_NOTICE)},
       errors={404: ERRORS[404]},
       path_params=(ID, {"name": "kind", "in": "path", "required": True, "description": "the notice",
                         "schema": {"type": "string", "enum": list(NOTICE_SLUGS)}})),
    Op("get", "/api/v1/dossiers/{id}/original", "The exact bytes received",
       {200: Raw("application/xml", "the original bytes")}, errors={404: ERRORS[404]}, path_params=(ID,)),
    Op("get", "/api/v1/dossiers/{id}/evidence", "Evidence bundle, checked offline with `interchange evidence verify`",
       {200: Raw("application/zip", "ZIP: original.xml, notices/, signers/, revocation/, audit.jsonl, dossier.json, "
                 "manifest.json and the signed manifest.xml", binary=True)},
       errors={404: ERRORS[404]}, path_params=(ID,)),
    Op("get", "/api/v1/dossiers/{id}/deliveries", "The deliveries of a dossier's notices (callbacks, e-mail) "
       "with every attempt", {200: Json(m.Deliveries, "state, next attempt, attempts")},
       errors={404: ERRORS[404]}, path_params=(ID,)),
    Op("put", "/api/v1/callback", "Register or replace the callback URL of the caller's unit (submitter key) or "
       "I-VAN (ivan key): every notice stored afterwards is POSTed there (headers X-Transaction-Id, X-Notice-Kind, "
       "X-Delivery-Id, X-Delivery-Attempt; 2xx = delivered, else retried; deduplicate by X-Delivery-Id)",
       {201: Json(m.Subscription, "registered"), 200: Json(m.Subscription, "replaced")},
       errors={400: "not a JSON object with a url (BAD-JSON)", 415: "not application/json (CONTENT-TYPE)",
               422: "URL refused (CALLBACK-URL): not http(s), credentials, does not resolve, or a private address"},
       body=Json(m.CallbackIn, "the URL")),
    Op("get", "/api/v1/callback", "The caller's callback URL", {200: Json(m.Subscription, "the URL")},
       errors={404: "none registered"}),
    Op("delete", "/api/v1/callback", "Remove the caller's callback URL (deliveries already made still go out)",
       {204: None}, errors={404: "none registered"}),
    Op("post", "/api/v1/upstream/notices/{token}", "Role ivan: a notice pushed by the upstream agency (its "
       "callback delivery to this I-VAN, registered automatically with [upstream] push_url). The token stands for "
       "the key; a KET_QUA is kept only when signed by the pinned agency signer and bound to a dossier forwarded "
       "from here (BamHoSo, MaGiaoDich = X-Transaction-Id); other kinds are acknowledged and not kept",
       {200: Json(m.PushOutcome, "relayed, already kept (duplicate), or ignored (not a KET_QUA)")},
       errors={404: "no push channel here, or a wrong token", 409: "the dossier forwarded under that transaction is gone",
               503: "no dossier forwarded under that transaction yet: the agency pushes again after Retry-After",
               413: "larger than a notice", 422: "not kept: signature, signer, binding or KetQua (UPSTREAM-NOTICE)"},
       path_params=(_path("token", "derived from the I-VAN's upstream API key"),),
       headers=({"name": "X-Transaction-Id", "in": "header", "schema": {"type": "string"}},
                {"name": "X-Notice-Kind", "in": "header", "schema": {"type": "string"}}),
       body=Raw("application/xml", "the signed notice"), keyed=False),
    Op("get", "/api/v1/units/{mst}", "A unit's registration for electronic transactions (active or stopped)",
       {200: Json(m.UnitRegistration, "the registration")},
       errors={404: "not registered, or not the caller's to see"}, path_params=(_path("mst", "the unit's MST"),)),
    Op("get", "/api/v1/persons/{pid}/book", "The e-SI book of a person: identity, contribution periods (unit, "
       "salary basis, rate, contributions by fund), benefit claims", {200: Json(m.Book, "the book (a unit sees the "
       "periods it declared, an I-VAN those of dossiers it carried)")},
       errors={400: "pid or as_of malformed (BAD-PID, BAD-QUERY)", 404: "unknown person, or nothing the caller may see"},
       path_params=(PID,), query=m.BookQuery),
    Op("get", "/api/v1/persons/{pid}/lookups", "Every e-HI card lookup of a person (auditor or admin key)",
       {200: Json(m.PersonLookups, "the lookups, oldest first")},
       errors={400: "pid malformed (BAD-PID)", 403: "not an auditor or admin key"}, path_params=(PID,)),
    Op("get", "/api/v1/hi-cards/{id}", "The e-HI card of a person (facility or admin key); Accept: application/xml "
       "gives a signed TheBHYT. Rules: docs/hi-card.md",
       {200: (Json(m.CardAnswer, "the card"), Raw("application/xml", "with Accept: application/xml, the card as a "
                                                        "TheBHYT document (urn:interchange:thebhyt:1) signed like the notices"))},
       errors={400: "ID, name, birth or as_of malformed", 403: "not a facility or admin key",
               404: "unknown ID, or a name or birth date that does not agree: the same answer either way"},
       path_params=({**PID, "name": "id"},), query=m.CardQuery),
    Op("post", "/api/v1/hi-cards/lookups", "Up to 500 card lookups in one request; one result per item, in order",
       {200: Json(m.LookupsOut, "as_of, answered_at, results")},
       errors={400: "not {items: [...]} of objects, more than 500 items, or as_of malformed",
               403: "not a facility or admin key", 415: "not application/json (CONTENT-TYPE)"},
       query=m.AsOfQuery, body=Json(m.LookupsIn, "the questions")),
    Op("post", "/api/v1/verify", "Verify any signed XML (a Hoso envelope and its forms, a form, a ThongBao notice)",
       {200: Json(m.VerifyReport, "a report per signature; ok is true when every signature is valid")},
       errors={400: "the body could not be read", 413: ERRORS[413], 415: ERRORS[415], 422: "the body is empty"},
       body=XML_IN),
    Op("get", "/healthz", "Alive", {200: Json(m.Health, "alive")}, keyed=False),
    Op("get", "/readyz", "Ready: every component a dossier needs works", {200: Json(m.Readiness, "ready")},
       errors={503: "not ready: the failing components are named"}, keyed=False),
    Op("get", "/metrics", "Prometheus metrics", {200: Raw("text/plain", "Prometheus text format")}, keyed=False),
    Op("get", "/api/openapi.json", "This document", {200: Raw("application/json", "OpenAPI 3.1")}, keyed=False),
    Op("get", "/api/v1/codes", "Every code the server can emit, with its layer or forms, severity and Vietnamese "
       "and English text (as `interchange codes` lists them)", {200: Json(m.CodeCatalogue, "the catalogue")},
       errors={403: "a facility key (it looks up e-HI cards and nothing else)"}),
    Op("get", "/api/v1/key", "The caller's own key: role and what it is bound to, never its secret",
       {200: Json(m.KeyInfo, "the key")}, errors={403: "a facility key"}),
    Op("get", "/console/{name}", "The web console's script and style sheet",
       {200: (Raw("application/javascript", "console.js"), Raw("text/css", "console.css"))},
       errors={404: ERRORS[404]}, keyed=False,
       path_params=({"name": "name", "in": "path", "required": True, "description": "the file",
                     "schema": {"type": "string", "enum": ["console.css", "console.js"]}},)),
    Op("get", "/", "The web console: search dossiers, a dossier's layers, errors, signers, notices, evidence, "
       "deliveries; an e-SI book; a unit's registration; verify a signed file; card lookups",
       {200: Raw("text/html", "the page")}, keyed=False),
)  # fmt: skip


def _content(body: Json | Raw | tuple[Json | Raw, ...]) -> dict:
    if isinstance(body, tuple):
        return {media: content for each in body for media, content in _content(each).items()}
    if isinstance(body, Json):
        return {"application/json": {"schema": {"$ref": REF.format(model=body.model.__name__)}}}
    schema = {"type": "string", "format": "binary"} if body.binary else {"type": "string"}
    return {body.media: {"schema": schema}}


def _plain(schema: dict) -> dict:
    """A query parameter's schema: the model field's, without pydantic's null branch and title."""
    out = {k: v for k, v in schema.items() if k not in ("title", "anyOf", "default")}
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        out.update(branches[0])
    if "default" in schema and schema["default"] is not None:
        out["default"] = schema["default"]
    return out


def _query(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema["properties"].items():
        param = {"name": name, "in": "query", "required": name in required, "schema": _plain(prop)}
        if "description" in prop:
            param["description"] = param["schema"].pop("description")
        params.append(param)
    return params


def _operation(op: Op) -> dict:
    out: dict = {"summary": op.summary, "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_') or 'index'}"}
    params = [*op.path_params, *(_query(op.query) if op.query else []), *op.headers]
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": True, "description": op.body.description, "content": _content(op.body)}
    responses: dict[str, dict] = {}
    for status, answer in op.answers.items():
        first = answer[0] if isinstance(answer, tuple) else answer
        responses[str(status)] = {"description": first.description if first else "done"}
        if answer is not None:
            responses[str(status)]["content"] = _content(answer)
    errors = {**({s: ERRORS[s] for s in KEYED} if op.keyed else {}), **op.errors}
    for status, what in sorted(errors.items()):
        if isinstance(what, Raw):
            responses[str(status)] = {"description": what.description, "content": _content(what)}
        elif op.path == "/readyz":
            responses[str(status)] = {"description": what, "content": _content(Json(m.Readiness, what))}
        else:
            responses[str(status)] = {"description": what, "content": {PROBLEM: {"schema": {"$ref": REF.format(
                model="ProblemDetails")}}}}  # fmt: skip
    out["responses"] = dict(sorted(responses.items()))
    if not op.keyed:
        out["security"] = []
    return out


def _models() -> list[type[BaseModel]]:
    found = {m.ProblemDetails}
    for op in OPERATIONS:
        for answer in (*op.answers.values(), op.body):
            for each in answer if isinstance(answer, tuple) else (answer,):
                if isinstance(each, Json):
                    found.add(each.model)
    return sorted(found, key=lambda model: model.__name__)


@cache
def document() -> dict:
    """The OpenAPI 3.1 document (built once)."""
    _, schemas = models_json_schema([(model, "serialization") for model in _models()], ref_template=REF)
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Interchange: social-insurance dossier gateway",
            "version": "1",
            "description": "Signed Hoso dossiers in, signed ThongBao notices out (SPEC.md). Errors outside notices "
            "are application/problem+json (RFC 9457) with a stable code and Vietnamese and English text.",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": schemas.get("$defs", {})},  # fmt: skip
        "security": [{"bearer": []}],
        "paths": paths,
    }

"""The OpenAPI description served at /api/openapi.json (kept beside the routes it describes)."""

from interchange.api.console import OPENAPI_PATHS as CONSOLE_PATHS

_XML = {"application/xml": {"schema": {"type": "string", "description": "a signed ThongBao (SPEC §4)"}}}
_JSON = {"application/json": {"schema": {"type": "object"}}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}

OPENAPI = {
    "openapi": "3.0.3",
    "info": {
        "title": "Interchange: social-insurance dossier gateway",
        "version": "1",
        "description": "Signed Hoso dossiers in, signed ThongBao notices out. See SPEC.md.",
    },
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/dossiers": {
            "post": {
                "summary": "Submit a dossier (the Hoso XML, exact bytes)",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 200}}],
                "requestBody": {"required": True, "content": {"application/xml": {"schema": {"type": "string"}}}},
                "responses": {
                    "202": {"description": "TIEP_NHAN: received", "content": _XML},
                    "200": {"description": "replay: the original notice", "content": _XML},
                    "422": {"description": "TU_CHOI: refused, with the errors", "content": _XML},
                    "409": {"description": "Idempotency-Key reused with different bytes", "content": _XML},
                    "401": {"description": "no or bad API key", "content": _XML},
                    "403": {"description": "not this key's unit or I-VAN, or role", "content": _XML},
                    "413": {"description": "body too large", "content": _XML},
                    "415": {"description": "not application/xml", "content": _XML},
                    "429": {"description": "rate limit of this API key; see Retry-After", "content": _XML},
                    "400": {"description": "the body cannot be decoded (Content-Encoding)", "content": _XML},
                    "503": {"description": "busy or a part is down (WORKER-BUDGET, WORKER-LOST); see Retry-After",
                            "content": _XML},
                },
            },
            "get": {
                "summary": "The caller's dossiers, newest first",
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": "string"}}
                    for n in ("state", "procedure", "period", "so_ho_so", "from", "to", "cursor")
                ]
                + [{"name": "mst", "in": "query", "description": "the unit's tax code", "schema": {"type": "string"}}]
                + [{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 500}}],
                "responses": {"200": {"description": "items and next_cursor", "content": _JSON}},
            },
        },
        "/api/v1/dossiers/{id}": {
            "get": {"parameters": [_ID], "responses": {"200": {"description": "state, times, deadlines (due_at, result_at, overdue), work, errors", "content": _JSON}}}
        },
        "/api/v1/dossiers/{id}/notices/{kind}": {
            "get": {
                "parameters": [
                    _ID,
                    {"name": "kind", "in": "path", "required": True, "description": "bhxh-tiep-nhan, bhxh-tu-choi: the "
                     "upstream agency's own receipt or refusal, role ivan (its KET_QUA is the dossier's ket-qua)",
                     "schema": {"enum": ["tiep-nhan", "tu-choi", "ket-qua", "bhxh-tiep-nhan", "bhxh-tu-choi"]}},
                ],
                "responses": {"200": {"description": "the signed notice", "content": _XML}},
            }
        },
        "/api/v1/dossiers/{id}/original": {
            "get": {"parameters": [_ID], "responses": {"200": {"description": "the exact bytes received"}}}
        },
        "/api/v1/dossiers/{id}/evidence": {
            "get": {
                "summary": "Evidence bundle, checked offline with `interchange evidence verify`",
                "parameters": [_ID],
                "responses": {
                    "200": {
                        "description": "ZIP: original.xml, notices/, signers/, revocation/, audit.jsonl, "
                        "dossier.json, manifest.json and the signed manifest.xml",
                        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                    }
                },
            }
        },
        "/api/v1/dossiers/{id}/forwarding": {
            "get": {
                "summary": "Role ivan: the dossier's forwarding upstream: state (pending, forwarded, refused_upstream, "
                "failed), target and legal deadline, overdue, upstream transaction id, every try (forward and "
                "KET_QUA poll: time, outcome, HTTP status, error, duration), the upstream notices kept",
                "parameters": [_ID],
                "responses": {
                    "200": {"description": "the forwarding and its tries", "content": _JSON},
                    "404": {"description": "no such dossier (or not the caller's), or NOT-FORWARDED", "content": _JSON},
                },
            }
        },
        "/api/v1/units/{mst}": {
            "get": {
                "summary": "A unit's registration for electronic transactions (active or stopped)",
                "parameters": [{"name": "mst", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "state, contact data, the registration dossier", "content": _JSON},
                    "404": {"description": "not registered, or not the caller's to see", "content": _JSON},
                },
            }
        },
        "/api/v1/verify": {
            "post": {
                "summary": "Verify any signed XML (a Hoso envelope and its forms, a form, a ThongBao notice)",
                "requestBody": {"required": True, "content": {"application/xml": {}}},
                "responses": {
                    "200": {"description": "a report per signature: valid, signer, MST, chain, revocation, times; "
                                           "ok is true when every signature is valid", "content": _JSON},
                    "413": {"description": "too large", "content": _JSON},
                    "415": {"description": "not XML", "content": _JSON},
                },
            }
        },
        "/api/v1/persons/{pid}/book": {
            "get": {
                "summary": "The electronic social-insurance book of a person: identity, contribution periods "
                "(unit, salary basis, rate, employer and employee contributions by fund), benefit claims",
                "parameters": [
                    {"name": "pid", "in": "path", "required": True, "description": "12-digit personal ID or 10-digit SI code",
                     "schema": {"type": "string", "pattern": "^([0-9]{12}|[0-9]{10})$"}},
                    {"name": "as_of", "in": "query", "description": "last month of the timeline, MM/yyyy or YYYY-MM "
                     "(default: the current month in Asia/Ho_Chi_Minh)", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {"description": "the book (a unit sees the periods it declared, an I-VAN those of "
                            "dossiers it carried)", "content": _JSON},
                    "400": {"description": "pid or as_of malformed", "content": _JSON},
                    "404": {"description": "unknown person, or nothing the caller may see", "content": _JSON},
                },
            }
        },
        "/api/v1/callback": {
            "put": {
                "summary": "Register or replace the callback URL of the caller's unit (submitter key) or I-VAN "
                "(ivan key): every notice stored afterwards for its dossiers is POSTed there (the signed XML "
                "as stored; headers X-Transaction-Id, X-Notice-Kind, X-Delivery-Id, X-Delivery-Attempt; "
                "2xx = delivered, else retried with backoff; deduplicate by X-Delivery-Id)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["url"], "properties": {"url": {"type": "string", "format": "uri"}}}}}},
                "responses": {
                    "201": {"description": "registered", "content": _JSON},
                    "200": {"description": "replaced", "content": _JSON},
                    "400": {"description": "not a JSON object with url", "content": _JSON},
                    "403": {"description": "not a submitter or ivan key", "content": _JSON},
                    "422": {"description": "URL refused: not http(s), credentials, does not resolve, "
                            "or a private address", "content": _JSON},
                },
            },
            "get": {"summary": "The caller's callback URL", "responses": {
                "200": {"description": "owner, url, key_id, created_at", "content": _JSON},
                "404": {"description": "none registered", "content": _JSON}}},
            "delete": {"summary": "Remove the caller's callback URL (deliveries already made still go out)",
                       "responses": {"204": {"description": "removed"}, "404": {"description": "none registered"}}},
        },
        "/api/v1/dossiers/{id}/deliveries": {
            "get": {
                "summary": "The deliveries of a dossier's notices (callbacks, e-mail) with every attempt "
                "(time, HTTP status or error, duration)",
                "parameters": [_ID],
                "responses": {
                    "200": {"description": "state, next attempt, attempts", "content": _JSON},
                    "404": {"description": "no such dossier, or not the caller's", "content": _JSON},
                },
            }
        },
        "/healthz": {"get": {"security": [], "responses": {"200": {"description": "alive"}}}},
        "/readyz": {"get": {"security": [], "responses": {"200": {"description": "ready"}, "503": {"description": "not"}}}},
        "/metrics": {"get": {"security": [], "responses": {"200": {"description": "Prometheus text format"}}}},
        "/api/openapi.json": {"get": {"summary": "This description", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3.0", "content": _JSON}}}},
    },
}

_PID = {"name": "pid", "in": "path", "required": True, "description": "12-digit personal ID or 10-digit SI code",
        "schema": {"type": "string", "pattern": "^([0-9]{12}|[0-9]{10})$"}}
_AS_OF = {"name": "as_of", "in": "query", "description": "the day to answer for, YYYY-MM-DD, not after today "
          "(default: today in Asia/Ho_Chi_Minh)", "schema": {"type": "string", "format": "date"}}
_NO_CARD = "unknown ID, or a name or birth date that does not agree: the same answer either way"
OPENAPI["paths"].update({
    "/api/v1/hi-cards/{id}": {
        "get": {
            "summary": "The e-HI card of a person (facility or admin key): status valid | not_valid | suspended, "
            "valid from and to, benefit level (code and percent), first-contact facility, the day five continuous "
            "years are reached, the unit paying, the as-of day. Rules: docs/hi-card.md",
            "parameters": [
                {**_PID, "name": "id"},
                {"name": "name", "in": "query", "required": True, "description": "full name, as held by the "
                 "agency (case, spacing and Unicode normalisation do not matter)", "schema": {"type": "string"}},
                {"name": "birth", "in": "query", "required": True, "description": "birth date, dd/MM/yyyy or "
                 "YYYY-MM-DD", "schema": {"type": "string"}},
                _AS_OF,
                {"name": "Accept", "in": "header", "description": "application/xml: the answer as a TheBHYT "
                 "document (urn:interchange:thebhyt:1) signed like the notices", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "the card", "content": {**_JSON, "application/xml": {"schema": {
                    "type": "string", "description": "a signed TheBHYT"}}}},
                "400": {"description": "ID, name, birth or as_of malformed", "content": _JSON},
                "403": {"description": "not a facility or admin key", "content": _JSON},
                "404": {"description": _NO_CARD, "content": _JSON},
            },
        }
    },
    "/api/v1/hi-cards/lookups": {
        "post": {
            "summary": "Up to 500 card lookups in one request; one result per item, in order "
            "({id, status 200, card} | {id, status 404 | 400, code, message})",
            "parameters": [_AS_OF],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["items"], "properties": {"items": {
                    "type": "array", "maxItems": 500, "items": {"type": "object", "required": ["id", "name", "birth"],
                    "properties": {k: {"type": "string"} for k in ("id", "name", "birth")}}}}}}}},
            "responses": {
                "200": {"description": "as_of, answered_at, results", "content": _JSON},
                "400": {"description": "not {items: [...]} of objects with string fields, or more than 500 items",
                        "content": _JSON},
                "403": {"description": "not a facility or admin key", "content": _JSON},
            },
        }
    },
    "/api/v1/persons/{pid}/lookups": {
        "get": {
            "summary": "Every e-HI card lookup of a person (auditor or admin key): time, key, facility, ID as "
            "asked, outcome (valid | not_valid | suspended | unknown | mismatch)",
            "parameters": [_PID],
            "responses": {
                "200": {"description": "the lookups, oldest first", "content": _JSON},
                "400": {"description": "pid malformed", "content": _JSON},
                "403": {"description": "not an auditor or admin key", "content": _JSON},
            },
        }
    },
})  # fmt: skip
OPENAPI["paths"].update(CONSOLE_PATHS)  # the web console's routes (interchange/api/console.py)

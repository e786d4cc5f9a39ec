"""The OpenAPI description served at /api/openapi.json (kept beside the routes it describes)."""

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
                },
            },
            "get": {
                "summary": "The caller's dossiers, newest first",
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": "string"}}
                    for n in ("state", "procedure", "period", "from", "to", "cursor")
                ]
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
                    {"name": "kind", "in": "path", "required": True, "schema": {"enum": ["tiep-nhan", "tu-choi", "ket-qua"]}},
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
        "/healthz": {"get": {"security": [], "responses": {"200": {"description": "alive"}}}},
        "/readyz": {"get": {"security": [], "responses": {"200": {"description": "ready"}, "503": {"description": "not"}}}},
        "/metrics": {"get": {"security": [], "responses": {"200": {"description": "Prometheus text format"}}}},
    },
}

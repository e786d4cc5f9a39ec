"""The JSON API as integrators and operators meet it (issue #11): problems in one format (RFC 9457,
Vietnamese and English, the place), wrong key apart from missing key, filters that say what they
take, the generated API document, request ids, JSON logs, metrics by route and /readyz by
component."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from interchange.api.app import quiet_bad_requests
from interchange.api.http import SERVICES
from interchange.api.logs import JsonFormatter
from interchange.api.models import DOSSIER_STATES
from interchange.api.openapi import IDEMPOTENCY_PATTERN
from interchange.receiving.receipt import RECEIPT_STAGES
from interchange.store.types import Scope
from tests.helpers import dossier, post

PROBLEM_MEMBERS = {"type", "title", "title_en", "status", "detail", "detail_en", "code", "instance", "request_id"}


async def problem(resp, status: int, code: str) -> dict:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body = await resp.json()
    assert PROBLEM_MEMBERS <= set(body), body
    assert (body["status"], body["code"], body["type"]) == (status, code, f"urn:interchange:problem:{code}")
    assert body["instance"] == resp.url.path and body["request_id"] == resp.headers["X-Request-Id"]
    assert body["title"] != body["title_en"] and body["detail"] and body["detail_en"]
    return body


async def test_filters_say_what_they_take(api):
    h = api.keys["auditor"]
    body = await problem(await api.get("/api/v1/dossiers?state=bogus", headers=h), 400, "BAD-QUERY")
    assert body["parameter"] == "state" and body["allowed"] == list(DOSSIER_STATES)
    assert "received" in body["detail"] and "received" in body["detail_en"]
    for query, name in (("limit=501", "limit"), ("limit=0", "limit"), ("limit=x", "limit"), ("period=13/2026", "period"),
                        ("from=yesterday", "from"), ("to=2026-13-01", "to"), ("cursor=nope", "cursor")):
        body = await problem(await api.get(f"/api/v1/dossiers?{query}", headers=h), 400, "BAD-QUERY")
        assert body["parameter"] == name, (query, body)
    first = await api.get("/api/v1/dossiers", headers=h)
    assert first.status == 200
    empty = await api.get("/api/v1/dossiers?cursor=&limit=500&state=received&period=01/2026", headers=h)
    assert empty.status == 200 and (await empty.json())["next_cursor"] is None  # an empty cursor: the first page


async def test_problems_everywhere_in_the_json_api(api):
    h = api.keys["unit"]
    await problem(await api.get("/api/v1/dossiers/nope", headers=h), 404, "NOT-FOUND")
    await problem(await api.get("/api/v1/no-such-route", headers=h), 404, "NOT-FOUND")
    body = await problem(await api.delete("/api/v1/dossiers", headers=h), 405, "METHOD-NOT-ALLOWED")
    assert body["detail_en"]
    resp = await api.get("/api/v1/hi-cards/lookups", headers=h)  # not a card ID: the batch's path
    assert resp.status == 405 and resp.headers["Allow"] == "POST"
    body = await problem(await api.get("/api/v1/persons/123/book", headers=h), 400, "BAD-PID")
    assert body["parameter"] == "pid"
    body = await problem(await api.put("/api/v1/callback", json={"url": "ftp://x.example/"}, headers=h), 422,
                         "CALLBACK-URL")  # fmt: skip
    assert body["pointer"] == "/url"
    await problem(await api.get("/api/v1/hi-cards/000000000000?name=a&birth=1990-01-01", headers=h), 403, "AUTH-ROLE")


async def test_a_wrong_key_is_not_a_missing_key(api):
    for headers, code in (({}, "AUTH-MISSING"), ({"Authorization": "Basic eDp5"}, "AUTH-MISSING"),
                          ({"Authorization": "Bearer ik_0000_wrong"}, "AUTH-INVALID")):  # fmt: skip
        body = await problem(await api.get("/api/v1/dossiers", headers=headers), 401, code)
        assert body["parameter"] == "Authorization"


async def test_the_document_is_generated_with_every_status_and_the_problem_format(api):
    spec = await (await api.get("/api/openapi.json")).json()
    assert spec["openapi"].startswith("3.1") and "ProblemDetails" in spec["components"]["schemas"]
    assert set(PROBLEM_MEMBERS) - {"request_id"} <= set(spec["components"]["schemas"]["ProblemDetails"]["required"])
    post_op = spec["paths"]["/api/v1/dossiers"]["post"]
    (idem,) = [p for p in post_op["parameters"] if p["name"] == "Idempotency-Key"]
    assert idem["schema"]["pattern"] == IDEMPOTENCY_PATTERN
    assert {"200", "202", "400", "401", "403", "409", "413", "415", "422", "429", "503"} <= set(post_op["responses"])
    listing = spec["paths"]["/api/v1/dossiers"]["get"]
    params = {p["name"]: p["schema"] for p in listing["parameters"]}
    assert params["limit"]["maximum"] == 500 and params["state"]["enum"] == list(DOSSIER_STATES)
    for path, item in spec["paths"].items():
        for method, op in item.items():
            keyed = op.get("security") != []
            if keyed:
                assert {"401", "403", "429", "503"} <= set(op["responses"]), (method, path)
            for status, answer in op["responses"].items():
                for media, content in answer.get("content", {}).items():
                    if "json" in media and path != "/api/openapi.json":  # JSON is never a bare object
                        assert "$ref" in content["schema"], (method, path, status)
                    if status >= "400" and media == "application/json":
                        assert path == "/readyz", (method, path, status)  # errors are problem+json


async def test_request_ids_are_echoed_and_in_the_audit_entries(api, world):
    body = dossier(world.signer(world.unit), seed=41)
    status, _, resp = await post(api, body, **{"X-Request-Id": "payroll-run-7/42"})
    assert status == 202 and resp.headers["X-Request-Id"] == "payroll-run-7/42"
    tx = resp.headers["X-Transaction-Id"]
    entries = [e for e in await api.store.audit.entries() if e.dossier_id == tx]
    assert [e.data.get("request_id") for e in entries] == ["payroll-run-7/42"]
    resp = await api.get("/healthz", headers={"X-Request-Id": "no spaces or\tcontrols allowed"})
    made = resp.headers["X-Request-Id"]
    assert len(made) == 32 and made != "no spaces or\tcontrols allowed"
    assert (await api.store.dossiers.get(tx, Scope(all=True))) is not None


async def test_one_log_line_per_receipt_and_per_request(api, world, caplog):
    caplog.set_level(logging.INFO)
    body = dossier(world.signer(world.unit), seed=42)
    status, _, resp = await post(api, body)
    assert status == 202
    (receipt,) = [r for r in caplog.records if getattr(r, "event", None) == "receipt"]
    fields = receipt.fields
    assert fields["id"] == resp.headers["X-Transaction-Id"] and fields["outcome"] == "received"
    assert fields["unit"] and fields["procedure"] and fields["status"] == 202 and fields["ms"] >= 0
    access = [r for r in caplog.records if getattr(r, "event", None) == "access"]
    assert access and access[-1].fields["route"] == "/api/v1/dossiers" and access[-1].fields["status"] == 202
    line = JsonFormatter().format(receipt)
    assert "\n" not in line and json.loads(line)["outcome"] == "received"
    try:
        raise ValueError("two\nlines")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, exc_info=__import__("sys").exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line and json.loads(line)["exception"] == "ValueError: two\nlines"


async def test_a_receipts_time_is_told_by_stage(api, world, caplog, monkeypatch):
    """The log line and /metrics say where a receipt's time went: a notice signed slowly shows in
    "sign", not in "check" or "write"; a replay is looked up, not signed."""
    caplog.set_level(logging.INFO)
    stages = api.app[SERVICES].reception.stages
    sign = stages.sign_notice

    async def slow_sign(data):
        await asyncio.sleep(0.3)
        return await sign(data)

    monkeypatch.setattr(stages, "sign_notice", slow_sign)
    body = dossier(world.signer(world.unit), seed=43)
    assert (await post(api, body))[0] == 202
    assert (await post(api, body))[0] == 200  # the same bytes again: the receipt replayed
    first, again = [r.fields for r in caplog.records if getattr(r, "event", None) == "receipt"]
    assert list(first["stage_ms"]) == list(RECEIPT_STAGES)
    assert first["stage_ms"]["sign"] >= 300 > first["stage_ms"]["check"] and first["stage_ms"]["write"] < 300
    assert sum(first["stage_ms"].values()) <= first["ms"] + 0.3  # the stages lie inside the whole
    assert list(again["stage_ms"]) == ["check", "write"]
    metrics = await (await api.get("/metrics")).text()
    counts = {stage: f'interchange_receipt_stage_seconds_count{{stage="{stage}"}}' for stage in RECEIPT_STAGES}
    found = {stage: float(line.split()[-1]) for stage, name in counts.items() for line in metrics.splitlines()
             if line.startswith(name)}  # fmt: skip
    assert found == {"check": 2.0, "sign": 1.0, "write": 2.0}


async def test_unauthenticated_answers_sign_nothing(api, monkeypatch):
    signer = api.app[SERVICES].signer
    monkeypatch.setattr(signer, "sign", lambda *a, **k: pytest.fail("signed for an unauthenticated caller"))
    for headers in ({}, {"Authorization": "Bearer ik_0000_wrong"}):
        resp = await api.post("/api/v1/dossiers", data=b"<Hoso/>", headers={"Content-Type": "application/xml", **headers})
        assert resp.status == 401


async def test_metrics_by_route_process_build_and_queue(api, world):
    h = api.keys["unit"]
    await api.get("/api/v1/dossiers/abc", headers=h)
    await api.get("/api/v1/dossiers/def", headers=h)
    await post(api, b"<Hoso/>")
    await post(api, b"<Hoso/>", key="auditor")  # role may not submit: refused before reading
    await post(api, dossier(world.signer(world.unit), seed=43))
    text = await (await api.get("/metrics")).text()
    assert 'interchange_http_requests_total{method="GET",route="/api/v1/dossiers/{id}",status="404"} 2.0' in text
    assert "/api/v1/dossiers/abc" not in text  # the template, never the raw path
    assert 'interchange_http_request_seconds_bucket{le="0.001",method="GET",route="/api/v1/dossiers/{id}"}' in text
    for family in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info", "python_gc_objects",
                   "interchange_build_info{"):  # fmt: skip
        assert family in text, family
    assert 'interchange_receipts_total{outcome="received",status="202"} 1.0' in text
    assert 'interchange_receipts_total{outcome="refused",status="422"} 1.0' in text
    assert 'interchange_receipts_total{outcome="rejected",status="403"} 1.0' in text
    assert "http_4" not in text  # the outcome label holds outcomes; the status label the HTTP status
    assert 'interchange_work_queue_items{kind="result",state="ready"} 1.0' in text


async def test_readyz_names_the_failing_component(api, tmp_path):
    ready = await api.get("/readyz")
    body = await ready.json()
    assert ready.status == 200 and body["failing"] == [] and set(body["components"]) == {
        "database", "workers", "notice_key", "trust_anchors"}
    api.app[SERVICES].anchors = tmp_path  # no anchor there
    down = await api.get("/readyz")
    body = await down.json()
    assert down.status == 503 and body["status"] == "not ready" and body["failing"] == ["trust_anchors"]
    assert body["components"]["database"] == "ok"


async def test_malformed_http_gets_no_version_banner_nor_a_traceback(api, caplog):
    quiet_bad_requests()  # as `serve` does
    caplog.set_level(logging.INFO)
    host, port = api.server.host, api.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    await writer.drain()
    head = (await asyncio.wait_for(reader.read(65536), 5)).decode("latin-1")
    writer.close()
    assert head.split(" ")[1] == "400", head
    assert "Server: interchange\r\n" in head and "Python" not in head and "aiohttp" not in head.lower(), head
    resp = await api.get("/healthz")
    assert resp.headers["Server"] == "interchange"
    (logged,) = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert logged.levelno == logging.INFO and logged.exc_info is None and "Content-Length" in logged.getMessage()
    assert "\n" not in JsonFormatter().format(logged)

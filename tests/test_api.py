"""The HTTP API over a real loopback port (aiohttp test server), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest

from interchange.api.http import SERVICES
from interchange.notices.notice import NS
from tests.helpers import OTHER_UNIT, UNIT, XML, dossier, error_codes, notice_of, post, t


async def test_receipt_replay_and_reading_back(api, world):
    body = dossier(world.signer(world.unit), seed=1)
    status, notice, resp = await post(api, body)
    assert status == 202, notice
    root = notice_of(notice)
    assert t(root, "LoaiThongBao") == "TIEP_NHAN"
    assert t(root, "SoHoSo").startswith("00001/") and t(root, "SoHoSo").endswith("/TEST")
    assert t(root, "BamHoSo") == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert t(root, "MaSoThue") == UNIT.mst and t(root, "HanTraKetQua")
    assert root.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is not None
    tx = t(root, "MaGiaoDich")
    assert resp.headers["Location"] == f"/api/v1/dossiers/{tx}"

    status, again, _ = await post(api, body)
    assert status == 200 and again == notice  # exact replay: the original notice

    resp = await api.get(f"/api/v1/dossiers/{tx}", headers=api.keys["unit"])
    info = await resp.json()
    assert info["state"] == "received" and info["so_ho_so"] == t(root, "SoHoSo")
    assert info["layers"] == {"envelope": "passed", "signature": "passed", "schema": "passed"}
    resp = await api.get(f"/api/v1/dossiers/{tx}/original", headers=api.keys["unit"])
    assert await resp.read() == body
    resp = await api.get(f"/api/v1/dossiers/{tx}/notices/tiep-nhan", headers=api.keys["unit"])
    assert await resp.read() == notice
    resp = await api.get("/api/v1/dossiers?state=received", headers=api.keys["unit"])
    assert [d["id"] for d in (await resp.json())["items"]] == [tx]


async def test_refusal_is_signed_stored_and_resend_is_judged_again(api, world):
    body = dossier(world.signer(world.unit), seed=2).replace(b"<KyKeKhai>11/2026", b"<KyKeKhai>10/2026")
    status, notice, _ = await post(api, body)
    assert status == 422
    root = notice_of(notice)
    assert t(root, "LoaiThongBao") == "TU_CHOI" and t(root, "SoHoSo") is None
    assert error_codes(root) == ["SIG-DIGEST"]
    states = {e.get("Ten"): e.get("TrangThai") for e in root.iterfind(f"{{{NS}}}CacTang/{{{NS}}}Tang")}
    assert states == {"envelope": "dat", "signature": "khong_dat", "schema": "chua_chay"}
    status2, notice2, _ = await post(api, body)
    assert status2 == 422 and t(notice_of(notice2), "MaGiaoDich") != t(root, "MaGiaoDich")
    resp = await api.get(f"/api/v1/dossiers/{t(root, 'MaGiaoDich')}/notices/tu-choi", headers=api.keys["unit"])
    assert resp.status == 200 and await resp.read() == notice


async def test_idempotency_key(api, world):
    a = dossier(world.signer(world.unit), seed=3)
    b = dossier(world.signer(world.unit), seed=4)
    s1, n1, _ = await post(api, a, **{"Idempotency-Key": "batch-7"})
    s2, n2, _ = await post(api, a, **{"Idempotency-Key": "batch-7"})
    s3, n3, _ = await post(api, b, **{"Idempotency-Key": "batch-7"})
    assert (s1, s2, s3) == (202, 200, 409)
    assert n2 == n1 and error_codes(notice_of(n3)) == ["IDEMPOTENCY-CONFLICT"]


async def test_concurrent_identical_submissions_store_one(api, world):
    body = dossier(world.signer(world.unit), seed=5)
    results = await asyncio.gather(*(post(api, body) for _ in range(8)))
    assert sorted(r[0] for r in results) == [200] * 7 + [202]
    assert len({r[1] for r in results}) == 1


@pytest.mark.parametrize("headers, code", [({}, "AUTH-MISSING"), ({"Authorization": "Basic eDp5"}, "AUTH-MISSING"),
                                           ({"Authorization": "Bearer ik_nope_nope"}, "AUTH-INVALID")])
async def test_unauthenticated_submissions_get_unsigned_problems(api, headers, code, monkeypatch):
    """A caller without a valid key costs no signature: its 401 is problem JSON, and a wrong key
    is told apart from a missing one."""
    signed = []
    signer = api.app[SERVICES].signer
    monkeypatch.setattr(signer, "sign", lambda *a, **k: signed.append(a) or pytest.fail("signed for a 401"))
    resp = await api.post("/api/v1/dossiers", data=b"<Hoso/>", headers={**XML, **headers})
    body = await resp.json()
    assert resp.status == 401 and resp.content_type == "application/problem+json" and signed == []
    assert body["code"] == code and body["status"] == 401 and body["instance"] == "/api/v1/dossiers"
    assert body["detail"] and body["detail_en"] and body["title"] != body["title_en"]
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "headers, body, status, code",
    [
        ({"Content-Type": "application/json"}, b"{}", 415, "CONTENT-TYPE"),
        ({}, b"", 422, "BODY-EMPTY"),
    ],
)
async def test_transport_refusals(api, headers, body, status, code):
    h = {**XML, **api.keys["unit"], **headers}
    resp = await api.post("/api/v1/dossiers", data=body, headers=h)
    assert resp.status == status
    assert error_codes(notice_of(await resp.read())) == [code]


async def test_oversize_body_refused_before_reading(api, cfg):
    limit = cfg.limits.max_body_bytes
    resp = await api.post("/api/v1/dossiers", data=b"<" + b"x" * (limit + 10), headers={**XML, **api.keys["unit"]})
    assert resp.status == 413
    assert error_codes(notice_of(await resp.read())) == ["BODY-TOO-LARGE"]


async def test_malformed_and_dtd_get_422_and_nothing_received(api):
    for body, code in ((b"<Hoso><x></Hoso>", "XML-MALFORMED"), (b'<!DOCTYPE a [<!ENTITY b "c">]><Hoso>&b;</Hoso>', "XML-DTD")):
        status, notice, _ = await post(api, body)
        assert status == 422 and error_codes(notice_of(notice)) == [code]
    resp = await api.get("/api/v1/dossiers?state=received", headers=api.keys["auditor"])
    assert (await resp.json())["items"] == []


async def test_unit_and_ivan_binding(api, world):
    body = dossier(world.signer(world.unit), seed=6)
    status, notice, _ = await post(api, body, key="other")
    assert status == 403 and error_codes(notice_of(notice)) == ["AUTH-UNIT-MISMATCH"]
    status, notice, _ = await post(api, body, key="other_ivan")
    assert status == 403 and error_codes(notice_of(notice)) == ["AUTH-IVAN-MISMATCH"]
    status, notice, _ = await post(api, body, key="auditor")
    assert status == 403 and error_codes(notice_of(notice)) == ["AUTH-ROLE"]
    status, _, _ = await post(api, body, key="ivan")
    assert status == 202


async def test_units_never_see_each_others_dossiers(api, world):
    _, notice, _ = await post(api, dossier(world.signer(world.unit), seed=7))
    tx = t(notice_of(notice), "MaGiaoDich")
    _, other_notice, _ = await post(api, dossier(world.signer(world.other_unit), unit=OTHER_UNIT, seed=8), key="other")
    other_tx = t(notice_of(other_notice), "MaGiaoDich")
    for path in ("", "/original", "/notices/tiep-nhan"):
        resp = await api.get(f"/api/v1/dossiers/{tx}{path}", headers=api.keys["other"])
        assert resp.status == 404
        resp = await api.get(f"/api/v1/dossiers/{tx}{path}", headers=api.keys["unit"])
        assert resp.status == 200
        resp = await api.get(f"/api/v1/dossiers/{tx}{path}", headers=api.keys["auditor"])
        assert resp.status == 200
        resp = await api.get(f"/api/v1/dossiers/{tx}{path}")
        assert resp.status == 401
    listed = {k: [d["id"] for d in (await (await api.get("/api/v1/dossiers", headers=api.keys[k])).json())["items"]]
              for k in ("unit", "other", "ivan", "other_ivan", "auditor")}
    assert listed["unit"] == [tx] and listed["other"] == [other_tx]
    assert set(listed["ivan"]) == {tx, other_tx}  # both went through I-VAN 00123
    assert listed["other_ivan"] == [] and set(listed["auditor"]) == {tx, other_tx}


async def test_listing_filters_and_pagination(api, world):
    for seed in range(10, 15):
        status, _, _ = await post(api, dossier(world.signer(world.unit), seed=seed))
        assert status == 202
    seen, cursor = [], None
    while True:
        url = "/api/v1/dossiers?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await (await api.get(url, headers=api.keys["unit"])).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5
    page = await (await api.get("/api/v1/dossiers?procedure=602", headers=api.keys["unit"])).json()
    assert page["items"] == []
    resp = await api.get("/api/v1/dossiers?from=yesterday", headers=api.keys["unit"])
    assert resp.status == 400


async def test_operations_endpoints(api):
    health = await api.get("/healthz")
    assert health.status == 200
    assert health.headers["Server"] == "interchange"  # no Python or aiohttp version banner
    assert (await api.get("/readyz")).status == 200
    spec = await (await api.get("/api/openapi.json")).json()
    assert "/api/v1/dossiers" in spec["paths"]
    metrics = await (await api.get("/metrics")).text()
    assert "interchange_receipt_seconds" in metrics


async def test_lookup_page(api):
    resp = await api.get("/")
    assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
    assert '<script src="/console/console.js"' in await resp.text()  # the web console (tests/test_console_*.py)
    assert "/api/v1/dossiers" in await (await api.get("/console/console.js")).text()

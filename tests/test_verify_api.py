"""POST /api/v1/verify: a signature report on any signed XML (SPEC §5)."""

from __future__ import annotations

from tests.helpers import XML, dossier


async def verify(api, body: bytes, key: str = "auditor"):
    resp = await api.post("/api/v1/verify", data=body, headers={**XML, **api.keys[key]})
    return resp.status, await resp.json()


async def test_an_envelope_its_forms_and_a_notice_verify(api, world):
    body = dossier(world.signer(world.unit), seed=7)
    status, report = await verify(api, body)
    assert status == 200 and report["ok"] is True, report
    docs = [s["document"] for s in report["signatures"]]
    assert docs == ["Hoso", "D02-TS.xml"]  # the envelope and its form
    assert all(s["valid"] and s["mst"] == "0101234565" for s in report["signatures"])
    assert all("chain_pem" not in s for s in report["signatures"])

    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys["unit"]})
    notice = await resp.read()
    status, report = await verify(api, notice, key="unit")
    assert status == 200 and report["ok"] is True and report["signatures"][0]["document"] == "ThongBao"
    assert report["signatures"][0]["valid"] is True


async def test_a_tampered_or_mismatched_dossier_is_reported_not_refused(api, world):
    body = dossier(world.signer(world.unit), seed=8)
    tampered = body.replace(b"<KyKeKhai>", b"<KyKeKhai>1", 1)
    status, report = await verify(api, tampered)
    assert status == 200 and report["ok"] is False
    assert report["signatures"][0]["valid"] is False and report["problems"]
    # signed by another unit than the one it names: every signature says so
    foreign = dossier(world.signer(world.other_unit), seed=9)
    status, report = await verify(api, foreign)
    assert status == 200 and report["ok"] is False
    assert {p["code"] for p in report["problems"]} >= {"SIG-MST-MISMATCH"}, report["problems"]


async def test_bad_requests(api):
    resp = await api.post("/api/v1/verify", data=b"<a/>", headers=XML)
    assert resp.status == 401
    resp = await api.post("/api/v1/verify", data=b"{}", headers={"Content-Type": "application/json", **api.keys["unit"]})
    assert resp.status == 415
    status, report = await verify(api, b"<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>")
    assert status == 200 and report["ok"] is False and report["problems"][0]["code"]
    status, report = await verify(api, b"not xml at all")
    assert status == 200 and report["ok"] is False

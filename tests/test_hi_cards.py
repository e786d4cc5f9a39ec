"""E-HI card lookups over HTTP (interchange.api.cards): the facility role and its isolation, the
answer for an ID / name / birth date (a mismatch answers as an unknown person), the person known
first by SI code and then by personal ID, the signed XML answer, the batch, and the lookup log."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, date, datetime

import pytest
from lxml import etree

from interchange.api import models as m
from interchange.api.forwarding import UPSTREAM_KINDS
from interchange.cli import build_parser
from interchange.clock import vn_now
from interchange.devkit import pki
from interchange.records.cardxml import NS
from interchange.records.model import Extracted, PersonalDataChange
from tests.clitools import run
from tests.helpers import UNIT, change, ref, settle

PID, SI = "001090123456", "0112345678"
NAME, BIRTH = "Nguyễn Văn Phúc", "15/03/1990"
OTHER_PID = "079195654321"


def who(pid=None, si=None):
    return ref(pid, si, name=NAME, birth_date=date(1990, 3, 15), gender=1)


@pytest.fixture
async def cards(api):
    """P: joins unit A in 11/2025 known by SI code only (level 3), is named by both IDs in 12/2025
    and registers facility 01001 by TK1-TS (personal ID only)."""
    store = api.store
    await settle(store, UNIT, datetime(2025, 11, 5, 3, tzinfo=UTC), Extracted(contribution_changes=[
        change(1, who(si=SI), "TM", "2025-11", benefit_level="3")]))  # fmt: skip
    await settle(store, UNIT, datetime(2025, 12, 5, 3, tzinfo=UTC), Extracted(contribution_changes=[
        change(1, who(PID, SI), "DC", "2025-12", salary=None)]))  # fmt: skip
    tk1 = PersonalDataChange(xpath="/TK1-TS/NoiDung/LaoDong[1]", stt=1, person=who(pid=PID),
                             data={"MaTinhBenhVien": "01", "MaBenhVien": "01001"})  # fmt: skip
    await settle(store, UNIT, datetime(2025, 12, 6, 3, tzinfo=UTC), Extracted(personal_data=[tk1]))
    for name, code in (("facility", "01001"), ("facility2", "79024")):
        _, token = await store.keys.create("facility", facility=code)
        api.keys[name] = {"Authorization": f"Bearer {token}"}
    return api


async def lookup(api, pid=PID, name=NAME, birth=BIRTH, key="facility", **params):
    resp = await api.get(f"/api/v1/hi-cards/{pid}", params={"name": name, "birth": birth, **params},
                         headers=api.keys[key])  # fmt: skip
    return resp.status, without_place(await resp.json())


def without_place(body: dict) -> dict:
    """A problem without what differs from one request to the next: its path and request id."""
    return {k: v for k, v in body.items() if k not in ("instance", "request_id")}


async def test_a_card_by_either_identifier(cards):
    status, by_pid = await lookup(cards, as_of="2026-01-15")
    assert status == 200, by_pid
    answered = by_pid.pop("answered_at")
    assert datetime.fromisoformat(answered).tzinfo is not None
    assert by_pid == {
        "id": PID, "personal_id": PID, "si_code": SI, "name": NAME, "birth_date": "1990-03-15", "gender": 1,
        "status": "valid", "valid_from": "2025-11-01", "valid_to": None, "open": True,
        "benefit": {"code": "3", "percent": 95}, "facility": {"province": "01", "code": "01001"},
        "five_years_at": "2030-11-01", "unit": {"mst": UNIT.mst, "code": UNIT.code, "name": UNIT.name},
        "paid_by": "unit", "as_of": "2026-01-15",
    }  # fmt: skip
    status, by_si = await lookup(cards, SI, name="  nguyễn VĂN  phúc", birth="1990-03-15", as_of="2026-01-15")
    assert status == 200
    by_si.pop("answered_at")
    assert by_si == {**by_pid, "id": SI}
    # before the TK1-TS was received: no facility yet; before 11/2025: not valid yet
    assert (await lookup(cards, as_of="2025-11-30"))[1]["facility"] is None
    assert (await lookup(cards, as_of="2025-10-31"))[1]["status"] == "not_valid"
    # today by default
    assert (await lookup(cards))[1]["as_of"] == vn_now().date().isoformat()


async def test_a_mismatch_answers_exactly_like_an_unknown_person(cards):
    unknown = await lookup(cards, OTHER_PID)
    assert unknown[0] == 404 and unknown[1]["code"] == "NOT-FOUND"
    assert unknown[1]["detail_en"] == "no card matches this ID, name and birth date"
    for kw in ({"name": "Nguyen Van Phuc"}, {"name": "Nguyễn Văn An"}, {"birth": "16/03/1990"}, {"pid": SI, "birth": "1991-03-15"}):
        assert await lookup(cards, **kw) == unknown, kw
    resp = await cards.get(f"/api/v1/hi-cards/{PID}", params={"name": "x", "birth": BIRTH},
                           headers={**cards.keys["facility"], "Accept": "application/xml"})  # fmt: skip
    assert resp.status == 404 and without_place(await resp.json()) == unknown[1]


async def test_bad_requests(cards):
    for pid in ("12345", "00109012345X", "abc"):
        status, body = await lookup(cards, pid)
        assert (status, body["code"]) == (400, "BAD-PID")
    for kw in ({"birth": "1990/03/15"}, {"birth": "31/02/1990"}, {"as_of": "2026-1-1"}, {"as_of": "2999-01-01"}):
        status, body = await lookup(cards, **kw)
        assert (status, body["code"]) == (400, "BAD-QUERY"), kw
    resp = await cards.get(f"/api/v1/hi-cards/{PID}", params={"birth": BIRTH}, headers=cards.keys["facility"])
    assert resp.status == 400
    assert (await cards.get(f"/api/v1/hi-cards/{PID}", params={"name": NAME, "birth": BIRTH})).status == 401


ROUTES = [  # every route but the card lookups, with a method and a path
    ("POST", "/api/v1/dossiers"), ("GET", "/api/v1/dossiers"), ("GET", "/api/v1/dossiers/x"),
    ("GET", "/api/v1/dossiers/x/forwarding"), ("GET", "/api/v1/dossiers/x/notices/ket-qua"),
    ("GET", f"/api/v1/dossiers/x/notices/{UPSTREAM_KINDS[0]}"),
    ("GET", "/api/v1/dossiers/x/original"), ("GET", "/api/v1/dossiers/x/evidence"),
    ("GET", "/api/v1/dossiers/x/deliveries"), ("PUT", "/api/v1/callback"), ("GET", "/api/v1/callback"),
    ("DELETE", "/api/v1/callback"), ("GET", f"/api/v1/units/{UNIT.mst}"), ("GET", f"/api/v1/persons/{PID}/book"),
    ("GET", f"/api/v1/persons/{PID}/lookups"), ("POST", "/api/v1/verify"),
    ("GET", "/api/v1/codes"), ("GET", "/api/v1/key"),  # the web console's (interchange/api/console.py)
]  # fmt: skip


async def test_a_facility_key_gets_403_on_every_other_route(cards):
    app_routes = {(r.method, r.resource.canonical) for r in cards.app.router.routes() if r.method != "HEAD"}
    api_routes = {r for r in app_routes if r[1].startswith("/api/v1/") and not r[1].startswith("/api/v1/hi-cards")}
    # The agency's push to an I-VAN takes no API key (the token in its path and the notice's
    # signature are what count, tests/test_forwarding_push.py): a key opens nothing there.
    api_routes.remove(("POST", "/api/v1/upstream/notices/{token}"))
    resp = await cards.post("/api/v1/upstream/notices/x", data=b"<x/>", headers=cards.keys["facility"])
    assert resp.status == 404
    # one entry per route, and one more for the upstream notices of role ivan (a path of their own kinds)
    assert len(ROUTES) == len(api_routes) + 1, f"a new route? add it to ROUTES: {sorted(api_routes)}"
    for method, path in ROUTES:
        resp = await cards.request(method, path, data=b"<x/>", headers={**cards.keys["facility"],
                                                                         "Content-Type": "application/xml"})
        assert resp.status == 403, (method, path, resp.status)


@pytest.mark.parametrize("role", ["unit", "ivan", "auditor"])
async def test_other_roles_get_403_on_hi_cards(cards, role):
    status, body = await lookup(cards, key=role)
    assert (status, body["code"]) == (403, "AUTH-ROLE")
    resp = await cards.post("/api/v1/hi-cards/lookups", json={"items": []}, headers=cards.keys[role])
    assert resp.status == 403
    assert (await lookup(cards, key="admin"))[0] == 200  # an admin may look up


async def test_the_signed_xml_answer(cards, cfg, tmp_path, clean_environ):
    resp = await cards.get(f"/api/v1/hi-cards/{SI}", params={"name": NAME, "birth": BIRTH, "as_of": "2026-01-15"},
                           headers={**cards.keys["facility"], "Accept": "application/xml"})  # fmt: skip
    assert resp.status == 200 and resp.content_type == "application/xml"
    body = await resp.read()
    root = etree.fromstring(body)
    assert root.tag == f"{{{NS}}}TheBHYT"
    t = {el.tag.split("}")[1]: el.text for el in root if el.tag.startswith(f"{{{NS}}}")}
    assert (t["MaTraCuu"], t["SoDinhDanh"], t["MaSoBHXH"], t["TrangThai"], t["GiaTriTu"], t["KhongThoiHan"],
            t["MucHuong"], t["ThoiDiemDu5Nam"], t["NgayTraCuu"], t["CoSoKCB"]) == (
        SI, PID, SI, "valid", "2025-11-01", "true", "95", "2030-11-01", "2026-01-15", "01001")  # fmt: skip
    assert "GiaTriDen" not in t and root.find(f"{{{NS}}}MucHuong").get("Ma") == "3"
    assert root.findtext(f"{{{NS}}}NoiDangKyKCBBD/{{{NS}}}MaBenhVien") == "01001"
    # `interchange verify` (with the test anchors) accepts it; a changed byte does not
    config = tmp_path / "verify.toml"
    config.write_text(f'[trust]\nanchors_dir = "{cfg.trust.anchors_dir}"\ncrl_dir = "{cfg.trust.crl_dir}"\n')
    tampered = body.replace(b"<TrangThai>valid<", b"<TrangThai>suspended<")
    assert tampered != body
    for name, data, expected in (("card.xml", body, 0), ("tampered.xml", tampered, 1)):
        (tmp_path / name).write_bytes(data)
        argv = ["verify", "--json", "--config", str(config), str(tmp_path / name)]
        code, out = await asyncio.to_thread(run, argv)  # the command runs its own event loop
        assert code == expected, out
        assert json.loads(out)["signatures"][0]["document"] == "TheBHYT"


async def test_the_batch_answers_in_order(cards):
    items = [
        {"id": PID, "name": NAME, "birth": BIRTH},
        {"id": OTHER_PID, "name": NAME, "birth": BIRTH},
        {"id": SI, "name": "Nguyen", "birth": BIRTH},
        {"id": "123", "name": NAME, "birth": BIRTH},
        {"id": SI, "name": NAME, "birth": "1990-03-15"},
    ]
    resp = await cards.post("/api/v1/hi-cards/lookups?as_of=2026-01-15", json={"items": items},
                            headers=cards.keys["facility"])  # fmt: skip
    assert resp.status == 200
    body = await resp.json()
    results = body["results"]
    assert [(r["id"], r["status"]) for r in results] == [(PID, 200), (OTHER_PID, 404), (SI, 404), ("123", 400), (SI, 200)]
    assert results[1] == results[2] | {"id": OTHER_PID}  # unknown and mismatch alike
    assert results[0]["card"] == results[4]["card"] and results[0]["card"]["benefit"]["percent"] == 95
    assert body["as_of"] == "2026-01-15"
    ok = {"id": PID, "name": NAME, "birth": BIRTH}
    assert (await cards.post("/api/v1/hi-cards/lookups", json={"items": [ok] * 500},
                             headers=cards.keys["facility"])).status == 200  # fmt: skip
    for bad in ({"items": [ok] * 501}, [ok], {"items": ok}, {"items": ["x"]}, {}):
        resp = await cards.post("/api/v1/hi-cards/lookups", json=bad, headers=cards.keys["facility"])
        assert resp.status == 400 and (await resp.json())["code"] == "BAD-JSON", bad
    resp = await cards.post("/api/v1/hi-cards/lookups", data=b"{not json", headers=cards.keys["facility"])
    assert resp.status == 415 and (await resp.json())["code"] == "CONTENT-TYPE"  # not sent as application/json
    resp = await cards.post("/api/v1/hi-cards/lookups", data=b"{not json",
                            headers={**cards.keys["facility"], "Content-Type": "application/json"})  # fmt: skip
    assert resp.status == 400 and (await resp.json())["code"] == "BAD-JSON"


async def test_the_answers_are_written_as_their_models_write_them(cards):
    """The card and the batch are written straight to JSON (interchange.api.http.shaped): byte for
    byte what pydantic writes from their models (interchange.api.http.typed), member order included."""
    for as_of in ("2026-01-15", "2025-10-31"):  # every member set, then several None
        resp = await cards.get(f"/api/v1/hi-cards/{PID}", params={"name": NAME, "birth": BIRTH, "as_of": as_of},
                               headers=cards.keys["facility"])  # fmt: skip
        body = await resp.text()
        assert resp.status == 200 and body == m.CardAnswer.model_validate_json(body).model_dump_json(exclude_unset=True)
    items = [{"id": PID, "name": NAME, "birth": BIRTH}, {"id": OTHER_PID, "name": NAME, "birth": BIRTH}]
    resp = await cards.post("/api/v1/hi-cards/lookups?as_of=2025-11-30", json={"items": items},
                            headers=cards.keys["facility"])  # fmt: skip
    body = await resp.text()
    assert resp.status == 200 and body == m.LookupsOut.model_validate_json(body).model_dump_json(exclude_unset=True)
    assert [r["status"] for r in json.loads(body)["results"]] == [200, 404]


async def test_every_lookup_is_logged_for_auditors_only(cards):
    await lookup(cards, as_of="2026-01-15")
    await lookup(cards, SI, name="wrong", key="facility2")
    await lookup(cards, OTHER_PID)
    await cards.post("/api/v1/hi-cards/lookups", json={"items": [{"id": SI, "name": NAME, "birth": BIRTH}]},
                     headers=cards.keys["facility2"])  # fmt: skip
    for key in ("auditor", "admin"):
        resp = await cards.get(f"/api/v1/persons/{SI}/lookups", headers=cards.keys[key])
        assert resp.status == 200
        got = [(x["facility"], x["asked_id"], x["outcome"]) for x in (await resp.json())["lookups"]]
        assert got == [("01001", PID, "valid"), ("79024", SI, "mismatch"), ("79024", SI, "valid")]
    resp = await cards.get(f"/api/v1/persons/{OTHER_PID}/lookups", headers=cards.keys["auditor"])
    assert [x["outcome"] for x in (await resp.json())["lookups"]] == ["unknown"]
    for key in ("facility", "unit", "ivan"):
        assert (await cards.get(f"/api/v1/persons/{PID}/lookups", headers=cards.keys[key])).status == 403


async def test_the_log_is_written_on_close(store):
    from interchange.store.cards import Lookup

    now = datetime.now(UTC)
    store.cards.log.record([Lookup(now, "k1", "01001", PID, None, "unknown")] * 3)
    await store.cards.close()  # as Store.close does first
    assert [x.outcome for x in await store.cards.lookups_of(PID)] == ["unknown"] * 3


async def test_facility_keys(store):
    key, token = await store.keys.create("facility", facility="01001", label="BV Bạch Mai")
    assert (key.role, key.facility, key.owner, key.scope.all) == ("facility", "01001", "facility:01001", False)
    assert (await store.keys.authenticate(token)).facility == "01001"
    rotated, _ = await store.keys.rotate(key.key_id)
    assert rotated.facility == "01001"
    for kw in ({}, {"facility": "1"}, {"facility": "01001", "mst": UNIT.mst}):
        with pytest.raises(ValueError):
            await store.keys.create("facility", **kw)
    with pytest.raises(ValueError):
        await store.keys.create("auditor", facility="01001")
    args = build_parser().parse_args(["keys", "create", "--role", "facility", "--facility", "01001"])
    assert (args.role, args.facility) == ("facility", "01001")


async def test_the_routes_are_documented(cards):
    spec = await (await cards.get("/api/openapi.json")).json()
    for path in ("/api/v1/hi-cards/{id}", "/api/v1/hi-cards/lookups", "/api/v1/persons/{pid}/lookups"):
        assert path in spec["paths"], path


@pytest.mark.xmlsec1
@pytest.mark.skipif(shutil.which("xmlsec1") is None,
                    reason="xmlsec1 (Debian package xmlsec1) is not installed: the signed card's interop test is skipped")
async def test_the_signed_card_verifies_with_xmlsec1(cards, world, tmp_path):
    from tests.helpers import Pems

    (tmp_path / "x").mkdir()
    pems = Pems(tmp_path / "x", tmp_path / "x" / "root.pem", tmp_path / "x" / "ca.pem")
    pems.root.write_bytes(pki.certs_pem([world.root.cert]))
    pems.ca.write_bytes(pki.certs_pem([world.ca.cert]))
    resp = await cards.get(f"/api/v1/hi-cards/{PID}", params={"name": NAME, "birth": BIRTH},
                           headers={**cards.keys["facility"], "Accept": "application/xml"})  # fmt: skip
    body = await resp.read()
    result = pems.verify(body, "card")
    assert result.returncode == 0, result.stderr
    assert pems.verify(body.replace(b"<TrangThai>valid<", b"<TrangThai>not_valid<"), "tampered").returncode != 0


async def test_the_hi_card_command(cards, clean_environ):
    token = cards.keys["facility"]["Authorization"].split()[1]
    url = str(cards.make_url("/"))
    base = ["hi-card", SI, "--name", NAME, "--birth", BIRTH, "--url", url, "--api-key", token]
    code, out = await asyncio.to_thread(run, [*base, "--as-of", "2026-01-15"])
    assert code == 0, out
    assert "status: valid" in out and "95% (code 3)" in out and "01001" in out and "2030-11-01" in out
    code, out = await asyncio.to_thread(run, [*base, "--json", "--as-of", "2025-10-01"])
    assert code == 1 and json.loads(out)["status"] == "not_valid"
    code, out = await asyncio.to_thread(run, ["hi-card", SI, "--name", "x", "--birth", BIRTH, "--url", url,
                                              "--api-key", token])  # fmt: skip
    assert code == 1 and "HTTP 404: NOT-FOUND" in out
    assert (await asyncio.to_thread(run, ["hi-card", SI, "--name", NAME, "--birth", BIRTH, "--url", url]))[0] == 2

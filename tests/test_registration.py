"""Registration for electronic transactions (SPEC §9) end to end over HTTP, on SQLite and
PostgreSQL: 04/DK-IVAN, 05/SD-IVAN, 06/NG-IVAN dossiers, the work that checks them and issues
the signed KET_QUA, the unit's state at /api/v1/units/{mst}, `[registration] required`, and
the compliance figures (deadlines in the dossier JSON, overdue gauges, time to result)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from interchange.api.http import SERVICES
from interchange.devkit import samples
from interchange.errors import Layer
from interchange.evidence.bundle import verify_bundle
from interchange.jobs.registration import registration_problems
from interchange.notices.notice import NS
from interchange.server import WORK, reception_policy
from interchange.store.types import ACTIVE, STOPPED, Unit
from interchange.trust.anchors import TrustStore
from interchange.trust.xmldsig import verify_document
from tests.helpers import CONTACT, OTHER_UNIT, UNIT, dossier, error_codes, notice_of, post, registration, t


@pytest.fixture
def cfg(cfg):
    """The work is run by the tests (a controllable clock), not by the server's scheduler."""
    cfg.jobs.interval_seconds = 0
    cfg.targets.update({"05/SD-IVAN": "2 working hours", "06/NG-IVAN": "2 working hours"})
    return cfg


async def run_work(api, now: datetime | None = None):
    return await api.app[WORK].run_due(now or datetime.now(UTC) + timedelta(seconds=1))


async def get_json(api, path: str, key: str = "unit"):
    resp = await api.get(path, headers=api.keys[key])
    return resp.status, (await resp.json() if resp.content_type.endswith("json") else None)


async def result_of(api, tx: str):
    resp = await api.get(f"/api/v1/dossiers/{tx}/notices/ket-qua", headers=api.keys["unit"])
    assert resp.status == 200, await resp.text()
    return await resp.read()


async def register(api, world, procedure: str = "04/DK-IVAN", **kw) -> str:
    status, notice, _ = await post(api, registration(world.signer(world.unit), procedure, **kw))
    assert status == 202, notice
    return t(notice_of(notice), "MaGiaoDich")


async def test_register_change_and_stop(api, world, cfg):
    assert (await get_json(api, f"/api/v1/units/{UNIT.mst}"))[0] == 404
    status, body, _ = await post(api, registration(world.signer(world.unit)))
    assert status == 202  # a dossier with no forms
    receipt = notice_of(body)
    tx = t(receipt, "MaGiaoDich")
    received_at = datetime.fromisoformat(t(receipt, "ThoiGianNhan"))
    due_at = datetime.fromisoformat(t(receipt, "HanTraKetQua"))
    assert due_at == api.app[SERVICES].calendar.due(received_at, "2 working hours")

    (ran,) = await run_work(api)
    assert ran.outcome == "done"
    xml = await result_of(api, tx)
    root = notice_of(xml)
    assert (t(root, "LoaiThongBao"), t(root, "KetQua"), t(root, "MaGiaoDich")) == ("KET_QUA", "CHAP_NHAN", tx)
    assert t(root, "SoHoSo") == t(receipt, "SoHoSo") and t(root, "BamHoSo") == t(receipt, "BamHoSo")
    assert error_codes(root) == []
    report = await asyncio.to_thread(  # the trust store runs its own event loop
        verify_document, root, location="", trust=TrustStore.from_config(cfg.trust, cfg.trust_paths), at=datetime.now(UTC), document="ket-qua"
    )
    assert report.valid, report.as_dict()

    status, unit = await get_json(api, f"/api/v1/units/{UNIT.mst}")
    assert status == 200
    assert unit["state"] == ACTIVE and unit["email"] == CONTACT["Email"] and unit["address"] == CONTACT["DiaChi"]
    assert unit["contact"] == CONTACT["NguoiLienHe"] and unit["result_channel"] == "1"
    assert unit["registration"] == f"/api/v1/dossiers/{tx}" and unit["unit_code"] == UNIT.code

    status, info = await get_json(api, f"/api/v1/dossiers/{tx}")
    assert info["state"] == "accepted" and info["overdue"] is False
    assert datetime.fromisoformat(info["result_at"]) <= datetime.fromisoformat(info["due_at"])
    assert set(info["notices"]) == {"tiep-nhan", "ket-qua"}
    (work,) = [w for w in info["work"] if w["kind"] == "registration"]  # also: the confirmation e-mail's delivery
    assert (work["kind"], work["state"], work["attempts"], work["overdue"]) == ("registration", "done", 1, False)
    assert [r.item.kind for r in await run_work(api)] == ["deliver:ket-qua:email"]  # the e-mail, to the outbox
    assert await run_work(api) == []  # nothing is left

    # 05: new contact data
    changed = {**CONTACT, "Email": "nhansu@mauviet.vn"}
    tx_change = await register(api, world, "05/SD-IVAN", contact=changed)
    await run_work(api)
    assert t(notice_of(await result_of(api, tx_change)), "KetQua") == "CHAP_NHAN"
    unit = (await get_json(api, f"/api/v1/units/{UNIT.mst}"))[1]
    assert (unit["state"], unit["email"]) == (ACTIVE, "nhansu@mauviet.vn")

    # 06: stop; a second stop is rejected
    tx_stop = await register(api, world, "06/NG-IVAN", contact={})
    await run_work(api)
    assert t(notice_of(await result_of(api, tx_stop)), "KetQua") == "CHAP_NHAN"
    unit = (await get_json(api, f"/api/v1/units/{UNIT.mst}"))[1]
    assert (unit["state"], unit["email"], unit["registration"]) == (STOPPED, "nhansu@mauviet.vn", f"/api/v1/dossiers/{tx_stop}")
    tx_again = await register(api, world, "06/NG-IVAN", contact={"Email": "x@y.vn"})
    await run_work(api)
    root = notice_of(await result_of(api, tx_again))
    assert t(root, "KetQua") == "KHONG_CHAP_NHAN" and error_codes(root) == ["REG-NOT-ACTIVE"]

    # the accepted registration's evidence bundle holds the KET_QUA and the unit change, and checks offline
    resp = await api.get(f"/api/v1/dossiers/{tx}/evidence", headers=api.keys["auditor"])
    report = await asyncio.to_thread(verify_bundle, await resp.read(), [world.root.cert])
    assert report.ok, report.as_dict()


async def test_invalid_contact_data_gets_khong_chap_nhan_with_the_errors(api, world):
    body = registration(world.signer(world.unit), contact={"Email": "ketoan@@mauviet", "DiaChi": "  "})
    status, notice, _ = await post(api, body)
    assert status == 202, notice
    tx = t(notice_of(notice), "MaGiaoDich")
    await run_work(api)
    root = notice_of(await result_of(api, tx))
    assert t(root, "KetQua") == "KHONG_CHAP_NHAN"
    assert error_codes(root) == ["REG-EMAIL-INVALID", "REG-ADDRESS-MISSING", "REG-CONTACT-MISSING"]
    assert {e.findtext(f"{{{NS}}}Tang") for e in root.iterfind(f".//{{{NS}}}Loi")} == {"rule"}
    states = {e.get("Ten"): e.get("TrangThai") for e in root.iterfind(f"{{{NS}}}CacTang/{{{NS}}}Tang")}
    assert states == {"envelope": "dat", "signature": "dat", "schema": "dat", "rule": "khong_dat"}
    status, info = await get_json(api, f"/api/v1/dossiers/{tx}")
    assert info["state"] == "rejected"
    assert (await get_json(api, f"/api/v1/units/{UNIT.mst}"))[0] == 404  # no unit registered
    # the same bytes may be sent again after a rejection: judged again, not replayed
    status, again, _ = await post(api, body)
    assert status == 202 and t(notice_of(again), "MaGiaoDich") != tx


@pytest.mark.parametrize(
    "key, visible",
    [("unit", True), ("other", False), ("ivan", True), ("other_ivan", False), ("auditor", True), ("admin", True)],
)
async def test_who_sees_a_unit(api, world, key, visible):
    await register(api, world)  # carried by I-VAN 00123
    await run_work(api)
    status, body = await get_json(api, f"/api/v1/units/{UNIT.mst}", key)
    assert status == (200 if visible else 404), body
    assert (await api.get(f"/api/v1/units/{UNIT.mst}")).status == 401


async def test_a_refused_dossier_does_not_show_an_ivan_the_unit(api, world):
    await register(api, world)
    await run_work(api)
    unsigned = samples.envelope(UNIT, [], procedure="04/DK-IVAN", period="", ivan=("00999", "Khác"), registration=CONTACT)
    status, _, _ = await post(api, unsigned, key="other_ivan")  # anyone can name any MST in a refused dossier
    assert status == 422
    assert (await get_json(api, f"/api/v1/units/{UNIT.mst}", "other_ivan"))[0] == 404


async def test_registration_required_refuses_unregistered_units(api, world, cfg):
    cfg.registration.required = True
    api.services.reception.policy = reception_policy(cfg)  # the server reads its settings at start
    status, body, _ = await post(api, dossier(world.signer(world.unit), seed=40))
    assert status == 422
    root = notice_of(body)
    assert t(root, "LoaiThongBao") == "TU_CHOI" and error_codes(root) == ["REG-NOT-ACTIVE"]
    states = {e.get("Ten"): e.get("TrangThai") for e in root.iterfind(f"{{{NS}}}CacTang/{{{NS}}}Tang")}
    assert states["signature"] == "dat" and states["rule"] == "khong_dat"

    await register(api, world)  # registration dossiers are received all the same
    await run_work(api)
    accepted = dossier(world.signer(world.unit), seed=40)
    status, receipt, _ = await post(api, accepted)
    assert status == 202, receipt
    # another unit is still refused
    status, body, _ = await post(api, dossier(world.signer(world.other_unit), unit=OTHER_UNIT, seed=41), key="other")
    assert status == 422 and error_codes(notice_of(body)) == ["REG-NOT-ACTIVE"]

    await register(api, world, "06/NG-IVAN", contact={})
    await run_work(api)
    status, body, _ = await post(api, dossier(world.signer(world.unit), seed=42))
    assert status == 422 and error_codes(notice_of(body)) == ["REG-NOT-ACTIVE"]
    # an exact resend of the dossier received while the unit was active replays its receipt
    status, body, _ = await post(api, accepted)
    assert status == 200 and body == receipt


async def test_a_late_result_is_visible(api, world):
    tx = await register(api, world)
    status, info = await get_json(api, f"/api/v1/dossiers/{tx}")
    due_at = datetime.fromisoformat(info["due_at"])
    late = due_at + timedelta(hours=1)
    overdue = await api.app[WORK].refresh_overdue(late)
    assert [(o.kind, o.count) for o in overdue] == [("registration", 1)]
    metrics = await (await api.get("/metrics")).text()
    assert 'interchange_work_overdue_items{kind="registration"} 1.0' in metrics
    assert 'interchange_work_overdue_age_seconds{kind="registration"} 3600.0' in metrics

    (ran,) = await run_work(api, late)
    assert ran.outcome == "done"
    status, info = await get_json(api, f"/api/v1/dossiers/{tx}")
    assert info["overdue"] is True and datetime.fromisoformat(info["result_at"]) == late
    assert info["work"][0]["overdue"] is True
    await api.app[WORK].refresh_overdue(late)
    metrics = await (await api.get("/metrics")).text()
    assert 'interchange_work_overdue_items{kind="registration"} 0.0' in metrics
    assert 'interchange_time_to_result_seconds_count{procedure="04/DK-IVAN"} 1.0' in metrics
    assert 'interchange_work_runs_total{kind="registration",outcome="done"} 1.0' in metrics


async def test_the_server_runs_due_work_by_itself(cfg, store_url, aiohttp_client, world):
    from interchange.server import make_app

    cfg.store.url = store_url
    cfg.jobs.interval_seconds = 0.05
    app = await make_app(cfg, workers=0)
    client = await aiohttp_client(app)
    _, token = await app[WORK].store.keys.create("submitter", mst=UNIT.mst)
    auth = {"Authorization": f"Bearer {token}"}
    resp = await client.post("/api/v1/dossiers", data=registration(world.signer(world.unit)),
                             headers={"Content-Type": "application/xml", **auth})  # fmt: skip
    assert resp.status == 202
    for _ in range(80):
        resp = await client.get(f"/api/v1/units/{UNIT.mst}", headers=auth)
        if resp.status == 200:
            break
        await asyncio.sleep(0.025)
    assert resp.status == 200 and (await resp.json())["state"] == ACTIVE


# -- the checks themselves (pure) ---------------------------------------------------------------

ACTIVE_UNIT = Unit(mst=UNIT.mst, unit_code=UNIT.code, name=UNIT.name, state=ACTIVE, email="a@b.vn", address="x",
                   contact="y", result_channel=None, dossier_id="d", updated_at=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip


@pytest.mark.parametrize(
    "procedure, mst, contact, unit, codes",
    [
        ("04/DK-IVAN", UNIT.mst, CONTACT, None, []),
        ("04/DK-IVAN", "0101234568", CONTACT, None, ["REG-MST"]),
        ("04/DK-IVAN", UNIT.mst + "-001", CONTACT, None, []),
        ("04/DK-IVAN", UNIT.mst, {**CONTACT, "Email": "a@b"}, None, ["REG-EMAIL-INVALID"]),
        ("04/DK-IVAN", UNIT.mst, {**CONTACT, "Email": "an nguyen@b.vn"}, None, ["REG-EMAIL-INVALID"]),
        ("04/DK-IVAN", UNIT.mst, {}, None, ["REG-EMAIL-MISSING", "REG-ADDRESS-MISSING", "REG-CONTACT-MISSING"]),
        ("04/DK-IVAN", UNIT.mst, CONTACT, ACTIVE_UNIT, ["REG-ALREADY-ACTIVE"]),
        ("04/DK-IVAN", UNIT.mst, CONTACT, Unit(**{**vars(ACTIVE_UNIT), "state": STOPPED}), []),  # registers again
        ("05/SD-IVAN", UNIT.mst, CONTACT, ACTIVE_UNIT, []),
        ("05/SD-IVAN", UNIT.mst, CONTACT, None, ["REG-NOT-ACTIVE"]),
        ("05/SD-IVAN", UNIT.mst, {**CONTACT, "NguoiLienHe": ""}, ACTIVE_UNIT, ["REG-CONTACT-MISSING"]),
        ("06/NG-IVAN", UNIT.mst, {}, ACTIVE_UNIT, []),
        ("06/NG-IVAN", UNIT.mst, {}, Unit(**{**vars(ACTIVE_UNIT), "state": STOPPED}), ["REG-NOT-ACTIVE"]),
    ],
)
def test_registration_checks(procedure, mst, contact, unit, codes):
    problems = registration_problems(procedure, mst, contact, unit)
    assert [p.code for p in problems] == codes
    assert all(p.layer == Layer.RULE and p.message_vi and p.message_en and p.xpath for p in problems)

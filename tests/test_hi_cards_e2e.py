"""The e-HI card follows the records (issue #12): signed dossiers over HTTP -> the result work ->
the card, month by month. Each change shows in the answer once its KET_QUA is given, not before.

P joins unit A in 03/2026 known by SI code only (MucHuong 4: 80%); a TK1-TS (procedure 602)
names P by both IDs and registers facility 01001; from 05/2026 the benefit level is 2 (100%);
unpaid leave 07-08/2026 suspends the card; a TK1-TS moves P to facility 79024; P leaves A from
11/2026. Expected values worked out by hand from docs/hi-card.md."""

from __future__ import annotations

import pytest

from interchange.devkit import samples
from interchange.trust.dossier_signing import sign_envelope
from tests.helpers import P_PID, P_SI, UNIT, XML, p_row, run_work, signed

NAME, BIRTH = "Nguyễn Văn Phúc", "15/03/1990"


def tk1(world, hospital: tuple[str, str]) -> bytes:
    row = {"HoTen": NAME, "NgaySinh": BIRTH, "GioiTinh": "1", "QuocTich": "VN", "DanToc": "01",
           "Matinh_KS": "01", "Matinh_NN": "01", "MasoBHXH": P_SI, "CMND": P_PID,
           "MaTinhBenhVien": hospital[0], "MaBenhVien": hospital[1], "Noidung_Thaydoi": "Đăng ký nơi KCB ban đầu"}  # fmt: skip
    envelope = samples.envelope(UNIT, [("TK1-TS", "TK1-TS.xml", samples.tk1ts_of([row]))], procedure="602",
                                period="04/2026", ivan=None)  # fmt: skip
    return sign_envelope(envelope, world.signer(world.unit))


async def send(api, body: bytes) -> None:
    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys["unit"]})
    assert resp.status == 202, await resp.text()


async def settled(api, body: bytes) -> None:
    await send(api, body)
    assert await run_work(api) == ["result:done"]


async def card(api, pid: str, as_of: str | None = None) -> dict | None:
    params = {"name": NAME, "birth": BIRTH, **({"as_of": as_of} if as_of else {})}
    resp = await api.get(f"/api/v1/hi-cards/{pid}", params=params, headers=api.keys["facility"])
    body = await resp.json()
    assert resp.status in (200, 404), body
    return body if resp.status == 200 else None


def brief(c: dict) -> tuple:
    level = c["benefit"] and (c["benefit"]["code"], c["benefit"]["percent"])
    return c["status"], c["valid_from"], c["valid_to"], level


@pytest.fixture
async def facility_api(api):
    _, token = await api.store.keys.create("facility", facility="01001")
    api.keys["facility"] = {"Authorization": f"Bearer {token}"}
    return api


async def test_the_card_follows_each_settled_dossier(facility_api, world):
    api = facility_api
    # 03/2026: P joins A, by SI code only.
    await settled(api, signed(world, UNIT, "03/2026", [
        p_row(MasoBHXH=P_SI, TienLuong="10000000", TuThang="03/2026", PA="TM", Loai="1", MucHuong="4")]))  # fmt: skip
    c = await card(api, P_SI, "2026-03-15")
    assert brief(c) == ("valid", "2026-03-01", None, ("4", 80)) and c["open"]
    assert (c["five_years_at"], c["unit"]["mst"], c["facility"]) == ("2031-03-01", UNIT.mst, None)
    assert await card(api, P_SI, "2026-02-28") is not None and (await card(api, P_SI, "2026-02-28"))["status"] == "not_valid"
    assert await card(api, P_PID) is None  # the personal ID is not known yet

    # A TK1-TS names P by both IDs and registers facility 01001: one person, one card.
    await settled(api, tk1(world, ("01", "01001")))
    by_pid, by_si = await card(api, P_PID), await card(api, P_SI)
    assert by_pid["facility"] == {"province": "01", "code": "01001"} and by_pid["si_code"] == P_SI
    assert {k: v for k, v in by_pid.items() if k not in ("id", "answered_at")} == {
        k: v for k, v in by_si.items() if k not in ("id", "answered_at")}

    # 05/2026: benefit level 2 from 05/2026. Before its KET_QUA the answer does not change.
    await send(api, signed(world, UNIT, "05/2026", [
        p_row(CMND=P_PID, TienLuong="10000000", TuThang="05/2026", PA="DC", Loai="3", MucHuong="2")]))  # fmt: skip
    assert brief(await card(api, P_PID, "2026-05-15"))[3] == ("4", 80)
    assert await run_work(api) == ["result:done"]
    assert brief(await card(api, P_PID, "2026-04-30"))[3] == ("4", 80)
    assert brief(await card(api, P_PID, "2026-05-01")) == ("valid", "2026-03-01", None, ("2", 100))

    # 07-08/2026: unpaid leave; the card is suspended and resumes in 09/2026 (a gap of 2 months
    # keeps the five years continuous: 4 months to 06/2026, then 56 from 09/2026, the 56th 04/2031).
    await settled(api, signed(world, UNIT, "07/2026", [
        p_row(CMND=P_PID, TuThang="07/2026", DenThang="08/2026", PA="KL", Loai="2")]))  # fmt: skip
    c = await card(api, P_SI, "2026-07-10")
    assert brief(c) == ("suspended", "2026-03-01", "2026-06-30", ("2", 100))
    c = await card(api, P_SI, "2026-09-01")
    assert brief(c) == ("valid", "2026-09-01", None, ("2", 100)) and c["five_years_at"] == "2031-05-01"

    # A second TK1-TS moves P's first-contact facility: the next answer has it.
    await settled(api, tk1(world, ("79", "79024")))
    assert (await card(api, P_PID))["facility"] == {"province": "79", "code": "79024"}

    # P leaves A from 11/2026: valid to 31/10/2026, not valid from 01/11/2026.
    await settled(api, signed(world, UNIT, "11/2026", [p_row(CMND=P_PID, TuThang="11/2026", PA="GH", Loai="2")]))
    assert brief(await card(api, P_PID, "2026-10-31")) == ("valid", "2026-09-01", "2026-10-31", ("2", 100))
    c = await card(api, P_PID, "2026-11-01")
    assert brief(c) == ("not_valid", "2026-09-01", "2026-10-31", ("2", 100)) and c["five_years_at"] is None

    # every lookup above is in the person's log
    resp = await api.get(f"/api/v1/persons/{P_PID}/lookups", headers=api.keys["auditor"])
    outcomes = [x["outcome"] for x in (await resp.json())["lookups"]]
    # 14 lookups; the one by personal ID before it was known ("unknown") is listed too
    assert outcomes[:5] == ["valid", "not_valid", "not_valid", "unknown", "valid"] and len(outcomes) == 14
    assert outcomes.count("suspended") == 1 and outcomes[-1] == "not_valid"

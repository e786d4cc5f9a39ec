"""Procedure 600 end to end: signed dossiers over HTTP -> receipt -> the rule layer in the work
queue -> signed KET_QUA, records, and the electronic social-insurance book, month by month and
amount by amount (issue #3: increase, salary adjustment, decrease; one person moving between two
units; a person first known by SI code only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lxml import etree

from interchange.notices.notice import NS
from interchange.server import WORK
from tests.helpers import OTHER_UNIT, P_PID, P_SI, UNIT, XML, p_row, run_work, signed
from tests.helpers import error_codes as codes

Q_PID, Q_SI = "079195654321", "7912345678"  # female, born 1995, TP Hồ Chí Minh (079)



def q_row(**kw) -> dict[str, str]:
    return {"HoTen": "Trần Thị Quỳnh", "NgaySinh": "02/07/1995", "GioiTinh": "0", "ChucVu": "Kế toán viên",
            "MasoBHXH": Q_SI, "CMND": Q_PID, "TyleDong": "32.0", "TinhLai": "0", "DaCoSo": "1", **kw}



async def submit(api, body: bytes, key: str) -> str:
    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys[key]})
    assert resp.status == 202, await resp.text()
    return resp.headers["X-Transaction-Id"]



async def result_of(api, tx: str, key: str = "unit"):
    resp = await api.get(f"/api/v1/dossiers/{tx}/notices/ket-qua", headers=api.keys[key])
    assert resp.status == 200, await resp.text()
    return etree.fromstring(await resp.read())


def text(root, name: str) -> str | None:
    return root.findtext(f"{{{NS}}}{name}")


async def book(api, pid: str, key: str = "auditor", as_of: str = "03/2026"):
    resp = await api.get(f"/api/v1/persons/{pid}/book?as_of={as_of}", headers=api.keys[key])
    return resp.status, (await resp.json())


def brief(period: dict) -> tuple:
    return (period["unit"]["mst"], period["from_month"], period["to_month"], period["months"],
            period["salary_basis"], period["monthly"]["employer"], period["monthly"]["employee"])


async def test_three_months_of_declarations_make_the_book(api, world):
    # Month 1 (12/2025), unit A: P joins, known by SI code only; Q joins.
    m1 = await submit(api, signed(world, UNIT, "12/2025", [
        p_row(MasoBHXH=P_SI, TienLuong="10000000", PhuCapLuong="1000000", TuThang="12/2025", PA="TM", Loai="1"),
        q_row(NoiLamViec=UNIT.name, MavungLTT="01", TienLuong="8000000", TuThang="12/2025", PA="TM", Loai="1"),
    ]), "unit")
    assert await run_work(api) == ["result:done"]
    notice = await result_of(api, m1)
    assert text(notice, "LoaiThongBao") == "KET_QUA" and text(notice, "KetQua") == "CHAP_NHAN", codes(notice)
    info = await (await api.get(f"/api/v1/dossiers/{m1}", headers=api.keys["unit"])).json()
    assert info["state"] == "accepted" and info["layers"]["rule"] == "passed"
    assert info["parameters"]["version"] and len(info["parameters"]["sha256"]) == 64

    # Month 2 (01/2026): P's salary goes above both caps (now named by both IDs); Q leaves A for B.
    m2 = await submit(api, signed(world, UNIT, "01/2026", [
        p_row(MasoBHXH=P_SI, CMND=P_PID, TienLuong="120000000", TuThang="01/2026", PA="DC", Loai="3"),
        q_row(NoiLamViec=UNIT.name, MavungLTT="01", TuThang="01/2026", PA="GH", Loai="2"),
    ]), "unit")
    m2b = await submit(api, signed(world, OTHER_UNIT, "01/2026", [
        q_row(NoiLamViec=OTHER_UNIT.name, MavungLTT="02", TienLuong="9000000", TuThang="01/2026", PA="TM", Loai="1"),
    ]), "other")
    # Month 3 (02/2026): P leaves A, named by personal ID only.
    m3 = await submit(api, signed(world, UNIT, "02/2026", [
        p_row(CMND=P_PID, TuThang="02/2026", PA="GH", Loai="2"),
    ]), "unit")
    assert sorted(await run_work(api)) == ["result:done"] * 3
    for tx, key in ((m2, "unit"), (m2b, "other"), (m3, "unit")):
        notice = await result_of(api, tx, key)
        assert text(notice, "KetQua") == "CHAP_NHAN", codes(notice)
    # P's 120,000,000 is above 20 x 2,340,000: accepted with the cap warning
    assert codes(await result_of(api, m2)) == ["R-D02-CAP"]

    # P, by SI code or by personal ID: one person.
    status, by_si = await book(api, P_SI)
    assert status == 200, by_si
    status, by_pid = await book(api, P_PID)
    assert by_pid == by_si
    assert by_si["identity"] == {"si_code": P_SI, "personal_id": P_PID, "name": "Nguyễn Văn Phúc",
                                 "birth_date": "1990-03-15", "gender": 1, "nationality": None}
    # 12/2025: basis 10,000,000 + 1,000,000 = 11,000,000; employer 21.5% = 2,365,000 (14% 1,540,000 +
    # 3% 330,000 + 0.5% 55,000 + 3% 330,000 + 1% 110,000); employee 10.5% = 1,155,000 (8% 880,000 +
    # 1.5% 165,000 + 1% 110,000).
    # 01/2026: 120,000,000, capped at 20 x 2,340,000 = 46,800,000 for social and health insurance and at
    # 20 x 5,310,000 = 106,200,000 (region I from 01/2026) for unemployment insurance:
    # employer 6,552,000 + 1,404,000 + 234,000 + 1,404,000 + 1,062,000 = 10,656,000;
    # employee 3,744,000 + 702,000 + 1,062,000 = 5,508,000. From 02/2026: nothing.
    assert [brief(p) for p in by_si["periods"]] == [
        (UNIT.mst, "12/2025", "12/2025", 1, 11_000_000, 2_365_000, 1_155_000),
        (UNIT.mst, "01/2026", "01/2026", 1, 120_000_000, 10_656_000, 5_508_000),
    ]
    funds = {f["fund"]: (f["basis"], f["employer"], f["employee"]) for f in by_si["periods"][1]["funds"]}
    assert funds == {
        "HT_TT": (46_800_000, 6_552_000, 3_744_000), "OD_TS": (46_800_000, 1_404_000, 0),
        "TNLD_BNN": (46_800_000, 234_000, 0), "BHYT": (46_800_000, 1_404_000, 702_000),
        "BHTN": (106_200_000, 1_062_000, 1_062_000),
    }
    assert by_si["totals"] == {"employer": 13_021_000, "employee": 6_663_000, "total": 19_684_000}

    # Q: 12/2025 at A on 8,000,000 (employer 1,720,000, employee 840,000), then at B on 9,000,000 from
    # 01/2026, still open at 03/2026: three months of 1,935,000 + 945,000.
    status, q = await book(api, Q_SI)
    assert status == 200
    assert [brief(p) for p in q["periods"]] == [
        (UNIT.mst, "12/2025", "12/2025", 1, 8_000_000, 1_720_000, 840_000),
        (OTHER_UNIT.mst, "01/2026", None, 3, 9_000_000, 1_935_000, 945_000),
    ]
    assert q["totals"] == {"employer": 1_720_000 + 3 * 1_935_000, "employee": 840_000 + 3 * 945_000,
                           "total": 1_720_000 + 3 * 1_935_000 + 840_000 + 3 * 945_000}

    # A unit sees the periods it declared, and no one else's.
    status, q_at_a = await book(api, Q_PID, key="unit")
    assert status == 200 and [p["unit"]["mst"] for p in q_at_a["periods"]] == [UNIT.mst]
    status, q_at_b = await book(api, Q_PID, key="other")
    assert status == 200 and [p["unit"]["mst"] for p in q_at_b["periods"]] == [OTHER_UNIT.mst]
    status, _ = await book(api, P_PID, key="other")
    assert status == 404


async def test_a_rule_error_rejects_with_a_signed_result_and_no_records(api, world):
    tx = await submit(api, signed(world, UNIT, "01/2026", [
        p_row(MasoBHXH=P_SI, CMND="001190123456", TienLuong="4000000", TuThang="01/2026", PA="TM", Loai="1"),
    ]), "unit")
    assert await run_work(api) == ["result:done"]
    notice = await result_of(api, tx)
    assert text(notice, "KetQua") == "KHONG_CHAP_NHAN"
    # 4,000,000 is below region I's 5,310,000; the personal ID's 4th digit says a woman
    assert set(codes(notice)) == {"R-D02-SALARY-MIN", "R-PID-GENDER"}
    where = {e.findtext(f"{{{NS}}}Ma"): e.findtext(f"{{{NS}}}ViTri") for e in notice.iterfind(f".//{{{NS}}}Loi")}
    assert where["R-D02-SALARY-MIN"] == "/D02-TS/NoiDung/LaoDong[1]/TienLuong"
    info = await (await api.get(f"/api/v1/dossiers/{tx}", headers=api.keys["unit"])).json()
    assert info["state"] == "rejected" and info["layers"]["rule"] == "failed"
    assert (await book(api, P_SI))[0] == 404  # a rejected dossier makes no records

    # corrected and sent again: judged again, accepted
    fixed = await submit(api, signed(world, UNIT, "01/2026", [
        p_row(MasoBHXH=P_SI, CMND=P_PID, TienLuong="6000000", TuThang="01/2026", PA="TM", Loai="1"),
    ]), "unit")
    assert await run_work(api) == ["result:done"]
    assert text(await result_of(api, fixed), "KetQua") == "CHAP_NHAN"
    assert (await book(api, P_SI))[0] == 200


async def test_result_work_run_again_after_a_crash_changes_nothing(api, world):
    tx = await submit(api, signed(world, UNIT, "12/2025", [
        p_row(MasoBHXH=P_SI, TienLuong="10000000", TuThang="12/2025", PA="TM", Loai="1"),
    ]), "unit")
    store = api.store
    now = datetime.now(UTC) + timedelta(seconds=1)
    # a process claims the item and dies before finishing it
    (claimed,) = await store.work.claim("dead-process", now, limit=10, lease=timedelta(minutes=2), kinds=["result"])
    assert await api.app[WORK].run_due(now=now) == []  # leased: nobody else takes it yet
    ran = await api.app[WORK].run_due(now=now + timedelta(minutes=3))  # the lease ran out
    assert [(r.item.kind, r.outcome) for r in ran if r.item.kind == "result"] == [("result", "done")]
    notice = await store.dossiers.notice(tx, "ket-qua", _all())
    first_book = await book(api, P_SI)
    # the dead process's handler finishing late (or a second run) finds the KET_QUA: nothing changes
    await api.app[WORK].handlers["result"](claimed, now + timedelta(minutes=4))
    assert await store.dossiers.notice(tx, "ket-qua", _all()) == notice
    assert await book(api, P_SI) == first_book
    assert [w.state for w in await store.work.of(tx) if w.kind == "result"] == ["done"]


def _all():
    from interchange.store.types import Scope

    return Scope(all=True)

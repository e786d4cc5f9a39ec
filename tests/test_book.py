"""The electronic social-insurance book (interchange.records.book, GET /api/v1/persons/{pid}/book).

The scenario of issue #3: three monthly dossiers (11/2025, 12/2025, 01/2026) of unit A, and one of
unit B, settled through `Store.results.settle`; P is first known by SI code only, Q by personal ID only, and
Q moves from A to B. Every amount below is worked out by hand from the legal parameters:
base salary 2,340,000 (cap 20 x = 46,800,000); regional minimum of region 01 4,960,000 in 2025 and
5,310,000 from 01/2026 (unemployment cap 20 x = 99,200,000, then 106,200,000); rate 32 = HT_TT
14 + 8, OD_TS 3, TNLD_BNN 0.5, BHYT 3 + 1.5, BHTN 1 + 1 (employer 21.5, employee 10.5)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from interchange.legal.params import default_parameters
from interchange.records.book import DeclaredChange, Identity, PersonRecords, UnitRef, build_book
from interchange.records.model import BenefitClaim, Extracted
from tests.helpers import OTHER_UNIT, UNIT, change, ref, settle

P_SI, P_PID = "0101234567", "001090012345"
Q_PID, Q_SI = "079195001234", "7912345678"
A, B = UNIT.mst, OTHER_UNIT.mst


def funds(rows: list[tuple[str, int, int, int]]) -> list[dict]:
    names = {"HT_TT": "BHXH hưu trí, tử tuất", "OD_TS": "BHXH ốm đau, thai sản", "TNLD_BNN": "BHTNLĐ, BNN",
             "BHYT": "BHYT", "BHTN": "BHTN"}  # fmt: skip
    return [{"fund": f, "name": names[f], "basis": b, "employer": er, "employee": ee} for f, b, er, ee in rows]


# P at A, 11/2025: 10,000,000 VND, nothing capped.
P_NOV = funds([
    ("HT_TT", 10_000_000, 1_400_000, 800_000),  # 10,000,000 x 14% ; x 8%
    ("OD_TS", 10_000_000, 300_000, 0),  # x 3%
    ("TNLD_BNN", 10_000_000, 50_000, 0),  # x 0.5%
    ("BHYT", 10_000_000, 300_000, 150_000),  # x 3% ; x 1.5%
    ("BHTN", 10_000_000, 100_000, 100_000),  # x 1% ; x 1%
])  # fmt: skip
# P at A from 12/2025: adjusted to 12,000,000.
P_DEC = funds([
    ("HT_TT", 12_000_000, 1_680_000, 960_000),
    ("OD_TS", 12_000_000, 360_000, 0),
    ("TNLD_BNN", 12_000_000, 60_000, 0),
    ("BHYT", 12_000_000, 360_000, 180_000),
    ("BHTN", 12_000_000, 120_000, 120_000),
])  # fmt: skip
# Q at A, 11/2025: coefficient 4.0 + position allowance 0.5 = 4.5 x 2,340,000 = 10,530,000.
Q_A = funds([
    ("HT_TT", 10_530_000, 1_474_200, 842_400),
    ("OD_TS", 10_530_000, 315_900, 0),
    ("TNLD_BNN", 10_530_000, 52_650, 0),
    ("BHYT", 10_530_000, 315_900, 157_950),
    ("BHTN", 10_530_000, 105_300, 105_300),
])  # fmt: skip
# Q at B, 12/2025: 100,000,000, above both caps: 46,800,000 and (BHTN) 20 x 4,960,000 = 99,200,000.
Q_B_2025 = funds([
    ("HT_TT", 46_800_000, 6_552_000, 3_744_000),
    ("OD_TS", 46_800_000, 1_404_000, 0),
    ("TNLD_BNN", 46_800_000, 234_000, 0),
    ("BHYT", 46_800_000, 1_404_000, 702_000),
    ("BHTN", 99_200_000, 992_000, 992_000),
])  # fmt: skip
# Q at B from 01/2026: the BHTN cap is 20 x 5,310,000 = 106,200,000, so the whole 100,000,000 counts.
Q_B_2026 = [*Q_B_2025[:4], {**Q_B_2025[4], "basis": 100_000_000, "employer": 1_000_000, "employee": 1_000_000}]


def period(unit, start, end, months, salary, basis, fund_rows, employer, employee, **kw) -> dict:
    """The parts of a period the tests pin (with the unit's name as declared)."""
    u = {A: UNIT, B: OTHER_UNIT}[unit]
    assert sum(f["employer"] for f in fund_rows) == employer and sum(f["employee"] for f in fund_rows) == employee
    return {
        "unit": {"mst": u.mst, "code": u.code, "name": u.name},
        "from_month": start, "to_month": end, "months": months, "salary": salary, "salary_basis": basis,
        "rate": "32", "region": "01", "funds": fund_rows,
        "monthly": {"employer": employer, "employee": employee, "total": employer + employee},
        "totals": {"employer": employer * months, "employee": employee * months, "total": (employer + employee) * months},
        **kw,
    }  # fmt: skip


P1 = period(A, "11/2025", "11/2025", 1, "10000000", 10_000_000, P_NOV, 2_150_000, 1_050_000, coefficient=False)
P2 = period(A, "12/2025", "12/2025", 1, "12000000", 12_000_000, P_DEC, 2_580_000, 1_260_000, position="Kế toán trưởng")
Q1 = period(A, "11/2025", "11/2025", 1, "4", 10_530_000, Q_A, 2_263_950, 1_105_650, coefficient=True,
            allowances={"PhuCapCV": "0.5"})  # fmt: skip
Q2 = period(B, "12/2025", "12/2025", 1, "100000000", 100_000_000, Q_B_2025, 10_586_000, 5_438_000)
Q3 = period(B, "01/2026", None, 2, "100000000", 100_000_000, Q_B_2026, 10_594_000, 5_446_000)



@pytest.fixture
async def scenario(api):
    store = api.store
    p_si, p_both = ref(si=P_SI, name="Trần Thị Bình"), ref(P_PID, P_SI, name="Trần Thị Bình")
    p_pid = ref(pid=P_PID, name="Trần Thị Bình")
    q_pid, q_both = ref(pid=Q_PID, name="Lê Văn Cường"), ref(Q_PID, Q_SI, name="Lê Văn Cường")
    # Month 1 (sent through I-VAN 00123): both start at A.
    await settle(store, UNIT, datetime(2025, 11, 5, 3, tzinfo=UTC), Extracted(contribution_changes=[
        change(1, p_si, "TM", "2025-11"),
        change(2, q_pid, "TM", "2025-11", salary=Decimal("4.00"), allowances={"PhuCapCV": Decimal("0.50")},
               position="Chuyên viên"),
    ]), ivan="00123")  # fmt: skip
    # Month 2: P's salary is raised at A; Q leaves A and starts at B.
    await settle(store, UNIT, datetime(2025, 12, 5, 3, tzinfo=UTC), Extracted(contribution_changes=[
        change(1, p_both, "DC", "2025-12", salary=Decimal(12_000_000), position="Kế toán trưởng"),
        change(2, q_pid, "GH", "2025-12", salary=None, position=None, workplace=None, rate=None, region=None),
    ]))  # fmt: skip
    claim = BenefitClaim(xpath="/M01B-HSB/NoiDung/PhatSinh/CheDoOmDau/LaoDong[1]", stt=1, person=q_both,
                         regime="CheDoOmDau", kind="PhatSinh", group="1", from_date=date(2026, 1, 12),
                         to_date=date(2026, 1, 14), days=3, data={"HinhThucNhan": "2"})  # fmt: skip
    await settle(store, OTHER_UNIT, datetime(2025, 12, 6, 3, tzinfo=UTC), Extracted(
        contribution_changes=[change(1, q_both, "TM", "2025-12", salary=Decimal(100_000_000), position="Giám đốc")],
    ))  # fmt: skip
    await settle(store, OTHER_UNIT, datetime(2026, 1, 20, 3, tzinfo=UTC), Extracted(benefit_claims=[claim]))
    # Month 3: P leaves A.
    await settle(store, UNIT, datetime(2026, 1, 6, 3, tzinfo=UTC), Extracted(contribution_changes=[
        change(1, p_pid, "GH", "2026-01", salary=None, position=None, workplace=None, rate=None, region=None),
    ]))  # fmt: skip
    return api


async def book(api, pid: str, key: str = "auditor", as_of: str = "02/2026"):
    resp = await api.get(f"/api/v1/persons/{pid}/book", params={"as_of": as_of}, headers=api.keys[key])
    return resp.status, await resp.json()


def pinned(periods: list[dict], expected: list[dict]) -> list[dict]:
    """Each period cut down to the keys the expectation names."""
    return [{k: p[k] for k in e} for p, e in zip(periods, expected, strict=False)]


async def test_the_book_month_by_month_and_amount_by_amount(scenario):
    status, p = await book(scenario, P_SI)
    assert status == 200
    assert p["identity"] == {"si_code": P_SI, "personal_id": P_PID, "name": "Trần Thị Bình", "birth_date": None,
                             "gender": None, "nationality": None}  # fmt: skip
    assert len(p["periods"]) == 2 and pinned(p["periods"], [P1, P2]) == [P1, P2]
    assert p["periods"][1]["workplace"] == "Hà Nội"  # not declared by the adjustment: kept
    assert p["totals"] == {"employer": 2_150_000 + 2_580_000, "employee": 1_050_000 + 1_260_000,
                           "total": 3_200_000 + 3_840_000}  # fmt: skip
    assert p["as_of"] == "02/2026" and p["parameters"] == default_parameters().stamp and p["benefits"] == []
    assert (await book(scenario, P_PID))[1] == p  # by either identifier

    status, q = await book(scenario, Q_SI)
    assert status == 200 and q["identity"]["personal_id"] == Q_PID
    assert len(q["periods"]) == 3 and pinned(q["periods"], [Q1, Q2, Q3]) == [Q1, Q2, Q3]
    (benefit,) = q["benefits"]
    assert (benefit["regime"], benefit["days"], benefit["from_date"], benefit["unit"]["mst"]) == ("CheDoOmDau", 3, "2026-01-12", B)
    assert q["totals"]["employer"] == 2_263_950 + 10_586_000 + 2 * 10_594_000


async def test_open_and_closed_periods_depend_on_as_of(scenario):
    _, p = await book(scenario, P_PID, as_of="2025-12")
    assert [(x["from_month"], x["to_month"]) for x in p["periods"]] == [("11/2025", "11/2025"), ("12/2025", "12/2025")]
    _, q = await book(scenario, Q_PID, as_of="12/2025")
    # Q goes on at B in 01/2026 with the same terms (other amounts): open at 12/2025.
    assert [(x["unit"]["mst"], x["from_month"], x["to_month"]) for x in q["periods"]] == [
        (A, "11/2025", "11/2025"), (B, "12/2025", None)]  # fmt: skip
    _, early = await book(scenario, P_SI, as_of="11/2025")
    assert [(x["from_month"], x["to_month"], x["salary"]) for x in early["periods"]] == [("11/2025", "11/2025", "10000000")]


VISIBLE = {  # role -> (P's periods, Q's periods); None: 404
    "auditor": ([P1, P2], [Q1, Q2, Q3]),
    "admin": ([P1, P2], [Q1, Q2, Q3]),
    "unit": ([P1, P2], [Q1]),  # what A declared
    "other": (None, [Q2, Q3]),  # what B declared
    "ivan": ([P1], [Q1]),  # what month 1 said: P's raise came in a dossier the I-VAN did not carry
    "other_ivan": (None, None),
}


@pytest.mark.parametrize("role", sorted(VISIBLE))
async def test_each_reader_sees_what_it_declared(scenario, role):
    for pid, expected, name in zip((P_SI, Q_PID), VISIBLE[role], ("Trần Thị Bình", "Lê Văn Cường"), strict=True):
        status, body = await book(scenario, pid, role)
        if expected is None:
            assert status == 404 and body["code"] == "NOT-FOUND", (role, pid)
            continue
        assert status == 200, (role, pid, body)
        assert body["identity"]["name"] == name
        assert len(body["periods"]) == len(expected) and pinned(body["periods"], expected) == expected, (role, pid)
        assert len(body["benefits"]) == (1 if pid == Q_PID and role in ("auditor", "admin", "other") else 0)


async def test_bad_requests(scenario):
    for pid in ("12345", "00109001234X", "0010900123456", "abc"):
        resp = await scenario.get(f"/api/v1/persons/{pid}/book", headers=scenario.keys["auditor"])
        body = await resp.json()
        assert resp.status == 400 and body["code"] == "BAD-PID" and pid in body["message"]
    for as_of in ("13/2025", "2025-1", "soon", "9999-12", "12/1994"):
        status, body = await book(scenario, P_SI, as_of=as_of)
        assert status == 400 and body["code"] == "BAD-QUERY" and "as_of" in body["message"]
    assert (await book(scenario, "999999999999"))[0] == 404
    assert (await scenario.get(f"/api/v1/persons/{P_SI}/book")).status == 401
    spec = await (await scenario.get("/api/openapi.json")).json()
    assert "/api/v1/persons/{pid}/book" in spec["paths"]


# ---- the pure book: rules of the timeline --------------------------------------------------------

PARAMS = default_parameters()
WHO = Identity(P_PID, P_SI, "Trần Thị Bình", None, None, None)
UNIT_A, UNIT_B = UnitRef(A, UNIT.code, UNIT.name), UnitRef(B, OTHER_UNIT.code, OTHER_UNIT.name)


def declared(n: int, c, unit: UnitRef = UNIT_A) -> DeclaredChange:
    return DeclaredChange(c, f"d{n}", datetime(2024, 1, 1, tzinfo=UTC).replace(day=n), unit)


def spans(records: PersonRecords, as_of: str) -> list[tuple]:
    """(unit, from, to, basis, employer per month) of each period, months written "YYYY-MM"."""
    return [(p.unit.mst, p.from_month.iso, p.to_month.iso if p.to_month else None, p.basis, p.employer_monthly)
            for p in build_book(records, PARAMS, as_of).periods]  # fmt: skip


def test_unpaid_leave_stops_then_the_terms_resume():
    p = ref(P_PID)
    records = PersonRecords(WHO, [
        declared(1, change(1, p, "TM", "2024-01")),
        declared(2, change(1, p, "KL", "2024-03", to_month="2024-04", salary=None)),
    ])  # fmt: skip
    # 10,000,000 x 21.5% = 2,150,000 employer per month; 05/2024 goes on with the same terms.
    assert spans(records, "2024-06") == [(A, "2024-01", "2024-02", 10_000_000, 2_150_000),
                                         (A, "2024-05", None, 10_000_000, 2_150_000)]  # fmt: skip


def test_a_temporary_adjustment_and_two_units_at_once():
    p = ref(P_PID)
    records = PersonRecords(WHO, [
        declared(1, change(1, p, "TM", "2024-01")),
        declared(2, change(1, p, "TM", "2024-02", salary=Decimal(6_000_000)), UNIT_B),
        declared(3, change(1, p, "DC", "2024-03", to_month="2024-03", salary=Decimal(20_000_000))),
    ])  # fmt: skip
    # A: 10,000,000 (2,150,000), 03/2024 at 20,000,000 (20,000,000 x 21.5% = 4,300,000), then 10,000,000 again.
    # B alongside from 02/2024: 6,000,000 x 21.5% = 1,290,000.
    assert spans(records, "2024-04") == [
        (A, "2024-01", "2024-02", 10_000_000, 2_150_000),
        (B, "2024-02", None, 6_000_000, 1_290_000),
        (A, "2024-03", "2024-03", 20_000_000, 4_300_000),
        (A, "2024-04", None, 10_000_000, 2_150_000),
    ]


def test_a_coefficient_salary_follows_the_base_salary():
    records = PersonRecords(WHO, [declared(1, change(1, ref(P_PID), "TM", "2024-05", salary=Decimal("2.34")))])
    # 2.34 x 1,800,000 = 4,212,000 until 06/2024 (employer 21.5% = 905,580);
    # 2.34 x 2,340,000 = 5,475,600 from 07/2024 (Nghị định 73/2024; employer 21.5% = 1,177,254).
    assert spans(records, "08/2024") == [(A, "2024-05", "2024-06", 4_212_000, 905_580),
                                         (A, "2024-07", None, 5_475_600, 1_177_254)]  # fmt: skip
    hand = build_book(records, PARAMS, "08/2024").periods[1].funds[0]
    assert (hand.fund, hand.employer, hand.employee) == ("HT_TT", 766_584, 438_048)  # 5,475,600 x 14% ; x 8%


def test_adjustment_without_contributions_and_months_without_parameters_are_reported():
    p = ref(P_PID)
    records = PersonRecords(WHO, [
        declared(1, change(1, p, "DC", "2024-01", salary=Decimal(12_000_000))),
        declared(2, change(1, p, "TM", "2015-01", to_month="2015-01")),
    ])  # fmt: skip
    built = build_book(records, PARAMS, "2024-01")
    assert len(built.notes) == 1 and "no contributions were declared" in built.notes[0]
    (old,) = built.periods
    assert old.funds == [] and "no contributions computed" in old.problem

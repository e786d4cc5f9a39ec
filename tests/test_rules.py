"""The rule layer (interchange.rules): every rule of the catalogue with a passing and a failing case,
the procedure/forms table, `judge(original)` on whole dossiers, and the records it extracts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest
from lxml import etree

from interchange.config import LimitsConfig
from interchange.devkit import samples
from interchange.errors import Layer, Severity
from interchange.identifiers import make_personal_id
from interchange.legal.params import default_parameters
from interchange.months import Month
from interchange.records.model import INCREASE
from interchange.rules import catalogue as cat
from interchange.rules.catalogue import CATALOGUE, RULES
from interchange.rules.judge import Judgement, judge, judge_form
from tests.helpers import code_set as codes

PARSER = etree.XMLParser(remove_blank_text=False)
PID_1990_M = make_personal_id("001", 1990, True, 123)  # born 1990, male, Hà Nội
PID_1990_F = make_personal_id("079", 1990, False, 456)


# ---- building forms ------------------------------------------------------------------------------


def _edited(data: bytes, edits: dict[tuple[str, str], str]) -> etree._Element:
    """The form `data` with `edits` {(row path, tag): text} applied ("" makes the element empty)."""
    root = etree.fromstring(data, PARSER)
    for (path, tag), text in edits.items():
        el = root.find(f"{path}/{tag}")
        assert el is not None, f"no {path}/{tag} in the sample"
        el.text = text or None
    return root


def d02(edits: dict | None = None, rows: int = 3, **kw) -> Judgement:
    """Judge a sample D02-TS (period 11/2026) with `edits` {(row number, tag): text}."""
    e = {(f"NoiDung/LaoDong[{n}]", tag): v for (n, tag), v in (edits or {}).items()}
    return judge_form("D02-TS", _edited(samples.d02ts(rows), e), **kw)


def row(n: int = 1, **fields: str) -> dict:
    """Edits of D02-TS row `n`, with the person made explicit (born 15/05/1990, male)."""
    base = {"CMND": PID_1990_M, "NgaySinh": "15/05/1990", "GioiTinh": "1", "MasoBHXH": "0123456789",
            "PhuCapCV": "", "PhuCapBosung": "", "TienLuong": "10000000"}  # fmt: skip
    return {(n, k): v for k, v in {**base, **fields}.items()}


def tk1(edits: dict | None = None, people: int = 2, **kw) -> Judgement:
    e = {(f"NoiDung/LaoDong[{n}]", tag): v for (n, tag), v in (edits or {}).items()}
    return judge_form("TK1-TS", _edited(samples.tk1ts(people), e), **kw)


def d01(edits: dict | None = None, items: int = 2) -> Judgement:
    e = {(f"NoiDung/BangKe/ThongTin[{n}]", tag): v for (n, tag), v in (edits or {}).items()}
    return judge_form("D01-TS", _edited(samples.d01ts(items), e))


def m01b(edits: dict | None = None, rows: int = 4) -> Judgement:
    """Edits {(path under NoiDung/PhatSinh, tag): text}; the sample's odd rows are sickness claims
    (CheDoOmDau/LaoDong[1], [2]), even rows maternity (CheDoThaiSan/LaoDong[1], [2])."""
    e = {(p if p.startswith("ThongTinKhac") else f"NoiDung/PhatSinh/{p}", tag): v for (p, tag), v in (edits or {}).items()}
    return judge_form("M01B-HSB", _edited(samples.m01bhsb(rows), e))


def dossier(procedure: str = "600", files: list | None = None, unit: samples.Unit | None = None) -> Judgement:
    unit = unit or samples.Unit()
    if files is None:
        files = [("D02-TS", "D02-TS.xml", samples.d02ts(3))]
    return judge(samples.envelope(unit, files, procedure=procedure))


def only(j: Judgement, code: str):
    found = [p for p in j.problems if p.code == code]
    assert found, f"{code} not raised; got {[(p.code, p.message_en) for p in j.problems]}"
    return found[0]


# ---- one passing and one failing case per rule ---------------------------------------------------


@dataclass(frozen=True)
class Case:
    code: str
    good: Callable[[], Judgement]  # exercises the rule with valid data: the code is not raised
    bad: Callable[[], Judgement]  # breaks it: the code is raised
    xpath: str | None = None  # where the bad case's problem is
    value: str | None = None


PDF = ("X", "scan.pdf", b"%PDF-1.4 scan")
CASES = [
    Case("R-PROCEDURE-UNKNOWN", lambda: dossier("600"), lambda: dossier("999"),
         "/Hoso/NoiDung/ThongTinHoSo/MaThuTuc", "999"),
    Case("R-PROCEDURE-FORMS",
         lambda: dossier("603", [("M01B-HSB", "m.xml", samples.m01bhsb(2)), ("D01-TS", "d.xml", samples.d01ts(1)), PDF]),
         lambda: dossier("600", [("TK1-TS", "t.xml", samples.tk1ts(1)), PDF]),
         "/Hoso/NoiDung/ThongTinHoSo/ToKhais"),
    Case("R-MST", lambda: dossier(unit=samples.Unit(mst="0101234565-001")),
         lambda: dossier(unit=samples.Unit(mst="0101234568")), "/Hoso/NoiDung/ThongTinDonVi/MaSoThue", "0101234568"),
    Case("R-PID-FORMAT", lambda: d02(row()), lambda: d02(row(CMND="00109012345")),
         "/D02-TS/NoiDung/LaoDong[1]/CMND", "00109012345"),
    Case("R-PID-PROVINCE", lambda: d02(row()), lambda: d02(row(CMND="003" + PID_1990_M[3:])),
         "/D02-TS/NoiDung/LaoDong[1]/CMND"),
    Case("R-PID-BIRTH", lambda: d02(row(NgaySinh="1990")), lambda: d02(row(NgaySinh="15/05/1991")),
         "/D02-TS/NoiDung/LaoDong[1]/CMND", PID_1990_M),
    Case("R-PID-GENDER", lambda: d02(row(CMND=PID_1990_F, GioiTinh="0")), lambda: d02(row(GioiTinh="0")),
         "/D02-TS/NoiDung/LaoDong[1]/CMND"),
    Case("R-SI-FORMAT", lambda: d02(row(MasoBHXH="7912345678")), lambda: d02(row(MasoBHXH="791234567")),
         "/D02-TS/NoiDung/LaoDong[1]/MasoBHXH", "791234567"),
    Case("R-PERSON-ID-MISSING", lambda: d02(row(CMND="")), lambda: d02(row(CMND="", MasoBHXH="")),
         "/D02-TS/NoiDung/LaoDong[1]"),
    Case("R-BIRTH-DATE", lambda: d02(row(NgaySinh="05/1990")), lambda: d02(row(NgaySinh="29/02/1990")),
         "/D02-TS/NoiDung/LaoDong[1]/NgaySinh", "29/02/1990"),
    Case("R-GENDER", lambda: d02(row(GioiTinh="1")), lambda: d02(row(GioiTinh="2")),
         "/D02-TS/NoiDung/LaoDong[1]/GioiTinh", "2"),
    Case("R-STT-DUP", lambda: d02({(2, "STT"): "7"}), lambda: d02({(3, "STT"): "1"}),
         "/D02-TS/NoiDung/LaoDong[3]/STT", "1"),
    Case("R-D02-PA", lambda: d02(row(PA="TC")), lambda: d02(row(PA="XX")), "/D02-TS/NoiDung/LaoDong[1]/PA", "XX"),
    Case("R-D02-PA-LOAI", lambda: d02(row(PA="GH", Loai="2")), lambda: d02(row(PA="TM", Loai="2")),
         "/D02-TS/NoiDung/LaoDong[1]/Loai", "2"),
    Case("R-D02-MONTH", lambda: d02(row(DenThang="12/2026")), lambda: d02(row(DenThang="13/2026")),
         "/D02-TS/NoiDung/LaoDong[1]/DenThang", "13/2026"),
    Case("R-D02-MONTH-ORDER", lambda: d02(row(DenThang="11/2026")), lambda: d02(row(DenThang="10/2026")),
         "/D02-TS/NoiDung/LaoDong[1]/DenThang", "10/2026"),
    Case("R-D02-DATE", lambda: d02(row(Hdld_tungay="29/02/2024", NgayChet="")),
         lambda: d02(row(Hdld_tungay="29/02/2026")), "/D02-TS/NoiDung/LaoDong[1]/Hdld_tungay", "29/02/2026"),
    Case("R-D02-SALARY-MISSING", lambda: d02(row(PA="GH", Loai="2", TienLuong="")),
         lambda: d02(row(PA="DC", Loai="3", TienLuong="")), "/D02-TS/NoiDung/LaoDong[1]/TienLuong"),
    Case("R-D02-SALARY-MIN", lambda: d02(row(TienLuong="5310000")), lambda: d02(row(TienLuong="5309999")),
         "/D02-TS/NoiDung/LaoDong[1]/TienLuong", "5309999"),
    Case("R-D02-COEFFICIENT", lambda: d02(row(TienLuong="2.34")), lambda: d02(row(TienLuong="12.5")),
         "/D02-TS/NoiDung/LaoDong[1]/TienLuong", "12.5"),
    Case("R-D02-CAP", lambda: d02(row(TienLuong="46800000")), lambda: d02(row(TienLuong="46800001")),
         "/D02-TS/NoiDung/LaoDong[1]/TienLuong", "46800001"),
    Case("R-D02-RATE", lambda: d02(row(TyleDong="31.80")), lambda: d02(row(TyleDong="33")),
         "/D02-TS/NoiDung/LaoDong[1]/TyleDong", "33"),
    Case("R-D02-REGION", lambda: d02(row(TienLuong="2.34", TyleDong="30", MavungLTT="")),
         lambda: d02(row(MavungLTT="")), "/D02-TS/NoiDung/LaoDong[1]/MavungLTT"),
    Case("R-D02-PARAMS", lambda: d02(row(TuThang="01/2020")), lambda: d02(row(TuThang="12/2019")),
         "/D02-TS/NoiDung/LaoDong[1]/TuThang", "12/2019"),
    Case("R-PERSON-CONFLICT", lambda: d02({**row(1), **row(2, PA="GH", Loai="2", TuThang="12/2026")}),
         lambda: d02({**row(1), **row(2, PA="GH", Loai="2")}), "/D02-TS/NoiDung/LaoDong[2]", PID_1990_M),
    Case("R-TK1-NATIONALITY", lambda: tk1({(1, "QuocTich"): "US", (1, "DanToc"): ""}),
         lambda: tk1({(1, "QuocTich"): "UK"}), "/TK1-TS/NoiDung/LaoDong[1]/QuocTich", "UK"),
    Case("R-TK1-ETHNIC", lambda: tk1({(1, "DanToc"): "99"}), lambda: tk1({(1, "DanToc"): "56"}),
         "/TK1-TS/NoiDung/LaoDong[1]/DanToc", "56"),
    Case("R-TK1-PROVINCE", lambda: tk1({(1, "Matinh_NN"): "96"}), lambda: tk1({(1, "Matinh_NN"): "03"}),
         "/TK1-TS/NoiDung/LaoDong[1]/Matinh_NN", "03"),
    Case("R-D01-DATE", lambda: d01({(1, "NgayBanHanh"): "01/03/2026", (1, "NgayHieuLuc"): "01/03/2026"}),
         lambda: d01({(1, "NgayBanHanh"): "01/03/2026", (1, "NgayHieuLuc"): "28/02/2026"}),
         "/D01-TS/NoiDung/BangKe/ThongTin[1]/NgayHieuLuc", "28/02/2026"),
    Case("R-M01B-DATE", lambda: m01b({("CheDoOmDau/LaoDong[1]", "TuNgayDuyetTruoc"): "01/09/2026"}),
         lambda: m01b({("CheDoOmDau/LaoDong[1]", "TuNgay"): "31/09/2026"}),
         "/M01B-HSB/NoiDung/PhatSinh/CheDoOmDau/LaoDong[1]/TuNgay", "31/09/2026"),
    Case("R-M01B-DATE-ORDER",
         lambda: m01b({("CheDoOmDau/LaoDong[1]", "TuNgay"): "05/10/2026", ("CheDoOmDau/LaoDong[1]", "DenNgay"): "05/10/2026",
                       ("CheDoOmDau/LaoDong[1]", "TongSoNgay"): "1"}),
         lambda: m01b({("CheDoOmDau/LaoDong[1]", "TuNgay"): "05/10/2026", ("CheDoOmDau/LaoDong[1]", "DenNgay"): "04/10/2026"}),
         "/M01B-HSB/NoiDung/PhatSinh/CheDoOmDau/LaoDong[1]/DenNgay", "04/10/2026"),
    Case("R-M01B-DAYS",
         lambda: m01b({("CheDoOmDau/LaoDong[1]", "TuNgay"): "05/10/2026", ("CheDoOmDau/LaoDong[1]", "DenNgay"): "11/10/2026",
                       ("CheDoOmDau/LaoDong[1]", "TongSoNgay"): "5"}),  # working days: fewer than 7 is fine
         lambda: m01b({("CheDoOmDau/LaoDong[1]", "TuNgay"): "05/10/2026", ("CheDoOmDau/LaoDong[1]", "DenNgay"): "11/10/2026",
                       ("CheDoOmDau/LaoDong[1]", "TongSoNgay"): "8"}),
         "/M01B-HSB/NoiDung/PhatSinh/CheDoOmDau/LaoDong[1]/TongSoNgay", "8"),
    Case("R-M01B-GROUP", lambda: m01b({("CheDoThaiSan/LaoDong[1]", "MaNhomHuong"): "7"}),
         lambda: m01b({("CheDoOmDau/LaoDong[1]", "MaNhomHuong"): "7"}),
         "/M01B-HSB/NoiDung/PhatSinh/CheDoOmDau/LaoDong[1]/MaNhomHuong", "7"),
    Case("R-M01B-DOT", lambda: m01b({("ThongTinKhac", "DotXetDuyet"): "20240229"}),
         lambda: m01b({("ThongTinKhac", "DotXetDuyet"): "20260229"}), "/M01B-HSB/ThongTinKhac/DotXetDuyet", "20260229"),
]  # fmt: skip


def test_every_rule_has_a_passing_and_a_failing_case():
    assert {c.code for c in CASES} == set(CATALOGUE), "add a Case for each new rule (and only for rules)"
    assert len(CASES) == len({c.code for c in CASES})


@pytest.mark.parametrize("case", CASES, ids=[c.code for c in CASES])
def test_rule_passes(case: Case):
    j = case.good()
    assert case.code not in codes(j)
    assert j.accepted, [(p.code, p.message_en) for p in j.problems]


@pytest.mark.parametrize("case", CASES, ids=[c.code for c in CASES])
def test_rule_fails(case: Case):
    j = case.bad()
    p = only(j, case.code)
    rule = CATALOGUE[case.code]
    assert p.layer == Layer.RULE and p.severity == rule.severity
    assert j.accepted == (rule.severity == Severity.WARNING and j.errors == 0)
    if case.xpath is not None:
        assert p.xpath == case.xpath
    if case.value is not None:
        assert p.value == case.value
        assert case.value in p.message_vi and case.value in p.message_en
    assert p.message_vi and p.message_en and "{" not in p.message_vi + p.message_en
    assert p.form in (*rule.forms,)


# ---- the catalogue -------------------------------------------------------------------------------


def test_catalogue_entries_are_complete():
    for rule in RULES:
        assert rule.code.startswith("R-") and rule.code == rule.code.upper()
        assert rule.title_vi and rule.title_en and rule.vi and rule.en
        assert rule.forms and set(rule.forms) <= {cat.HOSO, cat.D02, cat.TK1, cat.D01, cat.M01B}
        assert rule.severity in (Severity.ERROR, Severity.WARNING)
        assert "value" in rule.fields or "{" in rule.vi  # every message says what
    assert CATALOGUE["R-D02-CAP"].severity == Severity.WARNING
    assert CATALOGUE["R-D02-SALARY-MIN"].severity == Severity.ERROR


def test_procedure_table():
    assert cat.PROCEDURES["600"].needs == {"D02-TS"} and cat.PROCEDURES["600"].may == {"TK1-TS", "D01-TS"}
    assert cat.PROCEDURES["603"].needs == {"M01B-HSB"}
    assert cat.PROCEDURES["630"].needs == cat.PROCEDURES["602"].needs == {"TK1-TS"}
    assert all(p.attachments for p in cat.PROCEDURES.values())
    assert not set(cat.PROCEDURES) & cat.REGISTRATION_PROCEDURES


def test_form_not_allowed_by_the_procedure():
    j = dossier("630", [("TK1-TS", "t.xml", samples.tk1ts(1)), ("D02-TS", "d.xml", samples.d02ts(2))])
    p = only(j, "R-PROCEDURE-FORMS")
    assert p.value == "D02-TS" and p.xpath.endswith("/FileToKhai[2]/MaToKhai") and "630" in p.message_en
    assert "TK1-TS" not in p.message_en.split("only")[0]


@pytest.mark.parametrize("procedure", sorted(cat.REGISTRATION_PROCEDURES))
def test_registration_procedures_are_not_judged(procedure):
    j = judge(samples.envelope(samples.Unit(mst="0101234568"), [], procedure=procedure))
    assert j.problems == [] and j.accepted  # not even R-MST: jobs/registration.py checks those


# ---- whole dossiers ------------------------------------------------------------------------------


def test_sample_dossier_600_passes():
    j = judge(samples.dossier_600())
    assert j.accepted and j.problems == [] and j.errors == 0
    assert j.params == default_parameters().stamp and set(j.params) == {"version", "sha256"}
    assert len(j.extracted.contribution_changes) == 20 and len(j.extracted.personal_data) == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sample_forms_pass(seed):
    for code, data in (("D02-TS", samples.d02ts(200, seed=seed)), ("TK1-TS", samples.tk1ts(50, seed=seed)),
                       ("D01-TS", samples.d01ts(20, seed=seed)), ("M01B-HSB", samples.m01bhsb(50, seed=seed))):
        j = judge_form(code, data)
        assert j.problems == [], (code, [(p.code, p.message_en) for p in j.problems][:5])


def test_dossier_603_extracts_benefit_claims():
    j = dossier("603", [("M01B-HSB", "m.xml", samples.m01bhsb(3)), PDF])
    assert j.accepted
    claims = j.extracted.benefit_claims
    assert [(c.regime, c.kind, c.group) for c in claims] == [
        ("CheDoOmDau", "PhatSinh", "1"), ("CheDoOmDau", "PhatSinh", "1"), ("CheDoThaiSan", "PhatSinh", "2")]
    maternity = claims[2]
    assert maternity.days == 180 and (maternity.to_date - maternity.from_date).days == 179
    assert maternity.person.personal_id and maternity.data["MaNganHang"] == "01203001"
    assert maternity.xpath == "/M01B-HSB/NoiDung/PhatSinh/CheDoThaiSan/LaoDong[1]"


def test_contribution_change_extracted_as_declared():
    j = d02({**row(1, TienLuong="2.34", PhuCapCV="0.5", TyleDong="32.0", DenThang="12/2026", Ghichu="hệ số")})
    assert j.accepted, [(p.code, p.message_en) for p in j.problems]
    c = j.extracted.contribution_changes[0]
    assert (c.pa, c.direction, c.from_month, c.to_month) == ("TM", INCREASE, Month(2026, 11), Month(2026, 12))
    assert c.coefficient and c.salary == Decimal("2.34") and c.allowances == {"PhuCapCV": Decimal("0.5")}
    assert c.rate == Decimal("32.0") and c.region == "01" and c.note == "hệ số" and c.stt == 1
    assert c.person.personal_id == PID_1990_M and c.person.si_code == "0123456789"
    assert c.person.birth_date == date(1990, 5, 15) and c.person.gender == 1
    assert c.basis(default_parameters().month("11/2026")) == round((Decimal("2.34") + Decimal("0.5")) * 2_340_000)


def test_records_extracted_even_with_errors():
    j = d02(row(2, PA="XX"))
    assert not j.accepted
    assert [c.stt for c in j.extracted.contribution_changes] == [1, 3]  # the row with an unknown PA is left out


# ---- details of single rules ---------------------------------------------------------------------


def test_coefficient_is_not_held_to_the_regional_minimum():
    j = d02(row(TienLuong="1.0"))  # 1.0 x 2,340,000 is below every regional minimum
    assert j.accepted and codes(j) == set()


def test_salary_minimum_counts_allowances_and_uses_the_region_of_the_row():
    assert "R-D02-SALARY-MIN" not in codes(d02(row(TienLuong="5000000", PhuCapCV="310000")))
    assert "R-D02-SALARY-MIN" not in codes(d02(row(TienLuong="3700000", MavungLTT="04")))
    p = only(d02(row(TienLuong="3699999", MavungLTT="04")), "R-D02-SALARY-MIN")
    assert "3.700.000" in p.message_vi and "region 04" in p.message_en


def test_salary_minimum_uses_the_parameters_of_the_first_month():
    # 5,000,000 VND: above region I's minimum until 12/2025 (4,960,000), below it from 01/2026 (5,310,000)
    assert "R-D02-SALARY-MIN" not in codes(d02(row(TienLuong="5000000", TuThang="12/2025")))
    assert "R-D02-SALARY-MIN" in codes(d02(row(TienLuong="5000000", TuThang="01/2026")))
    # 2021: Decree 90/2019 (region I 4,420,000) and a base salary of 1,490,000 (cap 29,800,000)
    assert codes(d02(row(TienLuong="4420000", TuThang="06/2021"))) == set()
    assert codes(d02(row(TienLuong="4419999", TuThang="06/2021"))) == {"R-D02-SALARY-MIN"}
    assert codes(d02(row(TienLuong="29800001", TuThang="06/2021"))) == {"R-D02-CAP"}


def test_cap_is_a_warning_and_the_row_is_kept():
    j = d02(row(TienLuong="60000000"))
    assert j.accepted and codes(j) == {"R-D02-CAP"} and j.errors == 0
    assert len(j.extracted.contribution_changes) == 3


def test_rate_must_be_declared_on_increases_only():
    assert "R-D02-RATE" in codes(d02(row(TyleDong="")))
    assert "R-D02-RATE" not in codes(d02(row(PA="GH", Loai="2", TienLuong="", TyleDong="")))


def test_loai_may_be_left_empty():
    assert codes(d02(row(Loai=""))) == set()


def test_person_conflict_links_si_code_and_personal_id():
    # row 1 names the person by both identifiers, row 3 by SI code only: one person joining twice
    j = d02({**row(1), **row(3, CMND="", MasoBHXH="0123456789")})
    p = only(j, "R-PERSON-CONFLICT")
    assert p.xpath == "/D02-TS/NoiDung/LaoDong[3]" and "STT 1" in p.message_en


def test_person_conflict_overlapping_increases():
    ok = d02({**row(1, DenThang="12/2026"), **row(2, TuThang="01/2027", PA="TC")})
    assert "R-PERSON-CONFLICT" not in codes(ok)
    bad = d02({**row(1, DenThang="12/2026"), **row(2, TuThang="12/2026", PA="TC")})
    assert "R-PERSON-CONFLICT" in codes(bad)


def test_birth_date_after_the_dossier_date():
    j = d02(row(NgaySinh="15/05/1990"), created=date(1990, 5, 14))
    assert only(j, "R-BIRTH-DATE").message_en.endswith("after the dossier's date.")


def test_vietnamese_nationals_declare_their_ethnic_group():
    assert "R-TK1-ETHNIC" in codes(tk1({(1, "DanToc"): ""}))


def test_m01b_days_rules():
    path = "CheDoOmDau/LaoDong[1]"
    for days in ("0", "1.5", "abc"):
        assert "R-M01B-DAYS" in codes(m01b({(path, "TongSoNgay"): days})), days
    assert "R-M01B-DAYS" in codes(m01b({(path, "TongSoNgay"): ""}))  # dates given, days missing
    one_date = m01b({(path, "DenNgay"): ""})
    assert only(one_date, "R-M01B-DATE").xpath.endswith("/DenNgay")


def test_d01_si_code():
    assert only(d01({(2, "MasoBHXH"): "12"}), "R-SI-FORMAT").form == "D01-TS"


# ---- the cap and the problem shape ---------------------------------------------------------------


def test_problems_are_capped_and_errors_still_counted():
    edits = {}
    for n in range(1, 31):
        edits.update({(n, "PA"): "XX", (n, "GioiTinh"): "7"})
    j = d02(edits, rows=30, max_errors=10)
    assert len(j.problems) == 10 and j.truncated > 0
    assert j.errors == len(j.problems) + j.truncated
    assert not j.accepted


def test_warnings_filling_the_cap_do_not_hide_an_error():
    edits = {}
    for n in range(1, 6):
        edits.update(row(n, TienLuong="90000000", CMND=make_personal_id("001", 1990, True, n)))
    edits[(6, "PA")] = "XX"
    j = d02(edits, rows=6, max_errors=5)
    assert {p.code for p in j.problems} == {"R-D02-CAP"} and j.truncated == 1
    assert j.errors == 1 and not j.accepted


def test_problem_line_is_the_element_line():
    data = samples.d02ts(3)
    root = _edited(data, {("NoiDung/LaoDong[2]", "PA"): "XX"})
    bad = etree.tostring(root)
    p = only(judge_form("D02-TS", bad), "R-D02-PA")
    expected = etree.fromstring(bad).find("NoiDung/LaoDong[2]/PA").sourceline
    assert p.line == expected and p.xpath == "/D02-TS/NoiDung/LaoDong[2]/PA"


def test_judge_respects_limits_max_errors():
    unit = samples.Unit()
    root = _edited(samples.d02ts(20), {(f"NoiDung/LaoDong[{n}]", "PA"): "XX" for n in range(1, 21)})
    j = judge(samples.envelope(unit, [("D02-TS", "d.xml", etree.tostring(root))]), limits=LimitsConfig(max_errors=7))
    assert len(j.problems) == 7 and j.truncated == 13 and j.errors == 20


def test_rows_read_by_tag_when_not_in_schema_order():
    """judge_form on a form that never passed the schema layer: a row with a missing field is read by tag."""
    root = etree.fromstring(samples.d02ts(2), PARSER)
    first = root.find("NoiDung/LaoDong")
    first.remove(first.find("Ghichu"))
    first.find("PA").text = "XX"
    assert only(judge_form("D02-TS", root), "R-D02-PA").xpath == "/D02-TS/NoiDung/LaoDong[1]/PA"


def test_salary_that_is_not_a_number():
    """Only a form that skipped the schema layer can carry one; the rule still says what is wrong."""
    p = only(d02(row(PA="GH", Loai="2", TienLuong="abc")), "R-D02-SALARY-MISSING")
    assert p.value == "abc" and "a decrease" in p.message_en and "abc" in p.message_vi


def test_region_reason_names_unemployment_insurance():
    p = only(d02(row(TienLuong="2.34", TyleDong="32", MavungLTT="")), "R-D02-REGION")
    assert "unemployment insurance" in p.message_en and "BHTN" in p.message_vi


def test_judgement_crosses_process_boundaries():
    import pickle

    j = d02(row(PA="XX"))
    back = pickle.loads(pickle.dumps(j))
    assert back.problems == j.problems and back.extracted == j.extracted and back.accepted is False


def test_identity_rules_in_tk1_and_m01b():
    j = tk1({(1, "CMND"): PID_1990_M, (1, "NgaySinh"): "01/01/1991", (1, "GioiTinh"): "0", (2, "CMND"): "",
             (2, "MasoBHXH"): ""})
    assert {"R-PID-BIRTH", "R-PID-GENDER", "R-PERSON-ID-MISSING"} <= codes(j)
    assert only(j, "R-PID-BIRTH").xpath == "/TK1-TS/NoiDung/LaoDong[1]/CMND"
    j = m01b({("CheDoThaiSan/LaoDong[1]", "SoCMND"): "003" + PID_1990_M[3:], ("CheDoOmDau/LaoDong[2]", "SoBHXH"): "1"})
    assert only(j, "R-PID-PROVINCE").xpath == "/M01B-HSB/NoiDung/PhatSinh/CheDoThaiSan/LaoDong[1]/SoCMND"
    assert only(j, "R-SI-FORMAT").xpath == "/M01B-HSB/NoiDung/PhatSinh/CheDoOmDau/LaoDong[2]/SoBHXH"
    assert "R-PID-BIRTH" not in codes(j)  # M01B-HSB carries no birth date


def test_tk1_extracts_personal_data():
    j = tk1(people=1)
    (change,) = j.extracted.personal_data
    assert change.person.nationality == "VN" and change.data["DanToc"] == "01" and "HoTen" not in change.data
    assert change.xpath == "/TK1-TS/NoiDung/LaoDong[1]" and change.stt == 1

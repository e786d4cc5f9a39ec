"""The rule catalogue (SPEC §7): every business rule with its stable code, severity, forms and
messages, the procedure/forms table, and the code lists the rules use.

A rule's code never changes once published (notices and stored dossiers carry it); a rule that
is withdrawn keeps its code unused. Severity: an error rejects the dossier (KHONG_CHAP_NHAN), a
warning is reported and the dossier is accepted.

Messages are `str.format` templates; every template may use `{value}` (the offending value as
declared) and the fields its rule documents in `fields`. `problem()` builds the `Problem`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from interchange.codes import CATALOGUE as GENERAL_CODES
from interchange.codes import LAYERS, Code
from interchange.errors import Layer, Problem, Severity
from interchange.months import Month

ERROR, WARNING = Severity.ERROR, Severity.WARNING
HOSO = "Hoso"  # rules on the envelope itself (procedure, unit)
D02, TK1, D01, M01B = "D02-TS", "TK1-TS", "D01-TS", "M01B-HSB"
VALUE_MAX = 200  # characters of an offending value kept in a Problem (as the schema layer does)


@dataclass(frozen=True)
class Rule:
    code: str
    severity: Severity
    forms: tuple[str, ...]  # where it applies: form codes, or HOSO for the envelope
    title_vi: str  # what the rule requires (for `interchange rules`)
    title_en: str
    vi: str  # the message of one violation (template)
    en: str

    @property
    def fields(self) -> set[str]:
        """The placeholders of the templates."""
        return {name for text in (self.vi, self.en) for _, name, _, _ in string.Formatter().parse(text) if name}

    def as_dict(self) -> dict:
        return {
            "code": self.code, "severity": str(self.severity), "forms": list(self.forms),
            "title_vi": self.title_vi, "title_en": self.title_en, "message_vi": self.vi, "message_en": self.en,
        }  # fmt: skip


_PERSON_FORMS = (D02, TK1, M01B)
_ALL_FORMS = (D02, TK1, D01, M01B)

RULES: tuple[Rule, ...] = (
    # ---- the dossier as a whole -----------------------------------------------------------
    Rule("R-PROCEDURE-UNKNOWN", ERROR, (HOSO,),
         "Mã thủ tục (MaThuTuc) phải là thủ tục được hệ thống tiếp nhận.",
         "The procedure (MaThuTuc) must be one this server handles.",
         "Thủ tục {value} không có trong danh mục thủ tục được tiếp nhận ({known}).",
         "Procedure {value} is not one this server handles ({known})."),
    Rule("R-PROCEDURE-FORMS", ERROR, (HOSO,),
         "Hồ sơ phải có đủ các tờ khai thủ tục yêu cầu và chỉ các tờ khai thủ tục cho phép.",
         "The dossier must carry the forms its procedure needs, and only forms it allows.",
         "Thủ tục {procedure}: {problem_vi}",
         "Procedure {procedure}: {problem_en}"),
    Rule("R-MST", ERROR, (HOSO,),
         "Mã số thuế đơn vị: 10 chữ số (có thể thêm -NNN), đúng chữ số kiểm tra.",
         "The unit's tax code: 10 digits (optionally -NNN) with a correct check digit.",
         "Mã số thuế {value} không hợp lệ: phải gồm 10 chữ số (có thể thêm -NNN) và đúng chữ số kiểm tra.",
         "Tax code {value} is not valid: it must be 10 digits (optionally -NNN) with a correct check digit."),
    # ---- people (D02-TS, TK1-TS, M01B-HSB) ------------------------------------------------
    Rule("R-PID-FORMAT", ERROR, _PERSON_FORMS,
         "Số định danh cá nhân gồm đúng 12 chữ số.",
         "A personal ID is exactly 12 digits.",
         "Số định danh cá nhân {value} phải gồm đúng 12 chữ số.",
         "Personal ID {value} must be exactly 12 digits."),
    Rule("R-PID-PROVINCE", ERROR, _PERSON_FORMS,
         "Ba chữ số đầu của số định danh cá nhân là mã tỉnh hợp lệ (001-096).",
         "The first three digits of a personal ID are a known province code (001-096).",
         "Số định danh cá nhân {value}: {province} không phải mã tỉnh hợp lệ.",
         "Personal ID {value}: {province} is not a known province code."),
    Rule("R-PID-BIRTH", ERROR, (D02, TK1),
         "Chữ số thứ 4 (thế kỷ) và thứ 5-6 (năm sinh) của số định danh khớp với NgaySinh.",
         "The 4th digit (century) and 5th-6th digits (birth year) of a personal ID agree with NgaySinh.",
         "Số định danh cá nhân {value} ứng với năm sinh {id_year}, nhưng NgaySinh là {birth}.",
         "Personal ID {value} stands for birth year {id_year}, but NgaySinh is {birth}."),
    Rule("R-PID-GENDER", ERROR, (D02, TK1),
         "Chữ số thứ 4 của số định danh (chẵn: nam, lẻ: nữ) khớp với GioiTinh.",
         "The 4th digit of a personal ID (even: male, odd: female) agrees with GioiTinh.",
         "Số định danh cá nhân {value} ứng với giới tính {id_gender_vi}, nhưng GioiTinh là {gender} ({gender_vi}).",
         "Personal ID {value} stands for a {id_gender_en}, but GioiTinh is {gender} ({gender_en})."),
    Rule("R-SI-FORMAT", ERROR, _ALL_FORMS,
         "Mã số BHXH gồm đúng 10 chữ số.",
         "An SI code (MasoBHXH) is exactly 10 digits.",
         "Mã số BHXH {value} phải gồm đúng 10 chữ số.",
         "SI code {value} must be exactly 10 digits."),
    Rule("R-PERSON-ID-MISSING", ERROR, _PERSON_FORMS,
         "Mỗi người có ít nhất một trong hai: số định danh cá nhân hoặc mã số BHXH.",
         "Each person has at least one of a personal ID and an SI code.",
         "{name}: thiếu cả số định danh cá nhân ({pid_field}) và mã số BHXH ({si_field}).",
         "{name}: neither a personal ID ({pid_field}) nor an SI code ({si_field}) is given."),
    Rule("R-BIRTH-DATE", ERROR, (D02, TK1),
         "NgaySinh là ngày có thật (dd/MM/yyyy, MM/yyyy hoặc yyyy), từ năm 1900, không sau ngày lập hồ sơ.",
         "NgaySinh is a real date (dd/MM/yyyy, MM/yyyy or yyyy), from 1900, not after the dossier's date.",
         "Ngày sinh {value} không hợp lệ: {reason_vi}.",
         "Birth date {value} is not valid: {reason_en}."),
    Rule("R-GENDER", ERROR, (D02, TK1),
         "GioiTinh là 1 (nam) hoặc 0 (nữ).",
         "GioiTinh is 1 (male) or 0 (female).",
         "Giới tính {value} không hợp lệ: phải là 1 (nam) hoặc 0 (nữ).",
         "Gender {value} is not valid: it must be 1 (male) or 0 (female)."),
    Rule("R-STT-DUP", ERROR, _ALL_FORMS,
         "Số thứ tự (STT) không trùng trong một danh sách của tờ khai.",
         "Row numbers (STT) are unique within a list of a form.",
         "STT {value} bị trùng với dòng {first_xpath}.",
         "STT {value} is used twice (also at {first_xpath})."),
    # ---- D02-TS ---------------------------------------------------------------------------
    Rule("R-D02-PA", ERROR, (D02,),
         "Phương án (PA) thuộc danh mục: tăng TM TC TD TH ON TT AD; giảm GH GC GD KL OF TS SB TU; điều chỉnh DC CD DL DN AT.",
         "PA is in the code list: increases TM TC TD TH ON TT AD; decreases GH GC GD KL OF TS SB TU; adjustments DC CD DL DN AT.",
         "Phương án {value} không có trong danh mục.",
         "PA {value} is not in the code list."),
    Rule("R-D02-PA-LOAI", ERROR, (D02,),
         "Loai khớp với hướng của PA: 1 tăng, 2 giảm, 3 điều chỉnh (quy ước suy diễn, không chính thức).",
         "Loai agrees with the PA's direction: 1 increase, 2 decrease, 3 adjustment (derived, unofficial).",
         "Loai {value} không khớp với phương án {pa} ({direction_vi}: Loai phải là {expected}).",
         "Loai {value} does not agree with PA {pa} ({direction_en}: Loai must be {expected})."),
    Rule("R-D02-MONTH", ERROR, (D02,),
         "TuThang, DenThang là tháng có thật dạng MM/yyyy, từ 01/1995.",
         "TuThang and DenThang are real months MM/yyyy, from 01/1995.",
         "{field} {value} không phải tháng hợp lệ (MM/yyyy, từ 01/1995).",
         "{field} {value} is not a valid month (MM/yyyy, from 01/1995)."),
    Rule("R-D02-MONTH-ORDER", ERROR, (D02,),
         "DenThang không trước TuThang.",
         "DenThang is not before TuThang.",
         "Đến tháng {value} trước từ tháng {from_month}.",
         "DenThang {value} is before TuThang {from_month}."),
    Rule("R-D02-DATE", ERROR, (D02,),
         "Các ngày của dòng (NgayChet, Vtvl_*, Nndh_*, Hdld_*) là ngày có thật; ngày kết thúc không trước ngày bắt đầu.",
         "The row's dates (NgayChet, Vtvl_*, Nndh_*, Hdld_*) are real dates; an end is not before its start.",
         "{field} {value}: {reason_vi}.",
         "{field} {value}: {reason_en}."),
    Rule("R-D02-SALARY-MISSING", ERROR, (D02,),
         "Dòng tăng và dòng điều chỉnh khai mức lương (TienLuong); mức lương đã khai phải là số.",
         "Increase and adjustment rows declare a salary (TienLuong); a declared salary is a number.",
         "Mức lương {value}: phương án {pa} ({direction_vi}) phải khai mức lương đóng (TienLuong) là số tiền "
         "hoặc hệ số lương.",
         "Salary {value}: PA {pa} ({direction_en}) must declare the salary (TienLuong) as an amount in VND or "
         "a coefficient."),
    Rule("R-D02-SALARY-MIN", ERROR, (D02,),
         "Tiền lương đóng (lương và phụ cấp) không thấp hơn lương tối thiểu vùng (MavungLTT) tại TuThang.",
         "The salary basis (salary and allowances) is not below the regional minimum wage of MavungLTT in TuThang.",
         "Tiền lương đóng {basis} đồng (TienLuong {value} cộng phụ cấp) thấp hơn lương tối thiểu vùng {region} "
         "tháng {month}: {minimum} đồng.",
         "The salary basis of {basis} VND (TienLuong {value} plus allowances) is below the regional minimum wage "
         "of region {region} in {month}: {minimum} VND."),
    Rule("R-D02-COEFFICIENT", ERROR, (D02,),
         "TienLuong từ 100 trở xuống là hệ số lương (thang bảng lương nhà nước), hợp lý từ 1,00 đến 10,00.",
         "A TienLuong of 100 or less is a salary coefficient (state pay scale), plausible from 1.00 to 10.00.",
         "Hệ số lương {value} nằm ngoài khoảng hợp lý {low} - {high}.",
         "Salary coefficient {value} is outside the plausible range {low} - {high}."),
    Rule("R-D02-CAP", WARNING, (D02,),
         "Tiền lương đóng trên 20 lần lương cơ sở: số tiền đóng tính trên mức trần.",
         "A salary basis above 20 x the base salary: contributions are computed on the cap.",
         "Tiền lương đóng {basis} đồng (TienLuong {value}) vượt mức trần {cap} đồng ({multiple} lần lương cơ sở "
         "{base} đồng) tháng {month}; BHXH, BHYT tính trên mức trần.",
         "The salary basis of {basis} VND (TienLuong {value}) is above the cap of {cap} VND ({multiple} x the base "
         "salary of {base} VND) in {month}; social and health insurance are computed on the cap."),
    Rule("R-D02-RATE", ERROR, (D02,),
         "Tỷ lệ đóng (TyleDong) là một mức đóng có hiệu lực tại TuThang; dòng tăng phải khai.",
         "TyleDong is a contribution rate in force in TuThang; increase rows must declare it.",
         "Tỷ lệ đóng {value} không phải mức đóng có hiệu lực tháng {month} ({known}).",
         "TyleDong {value} is not a contribution rate in force in {month} ({known})."),
    Rule("R-D02-REGION", ERROR, (D02,),
         "MavungLTT là 01-04 khi dòng khai lương bằng tiền hoặc đóng BHTN.",
         "MavungLTT is 01-04 when the row declares a salary in VND or pays unemployment insurance.",
         "Mã vùng lương tối thiểu {value} không hợp lệ: phải là 01, 02, 03 hoặc 04 ({why_vi}).",
         "Regional minimum-wage zone {value} is not valid: it must be 01, 02, 03 or 04 ({why_en})."),
    Rule("R-D02-PARAMS", WARNING, (D02,),
         "Có tham số pháp lý (lương cơ sở, lương tối thiểu vùng, tỷ lệ) cho tháng TuThang; nếu không, không kiểm tra mức lương.",
         "Legal parameters (base salary, regional minimums, rates) exist for TuThang; else the salary rules are not applied.",
         "Không có tham số pháp lý cho tháng {value} ({reason}); không kiểm tra mức lương và tỷ lệ đóng của dòng này.",
         "No legal parameters in force for {value} ({reason}); the salary and rate rules were not applied to this row."),
    Rule("R-PERSON-CONFLICT", ERROR, (D02,),
         "Một người không có hai thay đổi mâu thuẫn nhau trong cùng một tờ khai D02-TS.",
         "One person has no two contradicting changes in one D02-TS.",
         "Người có mã {value} có hai thay đổi mâu thuẫn: {this_vi} và {other_vi} ở dòng STT {other_stt}.",
         "The person {value} has two contradicting changes: {this_en}, and {other_en} at STT {other_stt}."),
    # ---- TK1-TS ---------------------------------------------------------------------------
    Rule("R-TK1-NATIONALITY", ERROR, (TK1,),
         "Quốc tịch (QuocTich) là mã ISO 3166-1 alpha-2 (VN, ...).",
         "QuocTich is an ISO 3166-1 alpha-2 country code (VN, ...).",
         "Quốc tịch {value} không phải mã quốc gia ISO 3166-1 alpha-2.",
         "Nationality {value} is not an ISO 3166-1 alpha-2 country code."),
    Rule("R-TK1-ETHNIC", ERROR, (TK1,),
         "Dân tộc (DanToc) là mã 01-55 hoặc 99; người quốc tịch Việt Nam phải khai.",
         "DanToc is a code 01-55 or 99; Vietnamese nationals must declare it.",
         "Mã dân tộc {value} không hợp lệ: {reason_vi}.",
         "Ethnic group code {value} is not valid: {reason_en}."),
    Rule("R-TK1-PROVINCE", ERROR, (TK1,),
         "Mã tỉnh (Matinh_KS, Matinh_NN, MaTinhBenhVien) là mã tỉnh hai chữ số hợp lệ.",
         "Province codes (Matinh_KS, Matinh_NN, MaTinhBenhVien) are known two-digit province codes.",
         "{field} {value} không phải mã tỉnh hợp lệ.",
         "{field} {value} is not a known province code."),
    # ---- D01-TS ---------------------------------------------------------------------------
    Rule("R-D01-DATE", ERROR, (D01,),
         "NgayBanHanh, NgayHieuLuc là ngày có thật; ngày hiệu lực không trước ngày ban hành.",
         "NgayBanHanh and NgayHieuLuc are real dates; the effective date is not before the issue date.",
         "{field} {value}: {reason_vi}.",
         "{field} {value}: {reason_en}."),
    # ---- M01B-HSB -------------------------------------------------------------------------
    Rule("R-M01B-DATE", ERROR, (M01B,),
         "TuNgay, DenNgay, TuNgayDuyetTruoc là ngày có thật; TuNgay và DenNgay có cả hai hoặc không có.",
         "TuNgay, DenNgay and TuNgayDuyetTruoc are real dates; TuNgay and DenNgay are both given or both empty.",
         "{field} {value}: {reason_vi}.",
         "{field} {value}: {reason_en}."),
    Rule("R-M01B-DATE-ORDER", ERROR, (M01B,),
         "DenNgay không trước TuNgay.",
         "DenNgay is not before TuNgay.",
         "Đến ngày {value} trước từ ngày {from_date}.",
         "DenNgay {value} is before TuNgay {from_date}."),
    Rule("R-M01B-DAYS", ERROR, (M01B,),
         "TongSoNgay là số nguyên dương, không quá số ngày từ TuNgay đến DenNgay (ốm đau chỉ tính ngày làm việc nên có thể ít hơn).",
         "TongSoNgay is a positive whole number, at most the days from TuNgay to DenNgay (sickness counts working days only, so may be fewer).",
         "Tổng số ngày {value} không hợp lệ: {reason_vi}.",
         "TongSoNgay {value} is not valid: {reason_en}."),
    Rule("R-M01B-GROUP", ERROR, (M01B,),
         "MaNhomHuong thuộc danh mục nhóm hưởng của chế độ (bảng suy diễn, không chính thức).",
         "MaNhomHuong is a benefit group of its regime (derived, unofficial table).",
         "Mã nhóm hưởng {value} không thuộc chế độ {regime} ({known}).",
         "Benefit group {value} is not a group of {regime} ({known})."),
    Rule("R-M01B-DOT", ERROR, (M01B,),
         "DotXetDuyet là ngày có thật dạng yyyymmdd.",
         "DotXetDuyet is a real date yyyymmdd.",
         "Đợt xét duyệt {value} không phải ngày có thật dạng yyyymmdd.",
         "DotXetDuyet {value} is not a real date yyyymmdd."),
)

CATALOGUE: dict[str, Rule] = {r.code: r for r in RULES}
if len(CATALOGUE) != len(RULES):  # a typo would silently shadow a rule
    raise RuntimeError("two rules share a code")


def problem(
    code: str,
    *,
    form: str | None,
    xpath: str,
    line: int | None = None,
    value: str | None = None,
    **fields: object,
) -> Problem:
    """The `Problem` of one violation of rule `code` (layer rule, the rule's severity), its
    messages filled with `value` and the rule's other fields. KeyError for an unknown code or
    a missing field (a programming error, caught by the catalogue tests)."""
    rule = CATALOGUE[code]
    shown = "(trống)" if value in (None, "") else value
    shown_en = "(empty)" if value in (None, "") else value
    if value is not None and len(value) > VALUE_MAX:
        value = value[:VALUE_MAX] + "…"
        shown = shown_en = value
    return Problem(
        layer=Layer.RULE,
        code=code,
        severity=rule.severity,
        message_vi=rule.vi.format(value=shown, **fields),
        message_en=rule.en.format(value=shown_en, **fields),
        form=form,
        xpath=xpath,
        line=line,
        value=value,
    )


# ---- procedures and their forms ------------------------------------------------------------


@dataclass(frozen=True)
class ProcedureForms:
    needs: frozenset[str]  # XML forms that must be there (each at least once)
    may: frozenset[str]  # XML forms that may also be there
    attachments: bool = True  # non-XML files (scans, PDFs) allowed


PROCEDURES: dict[str, ProcedureForms] = {
    "600": ProcedureForms(frozenset({D02}), frozenset({TK1, D01})),  # contributions: register, adjust
    "603": ProcedureForms(frozenset({M01B}), frozenset({D01})),  # sickness, maternity, convalescence
    "630": ProcedureForms(frozenset({TK1}), frozenset({D01})),  # participant information
    "602": ProcedureForms(frozenset({TK1}), frozenset({D01})),  # book and card: reissue, change
}
# E-transaction registration: no forms; checked by interchange.jobs.registration, not here.
REGISTRATION_PROCEDURES = frozenset({"04/DK-IVAN", "05/SD-IVAN", "06/NG-IVAN"})


# ---- code lists ----------------------------------------------------------------------------

# Loai of a D02-TS row by PA direction (derived, unofficial: the column's meaning is not
# published; payroll software writes 1 for joiners, 2 for leavers and 3 for adjustments).
LOAI_BY_DIRECTION = {"increase": "1", "decrease": "2", "adjustment": "3"}
DIRECTION_VI = {"increase": "tăng", "decrease": "giảm", "adjustment": "điều chỉnh"}
COEFFICIENT_RANGE = ("1.0", "10.0")  # a plausible coefficient of the state pay scale
FIRST_MONTH = Month(1995, 1)  # compulsory social insurance started on 1 January 1995

ISO_COUNTRIES = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY
BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM
FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT
JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN
MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT
PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL
TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
""".split())  # the 249 officially assigned codes
# The 54 ethnic groups (01-54), 55 people of foreign origin, 99 not determined (derived from
# the statistics office's list used in BHXH forms).
ETHNIC_CODES = frozenset([f"{i:02d}" for i in range(1, 56)] + ["99"])

# MaNhomHuong by regime (derived, unofficial: the agency's list is not public):
#   CheDoOmDau: 1 own sickness, 2 own long-term sickness, 3 caring for a sick child;
#   CheDoThaiSan: 1 prenatal check, 2 childbirth, 3 miscarriage or stillbirth, 4 contraception,
#     5 adoption, 6 surrogacy, 7 father's leave at childbirth, 8 lump sum on birth or adoption;
#   CheDoDuongSuc: 1 after sickness, 2 after maternity, 3 after an occupational accident or disease.
BENEFIT_GROUPS: dict[str, frozenset[str]] = {
    "CheDoOmDau": frozenset("123"),
    "CheDoThaiSan": frozenset("12345678"),
    "CheDoDuongSuc": frozenset("123"),
}
BENEFIT_KINDS = ("PhatSinh", "DieuChinh")


# ---- every code the server can emit: interchange.codes and the rules ----------------------


def lookup_code(code: str) -> Code | None:
    """The catalogue entry of a code, the rule catalogue's included."""
    return GENERAL_CODES.get(code) or next((c for c in rule_codes() if c.code == code), None)


def rule_codes() -> list[Code]:
    """The `R-` rule codes as catalogue entries."""
    return [Code(r.code, str(Layer.RULE), str(r.severity), r.title_vi, r.title_en) for r in RULES]


def every_code(layer: str | None = None) -> list[Code]:
    """Every code the server can emit, in layer order (then as catalogued); `layer` filters."""
    every = [*GENERAL_CODES.values(), *rule_codes()]
    ordered = sorted(every, key=lambda c: LAYERS.index(c.layer))  # stable: catalogue order within a layer
    return [c for c in ordered if layer is None or c.layer == layer]

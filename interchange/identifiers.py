"""Identifier checks shared by the rules, the registration checks and the sample generators.

- MST (mã số thuế, tax code): 10 digits with a check digit, optionally `-NNN` for a branch.
- Personal ID (số định danh cá nhân, the number of the CCCD card): 12 digits,
  PPP C YY NNNNNN: PPP the province of birth registration (CCCD scheme codes), C century and
  gender, YY the last two digits of the birth year, NNNNNN a serial. Circular 07/2016/TT-BCA
  Article 7 and its successors (Circular 59/2021/TT-BCA, Decree 70/2024/NĐ-CP).
- SI code (mã số BHXH): 10 digits. Its digits carry no check that is public, so only the
  shape is checked.
- Form code (MaToKhai): D02-TS, TK1-TS, M01B-HSB, CT-DK...; real payroll software may write the
  file's extension (`.xml`) there instead (SPEC §2).
"""

from __future__ import annotations

import re

# A MaToKhai written as a form code (known or not): letters and digits in dash-joined parts.
FORM_CODE = re.compile(r"[A-Z0-9][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*")


def is_form_code(text: str) -> bool:
    """Is MaToKhai written as a form code? (`.xml`, empty, `D02-TS.xml`: no.)"""
    return FORM_CODE.fullmatch(text) is not None

MST_WEIGHTS = (31, 29, 23, 19, 17, 13, 7, 5, 3)


def mst_check_digit(first9: str) -> int | None:
    """The 10th digit of a tax code whose first nine digits are `first9`.

    check = 10 - (sum of digit x weight mod 11). When the remainder is 0 the formula gives
    10, which is not a digit: no tax code exists with those nine digits (the tax authority
    does not issue them), so this returns None. (A remainder of 10 gives check 0, a valid
    digit.) "Check 11" cannot occur since the remainder is never negative.
    """
    if len(first9) != 9 or not first9.isdigit():
        raise ValueError(f"need nine digits, got {first9!r}")
    check = 10 - sum(int(d) * w for d, w in zip(first9, MST_WEIGHTS, strict=True)) % 11
    return check if check < 10 else None


def mst_valid(mst: str) -> bool:
    """True when `mst` is 10 digits (optionally `-NNN`) with a correct check digit."""
    head, dash, branch = mst.partition("-")
    if len(head) != 10 or not _digits(head):
        return False
    if dash and (len(branch) != 3 or not _digits(branch)):  # "0101234565-" is not a tax code
        return False
    return mst_check_digit(head[:9]) == int(head[9])


# ---- personal ID (CCCD) ---------------------------------------------------------------------

# The province codes of the CCCD scheme: the 63 provinces before the 2025 merger. Numbers
# issued under them stay valid after it (the 34 merged provinces kept codes from this list).
PROVINCE_CODES: dict[str, str] = {
    "001": "Hà Nội", "002": "Hà Giang", "004": "Cao Bằng", "006": "Bắc Kạn", "008": "Tuyên Quang",
    "010": "Lào Cai", "011": "Điện Biên", "012": "Lai Châu", "014": "Sơn La", "015": "Yên Bái",
    "017": "Hòa Bình", "019": "Thái Nguyên", "020": "Lạng Sơn", "022": "Quảng Ninh", "024": "Bắc Giang",
    "025": "Phú Thọ", "026": "Vĩnh Phúc", "027": "Bắc Ninh", "030": "Hải Dương", "031": "Hải Phòng",
    "033": "Hưng Yên", "034": "Thái Bình", "035": "Hà Nam", "036": "Nam Định", "037": "Ninh Bình",
    "038": "Thanh Hóa", "040": "Nghệ An", "042": "Hà Tĩnh", "044": "Quảng Bình", "045": "Quảng Trị",
    "046": "Thừa Thiên Huế", "048": "Đà Nẵng", "049": "Quảng Nam", "051": "Quảng Ngãi", "052": "Bình Định",
    "054": "Phú Yên", "056": "Khánh Hòa", "058": "Ninh Thuận", "060": "Bình Thuận", "062": "Kon Tum",
    "064": "Gia Lai", "066": "Đắk Lắk", "067": "Đắk Nông", "068": "Lâm Đồng", "070": "Bình Phước",
    "072": "Tây Ninh", "074": "Bình Dương", "075": "Đồng Nai", "077": "Bà Rịa - Vũng Tàu",
    "079": "Hồ Chí Minh", "080": "Long An", "082": "Tiền Giang", "083": "Bến Tre", "084": "Trà Vinh",
    "086": "Vĩnh Long", "087": "Đồng Tháp", "089": "An Giang", "091": "Kiên Giang", "092": "Cần Thơ",
    "093": "Hậu Giang", "094": "Sóc Trăng", "095": "Bạc Liêu", "096": "Cà Mau",
}  # fmt: skip
# The same provinces in the two-digit administrative code list (SI-code prefixes, Matinh_* fields).
PROVINCE_CODES_2: frozenset[str] = frozenset(code[1:] for code in PROVINCE_CODES)

# 4th digit: the first birth year of its century; even digits are men, odd digits women.
CENTURY_START: dict[int, int] = {0: 1900, 1: 1900, 2: 2000, 3: 2000, 4: 2100, 5: 2100, 6: 2200, 7: 2200, 8: 1800, 9: 1800}
BIRTH_YEARS = range(1800, 2300)  # what the century digit can express

# What can be wrong with a personal ID, in the order checked (the rules map each to a code).
PID_FORMAT, PID_PROVINCE, PID_BIRTH, PID_GENDER = "format", "province", "birth", "gender"


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit alone accepts "²" and Arabic-Indic digits


def pid_format_ok(pid: str) -> bool:
    return len(pid) == 12 and _digits(pid)


def pid_century_digit(birth_year: int, male: bool) -> int:
    """The 4th digit of the personal ID of a person born in `birth_year`. ValueError outside 1800-2299."""
    if birth_year not in BIRTH_YEARS:
        raise ValueError(f"no century digit for birth year {birth_year}")
    base = {1900: 0, 2000: 2, 2100: 4, 2200: 6, 1800: 8}[birth_year // 100 * 100]
    return base + (0 if male else 1)


def pid_birth_year(pid: str) -> int:
    """The birth year a (well-formed) personal ID states."""
    return CENTURY_START[int(pid[3])] + int(pid[4:6])


def pid_male(pid: str) -> bool:
    """The gender a (well-formed) personal ID states: True male, False female."""
    return int(pid[3]) % 2 == 0


def make_personal_id(province: str, birth_year: int, male: bool, serial: int) -> str:
    """A personal ID with these parts (for tests and samples)."""
    if province not in PROVINCE_CODES:
        raise ValueError(f"unknown province code {province!r}")
    if not 0 <= serial < 1_000_000:
        raise ValueError(f"serial must have six digits, got {serial}")
    return f"{province}{pid_century_digit(birth_year, male)}{birth_year % 100:02d}{serial:06d}"


def check_personal_id(pid: str, *, birth_year: int | None = None, male: bool | None = None) -> list[str]:
    """What is wrong with `pid` (PID_FORMAT, PID_PROVINCE, PID_BIRTH, PID_GENDER), empty when
    nothing. The birth and gender checks run only when the birth year / gender is given; a
    malformed ID reports PID_FORMAT alone."""
    if not pid_format_ok(pid):
        return [PID_FORMAT]
    wrong = []
    if pid[:3] not in PROVINCE_CODES:
        wrong.append(PID_PROVINCE)
    if birth_year is not None and pid_birth_year(pid) != birth_year:
        wrong.append(PID_BIRTH)
    if male is not None and pid_male(pid) != male:
        wrong.append(PID_GENDER)
    return wrong


def personal_id_valid(pid: str, *, birth_year: int | None = None, male: bool | None = None) -> bool:
    return not check_personal_id(pid, birth_year=birth_year, male=male)


# ---- SI code -----------------------------------------------------------------------------------


def si_code_valid(code: str) -> bool:
    """A 10-digit social-insurance code (mã số BHXH)."""
    return len(code) == 10 and _digits(code)

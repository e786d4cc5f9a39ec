"""Made-up but plausible Vietnamese people for the sample documents: names with diacritics,
birth dates, places, and 12-digit personal IDs whose digits agree with the birth date and
gender, 10-digit social-insurance codes; and the job titles and streets the forms need."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

_FAMILY = (
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng",
    "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý", "Đinh", "Trịnh", "Mai", "Cao",
)  # fmt: skip
_MIDDLE_M = ("Văn", "Đức", "Hữu", "Quang", "Minh", "Công", "Xuân", "Thành", "Đình", "Anh")
_MIDDLE_F = ("Thị", "Ngọc", "Thu", "Hồng", "Thanh", "Phương", "Thùy", "Kim", "Bích", "Mai")
_GIVEN_M = (
    "An", "Bình", "Cường", "Dũng", "Hải", "Hiếu", "Hùng", "Khánh", "Long", "Nam",
    "Phúc", "Quân", "Sơn", "Thắng", "Tuấn", "Việt", "Đạt", "Trung", "Lâm", "Khoa",
)  # fmt: skip
_GIVEN_F = (
    "Anh", "Chi", "Dung", "Giang", "Hà", "Hạnh", "Hương", "Lan", "Linh", "Mai",
    "Ngân", "Nhung", "Phương", "Quỳnh", "Thảo", "Trang", "Uyên", "Vân", "Yến", "Ánh",
)  # fmt: skip
# (CCCD province code, SI-code province prefix, commune code, address)
PLACES = (
    ("001", "01", "00004", "Phường Ba Đình, Thành phố Hà Nội"),
    ("001", "01", "00166", "Phường Láng, Thành phố Hà Nội"),
    ("079", "79", "26734", "Phường Sài Gòn, Thành phố Hồ Chí Minh"),
    ("031", "31", "11311", "Phường Hồng Bàng, Thành phố Hải Phòng"),
    ("048", "48", "20194", "Phường Hải Châu, Thành phố Đà Nẵng"),
    ("092", "92", "31117", "Phường Ninh Kiều, Thành phố Cần Thơ"),
    ("038", "38", "14758", "Phường Hạc Thành, Tỉnh Thanh Hóa"),
    ("040", "40", "16681", "Phường Trường Vinh, Tỉnh Nghệ An"),
)
POSITIONS = (
    "Nhân viên kinh doanh", "Kế toán viên", "Kỹ sư phần mềm", "Công nhân may",
    "Trưởng phòng hành chính", "Lái xe", "Nhân viên kho", "Chuyên viên nhân sự",
    "Kỹ thuật viên điện", "Nhân viên chăm sóc khách hàng",
)  # fmt: skip
STREETS = ("Láng Hạ", "Kim Mã", "Nguyễn Trãi", "Lê Duẩn", "Trần Phú", "Hai Bà Trưng", "Lý Thường Kiệt")


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    male: bool
    born: dt.date
    cccd: str
    si_code: str  # may be "" (a first-time participant has no SI code yet)
    place: tuple[str, str, str, str]


def new_person(
    rng: random.Random,
    *,
    si_code: bool = True,
    male: bool | None = None,
    years: tuple[int, int] = (1966, 2006),
    serials: tuple[int, int] | None = None,
) -> Person:
    """A made-up person drawn from `rng`; `si_code=False`: a first-time participant."""
    male = rng.random() < 0.5 if male is None else male
    if male:
        name = f"{rng.choice(_FAMILY)} {rng.choice(_MIDDLE_M)} {rng.choice(_GIVEN_M)}"
    else:
        name = f"{rng.choice(_FAMILY)} {rng.choice(_MIDDLE_F)} {rng.choice(_GIVEN_F)}"
    year = rng.randint(*years)
    born = dt.date(year, rng.randint(1, 12), rng.randint(1, 28))
    place = rng.choice(PLACES)
    # CCCD: province (3) + century/gender (1: 0/1 = male/female 1900s, 2/3 = 2000s)
    # + last two digits of the birth year (2) + 6 random digits.
    century_gender = (0 if year < 2000 else 2) + (0 if male else 1)
    # `serials` (personal ID, SI code) keep the people of one form apart: random draws repeat among
    # 50,000 people. The draws are made all the same, so that every other value stays as it was.
    cccd_serial = rng.randrange(1_000_000)
    code_serial = rng.randrange(100_000_000) if si_code else 0
    if serials is not None:
        cccd_serial, code_serial = serials
    cccd = f"{place[0]}{century_gender}{year % 100:02d}{cccd_serial:06d}"
    code = f"{place[1]}{code_serial:08d}" if si_code else ""
    return Person(name, male, born, cccd, code, place)

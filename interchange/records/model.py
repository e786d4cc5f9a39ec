"""What accepted forms say, as plain data: the rule layer extracts it from the signed forms
(interchange.rules), the store keeps it (interchange.store.persons), the book reads it back
(interchange.records.book). No XML and no database types here.

Months are `interchange.months.Month`s, days are `date`s, money is whole VND (`int`), rates and
coefficients are `Decimal`s as declared.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date
from decimal import Decimal
from operator import attrgetter

from interchange.legal.params import ParamsInForce
from interchange.months import Month

# D02-TS directions of a change (SPEC §6): each PA code belongs to one.
INCREASE, DECREASE, ADJUSTMENT = "increase", "decrease", "adjustment"
PA_DIRECTIONS: dict[str, str] = {
    **dict.fromkeys(("TM", "TC", "TD", "TH", "ON", "TT", "AD"), INCREASE),
    **dict.fromkeys(("GH", "GC", "GD", "KL", "OF", "TS", "SB", "TU"), DECREASE),
    **dict.fromkeys(("DC", "CD", "DL", "DN", "AT"), ADJUSTMENT),
}
COEFFICIENT_LIMIT = Decimal(100)  # a TienLuong of 100 or less is a salary coefficient, not VND


def pickled_as_arguments(cls):
    """Pickle a frozen slotted dataclass as its constructor's arguments. Its own pickling (the
    __getstate__/__setstate__ that dataclasses add to slotted classes) walks `fields()` for every
    object; the rows of every accepted dossier go from a worker process to the server pickled, and
    that walk was most of it (0.26 ms a 20-row dossier, both ends, against 0.1 now)."""
    values = attrgetter(*(f.name for f in fields(cls)))

    def __reduce__(self):
        return cls, values(self)

    cls.__reduce__ = __reduce__
    return cls


@pickled_as_arguments
@dataclass(frozen=True, slots=True)
class PersonRef:
    """A person as one row names them. At least one of the two identifiers is set (the rules
    refuse a row with neither)."""

    personal_id: str | None  # 12-digit số định danh cá nhân (CCCD), the key
    si_code: str | None  # 10-digit mã số BHXH, an alias
    name: str
    birth_date: date | None = None
    gender: int | None = None  # 1 male, 0 female
    nationality: str | None = None  # ISO alpha-2 (TK1-TS)


@pickled_as_arguments
@dataclass(frozen=True, slots=True)
class ContributionChange:
    """One D02-TS LaoDong row: a change of a person's contributions at the declaring unit."""

    xpath: str  # /D02-TS/NoiDung/LaoDong[n]
    stt: int
    person: PersonRef
    pa: str  # PA code, e.g. TM
    direction: str  # INCREASE | DECREASE | ADJUSTMENT (from PA_DIRECTIONS)
    from_month: Month  # TuThang
    to_month: Month | None  # DenThang, None when open
    position: str | None  # ChucVu
    workplace: str | None  # NoiLamViec
    salary: Decimal | None  # TienLuong as declared: VND, or a coefficient when <= COEFFICIENT_LIMIT
    allowances: dict[str, Decimal] = field(default_factory=dict)  # PhuCapCV, PhuCapTNVK (%), PhuCapTNNghe (%), PhuCapLuong, PhuCapBosung
    rate: Decimal | None = None  # TyleDong, percent
    region: str | None = None  # MavungLTT 01..04
    note: str | None = None  # Ghichu
    benefit_level: str | None = None  # MucHuong: the HI benefit-level code 1-5 (interchange.records.card)

    @property
    def coefficient(self) -> bool:
        return self.salary is not None and self.salary <= COEFFICIENT_LIMIT

    def basis(self, params: ParamsInForce) -> int:
        """The monthly salary basis in VND under `params` (before any cap).

        VND salaries: TienLuong plus every allowance. Coefficient salaries (state scale):
        (coefficient + position allowance + seniority beyond the scale + professional seniority)
        x base salary, where PhuCapTNVK is a percent of the coefficient and PhuCapTNNghe a percent
        of the three before it; PhuCapLuong and PhuCapBosung are coefficients too.
        """
        if self.salary is None:
            return 0
        a = {k: v for k, v in self.allowances.items() if v is not None}
        if not self.coefficient:
            return int(self.salary + sum(a.values(), Decimal(0)))
        position = a.get("PhuCapCV", Decimal(0))
        beyond = self.salary * a.get("PhuCapTNVK", Decimal(0)) / 100
        professional = (self.salary + position + beyond) * a.get("PhuCapTNNghe", Decimal(0)) / 100
        other = a.get("PhuCapLuong", Decimal(0)) + a.get("PhuCapBosung", Decimal(0))
        total = (self.salary + position + beyond + professional + other) * params.base_salary
        return int(total.quantize(Decimal(1), rounding="ROUND_HALF_UP"))


@pickled_as_arguments
@dataclass(frozen=True, slots=True)
class PersonalDataChange:
    """One TK1-TS LaoDong row: a person's registration or a change of their data."""

    xpath: str
    stt: int
    person: PersonRef
    data: dict[str, str]  # the row's other non-empty fields, by element name (DanToc, Diachi_NN, ...)
    change: str | None = None  # Noidung_Thaydoi


@pickled_as_arguments
@dataclass(frozen=True, slots=True)
class BenefitClaim:
    """One M01B-HSB LaoDong row."""

    xpath: str
    stt: int
    person: PersonRef
    regime: str  # CheDoOmDau | CheDoThaiSan | CheDoDuongSuc
    kind: str  # PhatSinh (new) | DieuChinh (adjustment)
    group: str | None  # MaNhomHuong
    from_date: date | None
    to_date: date | None
    days: int | None  # TongSoNgay
    data: dict[str, str] = field(default_factory=dict)  # payment and other fields as declared


@dataclass
class Extracted:
    """Everything the records of one accepted dossier are made of."""

    contribution_changes: list[ContributionChange] = field(default_factory=list)
    personal_data: list[PersonalDataChange] = field(default_factory=list)
    benefit_claims: list[BenefitClaim] = field(default_factory=list)

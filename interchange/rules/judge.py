"""The rule layer (SPEC §7): judge a received dossier by the rules of `catalogue`, and extract its
records (`interchange.records.model`).

`judge(original)` is pure and CPU-only (it runs in worker processes): it re-reads the stored
original bytes of a dossier that passed envelope, signature and schema checks at receipt, with
the same hardened parser, and never verifies signatures again.

Speed: a D02-TS of 50,000 rows is judged in one pass over its rows. Each row's children are read
once into a dict by tag (no XPath per row, no `getpath`: XPaths are built from the row's
position), dates and months are parsed through small caches, and the legal parameters are looked
up once per declared month. Problems beyond the cap are counted, not built.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from lxml import etree

from interchange.config import LimitsConfig
from interchange.errors import Problem, Problems, Severity
from interchange.forms.fields import D02_FIELDS
from interchange.identifiers import (
    PID_BIRTH,
    PID_FORMAT,
    PID_GENDER,
    PID_PROVINCE,
    PROVINCE_CODES_2,
    check_personal_id,
    mst_valid,
    pid_birth_year,
    pid_male,
    si_code_valid,
)
from interchange.intake.envelope import Envelope, FormFile, read_envelope
from interchange.records.model import (
    ADJUSTMENT,
    COEFFICIENT_LIMIT,
    DECREASE,
    INCREASE,
    PA_DIRECTIONS,
    BenefitClaim,
    ContributionChange,
    Extracted,
    PersonalDataChange,
    PersonRef,
)
from interchange.rules import catalogue as cat
from interchange.rules.catalogue import CATALOGUE, D01, D02, HOSO, M01B, TK1, problem
from interchange.rules.params import CAP_REGIONAL, REGIONS, LegalParameters, ParamsInForce, default_parameters
from interchange.xmlparse import XmlLimits, parse_xml

ENVELOPE_FORMS_XPATH = "/Hoso/NoiDung/ThongTinHoSo/ToKhais"
ENVELOPE_MST_XPATH = "/Hoso/NoiDung/ThongTinDonVi/MaSoThue"
ENVELOPE_PROCEDURE_XPATH = "/Hoso/NoiDung/ThongTinHoSo/MaThuTuc"


@dataclass
class Judgement:
    problems: list[Problem]  # rule-layer problems, errors and warnings, capped (max_errors)
    truncated: int  # how many the cap left out
    extracted: Extracted  # the records of the dossier (filled even when there are errors)
    params: dict  # LegalParameters.stamp of the parameters used
    errors: int = 0  # problems of severity error, those the cap left out included

    @property
    def accepted(self) -> bool:
        return self.errors == 0 and not any(p.severity == Severity.ERROR for p in self.problems)


class _Collector:
    """Problems up to the cap; past it only counted (a bad 50,000-row form builds 100 messages,
    not 50,000). Errors are counted apart so that a cap filled by warnings cannot hide one."""

    def __init__(self, cap: int):
        self.items: list[Problem] = []
        self.cap = cap
        self.truncated = 0
        self.errors = 0

    def add(self, code: str, **kw) -> None:
        if CATALOGUE[code].severity == Severity.ERROR:
            self.errors += 1
        if len(self.items) >= self.cap:
            self.truncated += 1
        else:
            self.items.append(problem(code, **kw))


@dataclass
class _Context:
    params: LegalParameters
    out: _Collector
    extracted: Extracted = field(default_factory=Extracted)
    created: date | None = None  # NgayLap of the dossier: no one is born after it
    _months: dict[str, ParamsInForce | str] = field(default_factory=dict)

    def month_params(self, month: str) -> ParamsInForce | str:
        """The parameters in force in `month` ("MM/yyyy", valid), or why there are none."""
        found = self._months.get(month)
        if found is None:
            try:
                found = self.params.month(month)
            except LookupError as exc:
                found = str(exc)
            self._months[month] = found
        return found


# ---- entry points ------------------------------------------------------------------------------


def judge(original: bytes, *, params: LegalParameters | None = None, limits: LimitsConfig | None = None) -> Judgement:
    """Judge a received dossier (its exact original bytes) by the business rules.

    Registration procedures (04/DK-IVAN, 05/SD-IVAN, 06/NG-IVAN) are not judged here (see
    interchange.jobs.registration): their judgement is empty. A dossier that cannot be read
    (it never passed the receipt) raises `interchange.errors.Refusal`.
    """
    with _gc_paused():
        return _judge(original, params or default_parameters(), limits or LimitsConfig())


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while judging: a large form allocates millions of short-lived
    acyclic objects, and the collector's full passes over them cost about a third of the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _judge(original: bytes, params: LegalParameters, limits: LimitsConfig) -> Judgement:
    xml_limits = XmlLimits(max_depth=limits.max_depth, max_elements=limits.max_elements)
    ctx = _Context(params=params, out=_Collector(limits.max_errors))
    root = parse_xml(original, xml_limits).getroot()
    # Envelope problems were judged at receipt: they are not this layer's.
    env = read_envelope(root, Problems(cap=limits.max_errors), limits.max_files)
    del root  # the envelope's text holds every file in base64
    if env.procedure in cat.REGISTRATION_PROCEDURES:
        return _judgement(ctx)
    ctx.created = _parse_date(env.created or "")
    judge_envelope(env, ctx)
    for f in env.files:
        if f.is_xml and f.code in FORM_JUDGES:
            form_root = parse_xml(f.content, xml_limits, form=f.code).getroot()
            if form_root.tag == f.code:  # the schema layer refused any other root at receipt
                FORM_JUDGES[f.code](form_root, ctx)
    return _judgement(ctx)


def judge_form(
    code: str,
    form: bytes | etree._Element,
    *,
    params: LegalParameters | None = None,
    created: date | None = None,
    max_errors: int = 100,
) -> Judgement:
    """Judge one form (its bytes or its parsed root) by the rules of its form code."""
    ctx = _Context(params=params or default_parameters(), out=_Collector(max_errors), created=created)
    root = parse_xml(form, XmlLimits(), form=code).getroot() if isinstance(form, bytes) else form
    with _gc_paused():
        FORM_JUDGES[code](root, ctx)
    return _judgement(ctx)


def judge_envelope(env: Envelope, ctx: _Context) -> None:
    """The dossier-level rules: the unit's tax code, the procedure and its forms."""
    if env.mst and not mst_valid(env.mst):
        ctx.out.add("R-MST", form=HOSO, xpath=ENVELOPE_MST_XPATH, value=env.mst)
    judge_procedure(env.procedure, env.files, ctx)


def judge_procedure(procedure: str | None, files: list[FormFile], ctx: _Context) -> None:
    out = ctx.out
    if procedure in cat.REGISTRATION_PROCEDURES:
        return
    wanted = cat.PROCEDURES.get(procedure or "")
    if wanted is None:
        out.add("R-PROCEDURE-UNKNOWN", form=HOSO, xpath=ENVELOPE_PROCEDURE_XPATH, value=procedure or "",
                known=", ".join(sorted(cat.PROCEDURES)))
        return
    present = set()
    for f in files:
        if not f.is_xml:
            if not wanted.attachments:
                out.add("R-PROCEDURE-FORMS", form=HOSO, xpath=f.xpath, line=f.line, value=f.name, procedure=procedure,
                        problem_vi=f"không nhận tệp đính kèm {f.name}", problem_en=f"takes no attachments ({f.name})")
            continue
        present.add(f.code)
        if f.code not in wanted.needs | wanted.may:
            allowed = ", ".join(sorted(wanted.needs | wanted.may))
            out.add("R-PROCEDURE-FORMS", form=HOSO, xpath=f.xpath + "/MaToKhai", line=f.line, value=f.code,
                    procedure=procedure,
                    problem_vi=f"không nhận tờ khai {f.code or '(trống)'} (chỉ nhận {allowed})",
                    problem_en=f"does not take the form {f.code or '(empty)'} (only {allowed})")
    for code in sorted(wanted.needs - present):
        out.add("R-PROCEDURE-FORMS", form=HOSO, xpath=ENVELOPE_FORMS_XPATH, value=None, procedure=procedure,
                problem_vi=f"hồ sơ phải có tờ khai {code}", problem_en=f"the dossier must carry a {code} form")


def _judgement(ctx: _Context) -> Judgement:
    return Judgement(problems=ctx.out.items, truncated=ctx.out.truncated, extracted=ctx.extracted,
                     params=ctx.params.stamp, errors=ctx.out.errors)


# ---- values ------------------------------------------------------------------------------------


def _s(text: str | None) -> str:
    return text.strip() if text else ""


def _line(row: etree._Element, tag: str) -> int | None:
    el = row.find(tag)
    return el.sourceline if el is not None else row.sourceline


@lru_cache(maxsize=8192)
def _parse_date(text: str) -> date | None:
    """dd/MM/yyyy -> date; None when empty or not a real date."""
    if len(text) != 10 or text[2] != "/" or text[5] != "/":
        return None
    dd, mm, yyyy = text[:2], text[3:5], text[6:]
    if not (dd.isdigit() and mm.isdigit() and yyyy.isdigit() and dd.isascii() and mm.isascii() and yyyy.isascii()):
        return None
    try:
        return date(int(yyyy), int(mm), int(dd))
    except ValueError:
        return None


@lru_cache(maxsize=8192)
def _parse_birth(text: str) -> tuple[int, date | None] | str:
    """A birth date dd/MM/yyyy, MM/yyyy or yyyy -> (year, the date when the day is known), or the
    English reason it is not valid."""
    parts = text.split("/")
    if not text or not all(p.isascii() and p.isdigit() for p in parts) or [len(p) for p in parts] not in (
        [2, 2, 4], [2, 4], [4],
    ):
        return "not dd/MM/yyyy, MM/yyyy or yyyy"
    year = int(parts[-1])
    if len(parts) == 3:
        day = _parse_date(text)
        if day is None:
            return "no such day"
        return year, day
    if len(parts) == 2 and not 1 <= int(parts[0]) <= 12:
        return "no such month"
    return year, None


@lru_cache(maxsize=4096)
def _parse_month(text: str) -> tuple[int, int] | None:
    """MM/yyyy -> (year, month), from 01/1995; None otherwise."""
    if len(text) != 7 or text[2] != "/" or not (text[:2].isdigit() and text[3:].isdigit() and text.isascii()):
        return None
    month, year = int(text[:2]), int(text[3:])
    if not 1 <= month <= 12 or (year, month) < cat.FIRST_MONTH:
        return None
    return year, month


def _amount(text: str) -> Decimal | None | str:
    """An amount as declared -> Decimal, None when empty, the text itself when not a number."""
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return text
    return value if value.is_finite() else text


_REASONS = {  # English reason -> Vietnamese
    "not dd/MM/yyyy, MM/yyyy or yyyy": "không đúng dạng dd/MM/yyyy, MM/yyyy hoặc yyyy",
    "no such day": "không có ngày này",
    "no such month": "không có tháng này",
    "before 1900": "trước năm 1900",
    "after the dossier's date": "sau ngày lập hồ sơ",
    "not a real date dd/MM/yyyy": "không phải ngày có thật dạng dd/MM/yyyy",
}


# ---- people ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PersonTags:
    """Where a form keeps a person's identifiers (None: the form has no such field)."""

    pid: str
    si: str
    birth: str | None = None
    gender: str | None = None


_D02_PERSON = _TK1_PERSON_TAGS = _PersonTags("CMND", "MasoBHXH", "NgaySinh", "GioiTinh")
_M01B_PERSON_TAGS = _PersonTags("SoCMND", "SoBHXH")


def _person(
    ctx: _Context, form: str, xp: str, row: etree._Element, tags: _PersonTags,
    name: str, pid: str, si: str, birth: str = "", gender_text: str = "",
) -> PersonRef:
    """The person a row names (values stripped), with the identity rules applied."""
    out = ctx.out
    birth_year = birth_day = male = gender = None
    if tags.birth is not None:
        parsed = _parse_birth(birth)
        if isinstance(parsed, str):
            reason = parsed
        else:
            birth_year, birth_day = parsed
            reason = None
            if birth_year < 1900:
                reason = "before 1900"
            elif ctx.created is not None and (birth_day or date(birth_year, 1, 1)) > ctx.created:
                reason = "after the dossier's date"
        if reason:
            out.add("R-BIRTH-DATE", form=form, xpath=f"{xp}/{tags.birth}", line=_line(row, tags.birth), value=birth,
                    reason_en=reason, reason_vi=_REASONS[reason])
            birth_year = birth_day = None
    if tags.gender is not None:
        if gender_text == "1" or gender_text == "0":
            gender, male = int(gender_text), gender_text == "1"
        else:
            out.add("R-GENDER", form=form, xpath=f"{xp}/{tags.gender}", line=_line(row, tags.gender),
                    value=gender_text)
    if pid:
        wrong = check_personal_id(pid, birth_year=birth_year, male=male)
        if wrong:
            where = {"form": form, "xpath": f"{xp}/{tags.pid}", "line": _line(row, tags.pid), "value": pid}
            if PID_FORMAT in wrong:
                out.add("R-PID-FORMAT", **where)
            if PID_PROVINCE in wrong:
                out.add("R-PID-PROVINCE", **where, province=pid[:3])
            if PID_BIRTH in wrong:
                out.add("R-PID-BIRTH", **where, id_year=pid_birth_year(pid), birth=birth)
            if PID_GENDER in wrong:
                id_male = pid_male(pid)
                out.add("R-PID-GENDER", **where, gender=gender,
                        id_gender_vi="nam" if id_male else "nữ", id_gender_en="man" if id_male else "woman",
                        gender_vi="nam" if male else "nữ", gender_en="male" if male else "female")
    if si and not si_code_valid(si):
        out.add("R-SI-FORMAT", form=form, xpath=f"{xp}/{tags.si}", line=_line(row, tags.si), value=si)
    if not pid and not si:
        out.add("R-PERSON-ID-MISSING", form=form, xpath=xp, line=row.sourceline, value=None,
                name=name or "(?)", pid_field=tags.pid, si_field=tags.si)
    return PersonRef(pid or None, si or None, name, birth_day, gender)


class _SttCheck:
    """STT unique within one list."""

    def __init__(self, ctx: _Context, form: str):
        self.ctx, self.form, self.seen = ctx, form, {}

    def __call__(self, xp: str, row: etree._Element, text: str) -> int:
        first = self.seen.get(text)
        if first is None:
            self.seen[text] = xp
        else:
            self.ctx.out.add("R-STT-DUP", form=self.form, xpath=f"{xp}/STT", line=_line(row, "STT"), value=text,
                             first_xpath=first)
        return int(text) if text.isascii() and text.isdigit() else 0


def _rows(root: etree._Element, list_path: str):
    """(xpath, row) of each LaoDong under `list_path`, the XPath positional as in SPEC §4."""
    parent = root.find(list_path)
    if parent is None:
        return
    base = f"/{root.tag}/{list_path}/LaoDong"
    for i, row in enumerate(parent.iterchildren("LaoDong"), 1):
        yield f"{base}[{i}]", row


def _children(row: etree._Element) -> dict:
    """A row's children's texts by tag (small forms; the D02-TS hot path reads by position)."""
    return {c.tag: c.text for c in row}


# ---- D02-TS ------------------------------------------------------------------------------------

D02_DATES = ("NgayChet", "Vtvl_nql_tungay", "Vtvl_nql_denngay", "Vtvl_cmktbc_tungay", "Vtvl_cmktbc_denngay",
             "Vtvl_cmktbt_tungay", "Vtvl_cmktbt_denngay", "Vtvl_khac_tungay", "Vtvl_khac_denngay", "Nndh_tungay",
             "Nndh_denngay", "Hdld_tungay", "Hdld_xdth_tungay", "Hdld_xdth_denngay", "Hdld_khac_tungay",
             "Hdld_khac_denngay")  # fmt: skip
D02_DATE_PAIRS = (("Vtvl_nql_tungay", "Vtvl_nql_denngay"), ("Vtvl_cmktbc_tungay", "Vtvl_cmktbc_denngay"),
                  ("Vtvl_cmktbt_tungay", "Vtvl_cmktbt_denngay"), ("Vtvl_khac_tungay", "Vtvl_khac_denngay"),
                  ("Nndh_tungay", "Nndh_denngay"), ("Hdld_xdth_tungay", "Hdld_xdth_denngay"),
                  ("Hdld_khac_tungay", "Hdld_khac_denngay"))  # fmt: skip
D02_ALLOWANCES = ("PhuCapCV", "PhuCapTNVK", "PhuCapTNNghe", "PhuCapLuong", "PhuCapBosung")
_COEF_LOW, _COEF_HIGH = (Decimal(x) for x in cat.COEFFICIENT_RANGE)
_DIRECTION_EN = {INCREASE: "an increase", DECREASE: "a decrease", ADJUSTMENT: "an adjustment"}


@dataclass(frozen=True, slots=True)
class _Change:
    """What R-PERSON-CONFLICT compares."""

    direction: str
    start: tuple[int, int]
    end: tuple[int, int] | None
    stt: str
    xp: str
    line: int | None
    pa: str
    position: int  # the row's number in the form


@dataclass(frozen=True, slots=True)
class _Rate:
    """A declared TyleDong in one month, looked up once."""

    known: bool
    regional: bool  # one of its funds is capped by the regional minimum (unemployment insurance)


_I = {name: i for i, name in enumerate(D02_FIELDS)}
_D02_DATE_IDX = tuple((_I[tag], tag) for tag in D02_DATES)
_D02_PAIR_IDX = tuple((_I[a], a, _I[b], b) for a, b in D02_DATE_PAIRS)
_D02_ALLOWANCE_IDX = tuple((_I[tag], tag) for tag in D02_ALLOWANCES)


def _d02_texts(row: etree._Element) -> list[str]:
    """The row's texts, stripped ("" when empty), in D02_FIELDS order. A row with exactly that many
    children is read by position: the schema layer, which ran at receipt, enforces the order, and
    reading texts alone costs about half of reading tags too. Other rows are read by tag."""
    texts = [(c.text or "").strip() for c in row]
    if len(texts) == len(D02_FIELDS):
        return texts
    by_tag = {c.tag: c.text for c in row}
    return [_s(by_tag.get(name)) for name in D02_FIELDS]


def judge_d02(root: etree._Element, ctx: _Context) -> None:
    # Hot path: one pass, positional reads, nothing built for rows that break no rule.
    out = ctx.out
    stt_seen: dict[str, str] = {}  # STT -> the row that has it first
    first: dict[str, _Change] = {}  # a person's first change in this form, by identifier
    more: dict[str, list[_Change]] = {}  # the person's other changes
    si_to_pid: dict[str, str] = {}
    rates: dict[tuple[str, str], _Rate] = {}
    append_change = ctx.extracted.contribution_changes.append
    i_stt, i_name, i_si, i_pid, i_birth, i_gender = (
        _I["STT"], _I["HoTen"], _I["MasoBHXH"], _I["CMND"], _I["NgaySinh"], _I["GioiTinh"])
    i_pa, i_loai, i_tu, i_den, i_salary, i_rate, i_region = (
        _I["PA"], _I["Loai"], _I["TuThang"], _I["DenThang"], _I["TienLuong"], _I["TyleDong"], _I["MavungLTT"])
    i_position, i_workplace, i_note = _I["ChucVu"], _I["NoiLamViec"], _I["Ghichu"]
    for i, (xp, row) in enumerate(_rows(root, "NoiDung"), 1):
        t = _d02_texts(row)
        stt_text = t[i_stt]
        seen_at = stt_seen.get(stt_text)
        if seen_at is None:
            stt_seen[stt_text] = xp
        else:
            out.add("R-STT-DUP", form=D02, xpath=f"{xp}/STT", line=_line(row, "STT"), value=stt_text,
                    first_xpath=seen_at)
        stt_n = int(stt_text) if stt_text.isascii() and stt_text.isdigit() else 0
        person = _person(ctx, D02, xp, row, _D02_PERSON, t[i_name], t[i_pid], t[i_si], t[i_birth], t[i_gender])
        # PA and Loai
        pa = t[i_pa]
        direction = PA_DIRECTIONS.get(pa)
        if direction is None:
            out.add("R-D02-PA", form=D02, xpath=f"{xp}/PA", line=_line(row, "PA"), value=pa)
        else:
            loai = t[i_loai]
            expected = cat.LOAI_BY_DIRECTION[direction]
            if loai and loai != expected:
                out.add("R-D02-PA-LOAI", form=D02, xpath=f"{xp}/Loai", line=_line(row, "Loai"), value=loai, pa=pa,
                        expected=expected, direction_vi=cat.DIRECTION_VI[direction],
                        direction_en=_DIRECTION_EN[direction])
        # months
        tu_text, den_text = t[i_tu], t[i_den]
        tu = _parse_month(tu_text)
        if tu is None:
            out.add("R-D02-MONTH", form=D02, xpath=f"{xp}/TuThang", line=_line(row, "TuThang"), value=tu_text,
                    field="TuThang")
        den = None
        if den_text:
            den = _parse_month(den_text)
            if den is None:
                out.add("R-D02-MONTH", form=D02, xpath=f"{xp}/DenThang", line=_line(row, "DenThang"), value=den_text,
                        field="DenThang")
            elif tu is not None and den < tu:
                out.add("R-D02-MONTH-ORDER", form=D02, xpath=f"{xp}/DenThang", line=_line(row, "DenThang"),
                        value=den_text, from_month=tu_text)
        # dates of the row (most are empty)
        dated = 0
        for k, tag in _D02_DATE_IDX:
            text = t[k]
            if text:
                dated += 1
                if _parse_date(text) is None:
                    out.add("R-D02-DATE", form=D02, xpath=f"{xp}/{tag}", line=_line(row, tag), value=text, field=tag,
                            reason_en="not a real date dd/MM/yyyy", reason_vi=_REASONS["not a real date dd/MM/yyyy"])
        if dated > 1:
            for ka, start_tag, kb, end_tag in _D02_PAIR_IDX:
                if t[ka] and t[kb]:
                    start, end = _parse_date(t[ka]), _parse_date(t[kb])
                    if start is not None and end is not None and end < start:
                        out.add("R-D02-DATE", form=D02, xpath=f"{xp}/{end_tag}", line=_line(row, end_tag),
                                value=t[kb], field=end_tag, reason_en=f"before {start_tag} {t[ka]}",
                                reason_vi=f"trước {start_tag} {t[ka]}")
        # salary, rate, region
        salary_text = t[i_salary]
        salary = _amount(salary_text)
        allowances = {}
        for k, tag in _D02_ALLOWANCE_IDX:
            if t[k]:
                value = _amount(t[k])
                if isinstance(value, Decimal):
                    allowances[tag] = value
        rate_text = t[i_rate]
        region = t[i_region]
        change = None
        if direction is not None and tu is not None:
            rate = _amount(rate_text)
            change = ContributionChange(
                xpath=xp, stt=stt_n, person=person, pa=pa, direction=direction,
                from_month=f"{tu[0]:04d}-{tu[1]:02d}", to_month=f"{den[0]:04d}-{den[1]:02d}" if den else None,
                position=t[i_position] or None, workplace=t[i_workplace] or None,
                salary=salary if isinstance(salary, Decimal) else None, allowances=allowances,
                rate=rate if isinstance(rate, Decimal) else None, region=region or None, note=t[i_note] or None,
            )  # fmt: skip
            append_change(change)
            # the person's changes in this form, for R-PERSON-CONFLICT
            pid, si = person.personal_id, person.si_code
            if pid and si:
                si_to_pid.setdefault(si, pid)
            key = pid or si
            if key:
                c = _Change(direction, tu, den, stt_text, xp, row.sourceline, pa, i)
                if key in first:
                    more.setdefault(key, []).append(c)
                else:
                    first[key] = c
        if tu is None:
            continue
        p = ctx.month_params(tu_text)
        if isinstance(p, str):
            out.add("R-D02-PARAMS", form=D02, xpath=f"{xp}/TuThang", line=_line(row, "TuThang"), value=tu_text,
                    reason=p)
            continue
        region_why = None  # why this row needs a region
        # TyleDong: a scheme in force; increases must declare it
        if rate_text or direction == INCREASE:
            found = rates.get((tu_text, rate_text))
            if found is None:
                funds = p.scheme(rate_text)
                found = rates[tu_text, rate_text] = _Rate(
                    funds is not None, funds is not None and any(p.funds[f].cap == CAP_REGIONAL for f in funds))
            if not found.known:
                out.add("R-D02-RATE", form=D02, xpath=f"{xp}/TyleDong", line=_line(row, "TyleDong"), value=rate_text,
                        month=tu_text, known=", ".join(sorted(p.schemes, key=Decimal)))
            elif found.regional:
                region_why = ("đóng BHTN", "unemployment insurance is paid")
        # TienLuong: required on increases and adjustments; a coefficient, or VND
        if not isinstance(salary, Decimal):
            if direction in (INCREASE, ADJUSTMENT) or salary is not None:  # missing, or not a number
                d = direction or DECREASE
                out.add("R-D02-SALARY-MISSING", form=D02, xpath=f"{xp}/TienLuong", line=_line(row, "TienLuong"),
                        value=salary_text, pa=pa, direction_vi=cat.DIRECTION_VI[d], direction_en=_DIRECTION_EN[d])
        elif salary <= COEFFICIENT_LIMIT:
            if not _COEF_LOW <= salary <= _COEF_HIGH:
                out.add("R-D02-COEFFICIENT", form=D02, xpath=f"{xp}/TienLuong", line=_line(row, "TienLuong"),
                        value=salary_text, low=cat.COEFFICIENT_RANGE[0], high=cat.COEFFICIENT_RANGE[1])
            basis = (change or _bare_change(xp, pa, salary, allowances)).basis(p)
            _judge_cap(ctx, xp, row, salary_text, basis, p, tu_text)
        else:
            region_why = region_why or ("khai lương bằng tiền", "the salary is declared in VND")
            # as ContributionChange.basis for VND salaries: the salary and every allowance
            basis = int(salary + sum(allowances.values())) if allowances else int(salary)
            if region in REGIONS and basis < p.regional_minimum[region]:
                out.add("R-D02-SALARY-MIN", form=D02, xpath=f"{xp}/TienLuong", line=_line(row, "TienLuong"),
                        value=salary_text, basis=_vnd(basis), region=region, month=tu_text,
                        minimum=_vnd(p.regional_minimum[region]))
            if basis > p.cap:
                _judge_cap(ctx, xp, row, salary_text, basis, p, tu_text)
        if region_why and region not in REGIONS:
            out.add("R-D02-REGION", form=D02, xpath=f"{xp}/MavungLTT", line=_line(row, "MavungLTT"), value=region,
                    why_vi=region_why[0], why_en=region_why[1])
    _judge_conflicts(ctx, first, more, si_to_pid)


def _bare_change(xp: str, pa: str, salary: Decimal, allowances: dict[str, Decimal]) -> ContributionChange:
    """A row whose PA is unknown, for its salary basis only."""
    return ContributionChange(xpath=xp, stt=0, person=PersonRef(None, None, ""), pa=pa, direction="",
                              from_month="", to_month=None, position=None, workplace=None, salary=salary,
                              allowances=allowances)


def _judge_cap(ctx: _Context, xp: str, row: etree._Element, text: str, basis: int, p: ParamsInForce, month: str) -> None:
    if basis > p.cap:
        ctx.out.add("R-D02-CAP", form=D02, xpath=f"{xp}/TienLuong", line=_line(row, "TienLuong"), value=text,
                    basis=_vnd(basis), cap=_vnd(p.cap), multiple=p.base_multiple, base=_vnd(p.base_salary),
                    month=month)


def _vnd(amount: int) -> str:
    return f"{amount:,}".replace(",", ".")  # Vietnamese thousands separator


_CONFLICT_TEXT = {
    INCREASE: ("tăng ({pa}) từ {m}", "an increase ({pa}) from {m}"),
    DECREASE: ("giảm ({pa}) từ {m}", "a decrease ({pa}) from {m}"),
    ADJUSTMENT: ("điều chỉnh ({pa}) từ {m}", "an adjustment ({pa}) from {m}"),
}


def _conflicting(a: _Change, b: _Change) -> bool:
    """Do two changes of one person in one D02-TS contradict each other?"""
    if a.direction == b.direction == INCREASE:  # joining twice over the same months
        far = (10_000, 1)
        return a.start <= (b.end or far) and b.start <= (a.end or far)
    if a.start != b.start:
        return False
    # from the same month: joining and leaving, leaving twice, or two different adjustments
    return {a.direction, b.direction} == {INCREASE, DECREASE} or a.direction == b.direction


def _judge_conflicts(
    ctx: _Context, first: dict[str, _Change], more: dict[str, list[_Change]], si_to_pid: dict[str, str]
) -> None:
    groups = {key: [first[key], *items] for key, items in more.items()}  # people with several changes

    def changes_of(key: str) -> list[_Change]:
        return groups.pop(key, None) or [first[key]]

    # One person may be named by SI code on one row and by personal ID on another: rows that
    # carry both tie the two together.
    for si, pid in si_to_pid.items():
        if si in first and pid in first and si != pid:
            groups[pid] = changes_of(pid) + changes_of(si)
    for key, items in groups.items():
        items.sort(key=lambda c: c.position)  # document order
        for j, later in enumerate(items):
            other = next((c for c in items[:j] if _conflicting(c, later)), None)
            if other is None:
                continue
            this_vi, this_en = (t.format(pa=later.pa, m=_month_text(later.start)) for t in _CONFLICT_TEXT[later.direction])
            other_vi, other_en = (t.format(pa=other.pa, m=_month_text(other.start)) for t in _CONFLICT_TEXT[other.direction])
            ctx.out.add("R-PERSON-CONFLICT", form=D02, xpath=later.xp, line=later.line, value=key,
                        this_vi=this_vi, this_en=this_en, other_vi=other_vi, other_en=other_en, other_stt=other.stt)


def _month_text(month: tuple[int, int]) -> str:
    return f"{month[1]:02d}/{month[0]}"


# ---- TK1-TS ------------------------------------------------------------------------------------

TK1_PROVINCES = ("Matinh_KS", "Matinh_NN", "MaTinhBenhVien")
_TK1_PERSON = frozenset(("STT", "HoTen", "NgaySinh", "GioiTinh", "QuocTich", "MasoBHXH", "CMND", "Noidung_Thaydoi"))


def judge_tk1(root: etree._Element, ctx: _Context) -> None:
    out = ctx.out
    stt = _SttCheck(ctx, TK1)
    for xp, row in _rows(root, "NoiDung"):
        v = _children(row)
        stt_n = stt(xp, row, _s(v.get("STT")))
        person = _person(ctx, TK1, xp, row, _TK1_PERSON_TAGS, _s(v.get("HoTen")), _s(v.get("CMND")),
                         _s(v.get("MasoBHXH")), _s(v.get("NgaySinh")), _s(v.get("GioiTinh")))
        nationality = _s(v.get("QuocTich"))
        if nationality and nationality not in cat.ISO_COUNTRIES:
            out.add("R-TK1-NATIONALITY", form=TK1, xpath=f"{xp}/QuocTich", line=_line(row, "QuocTich"),
                    value=nationality)
        ethnic = _s(v.get("DanToc"))
        if ethnic and ethnic not in cat.ETHNIC_CODES:
            out.add("R-TK1-ETHNIC", form=TK1, xpath=f"{xp}/DanToc", line=_line(row, "DanToc"), value=ethnic,
                    reason_vi="phải là 01-55 hoặc 99", reason_en="it must be 01-55 or 99")
        elif not ethnic and nationality == "VN":
            out.add("R-TK1-ETHNIC", form=TK1, xpath=f"{xp}/DanToc", line=_line(row, "DanToc"), value=ethnic,
                    reason_vi="người quốc tịch Việt Nam phải khai dân tộc",
                    reason_en="a Vietnamese national must declare it")
        for tag in TK1_PROVINCES:
            code = _s(v.get(tag))
            if code and code not in PROVINCE_CODES_2:
                out.add("R-TK1-PROVINCE", form=TK1, xpath=f"{xp}/{tag}", line=_line(row, tag), value=code, field=tag)
        data = {k: t for k, text in v.items() if isinstance(k, str) and k not in _TK1_PERSON and (t := _s(text))}
        ctx.extracted.personal_data.append(PersonalDataChange(
            xpath=xp, stt=stt_n,
            person=PersonRef(person.personal_id, person.si_code, person.name, person.birth_date, person.gender,
                             nationality or None),
            data=data, change=_s(v.get("Noidung_Thaydoi")) or None,
        ))  # fmt: skip


# ---- D01-TS ------------------------------------------------------------------------------------


def judge_d01(root: etree._Element, ctx: _Context) -> None:
    out = ctx.out
    stt = _SttCheck(ctx, D01)
    parent = root.find("NoiDung/BangKe")
    if parent is None:
        return
    for i, row in enumerate(parent.iterchildren("ThongTin"), 1):
        xp = f"/{root.tag}/NoiDung/BangKe/ThongTin[{i}]"
        v = _children(row)
        stt(xp, row, _s(v.get("STT")))
        si = _s(v.get("MasoBHXH"))
        if si and not si_code_valid(si):
            out.add("R-SI-FORMAT", form=D01, xpath=f"{xp}/MasoBHXH", line=_line(row, "MasoBHXH"), value=si)
        issued_text, effective_text = _s(v.get("NgayBanHanh")), _s(v.get("NgayHieuLuc"))
        issued, effective = _parse_date(issued_text), _parse_date(effective_text)
        for tag, text, day in (("NgayBanHanh", issued_text, issued), ("NgayHieuLuc", effective_text, effective)):
            if text and day is None:
                out.add("R-D01-DATE", form=D01, xpath=f"{xp}/{tag}", line=_line(row, tag), value=text, field=tag,
                        reason_vi=_REASONS["not a real date dd/MM/yyyy"], reason_en="not a real date dd/MM/yyyy")
        if issued and effective and effective < issued:
            out.add("R-D01-DATE", form=D01, xpath=f"{xp}/NgayHieuLuc", line=_line(row, "NgayHieuLuc"),
                    value=effective_text, field="NgayHieuLuc", reason_vi=f"trước ngày ban hành {issued_text}",
                    reason_en=f"before the issue date {issued_text}")


# ---- M01B-HSB ----------------------------------------------------------------------------------

_M01B_PERSON = frozenset(("STT", "MaNhomHuong", "SoBHXH", "SoCMND", "HoTen", "TuNgay", "DenNgay", "TongSoNgay"))


def judge_m01b(root: etree._Element, ctx: _Context) -> None:
    out = ctx.out
    dot_el = root.find("ThongTinKhac/DotXetDuyet")
    dot = _s(dot_el.text) if dot_el is not None else ""
    if dot and not _compact_date_ok(dot):
        out.add("R-M01B-DOT", form=M01B, xpath=f"/{root.tag}/ThongTinKhac/DotXetDuyet", line=dot_el.sourceline,
                value=dot)
    for kind in cat.BENEFIT_KINDS:
        for regime, groups in cat.BENEFIT_GROUPS.items():
            stt = _SttCheck(ctx, M01B)  # rows are numbered within each list
            for xp, row in _rows(root, f"NoiDung/{kind}/{regime}"):
                v = _children(row)
                stt_n = stt(xp, row, _s(v.get("STT")))
                person = _person(ctx, M01B, xp, row, _M01B_PERSON_TAGS, _s(v.get("HoTen")), _s(v.get("SoCMND")),
                                 _s(v.get("SoBHXH")))
                group = _s(v.get("MaNhomHuong"))
                if group not in groups:
                    out.add("R-M01B-GROUP", form=M01B, xpath=f"{xp}/MaNhomHuong", line=_line(row, "MaNhomHuong"),
                            value=group, regime=regime, known=", ".join(sorted(groups)))
                start, end, days = _claim_period(ctx, xp, row, v)
                data = {k: t for k, text in v.items() if isinstance(k, str) and k not in _M01B_PERSON and (t := _s(text))}
                ctx.extracted.benefit_claims.append(BenefitClaim(
                    xpath=xp, stt=stt_n, person=person, regime=regime, kind=kind, group=group or None,
                    from_date=start, to_date=end, days=days, data=data,
                ))  # fmt: skip


def _compact_date_ok(text: str) -> bool:
    return len(text) == 8 and _parse_date(f"{text[6:]}/{text[4:6]}/{text[:4]}") is not None


def _claim_period(ctx: _Context, xp: str, row: etree._Element, v: dict) -> tuple[date | None, date | None, int | None]:
    out = ctx.out
    dates: dict[str, date | None] = {}
    for tag in ("TuNgay", "DenNgay", "TuNgayDuyetTruoc"):
        text = _s(v.get(tag))
        dates[tag] = _parse_date(text) if text else None
        if text and dates[tag] is None:
            out.add("R-M01B-DATE", form=M01B, xpath=f"{xp}/{tag}", line=_line(row, tag), value=text, field=tag,
                    reason_vi=_REASONS["not a real date dd/MM/yyyy"], reason_en="not a real date dd/MM/yyyy")
    start_text, end_text = _s(v.get("TuNgay")), _s(v.get("DenNgay"))
    start, end = dates["TuNgay"], dates["DenNgay"]
    if bool(start_text) != bool(end_text):
        missing = "DenNgay" if start_text else "TuNgay"
        out.add("R-M01B-DATE", form=M01B, xpath=f"{xp}/{missing}", line=_line(row, missing), value="", field=missing,
                reason_vi=f"phải khai cùng {'TuNgay' if missing == 'DenNgay' else 'DenNgay'}",
                reason_en=f"it must be given with {'TuNgay' if missing == 'DenNgay' else 'DenNgay'}")
    span = None
    if start and end:
        if end < start:
            out.add("R-M01B-DATE-ORDER", form=M01B, xpath=f"{xp}/DenNgay", line=_line(row, "DenNgay"),
                    value=end_text, from_date=start_text)
        else:
            span = (end - start).days + 1
    days_text = _s(v.get("TongSoNgay"))
    days = None
    reason = None
    if days_text:
        amount = _amount(days_text)
        if not isinstance(amount, Decimal) or amount != amount.to_integral_value() or amount < 1:
            reason = ("phải là số nguyên dương", "it must be a positive whole number")
        else:
            days = int(amount)
            if span is not None and days > span:
                reason = (f"nhiều hơn {span} ngày từ {start_text} đến {end_text}",
                          f"more than the {span} days from {start_text} to {end_text}")
    elif start and end:
        reason = ("phải khai khi có TuNgay và DenNgay", "it must be given with TuNgay and DenNgay")
    if reason:
        out.add("R-M01B-DAYS", form=M01B, xpath=f"{xp}/TongSoNgay", line=_line(row, "TongSoNgay"), value=days_text,
                reason_vi=reason[0], reason_en=reason[1])
    return start, end, days


FORM_JUDGES = {D02: judge_d02, TK1: judge_tk1, D01: judge_d01, M01B: judge_m01b}

"""The rules of D02-TS (the unit's list of contribution changes: joiners, leavers, adjustments),
and its records: one `ContributionChange` per row with a known PA and a valid TuThang.

Speed: a D02-TS of 50,000 rows is judged in one pass over its rows. A row's texts are read by
position (no XPath per row, no `getpath`: XPaths are built from the row's position), dates and
months are parsed through small caches, and the legal parameters and each declared TyleDong are
looked up once per declared month. Nothing is built for rows that break no rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from lxml import etree

from interchange.forms.fields import D02_FIELDS
from interchange.legal.params import CAP_REGIONAL, REGIONS, ParamsInForce
from interchange.months import Month
from interchange.records.model import (
    ADJUSTMENT,
    COEFFICIENT_LIMIT,
    DECREASE,
    INCREASE,
    PA_DIRECTIONS,
    ContributionChange,
    PersonRef,
)
from interchange.rules import catalogue as cat
from interchange.rules.catalogue import D02
from interchange.rules.context import Context
from interchange.rules.parsing import (
    NOT_A_DATE,
    REASONS,
    amount,
    line_of,
    parse_date,
    parse_month,
    rows,
    strip,
)
from interchange.rules.people import PersonTags, check_person, stt_number

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
_PERSON_TAGS = PersonTags("CMND", "MasoBHXH", "NgaySinh", "GioiTinh")

_I = {name: i for i, name in enumerate(D02_FIELDS)}
_DATE_IDX = tuple((_I[tag], tag) for tag in D02_DATES)
_PAIR_IDX = tuple((_I[a], a, _I[b], b) for a, b in D02_DATE_PAIRS)
_ALLOWANCE_IDX = tuple((_I[tag], tag) for tag in D02_ALLOWANCES)
_STT, _NAME, _SI, _PID, _BIRTH, _GENDER = (_I["STT"], _I["HoTen"], _I["MasoBHXH"], _I["CMND"], _I["NgaySinh"],
                                           _I["GioiTinh"])  # fmt: skip
_PA, _LOAI, _TU, _DEN, _SALARY, _RATE, _REGION = (_I["PA"], _I["Loai"], _I["TuThang"], _I["DenThang"],
                                                  _I["TienLuong"], _I["TyleDong"], _I["MavungLTT"])  # fmt: skip
_POSITION, _WORKPLACE, _NOTE, _LEVEL = _I["ChucVu"], _I["NoiLamViec"], _I["Ghichu"], _I["MucHuong"]
_LEVELS = frozenset("12345")  # MucHuong codes kept with the record (interchange.records.card); others: not declared


@dataclass(frozen=True, slots=True)
class _Change:
    """What R-PERSON-CONFLICT compares."""

    direction: str
    start: Month
    end: Month | None
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


def judge_d02(root: etree._Element, ctx: Context) -> None:
    judge_d02_rows(rows(root, "NoiDung"), ctx)


def judge_d02_rows(form_rows: Iterable[tuple[str, etree._Element]], ctx: Context) -> None:
    """The rules on the form's (xpath, LaoDong) rows, in order: from a tree or streamed."""
    # Hot path: one pass, positional reads, nothing built for rows that break no rule.
    stt_seen: dict[str, str] = {}  # STT -> the row that has it first
    rates: dict[tuple[str, str], _Rate] = {}
    conflicts = _Conflicts()
    for i, (xp, row) in enumerate(form_rows, 1):
        _judge_row(ctx, i, xp, row, _d02_texts(row), stt_seen, rates, conflicts)
    conflicts.judge(ctx)


def _d02_texts(row: etree._Element) -> list[str]:
    """The row's texts, stripped ("" when empty), in D02_FIELDS order. A row with exactly that many
    children is read by position: the schema layer, which ran at receipt, enforces the order, and
    reading texts alone costs about half of reading tags too. Other rows are read by tag."""
    texts = [(c.text or "").strip() for c in row]
    if len(texts) == len(D02_FIELDS):
        return texts
    by_tag = {c.tag: c.text for c in row}
    return [strip(by_tag.get(name)) for name in D02_FIELDS]


def _judge_row(
    ctx: Context, i: int, xp: str, row: etree._Element, t: list[str],
    stt_seen: dict[str, str], rates: dict[tuple[str, str], _Rate], conflicts: _Conflicts,
) -> None:
    """One LaoDong row: its rules in document order, and its record."""
    out = ctx.out
    stt_text = t[_STT]
    seen_at = stt_seen.get(stt_text)
    if seen_at is None:
        stt_seen[stt_text] = xp
    else:
        out.add("R-STT-DUP", form=D02, xpath=f"{xp}/STT", line=line_of(row, "STT"), value=stt_text,
                first_xpath=seen_at)
    person = check_person(ctx, D02, xp, row, _PERSON_TAGS, t[_NAME], t[_PID], t[_SI], t[_BIRTH], t[_GENDER])
    pa = t[_PA]
    direction = _judge_pa(ctx, xp, row, pa, t[_LOAI])
    tu, den = _judge_months(ctx, xp, row, t[_TU], t[_DEN])
    _judge_dates(ctx, xp, row, t)
    salary = amount(t[_SALARY])
    allowances = {}
    for k, tag in _ALLOWANCE_IDX:
        if t[k]:
            value = amount(t[k])
            if isinstance(value, Decimal):
                allowances[tag] = value
    change = None
    if direction is not None and tu is not None:
        rate = amount(t[_RATE])
        same = ctx.shared
        change = ContributionChange(
            xpath=xp, stt=stt_number(stt_text), person=person, pa=same(pa), direction=direction,
            from_month=tu, to_month=den, position=same(t[_POSITION] or None), workplace=same(t[_WORKPLACE] or None),
            salary=same(salary) if isinstance(salary, Decimal) else None, allowances=allowances,
            rate=same(rate) if isinstance(rate, Decimal) else None, region=same(t[_REGION] or None),
            note=same(t[_NOTE] or None), benefit_level=t[_LEVEL] if t[_LEVEL] in _LEVELS else None,
        )  # fmt: skip
        ctx.extracted.contribution_changes.append(change)
        conflicts.note(person, _Change(direction, tu, den, stt_text, xp, row.sourceline, pa, i))
    if tu is not None:
        _judge_money(ctx, xp, row, t, tu, direction, salary, allowances, change, rates)


def _judge_pa(ctx: Context, xp: str, row: etree._Element, pa: str, loai: str) -> str | None:
    """The direction of the row's PA (None when unknown: R-D02-PA), and R-D02-PA-LOAI."""
    direction = PA_DIRECTIONS.get(pa)
    if direction is None:
        ctx.out.add("R-D02-PA", form=D02, xpath=f"{xp}/PA", line=line_of(row, "PA"), value=pa)
    else:
        expected = cat.LOAI_BY_DIRECTION[direction]
        if loai and loai != expected:
            ctx.out.add("R-D02-PA-LOAI", form=D02, xpath=f"{xp}/Loai", line=line_of(row, "Loai"), value=loai, pa=pa,
                        expected=expected, direction_vi=cat.DIRECTION_VI[direction],
                        direction_en=_DIRECTION_EN[direction])
    return direction


def _judge_months(
    ctx: Context, xp: str, row: etree._Element, tu_text: str, den_text: str
) -> tuple[Month | None, Month | None]:
    """TuThang and DenThang (None when missing or not valid)."""
    out = ctx.out
    tu = parse_month(tu_text)
    if tu is None:
        out.add("R-D02-MONTH", form=D02, xpath=f"{xp}/TuThang", line=line_of(row, "TuThang"), value=tu_text,
                field="TuThang")
    den = None
    if den_text:
        den = parse_month(den_text)
        if den is None:
            out.add("R-D02-MONTH", form=D02, xpath=f"{xp}/DenThang", line=line_of(row, "DenThang"), value=den_text,
                    field="DenThang")
        elif tu is not None and den < tu:
            out.add("R-D02-MONTH-ORDER", form=D02, xpath=f"{xp}/DenThang", line=line_of(row, "DenThang"),
                    value=den_text, from_month=tu_text)
    return tu, den


def _judge_dates(ctx: Context, xp: str, row: etree._Element, t: list[str]) -> None:
    """The row's dates (most are empty): each a real date, each pair in order."""
    out = ctx.out
    dated = 0
    for k, tag in _DATE_IDX:
        text = t[k]
        if text:
            dated += 1
            if parse_date(text) is None:
                out.add("R-D02-DATE", form=D02, xpath=f"{xp}/{tag}", line=line_of(row, tag), value=text, field=tag,
                        reason_en=NOT_A_DATE, reason_vi=REASONS[NOT_A_DATE])
    if dated > 1:
        for ka, start_tag, kb, end_tag in _PAIR_IDX:
            if t[ka] and t[kb]:
                start, end = parse_date(t[ka]), parse_date(t[kb])
                if start is not None and end is not None and end < start:
                    out.add("R-D02-DATE", form=D02, xpath=f"{xp}/{end_tag}", line=line_of(row, end_tag),
                            value=t[kb], field=end_tag, reason_en=f"before {start_tag} {t[ka]}",
                            reason_vi=f"trước {start_tag} {t[ka]}")


def _judge_money(
    ctx: Context, xp: str, row: etree._Element, t: list[str], tu: Month, direction: str | None,
    salary: Decimal | None | str, allowances: dict[str, Decimal], change: ContributionChange | None,
    rates: dict[tuple[str, str], _Rate],
) -> None:
    """TyleDong, TienLuong and MavungLTT, by the legal parameters of TuThang."""
    out = ctx.out
    tu_text, rate_text, salary_text, region = t[_TU], t[_RATE], t[_SALARY], t[_REGION]
    p = ctx.month_params(tu)
    if isinstance(p, str):
        out.add("R-D02-PARAMS", form=D02, xpath=f"{xp}/TuThang", line=line_of(row, "TuThang"), value=tu_text,
                reason=p)
        return
    region_why = None  # why this row needs a region
    # TyleDong: a scheme in force; increases must declare it
    if rate_text or direction == INCREASE:
        found = rates.get((tu_text, rate_text))
        if found is None:
            funds = p.scheme(rate_text)
            found = rates[tu_text, rate_text] = _Rate(
                funds is not None, funds is not None and any(p.funds[f].cap == CAP_REGIONAL for f in funds))
        if not found.known:
            out.add("R-D02-RATE", form=D02, xpath=f"{xp}/TyleDong", line=line_of(row, "TyleDong"), value=rate_text,
                    month=tu_text, known=", ".join(sorted(p.schemes, key=Decimal)))
        elif found.regional:
            region_why = ("đóng BHTN", "unemployment insurance is paid")
    # TienLuong: required on increases and adjustments; a coefficient, or VND
    if not isinstance(salary, Decimal):
        if direction in (INCREASE, ADJUSTMENT) or salary is not None:  # missing, or not a number
            d = direction or DECREASE
            out.add("R-D02-SALARY-MISSING", form=D02, xpath=f"{xp}/TienLuong", line=line_of(row, "TienLuong"),
                    value=salary_text, pa=t[_PA], direction_vi=cat.DIRECTION_VI[d], direction_en=_DIRECTION_EN[d])
    elif salary <= COEFFICIENT_LIMIT:
        if not _COEF_LOW <= salary <= _COEF_HIGH:
            out.add("R-D02-COEFFICIENT", form=D02, xpath=f"{xp}/TienLuong", line=line_of(row, "TienLuong"),
                    value=salary_text, low=cat.COEFFICIENT_RANGE[0], high=cat.COEFFICIENT_RANGE[1])
        basis = (change or _bare_change(xp, t[_PA], tu, salary, allowances)).basis(p)
        _judge_cap(ctx, xp, row, salary_text, basis, p, tu_text)
    else:
        region_why = region_why or ("khai lương bằng tiền", "the salary is declared in VND")
        # as ContributionChange.basis for VND salaries: the salary and every allowance
        basis = int(salary + sum(allowances.values())) if allowances else int(salary)
        if region in REGIONS and basis < p.regional_minimum[region]:
            out.add("R-D02-SALARY-MIN", form=D02, xpath=f"{xp}/TienLuong", line=line_of(row, "TienLuong"),
                    value=salary_text, basis=_vnd(basis), region=region, month=tu_text,
                    minimum=_vnd(p.regional_minimum[region]))
        if basis > p.cap:
            _judge_cap(ctx, xp, row, salary_text, basis, p, tu_text)
    if region_why and region not in REGIONS:
        out.add("R-D02-REGION", form=D02, xpath=f"{xp}/MavungLTT", line=line_of(row, "MavungLTT"), value=region,
                why_vi=region_why[0], why_en=region_why[1])


def _bare_change(xp: str, pa: str, tu: Month, salary: Decimal, allowances: dict[str, Decimal]) -> ContributionChange:
    """A row whose PA is unknown, for its salary basis only."""
    return ContributionChange(xpath=xp, stt=0, person=PersonRef(None, None, ""), pa=pa, direction="",
                              from_month=tu, to_month=None, position=None, workplace=None, salary=salary,
                              allowances=allowances)


def _judge_cap(ctx: Context, xp: str, row: etree._Element, text: str, basis: int, p: ParamsInForce, month: str) -> None:
    if basis > p.cap:
        ctx.out.add("R-D02-CAP", form=D02, xpath=f"{xp}/TienLuong", line=line_of(row, "TienLuong"), value=text,
                    basis=_vnd(basis), cap=_vnd(p.cap), multiple=p.base_multiple, base=_vnd(p.base_salary),
                    month=month)


def _vnd(value: int) -> str:
    return f"{value:,}".replace(",", ".")  # Vietnamese thousands separator


# ---- R-PERSON-CONFLICT ---------------------------------------------------------------------

_CONFLICT_TEXT = {
    INCREASE: ("tăng ({pa}) từ {m}", "an increase ({pa}) from {m}"),
    DECREASE: ("giảm ({pa}) từ {m}", "a decrease ({pa}) from {m}"),
    ADJUSTMENT: ("điều chỉnh ({pa}) từ {m}", "an adjustment ({pa}) from {m}"),
}


class _Conflicts:
    """The changes of each person in one D02-TS, to find those that contradict each other."""

    def __init__(self) -> None:
        self.first: dict[str, _Change] = {}  # a person's first change in this form, by identifier
        self.more: dict[str, list[_Change]] = {}  # the person's other changes
        self.si_to_pid: dict[str, str] = {}

    def note(self, person: PersonRef, c: _Change) -> None:
        pid, si = person.personal_id, person.si_code
        if pid and si:
            self.si_to_pid.setdefault(si, pid)
        key = pid or si
        if key:
            if key in self.first:
                self.more.setdefault(key, []).append(c)
            else:
                self.first[key] = c

    def judge(self, ctx: Context) -> None:
        first = self.first
        groups = {key: [first[key], *items] for key, items in self.more.items()}  # people with several changes

        def changes_of(key: str) -> list[_Change]:
            return groups.pop(key, None) or [first[key]]

        # One person may be named by SI code on one row and by personal ID on another: rows that
        # carry both tie the two together.
        for si, pid in self.si_to_pid.items():
            if si in first and pid in first and si != pid:
                groups[pid] = changes_of(pid) + changes_of(si)
        for key, items in groups.items():
            items.sort(key=lambda c: c.position)  # document order
            for j, later in enumerate(items):
                other = next((c for c in items[:j] if _conflicting(c, later)), None)
                if other is None:
                    continue
                this_vi, this_en = (t.format(pa=later.pa, m=later.start.wire) for t in _CONFLICT_TEXT[later.direction])
                other_vi, other_en = (t.format(pa=other.pa, m=other.start.wire) for t in _CONFLICT_TEXT[other.direction])
                ctx.out.add("R-PERSON-CONFLICT", form=D02, xpath=later.xp, line=later.line, value=key,
                            this_vi=this_vi, this_en=this_en, other_vi=other_vi, other_en=other_en,
                            other_stt=other.stt)


def _conflicting(a: _Change, b: _Change) -> bool:
    """Do two changes of one person in one D02-TS contradict each other?"""
    if a.direction == b.direction == INCREASE:  # joining twice over the same months
        return (b.end is None or a.start <= b.end) and (a.end is None or b.start <= a.end)
    if a.start != b.start:
        return False
    # from the same month: joining and leaving, leaving twice, or two different adjustments
    return {a.direction, b.direction} == {INCREASE, DECREASE} or a.direction == b.direction

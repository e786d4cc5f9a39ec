"""The electronic health-insurance card (thẻ BHYT điện tử) of one person, derived from the records
of accepted dossiers (SPEC §5 `GET /hi-cards/{id}`, docs/hi-card.md). Pure: no database, no HTTP.

What a card is made of
----------------------
- the person (personal ID, SI code, name, birth date, gender: `Identity`);
- the contribution months and the benefit level, from the D02-TS rows (`DeclaredChange`s);
- the registered first-contact facility (nơi đăng ký KCB ban đầu), from the TK1-TS rows
  (`MaTinhBenhVien`, `MaBenhVien`: `FacilityRegistration`s).

The month-by-month rules
------------------------
Changes are applied per declaring unit, in the order their dossiers were received, then by STT
(as the book does, interchange.records.book), on a timeline of months that runs to one month
past both the as-of month and the last month any change names (the *horizon*).

- An **increase** covers TuThang..DenThang (open: to the horizon) at that unit, at the row's
  benefit level (MucHuong; when not declared, `DEFAULT_LEVEL`).
- A **decrease** (a reduction) takes effect on the first day of its TuThang: the card is valid to
  the last day of the month before it, the last month contributed.
  - TS (maternity leave): the months stay covered, paid by the SI fund (`paid_by` "si_fund").
  - A temporary stop, a decrease with DenThang or one of KL (unpaid leave) and OF (sick leave)
    without it: the covered months it names are *paused* (the card is **suspended**), and
    coverage resumes after DenThang on the earlier terms.
  - Any other decrease (GH, GC, GD, SB, TU; or without DenThang): coverage at the unit ends from
    TuThang for good (until a new increase).
- An **adjustment** with a MucHuong changes the benefit level of the covered months it names
  (TuThang..DenThang, open: to the horizon). Other adjustments do not change the card.

A month is *covered* when at least one unit covers it; the unit paying is then the covering unit
with the highest benefit level (the one declared first on a tie). A month covered nowhere but
paused at some unit is *paused*.

The answer for a day D (of month M)
-----------------------------------
- status **valid** when M is covered, **suspended** when M is paused, **not_valid** otherwise
  (never covered, ended, or not yet started). Contributions *owed* (declared but unpaid) are not
  derived: the server receives no payments.
- valid_from / valid_to: the run of consecutive covered months around M (valid), else the last
  run before M, else the first run after it (a card that starts later). valid_from is the first
  day of the run's first month, valid_to the last day of its last month; valid_to is None (and
  `open` true) when the run reaches the horizon: no end is declared, the card stays valid while
  contributions continue.
- the benefit level and the unit paying: those of M when covered, else of the run's last month.
- five continuous years (thời điểm đủ 5 năm liên tục): counted from the start of the participation
  that the run belongs to; gaps of at most `MAX_GAP` months keep the participation continuous
  but do not count; the date is the first day of the month after the 60th covered month,
  assuming an open run goes on. None when the participation ends before it (or breaks).
- the first-contact facility: the newest TK1-TS registration received by the end of D
  (Asia/Ho_Chi_Minh) that names a MaBenhVien.

Records received after D for months up to M are taken into account: the answer is what the
agency knows now about day D (a late increase, "truy đóng", restores the card for those months).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from interchange.clock import VN_TZ
from interchange.months import Month
from interchange.records.book import DeclaredChange, Identity, UnitRef
from interchange.records.model import ADJUSTMENT, DECREASE, INCREASE

VALID, NOT_VALID, SUSPENDED = "valid", "not_valid", "suspended"
# MucHuong, the benefit-level code (the second character of the card number), -> percent covered.
LEVELS: dict[str, int] = {"1": 100, "2": 100, "3": 95, "4": 80, "5": 100}
DEFAULT_LEVEL = "4"  # an employee under a labour contract: 80%
MATERNITY = "TS"
PAUSING = frozenset(("KL", "OF"))  # decreases that pause coverage even without DenThang
MAX_GAP = 3  # months: a longer gap breaks the five continuous years
FIVE_YEARS = 60  # covered months


# ---- input -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FacilityRegistration:
    """A TK1-TS row naming a first-contact facility."""

    received_at: datetime
    province: str | None  # MaTinhBenhVien
    code: str  # MaBenhVien


@dataclass
class CardRecords:
    """What the store holds for one card."""

    person_id: int
    identity: Identity
    changes: list[DeclaredChange] = field(default_factory=list)
    facilities: list[FacilityRegistration] = field(default_factory=list)


# ---- output ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    identity: Identity
    status: str  # VALID | NOT_VALID | SUSPENDED
    valid_from: date | None
    valid_to: date | None  # None: open (or no run at all, with valid_from None too)
    open: bool
    level: str | None  # MucHuong code
    unit: UnitRef | None
    paid_by: str | None  # "unit" | "si_fund" (maternity leave)
    facility: FacilityRegistration | None
    five_years_at: date | None
    as_of: date

    @property
    def percent(self) -> int | None:
        return LEVELS.get(self.level) if self.level else None

    def to_json(self) -> dict:
        i, u, f = self.identity, self.unit, self.facility
        return {
            "personal_id": i.personal_id,
            "si_code": i.si_code,
            "name": i.name,
            "birth_date": _iso(i.birth_date),
            "gender": i.gender,
            "status": self.status,
            "valid_from": _iso(self.valid_from),
            "valid_to": _iso(self.valid_to),
            "open": self.open,
            "benefit": None if self.level is None else {"code": self.level, "percent": self.percent},
            "facility": None if f is None else {"province": f.province, "code": f.code},
            "five_years_at": _iso(self.five_years_at),
            "unit": None if u is None else {"mst": u.mst, "code": u.code, "name": u.name},
            "paid_by": self.paid_by,
            "as_of": self.as_of.isoformat(),
        }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


# ---- matching the caller's name and birth date ------------------------------------------------

_BIRTH_VN = re.compile(r"([0-9]{2})/([0-9]{2})/([0-9]{4})")
_BIRTH_ISO = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


def normal_name(name: str) -> str:
    """A name as compared: NFC (diacritics composed), case folded, blanks collapsed."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())  # split(): the blanks of \s


def read_birth(text: str) -> date:
    """dd/MM/yyyy or YYYY-MM-DD -> the date; ValueError otherwise."""
    text = text.strip()
    if m := _BIRTH_VN.fullmatch(text):
        d, mo, y = m.groups()
    elif m := _BIRTH_ISO.fullmatch(text):
        y, mo, d = m.groups()
    else:
        raise ValueError(f"not a date: {text!r} (dd/MM/yyyy or YYYY-MM-DD)")
    try:
        return date(int(y), int(mo), int(d))
    except ValueError:
        raise ValueError(f"not a date: {text!r}") from None


def matches(identity: Identity, name: str, birth: date) -> bool:
    """The caller's name and birth date agree with what the agency holds (no birth date held: no)."""
    return (
        identity.birth_date is not None
        and identity.birth_date == birth
        and identity.name is not None
        and normal_name(identity.name) == normal_name(name)
    )


# ---- the timeline ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cover:
    level: str
    unit: UnitRef
    maternity: bool = False


_PAUSED = "paused"


def _unit_timeline(changes: list[DeclaredChange], horizon: int) -> dict[int, _Cover | str]:
    """Month index -> _Cover or _PAUSED at one unit (absent: not covered), up to `horizon`."""
    months: dict[int, _Cover | str] = {}
    for d in changes:
        c = d.change
        last = min(c.to_month.index if c.to_month else horizon, horizon)
        span = range(c.from_month.index, last + 1)
        if c.direction == INCREASE:
            months.update(dict.fromkeys(span, _Cover(c.benefit_level or DEFAULT_LEVEL, d.unit)))
        elif c.direction == DECREASE:
            _decrease(months, span, c.pa, c.to_month is not None)
        elif c.direction == ADJUSTMENT and c.benefit_level:
            for m in span:
                cur = months.get(m)
                if isinstance(cur, _Cover):
                    months[m] = _Cover(c.benefit_level, cur.unit, cur.maternity)
    return months


def _decrease(months: dict[int, _Cover | str], span: range, pa: str, bounded: bool) -> None:
    for m in span:
        cur = months.get(m)
        if pa == MATERNITY:
            if isinstance(cur, _Cover):
                months[m] = _Cover(cur.level, cur.unit, True)
        elif bounded or pa in PAUSING:
            if cur is not None:
                months[m] = _PAUSED
        else:
            months.pop(m, None)


def _combined(changes: list[DeclaredChange], horizon: int) -> dict[int, _Cover | str]:
    """Month index -> the covering unit's _Cover (highest level, first declared on a tie), or
    _PAUSED when covered nowhere but paused somewhere."""
    by_unit: dict[str, list[DeclaredChange]] = {}
    for d in sorted(changes, key=lambda d: (d.received_at, d.dossier_id, d.change.stt)):
        by_unit.setdefault(d.unit.key, []).append(d)
    timelines = [_unit_timeline(unit_changes, horizon) for unit_changes in by_unit.values()]
    if len(timelines) == 1:  # most people: one employer, nothing to merge
        return timelines[0]
    out: dict[int, _Cover | str] = {}
    for timeline in timelines:
        for m, state in timeline.items():
            cur = out.get(m)
            if cur is None or cur == _PAUSED and isinstance(state, _Cover):
                out[m] = state
            elif isinstance(cur, _Cover) and isinstance(state, _Cover) and LEVELS[state.level] > LEVELS[cur.level]:
                out[m] = state
    return out


# ---- the card ------------------------------------------------------------------------------------


def build_card(records: CardRecords, as_of: date) -> Card:
    """The card of one person on day `as_of` (see the module's docstring for the rules)."""
    month = Month.of(as_of).index
    named = [x.index for d in records.changes for x in (d.change.from_month, d.change.to_month) if x is not None]
    horizon = max([month, *named]) + 1
    timeline = _combined(records.changes, horizon)
    state = timeline.get(month)
    status = VALID if isinstance(state, _Cover) else SUSPENDED if state == _PAUSED else NOT_VALID
    paused = _PAUSED in timeline.values()  # a state is a _Cover or _PAUSED: without pauses, every month is covered
    runs = _runs(sorted((m for m, s in timeline.items() if s is not _PAUSED) if paused else timeline))
    around = _run_around(runs, month)
    cover: _Cover | None = None
    valid_from = valid_to = five = None
    is_open = False
    if around is not None:
        first, last = runs[around]
        cover = timeline[month] if first <= month <= last else timeline[last]
        is_open = last >= horizon
        valid_from = Month.from_index(first).first_day
        valid_to = None if is_open else Month.from_index(last + 1).first_day - timedelta(days=1)
        five = _five_years(runs, around, horizon)
    return Card(
        identity=records.identity,
        status=status,
        valid_from=valid_from,
        valid_to=valid_to,
        open=is_open,
        level=cover.level if cover else None,
        unit=cover.unit if cover else None,
        paid_by=None if cover is None else "si_fund" if cover.maternity else "unit",
        facility=_facility(records.facilities, as_of),
        five_years_at=five,
        as_of=as_of,
    )


def _runs(months: list[int]) -> list[tuple[int, int]]:
    """Sorted distinct month indexes -> their runs of consecutive months, (first, last) each, in
    order. Within a run `months[j] - j` is the same: each run's end is found by bisection."""
    runs, start, n = [], 0, len(months)
    while start < n:
        end = bisect_right(range(n), months[start] - start, lo=start, key=lambda j: months[j] - j)
        runs.append((months[start], months[end - 1]))
        start = end
    return runs


def _run_around(runs: list[tuple[int, int]], month: int) -> int | None:
    """Which run holds `month`, else the last run before it, else the first after it (its place in
    `runs`); None when nothing is covered. Covered months never pass the horizon: neither does a run."""
    if not runs:
        return None
    before = bisect_right(runs, (month, math.inf)) - 1  # the last run starting by `month`
    return max(before, 0)


def _five_years(runs: list[tuple[int, int]], around: int, horizon: int) -> date | None:
    """The first day of the month after the 60th covered month of the participation holding the
    run `around` (gaps up to MAX_GAP months keep it continuous); months past the horizon are
    covered when the horizon is (an open run goes on)."""
    while around > 0 and runs[around][0] - runs[around - 1][1] - 1 <= MAX_GAP:
        around -= 1
    count, last = 0, runs[around][0] - 1
    for first, end in runs[around:]:
        if first - last - 1 > MAX_GAP:
            return None
        if count + end - first + 1 >= FIVE_YEARS:
            return Month.from_index(first + FIVE_YEARS - count).first_day
        count, last = count + end - first + 1, end
    if last != horizon:  # not open: nothing more is covered
        return None
    return Month.from_index(horizon + FIVE_YEARS - count + 1).first_day


def _facility(registrations: list[FacilityRegistration], as_of: date) -> FacilityRegistration | None:
    """The newest registration received by the end of `as_of` in Vietnam."""
    end = _end_of_day(as_of)
    known = [r for r in registrations if r.received_at < end]
    return max(known, key=lambda r: r.received_at) if known else None


@functools.lru_cache(maxsize=64)
def _end_of_day(day: date) -> datetime:
    """The end of `day` in Vietnam, in UTC (as the registrations' times: compared without converting)."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=VN_TZ).astimezone(UTC)

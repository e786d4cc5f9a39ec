"""The electronic social-insurance book of one person (SPEC §6): identity, contribution periods
and benefits, built from the records of accepted dossiers. Pure: no database, no HTTP.

How the contribution changes (D02-TS rows) are read
---------------------------------------------------
Changes are applied per declaring unit (its MST; the unit code when there is none), in the order
their dossiers were received, then by STT. Each unit has its own month-by-month timeline: a
person may contribute at two units at once (two labour contracts), and those never mix.

- An **increase** (TM, TC, TD, TH, ON, TT, AD) starts contributions at the unit from TuThang with
  the row's terms (position, workplace, salary, allowances, rate, region), to DenThang when given,
  else open.
- An **adjustment** (DC, CD, DL, DN, AT) changes the terms from TuThang (to DenThang when given,
  else open) in the months the person contributes at that unit: the salary with its allowances
  when a salary is declared, and each of position, workplace, rate and region that is declared.
  An adjustment of months without contributions changes nothing and is reported in `notes`.
- A **decrease** (GH, GC, GD, KL, OF, TS, SB, TU) stops contributions at the unit from TuThang;
  with DenThang only for TuThang..DenThang (e.g. unpaid leave), after which the earlier terms
  resume.

A later change overrides an earlier one for the months it names. The timeline runs up to the
`as_of` month. Each contributing month is priced with the legal parameters in force in that month
(`ContributionChange.basis` for the salary basis, `ParamsInForce.contributions` for the amounts
per fund, each fund capped), and consecutive months with identical terms and identical amounts
form one period: a change of base salary or regional minimum wage splits a period even when the
declared terms stay the same. A period is open (`to_month` None) when it reaches `as_of` and the
same terms continue in the month after.

Visibility: the book is built from every record of the person; a reader who may see only some
dossiers (a unit, an I-VAN) is shown the identity, the periods whose terms come only from
dossiers it may see (a unit: the periods at that unit; an I-VAN: not a salary adjusted in a
dossier it did not carry), and the benefit claims of those dossiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal

from interchange.clock import VN_TZ
from interchange.legal.params import LegalParameters, normalise_rate
from interchange.months import Month
from interchange.records.model import ADJUSTMENT, DECREASE, INCREASE, BenefitClaim, ContributionChange

# ---- input -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitRef:
    mst: str | None
    code: str | None
    name: str | None = None

    @property
    def key(self) -> str:
        return self.mst or self.code or ""


@dataclass(frozen=True)
class DeclaredChange:
    """A contribution change with the dossier that declared it."""

    change: ContributionChange
    dossier_id: str
    received_at: datetime
    unit: UnitRef


@dataclass(frozen=True)
class DeclaredClaim:
    claim: BenefitClaim
    dossier_id: str
    received_at: datetime
    unit: UnitRef


@dataclass(frozen=True)
class Identity:
    personal_id: str | None
    si_code: str | None
    name: str | None
    birth_date: date | None
    gender: int | None
    nationality: str | None


@dataclass
class PersonRecords:
    """What the store holds of one person: the book is made of it."""

    identity: Identity
    changes: list[DeclaredChange] = field(default_factory=list)
    claims: list[DeclaredClaim] = field(default_factory=list)
    visible: frozenset[str] | None = None  # dossier ids the reader may see; None: every one


# ---- output ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    dossier_id: str
    stt: int
    pa: str


@dataclass(frozen=True)
class FundAmount:
    fund: str
    name: str
    basis: int  # the salary basis after this fund's cap
    employer: int  # VND per month
    employee: int


@dataclass
class Period:
    unit: UnitRef
    from_month: Month
    to_month: Month | None  # None: open at as_of
    months: int
    position: str | None
    workplace: str | None
    salary: Decimal | None  # as declared
    coefficient: bool
    allowances: dict[str, Decimal]
    basis: int  # the salary basis in VND before the caps
    rate: Decimal | None
    region: str | None
    funds: list[FundAmount]  # per month
    sources: list[Source]  # the rows whose terms apply
    problem: str | None = None  # why no amounts could be computed

    @property
    def employer_monthly(self) -> int:
        return sum(f.employer for f in self.funds)

    @property
    def employee_monthly(self) -> int:
        return sum(f.employee for f in self.funds)

    @property
    def employer_total(self) -> int:
        return self.employer_monthly * self.months

    @property
    def employee_total(self) -> int:
        return self.employee_monthly * self.months

    def to_json(self) -> dict:
        return {
            "unit": {"mst": self.unit.mst, "code": self.unit.code, "name": self.unit.name},
            "from_month": self.from_month.wire,
            "to_month": self.to_month.wire if self.to_month else None,
            "months": self.months,
            "position": self.position,
            "workplace": self.workplace,
            "salary": _dec(self.salary),
            "coefficient": self.coefficient,
            "allowances": {k: _dec(v) for k, v in sorted(self.allowances.items())},
            "salary_basis": self.basis,
            "rate": _dec(self.rate),
            "region": self.region,
            "funds": [
                {"fund": f.fund, "name": f.name, "basis": f.basis, "employer": f.employer, "employee": f.employee}
                for f in self.funds
            ],
            "monthly": {
                "employer": self.employer_monthly,
                "employee": self.employee_monthly,
                "total": self.employer_monthly + self.employee_monthly,
            },
            "totals": {
                "employer": self.employer_total,
                "employee": self.employee_total,
                "total": self.employer_total + self.employee_total,
            },
            "problem": self.problem,
            "sources": [{"dossier_id": s.dossier_id, "stt": s.stt, "pa": s.pa} for s in self.sources],
        }


@dataclass
class Benefit:
    claim: BenefitClaim
    dossier_id: str
    received_at: datetime
    unit: UnitRef

    def to_json(self) -> dict:
        c = self.claim
        return {
            "regime": c.regime,
            "kind": c.kind,
            "group": c.group,
            "from_date": c.from_date.isoformat() if c.from_date else None,
            "to_date": c.to_date.isoformat() if c.to_date else None,
            "days": c.days,
            "unit": {"mst": self.unit.mst, "code": self.unit.code, "name": self.unit.name},
            "dossier_id": self.dossier_id,
            "received_at": self.received_at.isoformat(),
            "stt": c.stt,
            "data": c.data,
        }


@dataclass
class Book:
    identity: Identity
    as_of: Month
    periods: list[Period]
    benefits: list[Benefit]
    parameters: dict  # LegalParameters.stamp
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        i = self.identity
        employer = sum(p.employer_total for p in self.periods)
        employee = sum(p.employee_total for p in self.periods)
        return {
            "identity": {
                "si_code": i.si_code,
                "personal_id": i.personal_id,
                "name": i.name,
                "birth_date": i.birth_date.isoformat() if i.birth_date else None,
                "gender": i.gender,
                "nationality": i.nationality,
            },
            "as_of": self.as_of.wire,
            "periods": [p.to_json() for p in self.periods],
            "totals": {"employer": employer, "employee": employee, "total": employer + employee},
            "benefits": [b.to_json() for b in self.benefits],
            "parameters": self.parameters,
            "notes": self.notes,
        }


# ---- building --------------------------------------------------------------------------------


def this_month(now: datetime | None = None) -> Month:
    """The current month in Vietnam."""
    moment = now or datetime.now(VN_TZ)
    return Month.of(moment.astimezone(VN_TZ))


def read_month(text: str) -> Month:
    """"MM/yyyy" or "YYYY-MM" -> the month; ValueError otherwise (month 01-12 only)."""
    try:
        return Month.parse(text)
    except ValueError:
        raise ValueError(f"not a month: {text!r} (MM/yyyy or YYYY-MM)") from None


def build_book(records: PersonRecords, params: LegalParameters, as_of: Month | str | None = None) -> Book:
    """The book of one person up to `as_of` (a `Month`, or "MM/yyyy" or "YYYY-MM"; default the
    current month in Vietnam)."""
    if isinstance(as_of, str):
        as_of = read_month(as_of) if as_of else None
    as_of = as_of or this_month()
    notes: list[str] = []
    by_unit: dict[str, list[DeclaredChange]] = {}
    for d in sorted(records.changes, key=lambda d: (d.received_at, d.dossier_id, d.change.stt)):
        by_unit.setdefault(d.unit.key, []).append(d)
    periods: list[Period] = []
    for changes in by_unit.values():
        periods += _unit_periods(changes, params, as_of, notes)
    visible = records.visible
    if visible is not None:
        periods = [p for p in periods if all(s.dossier_id in visible for s in p.sources)]
    periods.sort(key=lambda p: (p.from_month, p.unit.key))
    benefits = [
        Benefit(c.claim, c.dossier_id, c.received_at, c.unit)
        for c in records.claims
        if visible is None or c.dossier_id in visible
    ]
    benefits.sort(key=lambda b: (b.claim.from_date or date.min, b.received_at, b.claim.stt))
    if visible is not None:
        notes = []  # they may speak of dossiers the reader may not see
    return Book(records.identity, as_of, periods, benefits, params.stamp, notes)


@dataclass(frozen=True)
class _Terms:
    unit: UnitRef
    change: ContributionChange  # the terms in force: the increase's row as adjusted since
    sources: tuple[Source, ...]

    @property
    def key(self) -> tuple:
        c = self.change
        return (
            c.position,
            c.workplace,
            c.salary,
            tuple(sorted(c.allowances.items())),
            normalise_rate(c.rate),
            c.region,
        )

    def adjusted(self, d: DeclaredChange) -> _Terms:
        new, cur = d.change, self.change
        changed = replace(
            cur,
            salary=new.salary if new.salary is not None else cur.salary,
            allowances=dict(new.allowances) if new.salary is not None else cur.allowances,
            position=new.position or cur.position,
            workplace=new.workplace or cur.workplace,
            rate=new.rate if new.rate is not None else cur.rate,
            region=new.region or cur.region,
        )
        return _Terms(d.unit, changed, (*self.sources, _source(d)))


def _source(d: DeclaredChange) -> Source:
    return Source(d.dossier_id, d.change.stt, d.change.pa)


def _timeline(changes: list[DeclaredChange], last: Month, notes: list[str]) -> dict[Month, _Terms | None]:
    """Month -> the terms in force at one unit (None: not contributing), up to `last`."""
    months: dict[Month, _Terms | None] = {}
    adjusted: dict[tuple[int, int], _Terms] = {}  # one object per (terms, adjustment): periods compare cheaply
    for n, d in enumerate(changes):
        c = d.change
        span = list(Month.span(c.from_month, min(c.to_month or last, last)))
        if c.direction == INCREASE:
            terms = _Terms(d.unit, c, (_source(d),))
            for m in span:
                months[m] = terms
        elif c.direction == DECREASE:
            for m in span:
                months[m] = None
        elif c.direction == ADJUSTMENT:
            idle = [m for m in span if months.get(m) is None]
            for m in span:
                cur = months.get(m)
                if cur is not None:
                    key = (id(cur), n)
                    if key not in adjusted:
                        adjusted[key] = cur.adjusted(d)
                    months[m] = adjusted[key]
            if idle:
                notes.append(
                    f"dossier {d.dossier_id} row {c.stt} ({c.pa}): adjustment of {idle[0].wire}"
                    f"..{idle[-1].wire} at unit {d.unit.key}, where no contributions were declared: "
                    "those months are unchanged"
                )
        else:
            notes.append(f"dossier {d.dossier_id} row {c.stt}: unknown direction {c.direction!r}, ignored")
    return months


def _unit_periods(changes: list[DeclaredChange], params: LegalParameters, as_of: Month, notes: list[str]) -> list[Period]:
    after = as_of.next()
    months = _timeline(changes, after, notes)
    periods: list[Period] = []
    current: Period | None = None
    current_key: tuple | None = None
    previous: Month | None = None
    for m in sorted(k for k in months if k <= as_of):
        terms = months[m]
        if terms is None:
            current = None
            continue
        c = terms.change
        problem = None
        funds: list[FundAmount] = []
        basis = 0
        try:
            p = params.month(m)
            basis = c.basis(p)
            funds = [
                FundAmount(x.fund, p.funds[x.fund].name, x.basis, x.employer, x.employee)
                for x in p.contributions(basis, c.rate if c.rate is not None else "", c.region)
            ]
        except (LookupError, ValueError) as exc:
            problem = f"{m.wire}: no contributions computed: {exc}"
        key = (terms.key, basis, tuple(funds), problem)
        if current is not None and current_key == key and previous == m.previous():
            current.months += 1
            current.to_month = m
            current.unit = terms.unit  # the latest name the unit gave
            current.sources += [s for s in terms.sources if s not in current.sources]
        else:
            current = Period(
                unit=terms.unit,
                from_month=m,
                to_month=m,
                months=1,
                position=c.position,
                workplace=c.workplace,
                salary=c.salary,
                coefficient=c.coefficient,
                allowances=dict(c.allowances),
                basis=basis,
                rate=c.rate,
                region=c.region,
                funds=funds,
                sources=list(terms.sources),
                problem=problem,
            )
            current_key = key
            periods.append(current)
        previous = m
    if current is not None and current.to_month == as_of:
        following = months.get(after)
        if following is not None and following.key == current_key[0]:
            current.to_month = None
    return periods


def _dec(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return format(value.normalize(), "f")

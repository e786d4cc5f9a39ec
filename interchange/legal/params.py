"""Legal parameters (base salary, regional minimum wages, contribution rates, the cap) with
their effective dates, read from a versioned data file (`legal-parameters.toml` beside this
module by default). A change of law is a change of that file, never of code.

`LegalParameters.at(day)` gives the parameters in force on a day; the rules judge a row with
those of its first month, and the book computes each month with that month's.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path

from interchange.months import Month

DEFAULT_PATH = Path(__file__).with_name("legal-parameters.toml")
REGIONS = ("01", "02", "03", "04")
CAP_BASE, CAP_REGIONAL = "base", "regional"


@dataclass(frozen=True)
class Fund:
    code: str  # HT_TT, OD_TS, TNLD_BNN, TNLD_BNN_GIAM, BHYT, BHTN
    name: str
    employer: Decimal  # percent of the (capped) salary basis
    employee: Decimal
    cap: str  # CAP_BASE (x base salary) or CAP_REGIONAL (x the region's minimum wage)


@dataclass(frozen=True)
class Contribution:
    fund: str
    basis: int  # the salary basis after this fund's cap
    employer: int  # VND, rounded half up to the dong
    employee: int


@dataclass(frozen=True)
class ParamsInForce:
    """The parameters of one day."""

    day: date
    base_salary: int
    regional_minimum: dict[str, int]  # region "01".."04" -> VND per month
    base_multiple: int  # social and health insurance cap = base_multiple x base_salary
    regional_multiple: int  # unemployment insurance cap = regional_multiple x regional minimum
    funds: dict[str, Fund]
    schemes: dict[str, tuple[str, ...]]  # TyleDong (normalised, e.g. "32", "31.8") -> funds

    @property
    def cap(self) -> int:
        """The highest salary basis of social and health insurance."""
        return self.base_multiple * self.base_salary

    def scheme(self, rate: Decimal | str | float | None) -> tuple[str, ...] | None:
        """The funds of a declared TyleDong (32, "32.0", 31.8 ...), None when it is not known."""
        key = normalise_rate(rate)
        return None if key is None else self.schemes.get(key)

    def contributions(self, basis: int, rate: Decimal | str | float, region: str | None) -> list[Contribution]:
        """Employer and employee contributions of one month by fund, each fund's basis capped.
        ValueError when the rate is not a known scheme, or the region is needed and unknown."""
        funds = self.scheme(rate)
        if funds is None:
            raise ValueError(f"unknown contribution rate {rate!r}")
        out = []
        for code in funds:
            fund = self.funds[code]
            if fund.cap == CAP_REGIONAL:
                if region not in self.regional_minimum:
                    raise ValueError(f"fund {code} needs a region (01-04), got {region!r}")
                ceiling = self.regional_multiple * self.regional_minimum[region]
            else:
                ceiling = self.cap
            capped = min(basis, ceiling)
            out.append(Contribution(code, capped, _percent(capped, fund.employer), _percent(capped, fund.employee)))
        return out


@dataclass(frozen=True)
class _Entry:
    start: date
    value: object
    source: str


class LegalParameters:
    """The whole file: every entry with its effective date."""

    def __init__(self, data: dict, *, sha256: str, path: str):
        self.version = str(data["version"])
        self.sha256 = sha256
        self.path = path
        self._base = _entries(data, "base_salary", lambda e: int(e["amount"]))
        self._regional = _entries(data, "regional_minimum", _regional)
        self._cap = _entries(data, "cap", lambda e: (int(e["base_multiple"]), int(e["regional_multiple"])))
        self._rates = _entries(data, "rates", _rates)
        self._days: dict[date, ParamsInForce] = {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> LegalParameters:
        path = Path(path) if path else DEFAULT_PATH
        raw = path.read_bytes()
        return cls(tomllib.loads(raw.decode("utf-8")), sha256=hashlib.sha256(raw).hexdigest(), path=str(path))

    @property
    def stamp(self) -> dict:
        """What is recorded with a dossier judged with these parameters."""
        return {"version": self.version, "sha256": self.sha256}

    def at(self, day: date) -> ParamsInForce:
        """The parameters in force on `day`. LookupError before the first entry of any list."""
        found = self._days.get(day)
        if found is None:
            funds, schemes = _pick(self._rates, day, "rates").value
            base_multiple, regional_multiple = _pick(self._cap, day, "cap").value
            found = self._days[day] = ParamsInForce(
                day=day,
                base_salary=_pick(self._base, day, "base_salary").value,
                regional_minimum=_pick(self._regional, day, "regional_minimum").value,
                base_multiple=base_multiple,
                regional_multiple=regional_multiple,
                funds=funds,
                schemes=schemes,
            )
        return found

    def month(self, month: Month | str) -> ParamsInForce:
        """The parameters of a month (its first day), a `Month` or written "MM/yyyy" or "yyyy-MM"."""
        return self.at((month if isinstance(month, Month) else Month.parse(month)).first_day)

    def sources(self, day: date) -> dict[str, str]:
        """The legal texts in force on `day`, by parameter (for the book and the notices)."""
        return {
            "base_salary": _pick(self._base, day, "base_salary").source,
            "regional_minimum": _pick(self._regional, day, "regional_minimum").source,
            "cap": _pick(self._cap, day, "cap").source,
            "rates": _pick(self._rates, day, "rates").source,
        }


@cache
def default_parameters() -> LegalParameters:
    return LegalParameters.load()


@cache
def _loaded(path: str) -> LegalParameters:
    return LegalParameters.load(path)


def configured_parameters(path: str | os.PathLike | None) -> LegalParameters:
    """The file `[rules] parameters` names, resolved (None: the shipped one), read once per
    process: a change of law takes effect at the next start."""
    return _loaded(str(path)) if path else default_parameters()


def normalise_rate(rate: Decimal | str | float | None) -> str | None:
    """"32.0", "32", 32 -> "32"; "31.80" -> "31.8"; None or "" or junk -> None."""
    if rate is None or (isinstance(rate, str) and not rate.strip()):
        return None
    try:
        value = Decimal(str(rate).strip())
    except ArithmeticError:
        return None
    if not value.is_finite():
        return None
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _percent(amount: int, percent: Decimal) -> int:
    return int((Decimal(amount) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _entries(data: dict, name: str, value) -> list[_Entry]:
    out = sorted(
        (_Entry(date.fromisoformat(e["from"]), value(e), str(e.get("source", ""))) for e in data.get(name, [])),
        key=lambda e: e.start,
    )
    if not out:
        raise ValueError(f"legal parameters: no [[{name}]] entry")
    starts = [e.start for e in out]
    if len(set(starts)) != len(starts):
        raise ValueError(f"legal parameters: two [[{name}]] entries start on the same day")
    return out


def _regional(entry: dict) -> dict[str, int]:
    amounts = {str(k): int(v) for k, v in entry["amounts"].items()}
    if sorted(amounts) != list(REGIONS):
        raise ValueError(f"legal parameters: regional minimum from {entry['from']} must name regions {REGIONS}")
    return amounts


def _rates(entry: dict) -> tuple[dict[str, Fund], dict[str, tuple[str, ...]]]:
    funds = {
        code: Fund(code, str(f["name"]), Decimal(str(f["employer"])), Decimal(str(f["employee"])), str(f["cap"]))
        for code, f in entry["funds"].items()
    }
    for fund in funds.values():
        if fund.cap not in (CAP_BASE, CAP_REGIONAL):
            raise ValueError(f"legal parameters: fund {fund.code} cap must be {CAP_BASE!r} or {CAP_REGIONAL!r}")
    schemes: dict[str, tuple[str, ...]] = {}
    for rate, codes in entry["schemes"].items():
        unknown = set(codes) - set(funds)
        if unknown:
            raise ValueError(f"legal parameters: scheme {rate} names unknown funds {sorted(unknown)}")
        total = sum((funds[c].employer + funds[c].employee for c in codes), Decimal(0))
        key = normalise_rate(rate)
        if key != normalise_rate(total):
            raise ValueError(f"legal parameters: scheme {rate} adds up to {total}, not {rate}")
        schemes[key] = tuple(codes)
    return funds, schemes


def _pick(entries: list[_Entry], day: date, name: str) -> _Entry:
    i = bisect_right([e.start for e in entries], day)
    if i == 0:
        raise LookupError(f"no {name} in force on {day.isoformat()} (the first starts {entries[0].start})")
    return entries[i - 1]

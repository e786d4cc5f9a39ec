"""What one judgement works with: the problems found so far (capped), the legal parameters in
force by month, the records extracted, and the `Judgement` they end as."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from interchange.errors import Problem, Severity
from interchange.legal.params import LegalParameters, ParamsInForce
from interchange.months import Month
from interchange.records.model import Extracted
from interchange.rules.catalogue import CATALOGUE, problem


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


class Collector:
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
class Context:
    params: LegalParameters
    out: Collector
    extracted: Extracted = field(default_factory=Extracted)
    created: date | None = None  # NgayLap of the dossier: no one is born after it
    _months: dict[Month, ParamsInForce | str] = field(default_factory=dict)
    _shared: dict = field(default_factory=dict)

    def shared(self, value):
        """One object for equal values (a position, a workplace, a rate, repeated by many rows):
        a 50,000-row form's records held tens of MiB of copies, in the worker and in the server.
        A Decimal is shared only with one written the same way (32.0 is not 32)."""
        key = value if value is None or type(value) is str else (type(value), str(value))
        return self._shared.setdefault(key, value)

    def month_params(self, month: Month) -> ParamsInForce | str:
        """The parameters in force in `month`, or why there are none."""
        found = self._months.get(month)
        if found is None:
            try:
                found = self.params.month(month)
            except LookupError as exc:
                found = str(exc)
            self._months[month] = found
        return found

    def judgement(self) -> Judgement:
        out = self.out
        return Judgement(problems=out.items, truncated=out.truncated, extracted=self.extracted,
                         params=self.params.stamp, errors=out.errors)

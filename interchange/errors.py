"""The error shape every layer reports, and the notice codes they map to.

One `Problem` is one `Loi` of a notice (SPEC §4): what (code, message), where (form,
XPath, line) and why. Layers collect problems in a `Problems` list with a cap so that a
document with a million bad rows cannot make a million-entry notice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Layer(StrEnum):
    TRANSPORT = "transport"
    ENVELOPE = "envelope"
    SIGNATURE = "signature"
    SCHEMA = "schema"
    RULE = "rule"


LAYER_ORDER = (Layer.ENVELOPE, Layer.SIGNATURE, Layer.SCHEMA, Layer.RULE)


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    layer: Layer
    code: str
    message_vi: str
    message_en: str = ""
    xpath: str = ""
    line: int | None = None
    form: str | None = None
    value: str | None = None
    severity: Severity = Severity.ERROR

    def as_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in asdict(self).items()}


@dataclass
class Problems:
    """Problems of one layer, capped; `truncated` counts what the cap left out."""

    cap: int = 100
    items: list[Problem] = field(default_factory=list)
    truncated: int = 0

    def add(self, problem: Problem) -> None:
        if len(self.items) < self.cap:
            self.items.append(problem)
        else:
            self.truncated += 1

    def extend(self, problems) -> None:
        for p in problems:
            self.add(p)

    @property
    def full(self) -> bool:
        return len(self.items) >= self.cap

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.items if p.severity == Severity.ERROR]

    def __bool__(self) -> bool:
        return bool(self.items)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class Refusal(Exception):
    """A stage cannot go on: carries the problems that say why."""

    def __init__(self, *problems: Problem):
        super().__init__("; ".join(f"{p.code}: {p.message_en or p.message_vi}" for p in problems))
        self.problems = list(problems)

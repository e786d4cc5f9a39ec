"""Calendar months: one `Month` type for the whole server.

A month is written two ways: on the wire (the forms, the notices, the book's JSON) as "MM/yyyy",
in the store as "YYYY-MM" (it sorts). `Month` parses and writes both, orders, steps and ranges;
the legal parameters are looked up on its first day. No other module converts month strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, order=True, slots=True)
class Month:
    """A calendar month of the years 1-9999 (those of `datetime.date`)."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ValueError(f"no such month: {self.month}")
        if not 1 <= self.year <= 9999:
            raise ValueError(f"year out of range: {self.year}")

    def __reduce__(self):  # pickled as its two numbers, not by dataclasses' walk of its fields (every row has one)
        return Month, (self.year, self.month)

    # ---- reading ------------------------------------------------------------------------------

    @classmethod
    def parse_wire(cls, text: str) -> Month | None:
        """Exactly "MM/yyyy" (ASCII digits, nothing around) -> the month; None otherwise."""
        if len(text) != 7 or text[2] != "/" or not (text.isascii() and text[:2].isdigit() and text[3:].isdigit()):
            return None
        month, year = int(text[:2]), int(text[3:])
        if not 1 <= month <= 12 or year < 1:
            return None
        return cls(year, month)

    @classmethod
    def parse_iso(cls, text: str) -> Month:
        """ "YYYY-MM" (as the store keeps months) -> the month. ValueError otherwise."""
        if len(text) != 7 or text[4] != "-" or not (text.isascii() and text[:4].isdigit() and text[5:].isdigit()):
            raise ValueError(f"not a month: {text!r}")
        return cls(int(text[:4]), int(text[5:]))

    @classmethod
    def parse(cls, text: str) -> Month:
        """ "MM/yyyy" or "YYYY-MM", blanks around ignored -> the month. ValueError otherwise."""
        stripped = text.strip()
        parts = stripped.split("/") if "/" in stripped else stripped.split("-")[::-1]
        if len(parts) != 2:
            raise ValueError(f"not a month: {text!r}")
        mm, yyyy = parts
        if len(mm) != 2 or len(yyyy) != 4 or not (mm.isdigit() and yyyy.isdigit()):
            raise ValueError(f"not a month: {text!r}")
        try:
            return cls(int(yyyy), int(mm))
        except ValueError:
            raise ValueError(f"not a month: {text!r}") from None

    @classmethod
    def of(cls, day: date) -> Month:
        """The month of a day (or of a datetime's date)."""
        return cls(day.year, day.month)

    # ---- writing ------------------------------------------------------------------------------

    @property
    def wire(self) -> str:
        """ "MM/yyyy"."""
        return f"{self.month:02d}/{self.year:04d}"

    @property
    def iso(self) -> str:
        """ "YYYY-MM"."""
        return f"{self.year:04d}-{self.month:02d}"

    def __str__(self) -> str:
        return self.wire

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    # ---- arithmetic ---------------------------------------------------------------------------

    @property
    def index(self) -> int:
        """Months since January of year 0: consecutive months have consecutive indexes."""
        return self.year * 12 + self.month - 1

    @classmethod
    def from_index(cls, index: int) -> Month:
        year, month0 = divmod(index, 12)
        return cls(year, month0 + 1)

    def plus(self, months: int) -> Month:
        """This month moved by `months` (negative: back). ValueError beyond the years 1-9999."""
        return Month.from_index(self.index + months)

    def next(self) -> Month:
        return self.plus(1)

    def previous(self) -> Month:
        return self.plus(-1)

    def months_since(self, other: Month) -> int:
        """How many months `other` is before this one (negative when after)."""
        return self.index - other.index

    @staticmethod
    def span(first: Month, last: Month) -> Iterator[Month]:
        """Every month from `first` to `last`, both included (nothing when `last` is before `first`)."""
        for index in range(first.index, last.index + 1):
            yield Month.from_index(index)

"""Working time for target deadlines (SPEC §8): the Vietnamese working calendar.

Asia/Ho_Chi_Minh; working days and hours from config (default Monday to Friday, 08:00-12:00
and 13:00-17:00); public holidays from the `holidays` package (Tết, Hùng Kings' day, 30/4,
1/5, 2/9 and the day-off swaps the package knows, with their make-up Saturdays), plus the
configured extra days off and make-up working days the government announces each year.

A target is "N working hours" or "N working days" (a working day = the hours of one day of
the calendar, 8 by default). A deadline that falls exactly at the end of a working period is
that end (17:00), not the start of the next one.

Precedence for one date: configured make-up day (working) > configured extra day off >
the package's make-up day (working) > the package's public holiday > the configured weekdays.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from interchange.clock import VN_TZ

if TYPE_CHECKING:
    from interchange.config import CalendarConfig

_TARGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*working\s+(hour|hours|day|days)\s*$", re.IGNORECASE)
_PERIOD = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_PERIODS: tuple[tuple[time, time], ...] = ((time(8), time(12)), (time(13), time(17)))
_MAX_DAYS = 3660  # ten years of days: a bound on a search, not a limit anyone reaches


def parse_target(target: str) -> tuple[float, str]:
    """("N working hours" | "N working days") -> (N, "hours" | "days"), or ValueError."""
    m = _TARGET.match(target or "")
    if not m:
        raise ValueError(f"target {target!r} is not 'N working hours' or 'N working days'")
    return float(m.group(1)), ("hours" if m.group(2).lower().startswith("hour") else "days")


def _items(value: Any, where: str) -> list[Any]:
    """A TOML list, or a comma-separated string (an INTERCHANGE_CALENDAR_* override)."""
    if isinstance(value, str):
        return [part for part in re.split(r"[,\s]+", value) if part]
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    raise ValueError(f"config: {where} must be a list, not {value!r}")


def parse_weekdays(value: Any, where: str = "calendar.weekdays") -> frozenset[int]:
    days = set()
    for item in _items(value, where):
        name = str(item).strip().lower()
        if name in _FULL_WEEKDAY_NAMES:
            name = name[:3]
        if name not in WEEKDAY_NAMES:
            raise ValueError(f"config: {where}: {item!r} is not a weekday (mon, tue, ... sun)")
        days.add(WEEKDAY_NAMES.index(name))
    if not days:
        raise ValueError(f"config: {where} names no working day")
    return frozenset(days)


def parse_periods(value: Any, where: str = "calendar.hours") -> tuple[tuple[time, time], ...]:
    periods = []
    for item in _items(value, where):
        m = _PERIOD.match(str(item))
        if not m:
            raise ValueError(f"config: {where}: {item!r} is not HH:MM-HH:MM")
        try:
            periods.append((time(int(m.group(1)), int(m.group(2))), time(int(m.group(3)), int(m.group(4)))))
        except ValueError:
            raise ValueError(f"config: {where}: {item!r} is not a time of day (00:00 to 23:59)") from None
    return tuple(periods)


def parse_dates(value: Any, where: str) -> frozenset[date]:
    days = set()
    for item in _items(value, where):
        if isinstance(item, datetime):
            raise ValueError(f"config: {where}: {item!r} is a date and time, not a date")
        if isinstance(item, date):
            days.add(item)
            continue
        try:
            days.add(date.fromisoformat(str(item).strip()))
        except ValueError:
            raise ValueError(f"config: {where}: {item!r} is not a date YYYY-MM-DD") from None
    return frozenset(days)


@dataclass(eq=False)
class WorkCalendar:
    periods: tuple[tuple[time, time], ...] = DEFAULT_PERIODS
    weekdays: frozenset[int] = frozenset(range(5))  # Monday=0 .. Sunday=6
    extra_days_off: frozenset[date] = frozenset()  # configured days off on top of the public holidays
    make_up_days: frozenset[date] = frozenset()  # configured working days, even on a weekend or holiday
    country: str | None = "VN"  # public holidays from the `holidays` package; None or "" for none
    # public holidays and the package's make-up days, loaded one year at a time
    _public: dict[date, str] = field(default_factory=dict, init=False, repr=False)
    _public_make_up: set[date] = field(default_factory=set, init=False, repr=False)
    _years: set[int] = field(default_factory=set, init=False, repr=False)
    _lock: Any = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        periods = tuple(sorted((a, b) for a, b in self.periods))
        if not periods:
            raise ValueError("calendar: no working hours")
        for a, b in periods:
            if a.tzinfo is not None or b.tzinfo is not None:
                raise ValueError("calendar: working hours are local times without a time zone")
            if a >= b:
                raise ValueError(f"calendar: working period {a:%H:%M}-{b:%H:%M} ends before it starts")
        for (_, b1), (a2, _) in zip(periods, periods[1:], strict=False):
            if a2 < b1:
                raise ValueError(f"calendar: working periods overlap at {a2:%H:%M}")
        self.periods = periods
        self.weekdays = frozenset(self.weekdays)
        if not self.weekdays or not self.weekdays <= set(range(7)):
            raise ValueError("calendar: weekdays must be a non-empty set of 0 (Monday) .. 6 (Sunday)")
        self.extra_days_off = frozenset(self.extra_days_off)
        self.make_up_days = frozenset(self.make_up_days)
        both = self.extra_days_off & self.make_up_days
        if both:
            raise ValueError(f"calendar: {', '.join(map(str, sorted(both)))} both a day off and a make-up day")
        self.country = (self.country or "").strip().upper() or None

    @classmethod
    def from_config(cls, section: CalendarConfig) -> WorkCalendar:
        """From the [calendar] section; errors name the key."""
        country = (section.holidays_country or "").strip().upper() or None
        if country:
            import holidays

            try:
                holidays.country_holidays(country)
            except NotImplementedError:
                raise ValueError(f"config: calendar.holidays_country: {country!r} is not a country the "
                                 "holidays package knows") from None
        try:
            return cls(
                periods=parse_periods(section.hours),
                weekdays=parse_weekdays(section.weekdays),
                extra_days_off=parse_dates(section.extra_days_off, "calendar.extra_days_off"),
                make_up_days=parse_dates(section.make_up_days, "calendar.make_up_days"),
                country=country,
            )
        except ValueError as exc:
            text = str(exc)
            raise ValueError(text if text.startswith("config:") else f"config: {text}") from None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ---- days

    def _load_year(self, year: int) -> None:
        if year in self._years:
            return
        with self._lock:
            if year in self._years:
                return
            if self.country and 1 <= year <= 9999:
                import holidays

                found = holidays.country_holidays(self.country, years=year)
                self._public.update({d: str(name) for d, name in found.items()})
                self._public_make_up.update(getattr(found, "weekend_workdays", ()) or ())
            self._years.add(year)  # last: a reader that sees the year sees its days

    def public_holidays(self, year: int) -> dict[date, str]:
        """The package's public holidays of one year (names as the package gives them)."""
        self._load_year(year)
        return {d: n for d, n in sorted(self._public.items()) if d.year == year}

    def public_make_up_days(self, year: int) -> set[date]:
        """The weekend days the package knows are worked to bridge a holiday, in one year."""
        self._load_year(year)
        return {d for d in self._public_make_up if d.year == year}

    def is_working_day(self, d: date) -> bool:
        if isinstance(d, datetime):
            d = self._local(d).date()
        if d in self.make_up_days:
            return True
        if d in self.extra_days_off:
            return False
        self._load_year(d.year)
        if d in self._public_make_up:
            return True
        if d in self._public:
            return False
        return d.weekday() in self.weekdays

    def days_off(self, start: date, end: date) -> list[date]:
        """The non-working days from `start` to `end`, both included."""
        out, day = [], start
        while day <= end:
            if not self.is_working_day(day):
                out.append(day)
            day += timedelta(days=1)
        return out

    # ---- times

    @property
    def working_day(self) -> timedelta:
        """The working time of one working day (8 hours by default)."""
        return sum(
            (datetime.combine(date.min, b) - datetime.combine(date.min, a) for a, b in self.periods), timedelta(0)
        )

    @property
    def hours_per_day(self) -> float:
        return self.working_day / timedelta(hours=1)

    @staticmethod
    def _local(moment: datetime) -> datetime:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"working time needs an aware datetime, not {moment!r}")
        return moment.astimezone(VN_TZ)

    def _day_periods(self, day: date) -> list[tuple[datetime, datetime]]:
        return [(datetime.combine(day, a, VN_TZ), datetime.combine(day, b, VN_TZ)) for a, b in self.periods]

    def is_working_time(self, moment: datetime) -> bool:
        """Inside a working period: from its start (included) to its end (excluded)."""
        local = self._local(moment)
        if not self.is_working_day(local.date()):
            return False
        clock = local.time()
        return any(a <= clock < b for a, b in self.periods)

    def next_working_moment(self, moment: datetime) -> datetime:
        """`moment` itself if it is working time, else the start of the next working period."""
        return self.add(moment, timedelta(0))

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment when `duration` of working time has passed since `start` (in Asia/Ho_Chi_Minh)."""
        if duration < timedelta(0):
            raise ValueError("a working-time duration cannot be negative")
        remaining = duration
        local = self._local(start)
        day = local.date()
        for _ in range(_MAX_DAYS):
            if self.is_working_day(day):
                for begin, end in self._day_periods(day):
                    begin = max(begin, local)
                    if begin >= end:
                        continue
                    if end - begin >= remaining:
                        return begin + remaining
                    remaining -= end - begin
            day += timedelta(days=1)
        raise ValueError("deadline beyond ten years of days")

    def target_duration(self, target: str) -> timedelta:
        """The working time of a target: "N working hours" or "N working days"."""
        amount, unit = parse_target(target)
        return timedelta(hours=amount) if unit == "hours" else self.working_day * amount

    def due(self, start: datetime, target: str) -> datetime:
        return self.add(start, self.target_duration(target))

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time from `a` to `b` (negative when `b` is before `a`)."""
        la, lb = self._local(a), self._local(b)
        if lb < la:
            return -self.working_time_between(b, a)
        total = timedelta(0)
        day = la.date()
        while day <= lb.date():
            if self.is_working_day(day):
                for begin, end in self._day_periods(day):
                    begin, end = max(begin, la), min(end, lb)
                    if end > begin:
                        total += end - begin
            day += timedelta(days=1)
        return total


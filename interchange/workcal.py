"""Working time for target deadlines (SPEC §8): Asia/Ho_Chi_Minh, working days and hours.

A target is "N working hours" or "N working days" (a working day = the hours of one day
of the calendar, 8 by default). Holidays are a set of dates; the full Vietnamese calendar
with Tết and make-up days is configured on top of this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
_TARGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*working\s+(hour|hours|day|days)\s*$", re.IGNORECASE)


@dataclass
class WorkCalendar:
    periods: tuple[tuple[time, time], ...] = ((time(8), time(12)), (time(13), time(17)))
    weekdays: frozenset[int] = frozenset(range(5))  # Monday=0 .. Friday=4
    holidays: frozenset[date] = field(default_factory=frozenset)
    extra_working_days: frozenset[date] = field(default_factory=frozenset)

    @property
    def hours_per_day(self) -> float:
        return sum((datetime.combine(date.min, b) - datetime.combine(date.min, a)).seconds for a, b in self.periods) / 3600

    def is_working_day(self, d: date) -> bool:
        if d in self.extra_working_days:
            return True
        return d.weekday() in self.weekdays and d not in self.holidays

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment when `duration` of working time has passed since `start`."""
        remaining = duration
        local = start.astimezone(VN_TZ)
        day = local.date()
        for _ in range(3660):  # ten years of days: a bound, not a limit anyone reaches
            if self.is_working_day(day):
                for a, b in self.periods:
                    begin = datetime.combine(day, a, VN_TZ)
                    end = datetime.combine(day, b, VN_TZ)
                    begin = max(begin, local)
                    if begin >= end:
                        continue
                    if end - begin >= remaining:
                        return begin + remaining
                    remaining -= end - begin
            day += timedelta(days=1)
            local = datetime.combine(day, time(0), VN_TZ)
        raise ValueError("deadline beyond ten years of working days")

    def due(self, start: datetime, target: str) -> datetime:
        m = _TARGET.match(target)
        if not m:
            raise ValueError(f"target {target!r} is not 'N working hours' or 'N working days'")
        amount, unit = float(m.group(1)), m.group(2).lower()
        hours = amount if unit.startswith("hour") else amount * self.hours_per_day
        return self.add(start, timedelta(hours=hours))

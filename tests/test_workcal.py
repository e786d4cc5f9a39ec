"""The Vietnamese working calendar (SPEC §8, issue 4 item 1): working days and hours from
config, public holidays from the `holidays` package, configured extra days off and make-up
days, and "N working hours / days" across weekends, Tết, year ends and starts outside
working hours. Every expected moment is worked out by hand in the comments.

Public holidays the package gives (holidays 0.109), the ones these tests rely on:
  2025: Wed 01-01; Tết Mon 01-27 .. Fri 01-31 (and Sat 02-01); Mon 04-07 (Hùng Kings);
        Wed 04-30, Thu 05-01, Fri 05-02 (swapped: Sat 04-26 is worked); Mon 09-01, Tue 09-02
  2026: Thu 01-01; Tết Mon 02-16 .. Fri 02-20; Mon 04-27 (Hùng Kings, Sun 04-26 observed);
        Thu 04-30, Fri 05-01
  2027: Fri 01-01; Tết Thu 02-04 .. Wed 02-10 (02-06/07 are a weekend)
Working hours 08:00-12:00 and 13:00-17:00 (8 h a day), Monday to Friday, +07:00.
"""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interchange.config import CalendarConfig, Config, load_config
from interchange.workcal import VN_TZ, WorkCalendar

CAL = WorkCalendar()  # the defaults: what the server had before, plus Vietnamese public holidays
H = timedelta(hours=1)


def vn(y, mo, d, h=0, mi=0, s=0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=VN_TZ)


def cal(**section) -> WorkCalendar:
    return WorkCalendar.from_config(CalendarConfig(**section))


# ---- within ordinary weeks


@pytest.mark.parametrize(
    "start, target, expected",
    [
        # Tue 10:00 + 2 h: 10-12 is exactly 2 h, so the deadline is the end of the morning (12:00),
        # not the start of the afternoon
        (vn(2026, 3, 10, 10), "2 working hours", vn(2026, 3, 10, 12)),
        # Tue 11:00 + 2 h: 11-12 (1 h), lunch skipped, 13-14 (1 h)
        (vn(2026, 3, 10, 11), "2 working hours", vn(2026, 3, 10, 14)),
        # Tue 16:30 + 2 h: 16:30-17 (0.5 h), Wed 08:00-09:30 (1.5 h)
        (vn(2026, 3, 10, 16, 30), "2 working hours", vn(2026, 3, 11, 9, 30)),
        # Tue 10:00 + 1 working day = 8 h: Tue 10-12, 13-17 (6 h), Wed 08-10 (2 h)
        (vn(2026, 3, 10, 10), "1 working day", vn(2026, 3, 11, 10)),
        # Mon 08:00 + 5 working days = 40 h: the whole week, ending Fri 17:00 (not Mon 08:00)
        (vn(2026, 3, 9, 8), "5 working days", vn(2026, 3, 13, 17)),
        # fractional targets: Tue 08:00 + 1.5 days = 12 h: Tue 8 h, Wed 08-12 (4 h)
        (vn(2026, 3, 10, 8), "1.5 working days", vn(2026, 3, 11, 12)),
        # 0 h from inside working time is the start itself
        (vn(2026, 3, 10, 9, 15), "0 working hours", vn(2026, 3, 10, 9, 15)),
    ],
)
def test_due_within_ordinary_weeks(start, target, expected):
    assert CAL.due(start, target) == expected


@pytest.mark.parametrize(
    "start, expected",
    [
        # weekend: Fri 16:00 + 2 h: Fri 16-17 (1 h), Sat and Sun skipped, Mon 08-09 (1 h)
        (vn(2026, 3, 13, 16), vn(2026, 3, 16, 9)),
        # before opening: Tue 06:30 counts from 08:00, so 10:00
        (vn(2026, 3, 10, 6, 30), vn(2026, 3, 10, 10)),
        # at lunch: Tue 12:30 counts from 13:00, so 15:00
        (vn(2026, 3, 10, 12, 30), vn(2026, 3, 10, 15)),
        # exactly at 12:00 (the morning is over): 13:00-15:00
        (vn(2026, 3, 10, 12), vn(2026, 3, 10, 15)),
        # after closing: Tue 18:00 counts from Wed 08:00, so Wed 10:00
        (vn(2026, 3, 10, 18), vn(2026, 3, 11, 10)),
        # just before midnight, Fri 23:59: counts from Mon 08:00
        (vn(2026, 3, 13, 23, 59), vn(2026, 3, 16, 10)),
        # on a Saturday: counts from Mon 08:00
        (vn(2026, 3, 14, 10), vn(2026, 3, 16, 10)),
        # on a public holiday: Thu 2026-04-30 and Fri 05-01 are holidays, then a weekend:
        # counts from Mon 05-04 08:00
        (vn(2026, 4, 30, 9), vn(2026, 5, 4, 10)),
        # Hùng Kings' day 2026 falls on Sunday 04-26 and is observed on Mon 04-27:
        # Fri 04-24 16:00: Fri 16-17 (1 h), weekend, Mon off, Tue 04-28 08-09 (1 h)
        (vn(2026, 4, 24, 16), vn(2026, 4, 28, 9)),
    ],
)
def test_two_working_hours_from_outside_working_time(start, expected):
    assert CAL.due(start, "2 working hours") == expected


def test_a_start_in_another_time_zone_counts_in_vietnamese_time():
    # 01:00 UTC is 08:00 in Hà Nội (+07:00, no daylight saving): + 2 h = 10:00 +07:00 = 03:00 UTC
    due = CAL.due(datetime(2026, 3, 10, 1, 0, tzinfo=UTC), "2 working hours")
    assert due == datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
    assert due.utcoffset() == timedelta(hours=7) and due.isoformat() == "2026-03-10T10:00:00+07:00"
    # 23:30 UTC on Mon 03-09 is already Tue 06:30 in Vietnam: counts from Tue 08:00
    assert CAL.due(datetime(2026, 3, 9, 23, 30, tzinfo=UTC), "2 working hours") == vn(2026, 3, 10, 10)


# ---- Tết, year ends and holidays


def test_five_working_days_across_tet_2026():
    # Thu 2026-02-12 10:00, procedure 600 (5 working days = 40 h):
    #   Thu 02-12 10-12, 13-17   6 h   (6)
    #   Fri 02-13                8 h   (14)
    #   Sat 02-14 .. Sun 02-22   Tết (Mon 02-16 .. Fri 02-20) between two weekends: 0 h
    #   Mon 02-23                8 h   (22)
    #   Tue 02-24                8 h   (30)
    #   Wed 02-25                8 h   (38)
    #   Thu 02-26 08-10          2 h   (40)  -> Thu 2026-02-26 10:00
    # (without holidays it would be Thu 02-19 10:00, in the middle of Tết)
    start = vn(2026, 2, 12, 10)
    assert CAL.due(start, "5 working days") == vn(2026, 2, 26, 10)
    assert WorkCalendar(country=None).due(start, "5 working days") == vn(2026, 2, 19, 10)


def test_two_working_hours_received_on_the_eve_of_tet_2025():
    # Fri 2025-01-24 16:00: Fri 16-17 (1 h); weekend 01-25/26; Tết Mon 01-27 .. Fri 01-31,
    # Sat 02-01 (fourth day), Sun 02-02; Mon 2025-02-03 08-09 (1 h) -> 09:00
    assert CAL.due(vn(2025, 1, 24, 16), "2 working hours") == vn(2025, 2, 3, 9)


def test_across_the_year_end_2025_2026():
    # Wed 2025-12-31 15:00 + 2 working days (16 h):
    #   Wed 12-31 15-17 2 h (2); Thu 2026-01-01 New Year's Day; Fri 01-02 8 h (10);
    #   weekend; Mon 01-05 08-12 4 h (14), 13-15 2 h (16) -> Mon 2026-01-05 15:00
    assert CAL.due(vn(2025, 12, 31, 15), "2 working days") == vn(2026, 1, 5, 15)


def test_across_the_year_end_2026_2027():
    # Thu 2026-12-31 16:00 + 2 h: Thu 16-17 (1 h); Fri 2027-01-01 holiday; weekend;
    # Mon 2027-01-04 08-09 (1 h) -> 09:00
    assert CAL.due(vn(2026, 12, 31, 16), "2 working hours") == vn(2027, 1, 4, 9)


def test_a_swap_the_package_knows_works_a_saturday_2025():
    # 2025: Fri 05-02 is off, swapped against Sat 04-26, which is worked.
    assert not CAL.is_working_day(date(2025, 5, 2))
    assert CAL.is_working_day(date(2025, 4, 26))
    # Fri 04-25 16:00 + 2 h: Fri 16-17 (1 h), Sat 04-26 08-09 (1 h) -> Sat 09:00
    assert CAL.due(vn(2025, 4, 25, 16), "2 working hours") == vn(2025, 4, 26, 9)
    # Tue 04-29 16:00 + 2 h: Tue 16-17 (1 h); Wed 04-30, Thu 05-01, Fri 05-02 off; weekend;
    # Mon 05-05 08-09 (1 h)
    assert CAL.due(vn(2025, 4, 29, 16), "2 working hours") == vn(2025, 5, 5, 9)


def test_what_the_package_gives_for_the_lunar_new_year():
    # The days the law fixes, which the package computes from the lunar calendar
    # (the 2027 bridge days, if any, are announced later: they go to the config)
    tet_2026 = [date(2026, 2, d) for d in range(16, 21)]  # Mon..Fri, eve to fourth day
    tet_2027 = [date(2027, 2, d) for d in range(4, 11)]  # Thu..Wed, shifted off the weekend
    assert set(tet_2026) <= set(CAL.public_holidays(2026))
    assert set(tet_2027) <= set(CAL.public_holidays(2027))
    assert date(2025, 4, 7) in CAL.public_holidays(2025)  # Hùng Kings' day, 10th of the 3rd lunar month
    assert date(2027, 4, 16) in CAL.public_holidays(2027)
    assert CAL.days_off(date(2026, 2, 14), date(2026, 2, 22)) == [date(2026, 2, d) for d in range(14, 23)]


# ---- configured days off and make-up days


def test_configured_extra_days_off_and_make_up_days():
    # A hypothetical announcement for Tết 2027: Thu 02-11 and Fri 02-12 off as well, worked
    # back on Sat 01-30 and Sat 02-20.
    c = cal(extra_days_off=["2027-02-11", "2027-02-12"], make_up_days=["2027-01-30", "2027-02-20"])
    assert not c.is_working_day(date(2027, 2, 11)) and not c.is_working_day(date(2027, 2, 12))
    assert c.is_working_day(date(2027, 1, 30)) and c.is_working_day(date(2027, 2, 20))
    assert not CAL.is_working_day(date(2027, 1, 30))  # a plain Saturday without the config

    # Fri 01-29 16:00 + 4 h: Fri 16-17 (1 h), Sat 01-30 worked 08-11 (3 h) -> Sat 11:00
    assert c.due(vn(2027, 1, 29, 16), "4 working hours") == vn(2027, 1, 30, 11)
    assert CAL.due(vn(2027, 1, 29, 16), "4 working hours") == vn(2027, 2, 1, 11)  # Mon without it

    # Wed 02-03 10:00 + 2 working days (16 h): Wed 10-12, 13-17 (6 h); Tết Thu 02-04 .. Wed 02-10;
    #   configured: Thu 02-11, Fri 02-12 off; weekend; Mon 02-15 8 h (14); Tue 02-16 08-10 (16)
    assert c.due(vn(2027, 2, 3, 10), "2 working days") == vn(2027, 2, 16, 10)
    # without the extra days: Thu 02-11 8 h (14), Fri 02-12 08-10 (16)
    assert CAL.due(vn(2027, 2, 3, 10), "2 working days") == vn(2027, 2, 12, 10)

    # a start on a worked Saturday is working time: Sat 02-20 10:00 + 2 h = 12:00
    assert c.is_working_time(vn(2027, 2, 20, 10))
    assert c.due(vn(2027, 2, 20, 10), "2 working hours") == vn(2027, 2, 20, 12)


def test_a_configured_day_that_is_already_a_public_holiday_changes_nothing():
    # 2026-02-20 (the fourth day of Tết) is in the package already
    c = cal(extra_days_off=["2026-02-20"])
    start = vn(2026, 2, 12, 10)
    assert c.due(start, "5 working days") == CAL.due(start, "5 working days") == vn(2026, 2, 26, 10)


def test_a_configured_make_up_day_wins_over_a_public_holiday():
    # if the office is told to work Mon 2026-04-27 (Hùng Kings observed) the config says so
    c = cal(make_up_days=["2026-04-27"])
    assert c.is_working_day(date(2026, 4, 27)) and not CAL.is_working_day(date(2026, 4, 27))
    # Fri 04-24 16:00 + 2 h: Fri 16-17 (1 h), Mon 04-27 08-09 (1 h)
    assert c.due(vn(2026, 4, 24, 16), "2 working hours") == vn(2026, 4, 27, 9)


def test_other_working_weeks_and_hours_from_config():
    # Monday to Saturday, 07:30-11:30 and 13:30-17:30
    c = cal(weekdays=["mon", "tue", "wed", "thu", "fri", "sat"], hours=["13:30-17:30", "07:30-11:30"])
    # Fri 2026-03-13 17:00 + 2 h: Fri 17:00-17:30 (0.5 h), Sat 07:30-09:00 (1.5 h)
    assert c.due(vn(2026, 3, 13, 17), "2 working hours") == vn(2026, 3, 14, 9)
    assert c.periods == ((time(7, 30), time(11, 30)), (time(13, 30), time(17, 30)))  # sorted
    assert not c.is_working_time(vn(2026, 3, 14, 12))


def test_no_public_holidays_when_the_country_is_empty():
    c = cal(holidays_country="")
    assert c.is_working_day(date(2026, 1, 1)) and not CAL.is_working_day(date(2026, 1, 1))
    assert c.due(vn(2025, 12, 31, 16), "2 working hours") == vn(2026, 1, 1, 9)


def test_from_config_reads_the_repository_config_and_env_overrides():
    cfg = load_config(environ={})
    assert cfg.calendar == CalendarConfig()
    c = WorkCalendar.from_config(cfg.calendar)
    assert (c.periods, c.weekdays, c.country) == (CAL.periods, CAL.weekdays, "VN")
    assert WorkCalendar.from_config(Config().calendar).due(vn(2026, 2, 12, 10), "5 working days") == vn(2026, 2, 26, 10)

    # an INTERCHANGE_CALENDAR_* override is a comma-separated list
    env = {"INTERCHANGE_CALENDAR_EXTRA_DAYS_OFF": "2027-02-11, 2027-02-12", "INTERCHANGE_CALENDAR_WEEKDAYS": "mon,tue"}
    c = WorkCalendar.from_config(load_config(environ=env).calendar)
    assert c.extra_days_off == {date(2027, 2, 11), date(2027, 2, 12)} and c.weekdays == {0, 1}


def test_from_config_reads_toml_dates(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[calendar]\nextra_days_off = [2027-02-11, "2027-02-12"]\nmake_up_days = [2027-01-30]\n')
    c = WorkCalendar.from_config(load_config(path, environ={}).calendar)
    assert c.extra_days_off == {date(2027, 2, 11), date(2027, 2, 12)} and c.make_up_days == {date(2027, 1, 30)}


@pytest.mark.parametrize(
    "section, message",
    [
        ({"weekdays": ["mon", "funday"]}, "calendar.weekdays"),
        ({"weekdays": []}, "calendar.weekdays"),
        ({"hours": ["8-12"]}, "calendar.hours"),
        ({"hours": ["08:00-25:00"]}, "calendar.hours"),
        ({"hours": ["12:00-08:00"]}, "ends before it starts"),
        ({"hours": ["08:00-12:00", "11:00-17:00"]}, "overlap"),
        ({"hours": []}, "no working hours"),
        ({"extra_days_off": ["2026-02-30"]}, "calendar.extra_days_off"),
        ({"make_up_days": "not a date"}, "calendar.make_up_days"),
        ({"extra_days_off": ["2027-01-30"], "make_up_days": ["2027-01-30"]}, "both"),
        ({"holidays_country": "XX"}, "calendar.holidays_country"),
    ],
)
def test_bad_calendar_config_is_a_clear_error(section, message):
    with pytest.raises(ValueError, match=message) as info:
        cal(**section)
    assert str(info.value).startswith("config:")


def test_bad_arguments():
    with pytest.raises(ValueError, match="not 'N working hours'"):
        CAL.due(vn(2026, 3, 10, 10), "2 hours")
    with pytest.raises(ValueError, match="negative"):
        CAL.add(vn(2026, 3, 10, 10), -H)
    with pytest.raises(ValueError, match="aware"):
        CAL.due(datetime(2026, 3, 10, 10), "2 working hours")  # naive: whose 10:00?


# ---- is_working_time and working_time_between


@pytest.mark.parametrize(
    "moment, working",
    [
        (vn(2026, 3, 10, 7, 59, 59), False),
        (vn(2026, 3, 10, 8), True),  # a period includes its start ...
        (vn(2026, 3, 10, 11, 59, 59), True),
        (vn(2026, 3, 10, 12), False),  # ... and not its end
        (vn(2026, 3, 10, 12, 59), False),
        (vn(2026, 3, 10, 13), True),
        (vn(2026, 3, 10, 16, 59, 59), True),
        (vn(2026, 3, 10, 17), False),
        (vn(2026, 3, 14, 10), False),  # Saturday
        (vn(2026, 2, 17, 10), False),  # Tết
        (vn(2025, 4, 26, 10), True),  # Saturday worked for the 2025-05-02 swap
        (datetime(2026, 3, 10, 3, tzinfo=UTC), True),  # 10:00 in Vietnam
        (datetime(2026, 3, 10, 10, tzinfo=UTC), False),  # 17:00 in Vietnam
    ],
)
def test_is_working_time(moment, working):
    assert CAL.is_working_time(moment) is working


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (vn(2026, 3, 10, 11), vn(2026, 3, 10, 14), 2 * H),  # 11-12 and 13-14, lunch excluded
        (vn(2026, 3, 10, 12, 10), vn(2026, 3, 10, 12, 50), timedelta(0)),  # all lunch
        (vn(2026, 3, 14, 9), vn(2026, 3, 15, 18), timedelta(0)),  # a weekend
        (vn(2026, 3, 9, 0), vn(2026, 3, 16, 0), 40 * H),  # a whole week
        # Fri 02-13 16:00 .. Mon 02-23 09:00: Fri 16-17, Mon 08-09; Tết and two weekends between
        (vn(2026, 2, 13, 16), vn(2026, 2, 23, 9), 2 * H),
        # the year end of test_across_the_year_end_2025_2026: 16 h
        (vn(2025, 12, 31, 15), vn(2026, 1, 5, 15), 16 * H),
        # 06:00 to 20:00 counts only the working hours: 8 h
        (vn(2026, 3, 10, 6), vn(2026, 3, 10, 20), 8 * H),
        # in UTC: 02:00Z .. 09:30Z is 09:00 .. 16:30 in Vietnam: 3 h + 3.5 h
        (datetime(2026, 3, 10, 2, tzinfo=UTC), datetime(2026, 3, 10, 9, 30, tzinfo=UTC), timedelta(hours=6.5)),
    ],
)
def test_working_time_between(a, b, expected):
    assert CAL.working_time_between(a, b) == expected
    assert CAL.working_time_between(b, a) == -expected
    assert CAL.working_time_between(a, a) == timedelta(0)


# ---- lazy loading


def test_public_holidays_are_loaded_once_per_year_on_demand(monkeypatch):
    import holidays

    calls = []
    real = holidays.country_holidays

    def counting(country, *args, **kwargs):
        calls.append(kwargs.get("years"))
        return real(country, *args, **kwargs)

    monkeypatch.setattr(holidays, "country_holidays", counting)
    c = WorkCalendar()
    assert calls == []  # nothing loaded before it is needed
    for _ in range(3):
        assert c.due(vn(2025, 12, 31, 15), "2 working days") == vn(2026, 1, 5, 15)
    assert sorted(calls) == [2025, 2026]  # each year once, though the deadline crossed the year end
    c.is_working_day(date(2026, 7, 1))
    assert sorted(calls) == [2025, 2026]


def test_a_calendar_can_be_pickled_for_worker_processes():
    c = cal(make_up_days=["2027-01-30"])
    c.is_working_day(date(2027, 1, 1))
    copy = pickle.loads(pickle.dumps(c))
    assert copy.due(vn(2027, 1, 29, 16), "4 working hours") == vn(2027, 1, 30, 11)


# ---- properties

_STARTS = st.datetimes(
    min_value=datetime(2024, 12, 1), max_value=datetime(2027, 12, 31, 23, 59), timezones=st.sampled_from([VN_TZ, UTC])
)
_PROPS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow])


def _is_end_of_a_working_period(moment: datetime) -> bool:
    local = moment.astimezone(VN_TZ)
    return CAL.is_working_day(local.date()) and any(local.time() == b for _, b in CAL.periods)


@_PROPS
@given(start=_STARTS, n=st.integers(0, 60), more=st.integers(0, 30))
def test_due_in_working_hours_properties(start, n, more):
    due = CAL.due(start, f"{n} working hours")
    # a working moment, or the end of a working period (a deadline ending exactly at 17:00)
    assert CAL.is_working_time(due) or _is_end_of_a_working_period(due)
    assert due >= start  # never before the start
    assert CAL.working_time_between(start, due) == n * H  # exactly n hours of working time
    assert CAL.due(start, f"{n + more} working hours") >= due  # monotonic in n
    if n:
        # and not later than needed: a minute earlier, less than n hours had passed
        assert CAL.working_time_between(start, due - timedelta(minutes=1)) < n * H


@_PROPS
@given(a=_STARTS, ab=st.integers(0, 60 * 24 * 60), bc=st.integers(0, 60 * 24 * 60))
def test_working_time_between_adds_up(a, ab, bc):
    b = a + timedelta(minutes=ab)  # up to 60 days apart
    c = b + timedelta(minutes=bc)
    assert CAL.working_time_between(a, c) == CAL.working_time_between(a, b) + CAL.working_time_between(b, c)
    assert timedelta(0) <= CAL.working_time_between(a, c) <= c - a

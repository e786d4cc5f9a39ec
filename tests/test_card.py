"""The e-HI card, pure (interchange.records.card): each rule of validity, benefit level, the five
continuous years and the first-contact facility, with the expected values worked out by hand
from the rules in the module's docstring (and docs/hi-card.md)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime

import pytest

from interchange.records.book import DeclaredChange, Identity, UnitRef
from interchange.records.card import (
    CardRecords,
    FacilityRegistration,
    build_card,
    matches,
    normal_name,
    read_birth,
)
from tests.helpers import OTHER_UNIT, UNIT, change, ref

WHO = Identity("001090123456", "0112345678", "Nguyễn Văn Phúc", date(1990, 3, 15), 1, None)
A = UnitRef(UNIT.mst, UNIT.code, UNIT.name)
B = UnitRef(OTHER_UNIT.mst, OTHER_UNIT.code, OTHER_UNIT.name)
P = ref("001090123456")


def row(n: int, pa: str, start: str, unit: UnitRef = A, **kw) -> DeclaredChange:
    """The n-th change received (day n of Jan 2025, so that they apply in order)."""
    return DeclaredChange(change(n, P, pa, start, **kw), f"d{n:02d}", datetime(2025, 1, n, tzinfo=UTC), unit)


def card(*changes: DeclaredChange, on: str, facilities=()):
    return build_card(CardRecords(1, WHO, list(changes), list(facilities)), date.fromisoformat(on))


def brief(c) -> tuple:
    return (c.status, c.valid_from and c.valid_from.isoformat(), c.valid_to and c.valid_to.isoformat(), c.open,
            c.level, c.percent)  # fmt: skip


def test_an_open_increase_makes_an_open_card_at_the_default_level():
    c = card(row(1, "TM", "2025-11"), on="2026-02-14")
    assert brief(c) == ("valid", "2025-11-01", None, True, "4", 80)
    assert (c.unit, c.paid_by) == (A, "unit")
    # 60 months from 11/2025: the 60th is 10/2030, so five continuous years on 1 Nov 2030.
    assert c.five_years_at == date(2030, 11, 1)
    assert c.to_json()["benefit"] == {"code": "4", "percent": 80}


def test_before_the_first_covered_month_the_card_is_not_valid_yet():
    c = card(row(1, "TM", "2026-05"), on="2026-03-10")
    assert brief(c) == ("not_valid", "2026-05-01", None, True, "4", 80)


def test_a_reduction_ends_the_card_on_the_last_day_of_the_month_before_it():
    changes = (row(1, "TM", "2025-11"), row(2, "GH", "2026-02", salary=None))
    assert brief(card(*changes, on="2026-01-31")) == ("valid", "2025-11-01", "2026-01-31", False, "4", 80)
    after = card(*changes, on="2026-02-01")
    assert brief(after) == ("not_valid", "2025-11-01", "2026-01-31", False, "4", 80)
    assert after.five_years_at is None  # the participation ended after 3 months
    assert after.unit == A  # the unit that paid last


def test_an_increase_with_an_end_gives_the_end():
    c = card(row(1, "TM", "2026-01", to_month="2026-06"), on="2026-03-10")
    assert brief(c) == ("valid", "2026-01-01", "2026-06-30", False, "4", 80)
    assert brief(card(row(1, "TM", "2026-01", to_month="2026-06"), on="2026-07-01"))[0] == "not_valid"


def test_a_temporary_stop_suspends_then_coverage_resumes():
    changes = (row(1, "TM", "2025-11"), row(2, "KL", "2026-03", to_month="2026-04", salary=None))
    during = card(*changes, on="2026-03-15")
    # suspended: the last run before the stop is shown
    assert brief(during) == ("suspended", "2025-11-01", "2026-02-28", False, "4", 80)
    back = card(*changes, on="2026-05-01")
    assert brief(back) == ("valid", "2026-05-01", None, True, "4", 80)
    # 4 months (11/2025-02/2026), a gap of 2 (kept continuous, not counted), then 56 more from
    # 05/2026: the 56th is 12/2030.
    assert back.five_years_at == date(2031, 1, 1) == during.five_years_at


@pytest.mark.parametrize(("pa", "status"), [("KL", "suspended"), ("OF", "suspended"), ("GH", "not_valid"),
                                            ("GC", "not_valid"), ("SB", "not_valid")])  # fmt: skip
def test_an_open_decrease_pauses_for_leave_and_ends_otherwise(pa, status):
    c = card(row(1, "TM", "2025-11"), row(2, pa, "2026-03", salary=None), on="2026-06-01")
    assert (c.status, c.valid_to) == (status, date(2026, 2, 28))


def test_maternity_leave_keeps_the_card_valid_paid_by_the_si_fund():
    changes = (row(1, "TM", "2025-11"), row(2, "TS", "2026-03", to_month="2026-08", salary=None))
    c = card(*changes, on="2026-04-20")
    assert brief(c) == ("valid", "2025-11-01", None, True, "4", 80)
    assert (c.unit, c.paid_by) == (A, "si_fund")
    assert card(*changes, on="2026-09-01").paid_by == "unit"


def test_benefit_level_declared_and_changed_by_an_adjustment():
    changes = (row(1, "TM", "2025-11", benefit_level="3"), row(2, "DC", "2026-01", salary=None, benefit_level="2"))
    assert brief(card(*changes, on="2025-12-31"))[4:] == ("3", 95)
    assert brief(card(*changes, on="2026-01-01"))[4:] == ("2", 100)
    # an adjustment without MucHuong changes no level; one with DenThang only its months
    changes = (row(1, "TM", "2025-11"), row(2, "DC", "2026-01", to_month="2026-01", benefit_level="1"),
               row(3, "DC", "2026-02", salary=None))  # fmt: skip
    assert [card(*changes, on=d).level for d in ("2025-12-01", "2026-01-01", "2026-02-01")] == ["4", "1", "4"]


@pytest.mark.parametrize(("code", "percent"), [("1", 100), ("2", 100), ("3", 95), ("4", 80), ("5", 100)])
def test_each_benefit_level_code(code, percent):
    assert card(row(1, "TM", "2025-11", benefit_level=code), on="2026-01-01").percent == percent


def test_two_units_at_once_the_higher_level_pays_and_a_move_keeps_the_run():
    changes = (row(1, "TM", "2025-01"), row(2, "TM", "2025-06", B, benefit_level="2", to_month="2025-08"))
    both = card(*changes, on="2025-07-01")
    assert (both.unit, both.level, both.valid_from) == (B, "2", date(2025, 1, 1))
    assert (card(*changes, on="2025-09-01").unit, card(*changes, on="2025-09-01").level) == (A, "4")
    # A then B without a gap: one run, one card
    moved = (row(1, "TM", "2025-01"), row(2, "GH", "2025-06", salary=None), row(3, "TM", "2025-06", B))
    c = card(*moved, on="2025-10-01")
    assert (c.status, c.valid_from, c.unit, c.open) == ("valid", date(2025, 1, 1), B, True)


def test_a_later_change_overrides_an_earlier_one_for_its_months():
    # A late increase ("truy đóng") covers months a reduction had ended: known now, valid then.
    changes = (row(1, "TM", "2025-01"), row(2, "GH", "2025-04", salary=None), row(3, "TM", "2025-04", to_month="2025-05"))
    assert brief(card(*changes, on="2025-05-20")) == ("valid", "2025-01-01", "2025-05-31", False, "4", 80)


def test_five_years_count_through_gaps_of_three_months_and_break_at_four():
    three = (row(1, "TM", "2020-01", to_month="2020-12"), row(2, "TM", "2021-04"))
    # 12 months of 2020, gap 01-03/2021, then 48 more from 04/2021: the 48th is 03/2025.
    assert card(*three, on="2021-06-01").five_years_at == date(2025, 4, 1)
    four = (row(1, "TM", "2020-01", to_month="2020-12"), row(2, "TM", "2021-05"))
    # a gap of 4 months: counted from 05/2021, the 60th month is 04/2026.
    assert card(*four, on="2021-06-01").five_years_at == date(2026, 5, 1)
    # reached already: the date stays in the past
    assert card(row(1, "TM", "2015-01"), on="2026-01-01").five_years_at == date(2020, 1, 1)


def test_no_contributions_no_card_data():
    c = card(on="2026-01-01")
    assert brief(c) == ("not_valid", None, None, False, None, None)
    assert (c.unit, c.five_years_at, c.paid_by) == (None, None, None)


def test_the_facility_is_the_newest_registration_known_on_the_day():
    regs = [FacilityRegistration(datetime(2025, 3, 1, 2, tzinfo=UTC), "01", "01001"),
            FacilityRegistration(datetime(2026, 1, 10, 18, tzinfo=UTC), "79", "79024")]  # 11 Jan 01:00 in Vietnam
    assert card(facilities=regs, on="2025-02-28").facility is None
    assert card(facilities=regs, on="2026-01-10").facility.code == "01001"
    assert card(facilities=list(reversed(regs)), on="2026-01-11").to_json()["facility"] == {"province": "79",
                                                                                         "code": "79024"}


def test_names_and_birth_dates_are_compared_normalised():
    nfd = unicodedata.normalize("NFD", "Nguyễn Văn Phúc")
    for name in ("Nguyễn Văn Phúc", "  NGUYỄN   văn  PHÚC ", nfd, "nguyễn\tvăn phúc"):
        assert matches(WHO, name, date(1990, 3, 15)), name
    for name in ("Nguyen Van Phuc", "Nguyễn Văn Phú", "Nguyễn Văn Phúcc"):
        assert not matches(WHO, name, date(1990, 3, 15)), name
    assert not matches(WHO, "Nguyễn Văn Phúc", date(1990, 3, 16))
    assert not matches(Identity("001090123456", None, "Nguyễn Văn Phúc", None, None, None), "Nguyễn Văn Phúc",
                       date(1990, 3, 15))  # no birth date held: nothing can be confirmed  # fmt: skip
    assert normal_name("ĐẶNG  Thị") == "đặng thị"
    assert read_birth("15/03/1990") == read_birth("1990-03-15") == date(1990, 3, 15)
    for bad in ("1990-3-15", "31/02/1990", "15.03.1990", ""):
        with pytest.raises(ValueError):
            read_birth(bad)

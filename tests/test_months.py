"""interchange.months.Month: parsing and writing both ways, order, arithmetic and ranges,
checked against `datetime.date` on arbitrary months (hypothesis)."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interchange.months import Month

months = st.builds(Month, st.integers(1, 9999), st.integers(1, 12))
steps = st.integers(-5000, 5000)


@given(months)
def test_wire_and_iso_round_trip(m):
    assert Month.parse_wire(m.wire) == m
    assert Month.parse_iso(m.iso) == m
    assert Month.parse(m.wire) == Month.parse(m.iso) == Month.parse(f" {m.iso}\n") == m
    assert m.wire == f"{m.month:02d}/{m.year:04d}" and m.iso == f"{m.year:04d}-{m.month:02d}"
    assert str(m) == m.wire


@given(months, months)
def test_order_is_that_of_the_first_days_and_of_the_iso_strings(a, b):
    assert (a < b) == (a.first_day < b.first_day) == (a.iso < b.iso)
    assert (a == b) == (a.first_day == b.first_day)
    if a == b:
        assert hash(a) == hash(b)


@given(st.dates())
def test_of_a_day(day):
    m = Month.of(day)
    assert m.first_day == day.replace(day=1)
    if m < Month(9999, 12):
        assert day < m.next().first_day


@given(months, steps, steps)
def test_plus_adds_up(m, a, b):
    try:
        total = m.plus(a + b)
    except ValueError:
        return  # beyond the years 1-9999
    try:
        assert m.plus(a).plus(b) == total
    except ValueError:
        pass  # the middle step went out of range
    assert total.months_since(m) == a + b
    assert (total > m) == (a + b > 0)


@given(months)
def test_next_and_previous(m):
    if m < Month(9999, 12):
        n = m.next()
        assert n > m and n.previous() == m and n.months_since(m) == 1
        assert (n.year, n.month) == ((m.year + 1, 1) if m.month == 12 else (m.year, m.month + 1))
        assert n.first_day == date.fromordinal(m.first_day.replace(day=28).toordinal() + 4).replace(day=1)


@given(months, st.integers(0, 40))
def test_span_is_every_month_in_order(first, length):
    if first.index + length > Month(9999, 12).index:
        return
    last = first.plus(length)
    got = list(Month.span(first, last))
    assert len(got) == length + 1 and got[0] == first and got[-1] == last
    assert all(b == a.next() for a, b in zip(got, got[1:], strict=False))
    assert list(Month.span(last, first)) == ([first] if length == 0 else [])


@given(months)
def test_index_round_trip(m):
    assert Month.from_index(m.index) == m


@pytest.mark.parametrize("text", ["13/2025", "00/2026", "1/2026", "01/26", "01-2026", "2026/01", "01/2026x",
                                  "０１/２０２６", " 01/2026", "", "01/0000", "ab/cdef"])
def test_wire_refuses(text):
    assert Month.parse_wire(text) is None


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-01", "01/2026", "2026-01 ", "0000-01", ""])
def test_iso_refuses(text):
    with pytest.raises(ValueError):
        Month.parse_iso(text)


@pytest.mark.parametrize("text", ["13/2025", "00/2026", "2026-13", "abc", "", "99999/1", "02/0000", "1/2026",
                                  "2025-1", "2025", "01/02/2025", "2025-01-01"])
def test_parse_refuses(text):
    with pytest.raises(ValueError, match="not a month"):
        Month.parse(text)


@given(st.text(max_size=10))
def test_parse_never_fails_otherwise(text):
    try:
        m = Month.parse(text)
    except ValueError:
        return
    assert isinstance(m, Month) and Month.parse(m.iso) == m


def test_invalid_months_cannot_be_made():
    for year, month in ((2026, 0), (2026, 13), (0, 1), (10_000, 1)):
        with pytest.raises(ValueError):
            Month(year, month)
    with pytest.raises(ValueError):
        Month(9999, 12).next()
    with pytest.raises(ValueError):
        Month(1, 1).previous()


def test_frozen():
    m = Month(2026, 1)
    with pytest.raises(AttributeError):
        m.year = 2027  # type: ignore[misc]

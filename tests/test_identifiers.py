"""Property-based tests of the identifier validators (interchange.identifiers)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interchange.identifiers import (
    BIRTH_YEARS,
    MST_WEIGHTS,
    PID_BIRTH,
    PID_FORMAT,
    PID_GENDER,
    PID_PROVINCE,
    PROVINCE_CODES,
    PROVINCE_CODES_2,
    check_personal_id,
    make_personal_id,
    mst_check_digit,
    mst_valid,
    personal_id_valid,
    pid_birth_year,
    pid_century_digit,
    pid_male,
    si_code_valid,
)

provinces = st.sampled_from(sorted(PROVINCE_CODES))
years = st.integers(min_value=BIRTH_YEARS.start, max_value=BIRTH_YEARS.stop - 1)
serials = st.integers(min_value=0, max_value=999_999)
digits = st.sampled_from("0123456789")


@st.composite
def people(draw):
    """(personal ID, birth year, male) of a valid person."""
    province, year, male, serial = draw(provinces), draw(years), draw(st.booleans()), draw(serials)
    return make_personal_id(province, year, male, serial), year, male


@st.composite
def msts(draw):
    """A valid 10-digit tax code (nine digits whose check digit exists)."""
    first9 = draw(st.text("0123456789", min_size=9, max_size=9).filter(lambda s: mst_check_digit(s) is not None))
    return first9 + str(mst_check_digit(first9))


# ---- personal ID ---------------------------------------------------------------------------------


def test_province_table():
    assert len(PROVINCE_CODES) == 63  # the provinces before the 2025 merger
    assert all(len(c) == 3 and c.isdigit() and "001" <= c <= "096" for c in PROVINCE_CODES)
    assert {"001", "079", "048", "096"} <= set(PROVINCE_CODES) and "003" not in PROVINCE_CODES
    assert PROVINCE_CODES_2 == {c[1:] for c in PROVINCE_CODES}


@pytest.mark.parametrize(
    "year, male, digit",
    [(1900, True, 0), (1999, False, 1), (2000, True, 2), (2099, False, 3), (2100, True, 4), (2150, False, 5),
     (2200, True, 6), (2299, False, 7), (1800, True, 8), (1899, False, 9)],
)  # fmt: skip
def test_century_digit_table(year, male, digit):
    """Circular 07/2016/TT-BCA: 0/1 1900s, 2/3 2000s, 4/5 2100s, 6/7 2200s, 8/9 1800s (even = male)."""
    assert pid_century_digit(year, male) == digit
    pid = make_personal_id("001", year, male, 1)
    assert pid[3] == str(digit) and pid_birth_year(pid) == year and pid_male(pid) == male


def test_century_digit_out_of_range():
    with pytest.raises(ValueError):
        pid_century_digit(1799, True)
    with pytest.raises(ValueError):
        pid_century_digit(2300, False)


@given(people())
def test_generated_ids_pass(person):
    pid, year, male = person
    assert len(pid) == 12 and pid.isdigit()
    assert check_personal_id(pid, birth_year=year, male=male) == []
    assert personal_id_valid(pid, birth_year=year, male=male)
    assert pid_birth_year(pid) == year and pid_male(pid) == male


@given(people(), st.integers(min_value=3, max_value=5), digits)
def test_any_change_of_century_or_year_digits_fails(person, position, digit):
    """Changing the 4th, 5th or 6th digit to any other digit breaks agreement with birth year or gender."""
    pid, year, male = person
    if pid[position] == digit:
        return
    changed = pid[:position] + digit + pid[position + 1:]
    wrong = check_personal_id(changed, birth_year=year, male=male)
    assert wrong and set(wrong) <= {PID_BIRTH, PID_GENDER}
    if position == 3 and int(digit) // 2 == int(pid[3]) // 2:  # same century, other gender
        assert wrong == [PID_GENDER]
    elif position > 3:
        assert wrong == [PID_BIRTH]


@given(people(), st.text("0123456789", min_size=3, max_size=3).filter(lambda c: c not in PROVINCE_CODES))
def test_bad_province_fails(person, province):
    pid, year, male = person
    assert check_personal_id(province + pid[3:], birth_year=year, male=male) == [PID_PROVINCE]


@given(st.one_of(
    st.text("0123456789", max_size=11),
    st.text("0123456789", min_size=13, max_size=20),
    st.text(min_size=12, max_size=12).filter(lambda s: not (s.isascii() and s.isdigit())),
))  # fmt: skip
def test_malformed_ids_fail_on_format_alone(text):
    assert check_personal_id(text, birth_year=1990, male=True) == [PID_FORMAT]


def test_non_ascii_digits_are_not_digits():
    assert check_personal_id("٠٠١٠٩٠١٢٣٤٥٦") == [PID_FORMAT]  # Arabic-Indic digits pass str.isdigit
    assert not si_code_valid("０１２３４５６７８９")  # full-width


def test_checks_without_birth_or_gender():
    pid = make_personal_id("079", 1985, False, 123456)
    assert check_personal_id(pid) == []
    assert check_personal_id(pid, birth_year=1986) == [PID_BIRTH]
    assert check_personal_id(pid, male=True) == [PID_GENDER]
    assert check_personal_id("003" + pid[3:], birth_year=1986, male=True) == [PID_PROVINCE, PID_BIRTH, PID_GENDER]


# ---- SI code -------------------------------------------------------------------------------------


@given(st.text("0123456789", min_size=10, max_size=10))
def test_si_codes_of_ten_digits_pass(code):
    assert si_code_valid(code)


@given(st.text(max_size=16).filter(lambda s: not (len(s) == 10 and s.isascii() and s.isdigit())))
def test_other_si_codes_fail(code):
    assert not si_code_valid(code)


# ---- MST -----------------------------------------------------------------------------------------


def test_mst_known_values():
    assert mst_valid("0100109106")  # a published tax code
    assert mst_valid("0101234565") and not mst_valid("0101234568")
    assert mst_valid("0101234565-001")
    for bad in ("0101234565-", "0101234565-01", "0101234565-0001", "0101234565-abc", "010123456", "01012345650"):
        assert not mst_valid(bad), bad


@given(msts())
def test_valid_mst_passes_with_and_without_branch(mst):
    assert mst_valid(mst)
    assert mst_valid(mst + "-001") and mst_valid(mst + "-999")
    check = 10 - sum(int(d) * w for d, w in zip(mst[:9], MST_WEIGHTS, strict=True)) % 11
    assert int(mst[9]) == check


@given(msts(), st.integers(min_value=0, max_value=9), digits)
def test_any_single_digit_change_of_mst_fails(mst, position, digit):
    """Weights are all non-zero mod 11 and a digit moves by less than 11: one changed digit is caught."""
    if mst[position] == digit:
        return
    assert not mst_valid(mst[:position] + digit + mst[position + 1:])


@given(msts(), st.integers(min_value=0, max_value=8))
def test_adjacent_transposition_of_mst_fails(mst, position):
    """Neighbouring weights differ by a non-multiple of 11, so a swap of two different digits is caught."""
    a, b = mst[position], mst[position + 1]
    if a == b:
        return
    swapped = mst[:position] + b + a + mst[position + 2:]
    assert not mst_valid(swapped)


@settings(max_examples=300)
@given(st.text("0123456789", min_size=9, max_size=9))
def test_check_digit_is_a_digit_or_none(first9):
    check = mst_check_digit(first9)
    remainder = sum(int(d) * w for d, w in zip(first9, MST_WEIGHTS, strict=True)) % 11
    assert check == (None if remainder == 0 else 10 - remainder)


def test_check_digit_rejects_bad_input():
    for bad in ("12345678", "1234567890", "12345678a"):
        with pytest.raises(ValueError):
            mst_check_digit(bad)

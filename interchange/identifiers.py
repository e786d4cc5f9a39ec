"""Identifier checks shared by the rules, the registration checks and the sample generators."""

from __future__ import annotations

MST_WEIGHTS = (31, 29, 23, 19, 17, 13, 7, 5, 3)


def mst_check_digit(first9: str) -> int | None:
    """The 10th digit of a tax code whose first nine digits are `first9`.

    check = 10 - (sum of digit x weight mod 11). When the remainder is 0 the formula gives
    10, which is not a digit: no tax code exists with those nine digits (the tax authority
    does not issue them), so this returns None. (A remainder of 10 gives check 0, a valid
    digit.) "Check 11" cannot occur since the remainder is never negative.
    """
    if len(first9) != 9 or not first9.isdigit():
        raise ValueError(f"need nine digits, got {first9!r}")
    check = 10 - sum(int(d) * w for d, w in zip(first9, MST_WEIGHTS, strict=True)) % 11
    return check if check < 10 else None


def mst_valid(mst: str) -> bool:
    """True when `mst` is 10 digits (optionally `-NNN`) with a correct check digit."""
    head, _, branch = mst.partition("-")
    if len(head) != 10 or not head.isdigit() or (branch and (len(branch) != 3 or not branch.isdigit())):
        return False
    return mst_check_digit(head[:9]) == int(head[9])

"""The records of an accepted dossier travel from a worker process to the server pickled; the
record types pickle as their constructors' arguments (`pickled_as_arguments`), Month as its two
numbers. What comes back must equal what went, field for field, defaults and nesting included."""

from __future__ import annotations

import pickle
from dataclasses import fields
from datetime import date
from decimal import Decimal

import pytest

from interchange.months import Month
from interchange.records import model
from interchange.records.model import BenefitClaim, ContributionChange, PersonalDataChange, PersonRef

PERSON = PersonRef("012345678901", "0123456789", "Nguyễn Văn A", date(1990, 1, 31), 0, "VN")
EXAMPLES = [
    Month(2026, 12),
    PERSON,
    PersonRef(None, "0123456789", "B"),  # defaults
    ContributionChange("/D02-TS/NoiDung/LaoDong[1]", 1, PERSON, "TM", model.INCREASE, Month(2026, 1), None,
                       "KS", None, Decimal("4.65"), {"PhuCapCV": Decimal("0.2")}, Decimal("10.5"), "01", "x", "3"),
    ContributionChange("/x", 2, PERSON, "GH", model.DECREASE, Month(2025, 12), Month(2026, 2), None, None, None),
    PersonalDataChange("/TK1-TS/x", 1, PERSON, {"DanToc": "01"}, "Noi dung"),
    BenefitClaim("/M01B-HSB/x", 1, PERSON, "CheDoOmDau", "PhatSinh", "1", date(2026, 1, 2), None, 3, {"a": "b"}),
]


@pytest.mark.parametrize("value", EXAMPLES, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_record_comes_back_equal(value, protocol):
    back = pickle.loads(pickle.dumps(value, protocol))
    assert type(back) is type(value) and back == value
    for f in fields(value):
        assert getattr(back, f.name) == getattr(value, f.name)


def test_a_month_comes_back_checked():
    # built again through its constructor: a pickle cannot smuggle in a month that does not exist
    forged = pickle.dumps(Month(2026, 1)).replace(b"K\x01", b"K\x0d")
    with pytest.raises(ValueError, match="no such month"):
        pickle.loads(forged)

"""Shared field readers of the rule layer: the texts of a form's rows, and dates, birth dates,
months and amounts as declared (cached: a large form repeats the same few values), with the
reasons a value is refused, in English and Vietnamese."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from lxml import etree

from interchange.months import Month
from interchange.rules import catalogue as cat


def strip(text: str | None) -> str:
    """An element's text, stripped; "" when empty."""
    return text.strip() if text else ""


def line_of(row: etree._Element, tag: str) -> int | None:
    """The source line of the row's child `tag`, or of the row when it has none."""
    el = row.find(tag)
    return el.sourceline if el is not None else row.sourceline


def rows(root: etree._Element, list_path: str) -> Iterator[tuple[str, etree._Element]]:
    """(xpath, row) of each LaoDong under `list_path`, the XPath positional as in SPEC §4."""
    parent = root.find(list_path)
    if parent is None:
        return
    base = f"/{root.tag}/{list_path}/LaoDong"
    for i, row in enumerate(parent.iterchildren("LaoDong"), 1):
        yield f"{base}[{i}]", row


def children(row: etree._Element) -> dict:
    """A row's children's texts by tag (small forms; the D02-TS hot path reads by position)."""
    return {c.tag: c.text for c in row}


@lru_cache(maxsize=8192)
def parse_date(text: str) -> date | None:
    """dd/MM/yyyy -> date; None when empty or not a real date."""
    if len(text) != 10 or text[2] != "/" or text[5] != "/":
        return None
    dd, mm, yyyy = text[:2], text[3:5], text[6:]
    if not (dd.isdigit() and mm.isdigit() and yyyy.isdigit() and dd.isascii() and mm.isascii() and yyyy.isascii()):
        return None
    try:
        return date(int(yyyy), int(mm), int(dd))
    except ValueError:
        return None


@lru_cache(maxsize=8192)
def parse_birth(text: str) -> tuple[int, date | None] | str:
    """A birth date dd/MM/yyyy, MM/yyyy or yyyy -> (year, the date when the day is known), or the
    English reason it is not valid (a key of REASONS)."""
    parts = text.split("/")
    if not text or not all(p.isascii() and p.isdigit() for p in parts) or [len(p) for p in parts] not in (
        [2, 2, 4], [2, 4], [4],
    ):
        return "not dd/MM/yyyy, MM/yyyy or yyyy"
    year = int(parts[-1])
    if len(parts) == 3:
        day = parse_date(text)
        if day is None:
            return "no such day"
        return year, day
    if len(parts) == 2 and not 1 <= int(parts[0]) <= 12:
        return "no such month"
    return year, None


@lru_cache(maxsize=4096)
def parse_month(text: str) -> Month | None:
    """A declared month MM/yyyy, from 01/1995 (catalogue.FIRST_MONTH); None otherwise."""
    month = Month.parse_wire(text)
    if month is None or month < cat.FIRST_MONTH:
        return None
    return month


def amount(text: str) -> Decimal | None | str:
    """An amount as declared -> Decimal, None when empty, the text itself when not a number."""
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return text
    return value if value.is_finite() else text


NOT_A_DATE = "not a real date dd/MM/yyyy"
REASONS = {  # English reason -> Vietnamese
    "not dd/MM/yyyy, MM/yyyy or yyyy": "không đúng dạng dd/MM/yyyy, MM/yyyy hoặc yyyy",
    "no such day": "không có ngày này",
    "no such month": "không có tháng này",
    "before 1900": "trước năm 1900",
    "after the dossier's date": "sau ngày lập hồ sơ",
    NOT_A_DATE: "không phải ngày có thật dạng dd/MM/yyyy",
}

"""The rules every list of people shares: a row's person (birth date, gender, personal ID, SI
code, at least one identifier) and the uniqueness of STT within a list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from lxml import etree

from interchange.identifiers import (
    PID_BIRTH,
    PID_FORMAT,
    PID_GENDER,
    PID_PROVINCE,
    check_personal_id,
    pid_birth_year,
    pid_male,
    si_code_valid,
)
from interchange.records.model import PersonRef
from interchange.rules.context import Context
from interchange.rules.parsing import REASONS, line_of, parse_birth


@dataclass(frozen=True)
class PersonTags:
    """Where a form keeps a person's identifiers (None: the form has no such field)."""

    pid: str
    si: str
    birth: str | None = None
    gender: str | None = None


def check_person(
    ctx: Context, form: str, xp: str, row: etree._Element, tags: PersonTags,
    name: str, pid: str, si: str, birth: str = "", gender_text: str = "",
) -> PersonRef:
    """The person a row names (values stripped), with the identity rules applied."""
    out = ctx.out
    birth_year = birth_day = male = gender = None
    if tags.birth is not None:
        birth_year, birth_day = _check_birth(ctx, form, xp, row, tags.birth, birth)
    if tags.gender is not None:
        if gender_text == "1" or gender_text == "0":
            gender, male = int(gender_text), gender_text == "1"
        else:
            out.add("R-GENDER", form=form, xpath=f"{xp}/{tags.gender}", line=line_of(row, tags.gender),
                    value=gender_text)
    if pid:
        _check_pid(ctx, form, xp, row, tags.pid, pid, birth, birth_year, gender, male)
    if si and not si_code_valid(si):
        out.add("R-SI-FORMAT", form=form, xpath=f"{xp}/{tags.si}", line=line_of(row, tags.si), value=si)
    if not pid and not si:
        out.add("R-PERSON-ID-MISSING", form=form, xpath=xp, line=row.sourceline, value=None,
                name=name or "(?)", pid_field=tags.pid, si_field=tags.si)
    return PersonRef(pid or None, si or None, name, birth_day, gender)


def _check_birth(
    ctx: Context, form: str, xp: str, row: etree._Element, tag: str, birth: str
) -> tuple[int | None, date | None]:
    """(year, day) of a declared birth date; (None, None) when it breaks R-BIRTH-DATE."""
    parsed = parse_birth(birth)
    if isinstance(parsed, str):
        reason = parsed
    else:
        birth_year, birth_day = parsed
        reason = None
        if birth_year < 1900:
            reason = "before 1900"
        elif ctx.created is not None and (birth_day or date(birth_year, 1, 1)) > ctx.created:
            reason = "after the dossier's date"
    if reason:
        ctx.out.add("R-BIRTH-DATE", form=form, xpath=f"{xp}/{tag}", line=line_of(row, tag), value=birth,
                    reason_en=reason, reason_vi=REASONS[reason])
        return None, None
    return birth_year, birth_day


def _check_pid(
    ctx: Context, form: str, xp: str, row: etree._Element, tag: str, pid: str, birth: str,
    birth_year: int | None, gender: int | None, male: bool | None,
) -> None:
    wrong = check_personal_id(pid, birth_year=birth_year, male=male)
    if not wrong:
        return
    out = ctx.out
    where = {"form": form, "xpath": f"{xp}/{tag}", "line": line_of(row, tag), "value": pid}
    if PID_FORMAT in wrong:
        out.add("R-PID-FORMAT", **where)
    if PID_PROVINCE in wrong:
        out.add("R-PID-PROVINCE", **where, province=pid[:3])
    if PID_BIRTH in wrong:
        out.add("R-PID-BIRTH", **where, id_year=pid_birth_year(pid), birth=birth)
    if PID_GENDER in wrong:
        id_male = pid_male(pid)
        out.add("R-PID-GENDER", **where, gender=gender,
                id_gender_vi="nam" if id_male else "nữ", id_gender_en="man" if id_male else "woman",
                gender_vi="nam" if male else "nữ", gender_en="male" if male else "female")


class SttCheck:
    """STT unique within one list."""

    def __init__(self, ctx: Context, form: str):
        self.ctx, self.form, self.seen = ctx, form, {}

    def __call__(self, xp: str, row: etree._Element, text: str) -> int:
        """The row's STT as a number (0 when not one), R-STT-DUP when an earlier row has it."""
        first = self.seen.get(text)
        if first is None:
            self.seen[text] = xp
        else:
            self.ctx.out.add("R-STT-DUP", form=self.form, xpath=f"{xp}/STT", line=line_of(row, "STT"), value=text,
                             first_xpath=first)
        return stt_number(text)


def stt_number(text: str) -> int:
    return int(text) if text.isascii() and text.isdigit() else 0

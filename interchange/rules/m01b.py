"""The rules of M01B-HSB (benefit claims: sickness, maternity, convalescence): the review round,
each claim's group and period, and its records: one `BenefitClaim` per row."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from lxml import etree

from interchange.records.model import BenefitClaim
from interchange.rules import catalogue as cat
from interchange.rules.catalogue import M01B
from interchange.rules.context import Context
from interchange.rules.parsing import NOT_A_DATE, REASONS, amount, children, line_of, parse_date, rows, strip
from interchange.rules.people import PersonTags, SttCheck, check_person

_PERSON_TAGS = PersonTags("SoCMND", "SoBHXH")
_PERSON_FIELDS = frozenset(("STT", "MaNhomHuong", "SoBHXH", "SoCMND", "HoTen", "TuNgay", "DenNgay", "TongSoNgay"))


def judge_m01b(root: etree._Element, ctx: Context) -> None:
    out = ctx.out
    dot_el = root.find("ThongTinKhac/DotXetDuyet")
    dot = strip(dot_el.text) if dot_el is not None else ""
    if dot and not _compact_date_ok(dot):
        out.add("R-M01B-DOT", form=M01B, xpath=f"/{root.tag}/ThongTinKhac/DotXetDuyet", line=dot_el.sourceline,
                value=dot)
    for kind in cat.BENEFIT_KINDS:
        for regime, groups in cat.BENEFIT_GROUPS.items():
            stt = SttCheck(ctx, M01B)  # rows are numbered within each list
            for xp, row in rows(root, f"NoiDung/{kind}/{regime}"):
                v = children(row)
                stt_n = stt(xp, row, strip(v.get("STT")))
                person = check_person(ctx, M01B, xp, row, _PERSON_TAGS, strip(v.get("HoTen")),
                                      strip(v.get("SoCMND")), strip(v.get("SoBHXH")))
                group = strip(v.get("MaNhomHuong"))
                if group not in groups:
                    out.add("R-M01B-GROUP", form=M01B, xpath=f"{xp}/MaNhomHuong", line=line_of(row, "MaNhomHuong"),
                            value=group, regime=regime, known=", ".join(sorted(groups)))
                start, end, days = _claim_period(ctx, xp, row, v)
                data = {k: t for k, text in v.items()
                        if isinstance(k, str) and k not in _PERSON_FIELDS and (t := strip(text))}
                ctx.extracted.benefit_claims.append(BenefitClaim(
                    xpath=xp, stt=stt_n, person=person, regime=regime, kind=kind, group=group or None,
                    from_date=start, to_date=end, days=days, data=data,
                ))  # fmt: skip


def _compact_date_ok(text: str) -> bool:
    return len(text) == 8 and parse_date(f"{text[6:]}/{text[4:6]}/{text[:4]}") is not None


def _claim_period(ctx: Context, xp: str, row: etree._Element, v: dict) -> tuple[date | None, date | None, int | None]:
    out = ctx.out
    dates: dict[str, date | None] = {}
    for tag in ("TuNgay", "DenNgay", "TuNgayDuyetTruoc"):
        text = strip(v.get(tag))
        dates[tag] = parse_date(text) if text else None
        if text and dates[tag] is None:
            out.add("R-M01B-DATE", form=M01B, xpath=f"{xp}/{tag}", line=line_of(row, tag), value=text, field=tag,
                    reason_vi=REASONS[NOT_A_DATE], reason_en=NOT_A_DATE)
    start_text, end_text = strip(v.get("TuNgay")), strip(v.get("DenNgay"))
    start, end = dates["TuNgay"], dates["DenNgay"]
    if bool(start_text) != bool(end_text):
        missing = "DenNgay" if start_text else "TuNgay"
        out.add("R-M01B-DATE", form=M01B, xpath=f"{xp}/{missing}", line=line_of(row, missing), value="",
                field=missing, reason_vi=f"phải khai cùng {'TuNgay' if missing == 'DenNgay' else 'DenNgay'}",
                reason_en=f"it must be given with {'TuNgay' if missing == 'DenNgay' else 'DenNgay'}")
    span = None
    if start and end:
        if end < start:
            out.add("R-M01B-DATE-ORDER", form=M01B, xpath=f"{xp}/DenNgay", line=line_of(row, "DenNgay"),
                    value=end_text, from_date=start_text)
        else:
            span = (end - start).days + 1
    days, reason = _claim_days(strip(v.get("TongSoNgay")), start_text, end_text, span, bool(start and end))
    if reason:
        out.add("R-M01B-DAYS", form=M01B, xpath=f"{xp}/TongSoNgay", line=line_of(row, "TongSoNgay"),
                value=strip(v.get("TongSoNgay")), reason_vi=reason[0], reason_en=reason[1])
    return start, end, days


def _claim_days(
    days_text: str, start_text: str, end_text: str, span: int | None, dated: bool
) -> tuple[int | None, tuple[str, str] | None]:
    """TongSoNgay as a number of days, and why it breaks R-M01B-DAYS (Vietnamese, English)."""
    days = None
    reason = None
    if days_text:
        value = amount(days_text)
        if not isinstance(value, Decimal) or value != value.to_integral_value() or value < 1:
            reason = ("phải là số nguyên dương", "it must be a positive whole number")
        else:
            days = int(value)
            if span is not None and days > span:
                reason = (f"nhiều hơn {span} ngày từ {start_text} đến {end_text}",
                          f"more than the {span} days from {start_text} to {end_text}")
    elif dated:
        reason = ("phải khai khi có TuNgay và DenNgay", "it must be given with TuNgay and DenNgay")
    return days, reason

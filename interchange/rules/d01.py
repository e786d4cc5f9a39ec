"""The rules of D01-TS (the unit's list of salary decisions): STT, SI codes, and the issue and
effective dates of each decision. D01-TS yields no records."""

from __future__ import annotations

from lxml import etree

from interchange.identifiers import si_code_valid
from interchange.rules.catalogue import D01
from interchange.rules.context import Context
from interchange.rules.parsing import NOT_A_DATE, REASONS, children, line_of, parse_date, strip
from interchange.rules.people import SttCheck


def judge_d01(root: etree._Element, ctx: Context) -> None:
    out = ctx.out
    stt = SttCheck(ctx, D01)
    parent = root.find("NoiDung/BangKe")
    if parent is None:
        return
    for i, row in enumerate(parent.iterchildren("ThongTin"), 1):
        xp = f"/{root.tag}/NoiDung/BangKe/ThongTin[{i}]"
        v = children(row)
        stt(xp, row, strip(v.get("STT")))
        si = strip(v.get("MasoBHXH"))
        if si and not si_code_valid(si):
            out.add("R-SI-FORMAT", form=D01, xpath=f"{xp}/MasoBHXH", line=line_of(row, "MasoBHXH"), value=si)
        issued_text, effective_text = strip(v.get("NgayBanHanh")), strip(v.get("NgayHieuLuc"))
        issued, effective = parse_date(issued_text), parse_date(effective_text)
        for tag, text, day in (("NgayBanHanh", issued_text, issued), ("NgayHieuLuc", effective_text, effective)):
            if text and day is None:
                out.add("R-D01-DATE", form=D01, xpath=f"{xp}/{tag}", line=line_of(row, tag), value=text, field=tag,
                        reason_vi=REASONS[NOT_A_DATE], reason_en=NOT_A_DATE)
        if issued and effective and effective < issued:
            out.add("R-D01-DATE", form=D01, xpath=f"{xp}/NgayHieuLuc", line=line_of(row, "NgayHieuLuc"),
                    value=effective_text, field="NgayHieuLuc", reason_vi=f"trước ngày ban hành {issued_text}",
                    reason_en=f"before the issue date {issued_text}")

"""The rules of TK1-TS (a participant's registration or change of personal data), and its
records: one `PersonalDataChange` per row."""

from __future__ import annotations

from lxml import etree

from interchange.identifiers import PROVINCE_CODES_2
from interchange.records.model import PersonalDataChange, PersonRef
from interchange.rules import catalogue as cat
from interchange.rules.catalogue import TK1
from interchange.rules.context import Context
from interchange.rules.parsing import children, line_of, rows, strip
from interchange.rules.people import PersonTags, SttCheck, check_person

TK1_PROVINCES = ("Matinh_KS", "Matinh_NN", "MaTinhBenhVien")
_PERSON_TAGS = PersonTags("CMND", "MasoBHXH", "NgaySinh", "GioiTinh")
_PERSON_FIELDS = frozenset(("STT", "HoTen", "NgaySinh", "GioiTinh", "QuocTich", "MasoBHXH", "CMND", "Noidung_Thaydoi"))


def judge_tk1(root: etree._Element, ctx: Context) -> None:
    out = ctx.out
    stt = SttCheck(ctx, TK1)
    for xp, row in rows(root, "NoiDung"):
        v = children(row)
        stt_n = stt(xp, row, strip(v.get("STT")))
        person = check_person(ctx, TK1, xp, row, _PERSON_TAGS, strip(v.get("HoTen")), strip(v.get("CMND")),
                              strip(v.get("MasoBHXH")), strip(v.get("NgaySinh")), strip(v.get("GioiTinh")))
        nationality = strip(v.get("QuocTich"))
        if nationality and nationality not in cat.ISO_COUNTRIES:
            out.add("R-TK1-NATIONALITY", form=TK1, xpath=f"{xp}/QuocTich", line=line_of(row, "QuocTich"),
                    value=nationality)
        ethnic = strip(v.get("DanToc"))
        if ethnic and ethnic not in cat.ETHNIC_CODES:
            out.add("R-TK1-ETHNIC", form=TK1, xpath=f"{xp}/DanToc", line=line_of(row, "DanToc"), value=ethnic,
                    reason_vi="phải là 01-55 hoặc 99", reason_en="it must be 01-55 or 99")
        elif not ethnic and nationality == "VN":
            out.add("R-TK1-ETHNIC", form=TK1, xpath=f"{xp}/DanToc", line=line_of(row, "DanToc"), value=ethnic,
                    reason_vi="người quốc tịch Việt Nam phải khai dân tộc",
                    reason_en="a Vietnamese national must declare it")
        for tag in TK1_PROVINCES:
            code = strip(v.get(tag))
            if code and code not in PROVINCE_CODES_2:
                out.add("R-TK1-PROVINCE", form=TK1, xpath=f"{xp}/{tag}", line=line_of(row, tag), value=code,
                        field=tag)
        data = {k: t for k, text in v.items() if isinstance(k, str) and k not in _PERSON_FIELDS and (t := strip(text))}
        ctx.extracted.personal_data.append(PersonalDataChange(
            xpath=xp, stt=stt_n,
            person=PersonRef(person.personal_id, person.si_code, person.name, person.birth_date, person.gender,
                             nationality or None),
            data=data, change=strip(v.get("Noidung_Thaydoi")) or None,
        ))  # fmt: skip

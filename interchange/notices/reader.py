"""Reading a ThongBao notice (SPEC §4): the one reader of the fields `notice.py` writes.

`read_notice(xml)` parses with the hardened parser and returns a `Notice`; `notice_from_root`
reads a tree already parsed (and, where it matters, already verified: signature checking
stays with the callers, and a caller that verifies reads the tree it verified). A document
that is not a ThongBao is refused with `NotANotice`, unreadable XML with `NotANotice` too
(its `problems` are the parser's).

Values are read as written; the top-level fields are stripped (an element with only
whitespace counts as absent), a `Loi`'s texts are kept exactly (GiaTri is the offending value
as declared). Times are kept as the text written and as a `datetime` when that text is ISO
8601 (a time without a zone is returned naive: callers decide what that means).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from interchange.errors import Problem, Refusal
from interchange.kinds import NOTICE_RECEIPT, NOTICE_REFUSAL, NOTICE_RESULT
from interchange.notices.notice import NS
from interchange.xmlparse import XmlLimits, parse_xml

KINDS = (NOTICE_RECEIPT, NOTICE_REFUSAL, NOTICE_RESULT)
_LAYER_STATE = {"dat": "passed", "khong_dat": "failed", "chua_chay": "not_run"}  # notice.py's, reversed


class NotANotice(ValueError):
    """The bytes are not a readable ThongBao; the message says why."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.problems = problems or []


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time as a notice writes it, or None when absent or not ISO 8601."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class NoticeProblem:
    """One `DanhSachLoi/Loi`."""

    layer: str | None  # Tang: transport | envelope | signature | schema | rule
    code: str | None  # Ma
    severity: str | None  # MucDo: error | warning
    form: str | None  # ToKhai
    xpath: str | None  # ViTri
    line: int | None  # Dong (None when absent or not a number)
    value: str | None  # GiaTri
    message_vi: str | None  # MoTa
    message_en: str | None  # MoTaEN

    def as_dict(self) -> dict:
        """The shape of `Problem.as_dict()`: missing texts as "", a missing MucDo as error."""
        return {
            "layer": self.layer, "code": self.code, "message_vi": self.message_vi or "",
            "message_en": self.message_en or "", "xpath": self.xpath or "", "line": self.line,
            "form": self.form, "value": self.value, "severity": self.severity or "error",
        }  # fmt: skip


@dataclass(frozen=True)
class Notice:
    kind: str | None  # LoaiThongBao: TIEP_NHAN | TU_CHOI | KET_QUA (as written: checked by callers)
    transaction_id: str | None  # MaGiaoDich
    so_ho_so: str | None = None  # SoHoSo
    procedure: str | None = None  # MaThuTuc
    mst: str | None = None  # MaSoThue
    unit_code: str | None = None  # MaDonVi
    ivan_code: str | None = None  # MaIVAN
    received_text: str | None = None  # ThoiGianNhan as written
    issued_text: str | None = None  # ThoiGianThongBao as written
    due_text: str | None = None  # HanTraKetQua as written
    digest: str | None = None  # BamHoSo: base64 of the hash of the bytes received
    digest_algorithm: str | None = None  # BamHoSo/@ThuatToan (SHA-256)
    result: str | None = None  # KetQua: CHAP_NHAN | KHONG_CHAP_NHAN
    layers: dict[str, str] = field(default_factory=dict)  # CacTang: layer -> passed | failed | not_run
    problems: tuple[NoticeProblem, ...] = ()  # DanhSachLoi/Loi, in order
    truncated: int = 0  # DanhSachLoi/SoLoiBiBoQua

    @property
    def received_at(self) -> datetime | None:
        return parse_time(self.received_text)

    @property
    def issued_at(self) -> datetime | None:
        return parse_time(self.issued_text)

    @property
    def due_at(self) -> datetime | None:
        return parse_time(self.due_text)


def read_notice(xml: bytes, limits: XmlLimits | None = None) -> Notice:
    """Parse (hardened: no DTD, depth and element limits) and read a notice; NotANotice if it is not one."""
    try:
        root = parse_xml(xml, limits or XmlLimits()).getroot()
    except Refusal as refusal:
        raise NotANotice(f"not readable XML: {refusal.problems[0].message_en}", refusal.problems) from None
    return notice_from_root(root)


def check_root(root: etree._Element) -> None:
    """NotANotice unless `root` is a ThongBao of this protocol's namespace."""
    if root.tag != f"{{{NS}}}ThongBao":
        raise NotANotice(f"not a notice: root element {root.tag}, expected {{{NS}}}ThongBao")


def notice_from_root(root: etree._Element) -> Notice:
    """Read the fields of a parsed ThongBao (only its own elements: a signature is not read)."""
    check_root(root)

    def text(name: str) -> str | None:
        value = root.findtext(f"{{{NS}}}{name}")
        return value.strip() if value and value.strip() else None

    bam = root.find(f"{{{NS}}}BamHoSo")
    layers = {
        el.get("Ten"): _LAYER_STATE.get(el.get("TrangThai"), el.get("TrangThai"))
        for el in root.iterfind(f"{{{NS}}}CacTang/{{{NS}}}Tang")
        if el.get("Ten")
    }
    skipped = root.findtext(f"{{{NS}}}DanhSachLoi/{{{NS}}}SoLoiBiBoQua")
    return Notice(
        kind=text("LoaiThongBao"), transaction_id=text("MaGiaoDich"), so_ho_so=text("SoHoSo"),
        procedure=text("MaThuTuc"), mst=text("MaSoThue"), unit_code=text("MaDonVi"), ivan_code=text("MaIVAN"),
        received_text=text("ThoiGianNhan"), issued_text=text("ThoiGianThongBao"), due_text=text("HanTraKetQua"),
        digest=text("BamHoSo"), digest_algorithm=bam.get("ThuatToan") if bam is not None else None,
        result=text("KetQua"), layers=layers,
        problems=tuple(_problem(loi) for loi in root.iterfind(f"{{{NS}}}DanhSachLoi/{{{NS}}}Loi")),
        truncated=_number(skipped) or 0,
    )  # fmt: skip


def _problem(loi: etree._Element) -> NoticeProblem:
    def t(name: str) -> str | None:
        return loi.findtext(f"{{{NS}}}{name}")

    return NoticeProblem(
        layer=t("Tang"), code=t("Ma"), severity=t("MucDo"), form=t("ToKhai"), xpath=t("ViTri"),
        line=_number(t("Dong")), value=t("GiaTri"),
        message_vi=t("MoTa"), message_en=t("MoTaEN"),
    )  # fmt: skip


def _number(text: str | None) -> int | None:
    """A count or line number written as ASCII digits, else None."""
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() else None

"""Reading the `Hoso` envelope (SPEC §2): unit, procedure, period and the embedded files."""

from __future__ import annotations

import binascii
from base64 import b64decode
from dataclasses import dataclass, field

from lxml import etree

from interchange import codes
from interchange.errors import Layer, Problem, Problems, Severity
from interchange.forms.schema import FORM_SCHEMAS
from interchange.identifiers import is_form_code
from interchange.spool import Spooled, sha256_of
from interchange.trust.leanbody import LeanBody
from interchange.xmlparse import root_name, without_xml_space


@dataclass
class FormFile:
    code: str  # MaToKhai
    description: str
    name: str  # TenFile
    kind: str  # LoaiFile, e.g. ".xml"
    content: bytes | Spooled  # the decoded bytes of NoiDungFile (in a file when large: leanbody.lean_file)
    xpath: str
    line: int | None
    declared_code: str | None = None  # MaToKhai as written, when it is not the form's code (`.xml`)

    @property
    def is_xml(self) -> bool:
        return _is_xml_file(self.kind, self.name)


@dataclass
class Envelope:
    mst: str | None = None
    unit_code: str | None = None
    unit_name: str | None = None
    unit_type: str | None = None
    signer_name: str | None = None
    phone: str | None = None
    office: str | None = None
    ivan_code: str | None = None
    ivan_name: str | None = None
    procedure: str | None = None
    procedure_name: str | None = None
    period: str | None = None
    created: str | None = None
    contact: dict[str, str] = field(default_factory=dict)
    files: list[FormFile] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "mst": self.mst,
            "unit_code": self.unit_code,
            "unit_name": self.unit_name,
            "ivan_code": self.ivan_code,
            "procedure": self.procedure,
            "period": self.period,
            "contact": dict(self.contact),
            "files": [
                {"code": f.code, "name": f.name, "kind": f.kind, "size": len(f.content),
                 **({"declared_code": f.declared_code} if f.declared_code is not None else {})}
                for f in self.files
            ],
        }


def _is_xml_file(kind: str, name: str) -> bool:
    return kind.lower().lstrip(".") == "xml" or name.lower().endswith(".xml")


def _text(root: etree._Element, path: str) -> str | None:
    el = root.find(path)
    if el is None or el.text is None:
        return None
    return el.text.strip() or None


def _problem(code: str, vi: str, en: str, xpath: str, line: int | None, value: str | None = None) -> Problem:
    return Problem(layer=Layer.ENVELOPE, code=code, message_vi=vi, message_en=en, xpath=xpath, line=line, value=value)


# where the unit's and the dossier's fields sit under the root
_UNIT = "NoiDung/ThongTinDonVi/"
_INFO = "NoiDung/ThongTinHoSo/"


def read_envelope(root: etree._Element, problems: Problems, max_files: int, lean: LeanBody | None = None) -> Envelope:
    """Read what the later layers need; every inconsistency goes to `problems`. With `lean`, `root`
    is the tree of its small body: a file whose text is a marker is decoded from the source body."""
    tree = root.getroottree()
    env = Envelope()
    if root.tag != "Hoso":
        problems.add(
            _problem(
                codes.ENV_ROOT, f"Phần tử gốc phải là Hoso, không phải {root.tag}.", f"The root must be Hoso, not {root.tag}.", "/", root.sourceline
            )
        )
        return env
    _read_fields(root, env)
    if env.mst is None:
        problems.add(
            _problem(
                codes.ENV_MST_MISSING,
                "Thiếu mã số thuế đơn vị (ThongTinDonVi/MaSoThue).",
                "The unit's tax code (ThongTinDonVi/MaSoThue) is missing.",
                "/Hoso/NoiDung/ThongTinDonVi/MaSoThue",
                None,
            )
        )
    files = root.findall(_INFO + "ToKhais/FileToKhai")
    if not _check_file_count(root, tree, len(files), problems, max_files):
        return env
    seen: set = set()  # names and content digests of the files read so far
    for file_el in files:
        form_file = _read_file(file_el, tree, problems, seen, lean)
        if form_file is not None:
            env.files.append(form_file)
    return env


def _read_fields(root: etree._Element, env: Envelope) -> None:
    """The envelope's simple fields: the unit, the I-VAN, the dossier and the contact."""
    env.unit_name = _text(root, _UNIT + "TenDoiTuong")
    env.unit_code = _text(root, _UNIT + "MaSoBHXH")
    env.unit_type = _text(root, _UNIT + "LoaiDoiTuong")
    env.mst = _text(root, _UNIT + "MaSoThue")
    env.signer_name = _text(root, _UNIT + "NguoiKy")
    env.phone = _text(root, _UNIT + "DienThoai")
    env.office = _text(root, _UNIT + "CoQuanQuanLy")
    env.ivan_code = _text(root, "NoiDung/ThongTinIVAN/MaIVAN")
    env.ivan_name = _text(root, "NoiDung/ThongTinIVAN/TenIVAN")
    env.procedure_name = _text(root, _INFO + "TenThuTuc")
    env.procedure = _text(root, _INFO + "MaThuTuc")
    env.period = _text(root, _INFO + "KyKeKhai")
    env.created = _text(root, _INFO + "NgayLap")
    for name in ("Email", "DiaChi", "NguoiLienHe", "PTNhanKetQua"):
        value = _text(root, "NoiDung/" + name)
        if value:
            env.contact[name] = value


def _check_file_count(
    root: etree._Element, tree: etree._ElementTree, count: int, problems: Problems, max_files: int
) -> bool:
    """SoLuongFile against the files present, and the limit; False: too many files to read."""
    declared_count = _text(root, _INFO + "SoLuongFile")
    count_el = root.find(_INFO + "SoLuongFile")
    if declared_count is not None and declared_count != str(count):
        problems.add(
            _problem(
                codes.ENV_FILE_COUNT,
                f"SoLuongFile khai {declared_count} nhưng hồ sơ có {count} tệp.",
                f"SoLuongFile says {declared_count} but the dossier holds {count} files.",
                tree.getpath(count_el),
                count_el.sourceline,
                declared_count,
            )
        )
    if count > max_files:
        problems.add(
            _problem(
                codes.ENV_TOO_MANY_FILES,
                f"Hồ sơ có {count} tệp, vượt giới hạn {max_files}.",
                f"The dossier holds {count} files, over the limit of {max_files}.",
                "/Hoso/NoiDung/ThongTinHoSo/ToKhais",
                None,
            )
        )
        return False
    return True


def _read_file(
    file_el: etree._Element, tree: etree._ElementTree, problems: Problems, seen: set, lean: LeanBody | None
) -> FormFile | None:
    """One FileToKhai, or None when it cannot be used (the reason is in `problems`).
    `seen` holds the names and content digests of the files read before it."""
    xpath = tree.getpath(file_el)
    content = _decoded_content(file_el, tree, xpath, problems, lean)
    if content is None:
        return None
    code = _text(file_el, "MaToKhai") or ""
    name = _text(file_el, "TenFile") or ""
    kind = _text(file_el, "LoaiFile") or ""
    digest = sha256_of(content)
    if digest in seen or (name and name in seen):
        problems.add(
            _problem(
                codes.ENV_FILE_DUPLICATE,
                f"Tệp {name or code} có hai lần trong hồ sơ.",
                f"The file {name or code} is in the dossier twice (same name or same content).",
                xpath,
                file_el.sourceline,
                name or None,
            )
        )
        return None
    seen.update({digest, name} if name else {digest})
    declared = None
    if not is_form_code(code) and _is_xml_file(kind, name):
        declared, code = code, _recognised(code, name, content, xpath, file_el.sourceline, problems)
        declared = declared if declared != code else None
    if code in FORM_SCHEMAS and not _is_xml_file(kind, name):
        problems.add(
            _problem(
                codes.ENV_FILE_TYPE,
                f"Tờ khai {code} phải là tệp XML có chữ ký số, không phải {kind or name}.",
                f"The form {code} must be a signed XML file, not {kind or name}.",
                xpath + "/LoaiFile",
                file_el.sourceline,
                kind or None,
            )
        )
        return None
    return FormFile(
        code=code,
        description=_text(file_el, "MoTaToKhai") or "",
        name=name,
        kind=kind,
        content=content,
        xpath=xpath,
        line=file_el.sourceline,
        declared_code=declared,
    )


def _recognised(declared: str, name: str, content: bytes | Spooled, xpath: str, line: int | None, problems: Problems) -> str:
    """The form of an XML file whose MaToKhai is not written as a form code (SPEC §2: real payroll
    software writes `.xml` there; an unknown code such as X99-TS stays unknown): its root element, else its TenFile (`D02-TS.xml`, `D02-TS_2026.xml`);
    when the two name different forms the root element wins and a warning says so. Neither
    known: MaToKhai as written (the schema layer names it as an unknown form)."""
    root = root_name(content)
    stem = name.rsplit(".", 1)[0] if name.lower().endswith(".xml") else name
    by_name = stem if stem in FORM_SCHEMAS else next(
        (code for code in sorted(FORM_SCHEMAS, key=len, reverse=True) if stem.startswith(code + "_")), None
    )
    if root in FORM_SCHEMAS:
        if by_name is not None and by_name != root:
            problems.add(
                Problem(
                    layer=Layer.ENVELOPE, code=codes.ENV_FORM_NAME, severity=Severity.WARNING,
                    message_vi=f"Tệp {name} mang tên tờ khai {by_name} nhưng nội dung là tờ khai {root}; "
                               f"hồ sơ được xét là {root}.",
                    message_en=f"The file {name} is named for the form {by_name} but holds a {root}; "
                               f"it is judged as {root}.",
                    xpath=xpath + "/TenFile", line=line, value=name,
                )
            )  # fmt: skip
        return root
    return by_name or declared


def _decoded_content(
    file_el: etree._Element, tree: etree._ElementTree, xpath: str, problems: Problems, lean: LeanBody | None
) -> bytes | Spooled | None:
    """The decoded bytes of NoiDungFile (DoDaiFile checked on the way); None when not base64 or empty."""
    content_el = file_el.find("NoiDungFile")
    text = content_el.text or "" if content_el is not None else ""
    if lean is not None and text in lean.cuts:  # cut out of the body, valid base64 (trust/streaming.py)
        raw_len, compact_len = lean.lengths(text)
        b64 = None
    else:
        b64 = without_xml_space(text)  # only XML white space may go (SPEC §3), copied only when there is some
        raw_len, compact_len = len(text), len(b64)
    declared = _text(file_el, "DoDaiFile")
    length_el = file_el.find("DoDaiFile")
    if declared is not None and declared not in (str(compact_len), str(raw_len)):
        problems.add(
            _problem(
                codes.ENV_FILE_LENGTH,
                f"DoDaiFile khai {declared} nhưng nội dung tệp dài {compact_len} ký tự.",
                f"DoDaiFile says {declared} but the base64 content is {compact_len} characters long.",
                tree.getpath(length_el),
                length_el.sourceline,
                declared,
            )
        )
    try:
        content = lean.decode(text) if b64 is None else b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        problems.add(
            _problem(
                codes.ENV_FILE_BASE64,
                "Nội dung tệp (NoiDungFile) không phải base64 hợp lệ.",
                "NoiDungFile is not valid base64.",
                xpath + "/NoiDungFile",
                content_el.sourceline if content_el is not None else file_el.sourceline,
            )
        )
        return None
    if not content:
        problems.add(
            _problem(codes.ENV_FILE_EMPTY, "Tệp trong hồ sơ rỗng.", "An embedded file is empty.", xpath + "/NoiDungFile", file_el.sourceline)
        )
        return None
    return content

"""A signature report on any signed XML this project deals with: a `Hoso` envelope (its own
signature and each embedded XML form's), a single form, or a `ThongBao` notice. Serves
`interchange verify` and `POST /api/v1/verify`."""

from __future__ import annotations

from base64 import b64decode
from dataclasses import replace
from datetime import datetime

from interchange.errors import Refusal
from interchange.identifiers import is_form_code
from interchange.trust.anchors import TrustStore
from interchange.trust.xmldsig import verify_document
from interchange.xmlparse import XmlLimits, parse_xml


def signature_report(data: bytes, *, trust: TrustStore, limits: XmlLimits, at: datetime, legacy_sha1: bool) -> dict:
    """{"ok", "signatures": [...], "problems": [...]} for every signature in `data`, judged at `at`."""
    try:  # an envelope's base64 NoiDungFile is exempt from the text limit, as at receipt
        root = parse_xml(data, replace(limits, long_text=("NoiDungFile",))).getroot()
    except Refusal as refusal:
        return {"ok": False, "signatures": [], "problems": [p.as_dict() for p in refusal.problems]}
    reports = []
    local = root.tag.rsplit("}", 1)[-1]
    if local == "Hoso":
        mst = (root.findtext("NoiDung/ThongTinDonVi/MaSoThue") or "").strip() or None
        forms = []
        for file_el in root.iterfind("NoiDung/ThongTinHoSo/ToKhais/FileToKhai"):
            name = (file_el.findtext("TenFile") or "").strip()
            if name.lower().endswith(".xml") or (file_el.findtext("LoaiFile") or "").lower().endswith("xml"):
                try:
                    content = b64decode("".join((file_el.findtext("NoiDungFile") or "").split()), validate=True)
                except ValueError:
                    content = b""  # reported by the parse below as not XML
                forms.append(((file_el.findtext("MaToKhai") or "").strip(), name, content))
        reports.append(verify_document(root, location="CKy_Dvi", trust=trust, at=at, document="Hoso",
                                       expected_mst=mst, legacy_sha1=legacy_sha1))
        for code, name, content in forms:
            try:
                form_root = parse_xml(content, limits, form=code).getroot()
            except Refusal as refusal:
                return {"ok": False, "signatures": [_public(r.as_dict()) for r in reports],
                        "problems": [p.as_dict() for p in refusal.problems]}
            if not is_form_code(code):  # `.xml` (SPEC §2): the form is named by its root element
                code = form_root.tag.rsplit("}", 1)[-1]
            reports.append(verify_document(form_root, location="Cky", trust=trust, at=at, document=name,
                                           form=code, expected_mst=mst, legacy_sha1=legacy_sha1))
    else:
        location = "" if local in ("ThongBao", "TheBHYT") else "Cky"  # signed by the server: notices, e-HI cards
        reports.append(verify_document(root, location=location, trust=trust, at=at, document=local,
                                       form=None if local == "ThongBao" else local, legacy_sha1=legacy_sha1))
    return {
        "ok": all(r.valid for r in reports),
        "signatures": [_public(r.as_dict()) for r in reports],
        "problems": [p.as_dict() for r in reports for p in r.problems],
    }


def _public(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "chain_pem"}

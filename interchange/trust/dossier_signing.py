"""Signing dossiers the way payroll software does: every embedded XML form first (in its
`Cky`), then the envelope (in `CKy_Dvi`), so the envelope signature covers the signed forms."""

from __future__ import annotations

from base64 import b64decode, b64encode
from datetime import datetime

from lxml import etree

from interchange.trust.xmldsig import SIGNATURE_TAG, DocumentSigner, to_bytes
from interchange.xmlparse import XmlLimits, parse_xml

# The signer signs what it is given (a receiver judges the shape): only the safety limits apply.
_LIMITS = XmlLimits(max_depth=64, max_elements=50_000_000, max_attributes=10**9, max_namespaces=10**9,
                    max_name_length=10**9, max_attribute_length=10**9, max_text_length=10**10)


def _is_xml(file_el: etree._Element) -> bool:
    kind = (file_el.findtext("LoaiFile") or "").strip().lower().lstrip(".")
    return kind == "xml" or (file_el.findtext("TenFile") or "").strip().lower().endswith(".xml")


def sign_form(data: bytes, signer: DocumentSigner, *, signing_time: datetime | None = None) -> bytes:
    root = parse_xml(data, _LIMITS).getroot()
    return to_bytes(signer.sign(root, location="Cky", signing_time=signing_time))


def sign_envelope(data: bytes, signer: DocumentSigner, *, sign_forms: bool = True,
                  signing_time: datetime | None = None) -> bytes:
    """Sign the forms inside a Hoso that are not signed yet (when `sign_forms`), then the envelope."""
    root = parse_xml(data, _LIMITS).getroot()
    if sign_forms:
        for file_el in root.iterfind("NoiDung/ThongTinHoSo/ToKhais/FileToKhai"):
            if not _is_xml(file_el):
                continue
            content_el = file_el.find("NoiDungFile")
            form = b64decode("".join((content_el.text or "").split()))
            if SIGNATURE_TAG.encode() in form or b":Signature" in form or b"<Signature" in form:
                continue  # already signed by its author
            encoded = b64encode(sign_form(form, signer, signing_time=signing_time)).decode()
            content_el.text = encoded
            length_el = file_el.find("DoDaiFile")
            if length_el is not None:
                length_el.text = str(len(encoded))
    return to_bytes(signer.sign(root, location="CKy_Dvi", signing_time=signing_time))

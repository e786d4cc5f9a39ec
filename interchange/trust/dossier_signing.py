"""Signing dossiers the way payroll software does: every embedded XML form first (in its
`Cky`), then the envelope (in `CKy_Dvi`), so the envelope signature covers the signed forms.

Large inputs are signed in bounded memory (`trust/streaming.py`): a large form's rows are
canonicalised one by one and dropped, the envelope's large base64 texts stay bytes; signxml signs
the small reduced tree, then the reference's digest is set to the whole document's (spliced) and
SignedInfo signed again; the output is the reduced tree's serialisation with each left-out part put
back (a form's rows in their canonical form: the same document, the same canonical bytes).
"""

from __future__ import annotations

import hashlib
import io
from base64 import b64decode, b64encode
from datetime import datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from interchange.trust.c14nstream import Part, Splice, SpliceError
from interchange.trust.leanbody import parse_lean
from interchange.trust.streaming import stream_form
from interchange.trust.xmldsig import DSIG_NS, SIGNATURE_TAG, DocumentSigner, to_bytes
from interchange.xmlparse import XmlLimits, parse_xml

# The signer signs what it is given (a receiver judges the shape): only the safety limits apply.
_LIMITS = XmlLimits(max_depth=64, max_elements=50_000_000, max_attributes=10**9, max_namespaces=10**9,
                    max_name_length=10**9, max_attribute_length=10**9, max_text_length=10**10)
LARGE = 8 * 1024 * 1024  # inputs from this size on are signed in bounded memory
_ROW_TAGS = ("LaoDong", "ThongTin")  # the rows of the forms here (forms/schema.py reads them from the XSDs)
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_DS = f"{{{DSIG_NS}}}"


def _is_xml(file_el: etree._Element) -> bool:
    kind = (file_el.findtext("LoaiFile") or "").strip().lower().lstrip(".")
    return kind == "xml" or (file_el.findtext("TenFile") or "").strip().lower().endswith(".xml")


def _already_signed(form: bytes) -> bool:
    return SIGNATURE_TAG.encode() in form or b":Signature" in form or b"<Signature" in form


def sign_form(data: bytes, signer: DocumentSigner, *, signing_time: datetime | None = None) -> bytes:
    if len(data) >= LARGE:
        signed = _sign_form_streamed(data, signer, signing_time)
        if signed is not None:
            return signed
    root = parse_xml(data, _LIMITS).getroot()
    return to_bytes(signer.sign(root, location="Cky", signing_time=signing_time))


def sign_envelope(data: bytes, signer: DocumentSigner, *, sign_forms: bool = True,
                  signing_time: datetime | None = None) -> bytes:
    """Sign the forms inside a Hoso that are not signed yet (when `sign_forms`), then the envelope."""
    tree, lean = parse_lean(data, _LIMITS, cut=len(data) >= LARGE)
    root = tree.getroot()
    texts: dict[str, bytes] = {}  # marker -> the base64 bytes it stands for, in the output
    for file_el in root.iterfind("NoiDung/ThongTinHoSo/ToKhais/FileToKhai/NoiDungFile/.."):
        content_el = file_el.find("NoiDungFile")
        marker = content_el.text if lean is not None and content_el.text in lean.cuts else None
        if sign_forms and _is_xml(file_el):
            form = lean.decode(marker) if marker else b64decode("".join((content_el.text or "").split()))
            if not _already_signed(form):
                encoded = b64encode(sign_form(form, signer, signing_time=signing_time))
                del form
                if marker or len(encoded) >= LARGE:
                    marker = marker or f"zSplNew{len(texts)}{hashlib.sha256(encoded).hexdigest()}"
                    texts[marker], content_el.text = encoded, marker
                else:
                    content_el.text = encoded.decode()
                length_el = file_el.find("DoDaiFile")
                if length_el is not None:
                    length_el.text = str(len(encoded))
                continue
        if marker:
            cut = lean.cuts[marker]
            texts[marker] = memoryview(lean.source)[cut.start : cut.end]
    if not texts:
        return to_bytes(signer.sign(root, location="CKy_Dvi", signing_time=signing_time))
    signed = signer.sign(root, location="CKy_Dvi", signing_time=signing_time)
    order = [m for m in (el.text for el in signed.iter("NoiDungFile")) if m in texts]
    splice = Splice([Part(m.encode(), b"", lambda m=m: [texts[m]]) for m in order])
    _set_digest(signed, splice, signer)
    return _put_back(to_bytes(signed), [(m.encode(), b"", texts[m]) for m in order])


def _sign_form_streamed(data: bytes, signer: DocumentSigner, signing_time: datetime | None) -> bytes | None:
    """A large form signed in bounded memory; None: not this way (a signature in a row, an EC key...)."""
    if not isinstance(signer.key, rsa.RSAPrivateKey):
        return None
    form = stream_form(data, _LIMITS, None, _ROW_TAGS)
    if form is None or not form.splice.parts:
        return None
    signed = signer.sign(form.root, location="Cky", signing_time=signing_time)
    try:
        _set_digest(signed, form.splice, signer)
    except SpliceError:
        return None
    parts = [(p.start, p.end, b"".join(p.chunks())) for p in form.splice.parts]
    return _put_back(to_bytes(signed), parts)


def _set_digest(root: etree._Element, splice: Splice, signer: DocumentSigner) -> None:
    """The reference's digest over the whole document (spliced), then SignedInfo signed again."""
    sig = next(root.iter(SIGNATURE_TAG))
    method = sig.find(f"{_DS}SignedInfo/{_DS}Reference/{_DS}DigestMethod")
    if method is None or method.get("Algorithm") != _SHA256:
        raise SpliceError("only SHA-256 references are signed this way")
    parent, index, tail = sig.getparent(), sig.getparent().index(sig), sig.tail
    if tail:
        raise SpliceError("text after the signature")
    parent.remove(sig)  # the enveloped-signature transform
    canonical = etree.tostring(root.getroottree(), method="c14n", with_comments=False)
    parent.insert(index, sig)
    sig.find(f"{_DS}SignedInfo/{_DS}Reference/{_DS}DigestValue").text = b64encode(
        splice.digest(canonical, "sha256")).decode()
    signed_info = sig.find(f"{_DS}SignedInfo")
    # in its context: a copy carries every namespace in scope (as the verifier canonicalises it)
    c14n = etree.tostring(etree.fromstring(etree.tostring(signed_info)), method="c14n", with_comments=False)
    value = signer.key.sign(c14n, padding.PKCS1v15(), hashes.SHA256())
    sig.find(f"{_DS}SignatureValue").text = b64encode(value).decode()


def _put_back(serialised: bytes, parts: list[tuple[bytes, bytes, bytes | memoryview]]) -> bytes:
    """Each marker of the serialised reduced tree replaced by its part (markers in order)."""
    out = io.BytesIO()
    at = 0
    for start, end, content in parts:
        begin = serialised.index(start, at)
        if end:  # an empty element: <tok/> or <tok ...></tok> as lxml writes it
            close = serialised.index(b">", begin)
            stop = close + 1 if serialised[close - 1 : close] == b"/" else serialised.index(end, close) + len(end)
        else:
            stop = begin + len(start)
        out.write(serialised[at:begin])
        out.write(content)
        at = stop
    out.write(serialised[at:])
    return out.getvalue()


__all__ = ["LARGE", "sign_envelope", "sign_form"]

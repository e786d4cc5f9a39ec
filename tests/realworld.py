"""Shapes that real payroll software writes (SPEC §2, §3; issue #11 findings), made from the
samples so that each is signed by the test PKI: not a test module, used by
tests/test_real_world.py.

- `MaToKhai` written as the file's extension (`.xml`): the form is known by its root element
  (and its `TenFile`);
- `SigningTime` inside `Object/SignatureProperty` or `Object/SignatureProperties/
  SignatureProperty`, in a namespace that is not XML-DSig, the Object sometimes with xmlns="";
- standalone signed forms (root D02-TS, TK1-TS, M01B-HSB).
"""

from __future__ import annotations

from lxml import etree

from interchange.devkit import samples
from interchange.trust.dossier_signing import sign_envelope, sign_form
from interchange.trust.xmldsig import DSIG_NS, DocumentSigner, to_bytes
from tests.helpers import UNIT

VENDOR_NS = "http://example.vn/payroll/2019"  # a non-DSig namespace, as vendors write
SIGNING_TIME = "2026-11-20T10:15:30"


def xml_as_form_code(signer: DocumentSigner, form: bytes | None = None, *, name: str = "D02-TS.xml") -> bytes:
    """A signed 600 dossier whose one form has MaToKhai `.xml` (TenFile `name`)."""
    form = form if form is not None else samples.d02ts(3, unit=UNIT)
    return sign_envelope(samples.envelope(UNIT, [(".xml", name, form)]), signer)


def _object_of(signature: etree._Element, *, empty_ns: bool) -> etree._Element:
    """The Signature's Object, emptied (a new one without namespace when `empty_ns`)."""
    for old in signature.findall(f"{{{DSIG_NS}}}Object"):
        signature.remove(old)
    return etree.SubElement(signature, "Object" if empty_ns else f"{{{DSIG_NS}}}Object")


def with_signing_time(signed: bytes, shape: str, *, location: str = "CKy_Dvi") -> bytes:
    """`signed` (an envelope, or a form with location "Cky") with its unsigned Object rewritten:

    shape "property":   Object/SignatureProperty/SigningTime, SigningTime in VENDOR_NS
    shape "properties": Object(xmlns="")/SignatureProperties/SignatureProperty/SigningTime in VENDOR_NS
    """
    root = etree.fromstring(signed)
    signature = root.find(f"{location}/{{{DSIG_NS}}}Signature")
    obj = _object_of(signature, empty_ns=shape == "properties")
    holder = obj if shape == "property" else etree.SubElement(obj, "SignatureProperties")
    prop = etree.SubElement(holder, "SignatureProperty" if shape == "properties" else f"{{{DSIG_NS}}}SignatureProperty",
                            Target="#sig")
    etree.SubElement(prop, f"{{{VENDOR_NS}}}SigningTime", nsmap={"ts": VENDOR_NS}).text = SIGNING_TIME
    return to_bytes(root)


STANDALONE = {
    "D02-TS": lambda: samples.d02ts(3, unit=UNIT),
    "TK1-TS": lambda: samples.tk1ts(2),
    "M01B-HSB": lambda: samples.m01bhsb(2, unit=UNIT),
}


def standalone_form(code: str, signer: DocumentSigner) -> bytes:
    """A standalone signed form: its root is the form, its signature in `Cky`."""
    return sign_form(STANDALONE[code](), signer)

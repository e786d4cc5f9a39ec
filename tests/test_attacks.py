"""Attack corpus (issue 5, item 3): forged, malicious and malformed dossiers, each refused at
receipt with the right code and never stored as received.

Every attack is a small builder registered with `@attack(expected codes, layer=...)`; its id
is the builder's name. Expected codes are the error codes of the outcome, written `CODE` for
the envelope and `CODE@FORM` for an embedded form (warnings are not counted). All of them run
through the pure `Receiver`; a representative subset also runs through the HTTP API on
SQLite. Attacks the product does not refuse yet (or refuses with the wrong code, or crashes
on) are marked `bug=...`: they run as strict xfails, so a fix shows up as an XPASS.

Signatures that the usual signers cannot make (a reference to an Id, an XSLT transform,
HMAC, SHA-1...) are built by hand with `forge`, with a correct SignatureValue over SignedInfo,
so that what refuses them is the verification profile, not a broken signature.
(tests/test_pipeline.py already covers: a second signature and a nested copy of the envelope's
own signature, a form signature moved into NoiDung, a signature over NoiDung only, the
envelope's KeyValue swapped, the MST comment injection, a small DTD and a form with XXE.)
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from interchange.config import Config
from interchange.devkit import pki, samples
from interchange.intake.pipeline import Caller, Outcome, Receiver
from interchange.notices.notice import NS
from interchange.trust.dossier_signing import sign_envelope, sign_form
from interchange.trust.xmldsig import DSIG_NS, to_bytes
from interchange.xmlparse import XmlLimits, parse_xml
from tests.helpers import (
    ENVELOPED,
    FORM_PATH,
    OTHER_UNIT,
    SIGNATURE_METHODS,
    UNIT,
    XML,
    World,
    c14n,
    dossier,
    error_codes,
    listed,
    notice_of,
    signature_value,
    start_api,
)

C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
XSLT = "http://www.w3.org/TR/1999/REC-xslt-19991116"
XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
DIGEST_METHODS = {
    "sha256": "http://www.w3.org/2001/04/xmlenc#sha256",
    "sha1": "http://www.w3.org/2000/09/xmldsig#sha1",
}
# --- building blocks --------------------------------------------------------------------------


def ds(tag: str) -> str:
    return f"{{{DSIG_NS}}}{tag}"


def signature_of(root: etree._Element) -> etree._Element:
    return next(root.iter(ds("Signature")))



def forge(
    root: etree._Element,
    issued: pki.Issued | None,
    *,
    holder: str = "Cky",
    uris: Sequence[str | None] = ("",),
    transforms: Sequence[str | etree._Element] = (ENVELOPED, C14N),
    digest: str = "sha256",
    method: str = "rsa-sha256",
    covered: etree._Element | None = None,
    objects: Sequence[etree._Element] = (),
) -> etree._Element:
    """Sign `root` in place with a hand-made signature in `root/holder` and return `root`.

    One Reference per entry of `uris` (None: no URI attribute), each with `transforms`. The
    digest is of `covered` (canonicalised where it ends up) or, by default, of the whole
    document without the signature. `issued` None leaves X509Data out.
    """
    signature = etree.Element(ds("Signature"), nsmap={"ds": DSIG_NS})
    info = etree.SubElement(signature, ds("SignedInfo"))
    etree.SubElement(info, ds("CanonicalizationMethod"), Algorithm=C14N)
    etree.SubElement(info, ds("SignatureMethod"), Algorithm=SIGNATURE_METHODS[method][0])
    digests = [_reference(info, uri, transforms, digest) for uri in uris]
    value = etree.SubElement(signature, ds("SignatureValue"))
    if issued is not None:
        data = etree.SubElement(etree.SubElement(signature, ds("KeyInfo")), ds("X509Data"))
        for cert in issued.full_chain:
            der = cert.public_bytes(serialization.Encoding.DER)
            etree.SubElement(data, ds("X509Certificate")).text = base64.b64encode(der).decode()
    signature.extend(objects)
    without_signature = c14n(root.getroottree())  # what the enveloped transform leaves
    (root.find(holder) if holder else root).append(signature)
    content = without_signature if covered is None else c14n(covered)
    for el in digests:
        el.text = base64.b64encode(hashlib.new(digest, content).digest()).decode()
    value.text = base64.b64encode(signature_value(signature, issued, method)).decode()
    return root


def _reference(info: etree._Element, uri: str | None, transforms, digest: str) -> etree._Element:
    """A Reference in SignedInfo; returns its (empty) DigestValue."""
    reference = etree.SubElement(info, ds("Reference"), **({} if uri is None else {"URI": uri}))
    if transforms:
        holder = etree.SubElement(reference, ds("Transforms"))
        for t in transforms:
            if isinstance(t, str):
                etree.SubElement(holder, ds("Transform"), Algorithm=t)
            else:
                holder.append(copy.deepcopy(t))
    etree.SubElement(reference, ds("DigestMethod"), Algorithm=DIGEST_METHODS[digest])
    return etree.SubElement(reference, ds("DigestValue"))



def d02(rows: int = 2) -> etree._Element:
    return etree.fromstring(samples.d02ts(rows))


def signed_d02(w: World, issued: pki.Issued | None = None, rows: int = 2) -> etree._Element:
    return etree.fromstring(sign_form(samples.d02ts(rows), w.signer(issued or w.unit)))


def packed(
    w: World,
    forms: Sequence[tuple[str, str, bytes | etree._Element]],
    *,
    by: pki.Issued | None = None,
    unit: samples.Unit = UNIT,
    edit: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """An envelope of `unit` carrying `forms` exactly as given, (optionally `edit`ed, then)
    signed by `by` (default the unit): only the forms' own signatures protect them."""
    files = [(code, name, to_bytes(f) if isinstance(f, etree._Element) else f) for code, name, f in forms]
    data = samples.envelope(unit, files)
    return sign_envelope(edit(data) if edit else data, w.signer(by or w.unit), sign_forms=False)


def with_d02(w: World, form: bytes | etree._Element, **kw) -> bytes:
    return packed(w, [("D02-TS", "D02-TS.xml", form)], **kw)


def envelope_tree(w: World) -> etree._Element:
    """An unsigned envelope around a signed D02-TS, to be signed by hand."""
    return etree.fromstring(samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", to_bytes(signed_d02(w)))]))


def signed_dossier(w: World) -> etree._Element:
    return etree.fromstring(dossier(w.signer(w.unit)))


def inflate_rows(form: etree._Element) -> etree._Element:
    """The forger's change: every salary raised."""
    for el in form.iter("TienLuong"):
        el.text = "99000000"
    return form


def unit_cert(w: World, mst: str | None = UNIT.mst, **kw) -> pki.Issued:
    kw.setdefault("key", w.unit.key)
    return pki.issue_unit_cert(w.ca, mst, UNIT.name, **kw)


def utcnow() -> datetime:
    return datetime.now(UTC)


def errors_of(out: Outcome) -> frozenset[str]:
    return frozenset(
        f"{p.code}@{p.form}" if p.form else p.code for p in out.problems if p.severity == "error"
    )


def short(problem) -> bool:
    """No problem echoes a large part of the input back into the notice."""
    return (
        len(problem.message_en) < 2000 and len(problem.message_vi) < 2000 and len(problem.value or "") <= 1000
    )


# --- the corpus -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    name: str
    build: Callable[[World, Config], bytes]  # may tighten `cfg` (limits, CRLs) before the Receiver is made
    expected: frozenset[str]  # empty: any codes (the product has none for it yet)
    layer: str | None  # None: any layer
    bug: str | None


ATTACKS: dict[str, Attack] = {}


def attack(*expected: str, layer: str | None = "signature", bug: str | None = None):
    def register(build: Callable[[World, Config], bytes]):
        name = build.__name__.replace("_", "-")
        ATTACKS[name] = Attack(name, build, frozenset(expected), layer, bug)
        return build

    return register


# signature wrapping


def _id_shift(w: World, forged_id: str | None) -> bytes:
    """The signed form (root Id F, Reference #F) hidden in the signature's Object; a forged form,
    with root Id `forged_id`, is what is read."""
    original = d02()
    original.set("Id", "F")
    forge(original, w.unit, uris=["#F"])
    signature = signature_of(original)
    original.find("Cky").remove(signature)
    etree.SubElement(signature, ds("Object")).append(original)
    forged = inflate_rows(d02())
    if forged_id:
        forged.set("Id", forged_id)
    forged.find("Cky").append(signature)
    return with_d02(w, forged)


@attack("SIG-PROFILE@D02-TS")
def id_shift_in_form(w, cfg):
    return _id_shift(w, None)


@attack("SIG-PROFILE@D02-TS")
def id_shift_with_duplicated_root_id(w, cfg):
    """The forged root carries the same Id, so `#F` names the root too."""
    return _id_shift(w, "F")


@attack("SIG-PROFILE")
def id_shift_in_envelope(w, cfg):
    original = envelope_tree(w)
    original.set("Id", "H")
    forge(original, w.unit, holder="CKy_Dvi", uris=["#H"])
    signature = signature_of(original)
    signature.getparent().remove(signature)
    forged = copy.deepcopy(original)
    del forged.attrib["Id"]
    forged.find("NoiDung/ThongTinHoSo/KyKeKhai").text = "01/2020"
    etree.SubElement(signature, ds("Object")).append(original)
    forged.find("CKy_Dvi").append(signature)
    return to_bytes(forged)


@attack("SIG-PROFILE@D02-TS")
def duplicated_id_attribute_in_form(w, cfg):
    """Root Id="F" signed as #F, and a descendant with ID="F" too: which one does #F name?"""
    form = d02()
    form.set("Id", "F")
    forge(form, w.unit, uris=["#F"])
    form.find("NoiDung").set("ID", "F")
    return with_d02(w, form)


@attack("SIG-PROFILE@D02-TS")
def object_wrapping_reference_to_the_object(w, cfg):
    """The genuine content moved into ds:Object Id="obj", which the Reference names."""
    genuine = etree.Element(ds("Object"), Id="obj", nsmap={"ds": DSIG_NS})
    genuine.append(d02().find("NoiDung"))
    forged = inflate_rows(d02())
    return with_d02(w, forge(forged, w.unit, uris=["#obj"], covered=genuine, objects=[genuine]))


@attack("SIG-DIGEST")
def object_wrapping_of_envelope_content(w, cfg):
    """URI="" signature; the signed NoiDung copied into the (unsigned) Object, the visible one forged."""
    root = signed_dossier(w)
    etree.SubElement(signature_of(root), ds("Object")).append(copy.deepcopy(root.find("NoiDung")))
    root.find("NoiDung/ThongTinHoSo/KyKeKhai").text = "01/2020"
    return to_bytes(root)


@attack("SIG-PROFILE@D02-TS")
def partial_reference_to_one_row(w, cfg):
    """Only row 1 is signed (URI="#row1"); the rows after it are the forger's."""
    form = d02(rows=3)
    first = form.find("NoiDung/LaoDong")
    first.set("Id", "row1")
    forge(form, w.unit, uris=["#row1"], covered=first)
    for row in form.findall("NoiDung/LaoDong")[1:]:
        inflate_rows(row)
    return with_d02(w, form)


@attack("SIG-PROFILE@D02-TS")
def partial_reference_to_noidung_then_header_changed(w, cfg):
    form = d02()
    form.find("NoiDung").set("Id", "x")
    forge(form, w.unit, uris=["#x"], covered=form.find("NoiDung"))
    form.find("ThongTinKhac/SoTheBHYT").text = "500"
    return with_d02(w, form)


@attack("SIG-PROFILE")
def partial_reference_by_xpointer_in_envelope(w, cfg):
    root = envelope_tree(w)
    return to_bytes(forge(root, w.unit, holder="CKy_Dvi", uris=["#xpointer(/Hoso/NoiDung)"], covered=root[0]))


@attack("SIG-PROFILE@D02-TS")
def reference_without_uri(w, cfg):
    return with_d02(w, forge(d02(), w.unit, uris=[None]))


@attack("SIG-PROFILE@D02-TS")
def two_references(w, cfg):
    return with_d02(w, forge(d02(), w.unit, uris=["", ""]))


@attack("SIG-MULTIPLE@D02-TS")
def another_units_signature_nested_in_the_object(w, cfg):
    form = signed_d02(w)
    signature_of(form).find(ds("Object")).append(signature_of(signed_d02(w, w.other_unit)))
    return with_d02(w, form)


@attack("SIG-MULTIPLE@D02-TS")
def second_signature_inside_form_content(w, cfg):
    form = signed_d02(w)
    form.find("NoiDung").append(signature_of(signed_d02(w)))
    return with_d02(w, form)


@attack("SIG-LOCATION@D02-TS")
def signature_moved_to_the_form_root(w, cfg):
    form = signed_d02(w)
    form.append(signature_of(form))
    return with_d02(w, form)


@attack("SIG-LOCATION")
def envelope_signature_wrapped_in_a_foreign_element(w, cfg):
    """Inside CKy_Dvi (the envelope schema lets other namespaces through) but one level down."""
    root = signed_dossier(w)
    etree.SubElement(root.find("CKy_Dvi"), "{urn:attacker}Wrap").append(signature_of(root))
    return to_bytes(root)


@attack("SIG-DIGEST@TK1-TS")
def signature_transplanted_from_another_form(w, cfg):
    """The D02-TS's signature, byte for byte, pasted into an unsigned TK1-TS."""
    signed = sign_form(samples.d02ts(2), w.signer(w.unit))
    start, end = signed.index(b"<Signature"), signed.index(b"</Signature>") + len(b"</Signature>")
    tk1 = samples.tk1ts(1).replace(b"<Cky />", b"<Cky>" + signed[start:end] + b"</Cky>")
    return packed(w, [("TK1-TS", "TK1-TS.xml", tk1)])


# algorithms and transforms


@attack("SIG-ALGORITHM")
def hmac_sha256_signature_on_envelope(w, cfg):
    return to_bytes(forge(envelope_tree(w), w.unit, holder="CKy_Dvi", method="hmac-sha256"))


@attack("SIG-CERT-MISSING@D02-TS")
def hmac_sha256_signature_without_certificate(w, cfg):
    """HMAC with a key anyone can pick, and so no certificate to name a signer."""
    return with_d02(w, forge(d02(), None, method="hmac-sha256"))


@attack("SIG-ALGORITHM@D02-TS")
def rsa_sha1_signature_method(w, cfg):
    return with_d02(w, forge(d02(), w.unit, method="rsa-sha1"))


@attack("SIG-ALGORITHM")
def sha1_digest_on_envelope(w, cfg):
    return to_bytes(forge(envelope_tree(w), w.unit, holder="CKy_Dvi", digest="sha1"))


def _transform(algorithm: str, child: etree._Element | None = None) -> etree._Element:
    el = etree.Element(ds("Transform"), Algorithm=algorithm, nsmap={"ds": DSIG_NS})
    if child is not None:
        el.append(child)
    return el


@attack("SIG-PROFILE@D02-TS")
def xslt_transform(w, cfg):
    sheet = etree.fromstring(
        b'<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0">'
        b'<xsl:template match="/"><xsl:copy-of select="document(\'file:///etc/passwd\')"/></xsl:template>'
        b"</xsl:stylesheet>"
    )
    return with_d02(w, forge(d02(), w.unit, transforms=(ENVELOPED, _transform(XSLT, sheet))))


@attack("SIG-PROFILE@D02-TS")
def xpath_transform_excluding_the_rows(w, cfg):
    xpath = etree.Element(ds("XPath"))
    xpath.text = "not(ancestor-or-self::LaoDong)"
    form = forge(d02(), w.unit, transforms=(ENVELOPED, _transform(XPATH, xpath), C14N))
    return with_d02(w, inflate_rows(form))


@attack("SIG-PROFILE@D02-TS")
def enveloped_signature_without_the_enveloped_transform(w, cfg):
    return with_d02(w, forge(d02(), w.unit, transforms=(C14N,)))


@attack("SIG-PROFILE@D02-TS")
def reference_with_extra_transforms(w, cfg):
    return with_d02(w, forge(d02(), w.unit, transforms=(ENVELOPED, C14N, C14N)))


@attack("SIG-PROFILE")
def c14n_with_comments_transform(w, cfg):
    return to_bytes(
        forge(envelope_tree(w), w.unit, holder="CKy_Dvi", transforms=(ENVELOPED, C14N + "#WithComments"))
    )


# keys


@attack("SIG-KEYVALUE@D02-TS")
def keyvalue_disagrees_with_certificate_in_form(w, cfg):
    form = signed_d02(w)
    key_info = signature_of(form).find(ds("KeyInfo"))
    theirs = signature_of(signed_d02(w, w.other_unit)).find(f"{ds('KeyInfo')}/{ds('KeyValue')}")
    key_info.replace(key_info.find(ds("KeyValue")), theirs)
    return with_d02(w, form)


@attack("SIG-INVALID@D02-TS")
def another_key_behind_the_units_certificate(w, cfg):
    """Signed with the other unit's key; the unit's certificate put in X509Data."""
    form = signed_d02(w, w.other_unit)
    key_info = signature_of(form).find(ds("KeyInfo"))
    ours = signature_of(signed_d02(w)).find(f"{ds('KeyInfo')}/{ds('X509Data')}")
    key_info.replace(key_info.find(ds("X509Data")), ours)
    return with_d02(w, form)


@attack("SIG-CERT-MISSING")
def keyvalue_only_no_certificate(w, cfg):
    root = signed_dossier(w)
    data = signature_of(root).find(f"{ds('KeyInfo')}/{ds('X509Data')}")
    data.getparent().remove(data)
    return to_bytes(root)


@attack("SIG-BASE64")
def emptysignature_value(w, cfg):
    root = signed_dossier(w)
    signature_of(root).find(ds("SignatureValue")).text = ""
    return to_bytes(root)


@attack("SIG-BASE64")
def signature_value_not_base64(w, cfg):
    root = signed_dossier(w)
    signature_of(root).find(ds("SignatureValue")).text = "AAAAA"  # 5 characters: bad padding
    return to_bytes(root)


# the parser: DTDs, entities, sizes, encodings


def _with_doctype(w: World, subset: bytes, edit: Callable[[bytes], bytes] = lambda b: b) -> bytes:
    body = dossier(w.signer(w.unit))
    at = body.index(b"<Hoso")
    return body[:at] + b"<!DOCTYPE Hoso [" + subset + b"]>\n" + edit(body[at:])


def _in_unit_name(reference: bytes) -> Callable[[bytes], bytes]:
    return lambda b: b.replace(b"<TenDoiTuong>", b"<TenDoiTuong>" + reference, 1)


@attack("XML-DTD", layer="envelope")
def xxe_to_a_local_file(w, cfg):
    return _with_doctype(w, b'<!ENTITY x SYSTEM "file:///etc/passwd">', _in_unit_name(b"&x;"))


@attack("XML-DTD", layer="envelope")
def xxe_to_localhost_over_http(w, cfg):
    return _with_doctype(w, b'<!ENTITY x SYSTEM "http://127.0.0.1:9/secret">', _in_unit_name(b"&x;"))


@attack("XML-DTD", layer="envelope")
def parameter_entities(w, cfg):
    return _with_doctype(w, b'<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;')


@attack("XML-DTD", layer="envelope")
def billion_laughs(w, cfg):
    levels = [b'<!ENTITY a0 "lol">'] + [
        b'<!ENTITY a%d "%s">' % (i, b"&a%d;" % (i - 1) * 10) for i in range(1, 10)
    ]
    return _with_doctype(w, b"".join(levels), _in_unit_name(b"&a9;"))


@attack("XML-DTD", layer="envelope")
def quadratic_blowup(w, cfg):
    return _with_doctype(w, b'<!ENTITY a "' + b"x" * 50_000 + b'">', _in_unit_name(b"&a;" * 50_000))


@attack("XML-DTD@D02-TS", layer="envelope")
def billion_laughs_in_a_form(w, cfg):
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE D02-TS [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        b"<D02-TS><NoiDung>&c;</NoiDung><Cky/></D02-TS>"
    )
    return with_d02(w, bomb)


@attack("XML-DTD", layer="envelope")
def doctype_in_utf16_big_endian(w, cfg):
    doc = '<?xml version="1.0" encoding="UTF-16BE"?><!DOCTYPE Hoso [<!ENTITY x SYSTEM "file:///etc/passwd">]><Hoso>&x;</Hoso>'
    return doc.encode("utf-16-be")


@attack("XML-DTD", layer="envelope")
def doctype_in_utf32(w, cfg):
    """UTF-32 slips past the byte scan for <!DOCTYPE; the check after parsing must still catch it."""
    doc = '<?xml version="1.0" encoding="UTF-32"?><!DOCTYPE Hoso [<!ENTITY x SYSTEM "file:///etc/passwd">]><Hoso>&x;</Hoso>'
    return doc.encode("utf-32")


@attack("XML-ENCODING", layer="envelope")
def doctype_in_utf7(w, cfg):
    """libxml2 reads UTF-7 through iconv, where "+ADw-" is "<": a DOCTYPE no byte scan sees."""
    return (b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE Hoso +AFs-+ADw-!ENTITY x SYSTEM '
            b'"file:///etc/passwd"+AD4-+AF0-+AD4-+ADw-Hoso+AD4-+ACY-x;+ADw-/Hoso+AD4-')


@attack("XML-ENCODING", layer="envelope")
def utf7_behind_a_long_declaration(w, cfg):
    """libxml2 reads any white space inside the XML declaration: its encoding may come after the
    bytes a scan looks at."""
    return (b'<?xml version="1.0"' + b" " * 5000 + b'encoding="UTF-7"?>+ADw-!DOCTYPE Hoso +AFs-+AF0-+AD4-'
            b"+ADw-Hoso/+AD4-")


@attack("XML-ENCODING", layer="envelope")
def doctype_in_java_escapes(w, cfg):
    """iconv's JAVA encoding reads "\\u003c" as "<"."""
    return b'<?xml version="1.0" encoding="JAVA"?>\\u003c!DOCTYPE Hoso []>\\u003cHoso/>'


@attack("XML-ENCODING@D02-TS", layer="envelope")
def attributes_in_a_utf7_form(w, cfg):
    """A form in UTF-7, its 5,000 attributes spelt "+AD0-" where the byte count looks for "=":
    the shape limits must not be skipped (refused before any parse)."""
    attributes = "".join(f' a{i}="x"' for i in range(5000))
    form = f'<D02-TS{attributes}><NoiDung/><Cky/></D02-TS>'.encode("utf-7").replace(b"=", b"+AD0-")
    return with_d02(w, b'<?xml version="1.0" encoding="UTF-7"?>' + form)


@attack(layer="envelope")
def billion_laughs_in_utf32(w, cfg):
    """Past the byte scan too; libxml2's amplification limit stops it first (XML-MALFORMED), or the
    check after parsing (XML-DTD): either way nothing is expanded."""
    levels = '<!ENTITY a0 "lol">' + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    doc = f'<?xml version="1.0" encoding="UTF-32"?><!DOCTYPE Hoso [{levels}]><Hoso>&a9;</Hoso>'
    return doc.encode("utf-32")


def _nest(parent: etree._Element, tag: str, levels: int) -> None:
    for _ in range(levels):
        parent = etree.SubElement(parent, tag)


@attack("XML-TOO-DEEP", layer="envelope")
def deep_nesting_in_envelope(w, cfg):
    """Beyond limits.max_depth (64), inside the unsigned Object where no schema looks."""
    root = signed_dossier(w)
    _nest(signature_of(root).find(ds("Object")), "{urn:attacker}d", 70)
    return to_bytes(root)


@attack("XML-TOO-DEEP@D02-TS", layer="envelope")
def deep_nesting_in_form(w, cfg):
    form = d02()
    _nest(form.find("NoiDung/LaoDong/Ghichu"), "d", 70)
    return with_d02(w, to_bytes(w.signer(w.unit).sign(form, location="Cky")))


@attack("XML-MALFORMED", layer="envelope")
def hundred_thousand_levels(w, cfg):
    body = dossier(w.signer(w.unit))
    return body.replace(
        b"<CKy_Dvi>", b'<CKy_Dvi><x xmlns="urn:attacker">' + b"<x>" * 100_000 + b"</x>" * 100_001, 1
    )


@attack("XML-ATTRIBUTE-TOO-LONG", layer="envelope")
def huge_attribute_in_envelope(w, cfg):
    body = dossier(w.signer(w.unit))
    return body.replace(b"<NoiDung>", b'<NoiDung x="' + b"A" * (20 * 1024 * 1024) + b'">', 1)


@attack("XML-ATTRIBUTE-TOO-LONG@D02-TS", layer="envelope")
def huge_attribute_in_a_signed_form(w, cfg):
    form = samples.d02ts(2).replace(b"<LaoDong>", b'<LaoDong x="' + b"B" * (5 * 1024 * 1024) + b'">', 1)
    return with_d02(w, sign_form(form, w.signer(w.unit)))


@attack("XML-TOO-MANY-ELEMENTS", layer="envelope")
def too_many_elements_in_envelope(w, cfg):
    cfg.limits.max_elements = 500
    root = signed_dossier(w)
    obj = signature_of(root).find(ds("Object"))
    obj.extend(etree.Element("{urn:attacker}e") for _ in range(1000))
    return to_bytes(root)


@attack("XML-TOO-MANY-ELEMENTS@D02-TS", layer="envelope")
def too_many_elements_in_form(w, cfg):
    cfg.limits.max_elements = 400
    return with_d02(w, sign_form(samples.d02ts(20), w.signer(w.unit)))


@attack("ENV-TOO-MANY-FILES", layer="envelope")
def too_many_files(w, cfg):
    cfg.limits.max_files = 2
    form = sign_form(samples.d02ts(1), w.signer(w.unit))
    return packed(w, [("D02-TS", f"D02-TS-{i}.xml", form) for i in range(3)])


@attack("SIG-DIGEST", layer="signature")
def declared_encoding_lies(w, cfg):
    """No BOM, and the declaration says ISO-8859-1: the Vietnamese text reads differently."""
    body = dossier(w.signer(w.unit)).removeprefix(samples.BOM.encode())
    return body.replace(b'encoding="utf-8"', b'encoding="ISO-8859-1"', 1)


@attack("XML-MALFORMED", layer="envelope")
def overlong_utf8_sequence(w, cfg):
    """0xC0 0xBC is an overlong '<'."""
    return dossier(w.signer(w.unit)).replace(b"<TenDoiTuong>", b"<TenDoiTuong>\xc0\xbc", 1)


@attack("XML-MALFORMED", layer="envelope")
def nul_byte_in_envelope(w, cfg):
    return dossier(w.signer(w.unit)).replace(b"<MaSoThue>", b"<MaSoThue>\x00", 1)


@attack("XML-MALFORMED@D02-TS", layer="envelope")
def nul_byte_in_form(w, cfg):
    return with_d02(w, samples.d02ts(2).replace(b"<HoTen>", b"<HoTen>\x00", 1))


@attack("SIG-DIGEST")
def processing_instruction_in_mathutuc(w, cfg):
    """Unlike comments, processing instructions are part of canonical XML."""
    return dossier(w.signer(w.unit)).replace(b"<MaThuTuc>600", b"<MaThuTuc>6<?x 0?>00", 1)


# certificates


@attack("SIG-EXPIRED@D02-TS")
def form_signer_expired(w, cfg):
    issued = unit_cert(w, not_before=utcnow() - timedelta(days=400), not_after=utcnow() - timedelta(days=1))
    return with_d02(w, signed_d02(w, issued))


@attack("SIG-NOT-YET-VALID@D02-TS")
def form_signer_not_yet_valid(w, cfg):
    issued = unit_cert(w, not_before=utcnow() + timedelta(days=1), not_after=utcnow() + timedelta(days=400))
    return with_d02(w, signed_d02(w, issued))


@attack("SIG-EXPIRED", "SIG-EXPIRED@D02-TS")
def issuing_ca_expired(w, cfg):
    old_ca = pki.create_ca(
        "Old Issuing CA", parent=w.root, key=w.ca.key,
        not_before=utcnow() - timedelta(days=800), not_after=utcnow() - timedelta(days=1),
    )  # fmt: skip
    issued = pki.issue_unit_cert(
        old_ca, UNIT.mst, UNIT.name, key=w.unit.key, not_before=utcnow() - timedelta(days=700)
    )
    return dossier(w.signer(issued))


def crl_declaring_cert(w: World) -> pki.Issued:
    """A unit certificate with a CRL distribution point, as licensed CAs issue them."""
    template = unit_cert(w).cert
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(template.issuer)
        .public_key(w.unit.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(template.not_valid_before_utc)
        .not_valid_after(template.not_valid_after_utc)
    )
    for ext in template.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    point = x509.DistributionPoint(
        [x509.UniformResourceIdentifier("http://127.0.0.1:9/ca.crl")], None, None, None
    )
    builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return pki.Issued(
        key=w.unit.key, cert=builder.sign(w.ca.key, hashes.SHA256()), chain=[w.ca.cert, *w.ca.chain]
    )


def revoke(cfg: Config, w: World, issued: pki.Issued) -> None:
    """A CRL of the issuing CA listing `issued`, in cfg.trust.crl_dir."""
    crl = pki.issue_crl(w.ca, [(issued.cert.serial_number, utcnow() - timedelta(days=1))])
    crl_dir = Path(cfg.path(cfg.trust.crl_dir))
    crl_dir.mkdir(parents=True, exist_ok=True)
    (crl_dir / "issuing-ca.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))


@attack("SIG-REVOKED", "SIG-REVOKED@D02-TS")
def revoked_certificate_with_crl_distribution_point(w, cfg):
    issued = crl_declaring_cert(w)
    revoke(cfg, w, issued)
    return dossier(w.signer(issued))


@attack("SIG-REVOKED", "SIG-REVOKED@D02-TS")
def revoked_certificate_without_crl_distribution_point(w, cfg):
    """The CRL is held in crl_dir: it counts even when the certificate names no distribution point."""
    issued = unit_cert(w)
    revoke(cfg, w, issued)
    return dossier(w.signer(issued))


def self_signed_unit(w: World) -> pki.Issued:
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.COMMON_NAME, UNIT.name),
        x509.NameAttribute(NameOID.USER_ID, f"MST:{UNIT.mst}"),
    ])  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(w.unit.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(utcnow() - timedelta(days=1))
        .not_valid_after(utcnow() + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(w.unit.key, hashes.SHA256())
    )
    return pki.Issued(key=w.unit.key, cert=cert)


@attack(
    "SIG-UNTRUSTED", "SIG-UNTRUSTED@D02-TS",
)  # fmt: skip
def self_signed_leaf_with_the_units_mst(w, cfg):
    return dossier(w.signer(self_signed_unit(w)))


@attack("SIG-UNTRUSTED", "SIG-UNTRUSTED@D02-TS")
def rogue_cas_named_like_the_trusted_ones(w, cfg):
    fake_root = pki.create_ca("Test Root CA", key=w.rogue_ca.key)
    fake_ca = pki.create_ca("Test Issuing CA", parent=fake_root, key=w.rogue_ca.key)
    return dossier(w.signer(pki.issue_unit_cert(fake_ca, UNIT.mst, UNIT.name, key=w.unit.key)))


@attack("SIG-UNTRUSTED@D02-TS")
def form_signed_under_an_untrusted_ca(w, cfg):
    rogue = pki.issue_unit_cert(w.rogue_ca, UNIT.mst, UNIT.name, key=w.unit.key)
    return with_d02(w, signed_d02(w, rogue))


@attack("SIG-CHAIN-INVALID", "SIG-CHAIN-INVALID@D02-TS")
def leaf_issued_by_another_leaf(w, cfg):
    return dossier(w.signer(pki.issue_unit_cert(w.other_unit, UNIT.mst, UNIT.name, key=w.unit.key)))


@attack("SIG-WEAK-KEY@D02-TS")
def rsa_1024_form_signer(w, cfg):
    return with_d02(w, signed_d02(w, unit_cert(w, key=pki.new_key("rsa1024"))))


@attack("SIG-WEAK-KEY", "SIG-WEAK-KEY@D02-TS")
def ec_p192_signer(w, cfg):
    return dossier(w.signer(unit_cert(w, key=ec.generate_private_key(ec.SECP192R1()))))


@attack("SIG-CA-LEAF@D02-TS")
def ca_true_form_signer(w, cfg):
    return with_d02(w, signed_d02(w, unit_cert(w, ca_flag=True)))


@attack("SIG-KEY-USAGE@D02-TS")
def tls_server_only_form_signer(w, cfg):
    return with_d02(w, signed_d02(w, unit_cert(w, tls_only=True)))


@attack("SIG-KEY-USAGE", "SIG-KEY-USAGE@D02-TS")
def encipherment_only_key_usage(w, cfg):
    return dossier(w.signer(unit_cert(w, key_usage="encipherment")))


@attack("SIG-CHAIN-INVALID", "SIG-CHAIN-INVALID@D02-TS")
def sha1_signed_certificate(w, cfg):
    return dossier(w.signer(unit_cert(w, hash_alg="sha1")))


# units and tax codes


@attack("SIG-MST-MISMATCH@D02-TS")
def one_of_two_forms_signed_by_another_unit(w, cfg):
    tk1 = sign_form(samples.tk1ts(1), w.signer(w.unit))
    return packed(w, [("D02-TS", "D02-TS.xml", signed_d02(w, w.other_unit)), ("TK1-TS", "TK1-TS.xml", tk1)])


@attack("SIG-MST-MISMATCH")
def envelope_signed_by_another_unit(w, cfg):
    """The unit's envelope and form, but the envelope signature is the other unit's."""
    return with_d02(w, signed_d02(w), by=w.other_unit)


@attack("SIG-MST-MISMATCH@D02-TS")
def envelope_of_another_unit_around_the_units_form(w, cfg):
    """The other unit's own envelope (its MST, its signature) carrying a form the unit signed."""
    return with_d02(w, signed_d02(w), unit=OTHER_UNIT, by=w.other_unit)


@attack("SIG-MST-MISMATCH", "SIG-MST-MISMATCH@D02-TS")
def envelope_claims_another_units_mst(w, cfg):
    """MaSoThue of the other unit; every signature is the unit's."""
    return with_d02(w, signed_d02(w), unit=OTHER_UNIT)


@attack("SIG-MST-MISMATCH", "SIG-MST-MISMATCH@D02-TS")
def certificate_without_uid_mst(w, cfg):
    return dossier(w.signer(unit_cert(w, mst=None, extra_uids=["CCCD:001099012345"])))


@attack("SIG-MST-MISMATCH", "SIG-MST-MISMATCH@D02-TS")
def mst_only_in_the_common_name(w, cfg):
    issued = pki.issue_unit_cert(w.ca, None, f"{UNIT.name} MST:{UNIT.mst}", key=w.unit.key)
    return dossier(w.signer(issued))


@attack("SIG-MST-MISMATCH", "SIG-MST-MISMATCH@D02-TS")
def branch_certificate_for_the_head_office(w, cfg):
    """UID=MST:<mst>-001 (a branch) signing for MaSoThue <mst> (the head office)."""
    return dossier(w.signer(unit_cert(w, mst_suffix="-001")))


@attack("SIG-MST-MISMATCH", "SIG-MST-MISMATCH@D02-TS")
def head_office_certificate_for_a_branch(w, cfg):
    branch = samples.Unit(mst=f"{UNIT.mst}-001", code="TZH490L-1", name=f"{UNIT.name} - Chi nhánh 1")
    return dossier(w.signer(w.unit), unit=branch)


# envelope and files


def _b64_edit(cut: int) -> Callable[[bytes], bytes]:
    """Cut `cut` characters off the first NoiDungFile and make DoDaiFile agree."""

    def edit(data: bytes) -> bytes:
        root = etree.fromstring(data)
        content = root.find(f"{FORM_PATH}/NoiDungFile")
        content.text = content.text[:-cut]
        root.find(f"{FORM_PATH}/DoDaiFile").text = str(len(content.text))
        return to_bytes(root)

    return edit


@attack("ENV-XSD", "ENV-FILE-BASE64", layer="envelope")
def truncated_base64(w, cfg):
    return with_d02(w, signed_d02(w), edit=_b64_edit(3))


@attack("ENV-XSD", "ENV-FILE-BASE64", layer="envelope")
def truncated_base64_of_a_large_form(w, cfg):
    """Over 500 KB: the envelope's schema errors come from libxml2, not xmlschema."""
    return with_d02(w, signed_d02(w, rows=1500), edit=_b64_edit(3))


@attack("XML-MALFORMED@D02-TS", layer="envelope")
def truncated_base64_at_a_quantum_boundary(w, cfg):
    return with_d02(w, signed_d02(w), edit=_b64_edit(400))


@attack("ENV-FILE-LENGTH", layer="envelope")
def dodaifile_lies(w, cfg):
    return with_d02(w, signed_d02(w), edit=lambda d: d.replace(b"<DoDaiFile>", b"<DoDaiFile>1", 1))


@attack("ENV-FILE-COUNT", layer="envelope")
def soluongfile_lies(w, cfg):
    return with_d02(w, signed_d02(w), edit=lambda d: d.replace(b"<SoLuongFile>1<", b"<SoLuongFile>2<", 1))


@attack("ENV-FILE-EMPTY", layer="envelope")
def empty_embedded_file(w, cfg):
    return with_d02(w, b"")


@attack("XML-MALFORMED@D02-TS", layer="envelope")
def pdf_claiming_to_be_xml(w, cfg):
    return with_d02(w, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")


@attack(
    layer="envelope",
)  # fmt: skip
def form_embedded_twice(w, cfg):
    form = to_bytes(signed_d02(w))
    return packed(w, [("D02-TS", "D02-TS.xml", form), ("D02-TS", "D02-TS-copy.xml", form)])


@attack(
    layer="envelope",
)  # fmt: skip
def known_form_disguised_as_pdf(w, cfg):
    unsigned_invalid = samples.d02ts(2).replace(b"<TienLuong>", b"<TienLuong>x")
    return packed(w, [("D02-TS", "D02-TS.pdf", unsigned_invalid)])


@attack("XSD-UNKNOWN-FORM@X99-TS", layer="schema")
def unknown_matokhai(w, cfg):
    return packed(w, [("X99-TS", "X99-TS.xml", signed_d02(w))])


@attack("XSD@TK1-TS", layer="schema")
def matokhai_names_another_form(w, cfg):
    return packed(w, [("TK1-TS", "TK1-TS.xml", signed_d02(w))])


@attack("ENV-XSD", layer="envelope")
def namespaced_element_in_envelope(w, cfg):
    return dossier(w.signer(w.unit)).replace(b"<NoiDung>", b'<NoiDung><a:x xmlns:a="urn:attacker"/>', 1)


@attack("XSD@D02-TS", layer="schema")
def namespaced_element_in_a_signed_form(w, cfg):
    form = d02()
    etree.SubElement(form.find("NoiDung"), "{urn:attacker}x", nsmap={"a": "urn:attacker"})
    return with_d02(w, to_bytes(w.signer(w.unit).sign(form, location="Cky")))


@attack(layer=None)
def relative_namespace_uri_in_envelope(w, cfg):
    body = dossier(w.signer(w.unit))
    return body.replace(b'xmlns:xsd="http://www.w3.org/2001/XMLSchema"', b'xmlns:xsd="XMLSchema"', 1)


@attack(layer=None)
def relative_namespace_uri_in_form(w, cfg):
    form = sign_form(samples.d02ts(2), w.signer(w.unit))
    return with_d02(
        w, form.replace(b'xmlns:xsd="http://www.w3.org/2001/XMLSchema"', b'xmlns:xsd="XMLSchema"', 1)
    )


@attack(
    "SIG-DIGEST@D02-TS",
)
def text_after_the_signature_in_a_form(w, cfg):
    """The text is form content the unit did not sign."""
    form = sign_form(samples.d02ts(2), w.signer(w.unit))
    return with_d02(w, form.replace(b"</Signature></Cky>", b"</Signature>x</Cky>", 1))


def _corrupt_certificate(w: World, index: int, old: bytes, new: bytes) -> bytes:
    """The envelope's X509Certificate `index` with `old` replaced by `new` in its DER."""
    root = signed_dossier(w)
    el = list(signature_of(root).iter(ds("X509Certificate")))[index]
    der = base64.b64decode("".join(el.text.split()))
    assert old in der
    el.text = base64.b64encode(der.replace(old, new, 1)).decode()
    return to_bytes(root)


@attack("SIG-CERT")
def invalid_utf8_in_the_signers_name(w, cfg):
    name = UNIT.name.encode()
    return _corrupt_certificate(w, 0, name, b"\xf5" + name[1:])


@attack()
def invalid_utf8_in_the_issuing_cas_name(w, cfg):
    return _corrupt_certificate(w, 1, b"Test Issuing CA", b"\xf5est Issuing CA")


@attack("SIG-CERT")
def malformed_extension_in_the_signers_certificate(w, cfg):
    """BasicConstraints' SEQUENCE tag turned into a SET."""
    basic_constraints = bytes.fromhex("0603551d130101ff04023000")
    return _corrupt_certificate(w, 0, basic_constraints, basic_constraints[:-2] + b"\x31\x00")


def xfail_if_bug(names: Sequence[str]) -> list:
    params = []
    for name in names:
        bug = ATTACKS[name].bug
        params.append(
            pytest.param(name, id=name, marks=[pytest.mark.xfail(strict=True, reason=bug)] if bug else [])
        )
    return params


@pytest.mark.parametrize("name", xfail_if_bug(list(ATTACKS)))
def test_attack_is_refused(name, world, cfg, now):
    attack = ATTACKS[name]
    body = attack.build(world, cfg)
    out = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits).receive(body, now, Caller("admin"))
    assert not out.accepted, "accepted"
    if attack.layer:
        assert out.failed_layer == attack.layer, out.layers
    if attack.expected:
        assert errors_of(out) == attack.expected, [(p.code, p.form, p.message_en) for p in out.problems]


def test_the_corpus_is_large_enough():
    assert len(ATTACKS) >= 40


@pytest.mark.parametrize(
    "name",
    [
        "huge-attribute-in-envelope",
        "huge-attribute-in-a-signed-form",
        "quadratic-blowup",
        "hundred-thousand-levels",
        pytest.param("truncated-base64"),
        pytest.param("truncated-base64-of-a-large-form"),
    ],
)
def test_no_problem_echoes_a_large_part_of_the_input(name, world, cfg, now):
    out = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits).receive(ATTACKS[name].build(world, cfg), now)
    assert out.problems and all(short(p) for p in out.problems), [len(p.message_en) for p in out.problems]


@pytest.fixture
def receiver(cfg) -> Receiver:
    return Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)


# --- changes that are not attacks: accepted, and what is read is what was signed ----------------


def _inject_comment_into_form_value(w: World) -> tuple[bytes, str, str]:
    form = sign_form(samples.d02ts(2), w.signer(w.unit))
    signed_value = etree.fromstring(form).findtext("NoiDung/LaoDong/CMND")
    form = form.replace(
        f"<CMND>{signed_value}<".encode(), f"<CMND>{signed_value[:4]}<!-- -->{signed_value[4:]}<".encode(), 1
    )
    return with_d02(w, form), "CMND", signed_value


def test_comment_injected_into_a_form_value_reads_the_signed_value(receiver, world, now):
    """The form still verifies (comments are outside canonical XML): accepted only because what
    is read is the whole signed value, not the part before the comment."""
    body, field, signed_value = _inject_comment_into_form_value(world)
    out = receiver.receive(body, now)
    assert out.accepted, out.problems
    content = etree.fromstring(body).findtext(f"{FORM_PATH}/NoiDungFile")
    form = parse_xml(base64.b64decode(content), XmlLimits()).getroot()
    assert b"<!-- -->" in base64.b64decode(content)
    assert form.findtext(f"NoiDung/LaoDong/{field}") == signed_value


@pytest.mark.parametrize(
    "old, new",
    [
        pytest.param(b"<MaThuTuc>600<", b"<MaThuTuc>6<!-- 02 -->00<", id="comment-in-mathutuc"),
        pytest.param(b"<MaThuTuc>600<", b"<MaThuTuc><![CDATA[600]]><", id="cdata-mathutuc"),
        pytest.param(b"<MaThuTuc>600<", b"<MaThuTuc>&#54;00<", id="character-reference-in-mathutuc"),
        pytest.param(b'encoding="utf-8"', b'encoding="ISO-8859-1"', id="lying-encoding-behind-a-bom"),
        pytest.param(b"<Hoso ", b"<!-- hello --><Hoso ", id="comment-before-the-root"),
    ],
)
def test_rewrites_outside_canonical_xml_read_the_signed_values(receiver, world, now, old, new):
    body = dossier(world.signer(world.unit))
    original = receiver.receive(body, now)
    rewritten = body.replace(old, new, 1)
    assert rewritten != body
    out = receiver.receive(rewritten, now)
    assert out.accepted, out.problems
    assert out.envelope == original.envelope and out.envelope["procedure"] == "600"


def test_utf16_envelope_signed_over_its_characters(receiver, world, now):
    """The same signed envelope re-encoded as UTF-16 (canonical XML, and so the signature, is the
    same): refused at the envelope layer by policy, or accepted reading exactly the same values."""
    body = dossier(world.signer(world.unit))
    text = body.decode("utf-8-sig").replace('encoding="utf-8"', 'encoding="UTF-16"', 1)
    out = receiver.receive(text.encode("utf-16"), now)
    if out.accepted:
        assert out.envelope == receiver.receive(body, now).envelope
    else:
        assert out.failed_layer == "envelope"


@pytest.mark.parametrize(
    "old, new",
    [
        pytest.param(b"<SigningTime>", b"<SigningTime>" + b"1" * 10_000_001, id="huge-text-in-object"),
        pytest.param(
            b"<Signature ", b'<Signature x="' + b"A" * 20_000_000 + b'" ', id="huge-attribute-on-signature"
        ),
        pytest.param(b"</ds:SignedInfo>", b"</ds:SignedInfo>x", id="text-after-signedinfo"),
    ],
)
def test_unsigned_junk_in_the_signature_does_not_crash(receiver, world, now, old, new):
    """Outside what is signed: refused (SIG-PROFILE) or accepted reading the same values, never a crash."""
    body = dossier(world.signer(world.unit))
    junk = body.replace(old, new, 1)
    assert junk != body
    out = receiver.receive(junk, now)
    assert isinstance(out, Outcome)
    assert not out.accepted or out.envelope == receiver.receive(body, now).envelope


def test_ten_million_sibling_elements_are_refused_not_crashed(receiver, now):
    """Refused from the bytes, before libxml2 builds a tree (that would take about 1.4 GB)."""
    out = receiver.receive(b"<Hoso>" + b"<a/>" * 10_000_001 + b"</Hoso>", now)
    assert [p.code for p in out.problems] == ["XML-TOO-MANY-ELEMENTS"]


# --- over HTTP --------------------------------------------------------------------------------


HTTP_ATTACKS = [
    "id-shift-in-envelope",
    "object-wrapping-of-envelope-content",
    "partial-reference-to-one-row",
    "hmac-sha256-signature-on-envelope",
    "sha1-digest-on-envelope",
    "xslt-transform",
    "keyvalue-disagrees-with-certificate-in-form",
    "xxe-to-a-local-file",
    "billion-laughs",
    "deep-nesting-in-form",
    "too-many-elements-in-envelope",
    "declared-encoding-lies",
    "revoked-certificate-with-crl-distribution-point",
    "rogue-cas-named-like-the-trusted-ones",
    "one-of-two-forms-signed-by-another-unit",
    "dodaifile-lies",
    "form-embedded-twice",
    "namespaced-element-in-envelope",
    "relative-namespace-uri-in-envelope",
    "text-after-the-signature-in-a-form",
]


@pytest.mark.parametrize("name", xfail_if_bug(HTTP_ATTACKS))
async def test_attack_over_http_is_refused_and_nothing_is_received(name, world, cfg, aiohttp_client):
    attack = ATTACKS[name]
    body = attack.build(world, cfg)
    api = await start_api(cfg, aiohttp_client)
    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys["unit"]})
    notice = await resp.read()
    assert resp.status == 422, notice[:500]
    root = notice_of(notice)
    assert root.findtext(f"{{{NS}}}LoaiThongBao") == "TU_CHOI"
    codes = set(error_codes(root))
    assert codes and all(c.startswith(("XML-", "ENV-", "SIG-", "XSD")) for c in codes)
    if attack.expected:
        assert codes == {code.split("@")[0] for code in attack.expected}
    assert await listed(api, "received") == []
    assert len(await listed(api, "refused")) == 1

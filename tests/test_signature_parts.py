"""The signature profile's holes found by the black-box corpus (hardening issue, items 2-4):

- exclusive C14N, as SignedInfo's CanonicalizationMethod or as the reference's transform, is
  refused (SPEC §3 admits inclusive C14N 1.0 only), for the envelope and for a form;
- base64 content of the signature's parts (and the envelope's NoiDungFile) holds base64 and
  XML white space, nothing else: any other character is a refusal, not skipped by a decoder
  (else the same signed content is received again under new bytes, not as a replay);
- a SHA-3 DigestMethod is verified (SHA3-256/384/512) or refused (SHA3-224, weaker than
  SHA-256), never a KeyError / HTTP 500.
"""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from interchange.devkit import samples
from interchange.intake.pipeline import Caller, Receiver
from interchange.notices.notice import NS
from interchange.trust.dossier_signing import sign_envelope, sign_form
from interchange.trust.xmldsig import DSIG_NS, DocumentSigner, to_bytes
from interchange.xmlparse import strict_base64
from tests.helpers import FORM_PATH, UNIT, XML, World, error_codes, notice_of, signature_value, start_api

C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
SHA3 = "http://www.w3.org/2007/05/xmldsig-more#sha3-"
CALLER = Caller("submitter", mst=UNIT.mst)


def ds(tag: str) -> str:
    return f"{{{DSIG_NS}}}{tag}"


def signer_with(w: World, *, c14n: str = C14N, digest: str = "sha256") -> DocumentSigner:
    """The unit's signer, but with another canonicalization or digest (signxml signs it really)."""
    return DocumentSigner(w.unit.key, [w.unit.cert, *w.unit.chain], digest=digest, c14n=c14n)


def dossier_with(w: World, *, envelope: DocumentSigner | None = None, form: DocumentSigner | None = None) -> bytes:
    normal = w.signer(w.unit)
    signed_form = sign_form(samples.d02ts(2), form or normal)
    data = samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", signed_form)])
    return sign_envelope(data, envelope or normal, sign_forms=False)


def errors(out) -> set[str]:
    return {f"{p.code}@{p.form}" if p.form else p.code for p in out.problems if p.severity == "error"}


@pytest.fixture
def receiver(cfg) -> Receiver:
    return Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)


# --- exclusive C14N -----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["envelope", "form"])
def test_exclusive_c14n_signature_is_refused(receiver, world, now, where):
    """Signed by signxml with exclusive C14N for SignedInfo and the reference (it verifies)."""
    exc = signer_with(world, c14n=EXC_C14N)
    body = dossier_with(world, **{where: exc})
    assert EXC_C14N.encode() in (body if where == "envelope" else base64.b64decode(
        etree.fromstring(body).findtext(f"{FORM_PATH}/NoiDungFile")))
    out = receiver.receive(body, now, CALLER)
    assert not out.accepted
    assert errors(out) == ({"SIG-PROFILE"} if where == "envelope" else {"SIG-PROFILE@D02-TS"})
    assert any("CanonicalizationMethod" in p.message_en for p in out.problems)


def _exclusive_reference_only(w: World, root: etree._Element) -> etree._Element:
    """SignedInfo canonicalized with C14N 1.0 (re-signed so), the reference transform exclusive."""
    signature = next(root.iter(ds("Signature")))
    signature.find(f"{ds('SignedInfo')}/{ds('CanonicalizationMethod')}").set("Algorithm", C14N)
    value = signature.find(ds("SignatureValue"))
    value.text = base64.b64encode(signature_value(signature, w.unit, "rsa-sha256")).decode()
    return root


@pytest.mark.parametrize("where", ["envelope", "form"])
def test_exclusive_c14n_reference_transform_is_refused(receiver, world, now, where):
    exc = signer_with(world, c14n=EXC_C14N)
    if where == "form":
        form = etree.fromstring(sign_form(samples.d02ts(2), exc))
        form = to_bytes(_exclusive_reference_only(world, form))
        data = samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", form)])
        body = sign_envelope(data, world.signer(world.unit), sign_forms=False)
    else:
        body = to_bytes(_exclusive_reference_only(world, etree.fromstring(dossier_with(world, envelope=exc))))
    out = receiver.receive(body, now, CALLER)
    assert errors(out) == ({"SIG-PROFILE"} if where == "envelope" else {"SIG-PROFILE@D02-TS"})
    assert any("transforms not allowed" in p.message_en for p in out.problems)


def test_inclusive_c14n_is_still_received(receiver, world, now):
    out = receiver.receive(dossier_with(world), now, CALLER)
    assert out.accepted, out.problems


# --- base64 of the signature's parts -------------------------------------------------------------

# (what is inserted in the XML source, whether it is XML white space)
INSERTED = {
    "colon": (":", False),
    "apostrophe": ("'", False),
    "quote": ('"', False),
    "greater-than": (">", False),
    "ampersand": ("&amp;", False),
    "minus": ("-", False),
    "stray-equals": ("=", False),
    "nbsp": ("\u00a0", False),
    "line-separator": ("\u2028", False),
    "underscore": ("_", False),
    "space": (" ", True),
    "tab": ("\t", True),
    "lf": ("\n", True),
    "cr": ("&#13;", True),
}
PARTS = ["SignatureValue", "X509Certificate", "Modulus", "Exponent", "DigestValue"]


def _insert(body: bytes, tag: bytes, text: str, at: int = 2) -> bytes:
    """`text` inserted `at` characters into the first element named `tag` (any prefix)."""
    start = body.index(b">", body.index(b":" + tag + b">") if b":" + tag + b">" in body else body.index(b"<" + tag))
    return body[: start + 1 + at] + text.encode() + body[start + 1 + at :]


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("name", list(INSERTED))
def test_a_character_in_the_envelope_signatures_base64(receiver, world, now, part, name):
    text, is_space = INSERTED[name]
    body = dossier_with(world)
    changed = _insert(body, part.encode(), text)
    assert changed != body
    out = receiver.receive(changed, now, CALLER)
    if is_space and part == "DigestValue":  # inside SignedInfo: the signed content changed
        assert errors(out) == {"SIG-INVALID"}, out.problems
        return
    if is_space:
        assert out.accepted, (part, name, out.problems)
        return
    assert errors(out) == {"SIG-BASE64"}, (part, name, [(p.code, p.message_en) for p in out.problems])
    problem = next(p for p in out.problems if p.code == "SIG-BASE64")
    assert problem.xpath.startswith("/Hoso/CKy_Dvi/ds:Signature/") and f"ds:{part}" in problem.xpath
    assert problem.line


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("name", ["colon", "stray-equals", "nbsp", "space"])
def test_a_character_in_a_forms_signature_base64(receiver, world, now, part, name):
    text, is_space = INSERTED[name]
    form = _insert(sign_form(samples.d02ts(2), world.signer(world.unit)), part.encode(), text)
    body = sign_envelope(samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", form)]), world.signer(world.unit),
                         sign_forms=False)
    out = receiver.receive(body, now, CALLER)
    if is_space and part == "DigestValue":
        assert errors(out) == {"SIG-INVALID@D02-TS"}, out.problems
    else:
        assert out.accepted if is_space else errors(out) == {"SIG-BASE64@D02-TS"}, (part, name, out.problems)


@pytest.mark.parametrize("name", [n for n in INSERTED if n not in ("greater-than", "ampersand")])
def test_a_character_in_noidungfile(receiver, world, now, name):
    """NoiDungFile is covered by the envelope signature: the envelope is signed after the edit."""
    text, is_space = INSERTED[name]
    text = {"cr": "\r"}.get(name, text)  # set as a tree value, so a real CR (escaped on output)
    root = etree.fromstring(dossier_with(world))
    for sig in root.findall(f"CKy_Dvi/{ds('Signature')}"):
        sig.getparent().remove(sig)
    content = root.find(f"{FORM_PATH}/NoiDungFile")
    content.text = content.text[:8] + text + content.text[8:]
    content.getparent().find("DoDaiFile").text = str(len(content.text))  # the length stays consistent
    body = sign_envelope(to_bytes(root), world.signer(world.unit), sign_forms=False)
    out = receiver.receive(body, now, CALLER)
    if is_space:
        assert out.accepted, (name, out.problems)
    else:
        assert "ENV-FILE-BASE64" in errors(out) <= {"ENV-FILE-BASE64", "ENV-XSD"}, (name, out.problems)
        assert next(p for p in out.problems if p.code == "ENV-FILE-BASE64").xpath.endswith("/NoiDungFile")


def test_a_child_element_inside_signature_value_is_refused(receiver, world, now):
    body = dossier_with(world)
    changed = _insert(body, b"SignatureValue", "<x/>", at=0)
    assert errors(receiver.receive(changed, now, CALLER)) == {"SIG-BASE64"}


@pytest.mark.parametrize(
    "text, ok",
    [("QUJD", True), (" QU\tJD\r\nRA== ", True), ("QUJDRA=", False), ("QU=JDRA==", False), ("QUJDRA===", False),
     ("", False), ("QUJD\u00a0", False), ("QUJ-", False), ("QUJDRA==\u0085", False)],
)
def test_strict_base64(text, ok):
    assert (strict_base64(text) is not None) is ok


# --- SHA-3 digests ------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", ["256", "384", "512"])
def test_sha3_digest_is_verified(receiver, world, now, bits):
    body = dossier_with(world, envelope=signer_with(world, digest=SHA3 + bits))
    assert (SHA3 + bits).encode() in body
    out = receiver.receive(body, now, CALLER)
    assert out.accepted, out.problems
    tampered = body.replace(b"<MaThuTuc>600<", b"<MaThuTuc>602<", 1)
    assert errors(receiver.receive(tampered, now, CALLER)) == {"SIG-DIGEST"}


def test_sha3_224_digest_is_refused(receiver, world, now):
    body = dossier_with(world, form=signer_with(world, digest=SHA3 + "224"))
    assert errors(receiver.receive(body, now, CALLER)) == {"SIG-ALGORITHM@D02-TS"}


@pytest.mark.parametrize("bits, status", [("256", 202), ("224", 422)])
async def test_sha3_digest_over_http_is_a_signed_notice_not_a_500(world, cfg, aiohttp_client, bits, status):
    api = await start_api(cfg, aiohttp_client)
    body = dossier_with(world, envelope=signer_with(world, digest=SHA3 + bits))
    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys["unit"]})
    notice = await resp.read()
    assert resp.status == status, notice[:300]
    root = notice_of(notice)
    assert root.find(f".//{{{DSIG_NS}}}SignatureValue") is not None  # a signed notice
    kind = root.findtext(f"{{{NS}}}LoaiThongBao")
    assert (kind, error_codes(root)) == (("TIEP_NHAN", []) if status == 202 else ("TU_CHOI", ["SIG-ALGORITHM"]))

"""Checks of a Signature element's own text, before any of it is decoded (SPEC §3).

- Base64 content (`DigestValue`, `SignatureValue`, `X509Certificate`, `Modulus`, `Exponent`,
  ...) may hold XML white space (space, tab, CR, LF) and nothing else that is not base64.
  Python's and signxml's decoders skip any other character, so a `:` or a stray `=` put into a
  signed dossier's SignatureValue would leave the signature valid under new bytes: a second
  dossier, not a replay, of the same signed content.
- SignedInfo's `CanonicalizationMethod` is inclusive C14N 1.0 without comments, the only one
  the profile admits (the reference's transform is checked with the reference).
"""

from __future__ import annotations

import functools

from lxml import etree

from interchange import codes
from interchange.errors import Layer, Problem
from interchange.xmlparse import strict_base64

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
DSIG11_NS = "http://www.w3.org/2009/xmldsig11#"
C14N_10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"

# Every base64Binary element of XML-DSig 1.1 that can sit in SignedInfo or KeyInfo.
BASE64_ELEMENTS = frozenset(
    {
        "DigestValue", "SignatureValue", "X509Certificate", "X509CRL", "X509SKI", "X509Digest",
        "Modulus", "Exponent", "P", "Q", "G", "Y", "J", "Seed", "PgenCounter",
        "PublicKey", "DEREncodedKeyValue",
    }
)
def _xpath(el: etree._Element) -> str:
    """Like lxml's getpath, but XML-DSig elements written `ds:Name` (getpath writes `*` for an
    element in a default namespace), as notices write them."""
    steps = []
    while el is not None:
        qname = etree.QName(el)
        prefix = {DSIG_NS: "ds:", DSIG11_NS: "dsig11:"}.get(qname.namespace or "", "")
        same = [s for s in el.itersiblings(preceding=True) if s.tag == el.tag]
        following = next((True for s in el.itersiblings() if s.tag == el.tag), False)
        index = f"[{len(same) + 1}]" if same or following else ""
        steps.append(f"{prefix}{qname.localname}{index}")
        el = el.getparent()
    return "/" + "/".join(reversed(steps))


def _problem(code: str, vi: str, en: str, form: str | None, el: etree._Element) -> Problem:
    xpath = _xpath(el)
    return Problem(layer=Layer.SIGNATURE, code=code, message_vi=vi, message_en=en, form=form, xpath=xpath,
                   line=el.sourceline)


def _is_base64(text: str | None, name: str) -> bool:
    return _is_certificate_base64(text) if name == "X509Certificate" else strict_base64(text) is not None


@functools.lru_cache(maxsize=256)  # the same few certificates sign dossier after dossier, written alike
def _is_certificate_base64(text: str | None) -> bool:
    return strict_base64(text) is not None


def part_problems(signature: etree._Element, form: str | None) -> list[Problem]:
    """What is wrong with the text of the signature's parts (empty: nothing)."""
    problems = []
    method = signature.find(f"{{{DSIG_NS}}}SignedInfo/{{{DSIG_NS}}}CanonicalizationMethod")
    if method is not None and method.get("Algorithm") != C14N_10:
        algorithm = (method.get("Algorithm") or "")[:200]
        problems.append(
            _problem(
                codes.SIG_PROFILE,
                f"Phương pháp chuẩn hóa SignedInfo ({algorithm}) không được chấp nhận; chỉ C14N 1.0.",
                f"SignedInfo's CanonicalizationMethod {algorithm} is not allowed; only C14N 1.0 (inclusive, "
                "without comments) is.",
                form,
                method,
            )
        )
    for holder in (f"{{{DSIG_NS}}}SignedInfo", f"{{{DSIG_NS}}}SignatureValue", f"{{{DSIG_NS}}}KeyInfo"):
        for top in signature.findall(holder):
            for el in top.iter(f"{{{DSIG_NS}}}*", f"{{{DSIG11_NS}}}*"):
                name = el.tag.rpartition("}")[2]  # an element of one of the two namespaces: "{ns}name"
                # a child (element or processing instruction) would hide text from the decoders
                if name in BASE64_ELEMENTS and (len(el) > 0 or not _is_base64(el.text, name)):
                    problems.append(
                        _problem(
                            codes.SIG_BASE64,
                            f"{name} không phải base64 hợp lệ (chỉ được có ký tự base64 và khoảng trắng XML).",
                            f"{name} is not valid base64 (only base64 characters and XML white space are allowed).",
                            form,
                            el,
                        )
                    )
    return problems

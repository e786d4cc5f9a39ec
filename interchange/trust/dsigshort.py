"""The profile's own signatures the short way (interchange.trust.xmldsig uses these).

Most signatures a server sees and makes have one shape: RSA-SHA256 over SignedInfo in C14N 1.0,
one reference to the whole document (enveloped-signature, then C14N 1.0), SHA-256, the signer's
certificate in X509Data and its key in KeyValue. signxml handles every shape, at a cost: it
copies and re-parses the Signature, describes certificates for messages nobody reads, and its
signing re-parses the document. For that one shape:

- `holds_by_profile` verifies with the same steps and bytes signxml and `_ProfileVerifier`
  use (SignedInfo canonicalised the way the verifier does, the references read from those
  canonical bytes), and says True only when every step passes; anything else (another shape,
  a bad signature value, a KeyValue that does not match) is False before the tree is touched,
  and signxml then decides and says why. A digest that does not match is the one verdict given
  here (`InvalidDigest`, as the full path gives it): the steps before it all passed.
- `SignatureTemplate` makes what signxml's signer makes, byte for byte, from a Signature signxml
  made once: only the digest and the signature value differ from one document to the next.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree
from signxml.exceptions import InvalidDigest

from interchange.trust.c14nstream import Splice
from interchange.trust.dsigparts import C14N_10, DSIG_NS
from interchange.xmlparse import strict_base64

ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


def _ds(name: str) -> str:
    return f"{{{DSIG_NS}}}{name}"


SIGNED_INFO, SIGNATURE_VALUE, KEY_INFO = _ds("SignedInfo"), _ds("SignatureValue"), _ds("KeyInfo")
_DIGEST_VALUE = f"{SIGNED_INFO}/{_ds('Reference')}/{_ds('DigestValue')}"

# For copies of the Signature element: no entities, no network, and no 10 MB text limit (an
# unsigned Object may carry anything; the limits are the body size's).
SIGNATURE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


class HashWriter:
    """A file-like sink for lxml's write_c14n that hashes instead of buffering."""

    def __init__(self, algorithm: str):
        self.hash = hashlib.new(algorithm)

    def write(self, data: bytes) -> None:
        self.hash.update(data)


def detach(element: etree._Element) -> None:
    """Remove an element but keep its tail text, which belongs to the parent's content."""
    parent = element.getparent()
    if element.tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


def document_digest(root: etree._Element, signature: etree._Element, uri: str, exclusive: bool, algorithm: str,
                    splice: Splice | None) -> bytes:
    """The digest of the document without its signature (detached here, for good): the whole
    document for URI "", else `root`; with `splice`, `root` is a reduced tree (c14nstream)."""
    detach(signature)
    target = root.getroottree() if uri == "" else root
    if splice is not None:
        canonical = etree.tostring(target, method="c14n", exclusive=exclusive, with_comments=False)
        return splice.digest(canonical, algorithm)
    sink = HashWriter(algorithm)
    if uri == "":
        target.write_c14n(sink, exclusive=exclusive, with_comments=False)
    else:
        sink.write(etree.tostring(target, method="c14n", exclusive=exclusive, with_comments=False))
    return sink.hash.digest()


def signed_info_c14n(signed_info: etree._Element) -> bytes:
    """SignedInfo in C14N 1.0 as the verifier reads it: libxml2's C14N of a subtree whose default
    namespace is declared on an ancestor writes a spurious xmlns="" on grandchildren; a
    re-serialised copy carries every in-scope declaration on its own root and canonicalises right."""
    copy = etree.fromstring(etree.tostring(signed_info, with_tail=False), parser=SIGNATURE_PARSER)
    return etree.tostring(copy, method="c14n", exclusive=False, with_comments=False)


def _elements(parent: etree._Element, *tags: str) -> list[etree._Element] | None:
    """The children of `parent`, when they are exactly elements of `tags` in that order (and
    nothing but white space between them); None otherwise."""
    children = list(parent)
    if [c.tag for c in children] != list(tags) or (parent.text or "").strip():
        return None
    return children if all(not (c.tail or "").strip() for c in children) else None


def _bare(el: etree._Element, algorithm: str) -> bool:
    return el.get("Algorithm") == algorithm and len(el) == 0 and not (el.text or "").strip()


def holds_by_profile(root: etree._Element, signature: etree._Element, leaf: x509.Certificate,
                     splice: Splice | None) -> bool:
    """True: the signature holds, every check of the full path passed (the signature is then
    detached). False: not the profile's shape, or not valid; nothing was changed."""
    try:
        ready = _checked_value(signature, leaf)
    except Exception:  # noqa: BLE001  (whatever it is, the full path meets it and names it)
        return False
    if ready is None:
        return False
    expected, exclusive = ready
    if not hmac.compare_digest(document_digest(root, signature, "", exclusive, "sha256", splice), expected):
        raise InvalidDigest("the document was changed after it was signed (digest mismatch)")
    return True


def _checked_value(signature: etree._Element, leaf: x509.Certificate) -> tuple[bytes, bool] | None:
    """Everything but the digest, on the profile's shape: (the expected digest, exclusive C14N?)
    when the signature value holds for the certificate's key; None otherwise."""
    key = _rsa_key(leaf)
    if key is None:
        return None
    public, numbers = key
    # signxml reads a copy of the Signature, with the namespaces in scope where it sits
    copy = etree.fromstring(etree.tostring(signature, with_tail=False), parser=SIGNATURE_PARSER)
    tags = [c.tag for c in copy]
    if tags[:3] != [SIGNED_INFO, SIGNATURE_VALUE, KEY_INFO] or any(t != _ds("Object") for t in tags[3:]):
        return None
    if len(copy[1]) or not _key_info_fits(copy[2], numbers):
        return None
    raw = strict_base64(copy[1].text)
    canonical = signed_info_c14n(copy[0])
    reference = _the_reference(etree.fromstring(canonical, parser=SIGNATURE_PARSER))  # what was verified
    if raw is None or reference is None:
        return None
    try:
        public.verify(raw, canonical, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return None
    return reference


def _the_reference(signed_info: etree._Element) -> tuple[bytes, bool] | None:
    """(the expected digest, exclusive C14N?) of the profile's one reference; None: another shape."""
    parts = _elements(signed_info, _ds("CanonicalizationMethod"), _ds("SignatureMethod"), _ds("Reference"))
    if parts is None or not _bare(parts[0], C14N_10) or not _bare(parts[1], RSA_SHA256):
        return None
    reference = parts[2]
    if dict(reference.attrib) != {"URI": ""}:
        return None
    inside = _elements(reference, _ds("Transforms"), _ds("DigestMethod"), _ds("DigestValue"))
    if inside is None or not _bare(inside[1], SHA256) or len(inside[2]):
        return None
    transforms = list(inside[0])
    if any(t.tag != _ds("Transform") for t in transforms):
        return None
    if not (1 <= len(transforms) <= 2 and _bare(transforms[0], ENVELOPED)):
        return None
    if len(transforms) == 2 and not _bare(transforms[1], C14N_10):
        return None
    expected = strict_base64(inside[2].text)
    return None if expected is None or len(expected) != 32 else (expected, False)


@functools.lru_cache(maxsize=1024)  # the same few certificates sign dossier after dossier
def _rsa_key(leaf: x509.Certificate) -> tuple[rsa.RSAPublicKey, rsa.RSAPublicNumbers] | None:
    """The leaf's RSA key and its numbers; None: not RSA, or dates that cannot be (the short way
    leaves both to signxml)."""
    public = leaf.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or leaf.not_valid_before_utc > leaf.not_valid_after_utc:
        return None
    return public, public.public_numbers()


def _key_info_fits(key_info: etree._Element, numbers: rsa.RSAPublicNumbers) -> bool:
    """X509Data, and a KeyValue (if any) that is the certificate's RSA key."""
    tags = [c.tag for c in key_info]
    if set(tags) - {_ds("X509Data"), _ds("KeyValue")} or tags.count(_ds("KeyValue")) > 1:
        return False
    key_value = key_info.find(_ds("KeyValue"))
    if key_value is None:
        return True
    rsa_value = _elements(key_value, _ds("RSAKeyValue"))
    parts = None if rsa_value is None else _elements(rsa_value[0], _ds("Modulus"), _ds("Exponent"))
    return parts is not None and _written_numbers(parts[0].text, parts[1].text) == (numbers.n, numbers.e)


@functools.lru_cache(maxsize=256)  # the same few keys, written alike
def _written_numbers(modulus_text: str | None, exponent_text: str | None) -> tuple[int, int] | None:
    """(modulus, exponent) of an RSAKeyValue's base64 texts; None when either is not base64."""
    modulus, exponent = strict_base64(modulus_text), strict_base64(exponent_text)
    if modulus is None or exponent is None:
        return None
    return int.from_bytes(modulus, "big"), int.from_bytes(exponent, "big")


# ---- signing ------------------------------------------------------------------------------------

# How to make an element again: (index of its parent in the plan, or -1), tag, attributes, the
# namespaces it declares itself, text, tail.
_Plan = list[tuple[int, str, dict, dict | None, str | None, str | None]]


class SignatureTemplate:
    """A Signature signxml made, made again for another document with its digest and value."""

    def __init__(self, signature: etree._Element, key: rsa.RSAPrivateKey):
        self.key = key
        self.plan: _Plan = []
        index: dict = {}
        for node in signature.iter():
            above = node.getparent()
            own = {k: v for k, v in node.nsmap.items() if node is signature or above.nsmap.get(k) != v}
            parent = -1 if node is signature else index[above]
            index[node] = len(self.plan)
            tail = None if node is signature else node.tail
            self.plan.append((parent, node.tag, dict(node.attrib), own or None, node.text, tail))

    @staticmethod
    def fits(root: etree._Element) -> bool:
        """The document element with nothing beside it: its tree's C14N is the signed document's."""
        return root.getparent() is None and root.getprevious() is None and root.getnext() is None

    def sign(self, root: etree._Element, holder: etree._Element) -> etree._Element:
        """Sign `root` (enveloped) with a Signature made in `holder`; returns that Signature."""
        sink = HashWriter("sha256")
        root.getroottree().write_c14n(sink, exclusive=False, with_comments=False)  # no signature in it yet
        signature = self._replay(holder)
        signature.find(_DIGEST_VALUE).text = base64.b64encode(sink.hash.digest()).decode()
        value = self.key.sign(signed_info_c14n(signature.find(SIGNED_INFO)), padding.PKCS1v15(), hashes.SHA256())
        signature.find(SIGNATURE_VALUE).text = base64.b64encode(value).decode()
        return signature

    def _replay(self, holder: etree._Element) -> etree._Element:
        """Each element made again, declaring what it declared (a copy appended instead would lose
        SignedInfo's ds: prefix to lxml's namespace clean-up: not the bytes signxml writes)."""
        made: list[etree._Element] = []
        for parent, tag, attrib, nsmap, text, tail in self.plan:
            el = etree.SubElement(holder if parent < 0 else made[parent], tag, attrib=attrib, nsmap=nsmap)
            el.text, el.tail = text, tail
            made.append(el)
        return made[0]

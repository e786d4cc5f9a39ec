"""XML-DSig for dossiers and notices: the profile of SPEC §3 on top of signxml.

Verification runs on the one tree that intake parsed (hardened, comments dropped) instead
of letting signxml copy and re-parse the document twice: signxml checks SignedInfo, the
algorithms, the signature value and KeyValue-against-certificate; `_ProfileVerifier`
replaces only the reference step with the narrow profile we accept (one reference to the
whole document, enveloped-signature then C14N 1.0, nothing else), computes the digest by
streaming canonical XML into SHA-256, and leaves the Signature element detached so that
the tree the caller goes on reading is exactly the signed content. The one shape nearly every
signature has (RSA-SHA256, SHA-256, C14N 1.0) is verified and made the short way first
(`interchange.trust.dsigshort`): the same steps and bytes, without signxml's copies; anything
else goes to signxml, which decides and says why.
"""

from __future__ import annotations

import binascii
import functools
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConfiguration,
    SignatureMethod,
    XMLSigner,
    XMLVerifier,
)
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature
from signxml.verifier import VerifyResult

from interchange import codes
from interchange.clock import VN_TZ, utc_now
from interchange.errors import Layer, Problem, Severity
from interchange.trust.anchors import TrustStore
from interchange.trust.c14nstream import Splice
from interchange.trust.certinfo import describe, pem_of
from interchange.trust.dsigparts import part_problems
from interchange.trust.dsigshort import (
    SIGNATURE_PARSER,
    SignatureTemplate,
    detach,
    document_digest,
    holds_by_profile,
)
from interchange.trust.revocation import Revocation
from interchange.xmlparse import strict_base64

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
SIGNATURE_TAG = f"{{{DSIG_NS}}}Signature"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
C14N_10 = CanonicalizationMethod.CANONICAL_XML_1_0.value
EXC_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0.value
# SPEC §3: only inclusive C14N 1.0 without comments, after enveloped-signature (exclusive C14N
# is refused: it is outside the profile, and it leaves namespace declarations out of the digest).
ALLOWED_REFERENCE_C14N = {C14N_10: False}  # algorithm -> exclusive
UTF8_BOM = b"\xef\xbb\xbf"


@functools.cache
def allowed_signature_methods(legacy_sha1: bool) -> frozenset[SignatureMethod]:
    return frozenset(
        m
        for m in SignatureMethod
        if (m.name.startswith("RSA_SHA") or m.name.startswith("ECDSA_SHA"))
        and not m.name.endswith("224")  # SHA-224 and SHA3-224: weaker than SHA-256
        and (legacy_sha1 or "SHA1" not in m.name)
    )


_DIGEST_HASHLIB = {  # every digest the streaming digest computes; the allowed ones are a subset
    DigestAlgorithm.SHA1: "sha1",
    DigestAlgorithm.SHA256: "sha256",
    DigestAlgorithm.SHA384: "sha384",
    DigestAlgorithm.SHA512: "sha512",
    DigestAlgorithm.SHA3_256: "sha3_256",
    DigestAlgorithm.SHA3_384: "sha3_384",
    DigestAlgorithm.SHA3_512: "sha3_512",
}


@functools.cache
def allowed_digests(legacy_sha1: bool) -> frozenset[DigestAlgorithm]:
    """SHA-256 or stronger (SPEC §3): SHA-2 and SHA-3 of 256 bits and more; SHA-1 with `legacy_sha1`."""
    return frozenset(d for d in _DIGEST_HASHLIB if legacy_sha1 or d is not DigestAlgorithm.SHA1)


class _ProfileVerifier(XMLVerifier):
    def __init__(self, splice: Splice | None = None):
        super().__init__()
        self.splice = splice  # the tree is a reduced one: its left-out parts are spliced in

    def get_root(self, data):
        return data  # the caller's hardened tree, used in place (see module docstring)

    def _c14n(self, nodes, algorithm, inclusive_ns_prefixes=None):
        # libxml2's C14N of a subtree (here SignedInfo) whose default namespace is declared on an
        # ancestor writes a spurious xmlns="" on grandchildren, so the usual unprefixed
        # <Signature xmlns="...xmldsig#"> would never verify. A re-serialised copy carries every
        # in-scope declaration on its own root and canonicalises correctly.
        nodes = nodes if isinstance(nodes, list) else [nodes]
        copies = [etree.fromstring(etree.tostring(node, with_tail=False), parser=self.parser) for node in nodes]
        return super()._c14n(copies, algorithm, inclusive_ns_prefixes)

    def _tostring(self, xml_node, **kwargs):
        # signxml copies the Signature by serialising it: text after it belongs to the parent.
        return etree.tostring(xml_node, with_tail=False, **kwargs)

    def _verify_reference(self, reference, index, root, uri_resolver, c14n_algorithm, signature, signature_key_used):
        uri = reference.get("URI")
        root_id = root.get("Id") or root.get("ID")
        if uri is None or not (uri == "" or (root_id and uri == f"#{root_id}")):
            raise InvalidInput(f"the reference must cover the whole document (URI=\"\"), found URI={uri!r}")
        if uri and len(root.xpath("//*[@Id=$v or @ID=$v]", v=root_id)) != 1:
            raise InvalidInput(f"the Id {root_id!r} is used more than once")
        transforms = [t.get("Algorithm") for t in reference.findall(f"{{{DSIG_NS}}}Transforms/{{{DSIG_NS}}}Transform")]
        if not transforms or transforms[0] != ENVELOPED:
            raise InvalidInput("the first transform must be enveloped-signature")
        if len(transforms) > 2 or (len(transforms) == 2 and transforms[1] not in ALLOWED_REFERENCE_C14N):
            raise InvalidInput(f"transforms not allowed: {transforms[1:]}")
        exclusive = ALLOWED_REFERENCE_C14N[transforms[1]] if len(transforms) == 2 else False
        digest_alg = DigestAlgorithm(self._find(reference, "DigestMethod").get("Algorithm"))
        self.check_digest_alg_expected(digest_alg)
        if digest_alg not in _DIGEST_HASHLIB:  # never a KeyError (a 500): refused as an algorithm
            raise InvalidInput(f"Digest algorithm {digest_alg.name} forbidden by configuration")
        expected = strict_base64(self._find(reference, "DigestValue").text)
        if expected is None:
            raise InvalidInput("DigestValue is not valid base64")

        signature_el = self._get_signature(root)
        digest = document_digest(root, signature_el, uri, exclusive, _DIGEST_HASHLIB[digest_alg], self.splice)
        if not hmac.compare_digest(digest, expected):
            raise InvalidDigest("the document was changed after it was signed (digest mismatch)")
        key = signature_key_used.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # signed_data is left empty: the signed content is `root` itself, streamed above, not buffered.
        return VerifyResult(b"", root, signature, signature_key=key)


@dataclass
class SignatureReport:
    """What one signature says, for notices, the API and `interchange verify`."""

    document: str
    form: str | None
    valid: bool = False
    signer: dict | None = None
    mst: str | None = None
    chain: list[dict] = field(default_factory=list)
    chain_pem: list[str] = field(default_factory=list)
    signing_time: str | None = None  # as claimed in the unsigned Object: recorded, never trusted
    signature_method: str | None = None
    problems: list[Problem] = field(default_factory=list)
    # status, source, the CRLs / OCSP responses used and when: kept with the dossier
    revocation: Revocation | None = None
    # apart from `valid`: does the cryptography hold (signature value and digest, with the
    # certificate's key)? is the certificate trusted (a path to an anchor, valid at the time,
    # not revoked)? None: not reached (an earlier problem stopped the check)
    intact: bool | None = None
    trusted: bool | None = None

    def as_dict(self, *, revocation_refs: bool = False) -> dict:
        """The report as JSON values; `revocation_refs`: the revocation data named by SHA-256 (as a
        dossier keeps it, beside `revocation.data()`), else in base64 (a self-contained report)."""
        revocation = self.revocation
        if revocation is not None:
            revocation = revocation.as_dict(refs=revocation_refs)
        return {
            "document": self.document,
            "form": self.form,
            "valid": self.valid,
            "signer": self.signer,
            "mst": self.mst,
            "chain": self.chain,
            "chain_pem": self.chain_pem,
            "signing_time": self.signing_time,
            "signature_method": self.signature_method,
            "revocation": revocation,
            "signature_intact": self.intact,
            "certificate_trusted": self.trusted,
            "problems": [p.as_dict() for p in self.problems],
        }


def _problem(code: str, vi: str, en: str, form: str | None, xpath: str, line: int | None = None) -> Problem:
    return Problem(layer=Layer.SIGNATURE, code=code, message_vi=vi, message_en=en, form=form, xpath=xpath, line=line)


_X509_CERTIFICATES = f"{{{DSIG_NS}}}KeyInfo/{{{DSIG_NS}}}X509Data/{{{DSIG_NS}}}X509Certificate"


def _carried(signature: etree._Element) -> tuple[x509.Certificate | None, tuple[x509.Certificate, ...]]:
    """(the signer's certificate or None, every certificate carried)."""
    return _carried_by_text(tuple(el.text for el in signature.iterfind(_X509_CERTIFICATES)))


@functools.lru_cache(maxsize=256)  # the same few chains sign dossier after dossier, written alike
def _carried_by_text(texts: tuple[str | None, ...]) -> tuple[x509.Certificate | None, tuple[x509.Certificate, ...]]:
    certs = []
    for text in texts:
        der = strict_base64(text)
        if der is None:
            raise ValueError("X509Certificate is not valid base64")
        certs.append(_load_cert(der))
    return (_leaf_of(certs) if certs else None), tuple(certs)


@functools.lru_cache(maxsize=1024)  # the same few certificates sign dossier after dossier
def _load_cert(der: bytes) -> x509.Certificate:
    """A certificate with every part we read parsed now: cryptography parses names and extensions
    lazily, and a broken one must be a refusal here, not an exception later."""
    cert = x509.load_der_x509_certificate(der)
    cert.subject.rfc4514_string()
    cert.issuer.rfc4514_string()
    list(cert.extensions)
    return cert


def _leaf_of(certs: list[x509.Certificate]) -> x509.Certificate:
    """The certificate that issued none of the others (real files put the leaf first, but not always)."""
    issuers = {c.issuer for c in certs}
    for cert in certs:
        if cert.subject not in issuers or cert.subject == cert.issuer and len(certs) == 1:
            return cert
    return certs[0]


def _clamp(at: datetime, cert: x509.Certificate) -> datetime:
    return min(max(at, cert.not_valid_before_utc), cert.not_valid_after_utc)


def _parse_signing_time(text: str | None) -> datetime | None:
    """Real files write it with or without a zone; without one it is Vietnamese time."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=VN_TZ)


def _map_signxml_error(exc: Exception) -> tuple[str, str, str]:
    text = str(exc)
    if isinstance(exc, InvalidDigest):
        return codes.SIG_DIGEST, "Nội dung đã bị thay đổi sau khi ký (sai giá trị băm).", text
    if "forbidden by configuration" in text:
        return codes.SIG_ALGORITHM, "Thuật toán ký hoặc băm không được chấp nhận.", text
    if isinstance(exc, (TypeError, binascii.Error)) or "SignatureValue" in text:
        return codes.SIG_INVALID, "Giá trị chữ ký (SignatureValue) không hợp lệ.", "The SignatureValue is empty or not base64."
    if "KeyValue" in text:
        return codes.SIG_KEYVALUE, "Khóa công khai trong KeyValue không khớp với chứng thư.", text
    if isinstance(exc, InvalidSignature):
        return codes.SIG_INVALID, "Chữ ký số không hợp lệ.", text
    if isinstance(exc, InvalidCertificate):
        return codes.SIG_CERT, "Chứng thư ký không hợp lệ.", text
    return codes.SIG_PROFILE, "Chữ ký không đúng quy cách (phải ký toàn bộ tài liệu, một tham chiếu).", text


def verify_document(
    root: etree._Element,
    *,
    location: str,
    trust: TrustStore,
    at: datetime,
    document: str,
    form: str | None = None,
    expected_mst: str | None = None,
    legacy_sha1: bool = False,
    splice: Splice | None = None,
) -> SignatureReport:
    """Verify the one signature of a document, in place.

    With `splice`, `root` is a reduced tree (`interchange.trust.c14nstream`): the digest is the
    whole document's; `SpliceError` when the reduced tree does not fit it (verify the whole tree).

    `location` is the child of the root that must hold the signature (`Cky`, `CKy_Dvi`, or
    "" for a signature directly under the root, as in notices). On return the Signature
    element is detached when the reference was checked, and the report says everything
    found wrong (all problems, not the first).
    """
    report = SignatureReport(document=document, form=form)
    signature = _the_signature(root, location, form, report)
    if signature is None:
        return report
    _read_unsigned_claims(signature, report)
    parts = part_problems(signature, form)  # before anything of the signature is decoded
    if parts:
        report.problems.extend(parts)
        detach(signature)
        return report
    here = functools.partial(
        _problem, form=form, xpath=root.getroottree().getpath(signature), line=signature.sourceline
    )
    signer = _signer_certs(signature, report, here)
    if signer is None:
        return report
    leaf, certs = signer
    if not _check_chain(trust, leaf, certs, at, report, here):
        return report
    _check_claims(leaf, expected_mst, report, here)
    _check_signature_value(root, location, signature, leaf, at, legacy_sha1, report, here, splice)
    if signature.getparent() is not None:
        detach(signature)  # never read unsigned content: drop a signature that failed before its reference was checked
    return report


def _the_signature(
    root: etree._Element, location: str, form: str | None, report: SignatureReport
) -> etree._Element | None:
    """The document's one Signature, where the profile puts it; None (with the problem) otherwise."""
    tree = root.getroottree()
    signatures = list(root.iter(SIGNATURE_TAG))
    if not signatures:
        report.problems.append(
            _problem(codes.SIG_MISSING, "Tài liệu chưa được ký số.", "The document is not signed.", form, "/")
        )
        return None
    if len(signatures) > 1:
        report.problems.append(
            _problem(
                codes.SIG_MULTIPLE,
                f"Tài liệu có {len(signatures)} chữ ký; chỉ được có một.",
                f"The document holds {len(signatures)} signatures; exactly one is allowed.",
                form,
                tree.getpath(signatures[1]),
                signatures[1].sourceline,
            )
        )
        return None
    signature = signatures[0]
    expected_parent = root if not location else root.find(location)
    if signature.getparent() is not expected_parent:
        sig_path = tree.getpath(signature)
        where = f"/{root.tag}/{location}" if location else f"/{root.tag}"
        report.problems.append(
            _problem(
                codes.SIG_LOCATION,
                f"Chữ ký phải nằm tại {where}.",
                f"The signature must be at {where}, found at {sig_path}.",
                form,
                sig_path,
                signature.sourceline,
            )
        )
        return None
    return signature


def _read_unsigned_claims(signature: etree._Element, report: SignatureReport) -> None:
    """What the signature says of itself, recorded before anything is checked. `SigningTime` is
    found by its local name, in any namespace, anywhere under an `Object` (SPEC §3: real files
    write `Object/SignatureProperty/SigningTime` and `Object/SignatureProperties/
    SignatureProperty/SigningTime`, the Object sometimes with xmlns=""); the first one counts."""
    for obj in signature:
        if not isinstance(obj.tag, str) or etree.QName(obj).localname != "Object":
            continue
        found = next((el for el in obj.iter() if isinstance(el.tag, str) and etree.QName(el).localname == "SigningTime"), None)
        if found is not None:
            report.signing_time = (found.text or "").strip() or None
            break
    method = signature.find(f"{{{DSIG_NS}}}SignedInfo/{{{DSIG_NS}}}SignatureMethod")
    report.signature_method = method.get("Algorithm") if method is not None else None


# A Problem at the signature: `here(code, message_vi, message_en)`.
_Here = Callable[[str, str, str], Problem]


def _signer_certs(
    signature: etree._Element, report: SignatureReport, here: _Here
) -> tuple[x509.Certificate, list[x509.Certificate]] | None:
    """(the signer's certificate, every certificate carried), the signer described in the report."""
    try:
        leaf, carried = _carried(signature)
    except (ValueError, TypeError, UnicodeError) as exc:
        report.problems.append(
            here(codes.SIG_CERT, "Không đọc được chứng thư trong chữ ký.", f"Unreadable certificate: {exc}")
        )
        return None
    if leaf is None:
        report.problems.append(
            here(
                codes.SIG_CERT_MISSING,
                "Chữ ký không kèm chứng thư số (X509Certificate).",
                "The signature carries no X509Certificate.",
            )
        )
        return None
    report.signer = describe(leaf)
    report.mst = report.signer["mst"]  # mst_of(leaf), found by describe
    return leaf, list(carried)


def _check_chain(
    trust: TrustStore,
    leaf: x509.Certificate,
    certs: list[x509.Certificate],
    at: datetime,
    report: SignatureReport,
    here: _Here,
) -> bool:
    """The signer's path to a trust anchor and its revocation; False when a certificate is unreadable."""
    try:
        path = trust.validate(leaf, [c for c in certs if c is not leaf], at)
    except (ValueError, TypeError, UnicodeError) as exc:  # pyhanko parses what cryptography did not
        report.problems.append(
            here(codes.SIG_CERT, "Không đọc được chứng thư trong chữ ký.", f"Unreadable certificate: {exc}")
        )
        return False
    report.chain = [describe(c) for c in path.chain]
    report.chain_pem = [pem_of(c) for c in path.chain]
    report.revocation = path.revocation
    for cp in path.problems:
        report.problems.append(here(cp.code, cp.message_vi, cp.message_en))
    report.trusted = not any(p.severity == Severity.ERROR for p in report.problems)
    return True


def _check_claims(leaf: x509.Certificate, expected_mst: str | None, report: SignatureReport, here: _Here) -> None:
    """The claimed signing time against the certificate (a warning), the signer's tax code against the unit's."""
    claimed = _parse_signing_time(report.signing_time)
    if claimed is not None and not (leaf.not_valid_before_utc <= claimed <= leaf.not_valid_after_utc):
        report.problems.append(
            replace(
                here(
                    codes.SIG_SIGNING_TIME,
                    f"Thời điểm ký khai báo ({report.signing_time}) nằm ngoài thời hạn của chứng thư.",
                    f"The claimed signing time ({report.signing_time}) is outside the certificate's validity "
                    "(it is unsigned, so only the time of receipt decides).",
                ),
                severity=Severity.WARNING,
            )
        )
    if expected_mst is not None and report.mst != expected_mst:
        report.problems.append(
            here(
                codes.SIG_MST_MISMATCH,
                f"Mã số thuế của người ký ({report.mst or 'không có'}) khác mã số thuế đơn vị ({expected_mst}).",
                f"The signer's tax code ({report.mst or 'none'}) differs from the unit's MaSoThue ({expected_mst}).",
            )
        )


def _check_signature_value(
    root: etree._Element,
    location: str,
    signature: etree._Element,
    leaf: x509.Certificate,
    at: datetime,
    legacy_sha1: bool,
    report: SignatureReport,
    here: _Here,
    splice: Splice | None = None,
) -> None:
    """signxml's checks and our reference profile; the report is valid when nothing is an error."""
    config = SignatureConfiguration(
        require_x509=True,
        location=f"./{location}/" if location else "./",
        expect_references=1,
        signature_methods=allowed_signature_methods(legacy_sha1),
        digest_algorithms=allowed_digests(legacy_sha1),
        verification_time=_clamp(at, leaf),  # dates are judged by the trust store, with codes of their own
    )
    try:
        if not holds_by_profile(root, signature, leaf, splice):  # the signature _the_signature found
            _ProfileVerifier(splice).verify(
                root, x509_cert=leaf, expect_config=config, validate_schema=False, parser=SIGNATURE_PARSER
            )
    except (InvalidInput, InvalidSignature, InvalidCertificate, ValueError, TypeError, etree.LxmlError) as exc:
        code, vi, en = _map_signxml_error(exc)
        report.problems.append(here(code, vi, en))
        if code in (codes.SIG_DIGEST, codes.SIG_INVALID, codes.SIG_KEYVALUE):
            report.intact = False
    else:
        report.intact = True
        report.valid = not any(p.severity == Severity.ERROR for p in report.problems)


def _signature_method_for(key) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return SignatureMethod.ECDSA_SHA256.value
    return SignatureMethod.RSA_SHA256.value


class DocumentSigner:
    """Signs the way payroll software does: enveloped, URI="", C14N 1.0, RSA-SHA256, KeyValue and
    X509Data in KeyInfo, and the signing time in an unsigned Object. The key is loaded once."""

    def __init__(self, key, chain: list[x509.Certificate], *, digest: str = "sha256", c14n: str = C14N_10):
        """`digest` and `c14n` other than the profile's are for tests of what a receiver refuses."""
        self.key = key
        self.chain = chain
        self._cert_pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in chain]
        self._signer = XMLSigner(
            signature_algorithm=_signature_method_for(key).rsplit("#", 1)[-1],
            digest_algorithm=digest,
            c14n_algorithm=c14n,
        )
        # signxml re-parses what it signs; its default parser refuses text nodes over 10 MB, which
        # an envelope carrying a large form has. Entities stay off.
        self._signer._parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
        # The profile's own signatures (RSA, SHA-256, C14N 1.0) are made from one signxml made.
        profile = digest == "sha256" and c14n == C14N_10 and isinstance(key, rsa.RSAPrivateKey)
        self._template = SignatureTemplate(self._template_signature(), key) if profile else None

    def _template_signature(self) -> etree._Element:
        holder = etree.Element("T")
        etree.SubElement(holder, SIGNATURE_TAG, Id="placeholder", nsmap={None: DSIG_NS})
        signed = self._signer.sign(holder, key=self.key, cert=self._cert_pems, always_add_key_value=True)
        return next(signed.iter(SIGNATURE_TAG))

    def sign(self, root: etree._Element, *, location: str, signing_time: datetime | None = None) -> etree._Element:
        """Return a signed copy of `root` with the signature inside its `location` child ("" = root)."""
        if location:
            holder = root.find(location)
            if holder is None:
                holder = etree.SubElement(root, location)
            for child in list(holder):  # an empty <Cky/> (or an old signature) is replaced
                holder.remove(child)
            holder.text = None
        else:
            holder = root
            for old in root.findall(SIGNATURE_TAG):
                root.remove(old)
        if self._template is not None and self._template.fits(root):
            signed, signature = root, self._template.sign(root, holder)
        else:
            etree.SubElement(holder, SIGNATURE_TAG, Id="placeholder", nsmap={None: DSIG_NS})
            signed = self._signer.sign(root, key=self.key, cert=self._cert_pems, always_add_key_value=True)
            signature = next(signed.iter(SIGNATURE_TAG))
        when = (signing_time or utc_now()).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        obj = etree.SubElement(signature, f"{{{DSIG_NS}}}Object")
        props = etree.SubElement(obj, f"{{{DSIG_NS}}}SignatureProperties")
        prop = etree.SubElement(props, f"{{{DSIG_NS}}}SignatureProperty", Target="")
        etree.SubElement(prop, f"{{{DSIG_NS}}}SigningTime").text = when
        return signed


def to_bytes(root: etree._Element, *, bom: bool = True) -> bytes:
    """Serialise as real files are: UTF-8 BOM, XML declaration, no reformatting."""
    body = etree.tostring(root, encoding="utf-8", xml_declaration=False)
    return (UTF8_BOM if bom else b"") + b'<?xml version="1.0" encoding="utf-8"?>\n' + body

"""Development PKI: keys, CAs, unit (employer) and server certificates, CRLs, PEM/PKCS#12 files.

Only for local use and tests. Production trust anchors are licensed Vietnamese CAs placed in
`certs/trusted`; nothing here is ever needed to *verify* a dossier.

Unit certificates imitate what licensed Vietnamese CAs (VNPT-CA, Viettel-CA, BKAV-CA, FPT-CA, ...)
issue to employers for signing tax and social-insurance filings:

* subject, in ASN.1 order, ``C=VN, ST=<province>, L=<locality>, CN=<unit name>, UID=MST:<tax code>``
  (UID is OID 0.9.2342.19200300.100.1.1; branch units carry a ``-NNN`` suffix);
* BasicConstraints ``CA=False`` (critical);
* KeyUsage ``digitalSignature, nonRepudiation`` (critical);
* ExtendedKeyUsage ``clientAuth, emailProtection`` (not critical) - the pair these token
  certificates commonly carry (they are also used to log in to e-government portals and for
  S/MIME). The XML signature verifier must therefore not demand any particular EKU; it should
  only refuse an EKU that excludes signing uses (e.g. ``serverAuth`` alone).

All times are timezone-aware UTC.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from interchange.clock import utc_now

log = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(minutes=5)
KEY_KINDS = ("rsa2048", "rsa3072", "rsa1024", "ec-p256", "ec-p384")

# Default EKU of unit certificates: what Vietnamese token certificates commonly carry.
UNIT_EKU: tuple[x509.ObjectIdentifier, ...] = (
    ExtendedKeyUsageOID.CLIENT_AUTH,
    ExtendedKeyUsageOID.EMAIL_PROTECTION,
)

# key_usage= presets for issue_unit_cert.
_KU_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)
KEY_USAGE_PRESETS: dict[str, frozenset[str] | None] = {
    "signing": frozenset({"digital_signature", "content_commitment"}),
    # many VN token certificates also allow encipherment
    "signing+encipherment": frozenset(
        {"digital_signature", "content_commitment", "key_encipherment", "data_encipherment"}
    ),
    "digital_signature": frozenset({"digital_signature"}),
    "non_repudiation": frozenset({"content_commitment"}),
    "encipherment": frozenset({"key_encipherment", "data_encipherment"}),  # cannot sign
    "none": None,  # no KeyUsage extension at all
}

_HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


@dataclass
class Issued:
    key: PrivateKeyTypes  # private key
    cert: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)  # issuers above cert, nearest first

    @property
    def full_chain(self) -> list[x509.Certificate]:
        """The certificate followed by its issuers (leaf first)."""
        return [self.cert, *self.chain]


# --------------------------------------------------------------------------- keys and helpers


def new_key(kind: str = "rsa2048") -> PrivateKeyTypes:
    """A fresh private key: ``rsa2048`` | ``rsa3072`` | ``rsa1024`` | ``ec-p256`` | ``ec-p384``."""
    k = kind.lower()
    if k.startswith("rsa"):
        bits = int(k[3:] or "2048")
        if bits not in (1024, 2048, 3072, 4096):
            raise ValueError(f"unsupported RSA size: {kind}")
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if k in ("ec-p256", "ec-secp256r1", "p256"):
        return ec.generate_private_key(ec.SECP256R1())
    if k in ("ec-p384", "ec-secp384r1", "p384"):
        return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(f"unknown key kind: {kind!r} (one of {', '.join(KEY_KINDS)})")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return value.astimezone(UTC)


def _hash(name: str) -> hashes.HashAlgorithm:
    try:
        return _HASHES[name.lower()]()
    except KeyError:
        raise ValueError(f"unknown hash algorithm: {name!r}") from None


def _ski(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key())


def _aki(issuer: Issued) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer.cert))


def _key_usage(flags: Iterable[str]) -> x509.KeyUsage:
    flags = set(flags)
    unknown = flags - set(_KU_FLAGS)
    if unknown:
        raise ValueError(f"unknown key usage flags: {sorted(unknown)}")
    return x509.KeyUsage(
        **{f: f in flags for f in _KU_FLAGS},
        encipher_only=False,
        decipher_only=False,
    )


def _validity(
    not_before: datetime | None, not_after: datetime | None, days: int
) -> tuple[datetime, datetime]:
    nb = _utc(not_before) if not_before is not None else utc_now() - CLOCK_SKEW
    na = _utc(not_after) if not_after is not None else nb + timedelta(days=days)
    if na <= nb:
        raise ValueError("not_after must be later than not_before")
    return nb, na


# AlgorithmIdentifier DER: sha256WithRSAEncryption / sha1WithRSAEncryption (same length)
_ALGID_RSA_SHA256 = bytes.fromhex("300d06092a864886f70d01010b0500")
_ALGID_RSA_SHA1 = bytes.fromhex("300d06092a864886f70d0101050500")


def _der_header(data: bytes, pos: int) -> tuple[int, int]:
    """(offset of the contents, length of the contents) of the DER element starting at ``pos``."""
    first = data[pos + 1]
    if first < 0x80:
        return pos + 2, first
    n = first & 0x7F
    return pos + 2 + n, int.from_bytes(data[pos + 2 : pos + 2 + n], "big")


def _der_tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _sign_cert(builder: x509.CertificateBuilder, key: PrivateKeyTypes, hash_alg: str) -> x509.Certificate:
    signer = _signable(key)
    if hash_alg.lower() != "sha1":
        return builder.sign(signer, _hash(hash_alg))
    # cryptography refuses to create SHA-1 signatures on certificates; legacy fixtures are made by
    # signing with SHA-256, swapping the TBS signature AlgorithmIdentifier and re-signing the TBS.
    if not isinstance(signer, rsa.RSAPrivateKey):
        raise ValueError("SHA-1 signed certificates are only supported with an RSA issuer key")
    tbs = bytearray(builder.sign(signer, hashes.SHA256()).tbs_certificate_bytes)
    pos, _ = _der_header(tbs, 0)  # into TBSCertificate
    for _ in range(2):  # skip [0] version and serialNumber
        body, length = _der_header(tbs, pos)
        pos = body + length
    if tbs[pos : pos + len(_ALGID_RSA_SHA256)] != _ALGID_RSA_SHA256:
        raise AssertionError("unexpected TBSCertificate layout")
    tbs[pos : pos + len(_ALGID_RSA_SHA1)] = _ALGID_RSA_SHA1
    signature = signer.sign(bytes(tbs), padding.PKCS1v15(), hashes.SHA1())
    der = _der_tlv(0x30, bytes(tbs) + _ALGID_RSA_SHA1 + _der_tlv(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


def _signable(key: PrivateKeyTypes) -> CertificateIssuerPrivateKeyTypes:
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TypeError(f"unsupported issuer key type: {type(key).__name__}")
    return key


# --------------------------------------------------------------------------- issuing


def create_ca(
    common_name: str = "Interchange Development CA",
    *,
    key_kind: str = "rsa2048",
    days: int = 3650,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    parent: Issued | None = None,
    key: PrivateKeyTypes | None = None,
    organization: str | None = "Interchange (development)",
    path_length: int | None = None,
    hash_alg: str = "sha256",
) -> Issued:
    """A root CA (``parent`` None, self-signed) or an intermediate CA issued by ``parent``.

    BasicConstraints CA=True (critical), KeyUsage keyCertSign+cRLSign (critical), SKI and AKI.
    Intermediates get ``pathLenConstraint=0`` unless ``path_length`` says otherwise.
    ``key`` reuses an existing private key instead of generating one (tests).
    """
    key = key if key is not None else new_key(key_kind)
    nb, na = _validity(not_before, not_after, days)
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    subject = x509.Name(attrs)
    if parent is None:
        issuer_name, signer, aki = (
            subject,
            key,
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_signable(key).public_key()),
        )
        plen = path_length
    else:
        issuer_name, signer, aki = parent.cert.subject, parent.key, _aki(parent)
        plen = 0 if path_length is None else path_length
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(nb)
        .not_valid_after(na)
        .add_extension(x509.BasicConstraints(ca=True, path_length=plen), critical=True)
        .add_extension(_key_usage({"key_cert_sign", "crl_sign"}), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
    )
    cert = _sign_cert(builder, signer, hash_alg)
    chain = [] if parent is None else [parent.cert, *parent.chain]
    return Issued(key=key, cert=cert, chain=chain)


def issue_unit_cert(
    ca: Issued,
    mst: str | None,
    name: str,
    *,
    key_kind: str = "rsa2048",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    days: int = 730,
    mst_suffix: str = "",
    ca_flag: bool = False,
    tls_only: bool = False,
    key_usage: str = "signing",
    serial: int | None = None,
    key: PrivateKeyTypes | None = None,
    province: str = "Hà Nội",
    locality: str | None = "Quận Cầu Giấy",
    extra_uids: Sequence[str] = (),
    eku: Sequence[x509.ObjectIdentifier] | None = UNIT_EKU,
    hash_alg: str = "sha256",
) -> Issued:
    """An employer unit's signing certificate, shaped like those licensed VN CAs issue.

    Subject ``C=VN, ST=<province>, L=<locality>, CN=<name>, UID=MST:<mst><mst_suffix>``
    (``mst`` None or "" leaves the MST UID out; ``extra_uids`` adds more UID attributes, e.g.
    ``"CCCD:001099012345"``). Default extensions: see the module docstring.

    Variants for negative tests:
    ``ca_flag=True`` - BasicConstraints says CA=True (wrong for a leaf);
    ``tls_only=True`` - EKU serverAuth only, KeyUsage keyEncipherment only (a TLS server cert);
    ``key_usage`` - one of KEY_USAGE_PRESETS (``"encipherment"`` cannot sign, ``"none"`` omits KU);
    ``eku`` - None or () omits the EKU extension;
    ``key_kind="rsa1024"``, ``not_before``/``not_after`` for weak, not-yet-valid or expired certs;
    ``hash_alg="sha1"`` for a legacy SHA-1 signed certificate (RSA issuer only).
    """
    key = key if key is not None else new_key(key_kind)
    nb, na = _validity(not_before, not_after, days)
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, province),
    ]
    if locality:
        attrs.append(x509.NameAttribute(NameOID.LOCALITY_NAME, locality))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
    if mst:
        attrs.append(x509.NameAttribute(NameOID.USER_ID, f"MST:{mst}{mst_suffix}"))
    attrs.extend(x509.NameAttribute(NameOID.USER_ID, uid) for uid in extra_uids)

    if tls_only:
        ku: frozenset[str] | None = frozenset({"key_encipherment"})
        ekus: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,)
    else:
        if key_usage not in KEY_USAGE_PRESETS:
            raise ValueError(
                f"unknown key_usage preset {key_usage!r} (one of {', '.join(KEY_USAGE_PRESETS)})"
            )
        ku, ekus = KEY_USAGE_PRESETS[key_usage], eku

    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(nb)
        .not_valid_after(na)
        .add_extension(x509.BasicConstraints(ca=ca_flag, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_aki(ca), critical=False)
    )
    if ku is not None:
        builder = builder.add_extension(_key_usage(ku), critical=True)
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    if tls_only:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    cert = _sign_cert(builder, ca.key, hash_alg)
    return Issued(key=key, cert=cert, chain=[ca.cert, *ca.chain])


def issue_server_cert(
    ca: Issued,
    common_name: str = "Interchange notice signer",
    *,
    key_kind: str = "rsa2048",
    days: int = 825,
    key: PrivateKeyTypes | None = None,
    organization: str | None = None,
    not_before: datetime | None = None,
) -> Issued:
    """The server's notice-signing certificate: CA=False, KeyUsage digitalSignature+nonRepudiation
    (critical), no EKU (any purpose; there is no standard EKU for XML-DSig)."""
    key = key if key is not None else new_key(key_kind)
    nb, na = _validity(not_before, None, days)
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(nb)
        .not_valid_after(na)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(KEY_USAGE_PRESETS["signing"] or ()), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_aki(ca), critical=False)
        .sign(_signable(ca.key), hashes.SHA256())
    )
    return Issued(key=key, cert=cert, chain=[ca.cert, *ca.chain])


def issue_crl(
    ca: Issued,
    revoked: Sequence[tuple[int, datetime]],
    *,
    this_update: datetime | None = None,
    next_update: datetime | None = None,
    crl_number: int | None = None,
    reason: x509.ReasonFlags | None = None,
) -> x509.CertificateRevocationList:
    """A CRL signed by ``ca`` listing ``(serial, revocation_date)`` pairs.

    Defaults: thisUpdate now - 5 min, nextUpdate thisUpdate + 7 days, CRLNumber from thisUpdate
    (seconds since the epoch, so later CRLs have larger numbers).
    """
    tu = _utc(this_update) if this_update is not None else utc_now() - CLOCK_SKEW
    nu = _utc(next_update) if next_update is not None else tu + timedelta(days=7)
    number = crl_number if crl_number is not None else int(tu.timestamp())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(tu)
        .next_update(nu)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(_aki(ca), critical=False)
    )
    for serial, when in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(_utc(when))
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(_signable(ca.key), hashes.SHA256())


# --------------------------------------------------------------------------- files


def _atomic_write(path: str | os.PathLike, data: bytes, mode: int) -> Path:
    """Write via a temp file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def key_pem(key: PrivateKeyTypes, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with ``password`` when given."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def certs_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def write_key_pem(path: str | os.PathLike, key: PrivateKeyTypes, password: bytes | None = None) -> Path:
    """Write a private key (PKCS#8 PEM) atomically with mode 0600, creating parent directories."""
    return _atomic_write(path, key_pem(key, password), 0o600)


def write_pem_bundle(path: str | os.PathLike, key: PrivateKeyTypes, certs: Iterable[x509.Certificate]) -> Path:
    """Key then certificates in one PEM file (what xmlsec1 --privkey-pem takes), mode 0600."""
    return _atomic_write(path, key_pem(key) + certs_pem(certs), 0o600)


def write_certs_pem(path: str | os.PathLike, certs: Iterable[x509.Certificate]) -> Path:
    """Write certificates (PEM, in the given order) atomically with mode 0644."""
    return _atomic_write(path, certs_pem(certs), 0o644)


def load_key_pem(path: str | os.PathLike, password: bytes | None = None) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=password)


def load_certs_pem(path: str | os.PathLike) -> list[x509.Certificate]:
    """All certificates in a PEM file, in file order (other PEM blocks such as keys are skipped)."""
    data = Path(path).read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return []
    return x509.load_pem_x509_certificates(data)


def order_chain(cert: x509.Certificate, others: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """``others`` ordered as issuers above ``cert``, nearest first; unrelated certificates follow."""
    pool = [c for c in others if c != cert]
    ordered: list[x509.Certificate] = []
    current = cert
    while pool:
        nxt = next((c for c in pool if _issued_by(current, c)), None)
        if nxt is None:
            break
        ordered.append(nxt)
        pool.remove(nxt)
        if nxt.subject == nxt.issuer:
            break
        current = nxt
    return ordered + pool


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def write_p12(
    path: str | os.PathLike,
    issued: Issued,
    password: bytes | None,
    friendly_name: bytes = b"unit",
) -> Path:
    """PKCS#12 with key, certificate and chain (AES-256 + SHA-256 MAC when a password is given)."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    data = pkcs12.serialize_key_and_certificates(
        friendly_name, _p12_key(issued.key), issued.cert, issued.chain or None, enc
    )
    return _atomic_write(path, data, 0o600)


def _p12_key(key: PrivateKeyTypes) -> pkcs12.PKCS12PrivateKeyTypes:
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TypeError(f"unsupported key type for PKCS#12: {type(key).__name__}")
    return key


def load_p12(path: str | os.PathLike, password: bytes | None) -> Issued:
    key, cert, extra = pkcs12.load_key_and_certificates(Path(path).read_bytes(), password)
    if key is None or cert is None:
        raise ValueError(f"{path}: PKCS#12 has no private key or no certificate")
    return Issued(key=key, cert=cert, chain=order_chain(cert, extra))


def key_matches(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)


# --------------------------------------------------------------------------- first-run set-up


class DevPki(dict[str, Path]):
    """``ensure_dev_pki`` result: name -> path of what exists, plus ``created`` (names newly written)."""

    def __init__(self) -> None:
        super().__init__()
        self.created: set[str] = set()


def _is_under(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def ensure_dev_pki(
    anchors_dir: Path,
    data_dir: Path,
    signing_key: Path,
    signing_cert: Path,
    *,
    demo_mst: str = "0101234565",
    demo_name: str = "Công ty TNHH Mẫu Việt",
    password: bytes = b"demo",
    key_kind: str = "rsa2048",
) -> DevPki:
    """Idempotent first-run set-up of a development PKI (``make serve``).

    * ``anchors_dir/dev-ca.pem`` - the dev root CA certificate (a trust anchor; ``dev-*`` files
      are git-ignored). Its private key lives at ``data_dir/dev-ca/ca-key.pem``, never under
      ``anchors_dir``.
    * ``signing_key`` / ``signing_cert`` - the server's notice key (0600) and certificate + chain.
    * ``data_dir/demo/unit-<mst>.p12`` (password ``demo``) and ``unit-<mst>.pem`` (key, cert and
      chain in one PEM, for xmlsec1) - a demo employer certificate.

    Nothing existing is rewritten. A missing half is rebuilt from the other half where possible
    (a signing key without a certificate gets a certificate for that key; a demo .p12 without
    its .pem, or the reverse, is converted). The dev CA is replaced only when something must be
    issued and its key is missing or does not match ``dev-ca.pem``.

    Returns a dict ``{"ca", "ca_key", "signing_key", "signing_cert", "demo_p12", "demo_pem"}``
    (only entries that exist) whose ``created`` attribute names the entries written by this call.
    """
    anchors_dir, data_dir = Path(anchors_dir), Path(data_dir)
    signing_key, signing_cert = Path(signing_key), Path(signing_cert)
    ca_cert_path = anchors_dir / "dev-ca.pem"
    ca_key_path = data_dir / "dev-ca" / "ca-key.pem"
    demo_p12 = data_dir / "demo" / f"unit-{demo_mst}.p12"
    demo_pem = data_dir / "demo" / f"unit-{demo_mst}.pem"
    if _is_under(ca_key_path, anchors_dir):
        raise ValueError(f"the dev CA key {ca_key_path} would be under the trust anchors {anchors_dir}")
    for p in (signing_key, demo_p12, demo_pem):
        if _is_under(p, anchors_dir):
            raise ValueError(f"private key file {p} would be under the trust anchors {anchors_dir}")

    out = DevPki()
    ca: Issued | None = None

    def load_ca() -> Issued | None:
        if not (ca_cert_path.exists() and ca_key_path.exists()):
            return None
        try:
            certs = load_certs_pem(ca_cert_path)
            k = load_key_pem(ca_key_path)
        except (ValueError, TypeError) as exc:
            log.warning("dev CA unreadable (%s); a new one will be created", exc)
            return None
        if len(certs) != 1 or not key_matches(k, certs[0]):
            log.warning(
                "dev CA key %s does not match %s; a new dev CA will be created", ca_key_path, ca_cert_path
            )
            return None
        return Issued(key=k, cert=certs[0], chain=[])

    def get_ca() -> Issued:
        nonlocal ca
        if ca is None:
            ca = load_ca()
        if ca is None:
            if ca_cert_path.exists():
                log.warning("replacing %s: its private key is not in %s", ca_cert_path, ca_key_path)
            ca = create_ca(key_kind=key_kind)
            # key first: a crash in between leaves no anchor without its key
            write_key_pem(ca_key_path, ca.key)
            write_certs_pem(ca_cert_path, [ca.cert])
            out.created.update({"ca", "ca_key"})
            log.info("created development CA %s (key %s)", ca_cert_path, ca_key_path)
        return ca

    if not ca_cert_path.exists():
        get_ca()

    # the server's notice-signing key and certificate
    if not (signing_key.exists() and signing_cert.exists()):
        existing_key = None
        if signing_key.exists():
            try:
                existing_key = load_key_pem(signing_key)
            except (ValueError, TypeError) as exc:
                log.warning("signing key %s unreadable (%s); issuing a new key", signing_key, exc)
        server = issue_server_cert(get_ca(), key=existing_key, key_kind=key_kind)
        if existing_key is None:
            write_key_pem(signing_key, server.key)
            out.created.add("signing_key")
        write_certs_pem(signing_cert, server.full_chain)
        out.created.add("signing_cert")
        log.info("created notice-signing certificate %s", signing_cert)

    # the demo unit certificate
    if not (demo_p12.exists() and demo_pem.exists()):
        unit: Issued | None = None
        if demo_p12.exists():
            try:
                unit = load_p12(demo_p12, password)
            except (ValueError, TypeError) as exc:
                log.warning("demo PKCS#12 %s unreadable (%s); issuing a new one", demo_p12, exc)
        elif demo_pem.exists():
            try:
                certs = load_certs_pem(demo_pem)
                k = load_key_pem(demo_pem)
                if certs and key_matches(k, certs[0]):
                    unit = Issued(key=k, cert=certs[0], chain=order_chain(certs[0], certs[1:]))
            except (ValueError, TypeError) as exc:
                log.warning("demo PEM %s unreadable (%s); issuing a new one", demo_pem, exc)
        if unit is None:
            unit = issue_unit_cert(get_ca(), demo_mst, demo_name, key_kind=key_kind)
            for p in (demo_p12, demo_pem):  # replace both halves so they stay a pair
                if p.exists():
                    p.unlink()
        if not demo_p12.exists():
            write_p12(demo_p12, unit, password, friendly_name=f"unit-{demo_mst}".encode())
            out.created.add("demo_p12")
        if not demo_pem.exists():
            _atomic_write(demo_pem, key_pem(unit.key) + certs_pem(unit.full_chain), 0o600)
            out.created.add("demo_pem")
        log.info("demo unit certificate for MST %s: %s, %s", demo_mst, demo_p12, demo_pem)

    for name, path in (
        ("ca", ca_cert_path),
        ("ca_key", ca_key_path),
        ("signing_key", signing_key),
        ("signing_cert", signing_cert),
        ("demo_p12", demo_p12),
        ("demo_pem", demo_pem),
    ):
        if path.exists():
            out[name] = path
    return out

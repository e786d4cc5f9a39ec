"""Development PKI: keys, CAs, unit (employer) and server certificates, CRLs.

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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from interchange.clock import utc_now

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

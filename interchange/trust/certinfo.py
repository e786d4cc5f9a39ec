"""Reading certificates: the employer's MST (tax code), a JSON-able description, and the
certificate files of a directory (the trust anchors).

The MST is taken only from subject attributes of type UID (OID 0.9.2342.19200300.100.1.1)
whose value is ``MST:<tax code>``, as licensed Vietnamese CAs write it
(``UID=MST:0101234568`` or, for a branch, ``UID=MST:0101234568-001``). Nothing else in the
certificate (CN, O, serialNumber, SAN, free text) is ever searched for a tax code.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

UID_OID = NameOID.USER_ID  # 0.9.2342.19200300.100.1.1

# "MST:0101234568", " mst : 0101234568-001 " (prefix case-insensitive, blanks ignored)
_UID_MST = re.compile(r"^\s*MST\s*:(?P<value>.*)$", re.IGNORECASE | re.DOTALL)
_MST = re.compile(r"^(?P<base>[0-9]{10})(?:-?(?P<branch>[0-9]{3}))?$")

_CURVES = {"secp256r1": "P256", "secp384r1": "P384", "secp521r1": "P521"}


def _normalise_mst(raw: str) -> str | None:
    """``"0101 234568 - 001"`` -> ``"0101234568-001"``; a 13-digit run gets its dash back.
    Returns None when the value is not a 10-digit tax code with an optional 3-digit suffix."""
    value = re.sub(r"\s+", "", raw)
    m = _MST.match(value)
    if not m:
        return None
    return m["base"] + (f"-{m['branch']}" if m["branch"] else "")


def msts_of(cert: x509.Certificate) -> list[str]:
    """Every MST in the subject's UID attributes, in subject (ASN.1) order, without duplicates.
    UIDs holding other identifiers (``CMND:``, ``CCCD:``, ``HC:``...) or malformed MSTs are ignored."""
    found: list[str] = []
    for attr in cert.subject.get_attributes_for_oid(UID_OID):
        value = attr.value
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                continue
        m = _UID_MST.match(value)
        if not m:
            continue
        mst = _normalise_mst(m["value"])
        if mst and mst not in found:
            found.append(mst)
    return found


def mst_of(cert: x509.Certificate) -> str | None:
    """The MST from the subject UID (``"MST:0101234568-001"`` -> ``"0101234568-001"``), or None.
    When a subject carries several MSTs the first in subject order is returned; use
    :func:`msts_of` to see them all."""
    found = msts_of(cert)
    return found[0] if found else None


def public_key_description(cert: x509.Certificate) -> str:
    """``"RSA-2048"``, ``"EC-P256"``, ``"EC-P384"``, ``"Ed25519"``, ``"DSA-1024"``..."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC-{_CURVES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA-{key.key_size}"
    return type(key).__name__


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _serial_hex(serial: int) -> str:
    text = format(serial, "X")
    return text if len(text) % 2 == 0 else "0" + text


def _common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@functools.lru_cache(maxsize=4096)
def fingerprint(cert: x509.Certificate) -> bytes:
    """The SHA-256 of the DER certificate (cryptography hashes it again at each call)."""
    return cert.fingerprint(hashes.SHA256())


@functools.lru_cache(maxsize=4096)
def pem_of(cert: x509.Certificate) -> str:
    """The certificate in PEM, as reports carry it (cryptography encodes it again at each call)."""
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def describe(cert: x509.Certificate) -> dict[str, Any]:
    """A JSON-able description (a fresh dict each call; the work is cached per certificate)."""
    return dict(_describe(cert))


@functools.lru_cache(maxsize=4096)  # the same few certificates sign dossier after dossier
def _describe(cert: x509.Certificate) -> dict[str, Any]:
    """A JSON-able summary for logs, records and notices.

    ``serial`` is upper-case hex of even length (as VN CA portals and Windows show it);
    ``sha256`` is the lower-case hex SHA-256 fingerprint of the DER certificate; times are
    ISO 8601 UTC with a ``Z``.
    """
    try:
        sig_hash = cert.signature_hash_algorithm
        signature_hash = sig_hash.name if sig_hash is not None else None
    except UnsupportedAlgorithm:
        signature_hash = None
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "common_name": _common_name(cert.subject),
        "serial": _serial_hex(cert.serial_number),
        "not_before": _iso(cert.not_valid_before_utc),
        "not_after": _iso(cert.not_valid_after_utc),
        "sha256": fingerprint(cert).hex(),
        "mst": mst_of(cert),
        "key": public_key_description(cert),
        "signature_hash": signature_hash,
    }


# ---- certificate files ---------------------------------------------------------------------


def _load_pem_or_der_certs(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def load_anchor_certs(directory: Path) -> list[x509.Certificate]:
    """The certificates (PEM or DER, .pem .crt .cer .der) of a directory, in name order; none when
    it does not exist."""
    certs: list[x509.Certificate] = []
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.suffix.lower() in (".pem", ".crt", ".cer", ".der"):
                certs.extend(_load_pem_or_der_certs(path))
    return certs

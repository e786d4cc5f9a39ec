"""Development PKI files: keys and certificates as PEM and PKCS#12, written atomically with
the modes a private key needs, and read back (with the chain put in order)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from interchange.devkit.pki.certs import Issued


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

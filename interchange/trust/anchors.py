"""Certificate path validation against the trust anchors in `certs/` (pyhanko-certvalidator).

The path (chain to an anchor, signatures, CA constraints, CRLs held in `crl_dir`) is the
expensive part and depends only on the chain and the revocation data, so its result is
cached per chain for `cache_seconds`; the validity dates are re-checked on every call at
the time asked for, so a cached answer never stretches a certificate's life.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)

ALLOWED_CURVES = ("secp256r1", "secp384r1", "secp521r1")
MIN_RSA_BITS = 2048
# A TLS-only certificate is not a signing certificate: refuse leaves whose EKU is only these.
TLS_ONLY_EKUS = {ExtendedKeyUsageOID.SERVER_AUTH}


@dataclass(frozen=True)
class CertProblem:
    code: str
    message_vi: str
    message_en: str


@dataclass
class PathResult:
    problems: list[CertProblem] = field(default_factory=list)
    chain: list[x509.Certificate] = field(default_factory=list)  # leaf first, anchor last

    @property
    def ok(self) -> bool:
        return not self.problems


def _load_pem_or_der_certs(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def _to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _from_asn1(cert: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.dump())


def key_problem(cert: x509.Certificate) -> CertProblem | None:
    """The algorithm allow-list of SPEC §3 for the signer's key."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return CertProblem(
                "SIG-WEAK-KEY",
                f"Khóa RSA {key.key_size} bit quá yếu (tối thiểu {MIN_RSA_BITS} bit).",
                f"RSA key of {key.key_size} bits is too weak (minimum {MIN_RSA_BITS}).",
            )
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            return CertProblem(
                "SIG-WEAK-KEY",
                f"Đường cong {key.curve.name} không được chấp nhận.",
                f"Curve {key.curve.name} is not allowed.",
            )
        return None
    return CertProblem(
        "SIG-WEAK-KEY", "Loại khóa không được chấp nhận.", f"Key type {type(key).__name__} is not allowed."
    )


def usage_problems(cert: x509.Certificate) -> list[CertProblem]:
    """A signing leaf: not a CA, key usage allows signing, not a TLS-only certificate."""
    problems = []
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            problems.append(
                CertProblem(
                    "SIG-CA-LEAF",
                    "Chứng thư ký là chứng thư của tổ chức cấp (CA=true), không dùng để ký hồ sơ.",
                    "The signing certificate is a CA certificate (CA=true).",
                )
            )
    except x509.ExtensionNotFound:
        pass
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (ku.digital_signature or ku.content_commitment):
            problems.append(
                CertProblem(
                    "SIG-KEY-USAGE",
                    "Mục đích sử dụng khóa không cho phép ký số.",
                    "Key usage does not allow digital signatures.",
                )
            )
    except x509.ExtensionNotFound:
        pass
    try:
        eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        if eku and eku <= TLS_ONLY_EKUS:
            problems.append(
                CertProblem(
                    "SIG-KEY-USAGE",
                    "Chứng thư chỉ dùng cho máy chủ TLS, không dùng để ký hồ sơ.",
                    "The certificate is for TLS servers only, not for signing documents.",
                )
            )
    except x509.ExtensionNotFound:
        pass
    return problems


def validity_problems(chain: list[x509.Certificate], at: datetime) -> list[CertProblem]:
    problems = []
    for index, cert in enumerate(chain):
        who = "Chứng thư ký" if index == 0 else "Chứng thư tổ chức cấp"
        whom = "The signing certificate" if index == 0 else f"Issuer certificate {cert.subject.rfc4514_string()}"
        if at < cert.not_valid_before_utc:
            problems.append(
                CertProblem(
                    "SIG-NOT-YET-VALID",
                    f"{who} chưa có hiệu lực tại thời điểm nhận (hiệu lực từ {cert.not_valid_before_utc.isoformat()}).",
                    f"{whom} is not yet valid at receipt (valid from {cert.not_valid_before_utc.isoformat()}).",
                )
            )
        elif at > cert.not_valid_after_utc:
            problems.append(
                CertProblem(
                    "SIG-EXPIRED",
                    f"{who} đã hết hạn tại thời điểm nhận (hết hạn {cert.not_valid_after_utc.isoformat()}).",
                    f"{whom} had expired at receipt (expired {cert.not_valid_after_utc.isoformat()}).",
                )
            )
    return problems


class TrustStore:
    """Trust anchors and CRLs from disk, and a cache of path-validation results."""

    def __init__(self, anchors_dir: Path, crl_dir: Path | None = None, cache_seconds: int = 300):
        self.anchors_dir = Path(anchors_dir)
        self.crl_dir = Path(crl_dir) if crl_dir else None
        self.cache_seconds = cache_seconds
        self.anchors: list[x509.Certificate] = []
        if self.anchors_dir.is_dir():
            for path in sorted(self.anchors_dir.iterdir()):
                if path.suffix.lower() in (".pem", ".crt", ".cer", ".der"):
                    self.anchors.extend(_load_pem_or_der_certs(path))
        self._asn1_anchors = [_to_asn1(c) for c in self.anchors]
        self._crls: list[asn1_crl.CertificateList] = []
        if self.crl_dir and self.crl_dir.is_dir():
            for path in sorted(self.crl_dir.iterdir()):
                if path.suffix.lower() in (".crl", ".pem", ".der"):
                    data = path.read_bytes()
                    if b"-----BEGIN" in data:
                        data = x509.load_pem_x509_crl(data).public_bytes(serialization.Encoding.DER)
                    self._crls.append(asn1_crl.CertificateList.load(data))
        self._cache: dict[bytes, tuple[float, list[CertProblem], list[x509.Certificate]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _cache_key(self, leaf: x509.Certificate, others: list[x509.Certificate]) -> bytes:
        h = hashlib.sha256(leaf.fingerprint(hashes.SHA256()))
        for c in sorted(c.fingerprint(hashes.SHA256()) for c in others):
            h.update(c)
        return h.digest()

    def validate(self, leaf: x509.Certificate, others: list[x509.Certificate], at: datetime) -> PathResult:
        """Validate a signing certificate at time `at` (synchronous; runs in worker processes)."""
        problems: list[CertProblem] = []
        kp = key_problem(leaf)
        if kp:
            problems.append(kp)
        problems.extend(usage_problems(leaf))
        key = self._cache_key(leaf, others)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached and cached[0] > now:
            path_problems, chain = cached[1], cached[2]
        else:
            path_problems, chain = self._validate_path(leaf, others, at)
            self._cache[key] = (now + self.cache_seconds, path_problems, chain)
        problems.extend(path_problems)
        problems.extend(validity_problems(chain or [leaf], at))
        return PathResult(problems=problems, chain=chain or [leaf])

    def _validate_path(
        self, leaf: x509.Certificate, others: list[x509.Certificate], at: datetime
    ) -> tuple[list[CertProblem], list[x509.Certificate]]:
        if not self.anchors:
            return [
                CertProblem(
                    "SIG-UNTRUSTED",
                    "Máy chủ chưa có chứng thư gốc tin cậy nào.",
                    f"No trust anchors are installed in {self.anchors_dir}.",
                )
            ], []
        # Dates are checked by the caller at each call; validate the path as of a moment inside
        # the leaf's life so that the cached result is about the chain, not about the clock.
        moment = min(max(at, leaf.not_valid_before_utc), leaf.not_valid_after_utc)
        context = ValidationContext(
            trust_roots=self._asn1_anchors,
            other_certs=[_to_asn1(c) for c in others],
            crls=self._crls,
            moment=moment,
            allow_fetching=False,
            revocation_mode="soft-fail",
        )
        validator = CertificateValidator(_to_asn1(leaf), validation_context=context)
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        try:
            path = self._loop.run_until_complete(validator.async_validate_path())
        except RevokedError as exc:
            return [CertProblem("SIG-REVOKED", "Chứng thư ký đã bị thu hồi.", f"Certificate revoked: {exc}")], []
        except (ExpiredError, NotYetValidError):
            return [], []  # reported by validity_problems with exact dates
        except PathBuildingError as exc:
            return [
                CertProblem(
                    "SIG-UNTRUSTED",
                    "Chứng thư ký không được cấp bởi tổ chức chứng thực tin cậy.",
                    f"The certificate does not chain to a trusted anchor: {exc}",
                )
            ], []
        except (PathValidationError, ValidationError) as exc:
            return [
                CertProblem(
                    "SIG-CHAIN-INVALID",
                    "Chuỗi chứng thư không hợp lệ.",
                    f"The certificate chain is not valid: {exc}",
                )
            ], []
        chain = [_from_asn1(c) for c in path]  # anchor first in pyhanko's order
        chain.reverse()
        return [], chain

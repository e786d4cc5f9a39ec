"""The checks of one signing certificate that need no path: the algorithm allow-list of its key
(SPEC §3), its usage (a signing leaf, not a CA or a TLS server), the validity dates of each
certificate of its chain at a moment; the problems they report, and a validation's result."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from interchange import codes
from interchange.trust.revocation import Revocation

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
    revocation: Revocation | None = None  # the answer, and the CRLs/OCSP responses it rests on

    @property
    def ok(self) -> bool:
        return not self.problems



def untrusted_problem(exc: Exception) -> CertProblem:
    return CertProblem(
        codes.SIG_UNTRUSTED,
        "Chứng thư ký không được cấp bởi tổ chức chứng thực tin cậy.",
        f"The certificate does not chain to a trusted anchor: {exc}",
    )


def key_problem(cert: x509.Certificate) -> CertProblem | None:
    """The algorithm allow-list of SPEC §3 for the signer's key."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return CertProblem(
                codes.SIG_WEAK_KEY,
                f"Khóa RSA {key.key_size} bit quá yếu (tối thiểu {MIN_RSA_BITS} bit).",
                f"RSA key of {key.key_size} bits is too weak (minimum {MIN_RSA_BITS}).",
            )
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            return CertProblem(
                codes.SIG_WEAK_KEY,
                f"Đường cong {key.curve.name} không được chấp nhận.",
                f"Curve {key.curve.name} is not allowed.",
            )
        return None
    return CertProblem(
        codes.SIG_WEAK_KEY, "Loại khóa không được chấp nhận.", f"Key type {type(key).__name__} is not allowed."
    )


def usage_problems(cert: x509.Certificate) -> list[CertProblem]:
    """A signing leaf: not a CA, key usage allows signing, not a TLS-only certificate."""
    problems = []
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            problems.append(
                CertProblem(
                    codes.SIG_CA_LEAF,
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
                    codes.SIG_KEY_USAGE,
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
                    codes.SIG_KEY_USAGE,
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
        if cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            continue  # the usual case: no names written for messages nobody reads
        who = "Chứng thư ký" if index == 0 else "Chứng thư tổ chức cấp"
        whom = (
            "The signing certificate" if index == 0 else f"Issuer certificate {cert.subject.rfc4514_string()}"
        )
        if at < cert.not_valid_before_utc:
            problems.append(
                CertProblem(
                    codes.SIG_NOT_YET_VALID,
                    f"{who} chưa có hiệu lực tại thời điểm nhận (hiệu lực từ {cert.not_valid_before_utc.isoformat()}).",
                    f"{whom} is not yet valid at receipt (valid from {cert.not_valid_before_utc.isoformat()}).",
                )
            )
        elif at > cert.not_valid_after_utc:
            problems.append(
                CertProblem(
                    codes.SIG_EXPIRED,
                    f"{who} đã hết hạn tại thời điểm nhận (hết hạn {cert.not_valid_after_utc.isoformat()}).",
                    f"{whom} had expired at receipt (expired {cert.not_valid_after_utc.isoformat()}).",
                )
            )
    return problems


def revoked_problem(is_leaf: bool, when: datetime | None, detail: str) -> CertProblem:
    who = "Chứng thư ký" if is_leaf else "Chứng thư của tổ chức cấp"
    on = f" từ {when.isoformat()}" if when else ""
    return CertProblem(codes.SIG_REVOKED, f"{who} đã bị thu hồi{on}.", f"Certificate revoked: {detail}")


def unknown_problem(detail: str) -> CertProblem:
    return CertProblem(
        codes.SIG_REVOCATION_UNKNOWN,
        "Không xác định được tình trạng thu hồi của chứng thư (không có CRL hoặc phản hồi OCSP còn hiệu lực).",
        f"The revocation status could not be established (no current CRL or OCSP response): {detail}",
    )


@functools.lru_cache(maxsize=1024)  # the same few certificates sign dossier after dossier
def _leaf_problems(leaf: x509.Certificate) -> tuple[CertProblem, ...]:
    """`key_problem` and `usage_problems` of a leaf: they read the certificate alone."""
    kp = key_problem(leaf)
    return (*([kp] if kp else []), *usage_problems(leaf))


def path_result(
    leaf: x509.Certificate,
    at: datetime,
    path_problems: list[CertProblem],
    chain: list[x509.Certificate],
    revocation: Revocation,
) -> PathResult:
    """A validation's result: the checks of the leaf, then those of the path, then the dates of
    the chain (of the leaf alone when no chain was built) at `at`."""
    problems = list(_leaf_problems(leaf))
    problems.extend(path_problems)
    problems.extend(validity_problems(chain or [leaf], at))
    return PathResult(problems=problems, chain=chain or [leaf], revocation=revocation)

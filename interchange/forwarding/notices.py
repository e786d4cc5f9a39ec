"""Checking the upstream's notices before they are kept: signed by the agency's pinned notice
signer (`[upstream] notice_cert`: that certificate's public key; or a certificate chaining to
`notice_anchors`, a folder of the agency's notice CA only, with the subject `notice_subject` when
set), valid and chaining to the anchors, of the kind expected, and about the exact bytes that were
forwarded (BamHoSo = SHA-256 of them). A notice that fails is never stored.

A chain to the units' CAs (`[trust] anchors_dir`) proves nothing about who signed: every unit's
certificate has one. So the signer is always pinned, by key or by a dedicated anchor folder."""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from interchange.config import LimitsConfig, TrustConfig
from interchange.errors import Refusal, Severity
from interchange.notices.reader import NotANotice, check_root, notice_from_root, read_notice
from interchange.trust.anchors import TrustStore
from interchange.trust.xmldsig import verify_document
from interchange.xmlparse import XmlLimits, parse_xml


class BadNotice(Exception):
    """The upstream's answer is not a notice we may keep; the message says why."""


@dataclass
class UpstreamNotice:
    kind: str  # TIEP_NHAN | TU_CHOI | KET_QUA
    transaction_id: str  # the upstream's MaGiaoDich
    xml: bytes  # exactly as received (the signature covers it)
    so_ho_so: str | None = None
    due_at: datetime | None = None  # HanTraKetQua
    result: str | None = None  # KetQua on a KET_QUA
    problems: list[dict] = field(default_factory=list)  # its DanhSachLoi, as Problem.as_dict() shapes


class NoticeChecker:
    """Synchronous (signature and path validation are CPU work): call it in a thread."""

    def __init__(
        self, trust: TrustStore, limits: XmlLimits, *, legacy_sha1: bool = False,
        pinned_keys: list[bytes] | None = None, subject: str | None = None,
    ):  # fmt: skip
        """`pinned_keys`: the DER SubjectPublicKeyInfo the signer's certificate must have (one of);
        `subject`: its exact RFC 4514 subject. With neither, `trust` must hold only the agency's
        notice CA (the caller's to ensure: `from_config` does)."""
        self.trust = trust
        self.limits = limits
        self.legacy_sha1 = legacy_sha1
        self.pinned_keys = pinned_keys or []
        self.subject = subject or None

    @classmethod
    def from_config(
        cls, t: TrustConfig, limits: LimitsConfig, *, anchors: Path, crls: Path,
        pinned_cert: Path | None = None, subject: str = "",
    ) -> NoticeChecker:  # fmt: skip
        """`anchors`: the resolved folder of `[upstream] notice_anchors` (with `pinned_cert` only,
        the units' anchors may do: the pin decides who signs, the chain that the certificate is
        valid); `pinned_cert`: the resolved `[upstream] notice_cert`; `crls`: `[trust] crl_dir`."""
        pinned_keys = []
        if pinned_cert is not None:
            try:
                certs = x509.load_pem_x509_certificates(Path(pinned_cert).read_bytes())
            except OSError as exc:
                raise ValueError(f"config: upstream.notice_cert: cannot read {pinned_cert}: {exc.strerror or exc}") from None
            except ValueError as exc:
                raise ValueError(f"config: upstream.notice_cert: {pinned_cert} holds no PEM certificate ({exc})") from None
            pinned_keys = [_spki(certs[0])]  # the leaf: the agency's notice certificate
        trust = TrustStore(anchors, crls, t.cache_seconds, revocation=t.revocation)
        if not trust.anchors:
            raise ValueError(f"config: upstream.notice_anchors: no PEM certificates in {anchors}")
        xml_limits = XmlLimits(max_depth=limits.max_depth, max_elements=limits.max_elements)
        return cls(trust, xml_limits, legacy_sha1=t.legacy_sha1, pinned_keys=pinned_keys, subject=subject)

    def check(
        self, xml: bytes, *, sha256: bytes, kinds: tuple[str, ...], at: datetime, transaction_id: str | None = None
    ) -> UpstreamNotice:
        """The notice, or BadNotice. `transaction_id`: the upstream's MaGiaoDich it must carry."""
        try:
            root = parse_xml(xml, self.limits).getroot()
        except Refusal as refusal:
            raise BadNotice(f"not readable XML: {refusal.problems[0].message_en}") from None
        try:
            check_root(root)
        except NotANotice as exc:
            raise BadNotice(str(exc)) from None
        report = verify_document(root, location="", trust=self.trust, at=at, document="ThongBao",
                                 legacy_sha1=self.legacy_sha1)  # fmt: skip
        if not report.valid:
            errors = [p for p in report.problems if p.severity == Severity.ERROR] or report.problems
            raise BadNotice("signature not accepted: " + "; ".join(f"{p.code}: {p.message_en}" for p in errors))
        self._check_signer(report.chain_pem[0] if report.chain_pem else None)
        notice = notice_from_root(root)  # read from the verified tree only
        kind = notice.kind
        if kind not in kinds:
            raise BadNotice(f"LoaiThongBao is {kind}, expected {' or '.join(kinds)}")
        digest = notice.digest
        if digest is None or not hmac.compare_digest(digest, base64.b64encode(sha256).decode()):
            raise BadNotice(
                f"BamHoSo {digest} is not the SHA-256 of the bytes forwarded ({base64.b64encode(sha256).decode()})"
            )
        tx = notice.transaction_id
        if not tx:
            raise BadNotice("MaGiaoDich is missing")
        if transaction_id is not None and tx != transaction_id:
            raise BadNotice(f"MaGiaoDich is {tx}, expected {transaction_id} (the upstream's receipt)")
        due, due_at = notice.due_text, notice.due_at
        if due is not None and due_at is None:
            raise BadNotice(f"HanTraKetQua {due!r} is not an ISO 8601 time")
        if due_at is not None and due_at.tzinfo is None:
            raise BadNotice(f"HanTraKetQua {due!r} has no time zone")
        return UpstreamNotice(
            kind=kind, transaction_id=tx, xml=xml, so_ho_so=notice.so_ho_so, due_at=due_at,
            result=notice.result, problems=[p.as_dict() for p in notice.problems],
        )  # fmt: skip


    def _check_signer(self, leaf_pem: str | None) -> None:
        """The signer is the agency's: its certificate has the pinned public key, and the pinned subject."""
        if not self.pinned_keys and not self.subject:
            return
        if leaf_pem is None:
            raise BadNotice("signature not accepted: no signer certificate")
        leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
        who = leaf.subject.rfc4514_string()
        if self.pinned_keys and _spki(leaf) not in self.pinned_keys:
            raise BadNotice(
                f"signature not accepted: signed by {who}, whose key is not the agency's pinned notice "
                "certificate's (upstream.notice_cert)"
            )
        if self.subject and who != self.subject:
            raise BadNotice(f"signature not accepted: signed by {who}, not {self.subject} (upstream.notice_subject)")


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def error_summary(body: bytes) -> str:
    """The error codes of an upstream answer we do not keep (a refusal of the request), for the attempt's row."""
    try:
        notice = read_notice(body)
    except NotANotice:
        return body[:200].decode("utf-8", "replace")
    codes = [f"{p.code}: {p.message_en or p.message_vi or ''}" for p in notice.problems]
    return "; ".join(codes) if codes else body[:200].decode("utf-8", "replace")

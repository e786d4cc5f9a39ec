"""Checking the upstream's notices before they are kept: signed by a certificate that chains to
the configured anchors, of the kind expected, and about the exact bytes that were forwarded
(BamHoSo = SHA-256 of them). A notice that fails is never stored."""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

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

    def __init__(self, trust: TrustStore, limits: XmlLimits, *, legacy_sha1: bool = False):
        self.trust = trust
        self.limits = limits
        self.legacy_sha1 = legacy_sha1

    @classmethod
    def from_config(cls, t: TrustConfig, limits: LimitsConfig, *, anchors: Path, crls: Path) -> NoticeChecker:
        """`anchors`: the resolved folder of `[upstream] notice_anchors` (else `[trust] anchors_dir`);
        `crls`: the resolved `[trust] crl_dir`."""
        trust = TrustStore(anchors, crls, t.cache_seconds, revocation=t.revocation)
        if not trust.anchors:
            raise ValueError(f"config: upstream.notice_anchors: no PEM certificates in {anchors}")
        xml_limits = XmlLimits(max_depth=limits.max_depth, max_elements=limits.max_elements)
        return cls(trust, xml_limits, legacy_sha1=t.legacy_sha1)

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


def error_summary(body: bytes) -> str:
    """The error codes of an upstream answer we do not keep (a refusal of the request), for the attempt's row."""
    try:
        notice = read_notice(body)
    except NotANotice:
        return body[:200].decode("utf-8", "replace")
    codes = [f"{p.code}: {p.message_en or p.message_vi or ''}" for p in notice.problems]
    return "; ".join(codes) if codes else body[:200].decode("utf-8", "replace")

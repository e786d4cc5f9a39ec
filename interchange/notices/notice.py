"""Notices (SPEC §4): build a ThongBao and sign it with the server's key.

The signing key is loaded once per process (parsing the PEM costs 40x the signature).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
from lxml import etree

from interchange.clock import utc_now, vn_iso
from interchange.errors import LAYER_ORDER, Problem
from interchange.trust.xmldsig import DocumentSigner, to_bytes

NS = "urn:interchange:thongbao:1"
_LAYER_STATE_VI = {"passed": "dat", "failed": "khong_dat", "not_run": "chua_chay"}


@dataclass
class NoticeData:
    kind: str
    transaction_id: str
    received_at: datetime
    issued_at: datetime
    sha256: bytes | None = None
    so_ho_so: str | None = None
    procedure: str | None = None
    mst: str | None = None
    unit_code: str | None = None
    ivan_code: str | None = None
    due_at: datetime | None = None
    result: str | None = None  # CHAP_NHAN | KHONG_CHAP_NHAN on KET_QUA
    layers: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    truncated: int = 0


def build_notice(data: NoticeData) -> etree._Element:
    root = etree.Element(f"{{{NS}}}ThongBao", nsmap={None: NS})

    def add(parent, name: str, text: str | None = None, **attrs):
        el = etree.SubElement(parent, f"{{{NS}}}{name}", **attrs)
        if text is not None:
            el.text = text
        return el

    add(root, "LoaiThongBao", data.kind)
    add(root, "MaGiaoDich", data.transaction_id)
    for name, value in (
        ("SoHoSo", data.so_ho_so),
        ("MaThuTuc", data.procedure),
        ("MaSoThue", data.mst),
        ("MaDonVi", data.unit_code),
        ("MaIVAN", data.ivan_code),
    ):
        if value:
            add(root, name, value)
    add(root, "ThoiGianNhan", vn_iso(data.received_at))
    add(root, "ThoiGianThongBao", vn_iso(data.issued_at))
    if data.due_at is not None:
        add(root, "HanTraKetQua", vn_iso(data.due_at))
    if data.sha256 is not None:
        add(root, "BamHoSo", base64.b64encode(data.sha256).decode(), ThuatToan="SHA-256")
    if data.result:
        add(root, "KetQua", data.result)
    if data.layers:
        layers = add(root, "CacTang")
        for layer in LAYER_ORDER:
            state = data.layers.get(str(layer))
            if state:
                add(layers, "Tang", Ten=str(layer), TrangThai=_LAYER_STATE_VI[state])
    if data.problems or data.truncated:
        errors = add(root, "DanhSachLoi")
        for p in data.problems:
            loi = add(errors, "Loi")
            add(loi, "Tang", str(p.layer))
            add(loi, "Ma", p.code)
            add(loi, "MucDo", str(p.severity))
            if p.form:
                add(loi, "ToKhai", p.form)
            add(loi, "ViTri", p.xpath or "/")
            if p.line is not None:
                add(loi, "Dong", str(p.line))
            if p.value is not None:
                add(loi, "GiaTri", p.value[:500])
            add(loi, "MoTa", p.message_vi)
            if p.message_en:
                add(loi, "MoTaEN", p.message_en)
        if data.truncated:
            add(errors, "SoLoiBiBoQua", str(data.truncated))
    return root


class NoticeKeyError(ValueError):
    """The notice key or its certificate cannot be used: the server refuses to start (the message
    names the file and what is wrong with it)."""


class NoticeKeyUnavailable(Exception):
    """The notice certificate is not valid now (expired while the server ran, or not yet valid):
    nothing is signed with it. The caller answers 503 (a request) or retries later (work)."""


def _public(key) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def validity_problem(cert: x509.Certificate, at: datetime) -> str | None:
    """Why `cert` may not sign at `at` (expired, not yet valid), or None."""
    if at < cert.not_valid_before_utc:
        return f"its certificate is not valid before {cert.not_valid_before_utc.isoformat()}"
    if at > cert.not_valid_after_utc:
        return f"its certificate expired at {cert.not_valid_after_utc.isoformat()}"
    return None


class NoticeSigner:
    def __init__(self, key, chain: list[x509.Certificate], *, clock=utc_now):
        if not chain:
            raise NoticeKeyError("signing.cert: no certificate")
        if _public(key.public_key()) != _public(chain[0].public_key()):
            raise NoticeKeyError(
                "signing.key and signing.cert do not match: the first certificate is not the key's "
                f"({chain[0].subject.rfc4514_string()})"
            )
        self.chain = chain
        self.clock = clock  # the real time a signature is made at (tests may inject one)
        self._signer = DocumentSigner(key, chain)

    @classmethod
    def from_files(cls, key_path: Path, cert_path: Path) -> NoticeSigner:
        """The notice key and its chain (leaf first), checked: readable, an unencrypted PEM key,
        PEM certificates, the leaf being the key's, valid now. NoticeKeyError says what is wrong."""
        key_path, cert_path = Path(key_path), Path(cert_path)
        try:
            key_pem = key_path.read_bytes()
        except OSError as exc:
            raise NoticeKeyError(f"signing.key: cannot read the notice key {key_path}: {exc.strerror or exc}") from None
        try:
            key = load_pem_private_key(key_pem, password=None)
        except TypeError:
            raise NoticeKeyError(
                f"signing.key: {key_path} is encrypted (password-protected); the server reads an "
                "unencrypted PEM key (keep it mode 0600)"
            ) from None
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise NoticeKeyError(f"signing.key: {key_path} is not a PEM private key ({exc})") from None
        try:
            cert_pem = cert_path.read_bytes()
        except OSError as exc:
            raise NoticeKeyError(
                f"signing.cert: cannot read the notice certificate {cert_path}: {exc.strerror or exc}"
            ) from None
        try:
            chain = x509.load_pem_x509_certificates(cert_pem)
        except ValueError as exc:
            raise NoticeKeyError(f"signing.cert: {cert_path} holds no PEM certificate ({exc})") from None
        signer = cls(key, chain)
        if (problem := validity_problem(chain[0], utc_now())) is not None:
            raise NoticeKeyError(f"signing.cert: the notice key cannot sign: {problem} ({cert_path})")
        return signer

    def problem(self) -> str | None:
        """Why the key may not sign now, or None (for /readyz)."""
        return validity_problem(self.chain[0], self.clock())

    def sign(self, data: NoticeData) -> bytes:
        return self.sign_root(build_notice(data), data.issued_at)

    def sign_root(self, root: etree._Element, signing_time: datetime) -> bytes:
        """Sign another document of the server's (an evidence manifest) the way notices are signed.
        NoticeKeyUnavailable when the certificate is not valid now: never a notice signed with an
        expired certificate."""
        if (problem := self.problem()) is not None:
            raise NoticeKeyUnavailable(f"the notice key cannot sign: {problem}")
        signed = self._signer.sign(root, location="", signing_time=signing_time)
        return to_bytes(signed, bom=False)

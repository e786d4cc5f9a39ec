"""Evidence bundles: one dossier's proof in a ZIP that an auditor checks offline, years later.

    original.xml              the exact bytes received
    notices/<kind>.xml        the signed notices (tiep-nhan, tu-choi, ket-qua)
    signers/<n>-chain.pem     the n-th signer's certificate path as validated at receipt
    revocation/<n>.json       the revocation answer used for signer n, with its data as
    revocation/<n>-crl-<i>.crl, revocation/<n>-ocsp-<i>.der   DER files (absent when none was kept)
    audit.jsonl               the dossier's audit entries, the links that chain them into the
                              log, and the log's head when the bundle was made
    dossier.json              the stored record
    manifest.json             SHA-256 and size of every file above
    manifest.xml              the same, signed by the server's notice key (enveloped XML-DSig,
                              the profile of notices: xmlsec1 verifies it too)

`verify_bundle` needs no server and no network: the trust anchors come from the caller
(`--trusted` or the config), intermediates and revocation data from the bundle, and the
original's signatures are judged as of the time of receipt.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from interchange.audit.chain import check_excerpt
from interchange.clock import utc_now, vn_iso
from interchange.errors import Problems, Refusal
from interchange.intake.envelope import read_envelope
from interchange.kinds import SLUG_RECEIPT, SLUG_REFUSAL
from interchange.notices.notice import NoticeSigner
from interchange.notices.reader import NotANotice, Notice, notice_from_root
from interchange.store.types import REFUSED, Dossier
from interchange.trust import anchors
from interchange.trust.revocation import CRL, INLINE_KEYS, OCSP, kept_data
from interchange.trust.xmldsig import verify_document
from interchange.xmlparse import XmlLimits, parse_xml

FORMAT = "interchange-evidence/1"
NS = "urn:interchange:evidence:1"
MANIFEST_JSON = "manifest.json"
MANIFEST_XML = "manifest.xml"
ENVELOPE_SIGNATURE_AT = "CKy_Dvi"  # as interchange.intake.pipeline
FORM_SIGNATURE_AT = "Cky"
VERIFY_LIMITS = XmlLimits(max_depth=64, max_elements=50_000_000)
MAX_UNPACKED = 1 << 30  # a bundle is read into memory: refuse a ZIP bomb before reading it


# -- building ----------------------------------------------------------------------------------


def _json_bytes(value) -> bytes:
    return (
        json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=_json_default).encode()
        + b"\n"
    )


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _revocation_files(n: int, revocation: dict, stored: dict[str, bytes]) -> dict[str, bytes]:
    """A signature's CRLs and OCSP responses as files: inline in base64 (dossiers stored before
    migration 0009), or named by SHA-256 and taken from `stored` (the store's `revocation_data`)."""
    files: dict[str, bytes] = {}
    summary = {k: v for k, v in revocation.items() if k not in INLINE_KEYS.values()}
    for kind, stem, suffix in ((CRL, "crl", "crl"), (OCSP, "ocsp", "der")):
        inline, refs = kept_data(revocation, kind)
        items = [*inline, *(stored.get(ref, _MissingRef(ref)) for ref in refs)]
        names = []
        for i, item in enumerate(items, start=1):
            name = f"revocation/{n}-{stem}-{i}.{suffix}"
            if isinstance(item, bytes):
                files[name] = item
            elif isinstance(item, str):
                files[name] = base64.b64decode(item)
            elif isinstance(item, _MissingRef):  # named, not held: said, not hidden
                summary.setdefault("missing", []).append(item.name)
                continue
            else:  # not the DER-in-base64 shape: keep it as it was stored
                name = f"revocation/{n}-{stem}-{i}.json"
                files[name] = _json_bytes(item)
            names.append(name)
        summary[INLINE_KEYS[kind]] = names
    files[f"revocation/{n}.json"] = _json_bytes(summary)
    return files


@dataclass(frozen=True)
class _MissingRef:
    name: str


def bundle_files(
    dossier: Dossier, original: bytes, notices: dict[str, bytes], audit_records: list[dict],
    revocation: dict[str, bytes] | None = None,
) -> dict[str, bytes]:
    """Every file of the bundle but the manifests."""
    files = {"original.xml": original}
    for kind, xml in notices.items():
        files[f"notices/{kind}.xml"] = xml
    for n, signer in enumerate(dossier.signers, start=1):
        if signer.get("chain_pem"):
            files[f"signers/{n}-chain.pem"] = "".join(signer["chain_pem"]).encode()
        if isinstance(signer.get("revocation"), dict):
            files.update(_revocation_files(n, signer["revocation"], revocation or {}))
    files["audit.jsonl"] = b"".join(
        json.dumps(r, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        for r in audit_records
    )
    files["dossier.json"] = _json_bytes(asdict(dossier))
    return files


def manifest_of(
    dossier: Dossier, files: dict[str, bytes], created_at: datetime, audit_head: dict | None
) -> dict:
    return {
        "format": FORMAT,
        "dossier_id": dossier.id,
        "so_ho_so": dossier.so_ho_so,
        "created_at": vn_iso(created_at),
        "audit_head": audit_head,
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in sorted(files.items())
        },
    }


def manifest_xml(manifest: dict) -> etree._Element:
    root = etree.Element(f"{{{NS}}}EvidenceManifest", nsmap={None: NS})

    def add(parent, name: str, text: str | None = None, **attrs):
        el = etree.SubElement(parent, f"{{{NS}}}{name}", **attrs)
        el.text = text
        return el

    add(root, "Format", manifest["format"])
    add(root, "MaGiaoDich", manifest["dossier_id"])
    if manifest["so_ho_so"]:
        add(root, "SoHoSo", manifest["so_ho_so"])
    add(root, "ThoiGianLap", manifest["created_at"])
    if manifest["audit_head"]:
        add(root, "AuditHead", Seq=str(manifest["audit_head"]["seq"]), Hash=manifest["audit_head"]["hash"])
    listing = add(root, "Files")
    for name, meta in manifest["files"].items():
        add(listing, "File", Path=name, Size=str(meta["size"]), SHA256=meta["sha256"])
    return root


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(
                name, date_time=(2000, 1, 1, 0, 0, 0)
            )  # the content decides, not the clock
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return out.getvalue()


async def build_bundle(
    dossier: Dossier,
    original: bytes,
    notices: dict[str, bytes],
    audit_records: list[dict],
    signer: NoticeSigner,
    created_at: datetime | None = None,
    revocation: dict[str, bytes] | None = None,
) -> bytes:
    """The ZIP. Hashing and compressing (the original may be 100 MB) run in a thread; the
    manifest (a few KB) is signed on the calling thread, the one that owns `signer`."""
    created_at = created_at or utc_now()
    head = next((r for r in audit_records if r.get("record") == "head"), None)
    audit_head = {"seq": head["seq"], "hash": head["hash"]} if head else None
    files = await asyncio.to_thread(bundle_files, dossier, original, notices, audit_records, revocation)
    manifest = await asyncio.to_thread(manifest_of, dossier, files, created_at, audit_head)
    files[MANIFEST_JSON] = _json_bytes(manifest)
    files[MANIFEST_XML] = signer.sign_root(manifest_xml(manifest), created_at)
    return await asyncio.to_thread(_zip, files)


# -- verifying ---------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""

    def as_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class EvidenceReport:
    dossier_id: str | None = None
    so_ho_so: str | None = None
    state: str | None = None
    received_at: str | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "dossier_id": self.dossier_id,
            "so_ho_so": self.so_ho_so,
            "state": self.state,
            "received_at": self.received_at,
            "checks": [c.as_dict() for c in self.checks],
        }


class _AsOf:
    """The `trust` verify_document asks: the caller's anchors, the bundle's intermediates and
    revocation data (nothing fetched), judged as of the time verify_document gives."""

    def __init__(
        self, trust: anchors.TrustStore, certs: list[x509.Certificate], crls: list[bytes], ocsp: list[bytes]
    ):
        self.trust, self.certs, self.crls, self.ocsp = trust, certs, crls, ocsp

    def validate(
        self, leaf: x509.Certificate, others: list[x509.Certificate], at: datetime
    ) -> anchors.PathResult:
        others = [*others, *(c for c in self.certs if c != leaf and c not in others)]
        return anchors.validate_at(leaf, others, at, trust=self.trust, crls=self.crls, ocsp=self.ocsp)


def load_trusted(paths: Sequence[str | Path]) -> list[x509.Certificate]:
    certs = []
    for path in paths:
        data = Path(path).read_bytes()
        certs += (
            x509.load_pem_x509_certificates(data)
            if b"-----BEGIN" in data
            else [x509.load_der_x509_certificate(data)]
        )
    return certs


def _digest_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _problems_text(report) -> str:
    return "; ".join(f"{p.code}: {p.message_en or p.message_vi}" for p in report.problems)


def verify_bundle(
    data: bytes, trusted: Sequence[x509.Certificate], *, legacy_sha1: bool = False
) -> EvidenceReport:
    """Check a bundle offline; every check is reported, passed or failed."""
    report = EvidenceReport()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = zf.namelist()
        unpacked = sum(info.file_size for info in zf.infolist())
        if unpacked > MAX_UNPACKED:
            report.add(
                "zip", False, f"{unpacked} bytes unpacked, more than the {MAX_UNPACKED} a bundle may hold"
            )
            return report
        files = {name: zf.read(name) for name in names}  # zipfile reads no more than each entry declares
    except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        report.add("zip", False, f"not a readable ZIP: {exc}")
        return report
    odd = [n for n in names if n.startswith("/") or ".." in PurePosixPath(n).parts or "\\" in n]
    if len(set(names)) != len(names) or odd:
        report.add(
            "zip",
            False,
            f"duplicate or unsafe names: {odd or sorted({n for n in names if names.count(n) > 1})}",
        )
        return report

    with tempfile.TemporaryDirectory(prefix="evidence-anchors-") as anchors_dir:
        for i, cert in enumerate(trusted, start=1):
            Path(anchors_dir, f"anchor-{i}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return _verify_files(report, files, anchors_dir, legacy_sha1)


def _verify_files(
    report: EvidenceReport, files: dict[str, bytes], anchors_dir: str, legacy_sha1: bool
) -> EvidenceReport:
    certs, crls, ocsp = _bundled_trust_data(files)
    trust = _AsOf(anchors.TrustStore(Path(anchors_dir), None, 0, crls=crls, ocsps=ocsp), certs, crls, ocsp)

    # 1. the manifests: the signed one decides, the JSON one must agree with it
    listed = _check_manifests(report, files, trust, legacy_sha1)
    try:
        record = json.loads(files["dossier.json"])
    except (KeyError, ValueError) as exc:
        report.add("dossier.json", False, f"missing or unreadable: {exc}")
        return report
    report.dossier_id, report.so_ho_so = record.get("id"), record.get("so_ho_so")
    report.state, report.received_at = record.get("state"), record.get("received_at")
    if listed is not None:
        bad = sorted(
            n for n, meta in listed.items() if n not in files or hashlib.sha256(files[n]).hexdigest() != meta
        )
        extra = sorted(set(files) - set(listed) - {MANIFEST_JSON, MANIFEST_XML})
        detail = "; ".join(
            part
            for part in (
                bad and f"changed or missing: {', '.join(bad)}",
                extra and f"not listed: {', '.join(extra)}",
            )
            if part
        )
        report.add(
            "file hashes", not bad and not extra, detail or f"{len(listed)} files match the signed manifest"
        )

    original = files.get("original.xml")
    if original is None:
        report.add("original.xml", False, "missing")
        return report
    digest_ok = hashlib.sha256(original).hexdigest() == record.get("sha256")
    report.add(
        "original.xml",
        digest_ok,
        "SHA-256 matches the record" if digest_ok else "SHA-256 differs from the record",
    )

    # 2. the notices: signed by the server, about this dossier, over these bytes
    received_at = _check_notices(report, files, record, original, trust, legacy_sha1)

    # 3. the original's signatures as of the time of receipt
    if received_at is None:
        received_at = _parse_time(record.get("received_at"))
    if received_at is None:
        report.add("original signatures", False, "no time of receipt to judge them at")
    else:
        _check_original(report, original, record, trust, received_at, legacy_sha1)

    # 4. the audit entries
    _check_audit(report, files, record, original)
    return report


def _check_manifests(
    report: EvidenceReport, files: dict[str, bytes], trust: _AsOf, legacy_sha1: bool
) -> dict | None:
    """The signed manifest's listing {name: sha256}, or None when it cannot be trusted."""
    xml = files.get(MANIFEST_XML)
    if xml is None:
        report.add("manifest.xml signature", False, "missing")
        return None
    try:
        root = parse_xml(xml, VERIFY_LIMITS).getroot()
    except Refusal as refusal:
        report.add("manifest.xml signature", False, "; ".join(p.code for p in refusal.problems))
        return None
    created = _parse_time(root.findtext(f"{{{NS}}}ThoiGianLap")) or utc_now()
    sig = verify_document(
        root, location="", trust=trust, at=created, document=MANIFEST_XML, legacy_sha1=legacy_sha1
    )
    signer = (sig.signer or {}).get("subject", "?")
    report.add(
        "manifest.xml signature", sig.valid, f"signed by {signer}" if sig.valid else _problems_text(sig)
    )
    if not sig.valid:
        return None
    listed = {
        el.get("Path"): el.get("SHA256") for el in root.iterfind(f"{{{NS}}}Files/{{{NS}}}File")
    }  # read from the signed tree only
    try:
        manifest = json.loads(files[MANIFEST_JSON])
        json_listed = {name: meta["sha256"] for name, meta in manifest["files"].items()}
        same = json_listed == listed and manifest.get("dossier_id") == root.findtext(f"{{{NS}}}MaGiaoDich")
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        report.add("manifest.json", False, f"missing or unreadable: {exc}")
    else:
        report.add(
            "manifest.json",
            same,
            "agrees with manifest.xml" if same else "differs from the signed manifest.xml",
        )
    return listed


def _bundled_trust_data(files: dict[str, bytes]) -> tuple[list[x509.Certificate], list[bytes], list[bytes]]:
    certs: list[x509.Certificate] = []
    for name, data in files.items():
        if name.startswith("signers/") and name.endswith(".pem"):
            try:
                certs += x509.load_pem_x509_certificates(data)
            except ValueError:
                pass  # reported through the signature checks that need it
    crls = [d for n, d in sorted(files.items()) if n.startswith("revocation/") and n.endswith(".crl")]
    ocsp = [d for n, d in sorted(files.items()) if n.startswith("revocation/") and n.endswith(".der")]
    return certs, crls, ocsp


def _check_notices(
    report: EvidenceReport,
    files: dict[str, bytes],
    record: dict,
    original: bytes,
    trust: _AsOf,
    legacy_sha1: bool,
) -> datetime | None:
    """Check every notice; return the time of receipt the receipt notice states."""
    received_at = None
    forwarded = _forwarded(files, record)
    expected = [f"notices/{k}.xml" for k in record.get("notice_kinds") or []]
    held = {n for n in files if n.startswith("notices/") and n.endswith(".xml")}
    notices = [n for n in expected if n in held] + sorted(
        held - set(expected)
    )  # in the order they were issued
    if held != set(expected):
        report.add("notices", False, f"the record lists {expected}, the bundle holds {sorted(held)}")
    for name in notices:
        kind = name[len("notices/") : -len(".xml")]
        try:
            root = parse_xml(files[name], VERIFY_LIMITS).getroot()
        except Refusal as refusal:
            report.add(f"notice {kind}", False, "; ".join(p.code for p in refusal.problems))
            continue
        try:
            notice = notice_from_root(root)
        except NotANotice:  # not a ThongBao: no field to read, and the content check below says so
            notice = Notice(kind=None, transaction_id=None)
        issued = _parse_time(notice.issued_text) or utc_now()
        sig = verify_document(
            root, location="", trust=trust, at=issued, document=name, legacy_sha1=legacy_sha1
        )
        report.add(f"notice {kind} signature", sig.valid, "valid" if sig.valid else _problems_text(sig))
        problems = []
        # A notice of the upstream agency (an I-VAN's forwarded dossier) carries the agency's
        # transaction id and number, as the logged forwarding states them; BamHoSo binds it.
        upstream = notice.transaction_id is not None and notice.transaction_id == forwarded.get("upstream_id")
        so_ho_so = forwarded.get("so_ho_so") if upstream else record.get("so_ho_so")
        if notice.transaction_id != record.get("id") and not upstream:
            problems.append(f"MaGiaoDich {notice.transaction_id} is not the dossier {record.get('id')}")
        bam = notice.digest
        if bam is not None and bam != _digest_b64(original):
            problems.append("BamHoSo is not the SHA-256 of original.xml")
        if bam is None and (kind in (SLUG_RECEIPT, SLUG_REFUSAL) or upstream):
            problems.append("no BamHoSo")
        if so_ho_so and notice.so_ho_so not in (None, so_ho_so):
            problems.append(f"SoHoSo {notice.so_ho_so} is not {so_ho_so}")
        report.add(
            f"notice {kind} content",
            not problems,
            "; ".join(problems) or "about this dossier; BamHoSo = SHA-256 of original.xml",
        )
        if kind in (SLUG_RECEIPT, SLUG_REFUSAL) and sig.valid:
            received_at = _parse_time(notice.received_text)
    return received_at


def _forwarded(files: dict[str, bytes], record: dict) -> dict:
    """The upstream's transaction id and number of a forwarded dossier, from its logged
    `dossier.forwarded` entry (the audit chain itself is checked separately)."""
    try:
        lines = [json.loads(line) for line in files.get("audit.jsonl", b"").splitlines() if line.strip()]
    except ValueError:
        return {}
    for entry in lines:
        if not isinstance(entry, dict):
            continue  # the audit chain check reports it
        data = entry.get("data")
        if (
            entry.get("kind") == "dossier.forwarded"
            and entry.get("dossier_id") == record.get("id")
            and isinstance(data, dict)
            and data.get("upstream_id")
        ):
            return {"upstream_id": data["upstream_id"], "so_ho_so": data.get("so_ho_so")}
    return {}


def _verify_original(
    original: bytes, trust: _AsOf, at: datetime, legacy_sha1: bool
) -> tuple[dict[str, bool], str]:
    """Each signed document's validity as of `at` ({document: valid}), and what went wrong."""
    try:
        root = parse_xml(original, VERIFY_LIMITS).getroot()
    except Refusal as refusal:
        return {}, "; ".join(p.code for p in refusal.problems)
    env = read_envelope(root, Problems(cap=100), max_files=1000)
    forms = [f for f in env.files if f.is_xml]
    reports = [
        verify_document(
            root, location=ENVELOPE_SIGNATURE_AT, trust=trust, at=at, document="Hoso",
            expected_mst=env.mst, legacy_sha1=legacy_sha1,
        )
    ]  # fmt: skip
    del root
    for f in forms:
        try:
            form_root = parse_xml(f.content, VERIFY_LIMITS, form=f.code).getroot()
        except Refusal:
            continue  # refused at the envelope layer, never verified at receipt either
        reports.append(
            verify_document(
                form_root, location=FORM_SIGNATURE_AT, trust=trust, at=at, document=f.name, form=f.code,
                expected_mst=env.mst, legacy_sha1=legacy_sha1,
            )
        )  # fmt: skip
    return {r.document: r.valid for r in reports}, "; ".join(
        f"{r.document}: {_problems_text(r)}" for r in reports if r.problems
    )


def _check_original(
    report: EvidenceReport, original: bytes, record: dict, trust: _AsOf, at: datetime, legacy_sha1: bool
) -> None:
    now, problems = _verify_original(original, trust, at, legacy_sha1)
    recorded = {s.get("document"): bool(s.get("valid")) for s in record.get("signers") or []}
    when = vn_iso(at)
    if record.get("state") != REFUSED:  # received, and later accepted or rejected
        ok = bool(now) and all(now.values()) and set(recorded) <= set(now)
        detail = f"{len(now)} signatures valid at receipt ({when})" if ok else problems or "no signature"
    else:  # refused: the same verdict as at receipt, document by document
        differ = {d: (recorded[d], now.get(d)) for d in recorded if now.get(d) != recorded[d]}
        ok = not differ
        detail = (
            f"refused dossier: re-verified at receipt ({when}) as recorded"
            + (f" ({problems})" if problems else "")
            if ok
            else f"verdicts differ from the record (document: recorded, now): {differ}"
        )
    report.add("original signatures", ok, detail)


def _check_audit(report: EvidenceReport, files: dict[str, bytes], record: dict, original: bytes) -> None:
    try:
        records = [json.loads(line) for line in files["audit.jsonl"].splitlines() if line.strip()]
    except (KeyError, ValueError) as exc:
        report.add("audit chain", False, f"audit.jsonl missing or unreadable: {exc}")
        return
    entries, findings = check_excerpt(records)
    if findings:
        first = findings[0]
        report.add(
            "audit chain",
            False,
            f"seq {first.seq}: {first.what}: {first.message}"
            + (f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""),
        )
    else:
        report.add(
            "audit chain",
            bool(entries),
            f"{len(entries)} entries, hashes and links intact" if entries else "no entries",
        )
    problems = []
    foreign = sorted(e.seq for e in entries if e.dossier_id != record.get("id"))
    if foreign:
        problems.append(f"entries of another dossier: seq {foreign}")
    receipts = [e for e in entries if e.kind in ("dossier.received", "dossier.refused")]
    if len(receipts) != 1:
        problems.append(f"{len(receipts)} receipt entries, not one")
    for e in receipts:
        if e.data.get("sha256") != hashlib.sha256(original).hexdigest():
            problems.append(f"seq {e.seq}: the receipt's sha256 is not that of original.xml")
        notice = e.data.get("notice") or {}
        xml = files.get(f"notices/{notice.get('kind')}.xml")
        if xml is None or hashlib.sha256(xml).hexdigest() != notice.get("sha256"):
            problems.append(f"seq {e.seq}: the receipt notice differs from the one logged")
    for e in entries:
        if e.kind == "notice.stored":
            xml = files.get(f"notices/{e.data.get('kind')}.xml")
            if xml is None or hashlib.sha256(xml).hexdigest() != e.data.get("sha256"):
                problems.append(f"seq {e.seq}: notice {e.data.get('kind')} differs from the one logged")
    report.add(
        "audit entries",
        not problems,
        "; ".join(problems) or "the logged digests match original.xml and the notices",
    )

"""Evidence bundles over real HTTP (SQLite and PostgreSQL), checked offline by `interchange
evidence verify` and, for the signed pieces, by xmlsec1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import shutil
import subprocess
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from interchange import cli
from interchange.devkit import pki
from interchange.evidence.bundle import build_bundle, verify_bundle
from interchange.intake.pipeline import Caller, Receiver
from interchange.kinds import NOTICE_RESULT, SLUG_RESULT
from interchange.notices.notice import NS, NoticeData, NoticeSigner
from interchange.store.types import RECEIVED, NewDossier, Scope
from tests.helpers import UNIT, XML, dossier

LAYOUT = {
    "original.xml",
    "notices/tiep-nhan.xml",
    "audit.jsonl",
    "dossier.json",
    "manifest.json",
    "manifest.xml",
}


@pytest.fixture
def root_pem(world, tmp_path) -> Path:
    path = tmp_path / "root.pem"
    path.write_bytes(pki.certs_pem([world.root.cert]))
    return path


async def submit(api, body: bytes, key: str = "unit") -> tuple[int, str]:
    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys[key]})
    notice = etree.fromstring(await resp.read())
    return resp.status, notice.findtext(f"{{{NS}}}MaGiaoDich")


async def evidence(api, tx: str, key: str = "unit") -> bytes:
    resp = await api.get(f"/api/v1/dossiers/{tx}/evidence", headers=api.keys[key])
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/zip"
    assert f"evidence-{tx}.zip" in resp.headers["Content-Disposition"]
    return await resp.read()


def verify_cli(path: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["evidence", "verify", str(path), *args])
    return code, out.getvalue()


def files_of(bundle: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()


def failed(report) -> set[str]:
    return {c.name for c in report.checks if not c.ok}


async def test_bundle_holds_everything_and_verifies_offline(api, cfg, world, tmp_path, root_pem):
    body = dossier(world.signer(world.unit), seed=41)
    status, tx = await submit(api, body)
    assert status == 202
    services = api.services
    result = services.signer.sign(
        NoticeData(kind=NOTICE_RESULT, transaction_id=tx, received_at=datetime.now(UTC), issued_at=datetime.now(UTC),
                   sha256=hashlib.sha256(body).digest(), result="CHAP_NHAN")
    )  # fmt: skip
    assert await services.store.dossiers.add_notice(tx, SLUG_RESULT, result)

    bundle = await evidence(api, tx)
    files = files_of(bundle)
    assert LAYOUT | {"notices/ket-qua.xml", "signers/1-chain.pem", "signers/2-chain.pem"} <= set(files)
    assert files["original.xml"] == body
    assert files["notices/ket-qua.xml"] == result
    record = json.loads(files["dossier.json"])
    assert record["id"] == tx and record["sha256"] == hashlib.sha256(body).hexdigest()
    assert files["signers/1-chain.pem"].decode() == "".join(record["signers"][0]["chain_pem"])
    manifest = json.loads(files["manifest.json"])
    assert set(manifest["files"]) == set(files) - {"manifest.json", "manifest.xml"}
    for name, meta in manifest["files"].items():
        assert meta["sha256"] == hashlib.sha256(files[name]).hexdigest()
    audit = [json.loads(line) for line in files["audit.jsonl"].splitlines()]
    kinds = [r["kind"] for r in audit if r["record"] == "entry"]
    assert kinds == ["dossier.received", "notice.stored"]
    assert audit[-1]["record"] == "head"

    path = tmp_path / "evidence.zip"
    path.write_bytes(bundle)
    code, out = await asyncio.to_thread(verify_cli, path, "--trusted", str(root_pem))
    assert code == 0, out
    assert "OK: the evidence verifies" in out and "FAIL" not in out
    code, out = await asyncio.to_thread(verify_cli, path, "--trusted", str(root_pem), "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["dossier_id"] == tx
    names = {c["name"] for c in report["checks"]}
    assert {
        "manifest.xml signature", "manifest.json", "file hashes", "original.xml", "notice tiep-nhan signature",
        "notice tiep-nhan content", "notice ket-qua signature", "notice ket-qua content", "original signatures",
        "audit chain", "audit entries",
    } <= names  # fmt: skip

    # Without --trusted, the anchors of the config are used; with an unrelated anchor nothing verifies.
    config = tmp_path / "verify.toml"
    config.write_text(f'[trust]\nanchors_dir = "{Path(cfg.trust.anchors_dir).as_posix()}"\n')
    code, out = await asyncio.to_thread(verify_cli, path, "--config", str(config))
    assert code == 0, out
    rogue = tmp_path / "rogue.pem"
    rogue.write_bytes(pki.certs_pem([world.rogue_ca.cert]))
    code, out = await asyncio.to_thread(verify_cli, path, "--trusted", str(rogue))
    assert code == 1 and "FAIL  manifest.xml signature" in out and "FAIL  original signatures" in out


async def test_refused_dossier_bundle_verifies_as_recorded(api, world, tmp_path, root_pem):
    body = dossier(world.signer(world.unit), seed=42).replace(b"<KyKeKhai>11/2026", b"<KyKeKhai>10/2026")
    status, tx = await submit(api, body)
    assert status == 422
    files = files_of(await evidence(api, tx))
    assert "notices/tu-choi.xml" in files and "notices/tiep-nhan.xml" not in files
    report = await asyncio.to_thread(verify_bundle, rezip(files), [world.root.cert])
    assert report.ok, report.as_dict()
    detail = next(c.detail for c in report.checks if c.name == "original signatures")
    assert "as recorded" in detail and "SIG-DIGEST" in detail


def _edit_xml_text(xml: bytes, tag: bytes) -> bytes:
    start = xml.index(b"<" + tag + b">") + len(tag) + 2
    flipped = b"1" if xml[start : start + 1] != b"1" else b"2"
    return xml[:start] + flipped + xml[start + 1 :]


def _edit_audit_line(audit: bytes) -> bytes:
    lines = audit.splitlines()
    entry = json.loads(lines[0])
    entry["actor"] = "key:mallory"
    return b"\n".join([json.dumps(entry).encode(), *lines[1:]]) + b"\n"


def _rehash_manifest_json(files: dict[str, bytes]) -> dict[str, bytes]:
    manifest = json.loads(files["manifest.json"])
    for name in manifest["files"]:
        manifest["files"][name]["sha256"] = hashlib.sha256(files[name]).hexdigest()
    return {**files, "manifest.json": json.dumps(manifest).encode()}


TAMPERING = {
    "original": (
        lambda f: {**f, "original.xml": _edit_xml_text(f["original.xml"], b"NgayLap")},
        {"file hashes", "original.xml", "original signatures", "notice tiep-nhan content", "audit entries"},
    ),
    "original, manifest.json re-hashed": (
        lambda f: _rehash_manifest_json({**f, "original.xml": f["original.xml"] + b" "}),
        {"manifest.json", "file hashes", "original.xml", "notice tiep-nhan content", "audit entries"},
    ),
    "notice": (
        lambda f: {**f, "notices/tiep-nhan.xml": _edit_xml_text(f["notices/tiep-nhan.xml"], b"MaGiaoDich")},
        {"file hashes", "notice tiep-nhan signature", "notice tiep-nhan content", "audit entries"},
    ),
    "manifest.xml": (
        lambda f: {**f, "manifest.xml": f["manifest.xml"].replace(b'SHA256="', b'SHA256="0', 1)},
        {"manifest.xml signature"},
    ),
    "audit line": (
        lambda f: {**f, "audit.jsonl": _edit_audit_line(f["audit.jsonl"])},
        {"file hashes", "audit chain"},
    ),
    "audit line removed": (
        lambda f: {**f, "audit.jsonl": b"\n".join(f["audit.jsonl"].splitlines()[1:]) + b"\n"},
        {"file hashes", "audit chain", "audit entries"},
    ),
    "extra file": (lambda f: {**f, "notices/ket-qua.xml": f["notices/tiep-nhan.xml"]}, None),
}


@pytest.mark.parametrize("what", list(TAMPERING))
async def test_tampering_is_detected(api, world, tmp_path, root_pem, what):
    status, tx = await submit(api, dossier(world.signer(world.unit), seed=43))
    assert status == 202
    files = files_of(await evidence(api, tx))
    tamper, expected = TAMPERING[what]
    changed = tamper(files)
    assert changed != files
    report = await asyncio.to_thread(verify_bundle, rezip(changed), [world.root.cert])
    assert not report.ok
    if expected is not None:
        assert failed(report) == expected, report.as_dict()
    else:
        assert "file hashes" in failed(report) and "notices" in failed(report)
    path = tmp_path / "tampered.zip"
    path.write_bytes(rezip(changed))
    code, out = await asyncio.to_thread(verify_cli, path, "--trusted", str(root_pem))
    assert code == 1 and out.rstrip().endswith("FAILED")


async def test_visibility_follows_the_other_dossier_endpoints(api, world):
    status, tx = await submit(api, dossier(world.signer(world.unit), seed=44))
    assert status == 202
    for key, expected in (
        ("unit", 200),
        ("ivan", 200),
        ("auditor", 200),
        ("other", 404),
        ("other_ivan", 404),
    ):
        resp = await api.get(f"/api/v1/dossiers/{tx}/evidence", headers=api.keys[key])
        assert resp.status == expected, key
    assert (await api.get(f"/api/v1/dossiers/{tx}/evidence")).status == 401
    assert (await api.get("/api/v1/dossiers/nope/evidence", headers=api.keys["auditor"])).status == 404


async def test_a_later_revocation_or_expiry_does_not_change_the_verdict(cfg, store, tmp_path):
    """A dossier received 300 days ago with a certificate that has expired since, and whose
    unit certificate a later CRL revokes: judged as of receipt, with the CRL kept then."""
    now = datetime.now(UTC)
    then = now - timedelta(days=300)
    root = pki.create_ca("Old Root", not_before=then - timedelta(days=400), days=3000)
    ca = pki.create_ca("Old Issuing CA", parent=root, not_before=then - timedelta(days=400), days=2000)
    unit = pki.issue_unit_cert(
        ca, UNIT.mst, UNIT.name, not_before=then - timedelta(days=30), not_after=then + timedelta(days=30)
    )
    server = pki.issue_server_cert(ca, not_before=then - timedelta(days=30), days=2000)
    crl_then = pki.issue_crl(
        ca, [], this_update=then - timedelta(days=1), next_update=then + timedelta(days=6)
    )
    anchors_dir, crl_dir = tmp_path / "old-trusted", tmp_path / "old-crl"
    pki.write_certs_pem(anchors_dir / "root.pem", [root.cert])
    crl_dir.mkdir()
    (crl_dir / "ca.crl").write_bytes(crl_then.public_bytes(Encoding.DER))
    cfg.trust.anchors_dir, cfg.trust.crl_dir = str(anchors_dir), str(crl_dir)

    body = dossier(pki_signer(unit))
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    outcome = await asyncio.to_thread(receiver.receive, body, then, Caller("submitter", mst=UNIT.mst))
    assert outcome.accepted, outcome.problems
    assert all((s.get("revocation") or {}).get("crl_sha256") for s in outcome.signers)
    signer = NoticeSigner(server.key, [server.cert, *server.chain])
    new = NewDossier(
        id="0" * 31 + "1", state=RECEIVED, owner=f"mst:{UNIT.mst}", submitter_key_id="k", original=body,
        sha256=hashlib.sha256(body).digest(), received_at=then, office_code="TEST", unit_mst=UNIT.mst,
        signers=outcome.signers, revocation_data=outcome.revocation_data, layers=outcome.layers,
    )  # fmt: skip

    async def notice(d):
        return signer.sign(NoticeData(kind="TIEP_NHAN", transaction_id=d.id, received_at=d.received_at,
                                      issued_at=then, sha256=d.sha256, so_ho_so=d.so_ho_so))  # fmt: skip

    await store.receipts.save(new, notice)
    parts = await store.dossiers.evidence_parts(new.id, Scope(all=True))
    assert set(parts.revocation) == set(outcome.revocation_data)  # kept once, by SHA-256
    bundle = await build_bundle(parts.dossier, parts.original, parts.notices, parts.audit, signer,
                                revocation=parts.revocation)
    files = files_of(bundle)
    assert {"revocation/1.json", "revocation/1-crl-1.crl"} <= set(files)
    assert files["revocation/1-crl-1.crl"] == crl_then.public_bytes(Encoding.DER)

    # Today the unit certificate has expired and a newer CRL revokes it: the dossier still verifies.
    (crl_dir / "ca.crl").write_bytes(
        pki.issue_crl(ca, [(unit.cert.serial_number, then + timedelta(days=2))]).public_bytes(Encoding.DER)
    )
    report = await asyncio.to_thread(verify_bundle, bundle, [root.cert])
    assert report.ok, report.as_dict()
    assert unit.cert.not_valid_after_utc < now
    # Dropping the kept CRL does not make a valid bundle (the manifest lists it).
    files.pop("revocation/1-crl-1.crl")
    assert "file hashes" in failed(await asyncio.to_thread(verify_bundle, rezip(files), [root.cert]))


def pki_signer(issued: pki.Issued):
    from interchange.trust.xmldsig import DocumentSigner

    return DocumentSigner(issued.key, [issued.cert, *issued.chain])


@pytest.mark.xmlsec1
@pytest.mark.skipif(
    shutil.which("xmlsec1") is None, reason="xmlsec1 (Debian package xmlsec1) is not installed"
)
async def test_signed_pieces_verify_with_xmlsec1(api, world, tmp_path):
    status, tx = await submit(api, dossier(world.signer(world.unit), seed=45))
    assert status == 202
    files = files_of(await evidence(api, tx, key="auditor"))
    root, ca = tmp_path / "root.pem", tmp_path / "ca.pem"
    root.write_bytes(pki.certs_pem([world.root.cert]))
    ca.write_bytes(pki.certs_pem([world.ca.cert]))
    for name in ("manifest.xml", "notices/tiep-nhan.xml"):
        doc = tmp_path / name.replace("/", "-")
        doc.write_bytes(files[name])
        res = subprocess.run(
            ["xmlsec1", "--verify", "--enabled-reference-uris", "empty",
             "--trusted-pem", str(root), "--untrusted-pem", str(ca), str(doc)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert res.returncode == 0, f"{name}: {res.stderr}"
    changed = tmp_path / "manifest-changed.xml"
    changed.write_bytes(files["manifest.xml"].replace(b'SHA256="', b'SHA256="0', 1))
    res = subprocess.run(
        ["xmlsec1", "--verify", "--enabled-reference-uris", "empty",
         "--trusted-pem", str(root), "--untrusted-pem", str(ca), str(changed)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.returncode != 0

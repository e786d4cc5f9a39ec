"""Revocation: CRLs held and fetched, the policies for an unknown status, the record kept with the
dossier, validation at a point in time (`validate_at`, `verify --at`), and the cache. No network:
distribution points are served from 127.0.0.1."""

from __future__ import annotations

import json
import threading
from base64 import b64encode
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from interchange import cli
from interchange.devkit import pki
from interchange.intake.pipeline import Receiver
from interchange.trust.anchors import TrustStore, validate_at
from interchange.trust.revinfo import HeldCRL
from interchange.trust.revocation import (
    CrlCache,
    async_refresh_crls,
    refresh_crls,
    revocation_data_from_json,
)
from tests.helpers import UNIT, dossier
from tests.helpers import code_set as codes

DAY = timedelta(days=1)


def der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


def put_crl(cfg, name: str, crl: x509.CertificateRevocationList, pem: bool = False) -> Path:
    folder = Path(cfg.trust.crl_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM if pem else serialization.Encoding.DER))
    return path


def unit_cert(world, *, ca=None, not_before=None, not_after=None, crl_url=None, ocsp_url=None) -> pki.Issued:
    """A unit certificate like world.unit (same key, to save time) issued by `ca` (world.ca),
    optionally with a CRL distribution point and an OCSP responder."""
    ca = ca or world.ca
    nb = not_before or datetime.now(UTC) - timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(world.unit.cert.subject)
        .issuer_name(ca.cert.subject)
        .public_key(world.unit.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(nb)
        .not_valid_after(not_after or nb + 365 * DAY)
    )
    for ext in world.unit.cert.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    if crl_url:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if ocsp_url:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    return pki.Issued(key=world.unit.key, cert=cert, chain=[ca.cert, *ca.chain])


@pytest.fixture(scope="module")
def old_ca(world) -> pki.Issued:
    """An issuing CA (and root) in service for 500 days, for checks at past moments."""
    since = datetime.now(UTC) - 500 * DAY
    root = pki.create_ca("Old Root CA", key=world.root.key, not_before=since)
    return pki.create_ca("Old Issuing CA", parent=root, key=world.ca.key, not_before=since)


@pytest.fixture
def past_cfg(cfg, old_ca):
    """`cfg` trusting the old root (as well as the test root)."""
    pki.write_certs_pem(Path(cfg.trust.anchors_dir) / "old-root.pem", [old_ca.chain[-1]])
    return cfg


def receive(cfg, data: bytes, at: datetime):
    return Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits).receive(data, at)


def used(out, signer: int = 0, kind: str = "crl") -> list[bytes]:
    """The CRLs (or OCSP responses) a signer's revocation names, as the outcome brings them."""
    names = out.signers[signer]["revocation"][f"{kind}_sha256"]
    assert all(out.revocation_data[n][0] == kind for n in names)
    return [out.revocation_data[n][1] for n in names]


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def config_file(cfg, tmp_path: Path, **trust) -> Path:
    lines = [
        f'data_dir = "{cfg.data_dir}"',
        "[trust]",
        f'anchors_dir = "{cfg.trust.anchors_dir}"',
        f'crl_dir = "{cfg.trust.crl_dir}"',
        *(f"{k} = {json.dumps(v)}" for k, v in trust.items()),
    ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- receipt: held CRLs and the policies -----------------------------------------------------


def test_crl_revoking_the_unit_refuses_the_dossier(cfg, world, now):
    crl = pki.issue_crl(world.ca, [(world.unit.cert.serial_number, now - DAY)])
    put_crl(cfg, "issuing.crl", crl)
    out = receive(cfg, dossier(world.signer(world.unit)), now)
    assert not out.accepted
    assert codes(out) == {"SIG-REVOKED"}
    rev = out.signers[0]["revocation"]
    assert rev["status"] == "revoked" and rev["source"] == "crl"
    assert used(out) == [der(crl)]


def test_crl_listing_another_serial_accepts_and_records_the_crl(cfg, world, now):
    crl = pki.issue_crl(world.ca, [(world.other_unit.cert.serial_number, now - DAY)])
    put_crl(cfg, "issuing.pem", crl, pem=True)  # PEM is read too
    out = receive(cfg, dossier(world.signer(world.unit)), now)
    assert out.accepted, out.problems
    assert len(out.signers) == 2 and len(out.revocation_data) == 1  # one CRL, named by both
    for i, signer in enumerate(out.signers):  # the envelope and the form
        rev = signer["revocation"]
        assert rev["status"] == "good" and rev["source"] == "crl" and rev["ocsp_sha256"] == []
        assert used(out, i) == [der(crl)]
        assert datetime.fromisoformat(rev["checked_at"]) <= datetime.now(UTC)


def test_no_crl_soft_fail_accepts_with_status_unknown(cfg, world, now):
    out = receive(cfg, dossier(world.signer(world.unit)), now)
    assert out.accepted, out.problems
    rev = out.signers[0]["revocation"]
    assert rev["status"] == "unknown" and rev["source"] is None and rev["crl_sha256"] == [] and rev["ocsp_sha256"] == []
    assert len(json.dumps(rev)) < 120  # small when there is nothing to keep


@pytest.mark.parametrize("mode", ["hard-fail", "require"])
def test_no_crl_hard_fail_refuses_with_revocation_unknown(cfg, world, now, mode):
    cfg.trust.revocation = mode
    out = receive(cfg, dossier(world.signer(world.unit)), now)
    assert not out.accepted
    assert codes(out) == {"SIG-REVOCATION-UNKNOWN"}
    assert out.signers[0]["revocation"]["status"] == "unknown"


def test_hard_fail_needs_the_leaf_status_require_needs_every_issuer(cfg, world, now):
    put_crl(cfg, "issuing.crl", pki.issue_crl(world.ca, []))
    cfg.trust.revocation = "hard-fail"
    assert receive(cfg, dossier(world.signer(world.unit)), now).accepted
    cfg.trust.revocation = "require"  # the issuing CA's own status (from the root's CRL) is missing
    assert codes(receive(cfg, dossier(world.signer(world.unit)), now)) == {"SIG-REVOCATION-UNKNOWN"}
    root_crl = pki.issue_crl(world.root, [])
    put_crl(cfg, "root.crl", root_crl)
    out = receive(cfg, dossier(world.signer(world.unit)), now)
    assert out.accepted, out.problems
    assert len(used(out)) == 2


def test_expired_crl_under_hard_fail_is_unknown(cfg, world, now):
    stale = pki.issue_crl(world.ca, [], this_update=now - 10 * DAY, next_update=now - DAY)
    put_crl(cfg, "issuing.crl", stale)
    cfg.trust.revocation = "hard-fail"
    out = receive(cfg, dossier(world.signer(world.unit)), now)
    assert codes(out) == {"SIG-REVOCATION-UNKNOWN"}
    rev = out.signers[0]["revocation"]
    assert rev["status"] == "unknown" and used(out) == [der(stale)]
    cfg.trust.revocation = "soft-fail"
    assert receive(cfg, dossier(world.signer(world.unit)), now).accepted


def test_a_revocation_on_an_expired_crl_still_counts(cfg, world, now):
    stale = pki.issue_crl(
        world.ca,
        [(world.unit.cert.serial_number, now - 9 * DAY)],
        this_update=now - 8 * DAY,
        next_update=now - DAY,
    )
    put_crl(cfg, "issuing.crl", stale)
    for mode in ("soft-fail", "hard-fail"):
        cfg.trust.revocation = mode
        assert codes(receive(cfg, dossier(world.signer(world.unit)), now)) == {"SIG-REVOKED"}


def test_revoked_issuing_ca_refuses_even_with_a_good_unit_crl(cfg, world, now):
    put_crl(cfg, "issuing.crl", pki.issue_crl(world.ca, []))
    put_crl(cfg, "root.crl", pki.issue_crl(world.root, [(world.ca.cert.serial_number, now - DAY)]))
    out = receive(cfg, dossier(world.signer(world.unit)), now)
    assert codes(out) == {"SIG-REVOKED"}
    assert "tổ chức cấp" in out.problems[0].message_vi


def test_forged_crl_is_not_believed(cfg, world, now):
    forger = pki.Issued(key=world.rogue_ca.key, cert=world.ca.cert)  # the issuing CA's name, another key
    put_crl(cfg, "forged.crl", pki.issue_crl(forger, [(world.unit.cert.serial_number, now - DAY)]))
    out = receive(cfg, dossier(world.signer(world.unit)), now)
    rev = out.signers[0]["revocation"]
    assert out.accepted and rev["status"] == "unknown" and rev["crl_sha256"] == []  # not recorded either
    cfg.trust.revocation = "hard-fail"
    assert codes(receive(cfg, dossier(world.signer(world.unit)), now)) == {"SIG-REVOCATION-UNKNOWN"}


def test_unreadable_crl_file_is_skipped(cfg, world, now):
    Path(cfg.trust.crl_dir).mkdir(parents=True)
    (Path(cfg.trust.crl_dir) / "broken.crl").write_bytes(b"not a CRL")
    put_crl(cfg, "issuing.crl", pki.issue_crl(world.ca, []))
    out = receive(cfg, dossier(world.signer(world.unit)), now)
    assert out.accepted and out.signers[0]["revocation"]["status"] == "good"


def test_unknown_policy_is_a_config_error(cfg):
    cfg.trust.revocation = "strict"
    with pytest.raises(ValueError, match="trust.revocation"):
        TrustStore.from_config(cfg.trust, cfg.trust_paths)


# ---- the cache -------------------------------------------------------------------------------


def test_cache_does_not_hide_a_new_crl(cfg, world, now, monkeypatch):
    cfg.trust.cache_seconds = 300
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    runs = []
    check_path = receiver.trust.check_path  # one uncached path validation
    monkeypatch.setattr(receiver.trust, "check_path", lambda *a, **kw: runs.append(1) or check_path(*a, **kw))
    data = dossier(world.signer(world.unit))
    assert receiver.receive(data, now).accepted
    assert receiver.receive(data, now).accepted
    assert len(runs) == 1  # envelope and form share the certificate; the second dossier hits the cache

    put_crl(cfg, "issuing.crl", pki.issue_crl(world.ca, [(world.unit.cert.serial_number, now - DAY)]))
    assert codes(receiver.receive(data, now)) == {"SIG-REVOKED"}

    Path(cfg.trust.crl_dir, "issuing.crl").unlink()
    receiver.trust.reload()
    assert receiver.receive(data, now).accepted


def test_cache_is_not_reused_for_a_distant_time(cfg, world, now):
    """A revocation dated after the first check is seen once the time asked for passes it."""
    cfg.trust.cache_seconds = 300
    put_crl(
        cfg,
        "issuing.crl",
        pki.issue_crl(world.ca, [(world.unit.cert.serial_number, now + timedelta(hours=1))]),
    )
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    data = dossier(world.signer(world.unit))
    assert receiver.receive(data, now).accepted
    assert codes(receiver.receive(data, now + timedelta(hours=2))) == {"SIG-REVOKED"}


def counted(cfg, monkeypatch) -> tuple[Receiver, list[int]]:
    """A receiver whose uncached path validations are counted (one entry per run)."""
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    runs: list[int] = []
    check_path = receiver.trust.check_path
    monkeypatch.setattr(receiver.trust, "check_path", lambda *a, **kw: runs.append(1) or check_path(*a, **kw))
    return receiver, runs


def test_cache_keeps_a_revocation(cfg, world, now, monkeypatch):
    cfg.trust.cache_seconds = 300
    put_crl(cfg, "issuing.crl", pki.issue_crl(world.ca, [(world.unit.cert.serial_number, now - DAY)]))
    receiver, runs = counted(cfg, monkeypatch)
    data = dossier(world.signer(world.unit))
    assert codes(receiver.receive(data, now)) == {"SIG-REVOKED"}
    assert codes(receiver.receive(data, now + timedelta(seconds=1))) == {"SIG-REVOKED"}
    assert len(runs) == 1  # the answer came from the cache, revoked as it was computed


def test_cache_is_not_reused_for_new_revocation_data(cfg, world, now, monkeypatch):
    """Any change of the CRLs held (here one revoking someone else) validates again."""
    cfg.trust.cache_seconds = 300
    receiver, runs = counted(cfg, monkeypatch)
    data = dossier(world.signer(world.unit))
    assert receiver.receive(data, now).accepted
    assert len(runs) == 1
    put_crl(cfg, "issuing.crl", pki.issue_crl(world.ca, [(world.other_unit.cert.serial_number, now - DAY)]))
    out = receiver.receive(data, now)
    assert out.accepted and len(runs) == 2
    assert used(out)  # judged by the new CRL, not the answer before it


def test_cache_does_not_serve_an_expired_certificate(cfg, world, now, monkeypatch):
    cfg.trust.cache_seconds = 300
    short = unit_cert(world, not_before=now - DAY, not_after=now + timedelta(seconds=30))
    receiver, runs = counted(cfg, monkeypatch)
    data = dossier(world.signer(short))
    assert receiver.receive(data, now).accepted
    assert len(runs) == 1
    assert "SIG-EXPIRED" in codes(receiver.receive(data, now + timedelta(seconds=90)))
    assert len(runs) == 3  # a time outside the certificate's life is validated again, for each signature


def test_cache_does_not_serve_a_chain_whose_issuer_expired(cfg, world, now, monkeypatch):
    cfg.trust.cache_seconds = 300
    ca = pki.create_ca("Short-lived Issuing CA", parent=world.root, key=world.ca.key,
                       not_before=now - DAY, not_after=now + timedelta(seconds=30))
    receiver, runs = counted(cfg, monkeypatch)
    data = dossier(world.signer(unit_cert(world, ca=ca, not_before=now - DAY)))
    assert receiver.receive(data, now).accepted
    assert "SIG-EXPIRED" in codes(receiver.receive(data, now + timedelta(seconds=90)))
    assert len(runs) == 3


def test_cache_is_not_reused_across_a_revocation_date(cfg, world, now, monkeypatch):
    """A revocation dated a minute after the first check is seen two minutes later, inside the
    cache's time, validated again rather than answered from the cache."""
    cfg.trust.cache_seconds = 300
    revoked_at = now + timedelta(seconds=60)
    put_crl(cfg, "issuing.crl", pki.issue_crl(world.ca, [(world.unit.cert.serial_number, revoked_at)]))
    receiver, runs = counted(cfg, monkeypatch)
    data = dossier(world.signer(world.unit))
    assert receiver.receive(data, now).accepted
    assert receiver.receive(data, now + timedelta(seconds=30)).accepted
    assert len(runs) == 1
    assert codes(receiver.receive(data, now + timedelta(seconds=120))) == {"SIG-REVOKED"}
    assert len(runs) == 2  # the envelope's signature validated again; the form's shares its time


def test_cache_is_not_reused_across_a_crl_going_stale(cfg, world, now, monkeypatch):
    cfg.trust.cache_seconds = 300
    cfg.trust.revocation = "hard-fail"
    put_crl(cfg, "issuing.crl", pki.issue_crl(world.ca, [], this_update=now - DAY,
                                              next_update=now + timedelta(seconds=60)))
    receiver, runs = counted(cfg, monkeypatch)
    data = dossier(world.signer(world.unit))
    assert receiver.receive(data, now).accepted
    assert codes(receiver.receive(data, now + timedelta(seconds=120))) == {"SIG-REVOCATION-UNKNOWN"}
    assert len(runs) == 2


def test_cache_is_not_reused_across_an_ocsp_answer_going_stale(cfg, world, now):
    cert = unit_cert(world, ocsp_url="http://127.0.0.1:9/ocsp")
    answer = ocsp_response(world, cert.cert, next_update=now + timedelta(seconds=60))
    trust = TrustStore(cfg.trust_paths.anchors, cache_seconds=300, revocation="hard-fail", crls=[], ocsps=[answer])
    assert trust.validate(cert.cert, cert.chain, now).ok
    later = trust.validate(cert.cert, cert.chain, now + timedelta(seconds=120))
    assert [p.code for p in later.problems] == ["SIG-REVOCATION-UNKNOWN"]


def test_cache_belongs_to_its_trust_store(cfg, world, now, tmp_path):
    """A store with other anchors never answers from what another store validated."""
    cfg.trust.cache_seconds = 300
    data = dossier(world.signer(world.unit))
    trusting = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    assert trusting.receive(data, now).accepted
    pki.write_certs_pem(tmp_path / "other-anchors" / "rogue.pem", [world.rogue_ca.cert])
    cfg.trust.anchors_dir = str(tmp_path / "other-anchors")
    assert "SIG-UNTRUSTED" in codes(Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits).receive(data, now))
    assert trusting.receive(data, now).accepted


# ---- at a point in time ----------------------------------------------------------------------


@pytest.fixture
def revoked_later(world, old_ca, now):
    """A certificate valid from 30 days ago, revoked 10 days ago, and the CRL saying so."""
    cert = unit_cert(world, ca=old_ca, not_before=now - 30 * DAY)
    crl = pki.issue_crl(old_ca, [(cert.cert.serial_number, now - 10 * DAY)])
    return cert, crl


def test_validate_at_before_the_revocation(past_cfg, world, now, revoked_later):
    cfg = past_cfg
    cert, crl = revoked_later
    trust = TrustStore.from_config(cfg.trust, cfg.trust_paths)
    for mode in ("soft-fail", "hard-fail"):
        before = validate_at(
            cert.cert, cert.chain, now - 20 * DAY, trust=trust, crls=[der(crl)], revocation=mode
        )
        assert before.ok, before.problems
        assert before.revocation.status == "good" and before.revocation.crls == [der(crl)]
        after = validate_at(cert.cert, cert.chain, now, trust=trust, crls=[der(crl)], revocation=mode)
        assert [p.code for p in after.problems] == ["SIG-REVOKED"]
    # without data kept, and none held, nothing is known
    unknown = validate_at(
        cert.cert, cert.chain, now - 20 * DAY, trust=trust, crls=None, revocation="hard-fail"
    )
    assert [p.code for p in unknown.problems] == ["SIG-REVOCATION-UNKNOWN"]


def test_verify_at_with_kept_revocation_data(past_cfg, world, now, revoked_later, tmp_path, capsys):
    cfg = past_cfg
    cert, crl = revoked_later
    signed = tmp_path / "signed.xml"
    signed.write_bytes(dossier(world.signer(cert)))
    kept = tmp_path / "revocation.json"
    kept.write_text(json.dumps([b64encode(der(crl)).decode()]))
    config = str(config_file(cfg, tmp_path, revocation="hard-fail"))

    code, out = run_cli(
        capsys,
        "--config",
        config,
        "verify",
        "--at",
        (now - 20 * DAY).isoformat(),
        "--revocation",
        str(kept),
        str(signed),
    )
    assert code == 0, out
    assert "revocation: good (crl), 1 CRL(s)" in out
    code, out = run_cli(capsys, "--config", config, "verify", "--revocation", str(kept), str(signed))
    assert code == 1 and "SIG-REVOKED" in out
    code, out = run_cli(
        capsys, "--config", config, "verify", "--at", (now - 20 * DAY).isoformat(), str(signed)
    )
    assert code == 1 and "SIG-REVOCATION-UNKNOWN" in out  # no CRL held today, none given


def test_verify_at_with_the_crl_files_of_an_evidence_bundle(past_cfg, world, now, revoked_later, tmp_path, capsys):
    """A dossier's signers name their CRLs by SHA-256; its evidence bundle holds the files."""
    cert, crl = revoked_later
    signed = tmp_path / "signed.xml"
    signed.write_bytes(dossier(world.signer(cert)))
    crl_file, named = tmp_path / "1-crl-1.crl", tmp_path / "dossier.json"
    crl_file.write_bytes(der(crl))
    named.write_text(json.dumps({"signers": [{"revocation": {"crl_sha256": ["ab" * 32], "ocsp_sha256": []}}]}))
    config = str(config_file(past_cfg, tmp_path, revocation="hard-fail"))
    at = (now - 20 * DAY).isoformat()
    code, out = run_cli(capsys, "--config", config, "verify", "--at", at, "--revocation", str(crl_file), str(signed))
    assert code == 0, out
    assert "revocation: good (crl), 1 CRL(s)" in out
    code, out = run_cli(capsys, "--config", config, "verify", "--at", at, "--revocation", str(named), str(signed))
    assert code != 0 and "SHA-256 only" in out
    not_crl = tmp_path / "junk.der"
    not_crl.write_bytes(b"\x30\x03\x02\x01\x05")
    code, out = run_cli(capsys, "--config", config, "verify", "--at", at, "--revocation", str(not_crl), str(signed))
    assert code != 0 and "neither JSON kept with a dossier, nor a CRL, nor an OCSP response" in out


def test_verify_at_expired_certificate_with_the_record_kept_at_receipt(
    past_cfg, world, old_ca, now, tmp_path, capsys
):
    """Received 100 days ago with the then-current CRL kept; the certificate has expired since."""
    cfg = past_cfg
    cert = unit_cert(world, ca=old_ca, not_before=now - 400 * DAY, not_after=now - DAY)
    received = now - 100 * DAY
    then_crl = pki.issue_crl(
        old_ca,
        [(world.other_unit.cert.serial_number, now - 200 * DAY)],
        this_update=received - DAY,
        next_update=received + 6 * DAY,
    )
    put_crl(cfg, "issuing.crl", then_crl)
    cfg.trust.revocation = "hard-fail"
    data = dossier(world.signer(cert))
    outcome = receive(cfg, data, received)
    assert outcome.accepted, outcome.problems
    # kept with the dossier: its signers name the CRL, its evidence bundle holds the file
    (kind, kept), = outcome.revocation_data.values()
    assert kind == "crl" and [s["revocation"]["crl_sha256"] for s in outcome.signers] == [list(outcome.revocation_data)] * 2
    record = tmp_path / "1-crl-1.crl"
    record.write_bytes(kept)
    Path(cfg.trust.crl_dir, "issuing.crl").unlink()  # long replaced since

    signed = tmp_path / "expired.xml"
    signed.write_bytes(data)
    config = str(config_file(cfg, tmp_path, revocation="hard-fail"))
    code, out = run_cli(capsys, "--config", config, "verify", str(signed))
    assert code == 1 and "SIG-EXPIRED" in out
    code, out = run_cli(
        capsys,
        "--config",
        config,
        "verify",
        "--at",
        received.isoformat(),
        "--revocation",
        str(record),
        "--json",
        str(signed),
    )
    report = json.loads(out)
    assert code == 0 and report["ok"], report["problems"]
    assert {s["revocation"]["status"] for s in report["signatures"]} == {"good"}
    # the same through the function the evidence verifier calls
    result = validate_at(
        cert.cert,
        cert.chain,
        received,
        trust=TrustStore.from_config(cfg.trust, cfg.trust_paths),
        crls=[kept],
    )
    assert result.ok and result.revocation.status == "good"


def test_crl_issued_after_expiry_proves_nothing(past_cfg, world, old_ca, now):
    """CAs drop expired certificates from their CRLs: silence after expiry is not "good"."""
    cert = unit_cert(world, ca=old_ca, not_before=now - 400 * DAY, not_after=now - DAY)
    later = pki.issue_crl(old_ca, [])
    result = validate_at(
        cert.cert,
        cert.chain,
        now - 100 * DAY,
        trust=TrustStore.from_config(past_cfg.trust, past_cfg.trust_paths),
        crls=[der(later)],
        revocation="hard-fail",
    )
    assert [p.code for p in result.problems] == ["SIG-REVOCATION-UNKNOWN"]


def test_cli_rejects_a_revocation_file_that_is_not_one(cfg, world, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(["bm90IGEgQ1JM"]))  # base64 of "not a CRL"
    signed = tmp_path / "signed.xml"
    signed.write_bytes(dossier(world.signer(world.unit)))
    code, out = run_cli(
        capsys, "--config", str(config_file(cfg, tmp_path)), "verify", "--revocation", str(bad), str(signed)
    )
    assert code == 2 and "bad.json" in out


def test_revocation_data_from_json_shapes():
    a, b, o = b64encode(b"A").decode(), b64encode(b"B").decode(), b64encode(b"O").decode()
    record = {"status": "good", "source": "crl", "crls": [a], "ocsp": [o], "checked_at": "x"}
    assert revocation_data_from_json(record) == ([b"A"], [b"O"])
    assert revocation_data_from_json([a, b, a]) == ([b"A", b"B"], [])
    assert revocation_data_from_json({"signers": [{"revocation": record}, {"revocation": None}]}) == (
        [b"A"],
        [b"O"],
    )
    assert revocation_data_from_json({"signatures": [{"revocation": {**record, "crls": [b]}}]}) == (
        [b"B"],
        [b"O"],
    )


# ---- OCSP responses kept with a dossier ------------------------------------------------------


def ocsp_response(world, cert: x509.Certificate, *, revoked_at: datetime | None = None,
                  next_update: datetime | None = None) -> bytes:
    now = datetime.now(UTC)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=cert,
            issuer=world.ca.cert,
            algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked_at else ocsp.OCSPCertStatus.GOOD,
            this_update=now - timedelta(minutes=5),
            next_update=next_update or now + DAY,
            revocation_time=revoked_at,
            revocation_reason=x509.ReasonFlags.key_compromise if revoked_at else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, world.ca.cert)
    )
    return builder.sign(world.ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_validate_at_with_kept_ocsp_responses(cfg, world, now):
    cert = unit_cert(world, ocsp_url="http://127.0.0.1:9/ocsp")
    trust = TrustStore.from_config(cfg.trust, cfg.trust_paths)
    good = validate_at(
        cert.cert,
        cert.chain,
        now,
        trust=trust,
        crls=[],
        ocsp=[ocsp_response(world, cert.cert)],
        revocation="hard-fail",
    )
    assert good.ok, good.problems
    assert (
        good.revocation.status == "good"
        and good.revocation.source == "ocsp"
        and len(good.revocation.ocsp) == 1
    )
    revoked = validate_at(
        cert.cert,
        cert.chain,
        now,
        trust=trust,
        crls=[],
        ocsp=[ocsp_response(world, cert.cert, revoked_at=now - DAY)],
    )
    assert [p.code for p in revoked.problems] == ["SIG-REVOKED"]
    assert revoked.revocation.status == "revoked" and revoked.revocation.source == "ocsp"


# ---- fetched from distribution points (served on 127.0.0.1) ---------------------------------


class _CrlServer:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        files, requests = self.files, self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                requests.append(self.path)
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def crl_server():
    server = _CrlServer()
    yield server
    server.close()


def test_fetching_caches_crls_and_refresh_replaces_them(cfg, world, now, crl_server):
    url = crl_server.url + "/issuing.crl"
    cert = unit_cert(world, crl_url=url)
    first = pki.issue_crl(world.ca, [], this_update=now - timedelta(hours=2))
    crl_server.files["/issuing.crl"] = der(first)
    data = dossier(world.signer(cert))

    cfg.trust.revocation = "hard-fail"
    assert codes(receive(cfg, data, now)) == {"SIG-REVOCATION-UNKNOWN"}  # fetching is off by default
    assert crl_server.requests == []

    cfg.trust.fetch_revocation = True
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    out = receiver.receive(data, now)
    assert out.accepted, out.problems
    assert out.signers[0]["revocation"]["status"] == "good"
    assert used(out) == [der(first)]
    cache = CrlCache(cfg.data_path / "revocation")
    [entry] = cache.entries()
    assert entry.url == url and entry.this_update == first.last_update_utc
    assert entry.next_update == first.next_update_utc and entry.path.read_bytes() == der(first)

    # the scheduled refresh picks up a newer CRL; the receiver (its cache included) sees it at once
    revoking = pki.issue_crl(world.ca, [(cert.cert.serial_number, now - timedelta(hours=1))])
    crl_server.files["/issuing.crl"] = der(revoking)
    [result] = refresh_crls(cfg.trust, cfg.trust_paths)
    assert result["ok"] and result["updated"] and result["url"] == url
    assert codes(receiver.receive(data, now)) == {"SIG-REVOKED"}

    # an older CRL replayed later does not roll the cache back
    crl_server.files["/issuing.crl"] = der(first)
    [result] = refresh_crls(cfg.trust, cfg.trust_paths)
    assert result["ok"] and not result["updated"]
    assert cache.entries()[0].path.read_bytes() == der(revoking)


def test_with_fetching_on_a_held_crl_is_not_read_again_for_each_new_signer(cfg, world, now, monkeypatch):
    # pyhanko lists the CRLs it was given among those it holds when it may fetch: reading them
    # again in every validation cost a licensed CA's CRL (megabytes) 0.2-0.3 s per new signer
    held = pki.issue_crl(world.ca, [(world.other_unit.cert.serial_number, now - DAY)])
    put_crl(cfg, "issuing.crl", held)
    cfg.trust.fetch_revocation = True
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    assert receiver.receive(dossier(world.signer(unit_cert(world))), now).accepted  # the CRL read once here
    loads = []
    real_load = HeldCRL.load
    monkeypatch.setattr(HeldCRL, "load", classmethod(lambda cls, data: loads.append(len(data)) or real_load(data)))
    for _ in range(2):  # new signers: each validated on its own, revocation checked on the held CRL
        out = receiver.receive(dossier(world.signer(unit_cert(world))), now)
        assert out.accepted, out.problems
        assert out.signers[0]["revocation"]["status"] == "good" and used(out) == [der(held)]
    assert loads == []
    # (a CRL fetched during a validation is still read and recorded: test_fetching_caches_crls_...)


async def test_refresh_does_nothing_unless_fetching_is_on(cfg, world, crl_server):
    CrlCache(cfg.data_path / "revocation").store(
        crl_server.url + "/x.crl", der(pki.issue_crl(world.ca, [])), [world.ca.cert]
    )
    assert await async_refresh_crls(cfg.trust, cfg.trust_paths) == []
    cfg.trust.fetch_revocation = True
    [result] = await async_refresh_crls(cfg.trust, cfg.trust_paths)
    assert not result["ok"] and crl_server.requests == ["/x.crl"]  # 404: reported, not raised


def test_cache_keeps_only_crls_signed_by_a_known_issuer(cfg, world):
    cache = CrlCache(cfg.data_path / "revocation")
    forger = pki.Issued(key=world.rogue_ca.key, cert=world.ca.cert)
    assert not cache.store("http://x/ca.crl", der(pki.issue_crl(forger, [])), [world.ca.cert])
    assert cache.entries() == []
    assert cache.store("http://x/ca.crl", der(pki.issue_crl(world.ca, [])), [world.root.cert, world.ca.cert])
    assert [e.issuer_cert for e in cache.entries()] == [world.ca.cert]


def test_config_file_documents_the_new_keys():
    from interchange.config import DEFAULT_CONFIG, load_config

    cfg = load_config(DEFAULT_CONFIG, environ={})
    assert cfg.trust.revocation == "soft-fail" and cfg.trust.fetch_revocation is False
    assert cfg.trust.ocsp is False and cfg.trust.crl_refresh_minutes == 60
    assert UNIT.mst  # the dossiers above are the demo unit's

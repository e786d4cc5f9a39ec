"""Whose notices an I-VAN believes: only the agency's pinned notice signer's. A notice signed by
a unit's certificate from the trusted CA (any unit can make one) is refused and kept as a
bad_notice try; the pinned agency's is accepted; the ivan role does not start unpinned."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from interchange.config import LimitsConfig, TrustConfig
from interchange.devkit import pki
from interchange.forwarding.notices import BadNotice, NoticeChecker
from interchange.kinds import NOTICE_RECEIPT
from interchange.notices.notice import NoticeData, NoticeSigner
from interchange.server import make_app
from tests.helpers import dossier, ivan_setup, upstream_receipt

S = timedelta(seconds=1)


def receipt_signed_by(issued: pki.Issued, body: bytes, tx: str = "up-0001") -> bytes:
    now = datetime.now(UTC)
    return NoticeSigner(issued.key, [issued.cert, *issued.chain]).sign(NoticeData(
        kind=NOTICE_RECEIPT, transaction_id=tx, received_at=now, issued_at=now, sha256=hashlib.sha256(body).digest(),
        so_ho_so="00001/2026/AGCY", due_at=now + timedelta(days=7),
    ))  # fmt: skip


async def test_a_unit_signed_notice_is_refused_the_pinned_agency_one_accepted(scripted, world):  # noqa: F811
    body = dossier(world.signer(world.unit), seed=501)
    tx = await scripted.submit(body)
    forged = receipt_signed_by(world.other_unit, body)  # a unit's certificate, from the trusted CA
    scripted.script.extend([(202, forged, {}), (202, upstream_receipt(world, body), {})])
    t0 = datetime.now(UTC) + S
    assert await scripted.run(t0) == ["forward:retry"]
    fw = await scripted.forwarding(tx)
    assert [a["outcome"] for a in fw["tries"]] == ["bad_notice"]
    assert "not the agency's pinned notice certificate" in fw["tries"][0]["error"]
    resp = await scripted.ivan.get(f"/api/v1/dossiers/{tx}/notices/bhxh-tiep-nhan", headers=scripted.keys["unit"])
    assert resp.status == 404  # the forged receipt was not kept
    assert await scripted.run(t0 + timedelta(seconds=180)) == ["forward:done"]
    fw = await scripted.forwarding(tx)
    assert [a["outcome"] for a in fw["tries"]] == ["bad_notice", "accepted"] and fw["state"] == "forwarded"


async def test_the_ivan_role_does_not_start_unpinned(cfg, world):
    ivan_setup(cfg, "http://127.0.0.1:9", "ik_000000000000_x")
    cfg.upstream.notice_cert = ""
    with pytest.raises(ValueError, match="notice signer pinned"):
        await make_app(cfg, workers=0)


def _checker(world, anchors, **kw) -> NoticeChecker:
    return NoticeChecker.from_config(TrustConfig(), LimitsConfig(), anchors=anchors, crls=anchors / "no-crl", **kw)


def test_a_certificate_with_the_pinned_key_is_believed_another_is_not(world, tmp_path):
    pinned = tmp_path / "agency.pem"
    pki.write_certs_pem(pinned, [world.server.cert])
    checker = _checker(world, world.anchors_dir, pinned_cert=pinned)
    body = b"<Hoso/>"
    sha = hashlib.sha256(body).digest()
    at = datetime.now(UTC)
    renewed = pki.issue_server_cert(world.ca, "Agency notices, renewed", key=world.server.key)  # same key
    for signer in (world.server, renewed):
        assert checker.check(receipt_signed_by(signer, body), sha256=sha, kinds=(NOTICE_RECEIPT,), at=at).kind
    other = pki.issue_server_cert(world.ca, "Interchange notice signer")  # same name, another key
    for signer in (other, world.unit):
        with pytest.raises(BadNotice, match="pinned notice certificate"):
            checker.check(receipt_signed_by(signer, body), sha256=sha, kinds=(NOTICE_RECEIPT,), at=at)


def test_dedicated_anchors_and_the_expected_subject(world, tmp_path):
    agency_ca = pki.create_ca("Agency Notice CA", key=pki.new_key())
    agency = pki.issue_server_cert(agency_ca, "BHXH notices")
    anchors = tmp_path / "agency-anchors"
    pki.write_certs_pem(anchors / "agency-ca.pem", [agency_ca.cert])
    body = b"<Hoso/>"
    sha = hashlib.sha256(body).digest()
    at = datetime.now(UTC)
    checker = _checker(world, anchors, subject=agency.cert.subject.rfc4514_string())
    assert checker.check(receipt_signed_by(agency, body), sha256=sha, kinds=(NOTICE_RECEIPT,), at=at).kind
    with pytest.raises(BadNotice, match="SIG-UNTRUSTED"):  # a unit's certificate does not chain there
        checker.check(receipt_signed_by(world.unit, body), sha256=sha, kinds=(NOTICE_RECEIPT,), at=at)
    impostor = pki.issue_server_cert(agency_ca, "Someone else")
    with pytest.raises(BadNotice, match="notice_subject"):
        checker.check(receipt_signed_by(impostor, body), sha256=sha, kinds=(NOTICE_RECEIPT,), at=at)

"""The notice key unreadable, of the wrong format, not matching its certificate, or with a
certificate out of its validity: the server refuses to start, saying which; a certificate that
expires while the server runs gives 503, never an unsigned notice or one signed with it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, Encoding, PrivateFormat
from sqlalchemy import func, select

from interchange import codes
from interchange.api.http import SERVICES
from interchange.devkit import pki
from interchange.notices.notice import NoticeData, NoticeKeyError, NoticeKeyUnavailable, NoticeSigner
from interchange.server import make_app, services_for
from interchange.store.tables import dossiers
from tests.helpers import UNIT, dossier


def _expired(world):
    return pki.issue_server_cert(world.ca, key=world.server.key, not_before=datetime.now(UTC) - timedelta(days=900))


def _future(world):
    return pki.issue_server_cert(world.ca, key=world.server.key, not_before=datetime.now(UTC) + timedelta(days=2))


CASES = {
    "key missing": (lambda cfg, world: cfg.signing_key_path.unlink(), "cannot read the notice key"),
    "key is a folder": (lambda cfg, world: (cfg.signing_key_path.unlink(), cfg.signing_key_path.mkdir()),
                        "cannot read the notice key"),
    "key not PEM": (lambda cfg, world: cfg.signing_key_path.write_bytes(b"not a key"), "is not a PEM private key"),
    "key encrypted": (lambda cfg, world: cfg.signing_key_path.write_bytes(world.server.key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"secret"))), "is encrypted"),
    "cert missing": (lambda cfg, world: cfg.signing_cert_path.unlink(), "cannot read the notice certificate"),
    "cert not PEM": (lambda cfg, world: cfg.signing_cert_path.write_bytes(b"junk"), "holds no PEM certificate"),
    "key and cert differ": (lambda cfg, world: pki.write_certs_pem(cfg.signing_cert_path, [world.unit.cert]),
                            "do not match"),
    "cert expired": (lambda cfg, world: pki.write_certs_pem(cfg.signing_cert_path, [_expired(world).cert]),
                     "expired at"),
    "cert not yet valid": (lambda cfg, world: pki.write_certs_pem(cfg.signing_cert_path, [_future(world).cert]),
                           "not valid before"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
async def test_refuses_to_start_with_a_notice_key_it_cannot_use(case, cfg, world, tmp_path):
    spoil, message = CASES[case]
    spoil(cfg, world)
    cfg.store.url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'interchange.db'}"
    with pytest.raises(NoticeKeyError, match=message) as raised:
        async with services_for(cfg, workers=0):
            pass
    assert isinstance(raised.value, ValueError)  # `interchange serve` prints it on one line, exit 2
    text = str(raised.value)
    assert text.startswith(("signing.key", "signing.cert")) and "\n" not in text


async def test_certificate_expiring_while_running_gives_503_never_a_notice(cfg, world, tmp_path, aiohttp_client):
    now = datetime.now(UTC)
    short = pki.issue_server_cert(world.ca, key=world.server.key, not_before=now - timedelta(days=825, seconds=-4))
    assert short.cert.not_valid_after_utc <= now + timedelta(seconds=4)
    pki.write_certs_pem(cfg.signing_cert_path, [short.cert, *short.chain])
    cfg.store.url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'interchange.db'}"
    cfg.jobs.interval_seconds = 0
    app = await make_app(cfg, workers=0)
    api = await aiohttp_client(app)
    store = app[SERVICES].store
    _, token = await store.keys.create("submitter", mst=UNIT.mst)
    headers = {"Content-Type": "application/xml", "Authorization": f"Bearer {token}"}
    assert (await api.post("/api/v1/dossiers", data=dossier(world.signer(world.unit), seed=1), headers=headers)).status == 202

    await asyncio.sleep(max(0.0, (short.cert.not_valid_after_utc - datetime.now(UTC)).total_seconds()) + 1.1)
    resp = await api.post("/api/v1/dossiers", data=dossier(world.signer(world.unit), seed=2), headers=headers)
    assert resp.status == 503 and int(resp.headers["Retry-After"]) >= 1
    assert resp.content_type == "application/problem+json"  # no notice: nothing may be signed
    assert (await resp.json())["code"] == codes.NOTICE_KEY_UNAVAILABLE
    resp = await api.post("/api/v1/dossiers", data=b"<x/>", headers={"Content-Type": "application/xml"})
    # no key: a 401 problem, which is never signed (so the key's state does not matter to it)
    assert resp.status == 401 and resp.content_type == "application/problem+json"
    async with store.db.reading() as conn:
        assert (await conn.execute(select(func.count()).select_from(dossiers))).scalar_one() == 1
    ready = await (await api.get("/readyz")).json()
    assert ready["status"] == "not ready" and ready["components"]["notice_key"].startswith("cannot sign")
    assert ready["failing"] == ["notice_key"]


def test_signer_refuses_outside_the_certificate_validity(world):
    signer = NoticeSigner(world.server.key, [world.server.cert, *world.server.chain])
    data = NoticeData(kind="TU_CHOI", transaction_id="t", received_at=datetime.now(UTC), issued_at=datetime.now(UTC))
    assert signer.sign(data)
    signer.clock = lambda: world.server.cert.not_valid_after_utc + timedelta(seconds=1)
    with pytest.raises(NoticeKeyUnavailable, match="expired"):
        signer.sign(data)
    signer.clock = lambda: world.server.cert.not_valid_before_utc - timedelta(seconds=1)
    with pytest.raises(NoticeKeyUnavailable, match="not valid before"):
        signer.sign(data)

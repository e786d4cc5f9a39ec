"""Revocation data kept once (`revocation_data`, migration 0009): a dossier's signers name the
CRLs and OCSP responses they rest on by SHA-256; the store keeps each once; the workers leave out
what the store holds; evidence bundles and `verify --revocation` still get the DER."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import zipfile
from base64 import b64encode
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from interchange.devkit import pki
from interchange.evidence.bundle import build_bundle, verify_bundle
from interchange.intake.pipeline import Caller
from interchange.notices.notice import NoticeSigner
from interchange.store.revdata import RevocationDataMissing
from interchange.store.tables import dossiers, revocation_data
from interchange.store.types import RECEIVED, NewDossier, Scope
from interchange.workers import ReceiptWorkers, WorkerSettings
from tests.helpers import UNIT, XML, dossier

DAY = timedelta(days=1)


def crl_of(world, entries: int = 2000) -> bytes:
    """A CRL of the test CA listing `entries` other serials (none of the unit's)."""
    crl = pki.issue_crl(world.ca, [(10**20 + n, datetime.now(UTC) - DAY) for n in range(entries)])
    return crl.public_bytes(serialization.Encoding.DER)


def put_crl(cfg, der: bytes) -> None:
    folder = Path(cfg.trust.crl_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "issuing.crl").write_bytes(der)


async def count(store, table) -> int:
    async with store.db.reading() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


async def post(api, body: bytes) -> str:
    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys["unit"]})
    assert resp.status == 202, await resp.text()
    return resp.headers["Location"].rstrip("/").rsplit("/", 1)[-1]


@pytest.fixture
def with_crl(cfg, world) -> bytes:
    der = crl_of(world)
    put_crl(cfg, der)
    return der


async def test_a_crl_is_stored_once_and_named_by_every_dossier(with_crl, api, world):
    name = hashlib.sha256(with_crl).hexdigest()
    ids = [await post(api, dossier(world.signer(world.unit), rows=n + 1)) for n in range(3)]
    assert await count(api.store, revocation_data) == 1
    async with api.store.db.reading() as conn:
        stored = (await conn.execute(select(revocation_data))).one()
        signers = [r[0] for r in await conn.execute(select(dossiers.c.signers).where(dossiers.c.id.in_(ids)))]
    assert (stored.sha256, stored.kind, stored.der) == (name, "crl", with_crl)
    for kept in signers:
        assert [s["revocation"]["crl_sha256"] for s in kept] == [[name], [name]]
        assert len(json.dumps(kept)) < len(with_crl) // 4  # named, not copied
    assert name in api.store.receipts.stored_names.recent()
    # the API's dossier view counts them as before
    view = await (await api.get(f"/api/v1/dossiers/{ids[0]}", headers=api.keys["unit"])).json()
    assert [s["revocation"]["crls"] for s in view["signers"]] == [1, 1]


async def test_the_evidence_bundle_holds_the_crl_and_verifies_offline(with_crl, api, world, root_cert):
    tx = await post(api, dossier(world.signer(world.unit)))
    resp = await api.get(f"/api/v1/dossiers/{tx}/evidence", headers=api.keys["auditor"])
    assert resp.status == 200
    data = await resp.read()
    files = {n: zipfile.ZipFile(io.BytesIO(data)).read(n) for n in zipfile.ZipFile(io.BytesIO(data)).namelist()}
    assert files["revocation/1-crl-1.crl"] == files["revocation/2-crl-1.crl"] == with_crl
    assert "missing" not in json.loads(files["revocation/1.json"])
    report = await asyncio.to_thread(verify_bundle, data, [root_cert])
    assert report.ok, report.as_dict()


@pytest.fixture
def root_cert(world):
    return world.root.cert


async def test_the_workers_leave_out_what_the_store_holds(with_crl, cfg, world, now):
    workers = ReceiptWorkers(WorkerSettings(cfg.trust, cfg.trust_paths, cfg.limits, cfg.signing_key_path,
                                            cfg.signing_cert_path), 0)
    try:
        await workers.start()
        body, caller = dossier(world.signer(world.unit)), Caller("submitter", mst=UNIT.mst)
        name = hashlib.sha256(with_crl).hexdigest()
        full = await workers.receive(body, now, caller)
        assert full.accepted and full.revocation_data == {name: ("crl", with_crl)}
        lean = await workers.receive(body, now, caller, stored_data=frozenset({name, "0" * 64}))
        assert lean.accepted and lean.revocation_data == {}
        assert lean.signers == full.signers
    finally:
        workers.close()


def new_dossier(signers: list[dict], data: dict, n: int = 1) -> NewDossier:
    now = datetime.now(UTC)
    return NewDossier(
        id=f"{n:032d}", state=RECEIVED, owner=f"mst:{UNIT.mst}", submitter_key_id="k", original=b"<Hoso/>",
        sha256=hashlib.sha256(str(n).encode()).digest(), received_at=now, office_code="TEST", unit_mst=UNIT.mst,
        signers=signers, revocation_data=data, layers={},
    )  # fmt: skip


def named(*names: str) -> list[dict]:
    return [{"document": "Hoso", "revocation": {"status": "good", "source": "crl", "crl_sha256": list(names),
                                                "ocsp_sha256": [], "checked_at": "2026-12-03T00:00:00+00:00"}}]


async def notice(dossier) -> bytes:
    return b"<ThongBao/>"


async def test_a_name_neither_brought_nor_held_is_never_stored(store):
    with pytest.raises(RevocationDataMissing):
        await store.receipts.save(new_dossier(named("ab" * 32), {}), notice)
    assert await count(store, dossiers) == 0
    # brought once, it is held: a later dossier may name it alone
    der = b"0\x03\x02\x01\x00"
    name = hashlib.sha256(der).hexdigest()
    await store.receipts.save(new_dossier(named(name), {name: ("crl", der)}, 2), notice)
    await store.receipts.save(new_dossier(named(name), {}, 3), notice)
    assert await count(store, dossiers) == 2 and await count(store, revocation_data) == 1


async def test_a_dossier_kept_with_inline_crls_still_gives_its_bundle(store, world, with_crl):
    """Dossiers stored before migration 0009 hold their CRLs in base64 in their signers."""
    inline = [{"document": "Hoso", "revocation": {"status": "good", "source": "crl",
                                                  "crls": [b64encode(with_crl).decode()], "ocsp": []}}]
    new = new_dossier(inline, {})
    await store.receipts.save(new, notice)
    parts = await store.dossiers.evidence_parts(new.id, Scope(all=True))
    assert parts.revocation == {}
    signer = NoticeSigner(world.server.key, [world.server.cert, *world.server.chain])
    data = await build_bundle(parts.dossier, parts.original, parts.notices, parts.audit, signer)
    assert zipfile.ZipFile(io.BytesIO(data)).read("revocation/1-crl-1.crl") == with_crl

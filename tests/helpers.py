"""What more than one test module uses: the test units, the `World` of certificates, signed
dossiers, the HTTP helpers, a dossier for the store, records of persons, registration dossiers.

Test modules import from here (and tests/clitools.py), never from each other or from conftest.py
(tests/test_architecture_tests.py checks it); conftest.py imports from here too.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import asyncpg
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree
from sqlalchemy.engine import make_url

from interchange.api.http import SERVICES
from interchange.config import Config
from interchange.devkit import pki, samples
from interchange.kinds import NOTICE_RECEIPT
from interchange.legal.params import default_parameters
from interchange.months import Month
from interchange.notices.notice import NS, NoticeData, NoticeSigner
from interchange.receiving.receipt import work_for
from interchange.records.model import PA_DIRECTIONS, ContributionChange, Extracted, PersonRef
from interchange.server import WORK, make_app
from interchange.spool import Spooled
from interchange.store import ACCEPTED, RECEIVED, Dossier, NewDossier, Scope, Store
from interchange.store.types import Settlement
from interchange.trust.dossier_signing import sign_envelope
from interchange.trust.xmldsig import DocumentSigner

# --- units, certificates and signed dossiers ---------------------------------------------------

UNIT = samples.Unit()  # the demo unit
OTHER_UNIT = samples.Unit(mst=samples.make_mst("030123456"), code="YZB123K", name="Công ty CP Khác")
MST_A = "0101234565"  # the demo unit's MST (UNIT.mst, `interchange dev-setup`'s default)
MST_B = "0309876547"

ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
FORM_PATH = "NoiDung/ThongTinHoSo/ToKhais/FileToKhai"  # an embedded form in an envelope


@dataclass
class World:
    """Every certificate a test may need, made once per session (RSA key generation is slow)."""

    root: pki.Issued
    ca: pki.Issued  # intermediate that issues units
    rogue_ca: pki.Issued  # not trusted
    unit: pki.Issued
    other_unit: pki.Issued
    server: pki.Issued
    anchors_dir: Path

    def signer(self, issued: pki.Issued) -> DocumentSigner:
        return DocumentSigner(issued.key, [issued.cert, *issued.chain])


def in_file(data: bytes, folder: Path) -> Spooled:
    """`data` as a large input is held: in a file of `folder` (named by its digest), as a `Spooled`."""
    path = folder / f"input-{hashlib.sha256(data).hexdigest()[:12]}"
    path.write_bytes(data)
    return Spooled(str(path), len(data))


def dossier(
    signer: DocumentSigner | None,
    *,
    unit: samples.Unit = UNIT,
    rows: int = 3,
    seed: int = 0,
    forms: list[tuple[str, str, bytes]] | None = None,
    ivan: tuple[str, str] | None = ("00123", "Công ty I-VAN Mẫu"),
    procedure: str = "600",
) -> bytes:
    """An envelope with a D02-TS (or the given forms), signed forms-first then envelope."""
    forms = forms if forms is not None else [("D02-TS", "D02-TS.xml", samples.d02ts(rows, seed=seed, unit=unit))]
    data = samples.envelope(unit, forms, procedure=procedure, ivan=ivan)
    return data if signer is None else sign_envelope(data, signer)


CONTACT = {
    "Email": "ketoan@mauviet.vn",
    "DiaChi": "Số 1 Láng Hạ, Phường Láng, Hà Nội",
    "NguoiLienHe": "Nguyễn Văn An",
    "PTNhanKetQua": "1",
}


def registration(signer, procedure: str = "04/DK-IVAN", *, unit: samples.Unit = UNIT, contact=None,
                 ivan=("00123", "Công ty I-VAN Mẫu")) -> bytes:
    """A signed registration dossier: contact data in NoiDung, no forms."""
    data = samples.envelope(unit, [], procedure=procedure, period="", ivan=ivan,
                            registration=CONTACT if contact is None else contact)
    return sign_envelope(data, signer)  # fmt: skip


# --- outcomes and notices -----------------------------------------------------------------------


def codes(outcome) -> list[str]:
    """The codes of a pipeline outcome's problems, in order."""
    return [p.code for p in outcome.problems]


def code_set(judged) -> set[str]:
    """The codes of an outcome's (or a judgement's) problems, as a set."""
    return {p.code for p in judged.problems}


def notice_of(body: bytes):
    root = etree.fromstring(body)
    assert root.tag == f"{{{NS}}}ThongBao"
    return root


def t(root, name):
    return root.findtext(f"{{{NS}}}{name}")


def error_codes(root) -> list[str]:
    return [e.text for e in root.iterfind(f".//{{{NS}}}Loi/{{{NS}}}Ma")]


# --- HTTP ---------------------------------------------------------------------------------------

XML = {"Content-Type": "application/xml"}


async def post(api, body, key="unit", **headers):
    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys[key], **headers})
    return resp.status, await resp.read(), resp


async def start_api(cfg: Config, aiohttp_client):
    """As conftest.py's `api` fixture, on SQLite only (cfg's default store), for tests that set cfg first."""
    app = await make_app(cfg, workers=0)
    client = await aiohttp_client(app)
    store = app[SERVICES].store
    client.keys = {}
    for name, role, kw in (("unit", "submitter", {"mst": UNIT.mst}), ("auditor", "auditor", {})):
        _, token = await store.keys.create(role, **kw)
        client.keys[name] = {"Authorization": f"Bearer {token}"}
    return client


async def listed(api, state: str) -> list:
    resp = await api.get(f"/api/v1/dossiers?state={state}", headers=api.keys["auditor"])
    assert resp.status == 200
    return (await resp.json())["items"]


# --- the store ----------------------------------------------------------------------------------

VN = timezone(timedelta(hours=7))
STORE_T0 = datetime(2026, 3, 2, 9, 30, tzinfo=VN)  # when new_dossier's dossiers are received
ALL = Scope(all=True)


def new_dossier(data: bytes = b"\xef\xbb\xbf<Hoso/>", **overrides) -> NewDossier:
    fields = {
        "id": uuid.uuid4().hex,
        "state": RECEIVED,
        "owner": f"mst:{MST_A}",
        "submitter_key_id": "a1b2c3d4e5f6",
        "original": data,
        "sha256": hashlib.sha256(data).digest(),
        "received_at": STORE_T0,
        "office_code": "X",
        "unit_mst": MST_A,
        "unit_code": "YN0001A",
        "unit_name": "Công ty TNHH Mẫu",
        "procedure": "600",
        "period": "03/2026",
    }
    fields.update(overrides)
    return NewDossier(**fields)


def notice_bytes(dossier: Dossier) -> bytes:
    return f"<ThongBao id='{dossier.id}' so='{dossier.so_ho_so}' state='{dossier.state}'/>".encode()


async def notice_for(dossier: Dossier) -> bytes:
    """The store awaits make_notice (the server signs notices in its worker processes)."""
    await asyncio.sleep(0)
    return notice_bytes(dossier)


# --- persons and records ------------------------------------------------------------------------


def ref(pid: str | None = None, si: str | None = None, name: str = "Nguyễn Văn An", **kw) -> PersonRef:
    return PersonRef(personal_id=pid, si_code=si, name=name, **kw)


def change(stt: int, person: PersonRef, pa: str = "TM", from_month: str = "2026-01", **kw) -> ContributionChange:
    """A D02-TS row; months written "YYYY-MM"."""
    values = {"to_month": None, "position": "Kế toán", "workplace": "Hà Nội", "salary": Decimal(10_000_000),
              "rate": Decimal(32), "region": "01", **kw}  # fmt: skip
    if values["to_month"] is not None:
        values["to_month"] = Month.parse_iso(values["to_month"])
    return ContributionChange(
        xpath=f"/D02-TS/NoiDung/LaoDong[{stt}]", stt=stt, person=person, pa=pa, direction=PA_DIRECTIONS[pa],
        from_month=Month.parse_iso(from_month), **values,
    )  # fmt: skip


JOBS_T0 = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)  # Monday 09:30 in Vietnam


JOBS_CONTACT = {"Email": "ketoan@mauviet.vn", "DiaChi": "Số 1 Láng Hạ, Hà Nội", "NguoiLienHe": "Nguyễn Văn An"}


def received(*, procedure: str = "04/DK-IVAN", state: str = RECEIVED, due_at: datetime | None = None,
             work: list[str] | None = None, contact: dict | None = None, at: datetime = JOBS_T0) -> NewDossier:
    data = f"<Hoso id='{uuid.uuid4().hex}'/>".encode()
    return NewDossier(
        id=uuid.uuid4().hex, state=state, owner=f"mst:{UNIT.mst}", submitter_key_id="k", original=data,
        sha256=hashlib.sha256(data).digest(), received_at=at, office_code="X", unit_mst=UNIT.mst,
        unit_code=UNIT.code, unit_name=UNIT.name, procedure=procedure, period=None,
        due_at=due_at if due_at is not None else at + timedelta(hours=2),
        layers={"envelope": "passed", "signature": "passed", "schema": "passed"},
        facts={"contact": JOBS_CONTACT if contact is None else contact},
        work=work_for(procedure) if work is None else work,
    )  # fmt: skip


async def receipt(_dossier) -> bytes:
    return b"<ThongBao/>"


async def save(store: Store, **kw) -> str:
    return (await store.receipts.save(received(**kw), receipt)).dossier.id


async def dossiers_with_work(store: Store, due: list[timedelta], kind: str = "test") -> list[str]:
    """One received dossier per entry, each with a `kind` item due at JOBS_T0 + entry."""
    ids = []
    for offset in due:
        dossier_id = await save(store, procedure="600", work=[])
        assert await store.work.enqueue(dossier_id, kind, JOBS_T0 + offset, now=JOBS_T0 - timedelta(hours=3))
        ids.append(dossier_id)
    return ids


def agency_config(world: World, base: Path) -> Config:
    """A second server's config (as the `cfg` fixture makes one), in role agency, on SQLite."""
    cfg = Config()
    cfg.base_dir = base
    cfg.data_dir = str(base / "data")
    shutil.copytree(world.anchors_dir, base / "trusted")
    cfg.trust.anchors_dir = str(base / "trusted")
    cfg.trust.crl_dir = str(base / "crl")
    cfg.server.workers = 0
    cfg.server.office_code = "AGCY"
    cfg.targets = {"600": "5 working days", "04/DK-IVAN": "2 working hours"}
    cfg.jobs.interval_seconds = 0
    cfg.store.url = f"sqlite+aiosqlite:///{base / 'data' / 'agency.db'}"
    pki.write_key_pem(cfg.signing_key_path, world.server.key)
    pki.write_certs_pem(cfg.signing_cert_path, [world.server.cert, *world.server.chain])
    return cfg


class Served:
    """An app on a real loopback port that can be stopped and started again on the same port."""

    def __init__(self, app: web.Application):
        self.runner = web.AppRunner(app)
        self.port = 0
        self.site: web.TCPSite | None = None

    async def start(self) -> None:
        if self.runner.server is None:
            await self.runner.setup()
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await self.site.start()
        self.port = self.runner.addresses[-1][1]

    async def stop(self) -> None:
        assert self.site is not None
        await self.site.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Pair:
    ivan: object  # aiohttp test client of the I-VAN
    agency: Served
    agency_app: web.Application
    lose_answers: list[int]  # answers of the agency to POSTs to drop (the request is handled, the answer lost)
    keys: dict[str, dict[str, str]]

    @property
    def ivan_app(self) -> web.Application:
        return self.ivan.app

    @property
    def agency_store(self):
        return self.agency_app[SERVICES].store

    async def submit(self, body: bytes, key: str = "unit") -> str:
        resp = await self.ivan.post("/api/v1/dossiers", data=body, headers={**XML, **self.keys[key]})
        notice = await resp.read()
        assert resp.status == 202, notice
        return t(notice_of(notice), "MaGiaoDich")

    async def run(self, now: datetime) -> list[str]:
        return [f"{r.item.kind}:{r.outcome}" for r in await self.ivan_app[WORK].run_due(now=now)]

    async def forwarding(self, tx: str, key: str = "unit") -> dict:
        resp = await self.ivan.get(f"/api/v1/dossiers/{tx}/forwarding", headers=self.keys[key])
        assert resp.status == 200, await resp.text()
        return await resp.json()


def ivan_setup(cfg: Config, url: str, token: str) -> None:
    cfg.server.role = "ivan"
    cfg.jobs.interval_seconds = 0
    up = cfg.upstream
    up.url, up.api_key = url, token
    up.target_minutes, up.timeout_seconds = 15, 10
    up.first_retry_seconds, up.max_retry_seconds = 180, 3600
    up.breaker_failures, up.breaker_cooldown_seconds = 3, 600
    up.notice_cert = str(cfg.signing_cert_path)  # the agency of these tests signs with the same test certificate


async def ivan_client(cfg: Config, aiohttp_client) -> tuple[object, dict]:
    app = await make_app(cfg, workers=0)
    client = await aiohttp_client(app)
    store = app[SERVICES].store
    keys = {}
    for name, mst in (("unit", UNIT.mst), ("other", OTHER_UNIT.mst)):
        _, token = await store.keys.create("submitter", mst=mst)
        keys[name] = {"Authorization": f"Bearer {token}"}
    return client, keys


def upstream_receipt(world: World, body: bytes, tx: str = "up-0001") -> bytes:
    now = datetime.now(UTC)
    return NoticeSigner(world.server.key, [world.server.cert, *world.server.chain]).sign(NoticeData(
        kind=NOTICE_RECEIPT, transaction_id=tx, received_at=now, issued_at=now, sha256=hashlib.sha256(body).digest(),
        so_ho_so="00001/2026/AGCY", due_at=now + timedelta(days=7),
    ))  # fmt: skip


def signature_value(signature: etree._Element, issued: pki.Issued | None, method: str) -> bytes:
    """Over SignedInfo canonicalised as the verifier does it: a re-serialised copy in its context.
    HMAC uses the key b"any key"."""
    signed_info = c14n(etree.fromstring(etree.tostring(etree.fromstring(etree.tostring(signature))[0])))
    hash_cls = SIGNATURE_METHODS[method][1]
    if hash_cls is None:
        return hmac.new(b"any key", signed_info, "sha256").digest()
    return issued.key.sign(signed_info, padding.PKCS1v15(), hash_cls())


SIGNATURE_METHODS = {
    "rsa-sha256": ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", hashes.SHA256),
    "rsa-sha1": ("http://www.w3.org/2000/09/xmldsig#rsa-sha1", hashes.SHA1),
    "hmac-sha256": ("http://www.w3.org/2001/04/xmldsig-more#hmac-sha256", None),
}


def c14n(node) -> bytes:
    return etree.tostring(node, method="c14n", exclusive=False, with_comments=False)


PG_URL = os.environ.get("INTERCHANGE_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def on_private_loop(coro):
    # Not asyncio.run: that would reset the event loop pytest-asyncio runs the tests in.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def pg_execute(*statements: str) -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


PG_DSN = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)  # for asyncpg


XMLSEC1_TIMEOUT = 30


def run_xmlsec1(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(["xmlsec1", *map(str, args)], capture_output=True, text=True, timeout=XMLSEC1_TIMEOUT)


@dataclass
class Pems:
    """PEM files for xmlsec1, in a test's tmp_path."""

    dir: Path
    root: Path  # the trust anchor (world.root)
    ca: Path  # the issuing CA (world.ca), an intermediate

    def signer(self, name: str, issued: pki.Issued) -> tuple[Path, Path]:
        key = self.dir / f"{name}-key.pem"
        cert = self.dir / f"{name}-cert.pem"
        key.write_bytes(pki.key_pem(issued.key))
        cert.write_bytes(pki.certs_pem([issued.cert]))
        return key, cert

    def sign(self, doc: bytes, issued: pki.Issued, name: str) -> bytes:
        """xmlsec1 --sign of a document holding a template, with leaf + intermediate in X509Data."""
        key, cert = self.signer(name, issued)
        src, out = self.dir / f"{name}.tmpl.xml", self.dir / f"{name}.signed.xml"
        src.write_bytes(doc)
        res = run_xmlsec1("--sign", "--privkey-pem", f"{key},{cert},{self.ca}", "--output", out, src)
        assert res.returncode == 0, res.stderr
        return out.read_bytes()

    def verify(self, doc: bytes, name: str) -> subprocess.CompletedProcess:
        path = self.dir / f"{name}.verify.xml"
        path.write_bytes(doc)
        return run_xmlsec1(
            "--verify", "--enabled-reference-uris", "empty",
            "--trusted-pem", self.root, "--untrusted-pem", self.ca, path,
        )  # fmt: skip


async def settle(store, unit, at: datetime, extracted: Extracted, *, ivan: str | None = None) -> str:
    data = f"<Hoso id='{uuid.uuid4().hex}'/>".encode()
    new = NewDossier(
        id=uuid.uuid4().hex, state=RECEIVED, owner=f"ivan:{ivan}" if ivan else f"mst:{unit.mst}",
        submitter_key_id="k", original=data, sha256=hashlib.sha256(data).digest(), received_at=at,
        office_code="TEST", unit_mst=unit.mst, unit_code=unit.code, unit_name=unit.name, ivan_code=ivan,
        procedure="600", period=at.strftime("%m/%Y"), due_at=at,
    )  # fmt: skip

    async def receipt(_dossier) -> bytes:
        return b"<ThongBao/>"

    dossier_id = (await store.receipts.save(new, receipt)).dossier.id

    async def decide(_dossier, _unit) -> Settlement:
        return Settlement(state=ACCEPTED, notice=b"<ThongBao/>", problems=[], records=extracted,
                          params=default_parameters().stamp)  # fmt: skip

    assert await store.results.settle(dossier_id, decide, now=at) is not None
    return dossier_id


P_PID, P_SI = "001090123456", "0112345678"  # male, born 1990, Hà Nội (001)


def p_row(**kw) -> dict[str, str]:
    return {"HoTen": "Nguyễn Văn Phúc", "NgaySinh": "15/03/1990", "GioiTinh": "1", "ChucVu": "Kỹ sư phần mềm",
            "NoiLamViec": UNIT.name, "TyleDong": "32.0", "TinhLai": "0", "DaCoSo": "1", "MavungLTT": "01", **kw}


def signed(world, unit: samples.Unit, period: str, rows: list[dict[str, str]]) -> bytes:
    issued = world.unit if unit is UNIT else world.other_unit
    form = samples.d02ts_of(rows)
    envelope = samples.envelope(unit, [("D02-TS", "D02-TS.xml", form)], procedure="600", period=period, ivan=None)
    return sign_envelope(envelope, world.signer(issued))


async def run_work(api) -> list[str]:
    ran = await api.app[WORK].run_due(now=datetime.now(UTC) + timedelta(seconds=1))
    return [f"{r.item.kind}:{r.outcome}" for r in ran if not r.item.kind.startswith("deliver")]

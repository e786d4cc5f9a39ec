"""What more than one test module uses: the test units, the `World` of certificates, signed
dossiers, the HTTP helpers, a dossier for the store, records of persons, registration dossiers.

Test modules import from here (and tests/clitools.py), never from each other or from conftest.py
(tests/test_architecture_tests.py checks it); conftest.py imports from here too.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from lxml import etree

from interchange.api.http import SERVICES
from interchange.config import Config
from interchange.devkit import pki, samples
from interchange.months import Month
from interchange.notices.notice import NS
from interchange.records.model import PA_DIRECTIONS, ContributionChange, PersonRef
from interchange.server import make_app
from interchange.store import RECEIVED, Dossier, NewDossier, Scope
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

"""Interoperability with xmlsec1, an independent XML-DSig implementation (libxmlsec1 + OpenSSL).

Dossiers whose forms and envelope xmlsec1 signed (from templates in the profile of SPEC §3)
must be received; what we sign (dossiers, notices) must verify with `xmlsec1 --verify`.

The xmlsec1 command lines used here:

    xmlsec1 --sign --privkey-pem key.pem,cert.pem,ca.pem --output out.xml in.xml
        (the certificate files after the key fill X509Data: leaf, then the issuing CA)
    xmlsec1 --verify --enabled-reference-uris empty --trusted-pem root.pem --untrusted-pem ca.pem doc.xml
"""

from __future__ import annotations

import shutil
from base64 import b64decode
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from interchange.api.http import SERVICES
from interchange.devkit import pki, samples
from interchange.intake.pipeline import Caller, Receiver
from interchange.notices.notice import NS
from interchange.server import make_app
from interchange.trust.dossier_signing import LARGE, sign_envelope
from interchange.trust.xmldsig import DSIG_NS
from tests.helpers import ENVELOPED, OTHER_UNIT, UNIT, Pems, World, codes

pytestmark = [
    pytest.mark.xmlsec1,
    pytest.mark.skipif(
        shutil.which("xmlsec1") is None,
        reason="xmlsec1 (Debian package xmlsec1) is not installed: interop tests skipped",
    ),
]

C14N_10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"


# Vietnamese local time without a zone, as real files write it; inside the test certificates' life.
SIGNING_TIME = (datetime.now(UTC) + timedelta(hours=7)).strftime("%Y-%m-%dT%H:%M:%S")


def template(
    *, prefix: str = "", sig_id: str = "1sig", method: str = RSA_SHA256, digest: str = SHA256
) -> str:
    """An xmlsec1 signature template in the profile of real files (SPEC §3): enveloped,
    URI="", inclusive C14N 1.0, KeyValue + X509Data, an unsigned Object with SigningTime in
    no namespace, and an Id starting with a digit. `prefix` "ds" gives `ds:` elements."""
    p = f"{prefix}:" if prefix else ""
    xmlns = f'xmlns{":" + prefix if prefix else ""}="{DSIG_NS}"'
    return (
        f'<{p}Signature {xmlns} Id="{sig_id}">'
        f"<{p}SignedInfo>"
        f'<{p}CanonicalizationMethod Algorithm="{C14N_10}"/>'
        f'<{p}SignatureMethod Algorithm="{method}"/>'
        f'<{p}Reference URI="">'
        f"<{p}Transforms>"
        f'<{p}Transform Algorithm="{ENVELOPED}"/>'
        f'<{p}Transform Algorithm="{C14N_10}"/>'
        f"</{p}Transforms>"
        f'<{p}DigestMethod Algorithm="{digest}"/>'
        f"<{p}DigestValue/>"
        f"</{p}Reference>"
        f"</{p}SignedInfo>"
        f"<{p}SignatureValue/>"
        f"<{p}KeyInfo><{p}KeyValue/><{p}X509Data><{p}X509Certificate/></{p}X509Data></{p}KeyInfo>"
        f'<{p}Object Id="{sig_id}-time"><{p}SignatureProperties>'
        f'<{p}SignatureProperty Target="#{sig_id}">'
        f'<SigningTime xmlns="">{SIGNING_TIME}</SigningTime>'
        f"</{p}SignatureProperty></{p}SignatureProperties></{p}Object>"
        f"</{p}Signature>"
    )


def with_template(doc: bytes, holder: str, tmpl: str) -> bytes:
    """Put `tmpl` into the document's empty `<holder />` (the samples end with one)."""
    empty = f"<{holder} />".encode()
    assert doc.count(empty) == 1, f"no single empty <{holder} /> in the document"
    return doc.replace(empty, f"<{holder}>{tmpl}</{holder}>".encode())



@pytest.fixture
def pems(world: World, tmp_path: Path) -> Pems:
    d = tmp_path / "xmlsec1"
    d.mkdir()
    root, ca = d / "root.pem", d / "ca.pem"
    root.write_bytes(pki.certs_pem([world.root.cert]))
    ca.write_bytes(pki.certs_pem([world.ca.cert]))
    return Pems(d, root, ca)


def xmlsec1_dossier(
    pems: Pems,
    issued: pki.Issued,
    *,
    unit: samples.Unit = UNIT,
    seed: int = 0,
    envelope_method: str = RSA_SHA256,
    envelope_digest: str = SHA256,
    prefix: str = "ds",
) -> tuple[bytes, dict[str, bytes]]:
    """A D02-TS and a TK1-TS, each signed by xmlsec1 in its `Cky`, in an envelope signed by
    xmlsec1 in `CKy_Dvi`. Returns the envelope and the signed forms. `prefix` "" writes the
    signatures in the default namespace, as .NET's SignedXml does (see DEFAULT_NS_BUG)."""
    forms = {
        "D02-TS": samples.d02ts(3, seed=seed, unit=unit),
        "TK1-TS": samples.tk1ts(2, seed=seed),
    }
    signed = {}
    for code, form in forms.items():
        assert form.startswith(samples.BOM.encode()) and samples.XMLNS.encode() in form
        signed[code] = pems.sign(with_template(form, "Cky", template(prefix=prefix)), issued, code)
    env = samples.envelope(unit, [(code, f"{code}.xml", data) for code, data in signed.items()])
    tmpl = template(prefix=prefix, sig_id="2env", method=envelope_method, digest=envelope_digest)
    return pems.sign(with_template(env, "CKy_Dvi", tmpl), issued, "Hoso"), signed


def form_in(envelope: bytes, index: int = 0) -> bytes:
    files = etree.fromstring(envelope, etree.XMLParser(huge_tree=True)).findall("NoiDung/ThongTinHoSo/ToKhais/FileToKhai/NoiDungFile")
    return b64decode("".join(files[index].text.split()))


# --- 1. dossiers signed by xmlsec1 are received -----------------------------------------------


# Both spellings real files use: `ds:`-prefixed, and the default namespace
# (`<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">`, as .NET's SignedXml writes it),
# whose SignedInfo libxml2's subtree C14N used to mis-canonicalise (xmlns="" on grandchildren).
@pytest.mark.parametrize("prefix", ["ds", pytest.param("", id="default-ns")])
def test_dossier_signed_by_xmlsec1_is_received(cfg, world, pems, now, prefix):
    data, forms = xmlsec1_dossier(pems, world.unit, prefix=prefix)
    for doc in (data, *forms.values()):
        sig = b"".join(doc.partition(b"Signature")[1:])
        assert sig.count(b"X509Certificate>") == 4  # leaf + intermediate, each opened and closed
        assert b"RSAKeyValue>" in sig and b"SigningTime" in sig
    # whatever xmlsec1 did with the BOM is what is received (it writes no BOM: that must pass too)
    assert form_in(data) == forms["D02-TS"]
    for name, doc in {"Hoso": data, **forms}.items():  # xmlsec1 agrees with itself
        res = pems.verify(doc, name)
        assert res.returncode == 0, f"{name}: {res.stderr}"

    out = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits).receive(data, now, Caller("submitter", mst=UNIT.mst))
    assert out.accepted, out.problems
    assert out.layers == {"envelope": "passed", "signature": "passed", "schema": "passed"}
    assert [s["document"] for s in out.signers] == ["Hoso", "D02-TS.xml", "TK1-TS.xml"]
    for s in out.signers:
        assert s["valid"] and s["mst"] == UNIT.mst, s
        assert s["signature_method"] == RSA_SHA256
        assert s["signing_time"] == SIGNING_TIME
        assert [c["common_name"] for c in s["chain"]][-2:] == ["Test Issuing CA", "Test Root CA"]
    assert [f["code"] for f in out.forms] == ["D02-TS", "TK1-TS"]


def test_dossier_signed_by_xmlsec1_with_bom_kept(cfg, world, pems, now):
    """Real files start with a BOM: the same xmlsec1-signed bytes with a BOM put back."""
    data, _ = xmlsec1_dossier(pems, world.unit, seed=1)
    assert not data.startswith(samples.BOM.encode())
    out = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits).receive(
        samples.BOM.encode() + data, now, Caller("submitter", mst=UNIT.mst)
    )
    assert out.accepted, out.problems


# --- 2. tampering after xmlsec1 signing ----------------------------------------------------------


def test_tampered_form_signed_by_xmlsec1_is_refused(cfg, world, pems, now):
    _, forms = xmlsec1_dossier(pems, world.unit, seed=2)
    tampered = forms["D02-TS"].replace(b"<TienLuong>", b"<TienLuong>1", 1)
    assert tampered != forms["D02-TS"]
    files = [("D02-TS", "D02-TS.xml", tampered), ("TK1-TS", "TK1-TS.xml", forms["TK1-TS"])]
    env = with_template(samples.envelope(UNIT, files), "CKy_Dvi", template(prefix="ds", sig_id="2env"))
    data = pems.sign(env, world.unit, "Hoso-resigned")  # the unit re-signs only the envelope

    out = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits).receive(data, now, Caller("submitter", mst=UNIT.mst))
    assert not out.accepted
    assert codes(out) == ["SIG-DIGEST"] and out.problems[0].form == "D02-TS"
    assert out.layers == {"envelope": "passed", "signature": "failed", "schema": "not_run"}
    assert [s["valid"] for s in out.signers] == [True, False, True]


# --- 3. every notice verifies with xmlsec1 ----------------------------------------------------


@pytest.fixture
async def api(cfg, aiohttp_client):
    """As tests/test_api.py's fixture, on SQLite only (cfg's default store): notices are
    signed the same way whatever the store."""
    app = await make_app(cfg, workers=0)
    client = await aiohttp_client(app)
    store = app[SERVICES].store
    _, token = await store.keys.create("submitter", mst=UNIT.mst)
    client.auth = {"Authorization": f"Bearer {token}"}
    return client


def _t(notice: bytes, name: str) -> str | None:
    return etree.fromstring(notice).findtext(f"{{{NS}}}{name}")


async def test_every_notice_verifies_with_xmlsec1(api, world, pems):
    body, _ = xmlsec1_dossier(pems, world.unit, seed=3)
    xml = {"Content-Type": "application/xml"}

    async def post(data: bytes, headers: dict) -> tuple[int, bytes]:
        resp = await api.post("/api/v1/dossiers", data=data, headers=headers)
        return resp.status, await resp.read()

    notices = {
        "receipt": await post(body, {**xml, **api.auth}),
        "refusal": await post(body.replace(b"<KyKeKhai>11/2026", b"<KyKeKhai>10/2026"), {**xml, **api.auth}),
        "content-type": await post(b"{}", {"Content-Type": "application/json", **api.auth}),
        "replay": await post(body, {**xml, **api.auth}),
    }
    expected = {
        "receipt": (202, "TIEP_NHAN"),
        "refusal": (422, "TU_CHOI"),
        "content-type": (415, "TU_CHOI"),
        "replay": (200, "TIEP_NHAN"),
    }
    assert {k: (s, _t(n, "LoaiThongBao")) for k, (s, n) in notices.items()} == expected
    assert notices["replay"][1] == notices["receipt"][1]
    # an unauthenticated request is answered without signing anything (a problem, not a notice)
    resp = await api.post("/api/v1/dossiers", data=body, headers=xml)
    assert resp.status == 401 and resp.content_type == "application/problem+json"
    assert (await resp.json())["code"] == "AUTH-MISSING"

    for name, (_, notice) in notices.items():
        res = pems.verify(notice, name)
        assert res.returncode == 0, f"{name}: {res.stderr}\n{notice.decode()}"
        assert "OK" in res.stdout + res.stderr

    # the check is real: one character of MaGiaoDich changed, and xmlsec1 refuses
    notice = notices["receipt"][1]
    tx = _t(notice, "MaGiaoDich")
    flipped = tx[:-1] + ("0" if tx[-1] != "0" else "1")
    changed = notice.replace(f"<MaGiaoDich>{tx}<".encode(), f"<MaGiaoDich>{flipped}<".encode())
    assert changed != notice
    res = pems.verify(changed, "tampered")
    assert res.returncode != 0, res.stderr


# --- 4. our signatures verify with xmlsec1 -----------------------------------------------------


def test_our_envelope_and_form_signatures_verify_with_xmlsec1(world, pems):
    data = sign_envelope(
        samples.envelope(
            UNIT, [("D02-TS", "D02-TS.xml", samples.d02ts(3)), ("TK1-TS", "TK1-TS.xml", samples.tk1ts(1))]
        ),
        world.signer(world.unit),
    )
    assert data.startswith(samples.BOM.encode())
    docs = {"envelope": data, "D02-TS": form_in(data, 0), "TK1-TS": form_in(data, 1)}
    for name, doc in docs.items():
        assert doc.startswith(samples.BOM.encode()) and samples.XMLNS.encode() in doc[:300]
        res = pems.verify(doc, name)
        assert res.returncode == 0, f"{name}: {res.stderr}"
    # and a change is caught by xmlsec1 as well
    res = pems.verify(docs["D02-TS"].replace(b"<TienLuong>", b"<TienLuong>1", 1), "D02-TS-changed")
    assert res.returncode != 0



def test_large_dossier_signed_in_bounded_memory_verifies_with_xmlsec1(world, pems):
    """Inputs of 8 MiB and more are signed on the bounded path (trust/streaming.py: rows written
    back canonical, the digest spliced): xmlsec1 must verify them all the same."""
    form = samples.d02ts(8000)
    assert len(form) >= LARGE, "the form must take the bounded path"
    data = sign_envelope(samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", form)]), world.signer(world.unit))
    for name, doc in {"envelope": data, "D02-TS": form_in(data, 0)}.items():
        res = pems.verify(doc, f"large-{name}")
        assert res.returncode == 0, f"{name}: {res.stderr}"
    res = pems.verify(form_in(data, 0).replace(b"<TienLuong>", b"<TienLuong>1", 1), "large-D02-TS-changed")
    assert res.returncode != 0

# --- 5. SHA-1 ------------------------------------------------------------------------------------


def test_sha1_envelope_signed_by_xmlsec1(cfg, world, pems, now):
    # xmlsec1 1.2.x with OpenSSL 3 still makes rsa-sha1 signatures; were it to refuse, the
    # assertion in Pems.sign would say so (and signxml's XMLSigner(signature_algorithm="rsa-sha1",
    # digest_algorithm="sha1") would be the fallback).
    data, _ = xmlsec1_dossier(pems, world.unit, seed=4, envelope_method=RSA_SHA1, envelope_digest=SHA1)
    assert f'Algorithm="{RSA_SHA1}"'.encode() in data
    caller = Caller("submitter", mst=UNIT.mst)

    out = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits).receive(data, now, caller)
    assert not out.accepted
    assert codes(out) == ["SIG-ALGORITHM"]
    assert out.problems[0].form is None  # the envelope's; the forms are SHA-256

    cfg.trust.legacy_sha1 = True
    out = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits).receive(data, now, caller)
    assert out.accepted, out.problems
    assert out.signers[0]["signature_method"] == RSA_SHA1 and all(s["valid"] for s in out.signers)


# --- 6. another unit's certificate --------------------------------------------------------------


def test_other_units_certificate_signed_by_xmlsec1(cfg, world, pems, now):
    """UNIT's dossier, but xmlsec1 signed the forms and the envelope with OTHER_UNIT's key."""
    data, _ = xmlsec1_dossier(pems, world.other_unit, seed=5)
    out = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits).receive(data, now, Caller("submitter", mst=UNIT.mst))
    assert not out.accepted
    assert codes(out) == ["SIG-MST-MISMATCH"] * 3
    assert [p.form for p in out.problems] == [None, "D02-TS", "TK1-TS"]
    assert all(s["mst"] == OTHER_UNIT.mst for s in out.signers)

"""The receipt pipeline as a pure stage: envelope -> signature -> schema, and every refusal."""

from __future__ import annotations

from base64 import b64decode, b64encode
from datetime import timedelta

import pytest
from lxml import etree

from interchange.devkit import pki, samples
from interchange.intake.pipeline import Caller, Receiver
from interchange.trust.dossier_signing import sign_envelope, sign_form
from interchange.trust.xmldsig import DSIG_NS, to_bytes
from tests.helpers import OTHER_UNIT, UNIT, codes, dossier


@pytest.fixture
def receiver(cfg) -> Receiver:
    return Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)


def test_signed_dossier_is_received(receiver, world, now):
    out = receiver.receive(dossier(world.signer(world.unit)), now, Caller("submitter", mst=UNIT.mst))
    assert out.accepted, out.problems
    assert out.layers == {"envelope": "passed", "signature": "passed", "schema": "passed"}
    assert [s["document"] for s in out.signers] == ["Hoso", "D02-TS.xml"]
    assert all(s["valid"] and s["mst"] == UNIT.mst for s in out.signers)
    assert out.signers[0]["chain"][-1]["common_name"] == "Test Root CA"
    assert out.envelope["procedure"] == "600" and out.envelope["mst"] == UNIT.mst


def test_full_600_dossier_with_three_forms(receiver, world, now):
    data = sign_envelope(samples.dossier_600(UNIT, rows=5), world.signer(world.unit))
    out = receiver.receive(data, now)
    assert out.accepted, out.problems
    assert [f["code"] for f in out.forms] == ["D02-TS", "TK1-TS", "D01-TS"]


def _envelope_root(data: bytes):
    return etree.fromstring(data)


def _replace_form(data: bytes, new_form: bytes) -> bytes:
    root = _envelope_root(data)
    el = root.find("NoiDung/ThongTinHoSo/ToKhais/FileToKhai/NoiDungFile")
    el.text = b64encode(new_form).decode()
    root.find("NoiDung/ThongTinHoSo/ToKhais/FileToKhai/DoDaiFile").text = str(len(el.text))
    return to_bytes(root)


def _form_of(data: bytes) -> bytes:
    root = _envelope_root(data)
    return b64decode(root.findtext("NoiDung/ThongTinHoSo/ToKhais/FileToKhai/NoiDungFile"))


def test_tampered_envelope_is_refused_at_signature_layer(receiver, world, now):
    data = dossier(world.signer(world.unit)).replace(b"<KyKeKhai>11/2026", b"<KyKeKhai>10/2026")
    out = receiver.receive(data, now)
    assert not out.accepted
    assert out.layers["signature"] == "failed" and out.layers["schema"] == "not_run"
    assert codes(out) == ["SIG-DIGEST"]


def test_tampered_form_inside_a_resigned_envelope_is_refused(receiver, world, now):
    """The unit re-signs the envelope, but the form's own signature no longer matches."""
    signed = dossier(world.signer(world.unit))
    form = _form_of(signed)
    tampered = form.replace(b"<TienLuong>", b"<TienLuong>1", 1)
    data = sign_envelope(_replace_form(signed, tampered), world.signer(world.unit), sign_forms=False)
    out = receiver.receive(data, now)
    assert codes(out) == ["SIG-DIGEST"]
    assert out.problems[0].form == "D02-TS"


def test_form_signed_by_another_unit(receiver, world, now):
    form = sign_form(samples.d02ts(2), world.signer(world.other_unit))
    data = sign_envelope(samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", form)]), world.signer(world.unit))
    out = receiver.receive(data, now)
    assert codes(out) == ["SIG-MST-MISMATCH"]
    assert out.problems[0].form == "D02-TS"


def test_envelope_signed_by_another_unit(receiver, world, now):
    out = receiver.receive(dossier(world.signer(world.other_unit)), now)
    assert set(codes(out)) == {"SIG-MST-MISMATCH"}


def test_unsigned_dossier(receiver, now):
    out = receiver.receive(dossier(None), now)
    assert codes(out) == ["SIG-MISSING", "SIG-MISSING"]


def _signer_with(world, **kw):
    issued = pki.issue_unit_cert(world.ca, UNIT.mst, UNIT.name, key=world.unit.key, **kw)
    return world.signer(issued)


@pytest.mark.parametrize(
    "kw, code",
    [
        ({"not_after": "past"}, "SIG-EXPIRED"),
        ({"not_before": "future"}, "SIG-NOT-YET-VALID"),
        ({"ca_flag": True}, "SIG-CA-LEAF"),
        ({"tls_only": True}, "SIG-KEY-USAGE"),
    ],
)
def test_bad_certificates(receiver, world, now, kw, code):
    if kw.get("not_after") == "past":
        kw = {"not_before": now - timedelta(days=400), "not_after": now - timedelta(days=1)}
    elif kw.get("not_before") == "future":
        kw = {"not_before": now + timedelta(days=1), "not_after": now + timedelta(days=400)}
    out = receiver.receive(dossier(_signer_with(world, **kw)), now)
    assert not out.accepted
    assert code in codes(out)


def test_untrusted_ca(receiver, world, now):
    rogue_unit = pki.issue_unit_cert(world.rogue_ca, UNIT.mst, UNIT.name, key=world.unit.key)
    out = receiver.receive(dossier(world.signer(rogue_unit)), now)
    assert set(codes(out)) == {"SIG-UNTRUSTED"}


def test_rsa_1024_refused(receiver, world, now):
    weak = pki.issue_unit_cert(world.ca, UNIT.mst, UNIT.name, key=pki.new_key("rsa1024"))
    out = receiver.receive(dossier(world.signer(weak)), now)
    assert "SIG-WEAK-KEY" in codes(out)


def test_second_signature_refused(receiver, world, now):
    data = dossier(world.signer(world.unit))
    root = _envelope_root(data)
    sig = root.find(f"CKy_Dvi/{{{DSIG_NS}}}Signature")
    root.find("CKy_Dvi").append(etree.fromstring(etree.tostring(sig)))
    out = receiver.receive(to_bytes(root), now)
    assert codes(out)[0] == "SIG-MULTIPLE"


def test_nested_signature_refused(receiver, world, now):
    root = _envelope_root(dossier(world.signer(world.unit)))
    sig = root.find(f"CKy_Dvi/{{{DSIG_NS}}}Signature")
    sig.find(f"{{{DSIG_NS}}}Object").append(etree.fromstring(etree.tostring(sig)))
    out = receiver.receive(to_bytes(root), now)
    assert codes(out)[0] == "SIG-MULTIPLE"


def test_moved_signature_refused(receiver, world, now):
    """A form whose signature was moved out of Cky (the envelope is re-signed around it)."""
    form = etree.fromstring(sign_form(samples.d02ts(2), world.signer(world.unit)))
    form.find("NoiDung").append(form.find(f"Cky/{{{DSIG_NS}}}Signature"))
    data = sign_envelope(samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", to_bytes(form))]),
                         world.signer(world.unit), sign_forms=False)
    out = receiver.receive(data, now)
    assert codes(out) == ["SIG-LOCATION"] and out.problems[0].form == "D02-TS"


def test_moved_envelope_signature_refused_by_the_envelope_schema(receiver, world, now):
    root = _envelope_root(dossier(world.signer(world.unit)))
    root.find("NoiDung").append(root.find(f"CKy_Dvi/{{{DSIG_NS}}}Signature"))
    out = receiver.receive(to_bytes(root), now)
    assert not out.accepted and out.layers["envelope"] == "failed"


def test_wrapping_with_partial_reference_refused(receiver, world, now):
    """A signature over one element (URI="#x") is not a signature over the document."""
    from signxml import XMLSigner

    form = etree.fromstring(samples.d02ts(2))
    form.find("NoiDung").set("Id", "x")
    etree.SubElement(form.find("Cky"), f"{{{DSIG_NS}}}Signature", Id="placeholder")
    signed = XMLSigner(c14n_algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315").sign(
        form, key=world.unit.key, cert=[pki.certs_pem([world.unit.cert]).decode()], reference_uri="#x"
    )
    data = sign_envelope(samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", to_bytes(signed))]),
                         world.signer(world.unit), sign_forms=False)
    out = receiver.receive(data, now)
    assert "SIG-PROFILE" in codes(out)


def test_keyvalue_disagreeing_with_certificate(receiver, world, now):
    other_key_sig = dossier(world.signer(world.other_unit))
    theirs = _envelope_root(other_key_sig).find(f"CKy_Dvi/{{{DSIG_NS}}}Signature/{{{DSIG_NS}}}KeyInfo/{{{DSIG_NS}}}KeyValue")
    root = _envelope_root(dossier(world.signer(world.unit)))
    keyinfo = root.find(f"CKy_Dvi/{{{DSIG_NS}}}Signature/{{{DSIG_NS}}}KeyInfo")
    keyinfo.replace(keyinfo.find(f"{{{DSIG_NS}}}KeyValue"), theirs)
    out = receiver.receive(to_bytes(root), now)
    assert codes(out) == ["SIG-KEYVALUE"]


def test_comment_injection_cannot_change_values(receiver, world, now):
    """A comment inserted after signing leaves the signed content, and so the digest, alone."""
    data = dossier(world.signer(world.unit)).replace(b"<MaSoThue>01", b"<MaSoThue>0<!-- x -->1")
    out = receiver.receive(data, now)
    assert out.accepted and out.envelope["mst"] == UNIT.mst


def test_malformed_xml_and_dtd(receiver, now):
    assert codes(receiver.receive(b"<Hoso><NoiDung></Hoso>", now)) == ["XML-MALFORMED"]
    bomb = b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><Hoso>&b;</Hoso>'
    out = receiver.receive(bomb, now)
    assert codes(out) == ["XML-DTD"] and out.layers["envelope"] == "failed"


def test_embedded_form_with_dtd_refused(receiver, world, now):
    xxe = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><D02-TS>&e;</D02-TS>'
    data = sign_envelope(samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", xxe)]), world.signer(world.unit), sign_forms=False)
    out = receiver.receive(data, now)
    assert codes(out) == ["XML-DTD"] and out.layers["envelope"] == "failed"


def test_file_count_and_length_checked(receiver, world, now):
    data = samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", samples.d02ts(2))], tamper_count=True)
    out = receiver.receive(data, now)
    assert "ENV-FILE-COUNT" in codes(out)
    data = samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", samples.d02ts(2))]).replace(b"<DoDaiFile>", b"<DoDaiFile>9")
    assert "ENV-FILE-LENGTH" in codes(receiver.receive(data, now))


def test_schema_errors_listed_with_xpath_and_line(receiver, world, now):
    form = samples.d02ts(5)
    form = form.replace(b"<TienLuong>", b"<TienLuong>x", 2)
    data = sign_envelope(samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", form)]), world.signer(world.unit))
    out = receiver.receive(data, now)
    assert out.layers == {"envelope": "passed", "signature": "passed", "schema": "failed"}
    assert codes(out) == ["XSD", "XSD"]
    assert out.problems[0].xpath == "/D02-TS/NoiDung/LaoDong[1]/TienLuong"
    assert out.problems[1].xpath == "/D02-TS/NoiDung/LaoDong[2]/TienLuong"
    lines = form.decode("utf-8-sig").splitlines()
    assert "<TienLuong>x" in lines[out.problems[0].line - 1]


def test_caller_binding(receiver, world, now):
    data = dossier(world.signer(world.unit))
    out = receiver.receive(data, now, Caller("submitter", mst=OTHER_UNIT.mst))
    assert out.forbidden and codes(out) == ["AUTH-UNIT-MISMATCH"]
    out = receiver.receive(data, now, Caller("ivan", ivan="99999"))
    assert out.forbidden and codes(out) == ["AUTH-IVAN-MISMATCH"]
    assert receiver.receive(data, now, Caller("ivan", ivan="00123")).accepted


def test_real_world_signature_quirks_are_accepted(receiver, world, now):
    """Signature/@Id starting with a digit and an Object with xmlns="" (seen in real files)."""
    root = _envelope_root(dossier(world.signer(world.unit)))
    sig = root.find(f"CKy_Dvi/{{{DSIG_NS}}}Signature")
    sig.set("Id", "1234-abc")
    obj = sig.find(f"{{{DSIG_NS}}}Object")
    etree.SubElement(obj, "SigningTime").text = "2026-11-20T10:00:00"
    out = receiver.receive(to_bytes(root), now)
    assert out.accepted, out.problems


def test_signing_time_outside_validity_is_a_warning_only(receiver, world, now):
    """SigningTime is unsigned: recorded and flagged, never the reason to accept or refuse."""
    signed = sign_envelope(samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", samples.d02ts(2))]),
                           world.signer(world.unit), signing_time=now - timedelta(days=3650))
    out = receiver.receive(signed, now)
    assert out.accepted
    assert {p.code for p in out.problems} == {"SIG-SIGNING-TIME"}
    assert all(p.severity == "warning" for p in out.problems)
    assert out.signers[0]["signing_time"].startswith(str((now - timedelta(days=3650)).year))

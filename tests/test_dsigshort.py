"""The profile's signatures the short way (interchange.trust.dsigshort): signing from a template
writes what signxml writes, byte for byte; verifying says True only for a signature that holds,
gives the digest verdict itself, and leaves everything else, untouched, to the full path."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from lxml import etree
from signxml.exceptions import InvalidDigest

from interchange import codes
from interchange.clock import utc_now
from interchange.devkit import samples
from interchange.trust import xmldsig
from interchange.trust.dsigshort import SignatureTemplate, holds_by_profile
from interchange.trust.xmldsig import DSIG_NS, SIGNATURE_TAG, to_bytes, verify_document

AT = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def ds(tag: str) -> str:
    return f"{{{DSIG_NS}}}{tag}"


def signed_form(world) -> bytes:
    return to_bytes(world.signer(world.unit).sign(etree.fromstring(samples.d02ts(3)), location="Cky",
                                                  signing_time=AT))


@pytest.mark.parametrize("location", ["Cky", ""])
def test_a_template_signature_is_what_signxml_writes(world, monkeypatch, location):
    made = []
    monkeypatch.setattr(SignatureTemplate, "sign", lambda self, *a, sign=SignatureTemplate.sign: made.append(1)
                        or sign(self, *a))
    signer = world.signer(world.unit)
    short = signer.sign(etree.fromstring(samples.d02ts(3)), location=location, signing_time=AT)
    assert made == [1]
    # a comment beside the document element: signxml signs it (its own copy holds the element alone)
    beside = etree.fromstring(b"<!--beside-->" + samples.d02ts(3).split(b"?>", 1)[1])
    full = signer.sign(beside, location=location, signing_time=AT)
    assert made == [1] and to_bytes(short) == to_bytes(full)


def verify(world, body: bytes, trust) -> xmldsig.SignatureReport:
    root = etree.fromstring(body)
    return verify_document(root, location="Cky", trust=trust, at=utc_now(), document="D02-TS", form="D02-TS")


@pytest.fixture
def trust(cfg):
    from interchange.trust.anchors import TrustStore

    return TrustStore.from_config(cfg.trust, cfg.trust_paths, fetch=False)


def short_path_calls(monkeypatch) -> list[bool]:
    seen: list[bool] = []

    def spy(*args):
        seen.append(holds_by_profile(*args))
        return seen[-1]

    monkeypatch.setattr(xmldsig, "holds_by_profile", spy)
    return seen


def test_a_good_signature_holds_the_short_way(world, trust, monkeypatch):
    seen = short_path_calls(monkeypatch)
    report = verify(world, signed_form(world), trust)
    assert seen == [True] and report.intact and report.valid


def test_a_changed_document_is_a_digest_verdict_of_the_short_way(world, trust, monkeypatch):
    seen = short_path_calls(monkeypatch)
    changed = signed_form(world).replace(b"<STT>1</STT>", b"<STT>2</STT>", 1)
    signature, leaf = _signature_and_leaf(changed, world)
    with pytest.raises(InvalidDigest, match="digest mismatch"):
        holds_by_profile(signature.getroottree().getroot(), signature, leaf, None)
    report = verify(world, changed, trust)
    assert seen == [] and codes.SIG_DIGEST in [p.code for p in report.problems] and report.intact is False


def _signature_and_leaf(body: bytes, world):
    return next(etree.fromstring(body).iter(SIGNATURE_TAG)), world.unit.cert


@pytest.mark.parametrize("edit,code", [
    (lambda sig: sig.find(f"{ds('KeyInfo')}/{ds('KeyValue')}/{ds('RSAKeyValue')}/{ds('Exponent')}")
     .__setattr__("text", "Aw=="), codes.SIG_KEYVALUE),
    (lambda sig: sig.find(ds("SignatureValue")).__setattr__(
        "text", base64.b64encode(bytes(256)).decode()), codes.SIG_INVALID),
])
def test_anything_else_is_left_untouched_to_the_full_path(world, trust, monkeypatch, edit, code):
    body = signed_form(world)
    root = etree.fromstring(body)
    edit(next(root.iter(SIGNATURE_TAG)))
    edited = etree.tostring(root)
    signature, leaf = _signature_and_leaf(edited, world)
    before = etree.tostring(signature.getroottree())
    assert holds_by_profile(signature.getroottree().getroot(), signature, leaf, None) is False
    assert etree.tostring(signature.getroottree()) == before  # nothing detached, nothing changed
    seen = short_path_calls(monkeypatch)
    report = verify(world, edited, trust)
    assert seen == [False] and code in [p.code for p in report.problems] and report.intact is False

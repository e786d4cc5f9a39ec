"""Hostile XML shapes (hardening issue, items 1 and 5).

Small bodies that held a worker for minutes: an element with thousands of attributes made
xmlschema's readable errors quadratic (1,000 attributes: 3 s; 2,000: 20 s; 10,000: no answer in
300 s). Now the hardened parser refuses the shape before any stage runs (`XmlLimits`: attributes
and namespace declarations per element, name length, attribute value and text node length),
and the readable-errors path only runs when the document is small and its errors within the cap.
The neighbours of that shape are here too. Timings are printed by bench/hostile_shapes.py,
never asserted.

Item 5: a body the envelope cannot be read from (a wrapper root, another default namespace)
is answered with the envelope's own errors in a TU_CHOI (422), not a bare AUTH-UNIT-MISMATCH.
"""

from __future__ import annotations

import pytest
from lxml import etree

from interchange.config import load_config
from interchange.devkit import samples
from interchange.forms import schema as schema_module
from interchange.forms.schema import default_schema_set
from interchange.intake.pipeline import Caller, Receiver
from interchange.notices.notice import NS
from interchange.trust.dossier_signing import sign_envelope
from interchange.trust.xmldsig import to_bytes
from interchange.xmlparse import XmlLimits, parse_xml
from tests.helpers import OTHER_UNIT, UNIT, XML, dossier, error_codes, listed, notice_of, start_api

CALLER = Caller("submitter", mst=UNIT.mst)


def attrs(n: int, value: str = "x") -> bytes:
    return "".join(f' a{i}="{value}"' for i in range(n)).encode()


def on(body: bytes, tag: bytes, extra: bytes) -> bytes:
    changed = body.replace(b"<" + tag + b">", b"<" + tag + extra + b">", 1)
    assert changed != body
    return changed


def inside(body: bytes, tag: bytes, content: bytes) -> bytes:
    changed = body.replace(b"</" + tag + b">", content + b"</" + tag + b">", 1)
    assert changed != body
    return changed


def codes_of(out) -> set[str]:
    return {f"{p.code}@{p.form}" if p.form else p.code for p in out.problems if p.severity == "error"}


@pytest.fixture(scope="module")
def signed(world) -> bytes:
    return dossier(world.signer(world.unit))


@pytest.fixture
def receiver(cfg) -> Receiver:
    return Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)


# (build from the signed dossier, expected error codes)
SHAPES = {
    "attributes-1000": (lambda b: on(b, b"ThongTinHoSo", attrs(1000)), {"XML-TOO-MANY-ATTRIBUTES"}),
    "attributes-10000": (lambda b: on(b, b"ThongTinHoSo", attrs(10_000)), {"XML-TOO-MANY-ATTRIBUTES"}),
    "attributes-in-the-signature-object": (
        lambda b: b.replace(b"<SignatureProperty ", b"<SignatureProperty " + attrs(500) + b" ", 1),
        {"XML-TOO-MANY-ATTRIBUTES"},
    ),
    "namespace-declarations-100": (
        lambda b: on(b, b"ThongTinHoSo", b"".join(b' xmlns:p%d="urn:p%d"' % (i, i) for i in range(100))),
        {"XML-TOO-MANY-NAMESPACES"},
    ),
    "long-element-name": (lambda b: inside(b, b"NoiDung", b"<" + b"N" * 2000 + b"/>"), {"XML-NAME-TOO-LONG"}),
    "long-attribute-name": (lambda b: on(b, b"NoiDung", b" " + b"a" * 2000 + b'="x"'), {"XML-NAME-TOO-LONG"}),
    "long-attribute-name-spaced": (lambda b: on(b, b"NoiDung", b" " + b"a" * 2000 + b' = "x"'), {"XML-NAME-TOO-LONG"}),
    "long-prefixed-name": (
        lambda b: inside(b, b"NoiDung", b'<p:' + b"n" * 2000 + b' xmlns:p="urn:p"/>'), {"XML-NAME-TOO-LONG"}
    ),
    "long-attribute-value": (lambda b: on(b, b"NoiDung", b' x="' + b"A" * 70_000 + b'"'), {"XML-ATTRIBUTE-TOO-LONG"}),
    "long-attribute-value-single-quoted": (
        lambda b: on(b, b"NoiDung", b" x='" + b"A" * 70_000 + b"'"), {"XML-ATTRIBUTE-TOO-LONG"}
    ),
    "deep-nesting": (lambda b: inside(b, b"ThongTinHoSo", b"<d>" * 70 + b"</d>" * 70), {"XML-TOO-DEEP"}),
    "many-small-elements": (lambda b: inside(b, b"ThongTinHoSo", b"<x/>" * 50_000), {"ENV-XSD"}),
    "many-bad-values": (lambda b: inside(b, b"ThongTinDonVi", b"<MaSoThue>x</MaSoThue>" * 5_000), {"ENV-XSD"}),
    "attributes-in-utf16": (
        lambda b: on(b, b"ThongTinHoSo", attrs(300)).decode("utf-8-sig")
        .replace('encoding="utf-8"', 'encoding="UTF-16"').encode("utf-16"),
        {"XML-TOO-MANY-ATTRIBUTES"},
    ),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_hostile_shape_is_refused_at_the_envelope(receiver, signed, now, name):
    build, expected = SHAPES[name]
    out = receiver.receive(build(signed), now, CALLER)
    assert not out.accepted and out.failed_layer == "envelope", out.layers
    assert codes_of(out) == expected, [(p.code, p.message_en[:100]) for p in out.problems]
    assert all(len(p.message_en) < 2000 and len(p.xpath or "") < 2000 for p in out.problems)
    assert len(out.problems) <= 100


def test_the_refusal_says_where(receiver, signed, now):
    out = receiver.receive(on(signed, b"ThongTinHoSo", attrs(1000)), now, CALLER)
    (problem,) = out.problems
    assert problem.xpath == "/Hoso/NoiDung/ThongTinHoSo" and problem.line
    assert "1000 attributes" in problem.message_en


def test_hostile_shape_in_a_signed_form(receiver, world, now):
    """The unit itself signs a form with 10,000 attributes: refused before the signature layer."""
    form = samples.d02ts(2).replace(b"<NoiDung>", b"<NoiDung" + attrs(10_000) + b">", 1)
    form = to_bytes(world.signer(world.unit).sign(etree.fromstring(form), location="Cky"))
    body = sign_envelope(samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", form)]), world.signer(world.unit),
                         sign_forms=False)
    out = receiver.receive(body, now, CALLER)
    assert codes_of(out) == {"XML-TOO-MANY-ATTRIBUTES@D02-TS"} and out.failed_layer == "envelope"


def test_shapes_at_the_limits_are_not_refused_by_the_parser():
    limits = XmlLimits()
    doc = b"<r" + attrs(limits.max_attributes) + b"".join(
        b' xmlns:p%d="urn:p%d"' % (i, i) for i in range(limits.max_namespaces)
    ) + b' v="' + b"v" * limits.max_attribute_length + b'"'[:0] + b'">' + b"<" + b"n" * (
        limits.max_name_length - 10) + b"/></r>"
    with pytest.raises(Exception) as caught:  # 256 attributes and one more (v): one over
        parse_xml(doc, limits)
    assert "XML-TOO-MANY-ATTRIBUTES" in str(caught.value)
    doc = doc.replace(b" a0=\"x\"", b"", 1)
    assert parse_xml(doc, limits).getroot().tag == "r"


def test_the_base64_text_node_is_exempt_from_the_text_limit(cfg, world, now):
    cfg.limits.max_text_length = 5000
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    body = dossier(world.signer(world.unit), rows=20)
    assert receiver.receive(body, now, CALLER).accepted  # NoiDungFile is far over 5,000 characters
    out = receiver.receive(inside(body, b"TenThuTuc", b"T" * 5001), now, CALLER)
    assert codes_of(out) == {"XML-TEXT-TOO-LONG"}
    cdata = inside(body, b"TenThuTuc", b"<![CDATA[" + b"T<" * 2600 + b"]]>")
    assert codes_of(receiver.receive(cdata, now, CALLER)) == {"XML-TEXT-TOO-LONG"}


def test_a_long_text_node_in_a_form(cfg, world, now):
    cfg.limits.max_text_length = 5000
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    form = samples.d02ts(2).replace(b"<Ghichu />", b"<Ghichu>" + b"g" * 5001 + b"</Ghichu>", 1)
    body = sign_envelope(samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", form)]), world.signer(world.unit))
    assert codes_of(receiver.receive(body, now, CALLER)) == {"XML-TEXT-TOO-LONG@D02-TS"}


def test_limits_come_from_the_config(tmp_path, clean_environ, monkeypatch):
    path = tmp_path / "config.toml"
    path.write_text("[limits]\nmax_attributes = 7\nmax_text_length = 99\n", encoding="utf-8")
    monkeypatch.setenv("INTERCHANGE_LIMITS_MAX_NAME_LENGTH", "50")
    limits = XmlLimits.of(load_config(path).limits)
    assert (limits.max_attributes, limits.max_text_length, limits.max_name_length) == (7, 99, 50)
    assert limits.max_namespaces == XmlLimits().max_namespaces


# --- the readable-errors path is bounded --------------------------------------------------------


def _envelope_with_bad_attributes(n: int) -> etree._Element:
    body = samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", samples.d02ts(1))])
    body = on(body, b"ThongTinHoSo", attrs(n))
    return parse_xml(body, XmlLimits(max_attributes=10**6)).getroot()


def test_readable_errors_are_skipped_when_errors_exceed_the_cap(monkeypatch):
    """5,000 bad attributes (the parser would refuse them; here its limit is lifted): libxml2's
    errors, the first 100 listed and the rest counted, without xmlschema."""
    def never(*args, **kw):
        raise AssertionError("xmlschema must not run")

    monkeypatch.setattr(schema_module, "readable_errors", never)
    problems = default_schema_set().validate_envelope(_envelope_with_bad_attributes(5000), cap=100)
    assert len(problems.items) == 100 and problems.truncated == 4900
    assert {p.code for p in problems.items} == {"ENV-XSD"}


def test_readable_errors_stop_at_the_cap():
    from interchange.forms.readable import readable_errors

    schemas = default_schema_set()
    root = _envelope_with_bad_attributes(50)
    import xmlschema

    validator = xmlschema.XMLSchema10(str(schemas.xsd_dir / "Hoso-1.0.xsd"), defuse="always")
    errors, seen = readable_errors(validator, root, 5)
    assert len(errors) == 5 and seen == 6
    problems = schemas.validate_envelope(root, cap=100)  # within the cap: readable, all of them
    assert len(problems.items) == 50 and problems.truncated == 0


# --- item 5: the envelope's own errors, not a bare 403 -------------------------------------------


def _wrapped(body: bytes) -> bytes:
    start = body.index(b"<Hoso")
    return body[:start] + b"<X>" + body[start:] + b"</X>"


def _namespaced(body: bytes) -> bytes:
    return body.replace(b"<Hoso", b'<Hoso xmlns="urn:other"', 1)


@pytest.mark.parametrize("edit, codes", [(_wrapped, {"ENV-ROOT", "ENV-XSD"}), (_namespaced, {"ENV-ROOT", "ENV-XSD"})])
async def test_unreadable_envelope_is_a_tu_choi_with_its_errors(world, cfg, aiohttp_client, edit, codes):
    api = await start_api(cfg, aiohttp_client)
    resp = await api.post("/api/v1/dossiers", data=edit(dossier(world.signer(world.unit))),
                          headers={**XML, **api.keys["unit"]})
    notice = await resp.read()
    assert resp.status == 422, notice[:300]
    root = notice_of(notice)
    assert root.findtext(f"{{{NS}}}LoaiThongBao") == "TU_CHOI"
    found = set(error_codes(root))
    assert "AUTH-UNIT-MISMATCH" not in found and "ENV-ROOT" in found and found <= codes | {"ENV-MST-MISSING"}
    xsd = [loi for loi in root.iter(f"{{{NS}}}Loi") if loi.findtext(f"{{{NS}}}Ma") in ("ENV-XSD", "ENV-ROOT")]
    assert all(loi.findtext(f"{{{NS}}}ViTri") for loi in xsd)
    assert any(loi.findtext(f"{{{NS}}}Dong") for loi in xsd)
    assert len(await listed(api, "refused")) == 1


async def test_another_units_readable_envelope_is_still_forbidden(world, cfg, aiohttp_client):
    api = await start_api(cfg, aiohttp_client)
    body = dossier(world.signer(world.other_unit), unit=OTHER_UNIT)
    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys["unit"]})
    assert resp.status == 403
    assert error_codes(notice_of(await resp.read())) == ["AUTH-UNIT-MISMATCH"]
    broken = body.replace(b"<TenThuTuc>", b"<Extra/><TenThuTuc>", 1)  # names another unit, with errors
    resp = await api.post("/api/v1/dossiers", data=broken, headers={**XML, **api.keys["unit"]})
    assert resp.status == 403
    assert await listed(api, "refused") == []

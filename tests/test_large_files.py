"""A large body read from its file, a few MiB at a time (issue #13 item 4: the worker, the rule
layer and `check` never hold a large dossier or its form whole): `leanbody.lean_file` cuts the same
texts as `lean_body` does on the bytes and decodes each into a file; `xmlparse.windows` and
`ShapeScan` give the same gates as `shape_gates` on the whole bytes; the receipt and the rule
layer on the file give what they give on the bytes, and leave no file behind.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from base64 import b64decode, b64encode
from datetime import UTC, datetime

import pytest
import xmlschema
from lxml import etree

from interchange.devkit import samples
from interchange.intake import pipeline
from interchange.intake.pipeline import Caller, Receiver
from interchange.rules import judge as judge_module
from interchange.spool import Spooled
from interchange.trust import leanbody, streaming
from interchange.trust.c14nstream import Splice
from interchange.trust.dossier_signing import sign_envelope, sign_form
from interchange.xmlparse import ShapeScan, XmlLimits, ascii_markup, markup_bang, shape_gates, windows
from tests.helpers import UNIT, dossier, in_file

PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True)


def envelope_with(text: str, before: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Hoso>{before}\n  <Files>\n    <F><TenFile>a.xml</TenFile>\n'
            f"      <NoiDungFile>{text}</NoiDungFile>\n    </F>\n  </Files>\n</Hoso>").encode()



def read(content) -> bytes:
    return content.read() if isinstance(content, Spooled) else content


def whole_digest(data: bytes) -> bytes:
    return hashlib.sha256(etree.tostring(etree.fromstring(data, PARSER).getroottree(), method="c14n")).digest()


def spliced_digest(small: bytes, splice: Splice) -> bytes:
    root = etree.fromstring(small, PARSER)
    return splice.digest(etree.tostring(root.getroottree(), method="c14n"), "sha256")


def unmarked(lean) -> bytes:
    body = lean.body
    for marker in lean.cuts:
        body = body.replace(marker.encode(), b"@")
    return body


def base64_text(rng: random.Random, size: int) -> str:
    """Base64 of random bytes, now and then wrapped, indented, padded with blanks at the end."""
    text = b64encode(rng.randbytes(size)).decode()
    wrap = rng.choice([0, 0, 64, 76, 7])
    if wrap:
        text = rng.choice(["\n", "\n  ", " ", "\t"]).join(text[i : i + wrap] for i in range(0, len(text), wrap))
    return text + rng.choice(["", "", "\n", " " * 70, "\n\t \n"])


SPOILERS = ["", "", "", "!", "\r", "&#65;", "=", "A", "==A", "<!--c-->", "é"]


@pytest.mark.parametrize("seed", range(40))
def test_the_file_is_cut_as_the_bytes_are(seed, tmp_path):
    """Same cuts (places, line breaks kept), same small body but the markers, same decoded bytes,
    the digest of the whole: on texts valid and not, chunks far smaller than a text."""
    rng = random.Random(seed)
    texts = [base64_text(rng, rng.choice([10, 5_000, 40_000])) for _ in range(rng.randint(1, 3))]
    spoil = rng.randrange(len(texts))
    at = rng.randrange(len(texts[spoil]) + 1)
    texts[spoil] = texts[spoil][:at] + rng.choice(SPOILERS) + texts[spoil][at:]
    data = envelope_with(texts[0], "".join(f"<NoiDungFile>{t}</NoiDungFile>" for t in texts[1:]))
    held = leanbody.lean_body(data, min_size=1000)
    filed = leanbody.lean_file(in_file(data, tmp_path), min_size=1000, to_file_from=rng.choice([0, 2000, 10**9]),
                               chunk=rng.choice([1, 50, 4096]))
    try:
        assert (held is None) == (filed is None)
        if held is None:
            return
        by_place = {(c.start, c.end): c for c in filed.cuts.values()}
        assert sorted(by_place) == sorted((c.start, c.end) for c in held.cuts.values())
        for marker, cut in list(held.cuts.items()):
            other = by_place[(cut.start, cut.end)]
            assert marker.count("\n") == other.marker.count("\n")
            assert held.lengths(marker) == filed.lengths(other.marker)
            assert read(filed.decode(other.marker)) == held.decode(marker)
        assert unmarked(held) == unmarked(filed)
        assert spliced_digest(filed.body, filed.splice()) == whole_digest(data)
    finally:
        if filed is not None:
            filed.close()
            assert not filed.files


@pytest.mark.parametrize("text", [
    "QUJD" * 20_000 + "AB==",  # padding bits that the XSD's base64Binary refuses
    "QUJD" * 20_000 + "AB=" + " " * 100,  # ... and blanks after them
    "QUJD" * 20_000 + "A",  # not a whole quad
    "QUJD" * 20_000 + "\r\n",  # CR: the parser drops it
    "QU=D" * 20_000,  # "=" inside
    "QUJD" * 20_000 + "====",
    "QUJD" * 20_000 + "QUJA==",  # padding after a whole quad
    "QUJD" * 20_000 + "QQ==" + "QUJD",  # data after the padding
    "QUJD" * 19_999 + "QQ==\n" + "QQ==",  # ... on the next line
    "QUJD" * 250 + "QQ==" + "QUJD" * 20_000,  # ... long after
])
@pytest.mark.parametrize("to_file_from", [0, 10**9])
@pytest.mark.parametrize("chunk", [3, 1000])
def test_texts_not_cut_from_a_file(text, to_file_from, chunk, tmp_path):
    data = envelope_with(text)
    assert leanbody.lean_body(data) is None
    assert leanbody.lean_file(in_file(data, tmp_path), to_file_from=to_file_from, chunk=chunk) is None


# xmlschema, not libxml2: libxml2 takes "GuY_=" (a character outside the alphabet before the padding)
BASE64_XSD = xmlschema.XMLSchema(
    '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="b" type="xs:base64Binary"/></xs:schema>'
)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def odd_base64(rng: random.Random) -> str:
    """Base64 on one line, whole or broken: padding anywhere, stray characters, any character
    before the padding."""
    text = list(b64encode(rng.randbytes(rng.choice([1, 2, 3, 4, 5, 6, 30, 31, 32]))).decode())
    if rng.random() < 0.4:  # the last character before the padding, any of the alphabet
        at = len("".join(text).rstrip("=")) - 1
        text[at] = rng.choice(ALPHABET)
    for _ in range(rng.choice([0, 0, 1, 2])):
        at = rng.randrange(len(text) + 1)
        text[at:at] = rng.choice(["=", "==", "====", "A", "AB", "ABC", "QUJA", "-", "_", "*"])
    return "".join(text)


@pytest.mark.parametrize("seed", range(20))
def test_texts_are_cut_exactly_when_the_xsd_takes_them(seed, tmp_path):
    """A one-line text is cut, in memory and from a file read in chunks, exactly when the XSD's
    base64Binary takes it (else the tree path and the XSD judge it), and decodes to its bytes."""
    rng = random.Random(seed)
    for _ in range(150):
        text = odd_base64(rng)
        valid = BASE64_XSD.is_valid(f"<b>{text}</b>")
        data = envelope_with(text)
        held = leanbody.lean_body(data, min_size=1)
        filed = leanbody.lean_file(in_file(data, tmp_path), min_size=1, chunk=rng.choice([5, 7, 1000]),
                                   to_file_from=rng.choice([0, 10**9]))  # fmt: skip
        for lean in (held, filed):
            assert (lean is not None) == valid, text
            if lean is not None:
                (marker,) = lean.cuts
                assert read(lean.decode(marker)) == b64decode(text, validate=True), text
                lean.close()


def test_a_large_text_is_decoded_into_a_file_and_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spool"))
    (tmp_path / "spool").mkdir()
    payload = random.Random(1).randbytes(300_000)
    data = envelope_with(b64encode(payload).decode())
    lean = leanbody.lean_file(in_file(data, tmp_path), to_file_from=100_000, chunk=8192)
    (content,) = [lean.decode(m) for m in list(lean.cuts)]
    assert isinstance(content, Spooled) and content.read() == payload
    assert len(list((tmp_path / "spool").iterdir())) == 1
    lean.close()
    assert not list((tmp_path / "spool").iterdir())


# ---- the byte gates, window by window --------------------------------------------------------------

LIMITS = XmlLimits(max_attributes=30, max_namespaces=5, max_name_length=40, max_attribute_length=200,
                   max_text_length=300)


def shapes(rng: random.Random) -> bytes:
    parts = ['<?xml version="1.0"?>\n']
    if rng.random() < 0.3:
        parts.append('<!DOCTYPE r [<!ENTITY e "x">]>' if rng.random() < 0.5 else "<!DOCTYPE r>")
    parts.append('<r xmlns:a="urn:a">')
    for _ in range(rng.randint(5, 60)):
        kind = rng.randrange(8)
        name = "n" * rng.choice([3, 39, 40, 41, 60])
        if kind == 0:
            parts.append(f"<{name}>x</{name}>")
        elif kind == 1:
            parts.append(f'<e {name}="v"/>' if rng.random() < 0.8 else f'<e {name} ="v"/>')
        elif kind == 2:
            parts.append('<e v="' + "x" * rng.choice([10, 199, 200, 201, 400]) + '"/>')
        elif kind == 3:
            parts.append("<t>" + "y" * rng.choice([10, 299, 300, 301, 900]) + "</t>")
        elif kind == 4:
            parts.append("<c><![CDATA[ < & ]]></c>")
        elif kind == 5:
            parts.append(f'<e xmlns:b{rng.randrange(9)}="urn:b" a:x="1" y="2"/>')
        elif kind == 6:
            parts.append("<!-- a < b = c -->")
        else:
            parts.append("<?pi x=1?>")
    parts.append("</r>")
    return "".join(parts).encode()


@pytest.mark.parametrize("seed", range(60))
def test_windows_give_the_gates_of_the_whole(seed):
    rng = random.Random(seed)
    data = shapes(rng)
    size = rng.choice([1, 7, 64, 1000])
    scan = ShapeScan(LIMITS, stream=True)
    for window in windows((data[i : i + size] for i in range(0, len(data), size)), most=10**9):
        assert window.startswith(b"<") or data.startswith(window)
        scan.feed(window)
    whole = ShapeScan(LIMITS, stream=True)
    whole.feed(data)
    tree_gates = shape_gates(data, LIMITS)
    assert "namespaces" in tree_gates and "namespaces" not in scan.gates()  # a stream counts them itself
    del tree_gates["namespaces"]
    assert scan.gates() == tree_gates == whole.gates()
    assert scan.start_tags == whole.start_tags == data.count(b"<") - data.count(b"</")
    assert scan.start_tags >= len(etree.fromstring(data).xpath("//*"))
    assert scan.flags == whole.flags
    assert scan.flags["dtd"] == (b"<!DOCTYPE" in data)
    assert scan.flags["cdata"] == (b"<![CDATA[" in data)


def test_a_text_too_long_for_a_window_says_so():
    with pytest.raises(ValueError):
        list(windows([b"<a>", b"x" * 100, b"x" * 100, b"</a>"], most=150))


# ---- the receipt and the rule layer on a file --------------------------------------------------------


@pytest.fixture
def small_large(monkeypatch, tmp_path):
    """`LARGE` and `STREAM_MIN` made small, so that a test dossier's form is decoded into a file and
    streamed from there; the temporary files in a folder of the test's own."""
    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setattr(leanbody, "LARGE", 64 * 1024)
    monkeypatch.setattr(pipeline, "STREAM_MIN", 64 * 1024)
    monkeypatch.setattr(judge_module, "STREAM_MIN", 64 * 1024)
    return folder


def spy(monkeypatch, module, name: str) -> list[type]:
    """The type of the first argument of each call of `module.name`."""
    seen: list[type] = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda data, *a, **k: seen.append(type(data)) or real(data, *a, **k))
    return seen


def summary(out) -> tuple:
    return out.accepted, out.layers, [(p.code, p.xpath, p.line) for p in out.problems], out.envelope, \
        [(s["valid"], s["mst"]) for s in out.signers], out.forms, out.sha256, out.size


@pytest.mark.parametrize("change", [None, (b"<STT>100</STT>", b"<STT>101</STT>"), (b"<TienLuong>", b"<TienLuong>x")])
def test_a_body_in_a_file_is_received_as_its_bytes(world, cfg, small_large, tmp_path, monkeypatch, change):
    body = dossier(world.signer(world.unit), rows=300, seed=3)
    if change:  # inside the signed form's base64: decode, change, encode (the signatures break)
        text = etree.fromstring(body).findtext(".//NoiDungFile")
        form = b64decode(text).replace(*change, 1)
        body = body.replace(text.encode(), b64encode(form))
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    caller, at = Caller(role="submitter", mst=UNIT.mst), datetime.now(UTC)
    streamed = spy(monkeypatch, pipeline, "stream_form")
    filed = receiver.receive(in_file(body, tmp_path), at, caller)
    assert streamed == [Spooled]  # the form went to a file, and was streamed from there
    held = receiver.receive(body, at, caller)
    assert streamed == [Spooled, bytes]
    assert summary(filed) == summary(held)
    assert filed.accepted is (change is None)
    assert not list(small_large.iterdir())  # the decoded form's file is gone


@pytest.mark.parametrize("aside", [0, 1])  # one pass, or the XSD in a forked helper (trust/aside.py)
@pytest.mark.parametrize("cut", ["the root's end tag", "a third"])
def test_a_form_cut_short_is_refused_as_on_the_tree(world, cfg, small_large, tmp_path, monkeypatch, cut, aside):
    """A signed form missing its end (not well-formed) is refused on the streaming path as on the
    tree. Without the root's end tag its canonical bytes are those of the whole form, so the
    signature holds: only the parse can refuse it. (lxml's iterparse given both a schema and
    resolve_entities=False ends such a parse without an error: the streaming pass must not.)"""
    signer = world.signer(world.unit)
    form = sign_form(samples.d02ts(300, seed=4, unit=UNIT), signer)
    short = form.rstrip()[: -len(b"</D02-TS>")] if cut == "the root's end tag" else form[: len(form) * 2 // 3]
    body = sign_envelope(samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", short)]), signer, sign_forms=False)
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits, validate_aside_from=aside)
    caller, at = Caller(role="submitter", mst=UNIT.mst), datetime.now(UTC)
    streamed = spy(monkeypatch, pipeline, "stream_form")
    filed = receiver.receive(in_file(body, tmp_path), at, caller)
    assert streamed == [Spooled]
    tree = receiver.receive(body, at, caller, stream=False)
    assert not tree.accepted and "XML-MALFORMED" in {p.code for p in tree.problems}, tree.problems
    assert summary(filed) == summary(tree)
    assert not list(small_large.iterdir())


@pytest.mark.parametrize(("head", "ascii"), [
    (b"<D02-TS/>", True), (b"\xef\xbb\xbf<?xml version='1.0' encoding='utf-8'?>\n<D02-TS/>", True),
    (b'<?xml version="1.0"?><D02-TS/>', True), (b'\r\n <?xml version="1.0" encoding="UTF8" standalone="yes"?>', True),
    (b'<?xml version="1.0" encoding="UTF-7"?>', False), (b'<?xml version="1.0" encoding="ISO-8859-1"?>', True),
    (b'<?xml version="1.0" encoding="windows-1258"?>', True), (b'<?xml version="1.0" encoding="JAVA"?>', False),
    (b'<?xml  encoding = "utf-16" version="1.0"?>', False), (b"\x4c\x6f\xa7\x94", False),  # EBCDIC "<?xm"
    (b"\xff\xfe<\x00?\x00", False), (b"", False),
    (b'<?xml version="1.0"' + b" " * 2000 + b'encoding="UTF-7"?>', False),  # not ended in the head: refused
    (b'<?xml version="1.0"' + b" " * 900 + b'encoding="UTF-8"?><a/>', True),
])  # fmt: skip
def test_ascii_markup_is_utf8_only(head, ascii):
    assert ascii_markup(head) is ascii


@pytest.mark.parametrize(("data", "bang"), [(b"<a/>", False), (b"<a>!</a>", False), (b"<a>!<!-- --></a>", True),
                                           (b"<!DOCTYPE a><a/>", True), (b"<a><![CDATA[x]]></a>", True), (b"! <", False)])
def test_markup_bang_is_a_search_for_the_two_bytes(data, bang):
    assert markup_bang(data) is bang is (b"<!" in data)


def as_utf7(form: bytes, markup: bool = False) -> bytes:
    """`form` in UTF-7 (the same characters: its signature holds); `markup`: every "<" spelt "+ADw-"."""
    text = form.decode("utf-8-sig").replace('encoding="utf-8"', 'encoding="UTF-7"', 1)
    declaration, rest = text.split("?>", 1)
    # each piece on its own: UTF-7 ends a piece's last base64 run with "-" (a "+" after it would go on)
    body = b"+ADw-".join(piece.encode("utf-7") for piece in rest.split("<")) if markup else rest.encode("utf-7")
    return declaration.encode() + b"?>" + body


def test_a_form_in_another_encoding_is_not_streamed():
    """The streaming pass (which expands internal entities: RESOLVE_ENTITIES) takes UTF-8 only:
    in UTF-7, which libxml2 reads, its byte gates would not see a DOCTYPE spelt "+ADw-!DOCTYPE"."""
    limits = XmlLimits()
    form = samples.d02ts(50, seed=6, unit=UNIT)
    assert streaming.stream_form(form, limits, None, ("LaoDong",)) is not None
    for other in (as_utf7(form), as_utf7(form, markup=True)):
        assert etree.fromstring(other, PARSER) is not None  # libxml2 reads it
        assert streaming.stream_form(other, limits, None, ("LaoDong",)) is None
    latin = form.decode("utf-8-sig").replace('encoding="utf-8"', 'encoding="ISO-8859-1"', 1)
    assert streaming.stream_form(latin.encode("latin-1", "xmlcharrefreplace"), limits, None, ("LaoDong",)) is not None


def test_a_large_form_in_utf7_is_refused_for_its_encoding(world, cfg, small_large, tmp_path, monkeypatch):
    signer = world.signer(world.unit)
    form = as_utf7(sign_form(samples.d02ts(300, seed=7, unit=UNIT), signer), markup=True)
    declaration, rest = form.split(b"?>", 1)
    form = declaration + b"?>+ADw-!DOCTYPE D02-TS +AFs-+ADw-!ENTITY x 'y'+AD4-+AF0-+AD4-" + rest
    assert b"<!" not in form
    body = sign_envelope(samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", form)]), signer, sign_forms=False)
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    out = receiver.receive(in_file(body, tmp_path), datetime.now(UTC), Caller(role="submitter", mst=UNIT.mst))
    assert not out.accepted and [p.code for p in out.problems] == ["XML-ENCODING"], out.problems
    assert not list(small_large.iterdir())


def test_a_large_form_is_validated_aside_unless_asked_not_to(world, cfg, small_large, tmp_path, monkeypatch):
    """A worker's Receiver forks the XSD helper for a large form (trust/aside.py), except for a call
    made while the other workers are busy (`aside=False`): the same verdict either way."""
    body = dossier(world.signer(world.unit), rows=300, seed=5)
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits, validate_aside_from=1)
    caller, at = Caller(role="submitter", mst=UNIT.mst), datetime.now(UTC)
    helpers = spy(monkeypatch, streaming, "validate_aside")
    busy = receiver.receive(in_file(body, tmp_path), at, caller, aside=False)
    assert helpers == []
    idle = receiver.receive(in_file(body, tmp_path), at, caller)
    assert helpers == [str]  # the form's file, by its path
    assert summary(busy) == summary(idle) and idle.accepted
    assert not list(small_large.iterdir())


def test_the_rule_layer_on_a_file_judges_as_on_the_bytes(small_large, tmp_path, monkeypatch):
    form = samples.d02ts(400, seed=12, unit=UNIT).replace(b"<STT>7</STT>", b"<STT>8</STT>", 1)
    body = dossier(None, forms=[("D02-TS", "D02-TS.xml", form)])
    streamed = spy(monkeypatch, judge_module, "streamed_rows")
    filed = judge_module.judge(in_file(body, tmp_path))
    held = judge_module.judge(body)
    assert streamed == [Spooled, bytes]
    assert [p.as_dict() for p in filed.problems] == [p.as_dict() for p in held.problems]
    assert "R-STT-DUP" in {p.code for p in filed.problems}
    assert filed.extracted == held.extracted and len(held.extracted.contribution_changes) >= 300
    assert not list(small_large.iterdir())


# ---- names bounded by the schema --------------------------------------------------------------------


def test_a_closed_schema_bounds_the_names_of_rows():
    from interchange.config import REPO_ROOT
    from interchange.forms.schema import SchemaSet

    schemas = SchemaSet(REPO_ROOT / "xsd")
    d02, tk1 = schemas.streaming("D02-TS"), schemas.streaming("TK1-TS")
    assert 0 < d02.longest_local_name <= XmlLimits().max_name_length
    assert tk1.longest_local_name is None  # its PhuLuc takes any element in no namespace


@pytest.mark.parametrize("name_length", [20, 1000, 1001])
def test_a_long_name_outside_the_rows_is_found_in_the_reduced_tree(name_length):
    """With the schema bounding every name a row can hold, the bytes are not scanned for long
    names; one where the schema lets anything in (the signature holder) is found in the reduced
    tree, and the tree path (parse_xml) refuses the form as it always did."""
    from interchange.config import REPO_ROOT
    from interchange.errors import Refusal
    from interchange.forms.schema import SchemaSet
    from interchange.trust.streaming import stream_form
    from interchange.xmlparse import parse_xml

    s = SchemaSet(REPO_ROOT / "xsd").streaming("D02-TS")
    name = "x:" + "n" * (name_length - 2)
    form = samples.d02ts(200, seed=5, unit=UNIT).replace(b"<Cky />", f'<Cky><{name} xmlns:x="urn:x"/></Cky>'.encode())
    with s.lock:
        streamed = stream_form(form, XmlLimits(), s.schema, s.row_tags, longest_local_name=s.longest_local_name)
    if name_length <= XmlLimits().max_name_length:
        assert streamed is not None and streamed.rows == 200
        parse_xml(form, XmlLimits())
    else:
        assert streamed is None
        with pytest.raises(Refusal) as refused:
            parse_xml(form, XmlLimits())
        assert refused.value.problems[0].code == "XML-NAME-TOO-LONG"

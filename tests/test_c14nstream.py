"""Streamed canonical XML against whole-document C14N (interchange/trust/streaming.py,
interchange/trust/c14nstream.py).

A large form is read row by row and its digest spliced from the rows' canonical bytes; a large
envelope text is cut out of the body and spliced back. Both must give exactly the digest of the
whole document canonicalised at once, as the verifier computes it (the Signature detached with its
tail kept, C14N 1.0 without comments): checked here on hundreds of generated documents with
namespaces (default and prefixed, redeclared, unused), a BOM, CDATA, character references,
attributes with special characters, comments, processing instructions and white space between
elements; and end to end through the receipt pipeline, streamed and not, on the same dossiers.
"""

from __future__ import annotations

import random
from base64 import b64decode, b64encode

import pytest
from lxml import etree

from interchange.devkit import samples
from interchange.errors import Refusal
from interchange.intake.pipeline import Receiver
from interchange.trust import leanbody, streaming
from interchange.trust.xmldsig import DSIG_NS
from interchange.xmlparse import parse_xml
from tests.c14nforms import LIMITS, PARSER, a_form, both, spliced_digest, summary, whole_digest
from tests.helpers import UNIT, dossier

# ---- generated documents --------------------------------------------------------------------------

TEXTS = ["", "plain", " spaced  out ", "a &amp; b", "&lt;tag&gt;", "x &#13; y", "tab&#9;and&#10;nl",
         "<![CDATA[ <cdata> & ]]>", "Tiếng Việt đầy đủ", "&#x1F600;", "quote \" and ' ", "\n    ", "a]]&gt;b"]
ATTRS = ['a="1"', "b='two'", 'c="&lt;&amp;&quot;"', 'd="&#9;&#10;&#13;x"', 'e="Việt"', 'f=">"']


def _text(rng: random.Random) -> str:
    return rng.choice(TEXTS)


def _row(rng: random.Random, tag: str, prefixes: list[str], own_namespaces: bool = True) -> str:
    attrs = " ".join(rng.sample(ATTRS, rng.randint(0, 3)))
    if rng.random() < 0.1:
        attrs += ' xml:lang="vi"'
    if prefixes and rng.random() < 0.3:
        attrs += f' {rng.choice(prefixes)}:q="v"'
    cells = []
    for i in range(rng.randint(0, 5)):
        name = f"{rng.choice(prefixes)}:c{i}" if prefixes and rng.random() < 0.2 else f"C{i}"
        inner = _text(rng)
        if rng.random() < 0.15:
            inner += "<!-- a comment -->" + _text(rng)
        if rng.random() < 0.1:
            inner += "<?pi data?>"
        if rng.random() < 0.1:
            inner += f"<Deep><Deeper>{_text(rng)}</Deeper></Deep>"
        if own_namespaces and rng.random() < 0.1:
            inner = '<Own xmlns:z="urn:z"><z:x z:y="1"/></Own>'
        cells.append(f"<{name}>{inner}</{name}>" if inner or rng.random() < 0.5 else f"<{name}/>")
    space = rng.choice(["", "\n      ", " "])
    return f"<{tag}{' ' + attrs if attrs else ''}>{space.join(cells)}</{tag}>"


def generated(seed: int, *, row_namespaces: bool = True) -> bytes:
    """A form of rows; `row_namespaces`: rows may declare namespaces and use those of their
    ancestors, else they use none (but xml:)."""
    rng = random.Random(seed)
    decls = []
    prefixes = []
    for p, uri in (("xsi", "http://www.w3.org/2001/XMLSchema-instance"), ("xsd", "http://www.w3.org/2001/XMLSchema"),
                   ("a", "urn:a&amp;b"), ("b", "urn:b")):
        if rng.random() < 0.5:
            decls.append(f'xmlns:{p}="{uri}"')
            prefixes.append(p)
    if rng.random() < 0.1:
        decls.append('xmlns="urn:default"')
    if rng.random() < 0.2:
        decls.append('xml:lang="vi"')
    ws = rng.choice(["", "\n", "\n  ", "\t"])
    head = "\ufeff" if rng.random() < 0.3 else ""
    if rng.random() < 0.7:
        head += '<?xml version="1.0" encoding="utf-8"?>\n'
    if rng.random() < 0.2:
        head += "<!-- before the root -->\n<?before root?>\n"
    parts = [f"<Form{' ' + ' '.join(decls) if decls else ''}>", f"{ws}<Head>{_text(rng)}</Head>"]
    list_decl = ""
    if prefixes and rng.random() < 0.2:
        list_decl = f' xmlns:{prefixes[0]}="urn:redeclared"'
    parts.append(f"{ws}<List{list_decl}>{_text(rng) if rng.random() < 0.3 else ''}")
    for _ in range(rng.randint(0, 40)):
        r = rng.random()
        if r < 0.08:
            parts.append(f"{ws}<Other>{_text(rng)}</Other>")
        elif r < 0.12:
            parts.append(f"{ws}<!-- between rows -->")
        elif r < 0.14:
            parts.append(f"{ws}<?between rows?>")
        elif r < 0.16:
            parts.append(_text(rng))
        parts.append(ws + _row(rng, "Row", prefixes if row_namespaces else [], row_namespaces))
    parts.append(f"{ws}</List>")
    if rng.random() < 0.3:
        parts.append(f"{ws}<Tail>{_row(rng, 'Row', prefixes if row_namespaces else [], row_namespaces)}</Tail>")
    sig = f'<Signature xmlns="{DSIG_NS}"><SignedInfo>x</SignedInfo></Signature>'
    parts.append(f"{ws}<Cky>{sig if rng.random() < 0.8 else ''}{_text(rng) if rng.random() < 0.3 else ''}</Cky>")
    parts.append(f"{ws}</Form>")
    if rng.random() < 0.2:
        parts.append("\n<!-- after --><?after root?>")
    return (head + "".join(parts)).encode("utf-8")


def rows_hold_namespaces(data: bytes) -> bool:
    """Does a Row, or an element in one, declare a namespace or use one (other than xml:)?"""
    for row in etree.fromstring(data, PARSER).iter("Row"):
        for el in row.iter(etree.Element):
            named = [el.tag, *(a for a in el.attrib if not a.startswith("{http://www.w3.org/XML/1998/namespace}"))]
            if el.nsmap != el.getparent().nsmap or any(n.startswith("{") for n in named):
                return True
    return False


# rows canonicalised one, two, three, five at a time (the batch boundaries fall everywhere) and as received
BATCHES = (1, 2, 3, 5, streaming.ROW_BATCH, streaming.ROW_BATCH)


@pytest.mark.parametrize("block", range(6))
def test_streamed_rows_digest_equals_whole_document_c14n(block, monkeypatch):
    monkeypatch.setattr(streaming, "ROW_BATCH", BATCHES[block])
    streamed = 0
    for seed in range(block * 100, block * 100 + 100):
        data = generated(seed, row_namespaces=False)
        form = streaming.stream_form(data, LIMITS, None, ("Row",))
        if form is None:
            # only the shape the module docstring names is refused: a default namespace over rows
            assert b'xmlns="urn:default"' in data, data
            continue
        streamed += 1
        assert spliced_digest(form.root, form.splice) == whole_digest(data), data
    assert streamed >= 80  # most shapes are streamed: the test compares, it does not skip


@pytest.mark.parametrize("block", range(3))
def test_rows_with_namespaces_digest_equals_whole_document_c14n(block, monkeypatch):
    monkeypatch.setattr(streaming, "ROW_BATCH", BATCHES[block * 2])
    outcomes = set()
    for seed in range(block * 100, block * 100 + 100):
        data = generated(seed)
        form = streaming.stream_form(data, LIMITS, None, ("Row",))
        outcomes.add((form is None, rows_hold_namespaces(data)))
        if form is None:  # only the shape the module docstring names is refused: a default namespace over rows
            assert b'xmlns="urn:default"' in data, data
        else:
            assert spliced_digest(form.root, form.splice) == whole_digest(data), data
    assert outcomes >= {(False, True), (False, False)}  # rows with namespaces and without were streamed


def test_reduced_tree_is_small_and_rows_are_counted():
    data = samples.d02ts(500, seed=3, unit=UNIT)
    form = streaming.stream_form(data, LIMITS, None, ("LaoDong",))
    assert form is not None and form.rows == 500
    assert len(list(form.root.iter())) < 20
    assert spliced_digest(form.root, form.splice) == whole_digest(data)


def test_a_changed_row_changes_the_spliced_digest():
    data = samples.d02ts(50, seed=4, unit=UNIT)
    changed = data.replace(b"<STT>37</STT>", b"<STT>38</STT>", 1)
    a = streaming.stream_form(data, LIMITS, None, ("LaoDong",))
    b = streaming.stream_form(changed, LIMITS, None, ("LaoDong",))
    assert spliced_digest(a.root, a.splice) != spliced_digest(b.root, b.splice)
    assert spliced_digest(b.root, b.splice) == whole_digest(changed)


@pytest.mark.parametrize("shape", [
    b'<Form xmlns="urn:d"><List><x:Row xmlns:x="urn:x"/><Row xmlns=""/></List></Form>',  # default over rows
    b"<Form><List><Row><Signature xmlns='" + DSIG_NS.encode() + b"'/></Row></List></Form>",  # inside a row
    b"<!DOCTYPE Form><Form><List><Row/></List></Form>",
    b"<Form><List><Row><a/><Row><b/></Row></Row><Row/></List></Form>",  # a row inside a row
    b"<Form><List><Row>not closed</List></Form>",
    b'<Form xmlns:r="relative"><List><Row/></List></Form>',  # C14N 1.0 refuses relative namespace URIs
])
def test_shapes_it_does_not_stream(shape):
    assert streaming.stream_form(shape, LIMITS, None, ("Row",)) is None


def test_rows_in_a_namespace_are_not_rows():
    data = b'<Form xmlns="urn:d"><List><Row/><Row/></List></Form>'
    form = streaming.stream_form(data, LIMITS, None, ("Row",))
    assert form.rows == 0 and spliced_digest(form.root, form.splice) == whole_digest(data)


# ---- the batches' boundaries, case by case ------------------------------------------------------

def cell_row(i: int, tail: str = "\n    ") -> str:
    """A row as the forms have them, with the text after it."""
    return (f"<Row>\n      <STT>{i}</STT>\n      <HoTen>Lê Văn {i}</HoTen>\n      <Empty></Empty><Void/>"
            f"\n      <Amount>{i * 1000}</Amount>\n    </Row>{tail}")


def runs(*lengths: int, between: str = "<Other>x</Other>\n    ") -> str:
    """Runs of adjacent rows of these lengths, one element between two runs."""
    return between.join("".join(cell_row(i) for i in range(n)) for n in lengths)


BOUNDARY_CASES = {
    "runs shorter, as long as and longer than a batch": a_form(runs(1, 3, 4, 5, 8, 9, 13)),
    "a run interrupted by a non-row element at each place": a_form(
        "".join(cell_row(i) + ("<Other/>" if i in (3, 4, 8) else "") for i in range(12))),
    "a run interrupted by a processing instruction": a_form(runs(4, 6, between="<?pi x?>")),
    "comments between rows (dropped: the rows stay adjacent)": a_form(
        "".join(cell_row(i, f" before <!-- c{i} --> after\n    ") for i in range(10))),
    "tails with references, CDATA, CR and markup characters": a_form("".join(
        cell_row(i, t) for i, t in enumerate(["&#13;\n", " &amp; &lt; &gt; ]]&gt; ", "<![CDATA[<x> & ]]>", "\r\n",
                                              "&#x9;&#xA;&#xD;", "Việt", "", " \t "] * 2))),
    "attributes that need escaping, out of order, xml:": a_form("".join(
        f'<Row z="1" a="&lt;&amp;&quot;&#9;&#10;&#13;&gt;" xml:lang="vi"><C b="\'" a=">"/>{i}</Row>\n    '
        for i in range(9))),
    "the last row is the last child, no text after it": a_form(runs(5).rstrip() + "<Row/><Row/>"),
    "the first row is the first child, text before it": a_form("text before" + runs(6)),
    "rows in two lists, two runs": a_form(runs(7), lists=2),
    "rows with the text 'xmlns' in them": a_form("".join(
        f'<Row t="xmlns:a=&quot;urn:a&quot;"><C>xmlns="urn:x" {i}</C></Row>' for i in range(6))),
    "empty rows and rows of text": a_form("<Row/><Row></Row><Row>t</Row>\n<Row/>" * 3),
    "no namespace in scope": a_form(runs(4, 5), decls=""),
    "one namespace under two prefixes in scope": a_form(runs(6), decls='xmlns:p="urn:a" xmlns:q="urn:a"'),
    "a processing instruction inside rows": a_form("<Row><?pi inside?></Row>\n    " * 9),
}


@pytest.mark.parametrize("batch", [1, 4, streaming.ROW_BATCH])
@pytest.mark.parametrize("case", BOUNDARY_CASES)
def test_batch_boundaries_equal_whole_document_c14n(case, batch, monkeypatch):
    monkeypatch.setattr(streaming, "ROW_BATCH", batch)
    data = BOUNDARY_CASES[case]
    form = streaming.stream_form(data, LIMITS, None, ("Row",))
    assert form is not None and form.rows == len(etree.fromstring(data, PARSER).findall(".//Row"))
    assert spliced_digest(form.root, form.splice) == whole_digest(data)


@pytest.mark.parametrize("at", [0, 3, 4, 9])  # the first row, a batch's last and first rows, the run's last
@pytest.mark.parametrize("shape", [
    ('<Row xmlns:z="urn:z">', "</Row>"),  # a row declares a namespace
    ('<Row xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">', "</Row>"),  # ... one its ancestor declares
    ('<Row><C xsi:nil="true"/>', "</Row>"),  # uses its ancestor's
    ('<Row><C xmlns:i="http://www.w3.org/2001/XMLSchema-instance" i:nil="true"/>', "</Row>"),  # ... by a prefix of its own
    ('<Row><C xmlns="urn:c"/>', "</Row>"),  # a default namespace inside
])
def test_a_row_with_namespaces_anywhere_in_a_run_is_streamed(shape, at, monkeypatch):
    monkeypatch.setattr(streaming, "ROW_BATCH", 4)
    start, end = shape
    data = a_form("".join(f"{start}{i}{end}\n    " if i == at else cell_row(i) for i in range(10)))
    form = streaming.stream_form(data, LIMITS, None, ("Row",))
    assert form is not None and form.rows == 10
    assert spliced_digest(form.root, form.splice) == whole_digest(data)


@pytest.mark.parametrize("at", [0, 3, 4, 9])
@pytest.mark.parametrize("levels", [61, 62])  # below a row of a_form: as deep as a tree may be, one more
@pytest.mark.parametrize("row", ["<Row>", '<Row xmlns:z="urn:z">', '<Row xsi:type="T">'])
def test_the_depth_of_a_row_anywhere_in_a_run_is_that_of_the_tree(row, levels, at, monkeypatch):
    """Whichever way the row is canonicalised (in a batch, alone where it is, alone in the
    wrapper), it is streamed exactly when the whole tree is not too deep."""
    monkeypatch.setattr(streaming, "ROW_BATCH", 4)
    deep = "<a>" * (levels - 1) + "<xsi:b/>" + "</a>" * (levels - 1)
    data = a_form("".join(f"{row}{deep}</Row>\n    " if i == at else cell_row(i) for i in range(10)))
    try:
        parse_xml(data, LIMITS)
        too_deep = False
    except Refusal:
        too_deep = True
    assert too_deep is (levels == 62)
    form = streaming.stream_form(data, LIMITS, None, ("Row",))
    assert (form is None) is too_deep
    assert too_deep or spliced_digest(form.root, form.splice) == whole_digest(data)


def test_depth_inside_rows_is_limited():
    deep = b"<Form><List><Row>" + b"<a>" * 70 + b"x" + b"</a>" * 70 + b"</Row></List></Form>"
    assert streaming.stream_form(deep, LIMITS, None, ("Row",)) is None
    shallow = b"<Form><List><Row>" + b"<a>" * 5 + b"x" + b"</a>" * 5 + b"</Row></List></Form>"
    form = streaming.stream_form(shallow, LIMITS, None, ("Row",))
    assert form is not None and spliced_digest(form.root, form.splice) == whole_digest(shallow)


# ---- the envelope's base64 texts --------------------------------------------------------------


def envelope_with(text: str, *, before: str = "", name: str = "NoiDungFile") -> bytes:
    return (f'\ufeff<?xml version="1.0" encoding="utf-8"?>\n<Hoso xmlns:xsi="urn:xsi">\n  <Files>{before}\n'
            f"    <F><{name}>{text}</{name}></F>\n  </Files>\n"
            f'  <CKy_Dvi><Signature xmlns="{DSIG_NS}"/></CKy_Dvi>\n</Hoso>').encode()


@pytest.mark.parametrize("wrap", [0, 76, 64])
def test_cut_texts_splice_and_decode_exactly(wrap):
    payload = bytes(random.Random(wrap).randbytes(100_000))
    text = b64encode(payload).decode()
    if wrap:
        text = "\n".join(text[i : i + wrap] for i in range(0, len(text), wrap))
    data = envelope_with(text)
    lean = leanbody.lean_body(data)
    assert lean is not None and len(lean.body) < 1000 + text.count("\n")  # line breaks are kept
    root = etree.fromstring(lean.body, PARSER)
    assert lean.fits(root)
    marker = next(iter(lean.cuts))
    assert lean.decode(marker) == payload
    assert root.find("Files/F/NoiDungFile").sourceline == etree.fromstring(data, PARSER).find("Files/F/NoiDungFile").sourceline
    assert spliced_digest(root, lean.splice()) == whole_digest(data)


@pytest.mark.parametrize("text", [
    "QUJD" * 20_000 + "AB==",  # padding bits that the XSD's base64Binary refuses
    "QUJD" * 20_000 + "A",  # not a whole quad
    "QUJD" * 20_000 + "&#65;AAA",  # a character reference: its canonical bytes differ
    "QUJD" * 20_000 + "\r\n",  # CR: the parser drops it
    "QU=D" * 20_000,  # "=" inside
    "QUJD" * 20_000 + "QUJA==",  # padding after a whole quad (the XSD's base64Binary refuses it)
])
def test_texts_not_cut(text):
    assert leanbody.lean_body(envelope_with(text)) is None


def test_a_cut_inside_a_comment_does_not_fit():
    text = b64encode(b"x" * 70_000).decode()
    data = envelope_with(b64encode(b"y" * 3).decode(), before=f"<!-- <NoiDungFile>{text}</NoiDungFile> -->")
    lean = leanbody.lean_body(data)
    assert lean is not None and not lean.fits(etree.fromstring(lean.body, PARSER))


# ---- end to end: the receipt pipeline, streamed and not ------------------------------------------


@pytest.fixture
def receiver(cfg) -> Receiver:
    return Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)


def test_large_dossier_same_outcome_streamed(world, receiver, monkeypatch):
    body = dossier(world.signer(world.unit), rows=1200, seed=7)
    calls = []
    real = streaming.stream_form
    monkeypatch.setattr("interchange.intake.pipeline.stream_form",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    streamed, whole = both(receiver, body)
    assert calls, "the form was large enough to be streamed"
    assert streamed.accepted and summary(streamed) == summary(whole)


@pytest.mark.parametrize("change", [
    (b"<STT>1000</STT>", b"<STT>1001</STT>"),  # a row changed after signing
    (b"<TienLuong>", b"<TienLuong>x"),  # ... and made invalid for the XSD too
])
def test_large_dossier_tampered_form_same_refusal(world, receiver, change):
    signer = world.signer(world.unit)
    form = samples.d02ts(1200, seed=8, unit=UNIT)
    from interchange.trust.dossier_signing import sign_form

    signed = sign_form(form, signer).replace(*change, 1)
    assert signed.count(change[1]) >= 1
    data = samples.envelope(UNIT, [("D02-TS", "D02-TS.xml", signed)], procedure="600")
    from interchange.trust.dossier_signing import sign_envelope

    body = sign_envelope(data, signer, sign_forms=False)
    streamed, whole = both(receiver, body)
    assert not streamed.accepted and streamed.layers["signature"] == "failed"
    assert summary(streamed) == summary(whole)


def test_large_dossier_invalid_form_same_schema_problems(world, receiver):
    form = samples.d02ts(1200, seed=9, unit=UNIT).replace(b"<TienLuong>", b"<TienLuong>x", 3)
    body = dossier(world.signer(world.unit), forms=[("D02-TS", "D02-TS.xml", form)])
    streamed, whole = both(receiver, body)
    assert streamed.layers["schema"] == "failed"
    assert summary(streamed) == summary(whole)


def test_large_dossier_envelope_changed_after_signing(world, receiver):
    body = dossier(world.signer(world.unit), rows=1200, seed=10)
    start = body.index(b"<NoiDungFile>") + 5000
    tampered = body[:start] + (b"A" if body[start:start + 1] != b"A" else b"B") + body[start + 1:]
    streamed, whole = both(receiver, tampered)
    assert not streamed.accepted and summary(streamed) == summary(whole)


# ---- the rule layer on a large form, row by row -------------------------------------------------


def test_streamed_judge_same_as_tree(monkeypatch):
    from interchange.rules import judge as judge_module

    form = samples.d02ts(1500, seed=12, unit=UNIT)
    form = form.replace(b"<STT>7</STT>", b"<STT>8</STT>", 1)  # a duplicate STT
    form = form.replace(b"<NgaySinh>", b"<NgaySinh>3", 2)  # dates that are not dates
    body = dossier(None, forms=[("D02-TS", "D02-TS.xml", form)])
    calls = []
    real = judge_module.streamed_rows
    monkeypatch.setattr(judge_module, "streamed_rows", lambda *a: calls.append(1) or real(*a))
    streamed = judge_module.judge(body)
    assert calls, "the form was large enough to be streamed"
    monkeypatch.setattr(judge_module, "STREAM_MIN", 10**12)
    whole = judge_module.judge(body)
    assert [p.as_dict() for p in streamed.problems] == [p.as_dict() for p in whole.problems]
    assert {p.code for p in streamed.problems} >= {"R-STT-DUP"}
    assert streamed.extracted == whole.extracted and streamed.errors == whole.errors
    assert len(whole.extracted.contribution_changes) >= 1000


# ---- signing a large dossier in bounded memory ---------------------------------------------------


def test_large_dossier_signed_in_bounded_memory_verifies(world, receiver, monkeypatch):
    from interchange.trust import dossier_signing

    monkeypatch.setattr(dossier_signing, "LARGE", 256 * 1024)  # the bounded path, on a test-sized dossier
    calls = []
    real = dossier_signing.stream_form
    monkeypatch.setattr(dossier_signing, "stream_form", lambda *a: calls.append(1) or real(*a))
    body = dossier(world.signer(world.unit), rows=1200, seed=13)
    assert calls and b"<zSpl" not in body and b"zSpl" not in body
    streamed, whole = both(receiver, body)
    assert whole.accepted, whole.problems
    assert summary(streamed) == summary(whole)
    form = etree.fromstring(b64decode(etree.fromstring(body).findtext(".//NoiDungFile")), PARSER)
    assert len(form.findall("NoiDung/LaoDong")) == 1200

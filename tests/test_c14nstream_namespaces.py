"""Rows that declare or use namespaces, streamed (interchange/trust/streaming.py, `_Rows`): among
rows that do not, at the batches' boundaries, every way a namespace gets into a row (declared on
it, on an ancestor, inside it, used in attributes only, xsi:, redeclared, rebound); each checked
against whole-document C14N, and the form actually streamed. The limits that whole bytes cannot
rule out for such forms (long prefixed names, attributes and declarations of one element) are
checked as the rows are read, as the tree path checks them; and signed forms with such rows are
judged through the receipt pipeline as on their whole tree.
"""

from __future__ import annotations

import pytest
from lxml import etree

from interchange.devkit import samples
from interchange.errors import Refusal
from interchange.intake import pipeline
from interchange.intake.pipeline import Receiver
from interchange.trust import streaming
from interchange.trust.dossier_signing import sign_envelope, sign_form
from interchange.xmlparse import parse_xml
from tests.c14nforms import LIMITS, NS, PARSER, a_form, both, spliced_digest, summary, whole_digest
from tests.helpers import UNIT


@pytest.fixture
def receiver(cfg) -> Receiver:
    return Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)


# ---- rows that declare or use namespaces, among rows that do not ----------------------------------

XSI = "http://www.w3.org/2001/XMLSchema-instance"
LIST_NS = 'xmlns:p="urn:p" xmlns:xsi2="' + XSI + '2"'  # declared on the rows' parent
NAMESPACED_ROWS = {  # a row with `{i}` in it
    "a prefix declared on the row, used": '<Row xmlns:z="urn:z"><z:C z:a="1">{i}</z:C></Row>',
    "a prefix declared on the row, before the inherited ones, unused": '<Row xmlns:a0="urn:a0"><C>{i}</C></Row>',
    "a prefix declared on the row and inside it": '<Row xmlns:z="urn:z"><C xmlns:y="urn:y"><y:D z:a="{i}"/></C></Row>',
    "prefixes declared on the root and on the list, used": "<Row><xsd:C>{i}</xsd:C><p:D/></Row>",
    "an ancestor's prefix in attributes only": '<Row p:a="{i}"><C xsd:b="2" a="3"/></Row>',
    "xsi:type and xsi:nil": '<Row xsi:type="RowType"><C xsi:nil="true"/><D>{i}</D></Row>',
    "a default namespace declared on the row itself (not a row then)": '<Row xmlns="urn:d"><C>{i}</C></Row>',
    "xmlns='' on a row (nothing to undeclare)": '<Row xmlns=""><C>{i}</C></Row>',
    "a default namespace declared inside a row": '<Row><C xmlns="urn:c"><D>{i}</D></C><E/></Row>',
    "redundant redeclarations": f'<Row xmlns:xsi="{XSI}"><C xmlns:xsi="{XSI}" xmlns:p="urn:p" xsi:nil="true">{{i}}</C></Row>',
    "a prefix rebound inside a row": '<Row><C xmlns:xsi="urn:not-xsi" xsi:a="1"><xsi:D>{i}</xsi:D></C><E xsi:nil="1"/></Row>',
    "a prefix rebound on the row": '<Row xmlns:p="urn:other" p:a="{i}"><p:C/></Row>',
    "a namespace name with characters to escape": '<Row xmlns:e="urn:a&amp;b%22c" e:x="{i}"/>',
    "an ancestor's namespace declared again under another prefix": f'<Row xmlns:i="{XSI}"><C i:nil="true"/><D xsi:nil="1">{{i}}</D></Row>',
}


def form_with(rows: int, namespaced: str, at: set[int]) -> bytes:
    """A form of `rows` rows under a list that declares namespaces, those `at` namespaced ones."""
    body = "".join((namespaced if i in at else "<Row><C>{i}</C><D a='{i}'/></Row>").format(i=i) + "\n    "
                   for i in range(rows))
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<Form {NS}>\n  <Head>h</Head>\n  <List {LIST_NS}>\n    '
            f"{body}</List>\n  <Cky/>\n</Form>").encode()


PLACES = {  # rows 0-63 are the first batch, 64-127 the second
    "the first": {0}, "in the middle of a batch": {30}, "a batch's last (63)": {63}, "the next batch's first (64)": {64},
    "its second (65)": {65}, "63, 64 and 65": {63, 64, 65}, "the last": {129}, "every other": set(range(0, 130, 2)),
    "all": set(range(130)),
}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("case", NAMESPACED_ROWS)
def test_namespaced_rows_among_others_are_streamed_and_equal_whole_document_c14n(case, place):
    data = form_with(130, NAMESPACED_ROWS[case], PLACES[place])
    form = streaming.stream_form(data, LIMITS, None, ("Row",))
    if not etree.fromstring(data, PARSER).findall(".//Row"):  # 130 declarations and no row's end between them:
        assert form is None  # more than one element may hold, as far as this pass can tell
        return
    assert form is not None and form.rows == len(etree.fromstring(data, PARSER).findall(".//Row"))
    assert form.rows >= 130 - len(PLACES[place])
    assert form.root.find(".//Row") is None  # the rows are out of the tree
    assert spliced_digest(form.root, form.splice) == whole_digest(data)


@pytest.mark.parametrize("shape", [
    # a namespace bound to two prefixes over the rows, used in a batch after the first (whose rows
    # are read after the declarations): moved, where lxml may rename it
    b'<Form xmlns:p="urn:a" xmlns:q="urn:a"><List><Row/><Row><q:C/><p:D/></Row></List></Form>',
    b'<Form xmlns="urn:d"><List><Row xmlns="" xmlns:z="urn:z"/></List></Form>',  # default over rows, declaring
])
def test_namespaced_shapes_it_does_not_stream(shape, monkeypatch):
    monkeypatch.setattr(streaming, "ROW_BATCH", 1)
    assert streaming.stream_form(shape, LIMITS, None, ("Row",)) is None
    assert whole_digest(shape)  # a well-formed document: the tree path reads it


def test_a_namespace_under_two_prefixes_used_where_it_was_declared_is_streamed():
    data = b'<Form xmlns:p="urn:a" xmlns:q="urn:a"><List><Row><q:C/><p:D q:a="1"/></Row><Row/></List></Form>'
    form = streaming.stream_form(data, LIMITS, None, ("Row",))
    assert form is not None and spliced_digest(form.root, form.splice) == whole_digest(data)


@pytest.mark.parametrize("at", [0, 100])  # in the first batch (read after the root's declarations), in a later one
@pytest.mark.parametrize("where", ["on the row", "on the root"])
@pytest.mark.parametrize("name_length", [1000, 1001])
def test_a_long_prefixed_name_in_a_row_is_found(where, name_length, at):
    """With the schema bounding every name in no namespace, the bytes are not scanned for long
    names: a long prefixed one in a row (an xsi: attribute, allowed anywhere) is found as the row
    is canonicalised, and the form refused exactly when parse_xml refuses it."""
    from interchange.forms.schema import default_schema_set

    s = default_schema_set().streaming("D02-TS")
    prefix = "x" * (name_length - len(":noNamespaceSchemaLocation"))
    decl = f'xmlns:{prefix}="{XSI}"'
    attr = f'{prefix}:noNamespaceSchemaLocation="D02-TS.xsd"'
    parts = samples.d02ts(200, seed=5, unit=UNIT).split(b"<LaoDong>")
    parts[at + 1] = f" {decl if where == 'on the row' else ''} {attr}>".encode() + parts[at + 1]
    form = b"<LaoDong>".join(parts).replace(b"<LaoDong> ", b"<LaoDong ")
    if where == "on the root":  # instead of xsi (one namespace under two prefixes there: not streamed)
        form = form.replace(f'xmlns:xsi="{XSI}"'.encode(), decl.encode(), 1)
    with s.lock:
        streamed = streaming.stream_form(form, LIMITS, s.schema, s.row_tags, longest_local_name=s.longest_local_name)
    if name_length <= LIMITS.max_name_length:
        assert streamed is not None and streamed.rows == 200
        assert spliced_digest(streamed.root, streamed.splice) == whole_digest(form)
        parse_xml(form, LIMITS)
    else:
        assert streamed is None
        with pytest.raises(Refusal) as refused:
            parse_xml(form, LIMITS)
        assert refused.value.problems[0].code == "XML-NAME-TOO-LONG"


def tree_refuses(data: bytes) -> bool:
    try:
        parse_xml(data, LIMITS)
    except Refusal:
        return True
    return False


@pytest.mark.parametrize("at", [0, 70])  # in the first batch, in a later one
@pytest.mark.parametrize("many", [0, 1])  # as many as an element may hold, one more
@pytest.mark.parametrize("what", ["attributes", "declarations"])
def test_an_element_in_a_row_holds_as_many_attributes_and_declarations_as_in_a_tree(what, many, at):
    """Counted as the rows are read (the bytes hold more than one element may): streamed exactly
    when the whole tree is not refused. (Declarations are counted from one row's end to the
    next: those of the root, read before the first row, count with the first row's.)"""
    limit = (LIMITS.max_attributes if what == "attributes" else LIMITS.max_namespaces) + many
    made = " ".join(f'a{k}="{k}"' if what == "attributes" else f'xmlns:n{k}="urn:{k}"' for k in range(limit))
    body = "".join((f"<Row><C {made}/></Row>" if i == at else f'<Row xsi:type="T" xmlns:r="urn:r"><C>{i}</C></Row>')
                   + "\n    " for i in range(130))
    data = a_form(body)
    form = streaming.stream_form(data, LIMITS, None, ("Row",))
    assert tree_refuses(data) is bool(many)
    if what == "declarations" and at == 0:
        assert form is None  # with the root's two
    else:
        assert (form is None) is bool(many)
    assert form is None or spliced_digest(form.root, form.splice) == whole_digest(data)


# ---- end to end: signed forms with such rows, through the receipt pipeline -------------------------


def xsi_rows(rows: int) -> tuple[str, bytes]:
    form = samples.d02ts(rows, seed=21, unit=UNIT)
    return "D02-TS", form.replace(b"<LaoDong>", b'<LaoDong xsi:type="LaoDong" xsi:noNamespaceSchemaLocation="D02.xsd">')


def appendix_rows(rows: int) -> tuple[str, bytes]:
    """A TK1-TS whose rows end with a PhuLuc (xs:any) of elements in namespaces, every third one
    declared on the row."""
    form = samples.tk1ts(rows, seed=22)
    parts = form.split(b"</LaoDong>")
    for i in range(len(parts) - 1):
        on_row = i % 3 == 0
        declared = "" if on_row else ' xmlns:q="urn:q"'
        appendix = (f'<PhuLuc>ghi chú {i} <q:Note{declared} q:k="{i}">x</q:Note>'
                    f'<r:N xmlns:r="urn:r" xsi:nil="true"/></PhuLuc>\n    ')
        parts[i] += appendix.encode()
        if on_row:
            parts[i] = parts[i].replace(b"<LaoDong>", b'<LaoDong xmlns:q="urn:q">')
    return "TK1-TS", b"</LaoDong>".join(parts)


@pytest.mark.parametrize("tamper", [False, True])
@pytest.mark.parametrize("made", [xsi_rows, appendix_rows])
def test_rows_with_namespaces_signed_same_outcome_streamed(world, receiver, monkeypatch, made, tamper):
    """A signed form whose rows declare or use namespaces: streamed (a StreamedForm, not the tree
    path), and its signature judged as on the whole tree, valid or broken after signing."""
    monkeypatch.setattr(pipeline, "STREAM_MIN", 64 * 1024)
    code, form = made(400)
    signer = world.signer(world.unit)
    signed = sign_form(form, signer)
    if tamper:  # a namespaced row changed after signing, still valid for the XSD
        change = (b"<STT>200</STT>", b"<STT>201</STT>") if code == "D02-TS" else (b'q:k="200"', b'q:k="201"')
        assert change[0] in signed
        signed = signed.replace(*change, 1)
    data = samples.envelope(UNIT, [(code, f"{code}.xml", signed)], procedure="600" if code == "D02-TS" else "602",
                            ivan=None)
    body = sign_envelope(data, signer, sign_forms=False)
    results = []
    real = streaming.stream_form
    monkeypatch.setattr(pipeline, "stream_form", lambda *a, **k: results.append(real(*a, **k)) or results[-1])
    streamed, whole = both(receiver, body)
    assert len(results) == 1 and isinstance(results[0], streaming.StreamedForm) and results[0].rows == 400
    assert summary(streamed) == summary(whole)
    assert streamed.accepted is not tamper, streamed.problems
    assert streamed.layers["signature"] == ("failed" if tamper else "passed")

"""Fuzzing the receipt pipeline (issue 5, item 7): valid signed dossiers mutated at the byte level
and at the tree level, in the envelope and in an embedded form.

The properties, for every mutant:
- the `Receiver` returns an `Outcome` (never raises) within the example deadline;
- it is accepted only if the change is invisible to canonical XML (a comment, white space inside
  a tag, quote style, the unsigned ds:Object...): its canonical content (envelope and every form,
  signatures left out, as the enveloped transform leaves them out) equals the original's; and
  then the values read are the original's.
A form is mutated inside an envelope that the unit signs again, so that only the form's own
signature stands between the mutant and a receipt. ~30 mutants also go through the HTTP API,
which never answers 5xx.

Deterministic: `derandomize`, no example database, and a dossier that is the same bytes on every
run (a fixed key and chain in tests/data/attacks/, fixed signing time and date). About 15 s;
INTERCHANGE_FUZZ_SCALE=20 runs twenty times as many examples.
"""

from __future__ import annotations

import base64
import binascii
import copy
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from lxml import etree

from interchange.config import Config
from interchange.devkit import pki, samples
from interchange.intake.pipeline import Caller, Outcome, Receiver
from interchange.trust.dossier_signing import sign_envelope, sign_form
from interchange.trust.xmldsig import SIGNATURE_TAG, DocumentSigner, to_bytes
from tests.helpers import FORM_PATH, UNIT, XML, listed, start_api

NOW = datetime.now(UTC)
FIXED_PKI = Path(__file__).parent / "data" / "attacks" / "fuzz-unit.pem"  # key, then unit, CA, root
SIGNED_AT = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)
CREATED = "02/11/2026"
CALLER = Caller("submitter", mst=UNIT.mst)
_FUZZ = settings(
    deadline=timedelta(seconds=2),  # per example: a hang or a blow-up fails the test
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def fuzz(examples: int) -> settings:
    """INTERCHANGE_FUZZ_SCALE=20 runs twenty times as many examples (deterministically)."""
    return settings(_FUZZ, max_examples=examples * int(os.environ.get("INTERCHANGE_FUZZ_SCALE", "1")))


# --- the original and the oracle ----------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Original:
    body: bytes  # the signed envelope
    d02: bytes  # its signed D02-TS, as embedded
    tk1: bytes  # its signed TK1-TS
    signer: DocumentSigner  # the unit's
    reading: dict  # what the Receiver read, see `reading`

    def __repr__(self) -> str:
        return f"Original({len(self.body)} bytes)"

    def _repr_pretty_(self, printer, cycle) -> None:  # what hypothesis prints on failure
        printer.text(repr(self))


_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True, remove_comments=True
)


def _without_signatures(root: etree._Element) -> etree._Element:
    """Signatures removed, their tails kept (the enveloped-signature transform)."""
    for signature in list(root.iter(SIGNATURE_TAG)):
        parent, previous = signature.getparent(), signature.getprevious()
        if signature.tail and previous is not None:
            previous.tail = (previous.tail or "") + signature.tail
        elif signature.tail:
            parent.text = (parent.text or "") + signature.tail
        parent.remove(signature)
    return root


def _canonical(data: bytes) -> bytes | None:
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError:
        return None
    return etree.tostring(_without_signatures(root).getroottree(), method="c14n", with_comments=False)


def view(body: bytes, *, contents: bool = True) -> tuple | None:
    """The canonical envelope and forms without their signatures, or None if unreadable. With
    `contents` False the envelope's NoiDungFile and DoDaiFile are left out (the forms stand for
    them): a form changed where it makes no difference still changes its base64."""
    try:
        root = etree.fromstring(body, _PARSER)
        files = []
        for file_el in root.iterfind(FORM_PATH):
            content = file_el.find("NoiDungFile")
            files.append(base64.b64decode("".join((content.text or "").split())))
            if not contents:
                content.text = file_el.find("DoDaiFile").text = ""
    except (etree.XMLSyntaxError, binascii.Error, ValueError, AttributeError):
        return None
    return _canonical(etree.tostring(root)), tuple(_canonical(f) for f in files)


def reading(out: Outcome) -> dict:
    """What the Receiver read (file sizes aside: insignificant changes to a form change its length)."""
    envelope = {k: v for k, v in out.envelope.items() if k != "files"}
    envelope["files"] = [(f["code"], f["name"], f["kind"]) for f in out.envelope.get("files", [])]
    envelope["forms"] = [(f["code"], f["name"]) for f in out.forms]
    return envelope


def check(receiver: Receiver, original: Original, body: bytes, *, resigned: bool = False) -> Outcome:
    """`resigned`: the unit signed the envelope again around a mutated form."""
    out = receiver.receive(body, NOW, CALLER)
    assert isinstance(out, Outcome)
    if currently_in_test_context():  # pytest --hypothesis-show-statistics
        event("accepted" if out.accepted else f"refused at {out.failed_layer or 'caller'}")
    if out.accepted:
        same = view(body, contents=not resigned) == view(original.body, contents=not resigned)
        assert same, "accepted, but the signed content differs from the original's"
        assert reading(out) == original.reading
    return out


def packed(original: Original, d02: bytes) -> bytes:
    """The original envelope around a (mutated) D02-TS, signed again by the unit."""
    files = [("D02-TS", "D02-TS.xml", d02), ("TK1-TS", "TK1-TS.xml", original.tk1)]
    data = samples.envelope(UNIT, files, created=CREATED)
    return sign_envelope(data, original.signer, sign_forms=False, signing_time=SIGNED_AT)


@pytest.fixture(scope="module")
def signer() -> DocumentSigner:
    """A fixed key and chain (valid 2020-2049), so that every run fuzzes the very same bytes."""
    return DocumentSigner(pki.load_key_pem(FIXED_PKI), pki.load_certs_pem(FIXED_PKI))


def trust_fixed_root(cfg: Config, signer: DocumentSigner) -> Config:
    pki.write_certs_pem(cfg.path(cfg.trust.anchors_dir) / "fuzz-root.pem", signer.chain[-1:])
    return cfg


@pytest.fixture(scope="module")
def receiver(signer: DocumentSigner, tmp_path_factory) -> Receiver:
    cfg = Config()
    cfg.base_dir = tmp_path_factory.mktemp("fuzz")
    cfg.trust.anchors_dir, cfg.trust.crl_dir = "trusted", "crl"
    cfg = trust_fixed_root(cfg, signer)
    return Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)


@pytest.fixture(scope="module")
def original(signer: DocumentSigner, receiver: Receiver) -> Original:
    d02 = sign_form(samples.d02ts(2, seed=7), signer, signing_time=SIGNED_AT)
    tk1 = sign_form(samples.tk1ts(1, seed=7), signer, signing_time=SIGNED_AT)
    files = [("D02-TS", "D02-TS.xml", d02), ("TK1-TS", "TK1-TS.xml", tk1)]
    body = sign_envelope(
        samples.envelope(UNIT, files, created=CREATED), signer, sign_forms=False, signing_time=SIGNED_AT
    )
    out = receiver.receive(body, NOW, CALLER)
    assert out.accepted, out.problems
    return Original(body, d02, tk1, signer, reading(out))


def test_the_original_is_received_and_survives_a_no_op(receiver, original):
    assert check(receiver, original, original.body).accepted
    assert check(receiver, original, packed(original, original.d02), resigned=True).accepted


# --- byte-level mutations ---------------------------------------------------------------------

TOKENS = (
    b"<", b">", b"&", b"/", b'"', b"'", b"=", b" ", b"\n", b"\x00", b"\xff", b"\xc0\xbc",
    b"<!-- x -->", b"<?pi x?>", b"<![CDATA[x]]>", b"&amp;", b"&#0;", b"&#x41;", b"&lt;",
    b"<!DOCTYPE x>", b'<!ENTITY e "x">', b" Id=\"x\"", b" xmlns:a='urn:a'", b"<a/>", b"</a>",
)  # fmt: skip

ByteEdit = tuple


def byte_edits(data: bytes) -> st.SearchStrategy[ByteEdit]:
    """Edits anywhere, or (half the time) at markup: a '<', '>', '"', '=' or '&' (base64, most of
    an envelope, has none of those but padding)."""
    markup = [i for i, c in enumerate(data) if c in b'<>"=&']
    position = st.integers(0, len(data) - 1) | st.sampled_from(markup)
    length = st.integers(1, 64)
    return st.one_of(
        st.tuples(st.just("flip"), position, st.integers(1, 255)),
        st.tuples(st.just("insert"), position, st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("delete"), position, length),
        st.tuples(st.just("truncate"), position),
        st.tuples(st.just("duplicate"), position, length, position),
    )


def random_byte_edit(rng: random.Random, size: int) -> ByteEdit:
    """The same edits for the HTTP drive, from a seeded generator."""
    kind = rng.choice(["flip", "insert", "delete", "truncate", "duplicate"])
    at = rng.randrange(size)
    return {
        "flip": (kind, at, rng.randrange(1, 256)),
        "insert": (kind, at, rng.choice(TOKENS)),
        "delete": (kind, at, rng.randrange(1, 65)),
        "truncate": (kind, at),
        "duplicate": (kind, at, rng.randrange(1, 65), rng.randrange(size)),
    }[kind]


def apply_bytes(data: bytes, edit: ByteEdit) -> bytes:
    kind, at = edit[0], min(edit[1], len(data) - 1)
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ edit[2]]) + data[at + 1 :]
    if kind == "insert":
        return data[:at] + edit[2] + data[at:]
    if kind == "delete":
        return data[:at] + data[at + edit[2] :]
    if kind == "truncate":
        return data[:at]
    chunk = data[at : at + edit[2]]  # duplicate a range somewhere else
    to = min(edit[3], len(data))
    return data[:to] + chunk + data[to:]


@fuzz(250)
@given(data=st.data())
def test_byte_mutations_of_the_envelope(receiver, original, data):
    body = original.body
    for edit in data.draw(st.lists(byte_edits(body), min_size=1, max_size=3)):
        body = apply_bytes(body, edit) or b"<"
    check(receiver, original, body)


@fuzz(120)
@given(data=st.data())
def test_byte_mutations_of_a_form(receiver, original, data):
    form = original.d02
    for edit in data.draw(st.lists(byte_edits(form), min_size=1, max_size=3)):
        form = apply_bytes(form, edit) or b"<"
    check(receiver, original, packed(original, form), resigned=True)


# --- tree-level mutations ---------------------------------------------------------------------

TEXTS = st.one_of(
    st.sampled_from(["", " ", "\n  ", "600", "0101234565", "0312345673", "11/2026", "x"]),
    st.text(alphabet="0123456789 aAzZđĐếệ<>&\"'/-.\n\t", max_size=12),
)
NAMES = (
    "NoiDung",
    "Cky",
    "CKy_Dvi",
    "LaoDong",
    "MaSoThue",
    "FileToKhai",
    "Signature",
    "Object",
    "Reference",
    "x",
)
ATTRIBUTES = (
    "Id",
    "ID",
    "x",
    "URI",
    "Algorithm",
    "{urn:fuzz}a",
    "{http://www.w3.org/XML/1998/namespace}space",
)

TreeEdit = tuple


def tree_edits(size: int) -> st.SearchStrategy[TreeEdit]:
    """Edits of the element with document-order index i (0 = the root)."""
    index = st.integers(0, size - 1)
    return st.one_of(
        st.tuples(st.just("delete"), index),
        st.tuples(st.just("duplicate"), index),
        st.tuples(st.just("move"), index, index),
        st.tuples(st.just("text"), index, TEXTS),
        st.tuples(st.just("tail"), index, TEXTS),
        st.tuples(st.just("attribute"), index, st.sampled_from(ATTRIBUTES), TEXTS),
        st.tuples(st.just("rename"), index, st.sampled_from(NAMES)),
    )


def random_tree_edit(rng: random.Random, size: int) -> TreeEdit:
    kind = rng.choice(["delete", "duplicate", "move", "text", "tail", "attribute", "rename"])
    i, j, text = rng.randrange(size), rng.randrange(size), rng.choice(["", " ", "600", "1", "x<&"])
    return {
        "delete": (kind, i),
        "duplicate": (kind, i),
        "move": (kind, i, j),
        "text": (kind, i, text),
        "tail": (kind, i, text),
        "attribute": (kind, i, rng.choice(ATTRIBUTES), text),
        "rename": (kind, i, rng.choice(NAMES)),
    }[kind]


def _local_rename(el: etree._Element, name: str) -> None:
    """Renamed within its own namespace: a namespace the envelope schema has not seen is a separate
    test (test_namespaced_renames_in_the_envelope_never_raise)."""
    namespace = etree.QName(el).namespace
    el.tag = f"{{{namespace}}}{name}" if namespace else name


def apply_tree(root: etree._Element, edit: TreeEdit) -> None:
    elements = list(root.iter(etree.Element))
    kind, el = edit[0], elements[edit[1] % len(elements)]
    parent = el.getparent()
    if kind == "text":
        el.text = edit[2]
    elif kind == "tail" and parent is not None:
        el.tail = edit[2]
    elif kind == "attribute":
        el.set(edit[2], edit[3])
    elif kind == "rename":
        _local_rename(el, edit[2])
    elif kind == "delete" and parent is not None:
        parent.remove(el)
    elif kind == "duplicate" and parent is not None:
        el.addnext(copy.deepcopy(el))
    elif kind == "move" and parent is not None:
        target = elements[edit[2] % len(elements)]
        if el not in target.iterancestors() and target is not el:
            target.append(el)


def _mutated_tree(data: bytes, edits) -> bytes:
    root = etree.fromstring(data)
    for edit in edits:
        apply_tree(root, edit)
    return to_bytes(root)


def _size(data: bytes) -> int:
    return sum(1 for _ in etree.fromstring(data).iter(etree.Element))


@fuzz(200)
@given(data=st.data())
def test_tree_mutations_of_the_envelope(receiver, original, data):
    edits = data.draw(st.lists(tree_edits(_size(original.body)), min_size=1, max_size=3))
    body = _mutated_tree(original.body, edits)
    check(receiver, original, body)


@fuzz(120)
@given(data=st.data())
def test_tree_mutations_of_a_form(receiver, original, data):
    edits = data.draw(st.lists(tree_edits(_size(original.d02)), min_size=1, max_size=3))
    form = _mutated_tree(original.d02, edits)
    check(receiver, original, packed(original, form), resigned=True)


@fuzz(25)
@given(data=st.data())
def test_namespaced_renames_in_the_envelope_never_raise(receiver, original, data):
    root = etree.fromstring(original.body)
    outside_signature = [
        el for el in root.iter(etree.Element) if SIGNATURE_TAG not in {a.tag for a in el.iterancestors()}
    ]
    el = outside_signature[data.draw(st.integers(0, len(outside_signature) - 1))]
    el.tag = data.draw(st.sampled_from(["{urn:fuzz}x", "{http://www.w3.org/2000/09/xmldsig#}Object"]))
    check(receiver, original, to_bytes(root))


# --- through the HTTP API ---------------------------------------------------------------------


def http_mutants(original: Original) -> list[tuple[bytes, bool]]:
    """30 (mutant, resigned) from a fixed seed: byte and tree edits of the envelope, and of a form
    in an envelope signed again."""
    rng = random.Random(20261122)

    def form_mutant(edit: Callable[[bytes], bytes]) -> tuple[bytes, bool]:
        form = edit(original.d02) or b"<"
        return packed(original, form), True

    makers: list[Callable[[], tuple[bytes, bool]]] = [
        lambda: (apply_bytes(original.body, random_byte_edit(rng, len(original.body))), False),
        lambda: form_mutant(lambda d: apply_bytes(d, random_byte_edit(rng, len(d)))),
        lambda: (_mutated_tree(original.body, [random_tree_edit(rng, _size(original.body))]), False),
        lambda: form_mutant(lambda d: _mutated_tree(d, [random_tree_edit(rng, _size(d))])),
    ]
    mutants: list[tuple[bytes, bool]] = []
    while len(mutants) < 30:
        body, resigned = makers[len(mutants) % len(makers)]()
        if body:
            mutants.append((body, resigned))
    return mutants


async def test_fuzzed_bodies_over_http_never_get_a_5xx(original, signer, cfg, aiohttp_client):
    api = await start_api(trust_fixed_root(cfg, signer), aiohttp_client)
    received = set()
    for body, resigned in http_mutants(original):
        resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys["unit"]})
        notice = await resp.read()
        assert resp.status in (200, 202, 403, 422), (resp.status, notice[:300])
        if resp.status == 202:
            assert view(body, contents=not resigned) == view(original.body, contents=not resigned)
            received.add(body)
    assert len(await listed(api, "received")) == len(received)

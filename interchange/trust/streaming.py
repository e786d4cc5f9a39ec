"""Large dossiers in bounded memory: the envelope without its base64 texts, a form without its rows.

A 50,000-row D02-TS is a 62 MiB form inside an 83 MiB base64 text; as trees they took 14 times
their size. Two ways keep the memory near the size of the bytes, each falling back to the whole
tree (the same verdict, as before) whenever an input is not of the shape it handles:

- `lean_body`: each large `<NoiDungFile>` text that is valid base64 (as Python and the XSD's
  base64Binary read it) and holds nothing but the base64 alphabet and white space other than CR
  (so that its canonical bytes are its raw bytes) is cut out of the body and replaced by a marker
  text (`trust/c14nstream.py`) with the same number of line breaks (line numbers do not move).
  The small body is parsed, validated and read as before; the file's content is decoded from the
  body's bytes, and the envelope's digest splices the raw text back in. The caller checks that each
  marker is exactly the text of one NoiDungFile element (`LeanBody.fits`): a cut that fell inside
  a comment, a CDATA section or a processing instruction does not.
- `stream_form`: one pass of `etree.iterparse` over a form, validating it against its XSD while
  it parses (libxml2's streaming validation of the whole form), canonicalising each row (an element
  of a repeated list of the XSD) when it ends into a spool file, and dropping it. Each run of
  adjacent rows leaves one empty marker element in the reduced tree; the form's signature is then
  verified on the reduced tree with the rows' canonical bytes spliced back in. A row's canonical
  bytes are lxml's C14N of its subtree less the namespace declarations inherited from its
  ancestors (which whole-document C14N writes on the ancestor that declares them): the row may not
  use a default namespace from an ancestor nor redeclare an inherited prefix otherwise.
  Any other shape, a shape limit the bytes cannot rule out, a syntax or schema error, a signature
  inside a row: None, and the caller takes the tree path (which also gives the readable errors).
"""

from __future__ import annotations

import binascii
import functools
import io
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from lxml import etree

from interchange.errors import Refusal
from interchange.trust.c14nstream import Part, Splice, new_token
from interchange.trust.xmldsig import SIGNATURE_TAG
from interchange.xmlparse import XmlLimits, parse_xml, shape_gates

CUT_MIN = 64 * 1024  # smaller texts stay in the tree
STREAM_MIN = 1024 * 1024  # smaller forms are read as trees: streaming pays only for large ones
_CHUNK = 4 * 1024 * 1024
_NOT_BASE64_TEXT = re.compile(rb"[^A-Za-z0-9+/= \t\n]")
_PAD_BEFORE_ONE = frozenset(b"AEIMQUYcgkosw048")  # base64Binary: the last character before "="
_PAD_BEFORE_TWO = frozenset(b"AQgw")  # ... and before "=="


# ---- the envelope's base64 texts -----------------------------------------------------------------


@dataclass(frozen=True)
class CutText:
    marker: str  # the text that stands in the small body for the cut-out one
    start: int  # the raw text's bytes in the source body: [start, end)
    end: int
    blanks: int  # white space characters in it
    decoded: bytes | None = None  # when decoded already to check it (a text without white space)


@dataclass
class LeanBody:
    source: bytes
    body: bytes  # the source with every cut text replaced by its marker
    cuts: dict[str, CutText] = field(default_factory=dict)  # by marker

    def fits(self, root: etree._Element, tag: str = "NoiDungFile") -> bool:
        """Is each marker the whole text of exactly one `tag` element of the parsed small body?"""
        seen = [el.text for el in root.iter(tag) if el.text in self.cuts]
        return len(seen) == len(self.cuts) == len(set(seen))

    def lengths(self, marker: str) -> tuple[int, int]:
        """(characters, characters without white space) of a cut text."""
        cut = self.cuts[marker]
        return cut.end - cut.start, cut.end - cut.start - cut.blanks

    def decode(self, marker: str) -> bytes:
        """The decoded bytes of a cut text (checked valid when it was cut)."""
        cut = self.cuts.pop(marker)  # decoded once: the bytes are the caller's now
        self.cuts[marker] = CutText(cut.marker, cut.start, cut.end, cut.blanks)
        if cut.decoded is not None:
            return cut.decoded
        view = memoryview(self.source)[cut.start : cut.end]
        if not cut.blanks:
            return binascii.a2b_base64(view)
        out = io.BytesIO()
        carry = b""
        for at in range(0, len(view), _CHUNK):
            compact = carry + bytes(view[at : at + _CHUNK]).translate(None, b" \t\n")
            whole = len(compact) - len(compact) % 4
            out.write(binascii.a2b_base64(compact[:whole]))
            carry = compact[whole:]
        return out.getvalue()

    def splice(self) -> Splice:
        """The cut texts, in document order, for the envelope's digest."""
        parts = []
        for cut in sorted(self.cuts.values(), key=lambda c: c.start):
            parts.append(Part(cut.marker.encode(), b"", lambda c=cut: _raw_chunks(self.source, c)))
        return Splice(parts)


def _raw_chunks(source: bytes, cut: CutText) -> Iterator[memoryview]:
    view = memoryview(source)
    for at in range(cut.start, cut.end, _CHUNK):
        yield view[at : min(at + _CHUNK, cut.end)]


def lean_body(body: bytes, tag: bytes = b"NoiDungFile", min_size: int = CUT_MIN) -> LeanBody | None:
    """The body with its large base64 texts of `tag` cut out, or None when there is none to cut."""
    opening, closing = b"<" + tag + b">", b"</" + tag + b">"
    pieces: list[bytes] = []
    cuts: dict[str, CutText] = {}
    at = 0
    while True:
        begin = body.find(opening, at)
        if begin < 0:
            break
        start = begin + len(opening)
        end = body.find(closing, start)
        if end < 0:
            break
        decoded = _compact_base64(body, start, end) if end - start >= min_size else None
        if decoded is not None:
            marker = new_token()
            cuts[marker] = CutText(marker, start, end, 0, decoded)
            pieces += [body[at:start], marker.encode()]
            at = end
        elif end - start >= min_size and (blanks := _base64_blanks(body, start, end)) is not None:
            marker = new_token() + "\n" * body.count(b"\n", start, end)
            cuts[marker] = CutText(marker, start, end, blanks)
            pieces += [body[at:start], marker.encode()]
            at = end
        else:
            pieces.append(body[at:end])
            at = end
    if not cuts:
        return None
    pieces.append(body[at:])
    return LeanBody(source=body, body=b"".join(pieces), cuts=cuts)



def parse_lean(body: bytes, limits: XmlLimits, *, cut: bool = True) -> tuple[etree._ElementTree, LeanBody | None]:
    """The envelope's tree: of the body without its large base64 NoiDungFile texts when they can
    be cut out (`cut`; the LeanBody decodes them from the body's bytes), else of the whole body.
    A lean body that does not parse, or whose markers are not exactly NoiDungFile texts, gives
    way to the whole body, so that a refusal is in the body's own words and lines. NoiDungFile
    is exempt from the text limit: the base64 of a form may be long."""
    limits = replace(limits, long_text=("NoiDungFile",))
    lean = lean_body(body) if cut else None
    if lean is not None:
        try:
            tree = parse_xml(lean.body, limits)
            if lean.fits(tree.getroot()):
                return tree, lean
        except Refusal:
            pass
    return parse_xml(body, limits), None

def _compact_base64(body: bytes, start: int, end: int) -> bytes | None:
    """The decoded bytes of body[start:end] when it is base64 on one line (no white space, the
    usual case) that `_base64_blanks` would accept, decoded and checked in one pass; else None."""
    if any(body.find(c, start, end) >= 0 for c in (b" ", b"\t", b"\n", b"\r")):
        return None
    tail = body[max(start, end - 4) : end]
    if len(tail) == 4 and tail.endswith(b"=") and not _padding_fits(tail):
        return None
    try:  # strict: only the alphabet, "=" only as the padding of the last quad
        return binascii.a2b_base64(memoryview(body)[start:end], strict_mode=True)
    except binascii.Error:
        return None


def _padding_fits(quad: bytes) -> bool:
    """The XSD's base64Binary: the character before the padding has no bits past the data."""
    pads = len(quad) - len(quad.rstrip(b"="))
    return pads <= 2 and quad[3 - pads] in (_PAD_BEFORE_ONE if pads == 1 else _PAD_BEFORE_TWO)


def _base64_blanks(body: bytes, start: int, end: int) -> int | None:
    """How many white space characters the text body[start:end] holds, when it is base64 that both
    Python (`b64decode(validate=True)` after XML white space is dropped) and the XSD's base64Binary
    accept and that holds no character canonical XML would write otherwise; None if not."""
    if _NOT_BASE64_TEXT.search(body, start, end):
        return None
    blanks = sum(body.count(c, start, end) for c in (b" ", b"\t", b"\n"))
    if (end - start - blanks) % 4:
        return None
    pads = body.count(b"=", start, end)
    tail = body[max(start, end - 64) : end].translate(None, b" \t\n")  # the last quad, at least
    if pads > 2 or not tail.endswith(b"=" * pads) or (pads and tail[-pads - 1 : -pads] == b"="):
        return None
    if pads and len(tail) > pads:
        before = tail[-pads - 1]
        if before not in (_PAD_BEFORE_ONE if pads == 1 else _PAD_BEFORE_TWO):
            return None
    return blanks


# ---- a form, row by row ------------------------------------------------------------------------


@dataclass
class StreamedForm:
    root: etree._Element  # the reduced tree: rows replaced by one marker per run
    splice: Splice
    rows: int


class _NotStreamable(Exception):
    pass


class _Spool:
    """The rows' canonical bytes: gathered in memory, written to an unnamed temporary file a few
    MiB at a time (one write per batch, not per row)."""

    BATCH = 4 * 1024 * 1024

    def __init__(self):
        self.file = None
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        self.pending.append(data)
        self.pending_size += len(data)
        self.size += len(data)
        if self.pending_size >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.file is None:
            self.file = tempfile.TemporaryFile(buffering=0)
        self.file.write(b"".join(self.pending))
        self.pending, self.pending_size = [], 0

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        if self.pending:
            self._flush()
        self.file.seek(start)
        left = end - start
        while left > 0:
            chunk = self.file.read(min(left, _CHUNK))
            if not chunk:
                raise OSError("the row spool is shorter than written")
            left -= len(chunk)
            yield chunk


@functools.lru_cache(maxsize=256)  # rows are indented alike: a few distinct tails
def _tail_c14n(text: str | None) -> bytes:
    """Canonical XML of a text node."""
    if not text:
        return b""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;").encode()


def _inherited_head(row: etree._Element) -> tuple[bytes, bytes]:
    """(what lxml writes first for the row as a subtree, what whole-document C14N writes first
    for it): its tag with, in the first, the namespace declarations of its ancestors (written by
    libxml2 itself, on an empty element of the same name in the same scope)."""
    parent = row.getparent()
    scope = parent.nsmap if parent is not None else {}
    if None in scope:
        raise _NotStreamable("a default namespace declared on an ancestor")
    probe = etree.Element(row.tag, nsmap=scope)
    if probe.prefix != row.prefix:
        raise _NotStreamable("a row's namespace has more than one prefix")
    local = etree.QName(row).localname
    qname = f"{row.prefix}:{local}" if row.prefix else local
    empty = etree.tostring(probe, method="c14n")
    end = f"></{qname}>".encode()
    if not empty.endswith(end):
        raise _NotStreamable("an unexpected canonical form")
    return empty[: -len(end)], f"<{qname}".encode()


class _Rows:
    """The streaming state: the spool, the current run of adjacent rows and the marker runs."""

    def __init__(self, limits: XmlLimits):
        self.limits = limits
        self.spool = _Spool()
        self.parts: list[Part] = []
        self.marker: etree._Element | None = None  # the current run's first row, now its marker
        self.last: etree._Element | None = None  # the run's last row (its tail not yet spooled)
        self.run_start = 0
        self.heads: tuple[bytes, bytes] = (b"", b"")
        self.head_cut = 0
        self.in_context = b""
        self.depth_xpath: etree.XPath | None = None
        self.count = 0

    def row(self, row: etree._Element) -> None:
        last = self.last
        if last is not None and row.getprevious() is last:
            tail = last.tail
            if last is self.marker:
                last.tail = None
            else:
                row.getparent().remove(last)
            self._write_row(row, _tail_c14n(tail))
        else:
            self.close_run()
            self._start_run(row)
        self.last = row
        self.count += 1

    def _start_run(self, row: etree._Element) -> None:
        subtree, in_context = _inherited_head(row)
        self.head_cut, self.in_context = len(subtree), in_context
        self.heads = (subtree, in_context)
        depth = sum(1 for _ in row.iterancestors())
        room = self.limits.max_depth - depth
        if room < 2:  # a row and its children must fit
            raise _NotStreamable("too deep")
        self.depth_xpath = etree.XPath("boolean(" + "*/" * (room - 1) + "*)")
        self.run_start = self.spool.size
        self._write_row(row, b"")
        token = new_token()
        for child in list(row):
            row.remove(child)
        row.text = None
        row.attrib.clear()
        row.tag = token
        self.marker = row
        self.parts.append(Part(f"<{token}".encode(), f"</{token}>".encode(), list))  # chunks: at close_run

    def close_run(self) -> None:
        """The last row's tail goes back to the tree (on the marker), the run's bytes are fixed."""
        if self.marker is None:
            return
        if self.last is not self.marker:
            self.marker.tail = self.last.tail
            self.last.getparent().remove(self.last)
        start, end = self.run_start, self.spool.size
        self.parts[-1].chunks = lambda: self.spool.chunks(start, end)
        self.marker = self.last = None

    def _write_row(self, row: etree._Element, before: bytes) -> None:
        """The row's canonical bytes (after `before`, the previous row's tail) to the spool."""
        data = etree.tostring(row, method="c14n", with_comments=False)
        # every element is "<a ...></a>" in canonical XML (text and attributes escape "<"): a row with
        # as many as itself and its children has no grandchildren and is not too deep
        if data.count(b"<") != 2 * len(row) + 2 and self.depth_xpath(row):
            raise _NotStreamable("too deep")
        if b"<zSpl" in data:  # a row inside a row (its marker is inside): the tree path judges it
            raise _NotStreamable("nested rows")
        cut = self.head_cut
        if not data.startswith(self.heads[0]) or data[cut : cut + 1] not in (b" ", b">"):
            raise _NotStreamable("a row declares namespaces of its own")
        self.spool.write(before + self.in_context + data[cut:])


def stream_form(data: bytes, limits: XmlLimits, schema: etree.XMLSchema, row_tags: tuple[str, ...]) -> StreamedForm | None:
    """One pass over a form: hardened parse, XSD validation, rows canonicalised and dropped.
    None: not this way (the caller parses the whole tree)."""
    if not row_tags or _needs_tree(data, limits):
        return None
    state = _Rows(limits)
    rows = frozenset(row_tags)
    try:
        events = etree.iterparse(
            io.BytesIO(data), events=("end",), tag=(*row_tags, SIGNATURE_TAG), schema=schema,
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True, remove_comments=True,
            collect_ids=False,
        )
        for _, el in events:
            if el.tag == SIGNATURE_TAG:
                if any(a.tag in rows for a in el.iterancestors()):
                    raise _NotStreamable("a signature inside a row: the tree path judges it")
                continue
            state.row(el)
        state.close_run()
        root = events.root
    except (etree.LxmlError, ValueError, _NotStreamable):  # syntax, schema, C14N (a relative namespace URI)
        state.spool.close()
        return None
    if root is None or root.getroottree().docinfo.doctype or not _small_tree_ok(root, limits):
        return None
    return StreamedForm(root=root, splice=Splice(state.parts), rows=state.count)


def _needs_tree(data: bytes, limits: XmlLimits) -> bool:
    """What `parse_xml` checks on the bytes or the tree that this pass does not: any sign of it."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data or b"\x00" in data:
        return True
    start_tags = data.count(b"<") - data.count(b"</") - data.count(b"<!") - data.count(b"<?")
    return start_tags > limits.max_elements or any(shape_gates(data, limits).values())


def _small_tree_ok(root: etree._Element, limits: XmlLimits) -> bool:
    """The reduced tree's depth (the rows' was checked one by one)."""
    return not root.xpath("boolean(/" + "*/" * limits.max_depth + "*)")


def streamed_rows(data: bytes, limits: XmlLimits, root_tag: str, list_tag: str, row_tag: str
                  ) -> Iterator[tuple[str, etree._Element]] | None:
    """The (xpath, row) of each `row_tag` child of /`root_tag`/`list_tag` (the first one), in
    order, each dropped once the next is read: as `interchange.rules.parsing.rows` gives them from
    a tree, for a form already received (hardened and validated then). None: read the tree."""
    if _needs_tree(data, limits):
        return None
    return _rows_of(data, root_tag, list_tag, row_tag)


def _rows_of(data: bytes, root_tag: str, list_tag: str, row_tag: str) -> Iterator[tuple[str, etree._Element]]:
    events = etree.iterparse(io.BytesIO(data), events=("end",), tag=row_tag, resolve_entities=False,
                             no_network=True, load_dtd=False, huge_tree=True, remove_comments=True,
                             collect_ids=False)
    base = f"/{root_tag}/{list_tag}/{row_tag}"
    the_list = None
    i = 0
    previous = None
    for _, row in events:
        parent = row.getparent()
        if the_list is None and parent is not None and parent.tag == list_tag:
            root = parent.getparent()
            if root is None or root.tag != root_tag or root.getparent() is not None:
                return  # another form: the tree path's root check judges nothing either
            the_list = parent
        if parent is None or parent is not the_list:
            continue
        i += 1
        yield f"{base}[{i}]", row
        if previous is not None:
            parent.remove(previous)
        previous = row

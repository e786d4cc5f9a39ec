"""Large forms in bounded memory: a form without its rows (the envelope without its base64 texts
is `trust/leanbody.py`). Falls back to the whole tree (the same verdict, as before) whenever an
input is not of the shape it handles. A form is given as bytes or, when large, as its file
(`Spooled`, decoded there by `leanbody.lean_file`): then it is read from the file as it is parsed.

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

import functools
import io
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from interchange.spool import Spooled
from interchange.trust.c14nstream import Part, Splice, new_token
from interchange.trust.xmldsig import SIGNATURE_TAG
from interchange.xmlparse import ShapeScan, XmlLimits, windows

STREAM_MIN = 1024 * 1024  # smaller forms are read as trees: streaming pays only for large ones
_CHUNK = 4 * 1024 * 1024


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


def stream_form(data: bytes | Spooled, limits: XmlLimits, schema: etree.XMLSchema, row_tags: tuple[str, ...]) -> StreamedForm | None:
    """One pass over a form: hardened parse, XSD validation, rows canonicalised and dropped.
    None: not this way (the caller parses the whole tree)."""
    if not row_tags or _needs_tree(data, limits):
        return None
    state = _Rows(limits)
    rows = frozenset(row_tags)
    try:
        events = etree.iterparse(
            _source(data), events=("end",), tag=(*row_tags, SIGNATURE_TAG), schema=schema,
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


def _needs_tree(data: bytes | Spooled, limits: XmlLimits) -> bool:
    """What `parse_xml` checks on the bytes or the tree that this pass does not: any sign of it."""
    scan = ShapeScan(limits, stream=True)
    if isinstance(data, Spooled):
        try:
            for window in windows(data.chunks(_CHUNK), most=limits.max_text_length):
                scan.feed(window)
        except ValueError:  # a text too long to hold: the tree path judges it
            return True
    else:
        scan.feed(data)
    flags = scan.flags
    return (flags["dtd"] or flags["nul"] or scan.start_tags > limits.max_elements
            or any(scan.gates().values()))


def _source(data: bytes | Spooled):
    """What iterparse reads: the file itself, a chunk at a time, or the bytes."""
    return data.path if isinstance(data, Spooled) else io.BytesIO(data)


def _small_tree_ok(root: etree._Element, limits: XmlLimits) -> bool:
    """The reduced tree's depth (the rows' was checked one by one)."""
    return not root.xpath("boolean(/" + "*/" * limits.max_depth + "*)")


def streamed_rows(data: bytes | Spooled, limits: XmlLimits, root_tag: str, list_tag: str, row_tag: str
                  ) -> Iterator[tuple[str, etree._Element]] | None:
    """The (xpath, row) of each `row_tag` child of /`root_tag`/`list_tag` (the first one), in
    order, each dropped once the next is read: as `interchange.rules.parsing.rows` gives them from
    a tree, for a form already received (hardened and validated then). None: read the tree."""
    if _needs_tree(data, limits):
        return None
    return _rows_of(data, root_tag, list_tag, row_tag)


def _rows_of(data: bytes | Spooled, root_tag: str, list_tag: str, row_tag: str) -> Iterator[tuple[str, etree._Element]]:
    events = etree.iterparse(_source(data), events=("end",), tag=row_tag, resolve_entities=False,
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

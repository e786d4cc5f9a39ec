"""Large forms in bounded memory: a form without its rows (the envelope without its base64 texts
is `trust/leanbody.py`). Falls back to the whole tree (the same verdict, as before) whenever an
input is not of the shape it handles. A form is given as bytes or, when large, as its file
(`Spooled`, decoded there by `leanbody.lean_file`): then it is read from the file as it is parsed.

- `stream_form`: one pass of `etree.iterparse` over a form, validating it against its XSD while
  it parses (libxml2's streaming validation of the whole form), canonicalising the rows (elements
  of a repeated list of the XSD) once they end, a batch at a time, into a spool file, and dropping
  them. Each run of adjacent rows leaves one empty marker element in the reduced tree; the form's
  signature is then verified on the reduced tree with the rows' canonical bytes spliced back in.
  The rows are canonicalised where no namespace is in scope (`_Rows`): a row may neither declare
  nor use a namespace (but xml:), nor be under a default namespace declared on an ancestor.
  Any other shape, a shape limit the bytes cannot rule out, a syntax or schema error, a signature
  inside a row: None, and the caller takes the tree path (which also gives the readable errors).
"""

from __future__ import annotations

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
ROW_BATCH = 64  # rows canonicalised in one C14N call (the per-call costs paid once; more gains nothing)
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


_WRAPPER = (b"<w>", b"</w>")  # the canonical start and end tags of the rows' wrapper


class _Rows:
    """The streaming state: the spool, the current run of adjacent rows and the marker runs.

    A run's rows are canonicalised `ROW_BATCH` at a time, not one C14N call each: moved (each with
    the text after it) into a wrapper element of an empty document, canonicalised in one call and
    dropped. A row that neither declares nor uses a namespace (but xml:) has the same canonical
    bytes there as in its form, whose declarations are written on the ancestors that make them;
    a row that does is not streamed: lxml declares what it uses on the moved row, so the wrapper's
    bytes hold a declaration. (Not a wrapper in the rows' own scope: moving a subtree there makes
    lxml drop the declarations of it that the scope binds already, and rename their prefixes.)
    A run's last row stays in the tree until the next one is read: the parser may still be adding
    to the text after it. Only a run's first row can hold a row: one that does ends after it and
    so is never adjacent to the last row read."""

    def __init__(self, limits: XmlLimits):
        self.limits = limits
        self.spool = _Spool()
        self.parts: list[Part] = []
        self.marker: etree._Element | None = None  # the current run's marker, just before its rows
        self.pending: list[etree._Element] = []  # the run's rows not yet spooled (in the tree)
        self.first = False  # the run's first row not yet spooled (the only one a row can be inside)
        self.run_start = 0
        self.wrapper = etree.Element("w")
        self.depth_xpath: etree.XPath | None = None
        self.count = 0

    def row(self, row: etree._Element) -> None:
        pending = self.pending
        if pending and row.getprevious() is pending[-1]:
            pending.append(row)
            if len(pending) > ROW_BATCH:
                self.pending = [row]
                self._spool_rows(pending[:-1])
        else:
            self.close_run()
            self._start_run(row)
        self.count += 1

    def _start_run(self, row: etree._Element) -> None:
        parent = row.getparent()
        if parent is None:
            raise _NotStreamable("the root is a row")
        if None in parent.nsmap:  # the row would write xmlns="" in its form, not in the wrapper
            raise _NotStreamable("a default namespace declared on an ancestor")
        room = self.limits.max_depth - sum(1 for _ in row.iterancestors())
        if room < 2:  # a row and its children must fit
            raise _NotStreamable("too deep")
        # an element `room` levels below a row is too deep: room + 1 steps below the wrapper
        self.depth_xpath = etree.XPath("boolean(" + "*/" * room + "*)")
        token = new_token()
        self.marker = row.makeelement(token)
        row.addprevious(self.marker)
        etree.tostring(self.marker, method="c14n")  # C14N 1.0 refuses the scope (a relative namespace URI)?
        self.pending, self.first = [row], True
        self.run_start = self.spool.size
        self.parts.append(Part(f"<{token}".encode(), f"</{token}>".encode(), list))  # chunks: at close_run

    def close_run(self) -> None:
        """The last row's tail goes back to the tree (on the marker), the run's bytes are fixed."""
        if self.marker is None:
            return
        last = self.pending[-1]
        tail, last.tail = last.tail, None
        self._spool_rows(self.pending)
        self.marker.tail = tail
        start, end = self.run_start, self.spool.size
        self.parts[-1].chunks = lambda: self.spool.chunks(start, end)
        self.marker, self.pending = None, []

    def _spool_rows(self, rows: list[etree._Element]) -> None:
        """The rows' canonical bytes, each with its tail's, to the spool; the rows dropped."""
        wrapper = self.wrapper
        wrapper.extend(rows)
        data = etree.tostring(wrapper, method="c14n", with_comments=False)
        if self.depth_xpath(wrapper):
            raise _NotStreamable("too deep")
        if b"xmlns" in data and wrapper.xpath("boolean(//namespace::*[name() != 'xml'])"):
            raise _NotStreamable("a namespace declared or used in a row")
        if self.first and b"<zSpl" in data:  # a row inside a row (its marker is inside): the tree path judges it
            raise _NotStreamable("nested rows")
        del wrapper[:]
        self.first = False
        head, end = _WRAPPER
        self.spool.write(memoryview(data)[len(head) : len(data) - len(end)])


def stream_form(data: bytes | Spooled, limits: XmlLimits, schema: etree.XMLSchema, row_tags: tuple[str, ...], *,
                longest_local_name: int | None = None) -> StreamedForm | None:
    """One pass over a form: hardened parse, XSD validation, rows canonicalised and dropped.
    None: not this way (the caller parses the whole tree). `longest_local_name`: of the names the
    schema lets a valid form hold in no namespace (forms.schema.Streaming); within the name
    limit, no byte scan for long names: a row holds only those (it uses no namespace: `_Rows`),
    and the reduced tree is looked at instead."""
    names_bounded = (schema is not None and longest_local_name is not None
                     and longest_local_name <= limits.max_name_length)
    if not row_tags or _needs_tree(data, limits, names=not names_bounded):
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
    if root is None or root.getroottree().docinfo.doctype or not _small_tree_ok(root, limits, names_bounded):
        return None
    return StreamedForm(root=root, splice=Splice(state.parts), rows=state.count)


def _needs_tree(data: bytes | Spooled, limits: XmlLimits, *, names: bool = True) -> bool:
    """What `parse_xml` checks on the bytes or the tree that this pass does not: any sign of it.
    Not `names`: long names are not looked for (the caller does)."""
    scan = ShapeScan(limits, stream=True, names=names)
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


def _small_tree_ok(root: etree._Element, limits: XmlLimits, names: bool = False) -> bool:
    """The reduced tree's depth (the rows' was checked batch by batch) and, with `names`, the
    length of its names (as `parse_xml` checks them on a whole tree)."""
    if root.xpath("boolean(/" + "*/" * limits.max_depth + "*)"):
        return False
    n = limits.max_name_length
    return not (names and root.xpath(f"boolean(//*[string-length(name()) > {n}] | //@*[string-length(name()) > {n}])"))


def streamed_rows(data: bytes | Spooled, root_tag: str, list_tag: str, row_tag: str) -> Iterator[tuple[str, etree._Element]]:
    """The (xpath, row) of each `row_tag` child of /`root_tag`/`list_tag` (the first one), in
    order, each dropped once the next is read: as `interchange.rules.parsing.rows` gives them from
    a tree, for a form already received (its shape and schema checked then: not again here)."""
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

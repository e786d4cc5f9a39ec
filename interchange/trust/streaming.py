"""Large forms in bounded memory: a form without its rows (the envelope without its base64 texts
is `trust/leanbody.py`). Falls back to the whole tree (the same verdict, as before) whenever an
input is not of the shape it handles. A form is given as bytes or, when large, as its file
(`Spooled`, decoded there by `leanbody.lean_file`): then it is read from the file as it is parsed.

- `stream_form`: one pass of `etree.iterparse` over a form, validating it against its XSD while
  it parses (libxml2's streaming validation of the whole form), canonicalising the rows (elements
  of a repeated list of the XSD) once they end, a batch at a time, into a spool file, and dropping
  them. Each run of adjacent rows leaves one empty marker element in the reduced tree; the form's
  signature is then verified on the reduced tree with the rows' canonical bytes spliced back in.
  Rows are canonicalised a batch at a time in a wrapper element where no namespace is in scope
  or, once a batch uses its ancestors' namespaces, in one that declares them; the rows of a batch
  in which a namespace is declared one at a time, as subtrees (`_Rows`). A row under a default
  namespace declared on an ancestor is not streamed. The attributes of each element are counted
  as the form is read when the bytes hold more in all than one element may; namespace
  declarations always, from one row's end to the next (more there than one element may hold:
  not streamed). Any other shape, a shape limit the bytes cannot rule out, a syntax or schema
  error, a signature inside a row: None, and the caller takes the tree path (which also gives
  the readable errors).
"""

from __future__ import annotations

import functools
import io
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from interchange.spool import Spooled
from interchange.trust.aside import validate_aside
from interchange.trust.c14nstream import Part, Splice, new_token
from interchange.trust.xmldsig import SIGNATURE_TAG
from interchange.xmlparse import (
    PARSE_OPTIONS,
    ShapeScan,
    XmlLimits,
    long_name_in_canonical,
    windows,
)

STREAM_MIN = 1024 * 1024  # smaller forms are read as trees: streaming pays only for large ones
ROW_BATCH = 64  # rows canonicalised in one C14N call (the per-call costs paid once; more gains nothing)
_CHUNK = 4 * 1024 * 1024
# iterparse with a schema: resolve_entities=False makes lxml (seen on 6.2.0, libxml2 2.14.6) end
# the parse of a form that is not well-formed (cut short, an undefined entity) without an error,
# so a signed form missing its root's end tag passed. "internal" has nothing to resolve: the byte
# gates refuse any DOCTYPE (no entity can be declared) before the parse, a form whose markup is
# not spelt in ASCII bytes goes the tree's way (`ShapeScan.readable`: the gates would not see its
# DOCTYPE; the tree's parse refuses a UTF-7 one), and the reduced tree is checked for one.
RESOLVE_ENTITIES = "internal"


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
_MANY_ATTRIBUTES = etree.XPath("boolean(descendant-or-self::*[count(@*) > $n])")


@functools.lru_cache(maxsize=64)
def _below(steps: int) -> etree.XPath:
    """Is there an element `steps` levels below the context node?"""
    return etree.XPath("boolean(" + "*/" * (steps - 1) + "*)")


@functools.lru_cache(maxsize=256)  # rows are indented alike: a few distinct tails
def _tail_c14n(text: str | None) -> bytes:
    """Canonical XML of a text node."""
    if not text:
        return b""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;").encode()


@functools.lru_cache(maxsize=256)  # a run's rows have a few distinct scopes
def _heads(tag: str, in_scope: tuple, written: tuple) -> tuple[bytes, bytes]:
    """(what lxml's C14N of a row as a subtree writes first, what whole-document C14N writes
    first for it): the row's start tag up to its attributes, with the declarations `in_scope`
    at the row in the first, only those `written` on it in its form in the second (both written
    by libxml2 itself, on an empty element of the row's name)."""
    heads = []
    for namespaces in (in_scope, written):
        probe = etree.Element(tag, nsmap=dict(namespaces))
        end = f"></{probe.tag}>".encode()  # a row is in no namespace: its name is its tag
        empty = etree.tostring(probe, method="c14n")
        if probe.prefix is not None or not empty.endswith(end):
            raise _NotStreamable("an unexpected canonical form")
        heads.append(empty[: -len(end)])
    return heads[0], heads[1]


class _Rows:
    """The streaming state: the spool, the current run of adjacent rows and the marker runs.

    A run's rows are canonicalised `ROW_BATCH` at a time, not one C14N call each: moved (each with
    the text after it) into a wrapper element of an empty document, canonicalised in one call and
    dropped. A row that neither declares nor uses a namespace (but xml:) has the same canonical
    bytes there as in its form, whose declarations are written on the ancestors that make them.
    (Not a wrapper in the rows' own scope: moving a subtree there makes lxml drop the declarations
    of it that the scope binds already, and rename their prefixes; and C14N there costs more.)
    The other rows:
    - a batch in which a namespace was declared (a start-ns event while its rows were read) is
      not moved: its rows are canonicalised one at a time, as subtrees, where they are (`_alone`:
      each row's start tag written as in its form);
    - a batch that only uses its ancestors' namespaces shows them once moved, in the wrapper's
      bytes: lxml declares on each moved row each namespace it uses, under its own prefix, and
      changes nothing else. Moved again into a wrapper that declares the run's scope, the rows
      lose those declarations (`_in_scope`) and are canonicalised there, in one call; the run's
      later batches are put there directly. Unless the scope binds a namespace to two prefixes:
      lxml may have renamed one; not streamed.
    No way streams a row under a default namespace declared on an ancestor: whole-document C14N
    writes xmlns="" on it, lxml's C14N of it in a wrapper or as a subtree (no default namespace
    in scope above it there) does not.
    A run's last row stays in the tree until the next one is read: the parser may still be adding
    to the text after it. Only a run's first row can hold a row: one that does ends after it and
    so is never adjacent to the last row read."""

    def __init__(self, limits: XmlLimits, *, names_checked: bool = True, count_attributes: bool = False):
        self.limits = limits
        self.names_checked = names_checked  # the bytes were scanned for long names (else: in rows with namespaces here)
        self.count_attributes = count_attributes  # the bytes hold more attributes than one element may: count them
        self.spool = _Spool()
        self.parts: list[Part] = []
        self.marker: etree._Element | None = None  # the current run's marker, just before its rows
        self.pending: list[etree._Element] = []  # the run's rows not yet spooled (in the tree)
        self.declares: list[bool] = []  # for each pending row: was a namespace declared while it was read?
        self.declared = 0  # namespace declarations read since the last row ended (counted by stream_form)
        self.first = False  # the run's first row not yet spooled (the only one a row can be inside)
        self.run_start = 0
        self.scope: dict[str, str] = {}  # the namespaces in scope at the run's parent
        self.room = 0  # levels a row and its descendants may take
        self.wrapper = etree.Element("w")
        self.scoped: etree._Element | None = None  # a wrapper declaring the run's scope, once a batch used it
        self.scoped_head = 0  # the length of its canonical start tag
        self.count = 0

    def row(self, row: etree._Element) -> None:
        pending, declares = self.pending, self.declared > 0
        self.declared = 0
        if pending and row.getprevious() is pending[-1]:
            pending.append(row)
            self.declares.append(declares)
            if len(pending) > ROW_BATCH:
                flags = self.declares
                self.pending, self.declares = [row], [declares]
                self._spool_rows(pending[:-1], any(flags[:-1]))
        else:
            self.close_run()
            self._start_run(row, declares)
        self.count += 1

    def _start_run(self, row: etree._Element, declares: bool) -> None:
        parent = row.getparent()
        if parent is None:
            raise _NotStreamable("the root is a row")
        self.scope = parent.nsmap
        if None in self.scope:  # whole-document C14N writes xmlns="" on the row: neither way here does
            raise _NotStreamable("a default namespace declared on an ancestor")
        self.room = self.limits.max_depth - sum(1 for _ in row.iterancestors())
        if self.room < 2:  # a row and its children must fit
            raise _NotStreamable("too deep")
        token = new_token()
        self.marker = row.makeelement(token)
        row.addprevious(self.marker)
        etree.tostring(self.marker, method="c14n")  # C14N 1.0 refuses the scope (a relative namespace URI)?
        self.pending, self.declares, self.first = [row], [declares], True
        self.scoped = None
        self.run_start = self.spool.size
        self.parts.append(Part(f"<{token}".encode(), f"</{token}>".encode(), list))  # chunks: at close_run

    def close_run(self) -> None:
        """The last row's tail goes back to the tree (on the marker), the run's bytes are fixed."""
        if self.marker is None:
            return
        last = self.pending[-1]
        tail, last.tail = last.tail, None
        self._spool_rows(self.pending, any(self.declares))
        self.marker.tail = tail
        start, end = self.run_start, self.spool.size
        self.parts[-1].chunks = lambda: self.spool.chunks(start, end)
        self.marker, self.pending, self.declares = None, [], []

    def _spool_rows(self, rows: list[etree._Element], declares: bool) -> None:
        """The rows' canonical bytes, each with its tail's, to the spool; the rows dropped.
        `declares`: a namespace was declared while they were read."""
        if declares:
            self._spool_in_place(rows)
            return
        wrapper = self.scoped if self.scoped is not None else self.wrapper
        wrapper.extend(rows)
        data = etree.tostring(wrapper, method="c14n", with_comments=False)
        self._check(wrapper, self.room + 1)  # an element `room` levels below a row is too deep
        if self.first and b"<zSpl" in data:  # a row inside a row (its marker is inside): the tree path judges it
            raise _NotStreamable("nested rows")
        self.first = False
        head = self.scoped_head if wrapper is self.scoped else len(_WRAPPER[0])
        if data.find(b"xmlns", head) >= 0:
            outer = wrapper.nsmap
            if any(row.nsmap != outer for row in wrapper):
                if wrapper is self.scoped:  # never: a row declares only what a start-ns event shows
                    raise _NotStreamable("a row declares a namespace")
                data = self._in_scope(wrapper)  # lxml declared on the rows what they use
                wrapper, head = self.scoped, self.scoped_head
        rows_bytes = memoryview(data)[head : len(data) - len(_WRAPPER[1])]
        if wrapper is self.scoped:  # rows that may use namespaces
            self._check_names(rows_bytes)
        self.spool.write(rows_bytes)
        del wrapper[:]

    def _spool_in_place(self, rows: list[etree._Element]) -> None:
        """Rows in whose batch a namespace was declared, each canonicalised where it is."""
        parent = rows[0].getparent()
        for row in rows:
            self._check(row, self.room)
            data = self._alone(row)
            self._check_names(data)
            if self.first and b"<zSpl" in data:  # a row inside a row: the tree path judges it
                raise _NotStreamable("nested rows")
            self.first = False
            self.spool.write(data + _tail_c14n(row.tail))
            parent.remove(row)

    def _in_scope(self, wrapper: etree._Element) -> bytes:
        """Rows that use their ancestors' namespaces (and declare none), moved into the namespace-
        free wrapper: moved again, into one that declares the run's scope, they lose the
        declarations lxml made on them (the wrapper's, under the same prefixes) and are as in
        their form; that wrapper's canonical bytes. The run's next batches go there directly."""
        scope = self.scope
        if len(set(scope.values())) != len(scope):
            raise _NotStreamable("a namespace used in a row has two prefixes in scope: lxml may rename it")
        self.scoped = etree.Element("w", nsmap=scope)
        self.scoped_head = len(etree.tostring(self.scoped, method="c14n")) - len(_WRAPPER[1])  # <w xmlns:...>
        self.scoped.extend(wrapper)
        if any(row.nsmap != scope for row in self.scoped):  # never: lxml declared on them what it found above
            raise _NotStreamable("a row declares a namespace")
        return etree.tostring(self.scoped, method="c14n", with_comments=False)

    def _check(self, node: etree._Element, steps: int) -> None:
        """No element `steps` levels below `node`, and, the bytes holding more attributes than one
        element may, none with more than that (as parse_xml checks them on a whole tree)."""
        if _below(steps)(node):
            raise _NotStreamable("too deep")
        if self.count_attributes and _MANY_ATTRIBUTES(node, n=self.limits.max_attributes):
            raise _NotStreamable("too many attributes")

    def _check_names(self, canonical: bytes | memoryview) -> None:
        """Rows with namespaces, the bytes not scanned for long names: none in their canonical
        bytes (a name in a namespace is not the schema's)."""
        if not self.names_checked and long_name_in_canonical(canonical, self.limits):
            raise _NotStreamable("a name too long")

    def _alone(self, row: etree._Element) -> bytes:
        """The row's canonical bytes in its form, from lxml's C14N of it as a subtree (which writes on
        it every namespace in scope there): its start tag's declarations those whole-document C14N
        writes on it, the ones of the run's scope it rebinds or adds (the others: on its ancestors)."""
        data = etree.tostring(row, method="c14n", with_comments=False)
        scope = self.scope
        in_scope = tuple(sorted((p, uri) for p, uri in row.nsmap.items() if p is not None))  # no xmlns="": above
        subtree, in_form = _heads(row.tag, in_scope, tuple((p, uri) for p, uri in in_scope if scope.get(p) != uri))
        cut = len(subtree)
        if not data.startswith(subtree) or data[cut : cut + 1] not in (b" ", b">"):
            raise _NotStreamable("an unexpected canonical form")
        return in_form + data[cut:]


def stream_form(data: bytes | Spooled, limits: XmlLimits, schema: etree.XMLSchema, row_tags: tuple[str, ...], *,
                longest_local_name: int | None = None, aside_from: int = 0) -> StreamedForm | None:
    """One pass over a form: hardened parse, XSD validation, rows canonicalised and dropped.
    None: not this way (the caller parses the whole tree). `longest_local_name`: of the names the
    schema lets a valid form hold in no namespace (forms.schema.Streaming); within the name
    limit, no byte scan for long names: a row that uses no namespace holds only those, the names
    of one that does are looked at when it is canonicalised (`_Rows`), the reduced tree's at the end.
    `aside_from`: a form in a file of at least this many bytes (0: none) is validated in a forked
    process while this one canonicalises it (`trust/aside.py`; the same verdict, sooner)."""
    names_bounded = (schema is not None and longest_local_name is not None
                     and longest_local_name <= limits.max_name_length)
    if not row_tags:
        return None
    helper = None  # started first, it runs beside the byte gates too (and is ended when they fail)
    if schema is not None and aside_from > 0 and isinstance(data, Spooled) and len(data) >= aside_from:
        helper = validate_aside(data.path, schema)
    try:
        gates = _gates(data, limits, names=not names_bounded)
        form = None if gates is None else _one_pass(data, limits, None if helper is not None else schema, row_tags,
                                                     names_bounded, gates)
        if form is not None and helper is not None and not helper.valid():
            form = None  # invalid: the tree path says why
        return form
    finally:
        if helper is not None:
            helper.cancel()  # ended when this pass failed first; a no-op once its verdict came


def _one_pass(data: bytes | Spooled, limits: XmlLimits, schema: etree.XMLSchema | None, row_tags: tuple[str, ...],
              names_bounded: bool, gates: dict[str, bool]) -> StreamedForm | None:
    """`stream_form`'s pass over the form, validating it when given `schema`."""
    state = _Rows(limits, names_checked=not names_bounded, count_attributes=gates["attributes"])
    rows = frozenset(row_tags)
    try:
        events = etree.iterparse(  # start-ns: for any element (the tags filter the end events)
            _source(data), events=("start-ns", "end"), tag=(*row_tags, SIGNATURE_TAG), schema=schema,
            resolve_entities=RESOLVE_ENTITIES if schema is not None else False, **PARSE_OPTIONS,
        )
        for event, el in events:
            if event == "start-ns":  # an element's declarations come with no row's end between them
                state.declared += 1
                if state.declared > limits.max_namespaces:
                    raise _NotStreamable("many namespace declarations: the tree path counts them")
                continue
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
    if root is None or root.getroottree().docinfo.doctype or not _small_tree_ok(root, limits, names_bounded, gates["attributes"]):
        return None
    return StreamedForm(root=root, splice=Splice(state.parts), rows=state.count)


def _gates(data: bytes | Spooled, limits: XmlLimits, *, names: bool = True) -> dict[str, bool] | None:
    """What `parse_xml` checks on the bytes or the tree that this pass does not: None at any sign
    of it. Else whether the bytes hold more attributes than one element may ("attributes": this
    pass counts them element by element then); namespace declarations it always counts. Not
    `names`: long names are not looked for (the caller does)."""
    scan = ShapeScan(limits, stream=True, names=names)
    if isinstance(data, Spooled):
        try:
            for window in windows(data.chunks(_CHUNK), most=limits.max_text_length):
                scan.feed(window)
        except ValueError:  # a text too long to hold: the tree path judges it
            return None
    else:
        scan.feed(data)
    flags, gates = scan.flags, scan.gates()
    if flags["dtd"] or not scan.readable or scan.start_tags > limits.max_elements:
        return None
    if any(on for gate, on in gates.items() if gate not in ("attributes", "namespaces")):
        return None
    return {"attributes": gates["attributes"]}


def _source(data: bytes | Spooled):
    """What iterparse reads: the file itself, a chunk at a time, or the bytes."""
    return data.path if isinstance(data, Spooled) else io.BytesIO(data)


def _small_tree_ok(root: etree._Element, limits: XmlLimits, names: bool = False, attributes: bool = False) -> bool:
    """The reduced tree's depth (the rows' was checked batch by batch) and, with `names`, the
    length of its names, with `attributes` their number on each element (as `parse_xml` checks
    them on a whole tree)."""
    if root.xpath("boolean(/" + "*/" * limits.max_depth + "*)"):
        return False
    if attributes and _MANY_ATTRIBUTES(root, n=limits.max_attributes):
        return False
    n = limits.max_name_length
    return not (names and root.xpath(f"boolean(//*[string-length(name()) > {n}] | //@*[string-length(name()) > {n}])"))


def streamed_rows(data: bytes | Spooled, root_tag: str, list_tag: str, row_tag: str) -> Iterator[tuple[str, etree._Element]]:
    """The (xpath, row) of each `row_tag` child of /`root_tag`/`list_tag` (the first one), in
    order, each dropped once the next is read: as `interchange.rules.parsing.rows` gives them from
    a tree, for a form already received (its shape and schema checked then: not again here)."""
    events = etree.iterparse(_source(data), events=("end",), tag=row_tag, resolve_entities=False, **PARSE_OPTIONS)
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

"""The envelope without its base64 texts: a large dossier's body read in bounded memory.

A 50,000-row D02-TS is a 78 MiB form inside a 103 MiB base64 text; as trees they took 14 times
their size. Each large `<NoiDungFile>` text that is valid base64 (as Python and the XSD's
base64Binary read it) and holds nothing but the base64 alphabet and white space other than CR (so
that its canonical bytes are its raw bytes) is cut out of the body and replaced by a marker text
(`trust/c14nstream.py`) with the same number of line breaks (line numbers do not move). The small
body is parsed, validated and read as before; the file's content is decoded from the body's bytes,
and the envelope's digest splices the raw text back in. The caller checks that each marker is
exactly the text of one NoiDungFile element (`LeanBody.fits`): a cut that fell inside a comment,
a CDATA section or a processing instruction does not. Anything else: the whole tree, as before.

A body given as its file (`Spooled`, from 8 MiB) is read a few MiB at a time: only the small body
is held, and a text of 8 MiB or more is checked and decoded into a file of its own, which the
form's streaming pass (`trust/streaming.py`) reads in turn; `LeanBody.close` removes those files.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import pybase64
from lxml import etree

from interchange.errors import Refusal
from interchange.spool import LARGE, Spooled, SpoolWriter, as_bytes
from interchange.trust.c14nstream import Part, Splice, new_token
from interchange.xmlparse import XmlLimits, parse_xml

CUT_MIN = 64 * 1024  # smaller texts stay in the tree
_CHUNK = 4 * 1024 * 1024
_PAD_BEFORE_ONE = frozenset(b"AEIMQUYcgkosw048")  # base64Binary: the last character before "="
_PAD_BEFORE_TWO = frozenset(b"AQgw")  # ... and before "=="


@dataclass(frozen=True)
class CutText:
    marker: str  # the text that stands in the small body for the cut-out one
    start: int  # the raw text's bytes in the source body: [start, end)
    end: int
    blanks: int  # white space characters in it
    decoded: bytes | Spooled | None  # checked and decoded when it was cut (a large one into a
    # file); None once `LeanBody.decode` has handed it over


@dataclass
class LeanBody:
    source: bytes | Spooled
    body: bytes  # the source with every cut text replaced by its marker
    cuts: dict[str, CutText] = field(default_factory=dict)  # by marker
    files: list[Spooled] = field(default_factory=list)  # texts decoded into files: `close` removes them

    def close(self) -> None:
        for spooled in self.files:
            spooled.remove()
        self.files.clear()

    def fits(self, root: etree._Element, tag: str = "NoiDungFile") -> bool:
        """Is each marker the whole text of exactly one `tag` element of the parsed small body?"""
        seen = [el.text for el in root.iter(tag) if el.text in self.cuts]
        return len(seen) == len(self.cuts) == len(set(seen))

    def lengths(self, marker: str) -> tuple[int, int]:
        """(characters, characters without white space) of a cut text."""
        cut = self.cuts[marker]
        return cut.end - cut.start, cut.end - cut.start - cut.blanks

    def decode(self, marker: str) -> bytes | Spooled:
        """The decoded bytes of a cut text, in a file when large: handed over once (this body
        keeps no reference to them)."""
        cut = self.cuts[marker]
        if cut.decoded is None:
            raise LookupError("this text was decoded already")
        self.cuts[marker] = replace(cut, decoded=None)
        return cut.decoded

    def splice(self) -> Splice:
        """The cut texts, in document order, for the envelope's digest."""
        parts = []
        for cut in sorted(self.cuts.values(), key=lambda c: c.start):
            parts.append(Part(cut.marker.encode(), b"", lambda c=cut: _raw_chunks(self.source, c)))
        return Splice(parts)


def _raw_chunks(source: bytes | Spooled, cut: CutText) -> Iterator[memoryview | bytes]:
    if isinstance(source, Spooled):
        yield from source.span(cut.start, cut.end, _CHUNK)
        return
    view = memoryview(source)
    for at in range(cut.start, cut.end, _CHUNK):
        yield view[at : min(at + _CHUNK, cut.end)]


def lean_body(body: bytes, tag: bytes = b"NoiDungFile", min_size: int = CUT_MIN) -> LeanBody | None:
    """The body with its large base64 texts of `tag` cut out (each checked and decoded), or None
    when there is none to cut."""
    return _lean(_InBytes(body), tag, min_size, to_file_from=None)


def lean_file(source: Spooled, tag: bytes = b"NoiDungFile", min_size: int = CUT_MIN, *,
              to_file_from: int | None = None, chunk: int = _CHUNK) -> LeanBody | None:
    """`lean_body` of a body in a file, read `chunk` bytes at a time: the same texts cut, each
    decoded as it is checked (into a file of its own from `to_file_from` bytes, default
    `spool.LARGE`), only the small body held."""
    with open(source.path, "rb", buffering=0) as fh:
        return _lean(_InFile(source, fh, chunk), tag, min_size, to_file_from=LARGE if to_file_from is None else to_file_from)


class _InBytes:
    """A body in memory, as `_lean` reads it."""

    def __init__(self, body: bytes):
        self.source, self.size, self.find = body, len(body), body.find

    def read(self, start: int, end: int) -> bytes:
        return self.source[start:end]

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        for at in range(start, end, _CHUNK):
            yield self.source[at : min(end, at + _CHUNK)]


class _InFile:
    """A body in a file, as `_lean` reads it: a chunk at a time."""

    def __init__(self, source: Spooled, fh, chunk: int):
        self.source, self.size, self.fh, self.chunk = source, source.size, fh, chunk

    def read(self, start: int, end: int) -> bytes:
        self.fh.seek(start)
        data = self.fh.read(end - start)
        if len(data) != end - start:
            raise OSError(f"{self.fh.name}: shorter than {end} bytes")
        return data

    def find(self, needle: bytes, at: int) -> int:
        """The offset of `needle` from `at`, or -1 (chunks overlap by its length)."""
        while at < self.size:
            data = self.read(at, min(self.size, at + max(self.chunk, 2 * len(needle))))
            found = data.find(needle)
            if found >= 0:
                return at + found
            if at + len(data) >= self.size:
                return -1
            at += len(data) - len(needle) + 1
        return -1

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        for at in range(start, end, self.chunk):
            yield self.read(at, min(end, at + self.chunk))


def _lean(src: _InBytes | _InFile, tag: bytes, min_size: int, *, to_file_from: int | None) -> LeanBody | None:
    """The texts between `<tag>` and `</tag>` of at least `min_size` bytes that are base64 of the
    kind `_decoded` accepts, cut out and decoded (into a file from `to_file_from` bytes)."""
    opening, closing = b"<" + tag + b">", b"</" + tag + b">"
    lean = LeanBody(source=src.source, body=b"")
    pieces: list[bytes] = []
    at = 0
    try:
        for start, end in _spans(src.find, opening, closing):
            to_file = to_file_from is not None and end - start >= to_file_from
            cut = _cut(src, start, end, to_file) if end - start >= min_size else None
            if cut is None:
                continue
            if isinstance(cut.decoded, Spooled):
                lean.files.append(cut.decoded)
            lean.cuts[cut.marker] = cut
            pieces += [src.read(at, start), cut.marker.encode()]
            at = end
        if not lean.cuts:
            return None
        pieces.append(src.read(at, src.size))
    except BaseException:
        lean.close()
        raise
    lean.body = b"".join(pieces)
    return lean


def _spans(find, opening: bytes, closing: bytes) -> Iterator[tuple[int, int]]:
    """[start, end) of each text between `opening` and the first `closing` after it."""
    at = 0
    while (begin := find(opening, at)) >= 0:
        start = begin + len(opening)
        end = find(closing, start)
        if end < 0:
            return
        yield start, end
        at = end


def _cut(src: _InBytes | _InFile, start: int, end: int, to_file: bool) -> CutText | None:
    """The text [start, end) as a cut text, checked and decoded (into a file when `to_file`);
    None when it is not base64 of the kind `_decoded` accepts."""
    if not to_file and isinstance(src, _InBytes):
        decoded = _compact_base64(src.source, start, end)  # the usual one-line text: no copy of it
        if decoded is not None:
            return CutText(new_token(), start, end, 0, decoded)
    writer = SpoolWriter() if to_file else None
    pieces: list[bytes] = []
    try:
        counted = _decoded(src.chunks(start, end), writer.write if writer else pieces.append)
    except BaseException:
        if writer:
            writer.abort()
        raise
    if counted is None:
        if writer:
            writer.abort()
        return None
    blanks, newlines = counted
    decoded = writer.finish() if writer else b"".join(pieces)
    return CutText(new_token() + "\n" * newlines, start, end, blanks, decoded)


def _decoded(chunks: Iterable[bytes], write) -> tuple[int, int] | None:
    """Check a base64 text given in chunks and `write` its decoded bytes as they come: base64 that
    Python (after XML white space, but CR, is dropped) and the XSD's base64Binary accept, with no
    character canonical XML would write otherwise (strict decoding checks the alphabet, CR and
    the padding as it goes). (white space characters, line breaks) in it, or None if not such."""
    blanks = newlines = 0
    carry = tail = b""  # the compact characters not yet decoded; the last ones decoded
    try:
        for chunk in chunks:
            compact = chunk.translate(None, b" \t\n")
            if len(compact) != len(chunk):
                blanks += len(chunk) - len(compact)
                newlines += chunk.count(b"\n")
            if tail.endswith(b"=") and compact:  # data after the padding
                return None
            data = carry + compact
            whole = len(data) - len(data) % 4
            if whole:  # CR, any other character or a misplaced "=" raise here
                write(_strict_b64decode(data[:whole]))
                tail = data[whole - 4 : whole]
            carry = data[whole:]
    except binascii.Error:
        return None
    if carry or (tail.endswith(b"=") and not _padding_fits(tail)):
        return None
    return blanks, newlines


def parse_lean(body: bytes | Spooled, limits: XmlLimits, *, cut: bool = True
               ) -> tuple[etree._ElementTree, LeanBody | None]:
    """The envelope's tree: of the body without its large base64 NoiDungFile texts when they can
    be cut out (`cut`; the LeanBody decodes them from the body's bytes), else of the whole body.
    A lean body that does not parse, or whose markers are not exactly NoiDungFile texts, gives
    way to the whole body, so that a refusal is in the body's own words and lines. NoiDungFile
    is exempt from the text limit: the base64 of a form may be long."""
    limits = replace(limits, long_text=("NoiDungFile",))
    lean = (lean_file(body) if isinstance(body, Spooled) else lean_body(body)) if cut else None
    if lean is not None:
        try:
            tree = parse_xml(lean.body, limits)
            if lean.fits(tree.getroot()):
                return tree, lean
        except Refusal:
            pass
        lean.close()
    return parse_xml(as_bytes(body), limits), None

def _compact_base64(body: bytes, start: int, end: int) -> bytes | None:
    """The decoded bytes of body[start:end] when it is base64 on one line (no white space, the
    usual case) that `_decoded` would accept, decoded and checked in one pass; else None."""
    if (end - start) % 4 or any(body.find(c, start, end) >= 0 for c in (b" ", b"\t", b"\n", b"\r")):
        return None  # whole quads only, as the XSD's base64Binary ("QUJA==" is not base64 there)
    tail = body[max(start, end - 4) : end]
    if tail.endswith(b"=") and not _padding_fits(tail):
        return None
    try:  # strict: only the alphabet, "=" only as the padding of the last quad
        return _strict_b64decode(memoryview(body)[start:end])
    except binascii.Error:
        return None


def _strict_b64decode(quads: bytes | memoryview) -> bytes:
    """Whole quads of base64 decoded; binascii.Error unless they hold only the alphabet and "="
    only as the padding of the last quad. pybase64 (SIMD) decodes 20 times as fast as binascii
    (0.1 against 2 ms per MB; a 50,000-row form's text is 108 MB) and answers as its strict mode
    does on whole quads, but for a whole quad of "=" after the last, which binascii takes and the
    callers refuse by its padding (`_padding_fits`); tests/test_large_files.py holds both to the XSD."""
    return pybase64.b64decode(quads, validate=True)


def _padding_fits(quad: bytes) -> bool:
    """The XSD's base64Binary: the character before the padding has no bits past the data."""
    pads = len(quad) - len(quad.rstrip(b"="))
    return pads <= 2 and quad[3 - pads] in (_PAD_BEFORE_ONE if pads == 1 else _PAD_BEFORE_TWO)

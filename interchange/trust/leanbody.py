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
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from lxml import etree

from interchange.errors import Refusal
from interchange.spool import LARGE, Spooled, SpoolWriter, as_bytes
from interchange.trust.c14nstream import Part, Splice, new_token
from interchange.xmlparse import XmlLimits, parse_xml

CUT_MIN = 64 * 1024  # smaller texts stay in the tree
_CHUNK = 4 * 1024 * 1024
_NOT_BASE64_TEXT = re.compile(rb"[^A-Za-z0-9+/= \t\n]")
_PAD_BEFORE_ONE = frozenset(b"AEIMQUYcgkosw048")  # base64Binary: the last character before "="
_PAD_BEFORE_TWO = frozenset(b"AQgw")  # ... and before "=="


@dataclass(frozen=True)
class CutText:
    marker: str  # the text that stands in the small body for the cut-out one
    start: int  # the raw text's bytes in the source body: [start, end)
    end: int
    blanks: int  # white space characters in it
    decoded: bytes | Spooled | None = None  # when decoded already to check it (a text without white
    # space, or any text of a body in a file: then a large one is decoded into a file)


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
        """The decoded bytes of a cut text (checked valid when it was cut), in a file when large."""
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


def _raw_chunks(source: bytes | Spooled, cut: CutText) -> Iterator[memoryview | bytes]:
    if isinstance(source, Spooled):
        yield from source.span(cut.start, cut.end, _CHUNK)
        return
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
    tail, at = b"", end  # the last quad at least (however many blanks follow it)
    while len(tail) < 4 and at > start:
        tail, at = body[max(start, at - 64) : at].translate(None, b" \t\n") + tail, max(start, at - 64)
    if pads > 2 or not tail.endswith(b"=" * pads) or (pads and tail[-pads - 1 : -pads] == b"="):
        return None
    if pads and len(tail) > pads:
        before = tail[-pads - 1]
        if before not in (_PAD_BEFORE_ONE if pads == 1 else _PAD_BEFORE_TWO):
            return None
    return blanks



# ---- a body in a file ----------------------------------------------------------------------------


def lean_file(source: Spooled, tag: bytes = b"NoiDungFile", min_size: int = CUT_MIN, *,
              to_file_from: int | None = None, chunk: int = _CHUNK) -> LeanBody | None:
    """`lean_body` of a body in a file, read `chunk` bytes at a time: the same texts cut, each
    decoded as it is checked (into a file of its own from `to_file_from` bytes), only the small
    body held."""
    opening, closing = b"<" + tag + b">", b"</" + tag + b">"
    to_file_from = LARGE if to_file_from is None else to_file_from
    lean = LeanBody(source=source, body=b"")
    pieces: list[bytes] = []
    at = 0
    try:
        with open(source.path, "rb", buffering=0) as fh:
            for start, end in _spans(fh, source.size, opening, closing, chunk):
                if end - start < min_size:
                    continue
                held = end - start < to_file_from
                cut = _cut_held(_read(fh, start, end), start) if held else _cut_to_file(fh, start, end, chunk)
                if cut is None:
                    continue
                if isinstance(cut.decoded, Spooled):
                    lean.files.append(cut.decoded)
                lean.cuts[cut.marker] = cut
                pieces += [_read(fh, at, start), cut.marker.encode()]
                at = end
            if not lean.cuts:
                return None
            pieces.append(_read(fh, at, source.size))
    except BaseException:
        lean.close()
        raise
    lean.body = b"".join(pieces)
    return lean


def _read(fh, start: int, end: int) -> bytes:
    fh.seek(start)
    data = fh.read(end - start)
    if len(data) != end - start:
        raise OSError(f"{fh.name}: shorter than {end} bytes")
    return data


def _spans(fh, size: int, opening: bytes, closing: bytes, chunk: int) -> Iterator[tuple[int, int]]:
    """[start, end) of each text between `opening` and `closing`, found as `lean_body` finds them."""
    at = 0
    while (begin := _find(fh, opening, at, size, chunk)) >= 0:
        start = begin + len(opening)
        end = _find(fh, closing, start, size, chunk)
        if end < 0:
            return
        yield start, end
        at = end


def _find(fh, needle: bytes, at: int, size: int, chunk: int) -> int:
    """The offset of `needle` in the file from `at`, or -1 (chunks overlap by its length)."""
    while at < size:
        data = _read(fh, at, min(size, at + max(chunk, 2 * len(needle))))
        found = data.find(needle)
        if found >= 0:
            return at + found
        if at + len(data) >= size:
            return -1
        at += len(data) - len(needle) + 1
    return -1


def _cut_held(raw: bytes, start: int) -> CutText | None:
    """A text read into memory, cut as `lean_body` would cut it, and decoded now."""
    decoded = _compact_base64(raw, 0, len(raw))
    if decoded is not None:
        return CutText(new_token(), start, start + len(raw), 0, decoded)
    blanks = _base64_blanks(raw, 0, len(raw))
    if blanks is None:
        return None
    marker = new_token() + "\n" * raw.count(b"\n")
    return CutText(marker, start, start + len(raw), blanks, binascii.a2b_base64(raw.translate(None, b" \t\n")))


def _cut_to_file(fh, start: int, end: int, size: int) -> CutText | None:
    """A large text checked as `_base64_blanks` checks it and decoded into a file, a chunk at a time
    (strict decoding checks the alphabet and the padding as it goes: no other pass over the text);
    None (and no file) when it is not base64 of that kind."""
    writer = SpoolWriter()
    blanks = newlines = 0
    carry = tail = b""  # the compact characters not yet decoded; the last ones decoded
    try:
        for at in range(start, end, size):
            chunk = _read(fh, at, min(end, at + size))
            compact = chunk.translate(None, b" \t\n")
            if len(compact) != len(chunk):
                blanks += len(chunk) - len(compact)
                newlines += chunk.count(b"\n")
            if tail.endswith(b"=") and compact:  # data after the padding
                raise binascii.Error("excess data after padding")
            data = carry + compact
            whole = len(data) - len(data) % 4
            if whole:  # CR, any other character or a misplaced "=" raise here
                writer.write(binascii.a2b_base64(data[:whole], strict_mode=True))
                tail = data[whole - 4 : whole]
            carry = data[whole:]
    except binascii.Error:
        writer.abort()
        return None
    except BaseException:
        writer.abort()
        raise
    if carry or (tail.endswith(b"=") and not _padding_fits(tail)):
        writer.abort()
        return None
    return CutText(new_token() + "\n" * newlines, start, end, blanks, writer.finish())

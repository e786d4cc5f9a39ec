"""A document's canonical bytes, spliced: the digest of a large document without its whole tree.

A large dossier is read without holding its large parts as a tree (`interchange.trust.streaming`):
the envelope's base64 texts stay in the body's bytes, a form's rows are canonicalised one by one
as they are parsed and then dropped. What is left is a small *reduced* tree in which each left-out
part is a marker with an unguessable name (a random token). Its canonical form (C14N 1.0, after
the enveloped signature is detached, exactly as the verifier computes it for a whole tree) holds
each marker exactly once; the digest of the whole document is that of the reduced tree's
canonical bytes with each marker replaced by the canonical bytes of the part it stands for:

    C14N(document) = C14N(reduced)[: marker 1] + part 1 + C14N(reduced)[after marker 1 : marker 2] + ...

The parts' bytes are produced by whoever left them out (`tests/test_c14nstream.py` checks the
equality against whole-document C14N on many documents). A marker that is missing, found twice,
or out of order makes the splice fail (`SpliceError`): the caller verifies the whole tree instead.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


class SpliceError(Exception):
    """The reduced tree's canonical bytes do not hold the markers as expected (never a verdict on
    the document: the caller verifies its whole tree instead)."""


def new_token() -> str:
    """A marker name: an XML name and base64 text at once, that no document can guess."""
    return "zSpl" + secrets.token_hex(16)


@dataclass
class Part:
    """One left-out part: its marker's bytes in the reduced tree's canonical form, from `start`
    up to and including `end` (`end` empty: `start` alone is the marker), and its own bytes."""

    start: bytes
    end: bytes
    chunks: Callable[[], Iterable[bytes | memoryview]]


@dataclass
class Splice:
    parts: list[Part] = field(default_factory=list)

    def digest(self, canonical: bytes, algorithm: str) -> bytes:
        """The `algorithm` digest (a hashlib name) of the document whose reduced tree's canonical
        bytes are `canonical`."""
        h = hashlib.new(algorithm)
        view = memoryview(canonical)
        at = 0
        for part in self.parts:
            begin = canonical.find(part.start, at)
            if begin < 0 or canonical.find(part.start, begin + 1) >= 0:
                raise SpliceError("a marker of the reduced tree is missing or repeated")
            stop = begin + len(part.start)
            if part.end:
                close = canonical.find(part.end, stop)
                if close < 0:
                    raise SpliceError("a marker of the reduced tree is not closed")
                stop = close + len(part.end)
            h.update(view[at:begin])
            for chunk in part.chunks():
                h.update(chunk)
            at = stop
        h.update(view[at:])
        return h.digest()

"""Large bytes kept in a temporary file instead of memory: a request body past a few MiB on its
way to a worker process and to the store, an original read back from the store for the rule
layer. A `Spooled` is its path and size: picklable, so a worker process gets the file, not a
pickle of the bytes (which cost the sender its size again, and the receiver the same).

Whoever makes one removes it (`remove`) once the work on it is done.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator

LARGE = 8 * 1024 * 1024  # bytes from which an input is spooled rather than held
CHUNK = 1024 * 1024  # bytes read or written at a time


class Spooled:
    """Bytes in a temporary file of this process's (`len()` is their size)."""

    def __init__(self, path: str, size: int, digest: bytes | None = None):
        self.path = path
        self.size = size
        self.digest = digest  # SHA-256 of the bytes, when its writer computed it as they came

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"Spooled({self.path!r}, {self.size})"

    @classmethod
    def write(cls, data: bytes) -> Spooled:
        writer = SpoolWriter()
        writer.write(data)
        return writer.finish()

    def read(self) -> bytes:
        """The bytes, in one bytes object of their size (filled in place, not grown)."""
        with open(self.path, "rb", buffering=0) as fh:
            data = fh.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self.path}: {len(data)} of {self.size} bytes")
        return data

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The bytes, `size` at a time (exactly `self.size` of them, or OSError). The file is
        opened now (OSError here if it is gone), not at the first chunk."""
        return self.span(0, self.size, size)

    def span(self, start: int, end: int, size: int = CHUNK) -> Iterator[bytes]:
        """The bytes [start, end), `size` at a time, as `chunks` gives them."""
        fh = open(self.path, "rb", buffering=0)  # noqa: SIM115  (closed by the generator)
        fh.seek(start)
        return self._chunks(fh, size, start, end)

    def _chunks(self, fh, size: int, start: int, end: int) -> Iterator[bytes]:
        left = end - start
        with fh:
            while left > 0:
                chunk = fh.read(min(size, left))
                if not chunk:
                    raise OSError(f"{self.path}: {end - left} of {end} bytes")
                left -= len(chunk)
                yield chunk

    def head(self, size: int) -> bytes:
        """The first `size` bytes (fewer when the file is shorter)."""
        with open(self.path, "rb", buffering=0) as fh:
            return fh.read(size)

    def sha256(self) -> bytes:
        if self.digest is not None:
            return self.digest
        h = hashlib.sha256()
        for chunk in self.chunks():
            h.update(chunk)
        return h.digest()

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass


class SpoolWriter:
    """A `Spooled` written as its bytes come (a body as it arrives); `abort` removes it. With
    `digest`, their SHA-256 is computed on the way (a body's: the worker need not read it again)."""

    def __init__(self, *, digest: bool = False) -> None:
        fd, self.path = tempfile.mkstemp(prefix="interchange-input-")
        self._fh = os.fdopen(fd, "wb", buffering=0)
        self._hash = hashlib.sha256() if digest else None
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        if self._hash is not None:
            self._hash.update(view)
        while view:  # a raw file may write less than asked
            view = view[self._fh.write(view) :]
        self.size += len(data)

    def finish(self) -> Spooled:
        self._fh.close()
        return Spooled(self.path, self.size, None if self._hash is None else self._hash.digest())

    def abort(self) -> None:
        self._fh.close()
        Spooled(self.path, self.size).remove()


def sha256_of(data: bytes | Spooled) -> bytes:
    return data.sha256() if isinstance(data, Spooled) else hashlib.sha256(data).digest()


def head_of(data: bytes | Spooled, size: int) -> bytes:
    return data.head(size) if isinstance(data, Spooled) else data[:size]


def as_bytes(data):
    """`data` as bytes: read back when it is `Spooled`."""
    return data.read() if isinstance(data, Spooled) else data

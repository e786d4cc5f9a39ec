"""A large form's XSD validation in a forked process, beside the streaming pass over the same file
in this one (`trust/streaming.py`): on two cores the pass that canonicalises the rows and the one
that validates them run at once. A 50,000-row dossier is answered about a second sooner (the
validation is a third of the single pass's time), for about two seconds of CPU on the other core
(the helper parses the form again). Linux only (fork, and a child that dies with its parent);
elsewhere, or when fork fails, there is no helper and the caller validates in its own pass.

The child runs the same libxml2 streaming validation as `iterparse(schema=...)` in the single
pass (the schema, already compiled, comes with the fork). Well-formedness is judged by the pass
beside it, which parses without a schema (lxml reports every syntax error there): together they
give the single pass's verdict. The child only parses and validates, reports one byte, and ends
with `os._exit` (no atexit handlers, no finalisers, no buffers flushed: nothing of the parent's is
touched). It is killed with its parent (a worker past its CPU budget is SIGKILLed; its helper must
not live on).
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys

from lxml import etree

from interchange.xmlparse import PARSE_OPTIONS

_PR_SET_PDEATHSIG = 1
_VALID, _INVALID = b"1", b"0"


class Aside:
    """A validation running in a child process; `valid` or `cancel` it, once."""

    def __init__(self, pid: int, fd: int):
        self.pid = pid
        self._fd = fd
        self._done = False

    def valid(self) -> bool:
        """Wait for the child's verdict: True only when it validated the whole file."""
        try:
            got = os.read(self._fd, 1)  # b"" when the child ended without a verdict
        except OSError:
            got = b""
        self._end(kill=False)
        return got == _VALID

    def cancel(self) -> None:
        """The verdict is not wanted (the pass here failed first): end the child now. Nothing
        once `valid` has answered."""
        self._end(kill=True)

    def _end(self, kill: bool) -> None:
        if self._done:
            return
        self._done = True
        os.close(self._fd)
        if kill:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:  # reaped already (by a SIGCHLD handler of the process)
            pass


def validate_aside(path: str, schema: etree.XMLSchema, row_tags: tuple[str, ...]) -> Aside | None:
    """Start validating the XML file at `path` against `schema` in a forked process; None where
    that cannot be done here (not Linux, or fork failed): the caller validates itself."""
    if not sys.platform.startswith("linux") or _libc is None:
        return None
    parent = os.getpid()
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid == 0:  # the child: never returns
        code = 1
        try:
            gc.disable()  # no finaliser of an object copied from the parent runs here
            os.close(r)
            # sent when the thread that forked ends: a worker's main thread, which lives as long as it
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() == parent:  # else the parent died before the line above
                os.write(w, _VALID if _valid(path, schema, row_tags) else _INVALID)
                code = 0
        finally:
            os._exit(code)
    os.close(w)
    return Aside(pid, r)


def _valid(path: str, schema: etree.XMLSchema, row_tags: tuple[str, ...]) -> bool:
    """The file against the schema, read as `stream_form` reads it, each row dropped once read
    (bounded memory)."""
    try:
        # resolve_entities=False: the helper starts before the byte gates have ruled out a DOCTYPE, so
        # nothing declared there may be expanded. With a schema lxml then ends a form that is not
        # well-formed without an error (trust/streaming.RESOLVE_ENTITIES): the pass beside this one,
        # parsing without a schema, is the one that refuses such a form.
        events = etree.iterparse(path, events=("end",), tag=row_tags, schema=schema, resolve_entities=False,
                                 **PARSE_OPTIONS)
        for _, row in events:
            row.clear()
            parent = row.getparent()
            if parent is not None:
                while row.getprevious() is not None:
                    del parent[0]
    except (etree.LxmlError, ValueError):
        return False
    return True


try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _libc.prctl  # noqa: B018  (Linux only)
except (OSError, AttributeError):
    _libc = None
